//! The connection to the daemon's admin socket: one JSON line out, one JSON line back.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use twofold_wire::admin::{AdminAnswer, AdminReply, AdminRequest};

/// Where the socket is, when `--socket` is not given: the packaged location if present, else the
/// zero-setup data folder of a daemon run from a checkout.
pub fn default_socket() -> PathBuf {
    let packaged = PathBuf::from("/run/twofold/admin.sock");
    if packaged.exists() {
        packaged
    } else {
        PathBuf::from("twofold-data/admin.sock")
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
                format!("cannot reach twofoldd at {}: is the daemon running? ({e})", path.display())
            }
            std::io::ErrorKind::PermissionDenied => format!(
                "no permission on {}: run as root or as a member of the admin group",
                path.display()
            ),
            _ => format!("cannot connect to {}: {e}", path.display()),
        })?;
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        Ok(Client { reader: BufReader::new(stream), writer })
    }

    pub fn call(&mut self, request: &AdminRequest) -> Result<AdminReply, String> {
        let mut line = serde_json::to_vec(request).map_err(|e| e.to_string())?;
        line.push(b'\n');
        self.writer.write_all(&line).map_err(|e| format!("sending to twofoldd: {e}"))?;
        let mut answer = String::new();
        let n = self.reader.read_line(&mut answer).map_err(|e| format!("reading from twofoldd: {e}"))?;
        if n == 0 {
            return Err("twofoldd closed the connection".to_owned());
        }
        match serde_json::from_str::<AdminAnswer>(&answer) {
            Ok(AdminAnswer::Ok { reply }) => Ok(*reply),
            Ok(AdminAnswer::Error { error }) => Err(format!("{} ({})", error.message, error.code)),
            Err(e) => Err(format!("unreadable answer from twofoldd: {e}")),
        }
    }
}
