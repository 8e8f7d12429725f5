//! What the delivery tests need around the daemon: the plugins built for wasm32-wasip2, a test CA, an
//! HTTP stand-in for SMS gateways and telephony APIs (a real hyper server on 127.0.0.1, HTTPS or plain
//! HTTP), and a real SMTP server (Debian's aiosmtpd, with STARTTLS and AUTH) on 127.0.0.1.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// The repository's root (the tests crate sits in `tests/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_owned)
}

/// Builds the plugins workspace for wasm32-wasip2 once per test run (cargo makes it a no-op when
/// nothing changed; tests/run builds it before the tests) and returns the folder with the `.wasm` files.
pub fn plugins_dir() -> Result<PathBuf> {
    static BUILT: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = repo_root();
            let manifest = root.join("plugins/Cargo.toml");
            let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
                .args([
                    "build",
                    "--release",
                    "--target",
                    "wasm32-wasip2",
                    "--manifest-path",
                ])
                .arg(&manifest)
                .env_remove("CARGO_TARGET_DIR")
                .output()
                .map_err(|e| format!("cargo build of the plugins: {e}"))?;
            if !output.status.success() {
                return Err(format!(
                    "building the plugins failed:\n{}",
                    String::from_utf8_lossy(&output.stderr)
                ));
            }
            Ok(root.join("plugins/target/wasm32-wasip2/release"))
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// A CA and a server certificate it signed for 127.0.0.1, as PEM files in `dir`.
pub struct TestCa {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TestCa {
    pub fn create(dir: &Path) -> Result<TestCa> {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose,
        };
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Twofold test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        let leaf_key = KeyPair::generate()?;
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?
            .signed_by(&leaf_key, &ca)?;
        let t = TestCa {
            ca_file: dir.join("test-ca.pem"),
            cert_file: dir.join("server.pem"),
            key_file: dir.join("server.key"),
        };
        std::fs::write(&t.ca_file, ca.pem())?;
        std::fs::write(&t.cert_file, leaf.pem())?;
        std::fs::write(&t.key_file, leaf_key.serialize_pem())?;
        Ok(t)
    }

    fn server_config(&self) -> Result<Arc<rustls::ServerConfig>> {
        use rustls::pki_types::pem::PemObject;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(&self.cert_file)?
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&self.key_file)?;
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// A request the stand-in received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// When it arrived.
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An answer the stand-in gives: a status, headers, and a body (by default `{"id": "msg-N"}` for a
/// success, `{"error": "scripted STATUS"}` otherwise).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

impl Answer {
    pub fn new(status: u16, headers: &[(&str, &str)], body: &str) -> Answer {
        Answer {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: Some(body.to_owned()),
        }
    }
}

#[derive(Default)]
struct GatewayState {
    received: Vec<Received>,
    /// Answers to give, in order; when empty, 200.
    script: VecDeque<Answer>,
}

/// An HTTP stand-in for an SMS gateway or a telephony API: records every request, answers the scripted
/// statuses (then 200 with `{"id": "msg-N"}`).
pub struct Gateway {
    pub addr: SocketAddr,
    state: Arc<Mutex<GatewayState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Gateway {
    /// HTTPS with the test CA's certificate when `tls` is given, plain HTTP otherwise.
    pub async fn start(tls: Option<&TestCa>) -> Result<Gateway> {
        Gateway::start_at(([127, 0, 0, 1], 0).into(), tls).await
    }

    /// As `start`, on a given loopback address (a gateway that comes back up on its old port).
    pub async fn start_at(addr: SocketAddr, tls: Option<&TestCa>) -> Result<Gateway> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(GatewayState::default()));
        let acceptor = tls
            .map(|ca| ca.server_config())
            .transpose()?
            .map(tokio_rustls::TlsAcceptor::from);
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let state = shared.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: hyper::Request<hyper::body::Incoming>| {
                            let state = state.clone();
                            async move {
                                Ok::<_, std::convert::Infallible>(answer(request, &state).await)
                            }
                        },
                    );
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                let _ = builder
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                        }
                    }
                });
            }
        });
        Ok(Gateway { addr, state, task })
    }

    /// The next answers' statuses, before the default 200s.
    pub fn script(&self, statuses: &[u16]) {
        if let Ok(mut s) = self.state.lock() {
            s.script.extend(statuses.iter().map(|&status| Answer {
                status,
                headers: Vec::new(),
                body: None,
            }));
        }
    }

    /// The next answers, with their headers and bodies, before the default 200s.
    pub fn script_answers(&self, answers: &[Answer]) {
        if let Ok(mut s) = self.state.lock() {
            s.script.extend(answers.iter().cloned());
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.state
            .lock()
            .map(|s| s.received.clone())
            .unwrap_or_default()
    }

    /// Waits until `n` requests have arrived.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Result<Vec<Received>> {
        let deadline = Instant::now() + within;
        loop {
            let received = self.received();
            if received.len() >= n {
                return Ok(received);
            }
            if Instant::now() > deadline {
                bail!(
                    "the stand-in got {} requests, not {n}, within {within:?}: {received:?}",
                    received.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn answer(
    request: hyper::Request<hyper::body::Incoming>,
    state: &Mutex<GatewayState>,
) -> hyper::Response<Full<Bytes>> {
    let method = request.method().to_string();
    let path = request
        .uri()
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.to_string());
    let headers = request
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let (scripted, n) = match state.lock() {
        Ok(mut s) => {
            s.received.push(Received {
                method,
                path,
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
                at: Instant::now(),
            });
            (s.script.pop_front(), s.received.len())
        }
        Err(_) => (None, 0),
    };
    let Answer {
        status,
        headers,
        body,
    } = scripted.unwrap_or(Answer {
        status: if n == 0 { 500 } else { 200 },
        headers: Vec::new(),
        body: None,
    });
    let text = body.unwrap_or_else(|| {
        if status < 300 {
            format!("{{\"id\": \"msg-{n}\"}}")
        } else {
            format!("{{\"error\": \"scripted {status}\"}}")
        }
    });
    let mut response = hyper::Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            hyper::header::HeaderValue::from_str(&value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

/// A real SMTP server (aiosmtpd) on 127.0.0.1 requiring STARTTLS (test CA) and AUTH; every message it
/// accepts is written to a file in its mail folder.
pub struct SmtpServer {
    pub port: u16,
    pub mail_dir: PathBuf,
    pub username: String,
    pub password_file: PathBuf,
    child: Child,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SMTP_SERVER_PY: &str = r#"
import logging, os, ssl, sys, time, itertools
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, cert, key, mail_dir, user, password, smtputf8 = sys.argv[1:8]
counter = itertools.count(1)
# aiosmtpd 1.4 warns about its own deprecated login_data on every login.
logging.getLogger("mail.log").setLevel(logging.ERROR)

class Save:
    async def handle_DATA(self, server, session, envelope):
        n = next(counter)
        with open(os.path.join(mail_dir, "%04d.eml.tmp" % n), "wb") as f:
            f.write(("X-Envelope-From: %s\r\nX-Envelope-To: %s\r\nX-Auth-User: %s\r\nX-Tls: %s\r\n" % (
                envelope.mail_from, ",".join(envelope.rcpt_tos),
                session.authenticated and user or "-", session.ssl is not None)).encode())
            f.write(envelope.original_content or envelope.content)
        os.rename(os.path.join(mail_dir, "%04d.eml.tmp" % n), os.path.join(mail_dir, "%04d.eml" % n))
        return "250 OK saved"

def authenticate(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == user.encode() and auth_data.password == password.encode()
    return AuthResult(success=ok)

context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)
controller = Controller(Save(), hostname="127.0.0.1", port=int(port), tls_context=context,
                        require_starttls=True, authenticator=authenticate, auth_required=True,
                        enable_SMTPUTF8=(smtputf8 == "smtputf8"))
controller.start()
print("READY", flush=True)
while True:
    time.sleep(3600)
"#;

impl SmtpServer {
    pub fn start(dir: &Path, ca: &TestCa) -> Result<SmtpServer> {
        SmtpServer::start_with(dir, ca, true)
    }

    /// As `start`; without `smtputf8` the server does not offer SMTPUTF8, as many relays still do not.
    pub fn start_with(dir: &Path, ca: &TestCa, smtputf8: bool) -> Result<SmtpServer> {
        let mail_dir = dir.join("mail");
        std::fs::create_dir_all(&mail_dir)?;
        let script = dir.join("smtp_server.py");
        std::fs::write(&script, SMTP_SERVER_PY)?;
        let password_file = dir.join("smtp-password");
        std::fs::write(&password_file, "s3cret-smtp\n")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        // Debian's python, where python3-aiosmtpd is installed (a python3 earlier on PATH may lack it).
        let mut child = Command::new("/usr/bin/python3")
            .arg(&script)
            .arg(port.to_string())
            .arg(&ca.cert_file)
            .arg(&ca.key_file)
            .arg(&mail_dir)
            .args(["twofold", "s3cret-smtp"])
            .arg(if smtputf8 { "smtputf8" } else { "ascii-only" })
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting aiosmtpd (Debian package python3-aiosmtpd)")?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        if line.trim() != "READY" {
            let _ = child.kill();
            bail!("aiosmtpd did not start (is python3-aiosmtpd installed?): {line:?}");
        }
        Ok(SmtpServer {
            port,
            mail_dir,
            username: "twofold".into(),
            password_file,
            child,
        })
    }

    /// The messages received so far, oldest first.
    pub fn messages(&self) -> Result<Vec<String>> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.mail_dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| Ok(std::fs::read_to_string(p)?))
            .collect()
    }

    pub async fn wait_for(&self, n: usize, within: Duration) -> Result<Vec<String>> {
        let deadline = Instant::now() + within;
        loop {
            let messages = self.messages()?;
            if messages.len() >= n {
                return Ok(messages);
            }
            if Instant::now() > deadline {
                bail!(
                    "the SMTP server got {} messages, not {n}, within {within:?}",
                    messages.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The first run of `digits` consecutive ASCII digits in `text` (a code in a message body).
pub fn find_code(text: &str, digits: usize) -> Option<String> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if i - start == digits {
                return Some(text[start..i].to_owned());
            }
        } else {
            i += 1;
        }
    }
    None
}
