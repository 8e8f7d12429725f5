//! Policy values as they cross the wire and appear in the config.

use serde::{Deserialize, Serialize};

/// Whether users must use a second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TwoFactorRule {
    /// Users without a device must enroll at their next login.
    Required,
    /// Users may enroll.
    Optional,
    /// No second factor (e.g. groups that log in through SSO).
    Off,
}

/// A way a code reaches a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Totp,
    Sms,
    Voice,
    Email,
    InPerson,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreRule {
    /// Users restore onto a new device themselves.
    Allowed,
    /// Only an admin can restore.
    Prohibited,
}

/// What applies to one user, and which group entries decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectivePolicy {
    pub two_factor: TwoFactorRule,
    pub channels: Vec<Channel>,
    pub restore: RestoreRule,
    /// The `[[policy.group]]` entries that matched, in priority order.
    pub from_groups: Vec<String>,
}
