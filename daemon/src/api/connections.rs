//! How the HTTPS listener keeps clients that hold connections without using them from starving the rest.
//!
//! The rules, `[api.connections]` in the config:
//! - A connection must finish its TLS handshake within `handshake_timeout_seconds`, and send a whole
//!   first request head within `first_request_timeout_seconds` after that.
//! - A connection with no request in progress is closed (gracefully: HTTP/2 GOAWAY, HTTP/1.1 close)
//!   `idle_timeout_seconds` after its last request ended, HTTP/1.1 keep-alive and HTTP/2 alike. A request
//!   is in progress from its head until the handler has its answer; a client that does not read its
//!   answers is closed after the idle timeout too. A partly sent head is no request: it has the same
//!   deadline, and a connection that does not close gracefully within 1 s of it is dropped.
//!   hyper's own HTTP/1 header timer is not used: in hyper 1.x it runs from every wait for a head,
//!   keep-alive wait included, so it is a second idle timeout for HTTP/1 only, and it never sees a
//!   client that sends nothing at all (the protocol sniffing of hyper-util's auto builder reads the first
//!   bytes before HTTP/1 takes over). HTTP/2 has no idle timeout in hyper at all.
//! - A request body must have arrived whole `body_timeout_seconds` after the handler starts reading it,
//!   or the answer is 408 `body_timeout`. It is one deadline for the whole body, not one per read: a
//!   byte a second would keep a per-read timer from ever firing.
//! - HTTP/2 connections are pinged every `http2_ping_interval_seconds`; a ping unanswered for
//!   `http2_ping_timeout_seconds` closes the connection, so a vanished peer is noticed mid-request.
//! - At most `max` connections are open at once, and `max_per_address` from one client. A client is its
//!   IPv4 address, or its IPv6 /64 (a single host is routinely given a whole /64, so counting each IPv6
//!   address apart would be no cap); an IPv4 client seen through an IPv6 socket is its IPv4 address.
//!   A connection over a cap is closed at once, before TLS.
//! - A cap's first refusal is logged; further refusals of that cap are not, until one comes 60 s after
//!   the one before, so that a flood of connections cannot flood the log. Failed accepts likewise.
//! - `max` stays below the process's descriptor limit less a reserve for everything else the daemon
//!   opens (the soft limit is raised to the hard one at start), so that accept does not fail with
//!   "Too many open files" while under the cap.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::ConfigError;

/// `[api.connections]`: timeouts and caps of the HTTPS listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionConfig {
    pub handshake_timeout_seconds: u64,
    pub first_request_timeout_seconds: u64,
    pub idle_timeout_seconds: u64,
    pub body_timeout_seconds: u64,
    pub http2_ping_interval_seconds: u64,
    pub http2_ping_timeout_seconds: u64,
    pub max: u32,
    pub max_per_address: u32,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            handshake_timeout_seconds: 10,
            first_request_timeout_seconds: 10,
            idle_timeout_seconds: 60,
            body_timeout_seconds: 10,
            http2_ping_interval_seconds: 30,
            http2_ping_timeout_seconds: 10,
            max: 2048,
            max_per_address: 256,
        }
    }
}

const MAX_CONNECTIONS_CEILING: u32 = 1_000_000;

impl ConnectionConfig {
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_seconds)
    }
    pub fn first_request_timeout(&self) -> Duration {
        Duration::from_secs(self.first_request_timeout_seconds)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_seconds)
    }
    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs(self.body_timeout_seconds)
    }
    pub fn http2_ping_interval(&self) -> Duration {
        Duration::from_secs(self.http2_ping_interval_seconds)
    }
    pub fn http2_ping_timeout(&self) -> Duration {
        Duration::from_secs(self.http2_ping_timeout_seconds)
    }

    /// Checks the ranges, each error with the line of its key (`line_of(key)`).
    pub fn validate(&self, line_of: impl Fn(&str) -> usize, errors: &mut Vec<ConfigError>) {
        for (key, value, most) in [
            (
                "handshake_timeout_seconds",
                self.handshake_timeout_seconds,
                300,
            ),
            (
                "first_request_timeout_seconds",
                self.first_request_timeout_seconds,
                300,
            ),
            ("idle_timeout_seconds", self.idle_timeout_seconds, 3600),
            ("body_timeout_seconds", self.body_timeout_seconds, 300),
            (
                "http2_ping_interval_seconds",
                self.http2_ping_interval_seconds,
                3600,
            ),
            (
                "http2_ping_timeout_seconds",
                self.http2_ping_timeout_seconds,
                300,
            ),
        ] {
            if !(1..=most).contains(&value) {
                errors.push(ConfigError {
                    line: line_of(key),
                    message: format!("[api.connections] {key} must be between 1 and {most}"),
                });
            }
        }
        if !(1..=MAX_CONNECTIONS_CEILING).contains(&self.max) {
            errors.push(ConfigError {
                line: line_of("max"),
                message: format!(
                    "[api.connections] max must be between 1 and {MAX_CONNECTIONS_CEILING}"
                ),
            });
        }
        if self.max_per_address == 0 || self.max_per_address > self.max {
            errors.push(ConfigError {
                line: line_of("max_per_address"),
                message: format!(
                    "[api.connections] max_per_address must be between 1 and max ({})",
                    self.max
                ),
            });
        }
    }
}

/// Descriptors kept for everything but API connections: the store's and the journal's files, the admin
/// socket and its clients, LDAP, SMTP and plugin connections, the runtime's own.
const RESERVED_DESCRIPTORS: u64 = 256;

/// Raises the soft limit on open files to the hard one, and returns the soft limit now in force (`None`
/// if it cannot be read). Under the systemd unit both are `LimitNOFILE=` already.
pub fn raise_descriptor_limit() -> Option<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => return Some(hard),
            Err(e) => {
                tracing::debug!(error = %e, soft, hard, "could not raise the open-file limit")
            }
        }
    }
    Some(soft)
}

/// How many connections the listener may hold open under `descriptor_limit`: the configured `max`, or
/// fewer when the limit leaves no room for them beside the reserve.
pub fn connection_budget(configured: u32, descriptor_limit: Option<u64>) -> u32 {
    match descriptor_limit {
        Some(limit) => {
            let room = limit.saturating_sub(RESERVED_DESCRIPTORS).max(1);
            configured.min(u32::try_from(room).unwrap_or(u32::MAX))
        }
        None => configured,
    }
}

/// Who a connection is counted against: an IPv4 address, or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    V4(Ipv4Addr),
    V6Net(Ipv6Addr),
}

impl Client {
    pub fn of(address: IpAddr) -> Client {
        match address.to_canonical() {
            IpAddr::V4(v4) => Client::V4(v4),
            IpAddr::V6(v6) => Client::V6Net(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        }
    }
}

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Client::V4(v4) => write!(f, "{v4}"),
            Client::V6Net(net) => write!(f, "{net}/64"),
        }
    }
}

/// What is logged once per episode rather than once per event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flood {
    TotalCap,
    AddressCap,
    AcceptFailed,
}

/// An episode ends once this long has passed without an event of its kind.
const QUIET: Duration = Duration::from_secs(60);

/// The last event of each kind, to tell the first of an episode (logged) from the rest (not).
#[derive(Debug, Default)]
pub struct Episodes {
    last: [Option<Instant>; 3],
}

impl Episodes {
    /// Records an event at `now`; true when it starts a new episode and so is to be logged.
    pub fn starts_episode(&mut self, kind: Flood, now: Instant) -> bool {
        let last = &mut self.last[kind as usize];
        let starts = last.is_none_or(|at| now.saturating_duration_since(at) >= QUIET);
        *last = Some(now);
        starts
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: u32,
    per_client: HashMap<Client, u32>,
    episodes: Episodes,
}

/// The open connections of the listener, counted against the caps.
#[derive(Debug)]
pub struct OpenConnections {
    max: u32,
    max_per_client: u32,
    counts: Mutex<Counts>,
    none_open: Notify,
}

/// A place under the caps, held for a connection's life and given back on drop.
#[derive(Debug)]
pub struct Slot {
    open: Arc<OpenConnections>,
    client: Client,
}

impl OpenConnections {
    pub fn new(max: u32, max_per_client: u32) -> Arc<OpenConnections> {
        Arc::new(OpenConnections {
            max,
            max_per_client: max_per_client.min(max),
            counts: Mutex::new(Counts::default()),
            none_open: Notify::new(),
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for a new connection from `address`, or `None` when a cap is reached (the first refusal
    /// of an episode is logged).
    pub fn admit(self: &Arc<Self>, address: IpAddr, now: Instant) -> Option<Slot> {
        let client = Client::of(address);
        let refused = {
            let mut counts = self.counts();
            let from_client = counts.per_client.get(&client).copied().unwrap_or(0);
            let refused = if counts.total >= self.max {
                Some(Flood::TotalCap)
            } else if from_client >= self.max_per_client {
                Some(Flood::AddressCap)
            } else {
                None
            };
            match refused {
                None => {
                    counts.total += 1;
                    counts.per_client.insert(client, from_client + 1);
                    None
                }
                Some(kind) => Some((kind, counts.episodes.starts_episode(kind, now))),
            }
        };
        match refused {
            None => Some(Slot {
                open: self.clone(),
                client,
            }),
            Some((Flood::TotalCap, true)) => {
                tracing::warn!(
                    "connection cap reached: {} connections open in total ([api.connections] max); new ones are closed at once, and not logged again until none for {} s",
                    self.max,
                    QUIET.as_secs()
                );
                None
            }
            Some((_, true)) => {
                tracing::warn!(
                    "connection cap reached: {} connections open from {client} ([api.connections] max_per_address); new ones are closed at once, and not logged again until none for {} s",
                    self.max_per_client,
                    QUIET.as_secs()
                );
                None
            }
            Some((_, false)) => None,
        }
    }

    /// Logs a failed accept, once per episode.
    pub fn accept_failed(&self, error: &std::io::Error, now: Instant) {
        if self
            .counts()
            .episodes
            .starts_episode(Flood::AcceptFailed, now)
        {
            tracing::warn!(
                %error,
                "accept failed; further failures are not logged until none for {} s",
                QUIET.as_secs()
            );
        }
    }

    fn release(&self, client: Client) {
        let mut counts = self.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_client.get_mut(&client) {
            *n -= 1;
            if *n == 0 {
                counts.per_client.remove(&client);
            }
        }
        if counts.total == 0 {
            self.none_open.notify_waiters();
        }
    }

    pub fn open(&self) -> u32 {
        self.counts().total
    }

    /// Returns once no connection is open.
    pub async fn all_closed(&self) {
        loop {
            let notified = self.none_open.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.release(self.client);
    }
}

/// The requests of one connection: how many are in progress, and since when it has been idle.
#[derive(Debug)]
pub struct RequestActivity {
    state: Mutex<ActivityState>,
    went_idle: Notify,
}

#[derive(Debug)]
struct ActivityState {
    in_progress: usize,
    idle_since: Instant,
    served_any: bool,
}

/// A request in progress; it ends on drop.
#[derive(Debug)]
pub struct InProgress(Arc<RequestActivity>);

impl RequestActivity {
    /// A connection whose handshake finished at `now`.
    pub fn new(now: Instant) -> Arc<RequestActivity> {
        Arc::new(RequestActivity {
            state: Mutex::new(ActivityState {
                in_progress: 0,
                idle_since: now,
                served_any: false,
            }),
            went_idle: Notify::new(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn begin(self: &Arc<Self>) -> InProgress {
        let mut state = self.state();
        state.in_progress += 1;
        state.served_any = true;
        InProgress(self.clone())
    }

    /// When the connection is to be closed if nothing happens meanwhile; `None` while a request is in
    /// progress.
    pub fn idle_deadline(&self, first_request: Duration, idle: Duration) -> Option<Instant> {
        let state = self.state();
        match (state.in_progress, state.served_any) {
            (0, false) => Some(state.idle_since + first_request),
            (0, true) => Some(state.idle_since + idle),
            _ => None,
        }
    }

    /// Returns when the last request in progress has ended (at once if that happened since the last
    /// call, so no ending is missed).
    pub async fn went_idle(&self) {
        self.went_idle.notified().await;
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.in_progress = state.in_progress.saturating_sub(1);
        if state.in_progress == 0 {
            state.idle_since = Instant::now();
            self.0.went_idle.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    #[test]
    fn the_section_has_defaults_and_its_mistakes_have_their_lines() {
        let defaults = crate::config::Config::parse("version = 1\n").map(|c| c.api.connections);
        assert_eq!(defaults.ok(), Some(ConnectionConfig::default()));
        let text = "version = 1\n[api.connections]\nidle_timeout_seconds = 0\nbody_timeout_seconds = 301\nmax = 10\nmax_per_address = 11\nidle = 5\n";
        let errors = crate::config::Config::parse(text).err().unwrap_or_default();
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 4, 6, 7], "{errors:?}");
        assert!(errors[2].message.contains("max (10)"), "{errors:?}");
        assert!(errors[3].message.contains("idle"), "{errors:?}");
    }

    #[test]
    fn a_client_is_an_ipv4_address_or_an_ipv6_slash_64() {
        for (address, client) in [
            ("192.0.2.7", "192.0.2.7"),
            ("::ffff:192.0.2.7", "192.0.2.7"),
            ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
            ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
            ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
            ("::1", "::/64"),
        ] {
            assert_eq!(Client::of(ip(address)).to_string(), client, "{address}");
        }
    }

    #[test]
    fn caps_count_in_total_and_per_client_and_free_on_drop() {
        let open = OpenConnections::new(4, 2);
        let now = Instant::now();
        let a1 = open.admit(ip("192.0.2.1"), now);
        let a2 = open.admit(ip("::ffff:192.0.2.1"), now);
        assert!(a1.is_some() && a2.is_some());
        assert!(
            open.admit(ip("192.0.2.1"), now).is_none(),
            "third from one address"
        );
        let v6 = [
            open.admit(ip("2001:db8::1"), now),
            open.admit(ip("2001:db8::2"), now),
        ];
        assert!(v6.iter().all(Option::is_some));
        assert!(
            open.admit(ip("2001:db8::3"), now).is_none(),
            "third from one /64"
        );
        assert!(open.admit(ip("192.0.2.9"), now).is_none(), "fifth in total");
        assert_eq!(open.open(), 4);
        drop(a1);
        assert_eq!(open.open(), 3);
        assert!(open.admit(ip("192.0.2.1"), now).is_some(), "a freed place");
        drop(v6);
        assert!(open.admit(ip("192.0.2.9"), now).is_some());
    }

    #[test]
    fn only_the_first_refusal_of_an_episode_is_logged() {
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        let mut episodes = Episodes::default();
        // (seconds, kind, logged): an episode lasts while refusals come less than 60 s apart.
        for (seconds, kind, logged) in [
            (0, Flood::AddressCap, true),
            (1, Flood::AddressCap, false),
            (50, Flood::AddressCap, false),
            (100, Flood::AddressCap, false),
            (100, Flood::TotalCap, true),
            (101, Flood::AcceptFailed, true),
            (160, Flood::AddressCap, true),
            (161, Flood::TotalCap, true),
            (170, Flood::TotalCap, false),
        ] {
            assert_eq!(
                episodes.starts_episode(kind, at(seconds)),
                logged,
                "{kind:?} at {seconds} s"
            );
        }
    }

    #[test]
    fn the_connection_budget_leaves_room_for_other_descriptors() {
        for (configured, limit, budget) in [
            (4096, Some(65_536), 4096),
            (4096, Some(1024), 768),
            (4096, Some(100), 1),
            (4096, Some(u64::MAX), 4096),
            (4096, None, 4096),
        ] {
            assert_eq!(connection_budget(configured, limit), budget, "{limit:?}");
        }
    }

    #[test]
    fn a_connection_is_idle_from_its_start_and_from_its_last_request() {
        let first = Duration::from_secs(10);
        let idle = Duration::from_secs(60);
        let start = Instant::now();
        let activity = RequestActivity::new(start);
        assert_eq!(activity.idle_deadline(first, idle), Some(start + first));
        let one = activity.begin();
        let two = activity.begin();
        assert_eq!(activity.idle_deadline(first, idle), None);
        drop(one);
        assert_eq!(activity.idle_deadline(first, idle), None, "one still runs");
        let before = Instant::now();
        drop(two);
        let deadline = activity.idle_deadline(first, idle);
        assert!(
            deadline.is_some_and(|d| d >= before + idle && d <= Instant::now() + idle),
            "{deadline:?}"
        );
    }
}
