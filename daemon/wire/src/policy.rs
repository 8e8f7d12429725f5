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

/// What happens to the devices a user had once a restore onto a new device succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OldDevices {
    /// Removed at once: a lost phone's authenticator stops working.
    Delete,
    /// Left as they are (the user may find the phone again, or unpair it later).
    Keep,
}

/// How a restore code reaches its user when it is made (at activation, rotation and after a restore).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreCodeDelivery {
    /// In the answer to the relying application, which shows it once.
    Screen,
    /// By email to the user's directory address.
    Email,
    /// Into the helpdesk's handover queue, to be handed over in person.
    InPerson,
}

/// The restore settings that apply to one user (`restore_*` keys of `[policy]` and `[[policy.group]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePolicy {
    /// Restores a user may make in `period_days`; 0: no limit. Beyond it only an admin restores.
    pub limit: u32,
    pub period_days: u32,
    pub old_devices: OldDevices,
    pub code_delivery: RestoreCodeDelivery,
    /// Channels an admin may pick to re-send a lost restore code (sms, voice, email, in_person);
    /// empty: a lost restore code is not re-sent.
    pub resend_channels: Vec<Channel>,
    /// Activate restore when a user with an email address confirms their first device.
    pub auto_activate: bool,
    /// From this many successful logins on, verify answers `restore_prompt: true` until the user
    /// activates restore; 0: never.
    pub prompt_after_logins: u32,
}

impl Default for RestorePolicy {
    fn default() -> Self {
        RestorePolicy {
            limit: 3,
            period_days: 30,
            old_devices: OldDevices::Delete,
            code_delivery: RestoreCodeDelivery::Screen,
            resend_channels: vec![Channel::Email, Channel::InPerson],
            auto_activate: false,
            prompt_after_logins: 4,
        }
    }
}

/// The restore settings one `[[policy.group]]` entry sets; `None` falls through.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePolicyOverride {
    pub limit: Option<u32>,
    pub period_days: Option<u32>,
    pub old_devices: Option<OldDevices>,
    pub code_delivery: Option<RestoreCodeDelivery>,
    pub resend_channels: Option<Vec<Channel>>,
    pub auto_activate: Option<bool>,
    pub prompt_after_logins: Option<u32>,
}

/// What applies to one user, and which group entries decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectivePolicy {
    pub two_factor: TwoFactorRule,
    pub channels: Vec<Channel>,
    pub restore: RestoreRule,
    /// Older daemons did not send it: their defaults apply.
    #[serde(default)]
    pub restore_settings: RestorePolicy,
    /// The `[[policy.group]]` entries that matched, in priority order.
    pub from_groups: Vec<String>,
}
