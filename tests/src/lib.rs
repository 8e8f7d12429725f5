//! The test harness: starts the real `twofoldd` binary on loopback and talks to it as clients do, over
//! real HTTPS (trusting the certificate the daemon made) and its real admin socket.
//!
//! Readiness comes from the daemon's own `READY=1` on a `NOTIFY_SOCKET` we listen on, as systemd would;
//! nothing here waits on a fixed sleep.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod delivery;
pub mod ranged_ldap;
pub mod samba;

use anyhow::{anyhow, bail, Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use twofold_wire::admin::{AdminAnswer, AdminReply, AdminRequest, ApiScope, NewUser};

/// A binary built from this workspace, in the same profile folder as the running executable (a test in
/// `target/<profile>/deps`, or a tool such as the load generator in `target/<profile>`).
pub fn workspace_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe
        .parent()
        .ok_or_else(|| anyhow!("no folder above {}", exe.display()))?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir
            .parent()
            .ok_or_else(|| anyhow!("no target dir above {}", exe.display()))?;
    }
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} is not built: run `cargo build --workspace --bins` first",
            path.display()
        );
    }
    Ok(path)
}

/// A fresh folder under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Result<TempDir> {
        let unique = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let path = std::env::temp_dir().join(unique);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The config every test daemon starts from; tests append tables (`[lockout.user]`, `[log]`, ...) to
/// change rules. Logging stays at the default `info` unless a test asks for more.
pub fn base_config(data_dir: &Path) -> String {
    format!(
        "version = 1\ndata_dir = \"{}\"\n\n[api]\nlisten = \"127.0.0.1:0\"\n\n[store]\n# cheap hashing keeps tests fast; the defaults are tested in unit tests\nargon2_memory_kib = 1024\nargon2_iterations = 1\n",
        data_dir.display()
    )
}

/// The real daemon binary, running.
pub struct Daemon {
    pub dir: TempDir,
    pub config_path: PathBuf,
    pub api: SocketAddrString,
    child: Option<Child>,
    log_path: PathBuf,
    starts: usize,
    env: Vec<(String, std::ffi::OsString)>,
    /// A command the daemon is started through (see `wrap`); empty: started directly.
    wrapper: Vec<std::ffi::OsString>,
    /// The daemon's arguments (see `command_line`); None: `--config` with the test's file.
    args: Option<Vec<std::ffi::OsString>>,
}

pub type SocketAddrString = String;

impl Daemon {
    /// Starts a daemon with `base_config` plus `extra` TOML.
    pub fn start(extra: &str) -> Result<Daemon> {
        Daemon::start_with_env(extra, &[])
    }

    /// As `start`, with extra environment variables for the daemon process.
    pub fn start_with_env(extra: &str, env: &[(&str, &std::ffi::OsStr)]) -> Result<Daemon> {
        let mut daemon = Daemon::prepare(extra, env)?;
        daemon.launch()?;
        Ok(daemon)
    }

    /// A daemon's folder and configuration, not started: for a test that must set up the data
    /// folder first (a small file system of its own, say). `launch` starts it.
    pub fn prepare(extra: &str, env: &[(&str, &std::ffi::OsStr)]) -> Result<Daemon> {
        let dir = TempDir::new("twofold-e2e")?;
        let data = dir.path().join("data");
        let config_path = dir.path().join("twofold.toml");
        std::fs::write(&config_path, format!("{}{extra}", base_config(&data)))?;
        let daemon = Daemon {
            log_path: dir.path().join("daemon.log"),
            dir,
            config_path,
            api: String::new(),
            child: None,
            starts: 0,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.to_os_string()))
                .collect(),
            wrapper: Vec::new(),
            args: None,
        };
        Ok(daemon)
    }

    /// Starts the daemon through `wrapper`, a command that ends by exec'ing the arguments it is given
    /// (`setpriv`, `unshare`, ...), so that the daemon keeps its process id: for a test that runs it as
    /// another user or in namespaces of its own. Its notify socket is then writable by anyone.
    pub fn wrap(&mut self, wrapper: &[&str]) {
        self.wrapper = wrapper.iter().map(std::ffi::OsString::from).collect();
    }

    /// Starts the daemon with these arguments instead of `--config FILE` (in the test's folder, so
    /// a relative path lands there): for a test of the command line itself.
    pub fn command_line(&mut self, args: &[&std::ffi::OsStr]) {
        self.args = Some(args.iter().map(|a| a.to_os_string()).collect());
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn admin_socket(&self) -> PathBuf {
        self.data_dir().join("admin.sock")
    }

    /// Runs `twofold-admin --socket <this daemon's socket> ARGS` and waits for it.
    pub fn admin_cli(&self, args: &[&str]) -> Result<std::process::Output> {
        Ok(
            std::process::Command::new(workspace_binary("twofold-admin")?)
                .arg("--socket")
                .arg(self.admin_socket())
                .args(args)
                .output()?,
        )
    }

    /// Everything the daemon has logged, across restarts.
    pub fn log(&self) -> Result<String> {
        Ok(std::fs::read_to_string(&self.log_path)?)
    }

    /// Starts the daemon and waits for its READY=1.
    pub fn launch(&mut self) -> Result<()> {
        self.starts += 1;
        let notify_path = self.dir.path().join(format!("notify-{}.sock", self.starts));
        let notify = UnixDatagram::bind(&notify_path)?;
        notify.set_read_timeout(Some(Duration::from_millis(200)))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let mut command = match self.wrapper.split_first() {
            None => Command::new(workspace_binary("twofoldd")?),
            Some((program, args)) => {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&notify_path, std::fs::Permissions::from_mode(0o777))?;
                let mut command = Command::new(program);
                command.args(args).arg(workspace_binary("twofoldd")?);
                command
            }
        };
        match &self.args {
            Some(args) => command.args(args),
            None => command.arg("--config").arg(&self.config_path),
        };
        command
            .current_dir(self.dir.path())
            .env("NOTIFY_SOCKET", &notify_path)
            .env_remove("JOURNAL_STREAM")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("TWOFOLD_CONFIG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // A test that dies (or is killed) takes its daemon with it: the daemon gets SIGKILL when the
        // thread that started it ends, which for a test is the end of the test.
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec here.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        let mut child = command.spawn().context("starting twofoldd")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut buf = [0u8; 4096];
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "twofoldd exited with {status} before READY; log:\n{}",
                    self.log()?
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!(
                    "twofoldd sent no READY=1 within 60 s; log:\n{}",
                    self.log()?
                );
            }
            match notify.recv(&mut buf) {
                Ok(n) => {
                    let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if message.lines().any(|l| l == "READY=1") {
                        let status = message
                            .lines()
                            .find_map(|l| l.strip_prefix("STATUS=listening on https://"))
                            .ok_or_else(|| anyhow!("READY without a STATUS address: {message}"))?;
                        self.api = status
                            .split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_owned();
                        break;
                    }
                }
                Err(e) if read_timed_out(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let _ = std::fs::remove_file(&notify_path);
        self.child = Some(child);
        Ok(())
    }

    /// The daemon's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no shutdown, no flush. Whatever was promised must already be on disk.
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Waits up to `timeout` for the daemon to exit on its own; its exit code, or `None` if it still runs.
    // std has no way to wait for a child with a timeout but polling `try_wait`.
    #[allow(clippy::disallowed_methods)]
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<i32>> {
        let deadline = Instant::now() + timeout;
        while let Some(child) = self.child.as_mut() {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(Some(status.code().unwrap_or(-1)));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(None)
    }

    /// SIGTERM and wait for a clean exit; returns the exit code.
    pub fn terminate(&mut self) -> Result<Option<i32>> {
        if let Some(mut child) = self.child.take() {
            nix_kill(child.id(), "TERM")?;
            return Ok(child.wait()?.code());
        }
        Ok(None)
    }

    /// Rewrites the config (`base_config` plus `extra`) and restarts on the same data folder.
    pub fn restart_with(&mut self, extra: &str) -> Result<()> {
        std::fs::write(
            &self.config_path,
            format!("{}{extra}", base_config(&self.data_dir())),
        )?;
        self.restart()
    }

    /// Starts the same daemon (same config and data) again; the API port may change.
    pub fn restart(&mut self) -> Result<()> {
        self.kill9()?;
        self.launch()
    }

    pub fn api_client(&self) -> Result<Api> {
        Api::new(&self.api, &self.data_dir().join("tls/cert.pem"))
    }

    /// A TLS connector that trusts the daemon's certificate and offers `alpn` (`h2`, `http/1.1`; none
    /// for a client that never gets as far as HTTP), for tests that talk to the listener below HTTP.
    pub fn tls_connector(&self, alpn: &[&[u8]]) -> Result<tokio_rustls::TlsConnector> {
        let mut tls = client_tls(&self.data_dir().join("tls/cert.pem"))?;
        tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls)))
    }

    /// An API client connecting from `local` (a loopback address such as 127.0.0.2).
    pub fn api_client_from(&self, local: std::net::IpAddr) -> Result<Api> {
        Api::from_address(
            &self.api,
            &self.data_dir().join("tls/cert.pem"),
            Some(local),
        )
    }

    pub fn admin(&self) -> Result<Admin> {
        Admin::connect(&self.admin_socket())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.kill9();
        // The test harness shows a test's output only when it fails: then the daemon's own account of
        // what went wrong is right there, while its folder is about to be deleted.
        if let Ok(log) = self.log() {
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!("--- last {} lines of the daemon's log ---", tail.len());
            for line in tail {
                eprintln!("{line}");
            }
        }
    }
}

fn nix_kill(pid: u32, signal: &str) -> Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()?;
    if !status.success() {
        bail!("kill -{signal} {pid} failed");
    }
    Ok(())
}

/// An HTTPS client that trusts only the daemon's certificate, as a relying application would be set up.
#[derive(Clone)]
pub struct Api {
    base: String,
    client: Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    >,
    pub key: Option<String>,
}

#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub raw: String,
}

impl Api {
    pub fn new(addr: &str, ca_cert: &Path) -> Result<Api> {
        Api::from_address(addr, ca_cert, None)
    }

    /// As `new`, connecting from `local` (any 127.x.y.z is this machine's loopback too): a client at
    /// another address, without `client_ip`.
    pub fn from_address(
        addr: &str,
        ca_cert: &Path,
        local: Option<std::net::IpAddr>,
    ) -> Result<Api> {
        let tls = client_tls(ca_cert)?;
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.enforce_http(false);
        http.set_local_address(local);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Api {
            base: format!("https://{addr}"),
            client,
            key: None,
        })
    }

    pub fn with_key(mut self, key: &str) -> Api {
        self.key = Some(key.to_owned());
        self
    }

    /// Sends `body` as is (it need not be valid JSON) and parses the answer as JSON.
    pub async fn raw(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Answer> {
        let content_type = body.map(|_| "application/json");
        self.send(method, path, content_type, body.unwrap_or_default(), &[])
            .await
    }

    /// Sends `body` with the given Content-Type and extra headers (the API key too, when set), as a
    /// client of another protocol would (form bodies, its own header names), and parses the answer
    /// as JSON when it is.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<Answer> {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(key) = &self.key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(Bytes::from(body.to_vec())))?;
        let response = self.client.request(request).await?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await?.to_bytes();
        let raw = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Answer { status, body, raw })
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Answer> {
        self.raw("POST", path, Some(body.to_string().as_bytes()))
            .await
    }

    pub async fn get(&self, path: &str) -> Result<Answer> {
        self.raw("GET", path, None).await
    }

    pub async fn delete(&self, path: &str) -> Result<Answer> {
        self.raw("DELETE", path, None).await
    }
}

/// A TLS client configuration that trusts only `ca_cert`, as a relying application would be set up.
/// Whether a read on a socket with a read timeout ended because the timeout passed, so the caller
/// polls again: Unix reports it as EAGAIN (`WouldBlock`), other platforms as `TimedOut`.
pub fn read_timed_out(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

pub fn client_tls(ca_cert: &Path) -> Result<rustls::ClientConfig> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca_cert).with_context(|| ca_cert.display().to_string())?;
    for cert in rustls_pemfile_certs(&pem)? {
        roots.add(cert)?;
    }
    Ok(rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn rustls_pemfile_certs(pem: &[u8]) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    Ok(rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()?)
}

/// The admin socket, as `twofold-admin` speaks it.
pub struct Admin {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Admin {
    pub fn connect(path: &Path) -> Result<Admin> {
        let stream = UnixStream::connect(path).with_context(|| path.display().to_string())?;
        Ok(Admin {
            writer: stream.try_clone()?,
            reader: BufReader::new(stream),
        })
    }

    pub fn call(&mut self, request: &AdminRequest) -> Result<AdminAnswer> {
        self.call_raw(&serde_json::to_string(request)?)
    }

    pub fn call_raw(&mut self, line: &str) -> Result<AdminAnswer> {
        self.writer.write_all(line.as_bytes())?;
        self.writer.write_all(b"\n")?;
        let mut answer = String::new();
        self.reader.read_line(&mut answer)?;
        serde_json::from_str(&answer).with_context(|| answer.clone())
    }

    /// Calls and expects success.
    pub fn ok(&mut self, request: &AdminRequest) -> Result<AdminReply> {
        match self.call(request)? {
            AdminAnswer::Ok { reply } => Ok(*reply),
            AdminAnswer::Error { error } => bail!("admin request {request:?} failed: {error:?}"),
        }
    }

    pub fn create_user(&mut self, username: &str) -> Result<()> {
        self.ok(&AdminRequest::UserCreate(NewUser {
            username: username.to_owned(),
            email: Some(format!("{username}@example.com")),
            ..NewUser::default()
        }))?;
        Ok(())
    }

    /// A key with every scope, trusted to name the end user's address: the tests act as every kind of
    /// relying application at once.
    pub fn api_key(&mut self, name: &str) -> Result<String> {
        self.api_key_with(name, &ApiScope::ALL, true)
    }

    pub fn api_key_with(
        &mut self,
        name: &str,
        scopes: &[ApiScope],
        trusted_proxy: bool,
    ) -> Result<String> {
        match self.ok(&AdminRequest::ApiKeyCreate {
            name: name.to_owned(),
            scopes: scopes.to_vec(),
            trusted_proxy,
        })? {
            AdminReply::ApiKeyCreated { key, .. } => Ok(key),
            other => bail!("unexpected reply {other:?}"),
        }
    }
}

/// The code `oathtool` (an independent implementation) computes for a base32 secret, `offset` seconds
/// from now.
pub fn oathtool(secret: &str, offset_seconds: i64, extra: &[&str]) -> Result<String> {
    let mut command = Command::new("oathtool");
    if !extra.iter().any(|a| a.starts_with("--totp")) {
        command.arg("--totp");
    }
    let output = command
        .arg("-b")
        .arg(secret)
        .arg("-N")
        .arg(format!("{offset_seconds:+} seconds"))
        .args(extra)
        .output()
        .context("running oathtool (Debian package oathtool)")?;
    if !output.status.success() {
        bail!(
            "oathtool failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

/// Unix time now, for tests that must stay clear of a 30 s step boundary.
#[allow(clippy::disallowed_methods)]
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// An enrolled user: API enrollment confirmed with an oathtool code.
pub struct Enrolled {
    pub user: String,
    pub device: String,
    pub secret: String,
    pub backup_codes: Vec<String>,
    pub uri: String,
    pub qr_png_base64: String,
}

/// Creates `user`, enrolls a TOTP device over the API, and confirms it with oathtool's code for the
/// previous step (so the current and next steps stay free for the test).
pub async fn enroll(admin: &mut Admin, api: &Api, user: &str) -> Result<Enrolled> {
    admin.create_user(user)?;
    enroll_existing(api, user, "phone").await
}

/// Enrolls a TOTP device labelled `label` over the API for an existing user, and confirms it with
/// oathtool's code for the previous step.
pub async fn enroll_existing(api: &Api, user: &str, label: &str) -> Result<Enrolled> {
    enroll_proven(api, user, label, None).await
}

/// As `enroll_existing`, with the user's proof (a current code of one of their factors), which a user
/// who already has an active device needs.
pub async fn enroll_proven(
    api: &Api,
    user: &str,
    label: &str,
    proof: Option<&str>,
) -> Result<Enrolled> {
    let started = api
        .post(
            &format!("/api/v1/users/{user}/totp"),
            &serde_json::json!({"label": label, "code": proof}),
        )
        .await?;
    if started.status != 201 {
        bail!("enroll answered {}: {}", started.status, started.raw);
    }
    let secret = started.body["secret"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let device = started.body["device"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let code = oathtool(&secret, -30, &[])?;
    let confirmed = api
        .post(
            &format!("/api/v1/users/{user}/totp/{device}/confirm"),
            &serde_json::json!({"code": code}),
        )
        .await?;
    if confirmed.status != 200 {
        bail!("confirm answered {}: {}", confirmed.status, confirmed.raw);
    }
    let backup_codes = confirmed.body["backup_codes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Ok(Enrolled {
        user: user.to_owned(),
        device,
        secret,
        backup_codes,
        uri: started.body["otpauth_uri"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        qr_png_base64: started.body["qr_png_base64"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    })
}

/// Sends three wrong codes to a confirmation endpoint (`confirm`: TOTP or restore confirm), each
/// answered 400, and checks that they locked `user` (the test's lockout locks at 3) and that the right
/// code is then refused 429 `locked` unchecked. Returns that refusal.
pub async fn three_wrong_confirmations_lock(
    api: &Api,
    admin: &mut Admin,
    user: &str,
    confirm: &str,
    right: &str,
) -> Result<Answer> {
    use twofold_wire::admin::{AdminReply, AdminRequest};
    let wrong = format!("{:06}", (right.parse::<u32>()? + 500_000) % 1_000_000);
    for _ in 0..3 {
        let a = api
            .post(confirm, &serde_json::json!({"code": wrong}))
            .await?;
        anyhow::ensure!(a.status == 400, "a wrong confirmation: {}", a.raw);
    }
    match admin.ok(&AdminRequest::UserShow { user: user.into() })? {
        AdminReply::User(u) => anyhow::ensure!(u.locked && u.failures == 3, "{u:?}"),
        other => anyhow::bail!("unexpected {other:?}"),
    }
    let refused = api
        .post(confirm, &serde_json::json!({"code": right}))
        .await?;
    anyhow::ensure!(
        (refused.status, refused.body["error"]["code"].as_str()) == (429, Some("locked")),
        "the right code while locked: {}",
        refused.raw
    );
    Ok(refused)
}
