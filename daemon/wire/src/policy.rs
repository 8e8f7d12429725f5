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

/// The settings of `[policy]` and of each `[[policy.group]]` entry, as the configuration file and the
/// admin requests (`PolicySet`, `PolicyGroupSet`) name them, in the order screens list them.
pub const SETTINGS: [&str; 10] = [
    "two_factor",
    "channels",
    "restore",
    "restore_limit",
    "restore_period_days",
    "restore_old_devices",
    "restore_code_delivery",
    "restore_resend_channels",
    "restore_auto_activate",
    "restore_prompt_after_logins",
];

/// Where the live policies came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicySource {
    /// The configuration file's policy sections: copied at the first start, or applied again by a
    /// master admin's `policy reset-to-config`.
    ConfigFile,
    /// Edited by a master admin since.
    Admin,
}

/// The history of the live policies in one line: their source, their last change and by whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyOrigin {
    pub source: PolicySource,
    /// Unix seconds of the last change (the copy at the first start included).
    pub changed_at: i64,
    /// `daemon` for the copy at the first start, else the operator (`admin:uid=0`).
    pub changed_by: String,
    /// Counts the changes: 1 after the first start.
    pub revision: u64,
}

/// A setting's value as screens show it and the command line takes it back: `required`, `totp, sms`,
/// `none` for an empty list, `3`, `true`; `-` for a group setting that falls through (null).
pub fn spelled(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "none".to_owned(),
        Value::Array(items) => items.iter().map(spelled).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

fn spell<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value).map_or_else(|_| "?".to_owned(), |v| spelled(&v))
}

impl RestorePolicy {
    /// The `restore_*` settings in `SETTINGS` order, spelled.
    fn settings(&self) -> [(&'static str, String); 7] {
        [
            ("restore_limit", spell(&self.limit)),
            ("restore_period_days", spell(&self.period_days)),
            ("restore_old_devices", spell(&self.old_devices)),
            ("restore_code_delivery", spell(&self.code_delivery)),
            ("restore_resend_channels", spell(&self.resend_channels)),
            ("restore_auto_activate", spell(&self.auto_activate)),
            (
                "restore_prompt_after_logins",
                spell(&self.prompt_after_logins),
            ),
        ]
    }
}

impl RestorePolicyOverride {
    /// The `restore_*` settings in `SETTINGS` order, spelled; `None` falls through.
    fn settings(&self) -> [(&'static str, Option<String>); 7] {
        [
            ("restore_limit", self.limit.map(|v| spell(&v))),
            ("restore_period_days", self.period_days.map(|v| spell(&v))),
            ("restore_old_devices", self.old_devices.map(|v| spell(&v))),
            (
                "restore_code_delivery",
                self.code_delivery.map(|v| spell(&v)),
            ),
            (
                "restore_resend_channels",
                self.resend_channels.as_ref().map(spell),
            ),
            (
                "restore_auto_activate",
                self.auto_activate.map(|v| spell(&v)),
            ),
            (
                "restore_prompt_after_logins",
                self.prompt_after_logins.map(|v| spell(&v)),
            ),
        ]
    }
}

/// The defaults as (setting, value) in `SETTINGS` order, spelled as the command line takes them.
pub fn default_settings(
    two_factor: TwoFactorRule,
    channels: &[Channel],
    restore: RestoreRule,
    restore_settings: &RestorePolicy,
) -> Vec<(&'static str, String)> {
    let mut all = vec![
        ("two_factor", spell(&two_factor)),
        ("channels", spell(&channels)),
        ("restore", spell(&restore)),
    ];
    all.extend(restore_settings.settings());
    all
}

/// A group entry's settings as (setting, value) in `SETTINGS` order; `None` falls through.
pub fn group_settings(
    two_factor: Option<TwoFactorRule>,
    channels: Option<&[Channel]>,
    restore: Option<RestoreRule>,
    restore_settings: &RestorePolicyOverride,
) -> Vec<(&'static str, Option<String>)> {
    let mut all = vec![
        ("two_factor", two_factor.map(|v| spell(&v))),
        ("channels", channels.map(|v| spell(&v))),
        ("restore", restore.map(|v| spell(&v))),
    ];
    all.extend(restore_settings.settings());
    all
}

/// A group name as AD compares names: without regard to case across Unicode (`VERTRIEB SÜD` is
/// `Vertrieb Süd`), and without surrounding spaces.
pub fn fold_group_name(name: &str) -> String {
    name.trim().to_lowercase()
}

/// Whether two group names given by people (policy entries, role entries) are the same name.
pub fn same_group_name(a: &str, b: &str) -> bool {
    fold_group_name(a) == fold_group_name(b)
}
