//! The connection to the daemon's admin socket: one JSON line out, one JSON line back.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use twofold_wire::admin::{AdminAnswer, AdminReply, AdminRequest};

/// The socket a packaged daemon listens on (`systemd/twofoldd.service`, `RuntimeDirectory=twofold`).
pub const PACKAGED_SOCKET: &str = "/run/twofold/admin.sock";

/// Where the socket is when neither `--socket` nor `TWOFOLD_ADMIN_SOCKET` names one: the packaged
/// location only. No other place is tried, the current folder least of all: whoever can write there
/// could plant a socket that reads what an operator types.
pub fn default_socket() -> Result<PathBuf, String> {
    let packaged = PathBuf::from(PACKAGED_SOCKET);
    if packaged.exists() {
        Ok(packaged)
    } else {
        Err(format!(
            "no admin socket at {PACKAGED_SOCKET}: pass --socket PATH (or set TWOFOLD_ADMIN_SOCKET) to reach a daemon elsewhere"
        ))
    }
}

pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    pub fn connect(path: &Path) -> Result<Client, String> {
        let stream = UnixStream::connect(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                format!(
                    "cannot reach twofoldd at {}: is the daemon running? ({e})",
                    path.display()
                )
            }
            std::io::ErrorKind::PermissionDenied => format!(
                "no permission on {}: run as root or as a member of the admin group",
                path.display()
            ),
            _ => format!("cannot connect to {}: {e}", path.display()),
        })?;
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        Ok(Client {
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Whether the daemon still holds the connection open. It closes one that stayed idle (`[admin]
    /// idle_timeout_seconds`), and between an answer and the next request it sends nothing: anything
    /// readable now is the end of the stream (or bytes no request asked for), so the caller connects
    /// again rather than send a request that would be lost.
    pub fn still_open(&mut self) -> bool {
        if self.reader.get_ref().set_nonblocking(true).is_err() {
            return false;
        }
        let nothing_to_read = matches!(
            self.reader.fill_buf(),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
        );
        self.reader.get_ref().set_nonblocking(false).is_ok() && nothing_to_read
    }

    pub fn call(&mut self, request: &AdminRequest) -> Result<AdminReply, CallError> {
        let mut line =
            serde_json::to_vec(request).map_err(|e| CallError::Connection(e.to_string()))?;
        line.push(b'\n');
        if let Err(e) = self.writer.write_all(&line) {
            // The daemon refuses a peer without a role as it connects and closes at once: its answer
            // is waiting to be read even though our request could not be sent.
            return match self.read_answer() {
                Err(CallError::Connection(_)) => {
                    Err(CallError::Connection(format!("sending to twofoldd: {e}")))
                }
                other => other,
            };
        }
        self.read_answer()
    }

    fn read_answer(&mut self) -> Result<AdminReply, CallError> {
        let mut answer = String::new();
        let n = self
            .reader
            .read_line(&mut answer)
            .map_err(|e| CallError::Connection(format!("reading from twofoldd: {e}")))?;
        if n == 0 {
            return Err(CallError::Connection(
                "twofoldd closed the connection".to_owned(),
            ));
        }
        match serde_json::from_str::<AdminAnswer>(&answer) {
            Ok(AdminAnswer::Ok { reply }) => Ok(*reply),
            Ok(AdminAnswer::Error { error }) => Err(CallError::Refused(error)),
            Err(e) => Err(CallError::Connection(format!(
                "unreadable answer from twofoldd: {e}"
            ))),
        }
    }
}

/// Why a call failed: the daemon said no (the connection is still good), or the connection broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    Refused(twofold_wire::ErrorBody),
    Connection(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Refused(error) => write!(f, "{} ({})", error.message, error.code),
            CallError::Connection(m) => f.write_str(m),
        }
    }
}

/// Requests from the console, answered on a thread of their own so the screen never waits on the daemon.
/// Answers come back through `deliver`, in the order the requests were sent; the thread ends when the
/// console drops the sender or `deliver` returns false.
pub fn spawn_worker<P, F>(
    socket: PathBuf,
    client: Client,
    deliver: F,
) -> std::sync::mpsc::Sender<(P, AdminRequest)>
where
    P: Send + 'static,
    F: Fn(P, Result<AdminReply, String>) -> bool + Send + 'static,
{
    let (send, receive) = std::sync::mpsc::channel::<(P, AdminRequest)>();
    std::thread::spawn(move || {
        let mut connected = Some(client);
        for (purpose, request) in receive {
            // After the connection broke (a daemon restart) or the daemon closed it as idle, the
            // request goes over a new connection.
            let result = match connected
                .take()
                .and_then(|mut c| c.still_open().then_some(c))
                .map_or_else(|| Client::connect(&socket), Ok)
            {
                Ok(mut c) => match c.call(&request) {
                    Ok(reply) => {
                        connected = Some(c);
                        Ok(reply)
                    }
                    Err(refused @ CallError::Refused(_)) => {
                        connected = Some(c);
                        Err(refused.to_string())
                    }
                    Err(CallError::Connection(message)) => Err(message),
                },
                Err(message) => Err(message),
            };
            if !deliver(purpose, result) {
                break;
            }
        }
    });
    send
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_the_daemon_closed_is_not_reused() -> Result<(), String> {
        let (ours, daemon) = UnixStream::pair().map_err(|e| e.to_string())?;
        let writer = ours.try_clone().map_err(|e| e.to_string())?;
        let mut client = Client {
            reader: BufReader::new(ours),
            writer,
        };
        assert!(
            client.still_open(),
            "an open connection with nothing to read"
        );
        assert!(client.still_open(), "asking twice changes nothing");
        drop(daemon);
        assert!(!client.still_open(), "closed by the daemon");
        Ok(())
    }
}
