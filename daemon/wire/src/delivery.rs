//! Codes sent out of band (SMS, voice, email, in person), their delivery, the plugins that deliver
//! them, and admin access codes: API bodies and admin socket replies.

use serde::{Deserialize, Serialize};

use crate::policy::Channel;

/// `POST /api/v1/challenge`: send the user a fresh code on a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    /// Username or user principal name.
    pub user: String,
    /// `sms`, `voice`, `email` or `in_person`.
    pub channel: Channel,
    /// BCP 47 language tag for the message (`de-CH`); default `en`.
    #[serde(default)]
    pub locale: Option<String>,
}

/// The answer to a challenge request: sent at once, before the code is delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeAnswer {
    /// Give it to `/api/v1/verify` with the code, or verify the code alone: either way only this
    /// challenge's code is accepted, once.
    pub transaction_id: String,
    pub channel: Channel,
    /// Where the code goes, masked for display: `+41 •• ••• •• 67`, `a•••@example.com`.
    pub destination: String,
    /// Unix seconds.
    pub expires_at: i64,
    pub delivery: DeliveryState,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its first try.
    Queued,
    /// A try failed in passing; another follows.
    Retrying,
    Delivered,
    /// Every try failed, or the code expired first.
    Failed,
    /// The code was used, or replaced by a newer challenge, before delivery finished.
    Cancelled,
}

/// One try of one plugin (or of the email server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    /// Unix seconds.
    pub at: i64,
    /// The plugin's name, or `email`.
    pub via: String,
    /// `delivered`, `retry_later`, `failed` or `fault` (the plugin trapped or broke a limit).
    pub outcome: String,
    /// The plugin's reason, or the fault; never the code.
    pub detail: String,
    pub duration_ms: u64,
}

/// A challenge and its delivery, as admins (and the relying application, for its own) see it. The code
/// itself is never part of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryInfo {
    pub transaction_id: String,
    pub user: String,
    pub channel: Channel,
    pub destination: String,
    pub created: i64,
    pub expires_at: i64,
    pub state: DeliveryState,
    /// Whether the code has been used.
    pub used: bool,
    pub attempts: Vec<DeliveryAttempt>,
}

/// `GET /api/v1/challenge/{transaction_id}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeStatus {
    pub transaction_id: String,
    pub state: DeliveryState,
    pub expires_at: i64,
    pub used: bool,
}

/// A code waiting in the in-person handover queue: the one place a code is shown, to a helpdesk admin
/// who reads it out to the person at the desk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverEntry {
    pub id: String,
    pub user: String,
    pub display_name: Option<String>,
    pub code: String,
    /// What to check before handing the code over (from the plugin's config).
    pub note: String,
    pub created: i64,
    pub expires_at: i64,
}

/// What `plugin check` found in a component: it loads with the daemon's engine and checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginCheck {
    pub file: String,
    pub sha256: String,
    /// The delivery interface it was built for, e.g. `twofold:delivery@0.1.0`.
    pub interface: String,
    /// Everything it imports; WASI imports trap when called.
    pub imports: Vec<String>,
}

/// What `plugin test` came to: one call of a configured plugin with a test message, no retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginTest {
    pub plugin: String,
    /// The number as the plugin was given it (E.164 where it could be read).
    pub to: String,
    /// `delivered`, `retry_later` or `failed`.
    pub outcome: String,
    /// The gateway's reference when delivered, else the reason.
    pub detail: String,
    pub duration_ms: u64,
}

/// A configured delivery plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    pub name: String,
    pub file: Option<String>,
    pub loaded: bool,
    /// Why it did not load; with `loaded`, why the last reload failed while the version loaded before
    /// (its `sha256`, `loaded_at`) keeps delivering.
    pub error: Option<String>,
    pub sha256: Option<String>,
    /// Loaded from the daemon's own precompiled artifact rather than compiled.
    pub from_cache: bool,
    pub load_ms: u64,
    pub loaded_at: Option<i64>,
}

/// An access code an admin generated: shown once, here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessCodeIssued {
    pub user: String,
    pub code: String,
    pub expires_at: i64,
}
