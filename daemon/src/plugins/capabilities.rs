//! The host functions a plugin may call, each checked against what its `[[plugin]]` table grants.
//!
//! The rule: nothing is granted by default. A function a plugin was not granted answers an error the
//! plugin can read (it never traps), so a plugin can report "not allowed" as its outcome and the daemon
//! carries on. Specifically:
//! - `config` reads only the plugin's own `[plugin.config]` table; `secret` only the files named in its
//!   `[plugin.secrets]` table (read when the plugin is loaded, never logged).
//! - `fetch` reaches only hosts in `allow_hosts`, over HTTPS checked against the system's CAs or the
//!   plugin's `ca_file`; plain `http://` only when `allow_plain_http_loopback` is set *and* the host is a
//!   loopback address. No redirects are followed. Each request has a timeout, bodies are capped, and a
//!   call may make only `http_requests_per_call` requests.
//! - `log` lines are capped in length and number per call, and the code is blanked out of them.
//! - `handover` needs `handover = true`.
//! - Every argument is size-checked where it lies, in the plugin's memory, before the host copies it:
//!   log lines, notes and outcome texts are cut to a bounded prefix; a request with too long a URL, too
//!   many or too large headers, or too large a body is refused whole. Every text a plugin says is made
//!   one safe line by `said::plugin_text`.
//!
//! Time and CPU spent in here are the host's, not the plugin's: they are subtracted from the plugin's
//! CPU budget (`budget`), and bounded by the HTTP timeout instead.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use wasmtime::component::{Linker, WasmList, WasmStr};
use wasmtime::{Store, StoreContextMut, StoreLimits};

use super::budget::{thread_cpu, Budget};
use super::said::plugin_text;
use super::twofold::delivery::host::{
    HostError, HostErrorKind, HttpRequest, HttpResponse, LogLevel,
};
use super::twofold::delivery::types::Retry;
use super::Outcome;
use crate::delivery::config::PluginConfig;

/// The system's CA bundle on Debian and its derivatives.
const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Largest request body a plugin may send, and answer body it may receive.
pub const MAX_REQUEST_BODY: usize = 64 * 1024;
pub const MAX_RESPONSE_BODY: usize = 256 * 1024;
/// Log lines one call may write, and their length.
const MAX_LOG_LINES: u32 = 50;
const MAX_LOG_BYTES: usize = 1000;
/// The longest outcome text (a gateway's message id or a failure reason) and handover note kept.
pub const MAX_REASON_BYTES: usize = 500;
const MAX_NOTE_BYTES: usize = 1000;
/// A request's URL, its header count and the total size of its header names and values: a gateway
/// request needs a few short headers; 10,000 headers of 1 KiB are an attack on the gateway or on us.
const MAX_URL_BYTES: usize = 4096;
const MAX_HEADERS: usize = 32;
const MAX_HEADER_BYTES: usize = 16 * 1024;
/// A name shown back in an error (a secret's name, a URL refused for its length).
const MAX_NAME_BYTES: usize = 200;
/// What replaces the code wherever a plugin's text is logged or recorded.
pub const REDACTED: &str = "[code]";

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// One entry of `allow_hosts`: a host name or IP address and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    host: String,
    /// None: the scheme's default port.
    port: Option<u16>,
}

impl AllowedHost {
    pub fn parse(text: &str) -> Result<AllowedHost, String> {
        let text = text.trim();
        if text.contains("://") || text.contains('/') {
            return Err("give a host or host:port, not a URL".into());
        }
        let (host, port) = match text.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(':') && !h.is_empty() => (
                h,
                Some(
                    p.parse::<u16>()
                        .map_err(|_| format!("port {p:?} is not a number"))?,
                ),
            ),
            _ => (text, None),
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_lowercase();
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("empty or malformed host".into());
        }
        Ok(AllowedHost { host, port })
    }

    /// The host, and the port if one is given.
    pub fn parts(&self) -> (&str, Option<u16>) {
        (&self.host, self.port)
    }

    pub fn permits(&self, host: &str, port: u16, default_port: u16) -> bool {
        self.host == host && self.port.unwrap_or(default_port) == port
    }
}

/// What one plugin was granted, prepared when it is loaded.
pub struct Grant {
    pub name: String,
    config: BTreeMap<String, String>,
    secrets: BTreeMap<String, String>,
    allow_hosts: Vec<AllowedHost>,
    plain_http_loopback: bool,
    handover: bool,
    client: HttpClient,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("name", &self.name)
            .field("allow_hosts", &self.allow_hosts)
            .finish_non_exhaustive()
    }
}

impl Grant {
    /// Reads the secrets and the CA file and builds the plugin's HTTP client.
    pub fn new(config: &PluginConfig, http_timeout: Duration) -> Result<Grant, String> {
        let mut secrets = BTreeMap::new();
        for (name, path) in &config.secrets {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("secret {name}: {}: {e}", path.display()))?;
            secrets.insert(name.clone(), text.trim_end_matches(['\n', '\r']).to_owned());
        }
        let allow_hosts = config
            .allow_hosts
            .iter()
            .map(|h| AllowedHost::parse(h))
            .collect::<Result<Vec<_>, _>>()?;
        let ca_file = config
            .ca_file
            .as_deref()
            .unwrap_or(Path::new(SYSTEM_CA_FILE));
        Ok(Grant {
            name: config.name.clone(),
            config: config.config.clone(),
            secrets,
            allow_hosts,
            plain_http_loopback: config.allow_plain_http_loopback,
            handover: config.handover,
            client: http_client(ca_file, config.ca_file.is_some(), http_timeout)?,
        })
    }

    /// Why `url` may not be fetched, if it may not.
    fn refuse(&self, uri: &hyper::Uri) -> Option<String> {
        let (default_port, plain) = match uri.scheme_str() {
            Some("https") => (443, false),
            Some("http") => (80, true),
            _ => return Some("only https:// URLs can be fetched".into()),
        };
        let Some(host) = uri.host() else {
            return Some("the URL names no host".into());
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_lowercase();
        let port = uri.port_u16().unwrap_or(default_port);
        if !self
            .allow_hosts
            .iter()
            .any(|a| a.permits(&host, port, default_port))
        {
            return Some(format!(
                "host {host}:{port} is not in this plugin's allow_hosts"
            ));
        }
        if plain {
            let loopback = host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if !(self.plain_http_loopback && loopback) {
                return Some(format!(
                    "plain http:// to {host} is refused: use https://, or for a loopback relay set allow_plain_http_loopback"
                ));
            }
        }
        None
    }
}

fn http_client(ca_file: &Path, configured: bool, timeout: Duration) -> Result<HttpClient, String> {
    let mut roots = rustls::RootCertStore::empty();
    match std::fs::read(ca_file) {
        Ok(pem) => {
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| format!("ca_file {}: {e}", ca_file.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("ca_file {}: {e}", ca_file.display()))?;
            }
            if roots.is_empty() {
                return Err(format!(
                    "ca_file {}: no certificate found",
                    ca_file.display()
                ));
            }
        }
        Err(e) if configured => return Err(format!("ca_file {}: {e}", ca_file.display())),
        // No system bundle: HTTPS then fails per request, with a message naming the certificate.
        Err(_) => {}
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(timeout));
    http.set_nodelay(true);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector))
}

/// Blanks every occurrence of the code out of a plugin's text.
pub fn redact(text: &str, code: &str) -> String {
    if code.is_empty() {
        text.to_owned()
    } else {
        text.replace(code, REDACTED)
    }
}

/// Limits of one call, from `[delivery]`.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    pub memory_bytes: usize,
    pub cpu: Duration,
    pub http_timeout: Duration,
    pub http_requests: u32,
    /// The whole call, HTTP requests included.
    pub deadline: Duration,
}

/// The store's data during one call into a plugin.
pub struct CallState {
    pub(super) limits: StoreLimits,
    grant: Arc<Grant>,
    code: String,
    /// The CPU and wall clocks of the call; host functions count as the host's.
    pub(super) budget: Budget,
    http_timeout: Duration,
    http_left: u32,
    log_lines: u32,
    /// The panic message the SDK logged before aborting, if any.
    pub(super) panic_message: Option<String>,
    /// Set when the plugin asked for the message to be handed over in person.
    pub(super) handover_note: Option<String>,
    runtime: tokio::runtime::Handle,
}

impl CallState {
    pub fn new(
        grant: Arc<Grant>,
        code: &str,
        limits: CallLimits,
        runtime: tokio::runtime::Handle,
    ) -> CallState {
        CallState {
            limits: wasmtime::StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .trap_on_grow_failure(true)
                .build(),
            grant,
            code: code.to_owned(),
            budget: Budget::start(limits.cpu, limits.deadline),
            http_timeout: limits.http_timeout,
            http_left: limits.http_requests,
            log_lines: 0,
            panic_message: None,
            handover_note: None,
            runtime,
        }
    }

    fn fetch_now(&mut self, request: HttpRequest) -> Result<HttpResponse, HostError> {
        let invalid = |message: String| HostError {
            kind: HostErrorKind::Invalid,
            message,
        };
        if self.http_left == 0 {
            return Err(invalid("too many HTTP requests in one delivery".into()));
        }
        self.http_left -= 1;
        let uri: hyper::Uri = request.url.parse().map_err(|e| {
            invalid(format!(
                "URL {}: {e}",
                plugin_text(&request.url, &self.code, MAX_NAME_BYTES)
            ))
        })?;
        if let Some(refusal) = self.grant.refuse(&uri) {
            tracing::warn!(target: "twofold::plugin", plugin = %self.grant.name, refusal = %plugin_text(&refusal, &self.code, MAX_URL_BYTES), "plugin HTTP request refused");
            return Err(HostError {
                kind: HostErrorKind::NotAllowed,
                message: refusal,
            });
        }
        let method = match request.method.to_ascii_uppercase().as_str() {
            m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE") => {
                hyper::Method::from_bytes(m.as_bytes()).map_err(|e| invalid(e.to_string()))?
            }
            other => {
                return Err(invalid(format!(
                    "method {other:?} is not one of GET, POST, PUT, PATCH, DELETE"
                )))
            }
        };
        let mut builder = hyper::Request::builder().method(method).uri(uri);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let http_request = builder
            .body(Full::new(Bytes::from(request.body)))
            .map_err(|e| invalid(format!("request: {e}")))?;
        let client = self.grant.client.clone();
        let timeout = self.http_timeout.min(self.budget.left());
        if timeout.is_zero() {
            return Err(HostError {
                kind: HostErrorKind::Timeout,
                message: "the delivery's deadline (plugin_deadline_seconds) has passed".into(),
            });
        }
        let answer = self.runtime.block_on(async move {
            tokio::time::timeout(timeout, async move {
                let response = client
                    .request(http_request)
                    .await
                    .map_err(|e| describe_client_error(&e))?;
                let status = response.status().as_u16();
                let headers = response
                    .headers()
                    .iter()
                    .filter_map(|(n, v)| {
                        v.to_str()
                            .ok()
                            .map(|v| (n.as_str().to_owned(), v.to_owned()))
                    })
                    .collect();
                let body = Limited::new(response.into_body(), MAX_RESPONSE_BODY)
                    .collect()
                    .await
                    .map_err(|e| HostError {
                        kind: HostErrorKind::Other,
                        message: format!(
                            "reading the answer (at most {MAX_RESPONSE_BODY} bytes): {e}"
                        ),
                    })?
                    .to_bytes()
                    .to_vec();
                Ok::<_, HostError>(HttpResponse {
                    status,
                    headers,
                    body,
                })
            })
            .await
            .map_err(|_| HostError {
                kind: HostErrorKind::Timeout,
                message: format!("no answer within {:.1} s", timeout.as_secs_f64()),
            })?
        });
        answer.map_err(|e| HostError {
            message: redact(&e.message, &self.code),
            ..e
        })
    }
}

/// hyper's client errors say "client error (Connect)"; the cause chain says what happened, and its
/// kind: a rustls error anywhere in it is TLS, an I/O error tells a refused connection from a timeout.
fn describe_client_error(e: &hyper_util::client::legacy::Error) -> HostError {
    let mut message = e.to_string();
    let mut kind = None;
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        if kind.is_none() {
            kind = error_kind(s);
        }
        source = s.source();
    }
    let kind = kind.unwrap_or(if e.is_connect() && message.contains("dns error") {
        HostErrorKind::Dns
    } else {
        HostErrorKind::Other
    });
    HostError { kind, message }
}

fn error_kind(e: &(dyn std::error::Error + 'static)) -> Option<HostErrorKind> {
    if e.downcast_ref::<rustls::Error>().is_some() {
        return Some(HostErrorKind::Tls);
    }
    io_error_kind(e.downcast_ref::<std::io::Error>()?)
}

/// hyper-rustls wraps the TLS error in an I/O error in an I/O error, and an I/O error's `source()`
/// skips what it wraps: look inside each layer.
fn io_error_kind(io: &std::io::Error) -> Option<HostErrorKind> {
    use std::io::ErrorKind;
    if let Some(inner) = io.get_ref() {
        if inner.downcast_ref::<rustls::Error>().is_some() {
            return Some(HostErrorKind::Tls);
        }
        if let Some(kind) = inner
            .downcast_ref::<std::io::Error>()
            .and_then(io_error_kind)
        {
            return Some(kind);
        }
    }
    match io.kind() {
        ErrorKind::ConnectionRefused
        | ErrorKind::HostUnreachable
        | ErrorKind::NetworkUnreachable
        | ErrorKind::AddrNotAvailable => Some(HostErrorKind::ConnectionRefused),
        ErrorKind::TimedOut => Some(HostErrorKind::Timeout),
        _ => None,
    }
}

/// The host functions, registered by hand rather than through the generated `Host` trait: the
/// generated bindings copy every string and list a plugin passes into the host before any check, so a
/// plugin could make the host allocate up to its whole memory per call. Here each argument is read in
/// place ([`WasmStr`], [`WasmList`]) and only a bounded part is copied (see `said`).
pub fn add_host_functions(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    // The types interface holds types only; the component still imports it by name.
    linker.instance(&format!("twofold:delivery/types@{}", super::WIT_VERSION))?;
    let mut host = linker.instance(&format!("twofold:delivery/host@{}", super::WIT_VERSION))?;
    host.func_wrap(
        "log",
        |mut store: StoreContextMut<'_, CallState>, (level, message): (LogLevel, WasmStr)| {
            let (started, cpu) = (Instant::now(), thread_cpu());
            let text = {
                let code = store.data().code.clone();
                plugin_text(&message.to_str(&store)?, &code, MAX_LOG_BYTES)
            };
            let state = store.data_mut();
            state.log(level, text);
            state
                .budget
                .add_host(started.elapsed(), thread_cpu().saturating_sub(cpu));
            Ok(())
        },
    )?;
    host.func_wrap(
        "config",
        |store: StoreContextMut<'_, CallState>, (key,): (WasmStr,)| {
            let key = key.to_str(&store)?;
            Ok((store.data().grant.config.get(key.as_ref()).cloned(),))
        },
    )?;
    host.func_wrap(
        "secret",
        |store: StoreContextMut<'_, CallState>, (name,): (WasmStr,)| {
            let name = name.to_str(&store)?;
            let answer = store.data().grant.secrets.get(name.as_ref()).cloned();
            Ok((answer.ok_or_else(|| {
                format!(
                    "secret {} is not granted to this plugin ([plugin.secrets])",
                    plugin_text(&name, "", MAX_NAME_BYTES)
                )
            }),))
        },
    )?;
    host.func_wrap(
        "fetch",
        |mut store: StoreContextMut<'_, CallState>, (request,): (WasmHttpRequest,)| {
            let (started, cpu) = (Instant::now(), thread_cpu());
            let answer = match request.read(&mut store) {
                Ok(request) => store.data_mut().fetch_now(request),
                Err(refusal) => Err(HostError {
                    kind: HostErrorKind::Invalid,
                    message: refusal,
                }),
            };
            store
                .data_mut()
                .budget
                .add_host(started.elapsed(), thread_cpu().saturating_sub(cpu));
            Ok((answer,))
        },
    )?;
    host.func_wrap(
        "handover",
        |mut store: StoreContextMut<'_, CallState>, (note,): (WasmStr,)| {
            let note = {
                let code = store.data().code.clone();
                plugin_text(&note.to_str(&store)?, &code, MAX_NOTE_BYTES)
            };
            Ok((store.data_mut().handover(note),))
        },
    )?;
    Ok(())
}

/// `http-request` as it lies in the plugin's memory, read only once its sizes are known to be within
/// the limits.
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lift)]
#[component(record)]
pub struct WasmHttpRequest {
    method: WasmStr,
    url: WasmStr,
    headers: WasmList<(WasmStr, WasmStr)>,
    body: WasmList<u8>,
}

impl WasmHttpRequest {
    /// Copies the request out of the plugin's memory, or says which limit it breaks.
    fn read(&self, store: &mut StoreContextMut<'_, CallState>) -> Result<HttpRequest, String> {
        if self.headers.len() > MAX_HEADERS {
            return Err(format!(
                "{} headers: at most {MAX_HEADERS} may be sent",
                self.headers.len()
            ));
        }
        if self.body.len() > MAX_REQUEST_BODY {
            return Err(format!("request body over {MAX_REQUEST_BODY} bytes"));
        }
        // At most MAX_HEADERS pairs of (pointer, length): the texts stay in the plugin's memory.
        let pairs = self
            .headers
            .iter(&mut *store)
            .and_then(|pairs| pairs.collect::<wasmtime::Result<Vec<_>>>())
            .map_err(|e| format!("headers: {e}"))?;
        let store = &*store;
        let code = store.data().code.clone();
        let text = |s: &WasmStr, what: &str, max: usize| -> Result<String, String> {
            let s = s.to_str(store).map_err(|e| format!("{what}: {e}"))?;
            if s.len() > max {
                return Err(format!("{what} over {max} bytes"));
            }
            Ok(s.into_owned())
        };
        let method = text(&self.method, "method", 16)?;
        let url = text(&self.url, "URL", MAX_URL_BYTES)
            .map_err(|e| plugin_text(&e, &code, MAX_NAME_BYTES))?;
        let mut headers = Vec::with_capacity(pairs.len());
        let mut total = 0usize;
        for (name, value) in &pairs {
            let (name, value) = (
                name.to_str(store).map_err(|e| format!("header: {e}"))?,
                value.to_str(store).map_err(|e| format!("header: {e}"))?,
            );
            total = total.saturating_add(name.len() + value.len());
            if total > MAX_HEADER_BYTES {
                return Err(format!("headers over {MAX_HEADER_BYTES} bytes in all"));
            }
            headers.push((name.into_owned(), value.into_owned()));
        }
        let body = self.body.as_le_slice(store).to_vec();
        Ok(HttpRequest {
            method,
            url,
            headers,
            body,
        })
    }
}

/// `outcome` as it lies in the plugin's memory: its text is read with [`plugin_text`]'s bound.
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lift)]
#[component(variant)]
pub enum WasmOutcome {
    #[component(name = "delivered")]
    Delivered(WasmStr),
    #[component(name = "retry-later")]
    RetryLater(WasmRetry),
    #[component(name = "failed")]
    Failed(WasmStr),
}

/// `retry` as it lies in the plugin's memory.
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lift)]
#[component(record)]
pub struct WasmRetry {
    reason: WasmStr,
    #[component(name = "after-seconds")]
    after_seconds: Option<u32>,
}

impl WasmOutcome {
    pub(super) fn read(&self, store: &Store<CallState>) -> wasmtime::Result<Outcome> {
        let code = store.data().code.as_str();
        let text = |s: &WasmStr| -> wasmtime::Result<String> {
            Ok(plugin_text(&s.to_str(store)?, code, MAX_REASON_BYTES))
        };
        Ok(match self {
            WasmOutcome::Delivered(s) => Outcome::Delivered(text(s)?),
            WasmOutcome::RetryLater(r) => Outcome::RetryLater(Retry {
                reason: text(&r.reason)?,
                after_seconds: r.after_seconds,
            }),
            WasmOutcome::Failed(s) => Outcome::Failed(text(s)?),
        })
    }
}

impl CallState {
    fn log(&mut self, level: LogLevel, text: String) {
        if let Some(message) = text.strip_prefix("panic: ") {
            if self.panic_message.is_none() {
                self.panic_message = Some(message.to_owned());
            }
        }
        self.log_lines += 1;
        if self.log_lines <= MAX_LOG_LINES {
            let plugin = self.grant.name.as_str();
            match level {
                LogLevel::Debug => tracing::debug!(target: "twofold::plugin", plugin, "{text}"),
                LogLevel::Info => tracing::info!(target: "twofold::plugin", plugin, "{text}"),
                LogLevel::Warn => tracing::warn!(target: "twofold::plugin", plugin, "{text}"),
                LogLevel::Error => tracing::error!(target: "twofold::plugin", plugin, "{text}"),
            }
        } else if self.log_lines == MAX_LOG_LINES + 1 {
            tracing::warn!(target: "twofold::plugin", plugin = %self.grant.name, "more than {MAX_LOG_LINES} log lines in one call: the rest are dropped");
        }
    }

    fn handover(&mut self, note: String) -> Result<(), String> {
        if !self.grant.handover {
            return Err(
                "the handover capability is not granted to this plugin (handover = true)".into(),
            );
        }
        self.handover_note = Some(note);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_entries_parse_and_match() {
        let table = [
            ("sms.example.com", Some(("sms.example.com", None))),
            (
                "SMS.example.com:8443",
                Some(("sms.example.com", Some(8443))),
            ),
            ("127.0.0.1:9000", Some(("127.0.0.1", Some(9000)))),
            ("[::1]:9000", Some(("::1", Some(9000)))),
            ("https://sms.example.com", None),
            ("sms.example.com/path", None),
            ("host:port", None),
            ("", None),
        ];
        for (text, expected) in table {
            let parsed = AllowedHost::parse(text).ok();
            let expected = expected.map(|(h, p)| AllowedHost {
                host: h.to_owned(),
                port: p,
            });
            assert_eq!(parsed, expected, "{text}");
        }
        let a = AllowedHost::parse("sms.example.com").unwrap_or_else(|e| unreachable!("{e}"));
        assert!(a.permits("sms.example.com", 443, 443));
        assert!(!a.permits("sms.example.com", 8443, 443));
        assert!(!a.permits("evil.example.com", 443, 443));
    }

    #[test]
    fn host_errors_are_sorted_by_what_the_connection_reported() {
        use std::io::{Error as Io, ErrorKind};
        let tls = || rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        // (the error as hyper's cause chain holds it, its kind)
        let table: Vec<(Io, Option<HostErrorKind>)> = vec![
            // hyper-rustls: the handshake's error in an I/O error in an I/O error.
            (
                Io::other(Io::new(ErrorKind::InvalidData, tls())),
                Some(HostErrorKind::Tls),
            ),
            (
                Io::new(ErrorKind::InvalidData, tls()),
                Some(HostErrorKind::Tls),
            ),
            (
                Io::from(ErrorKind::ConnectionRefused),
                Some(HostErrorKind::ConnectionRefused),
            ),
            (
                Io::from(ErrorKind::NetworkUnreachable),
                Some(HostErrorKind::ConnectionRefused),
            ),
            (Io::from(ErrorKind::TimedOut), Some(HostErrorKind::Timeout)),
            (Io::from(ErrorKind::ConnectionReset), None),
        ];
        for (error, kind) in table {
            assert_eq!(error_kind(&error), kind, "{error:?}");
        }
        assert_eq!(error_kind(&tls()), Some(HostErrorKind::Tls));
    }

    #[test]
    fn codes_are_blanked_out() {
        assert_eq!(
            redact("code 123456 sent, id 9123456", "123456"),
            "code [code] sent, id 9[code]"
        );
        assert_eq!(redact("nothing", ""), "nothing");
    }
}
