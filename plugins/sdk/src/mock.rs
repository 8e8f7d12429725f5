//! A stand-in for the daemon, so that a plugin's `deliver` runs in `cargo test` on the build machine:
//! canned config values, secrets and HTTP answers go in; the outcome, the requests the plugin sent, its
//! log lines and its handover note come out.
//!
//! ```ignore
//! use twofold_plugin_sdk::mock::{message, MockHost};
//! use twofold_plugin_sdk::Outcome;
//!
//! #[test]
//! fn a_busy_gateway_is_retried_after_its_retry_after() {
//!     let run = MockHost::new()
//!         .config("url", "https://sms.example.net/send")
//!         .secret("token", "t0k")
//!         .answer(429, &[("Retry-After", "2")], "")
//!         .deliver::<MyGateway>(message("+41 79 123 45 67", "123456"));
//!     assert!(matches!(run.outcome, Outcome::RetryLater(ref r) if r.after_seconds == Some(2)));
//!     assert_eq!(run.requests[0].header("authorization"), Some("Bearer t0k"));
//! }
//! ```
//!
//! Like the daemon, the mock refuses a secret not granted, a host outside `allow_hosts` (when the test
//! sets any), more requests than answers scripted (an error of kind `Other`), and `handover` unless
//! granted. It does not blank the code out of the log: a test can see what the plugin wrote.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};

use crate::{
    Channel, DeliveryPlugin, HostError, HostErrorKind, HttpRequest, HttpResponse, LogLevel, Message,
    Outcome,
};

/// What the plugin did in one mocked delivery.
#[derive(Debug)]
pub struct Delivery {
    pub outcome: Outcome,
    /// Every request the plugin sent, in order.
    pub requests: Vec<HttpRequest>,
    pub log: Vec<(LogLevel, String)>,
    /// The note, when the plugin queued the message for handover.
    pub handover_note: Option<String>,
}

impl Delivery {
    /// The log lines' texts, one string each.
    pub fn log_text(&self) -> Vec<&str> {
        self.log.iter().map(|(_, line)| line.as_str()).collect()
    }
}

/// The daemon as a test sees it: what the plugin is granted, and what the gateway will answer.
#[derive(Default)]
pub struct MockHost {
    config: BTreeMap<String, String>,
    secrets: BTreeMap<String, String>,
    allow_hosts: Vec<String>,
    answers: VecDeque<Result<HttpResponse, HostError>>,
    handover: bool,
}

impl MockHost {
    pub fn new() -> MockHost {
        MockHost::default()
    }

    /// A `[plugin.config]` value.
    pub fn config(mut self, key: &str, value: &str) -> MockHost {
        self.config.insert(key.to_owned(), value.to_owned());
        self
    }

    /// A `[plugin.secrets]` entry, with the file's contents.
    pub fn secret(mut self, name: &str, value: &str) -> MockHost {
        self.secrets.insert(name.to_owned(), value.to_owned());
        self
    }

    /// `allow_hosts` entries (`host` or `host:port`); when none is given, every host is allowed.
    pub fn allow_hosts(mut self, hosts: &[&str]) -> MockHost {
        self.allow_hosts.extend(hosts.iter().map(|h| h.to_ascii_lowercase()));
        self
    }

    /// The gateway's next answer.
    pub fn answer(mut self, status: u16, headers: &[(&str, &str)], body: &str) -> MockHost {
        self.answers.push_back(Ok(HttpResponse {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }));
        self
    }

    /// The next request gets no answer, for this reason (`ConnectionRefused`, `Timeout`, `Tls`, ...).
    pub fn fail(mut self, kind: HostErrorKind, message: &str) -> MockHost {
        self.answers.push_back(Err(HostError {
            kind,
            message: message.to_owned(),
        }));
        self
    }

    /// Grants the `handover` capability.
    pub fn handover(mut self) -> MockHost {
        self.handover = true;
        self
    }

    /// Runs the plugin's `deliver` for `message` against this host.
    pub fn deliver<P: DeliveryPlugin>(self, message: Message) -> Delivery {
        STATE.with(|s| {
            *s.borrow_mut() = Some(State {
                host: self,
                requests: Vec::new(),
                log: Vec::new(),
                handover_note: None,
            })
        });
        let outcome = P::deliver(message);
        let state = STATE.with(|s| s.borrow_mut().take());
        let (requests, log, handover_note) = state
            .map(|s| (s.requests, s.log, s.handover_note))
            .unwrap_or_default();
        Delivery {
            outcome,
            requests,
            log,
            handover_note,
        }
    }
}

/// A message as the daemon sends one: SMS to `destination` with `code`, for user `alice`, valid five
/// minutes, first attempt. Change fields as a test needs.
pub fn message(destination: &str, code: &str) -> Message {
    Message {
        channel: Channel::Sms,
        destination: destination.to_owned(),
        code: code.to_owned(),
        user: "alice".into(),
        display_name: Some("Alice Example".into()),
        locale: "en".into(),
        expires_at: 1_800_000_300,
        valid_seconds: 300,
        transaction: "tx-0001".into(),
        attempt: 1,
    }
}

struct State {
    host: MockHost,
    requests: Vec<HttpRequest>,
    log: Vec<(LogLevel, String)>,
    handover_note: Option<String>,
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

fn with_state<T>(f: impl FnOnce(&mut State) -> T) -> T {
    STATE.with(|s| match s.borrow_mut().as_mut() {
        Some(state) => f(state),
        None => panic!(
            "a host function was called outside MockHost::deliver: in `cargo test`, run the plugin with twofold_plugin_sdk::mock::MockHost"
        ),
    })
}

/// The host functions as the SDK calls them when not built for wasm32.
pub(crate) mod host {
    use super::*;

    pub fn log(level: LogLevel, message: &str) {
        with_state(|s| s.log.push((level, message.to_owned())));
    }

    pub fn config(key: &str) -> Option<String> {
        with_state(|s| s.host.config.get(key).cloned())
    }

    pub fn secret(name: &str) -> Result<String, String> {
        with_state(|s| {
            s.host
                .secrets
                .get(name)
                .cloned()
                .ok_or_else(|| format!("secret {name} is not granted to this plugin ([plugin.secrets])"))
        })
    }

    pub fn fetch(request: &HttpRequest) -> Result<HttpResponse, HostError> {
        with_state(|s| {
            s.requests.push(request.clone());
            if let Some(refusal) = refuse(&s.host.allow_hosts, &request.url) {
                return Err(HostError {
                    kind: HostErrorKind::NotAllowed,
                    message: refusal,
                });
            }
            s.host.answers.pop_front().unwrap_or_else(|| {
                Err(HostError {
                    kind: HostErrorKind::Other,
                    message: format!("the mock host has no answer scripted for request {}", s.requests.len()),
                })
            })
        })
    }

    pub fn handover(note: &str) -> Result<(), String> {
        with_state(|s| {
            if !s.host.handover {
                return Err("the handover capability is not granted to this plugin (handover = true)".into());
            }
            s.handover_note = Some(note.to_owned());
            Ok(())
        })
    }

    /// The daemon's check, simplified: scheme and `host[:port]` against the list.
    fn refuse(allow_hosts: &[String], url: &str) -> Option<String> {
        if allow_hosts.is_empty() {
            return None;
        }
        let (scheme, rest) = url.split_once("://")?;
        let default_port = match scheme {
            "https" => 443,
            "http" => 80,
            _ => return Some("only https:// URLs can be fetched".into()),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("").to_ascii_lowercase();
        let (host, port) = host_port(&authority, default_port);
        let allowed = allow_hosts.iter().any(|entry| host_port(entry, default_port) == (host, port));
        (!allowed).then(|| format!("host {host}:{port} is not in this plugin's allow_hosts"))
    }

    /// `[::1]:8443`, `[::1]`, `host:8443`, `host`: the host (brackets kept) and the port.
    fn host_port(text: &str, default_port: u16) -> (&str, u16) {
        match text.rfind(':').filter(|&i| !text[i..].contains(']')) {
            Some(i) => (&text[..i], text[i + 1..].parse().unwrap_or(0)),
            None => (text, default_port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{http_request, outcome_of};

    struct Echo;

    impl DeliveryPlugin for Echo {
        fn deliver(message: Message) -> Outcome {
            crate::log::info(&format!("to {}", message.destination));
            let request = HttpRequest {
                method: "POST".into(),
                url: crate::config_or("url", "https://gw.example/send"),
                headers: vec![("X-Key".into(), crate::secret("key").unwrap_or_default())],
                body: message.code.into_bytes(),
            };
            match http_request(&request) {
                Ok(answer) => outcome_of(&answer),
                Err(e) => e.outcome(),
            }
        }
    }

    #[test]
    fn the_mock_host_records_requests_and_log_and_scripts_answers() {
        let run = MockHost::new()
            .secret("key", "k1")
            .answer(201, &[], "{\"id\":\"m1\"}")
            .deliver::<Echo>(message("+41 79", "123456"));
        assert!(matches!(run.outcome, Outcome::Delivered(_)), "{:?}", run.outcome);
        assert_eq!(run.requests.len(), 1);
        assert_eq!(run.requests[0].header("x-key"), Some("k1"));
        assert_eq!(run.requests[0].text(), "123456");
        assert_eq!(run.log_text(), vec!["to +41 79"]);
    }

    #[test]
    fn the_mock_host_refuses_like_the_daemon() {
        let outside = MockHost::new()
            .config("url", "https://evil.example/steal")
            .allow_hosts(&["gw.example", "127.0.0.1:8443"])
            .answer(200, &[], "")
            .deliver::<Echo>(message("+41 79", "123456"));
        assert!(
            matches!(&outside.outcome, Outcome::Failed(r) if r.contains("evil.example:443 is not in this plugin's allow_hosts")),
            "{:?}",
            outside.outcome
        );
        let v6 = MockHost::new()
            .config("url", "https://[::1]/send")
            .allow_hosts(&["[::1]"])
            .answer(200, &[], "")
            .deliver::<Echo>(message("+41 79", "1"));
        assert!(matches!(v6.outcome, Outcome::Delivered(_)), "{:?}", v6.outcome);
        let port = MockHost::new()
            .config("url", "https://127.0.0.1:8443/send")
            .allow_hosts(&["127.0.0.1:8443"])
            .answer(200, &[], "")
            .deliver::<Echo>(message("+41 79", "1"));
        assert!(matches!(port.outcome, Outcome::Delivered(_)), "{:?}", port.outcome);
        let unscripted = MockHost::new().deliver::<Echo>(message("+41 79", "1"));
        assert!(
            matches!(&unscripted.outcome, Outcome::RetryLater(r) if r.reason.contains("no answer scripted")),
            "{:?}",
            unscripted.outcome
        );
        let refused = MockHost::new()
            .fail(HostErrorKind::Tls, "invalid peer certificate: UnknownIssuer")
            .deliver::<Echo>(message("+41 79", "1"));
        assert!(matches!(&refused.outcome, Outcome::Failed(r) if r.contains("UnknownIssuer")), "{:?}", refused.outcome);
    }
}
