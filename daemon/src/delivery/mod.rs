//! Delivering codes in the background: retries with backoff, fallback to the channel's next plugin, the
//! status of every try recorded on the challenge for admins, and the in-person handover queue.
//!
//! The rules, per challenge:
//! - A round tries the channel's plugins in `[delivery]` order until one answers `delivered`. Email has
//!   one "plugin", the SMTP server.
//! - `failed` (and a plugin fault: a trap, the CPU or memory limit, a forbidden call) rules that plugin
//!   out for this challenge; the next one is tried at once. `retry-later` (and an unreachable SMTP
//!   server, a call stopped at `plugin_deadline_seconds`, no free slot of the plugin's `concurrency`
//!   within it) moves on to the next plugin too, but keeps this one for the next round.
//! - When a round ends without delivery and some plugin may be retried, the next round starts after
//!   `retry_initial_seconds`, doubling up to `retry_max_seconds`, for at most `max_attempts` rounds and
//!   never past the code's expiry. Otherwise the delivery has failed.
//! - A plugin's `retry-later` may name its own delay (a gateway's `Retry-After`): that plugin is called
//!   again after that delay instead of the backoff (at least 1 s, at most `retry_max_seconds`), and
//!   not before it even when another plugin's round comes sooner. The next round starts when the
//!   first retried plugin is due (`retry_wait`).
//! - Before each round, a challenge that was used, replaced or has expired stops its delivery.
//! - The code lives in memory only while its delivery runs (the store keeps a MAC), so a restart ends
//!   the deliveries in flight: their challenges stay `queued`/`retrying` until they expire, and the user
//!   asks for a new code.

pub mod config;
pub mod handover;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use twofold_wire::delivery::{DeliveryAttempt, DeliveryState, PluginInfo};
use twofold_wire::policy::Channel;

use crate::clock::SharedClock;
use crate::email::{Mailer, Template};
use crate::error::{Error, Result};
use crate::plugins::{self, Outcome, PluginHost};
use crate::service::Actor;
use crate::store::records::UserRecord;
use crate::store::Store;
use config::{DeliveryConfig, PluginConfig};
pub use handover::HandoverQueue;

/// One code to deliver. Lives only in memory.
pub struct Job {
    pub transaction_id: String,
    pub username: String,
    pub display_name: Option<String>,
    pub channel: Channel,
    pub destination: String,
    pub code: String,
    pub locale: String,
    pub expires_at: i64,
    pub valid_seconds: u32,
    /// The mail it becomes on the email channel (other channels send `code` with their own text).
    pub template: Template,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("transaction_id", &self.transaction_id)
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

/// What one try came to.
enum Try {
    Delivered(String),
    /// The reason, and the delay the plugin asked for.
    Retry(String, Option<u32>),
    Failed(String),
}

/// How long a plugin that answered retry-later waits before it is called again: the delay it asked for
/// (the gateway's `Retry-After`), else the round's backoff; at least a second, so that a gateway
/// answering `Retry-After: 0` is not called in a tight loop, and at most `max`.
fn retry_wait(asked: Option<u32>, backoff: Duration, max: Duration) -> Duration {
    asked
        .map_or(backoff, |s| Duration::from_secs(u64::from(s)))
        .clamp(Duration::from_secs(1), max.max(Duration::from_secs(1)))
}

/// When each plugin that answered retry-later for one message may be called again.
#[derive(Default)]
struct RetrySchedule {
    due: BTreeMap<String, Instant>,
}

impl RetrySchedule {
    /// Whether `via` may be called at `now`: it never answered retry-later, or its wait is over.
    fn is_due(&self, via: &str, now: Instant) -> bool {
        self.due.get(via).is_none_or(|at| *at <= now)
    }

    /// `via` answered retry-later at `now`, asking for `asked` seconds (or none).
    fn retry_later(
        &mut self,
        via: &str,
        asked: Option<u32>,
        backoff: Duration,
        max: Duration,
        now: Instant,
    ) {
        self.due
            .insert(via.to_owned(), now + retry_wait(asked, backoff, max));
    }

    /// The pause before the next round: until the first of `waiting` is due; `backoff` when none of
    /// them waits.
    fn pause<'a>(
        &self,
        waiting: impl Iterator<Item = &'a str>,
        backoff: Duration,
        now: Instant,
    ) -> Duration {
        waiting
            .filter_map(|via| self.due.get(via))
            .min()
            .map_or(backoff, |at| at.saturating_duration_since(now))
    }
}

/// The routes and plugins in force; replaced whole on reload.
struct Routes {
    delivery: DeliveryConfig,
    plugins: Vec<PluginConfig>,
}

pub struct Delivery {
    host: Arc<PluginHost>,
    mailer: Option<Mailer>,
    store: Store,
    clock: SharedClock,
    routes: RwLock<Arc<Routes>>,
    permits: Arc<Semaphore>,
    handover: HandoverQueue,
}

impl Delivery {
    /// Loads the configured plugins and readies the mailer.
    pub fn new(
        host: Arc<PluginHost>,
        mailer: Option<Mailer>,
        store: Store,
        clock: SharedClock,
        delivery: &DeliveryConfig,
        plugins: &[PluginConfig],
    ) -> Delivery {
        let now = clock.now();
        host.load(delivery, plugins, now);
        Delivery {
            host,
            mailer,
            store,
            clock,
            routes: RwLock::new(Arc::new(Routes {
                delivery: delivery.clone(),
                plugins: plugins.to_vec(),
            })),
            permits: Arc::new(Semaphore::new(
                usize::try_from(delivery.concurrency).unwrap_or(32),
            )),
            handover: HandoverQueue::default(),
        }
    }

    pub fn handover(&self) -> &HandoverQueue {
        &self.handover
    }

    pub fn host(&self) -> &Arc<PluginHost> {
        &self.host
    }

    fn routes(&self) -> Arc<Routes> {
        self.routes
            .read()
            .map(|r| r.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Loads plugins again: with new `[delivery]` and `[[plugin]]` settings (SIGHUP), or the ones in
    /// force (the admin's request). Blocking (it may compile): call from a blocking thread.
    pub fn reload(&self, new: Option<(&DeliveryConfig, &[PluginConfig])>) -> Vec<PluginInfo> {
        let routes = match new {
            Some((delivery, plugins)) => Arc::new(Routes {
                delivery: delivery.clone(),
                plugins: plugins.to_vec(),
            }),
            None => self.routes(),
        };
        let status = self
            .host
            .load(&routes.delivery, &routes.plugins, self.clock.now());
        if let Ok(mut current) = self.routes.write() {
            *current = routes;
        }
        status
    }

    /// Refuses a challenge on a channel nothing delivers.
    pub fn can_deliver(&self, channel: Channel) -> Result<()> {
        let ready = match channel {
            Channel::Email => self.mailer.is_some(),
            Channel::Totp => false,
            other => !self.routes().delivery.route(other).is_empty(),
        };
        if ready {
            Ok(())
        } else {
            let how = if channel == Channel::Email {
                "an [email] server".to_owned()
            } else {
                format!(
                    "a plugin in [delivery] {}",
                    crate::challenge::channel_name(channel)
                )
            };
            Err(Error::Conflict(format!(
                "no delivery is configured for {}: configure {how}",
                crate::challenge::channel_name(channel)
            )))
        }
    }

    /// Starts delivering in the background.
    pub fn submit(self: &Arc<Self>, job: Job) {
        let delivery = self.clone();
        tokio::spawn(async move {
            let transaction = job.transaction_id.clone();
            if let Err(e) = delivery.run(job).await {
                tracing::error!(transaction = %transaction, error = %e, "delivery stopped by an internal error");
            }
        });
    }

    async fn run(&self, job: Job) -> Result<()> {
        let routes = self.routes();
        let config = &routes.delivery;
        let mut wait = Duration::from_secs(config.retry_initial_seconds);
        let mut ruled_out: HashSet<String> = HashSet::new();
        let mut tries_per_plugin: BTreeMap<String, u32> = BTreeMap::new();
        let max_wait = Duration::from_secs(config.retry_max_seconds);
        let mut schedule = RetrySchedule::default();
        for round in 1..=config.max_attempts {
            match self.store.challenge(&job.transaction_id)? {
                Some(c) if c.open(self.clock.now()) => {}
                Some(c) => {
                    let state = if c.used_at.is_some() || c.superseded {
                        DeliveryState::Cancelled
                    } else {
                        DeliveryState::Failed
                    };
                    self.set_state(&job, state)?;
                    return Ok(());
                }
                None => return Ok(()),
            }
            let vias: Vec<String> = match job.channel {
                Channel::Email => vec!["email".to_owned()],
                other => config.route(other).to_vec(),
            };
            let mut retry_possible = false;
            for via in &vias {
                if ruled_out.contains(via) {
                    continue;
                }
                if !schedule.is_due(via, Instant::now()) {
                    retry_possible = true;
                    continue;
                }
                let attempt = tries_per_plugin.entry(via.clone()).or_insert(0);
                *attempt += 1;
                let started = Instant::now();
                let at = self.clock.now();
                let outcome = if job.channel == Channel::Email {
                    self.send_email(&job).await
                } else {
                    self.call_plugin(via, &job, *attempt).await
                };
                let (label, detail, delivered) = match &outcome {
                    Try::Delivered(d) => ("delivered", d.clone(), true),
                    Try::Retry(d, asked) => {
                        retry_possible = true;
                        schedule.retry_later(via, *asked, wait, max_wait, Instant::now());
                        ("retry_later", d.clone(), false)
                    }
                    Try::Failed(d) => {
                        ruled_out.insert(via.clone());
                        ("failed", d.clone(), false)
                    }
                };
                // Plugin texts are escaped where the host reads them (`plugins::said`); this also
                // covers the SMTP server's answers, and hazards only so nothing is escaped twice.
                let detail = twofold_wire::text::escape_hazards(plugins::said::prefix(
                    &plugins::capabilities::redact(&detail, &job.code),
                    plugins::capabilities::MAX_REASON_BYTES,
                ));
                tracing::info!(transaction = %job.transaction_id, via = %via, round, outcome = label, detail = %detail, "delivery attempt");
                let entry = DeliveryAttempt {
                    at,
                    via: via.clone(),
                    outcome: label.to_owned(),
                    detail,
                    duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                };
                self.store.update_challenge(&job.transaction_id, |r| {
                    r.attempts.push(entry.clone());
                    if delivered {
                        r.state = DeliveryState::Delivered;
                    }
                })?;
                if delivered {
                    return Ok(());
                }
            }
            let pause = schedule.pause(
                vias.iter()
                    .filter(|via| !ruled_out.contains(*via))
                    .map(String::as_str),
                wait,
                Instant::now(),
            );
            let pause_secs = pause.as_secs() + u64::from(pause.subsec_nanos() > 0);
            let next_at = self
                .clock
                .now()
                .saturating_add(i64::try_from(pause_secs).unwrap_or(i64::MAX));
            if !retry_possible || round == config.max_attempts || next_at >= job.expires_at {
                break;
            }
            self.set_state(&job, DeliveryState::Retrying)?;
            tokio::time::sleep(pause).await;
            wait = (wait * 2).min(max_wait);
        }
        self.set_state(&job, DeliveryState::Failed)?;
        tracing::warn!(transaction = %job.transaction_id, channel = crate::challenge::channel_name(job.channel), "delivery failed");
        Ok(())
    }

    fn set_state(&self, job: &Job, state: DeliveryState) -> Result<()> {
        self.store.update_challenge(&job.transaction_id, |r| {
            if r.state != DeliveryState::Delivered {
                r.state = state;
            }
        })?;
        Ok(())
    }

    async fn call_plugin(&self, name: &str, job: &Job, attempt: u32) -> Try {
        let plugin = match self.host.plugin(name) {
            Ok(p) => p,
            Err(e) => return Try::Failed(e),
        };
        // The plugin's own slot first, then one of all: deliveries stuck on one plugin hold only its
        // slots, and every other plugin keeps its own. Both waits end at the deadline.
        let deadline = Duration::from_secs(self.routes().delivery.plugin_deadline_seconds);
        let slots = async {
            let own = plugin.slots.clone().acquire_owned().await?;
            let any = self.permits.clone().acquire_owned().await?;
            Ok::<_, tokio::sync::AcquireError>((own, any))
        };
        let _permits = match tokio::time::timeout(deadline, slots).await {
            Ok(Ok(permits)) => permits,
            Ok(Err(_)) => return Try::Retry("the daemon is shutting down".into(), None),
            Err(_) => {
                return Try::Retry(format!(
                    "plugin {name} is busy: its {} deliveries at once (concurrency) did not free a slot within {} s (plugin_deadline_seconds)",
                    plugin.concurrency,
                    deadline.as_secs()
                ), None)
            }
        };
        let message = plugins::Message {
            channel: match job.channel {
                Channel::Sms => plugins::WitChannel::Sms,
                Channel::Voice => plugins::WitChannel::Voice,
                Channel::Email => plugins::WitChannel::Email,
                Channel::InPerson | Channel::Totp => plugins::WitChannel::InPerson,
            },
            destination: job.destination.clone(),
            code: job.code.clone(),
            user: job.username.clone(),
            display_name: job.display_name.clone(),
            locale: job.locale.clone(),
            expires_at: job.expires_at,
            valid_seconds: job.valid_seconds,
            transaction: job.transaction_id.clone(),
            attempt,
        };
        let host = self.host.clone();
        let called = plugin.clone();
        let report = match tokio::task::spawn_blocking(move || host.call(&called, &message)).await {
            Ok(report) => report,
            Err(e) => return Try::Failed(format!("plugin task: {e}")),
        };
        match report.result {
            Ok(Outcome::Delivered(reference)) => {
                if let Some(note) = report.handover_note {
                    self.handover.push(job, note, self.clock.now());
                }
                Try::Delivered(reference)
            }
            Ok(Outcome::RetryLater(retry)) => Try::Retry(retry.reason, retry.after_seconds),
            Ok(Outcome::Failed(reason)) => Try::Failed(reason),
            // A slow gateway may answer in time on the next round; a plugin that misbehaves won't.
            Err(fault @ plugins::PluginFault::Deadline(_)) => {
                tracing::warn!(plugin = %plugin.name, transaction = %job.transaction_id, fault = %fault, "plugin call stopped at its deadline");
                Try::Retry(format!("plugin {} {fault}", plugin.name), None)
            }
            Err(fault) => {
                tracing::error!(plugin = %plugin.name, transaction = %job.transaction_id, fault = %fault, "plugin fault: delivery goes on without it");
                Try::Failed(format!("plugin {} {fault}", plugin.name))
            }
        }
    }

    /// One call of plugin `name` with a test message to `to` on `channel`, without retries or fallbacks:
    /// what `twofold-admin plugin test` shows. The code is 000000, valid for no one.
    pub async fn test_plugin(
        &self,
        name: &str,
        channel: Channel,
        to: &str,
    ) -> twofold_wire::delivery::PluginTest {
        let job = Job {
            transaction_id: format!("plugin-test-{}", self.clock.now()),
            username: "plugin-test".into(),
            display_name: None,
            channel,
            destination: to.to_owned(),
            code: "000000".into(),
            locale: "en".into(),
            expires_at: self.clock.now() + 300,
            valid_seconds: 300,
            template: Template::Code,
        };
        let started = std::time::Instant::now();
        let tried = self.call_plugin(name, &job, 1).await;
        let (outcome, detail) = match tried {
            Try::Delivered(reference) => ("delivered", reference),
            Try::Retry(reason, _) => ("retry_later", reason),
            Try::Failed(reason) => ("failed", reason),
        };
        twofold_wire::delivery::PluginTest {
            plugin: name.to_owned(),
            to: to.to_owned(),
            outcome: outcome.to_owned(),
            detail,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        }
    }

    async fn send_email(&self, job: &Job) -> Try {
        let Some(mailer) = &self.mailer else {
            return Try::Failed("no [email] server is configured".into());
        };
        let values = BTreeMap::from([
            ("code", job.code.clone()),
            ("user", job.username.clone()),
            (
                "display_name",
                job.display_name
                    .clone()
                    .unwrap_or_else(|| job.username.clone()),
            ),
            ("minutes", job.valid_seconds.div_ceil(60).to_string()),
            ("expires", utc_text(job.expires_at)),
            ("transaction", job.transaction_id.clone()),
        ]);
        match mailer.send(job.template, &job.destination, &values).await {
            Ok(()) => Try::Delivered(format!("accepted by {}", mailer.server)),
            Err(e) if e.transient => Try::Retry(e.message, None),
            Err(e) => Try::Failed(e.message),
        }
    }

    /// Sends one templated mail in the background (notices, restore codes); a failure is logged.
    /// False when no `[email]` server is configured.
    pub fn mail(
        self: &Arc<Self>,
        template: Template,
        to: &str,
        values: BTreeMap<&'static str, String>,
    ) -> bool {
        if self.mailer.is_none() {
            return false;
        }
        let delivery = self.clone();
        let to = to.to_owned();
        tokio::spawn(async move {
            if let Some(mailer) = &delivery.mailer {
                if let Err(e) = mailer.send(template, &to, &values).await {
                    tracing::warn!(template = template.file_name(), error = %e.message, "mail not sent");
                }
            }
        });
        true
    }

    /// Tells a user by email that an access code was generated for them (in the background).
    pub fn notify_access_code(
        self: &Arc<Self>,
        email: &str,
        user: &UserRecord,
        actor: &Actor,
        expires_at: i64,
    ) {
        if self.mailer.is_none() {
            return;
        }
        let delivery = self.clone();
        let email = email.to_owned();
        let values = BTreeMap::from([
            ("user", user.username.clone()),
            (
                "display_name",
                user.display_name
                    .clone()
                    .unwrap_or_else(|| user.username.clone()),
            ),
            ("admin", actor.to_string()),
            ("expires", utc_text(expires_at)),
        ]);
        tokio::spawn(async move {
            if let Some(mailer) = &delivery.mailer {
                if let Err(e) = mailer
                    .send(Template::AccessCodeNotice, &email, &values)
                    .await
                {
                    tracing::warn!(error = %e.message, "access code notice not sent");
                }
            }
        });
    }
}

impl Delivery {
    /// Sends a notice by email in the background; without an [email] server it is not sent. A notice
    /// holds no code, so a failure is logged and not retried.
    pub fn send_notice(
        self: &Arc<Self>,
        kind: Template,
        email: &str,
        values: BTreeMap<&'static str, String>,
    ) {
        if self.mailer.is_none() {
            return;
        }
        let delivery = self.clone();
        let email = email.to_owned();
        tokio::spawn(async move {
            if let Some(mailer) = &delivery.mailer {
                if let Err(e) = mailer.send(kind, &email, &values).await {
                    tracing::warn!(error = %e.message, template = kind.file_name(), "notice not sent");
                }
            }
        });
    }
}

/// `2026-05-04 13:05 UTC`
pub(crate) fn utc_text(unix: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| unix.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_waits_what_the_gateway_asked_within_the_bounds() {
        let s = Duration::from_secs;
        // (asked by the plugin, backoff of this round, retry_max_seconds, wait)
        let table = [
            (None, s(30), s(300), s(30)),
            (Some(2), s(30), s(300), s(2)),
            (Some(600), s(30), s(300), s(300)),
            (Some(0), s(30), s(300), s(1)),
            (None, s(30), s(10), s(10)),
            (Some(5), s(1), s(0), s(1)),
        ];
        for (asked, backoff, max, expected) in table {
            assert_eq!(
                retry_wait(asked, backoff, max),
                expected,
                "{asked:?} {backoff:?} {max:?}"
            );
        }
    }

    #[test]
    fn a_plugin_is_not_called_before_its_delay_even_when_another_is_due_sooner() {
        let s = Duration::from_secs;
        let max = s(300);
        let t0 = Instant::now();
        let mut schedule = RetrySchedule::default();
        // Round 1 at t0: "busy" passes on a Retry-After of 2 s, "down" asks nothing (backoff 30 s).
        assert!(schedule.is_due("busy", t0) && schedule.is_due("down", t0));
        schedule.retry_later("busy", Some(2), s(30), max, t0);
        schedule.retry_later("down", None, s(30), max, t0);
        let both = ["busy", "down"];
        assert_eq!(schedule.pause(both.into_iter(), s(30), t0), s(2));
        // Round 2 at t0 + 2 s: only "busy" is called; it asks for 5 s more.
        let t2 = t0 + s(2);
        assert!(schedule.is_due("busy", t2) && !schedule.is_due("down", t2));
        schedule.retry_later("busy", Some(5), s(60), max, t2);
        assert_eq!(schedule.pause(both.into_iter(), s(60), t2), s(5));
        // Round 3 at t0 + 7 s: "busy" again; "down" waits until t0 + 30 s.
        let t7 = t0 + s(7);
        assert!(schedule.is_due("busy", t7) && !schedule.is_due("down", t7));
        schedule.retry_later("busy", None, s(120), max, t7);
        assert_eq!(schedule.pause(both.into_iter(), s(120), t7), s(23));
        assert!(schedule.is_due("down", t0 + s(30)));
        // Nothing waiting: the backoff.
        assert_eq!(schedule.pause(std::iter::empty(), s(8), t7), s(8));
    }
}
