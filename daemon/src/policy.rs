//! 2FA policies: global defaults, overridden per directory group.
//!
//! The rule: for each setting, the first `[[policy.group]]` entry (in file order) that names one of the
//! user's groups and sets that setting wins; a setting no matching entry sets comes from `[policy]`.
//! File order is the priority, so an admin reads the file top-down to know what applies. A group is named
//! by its DN or by its CN (`VPN Users` matches `CN=VPN Users,OU=Groups,...`), case-insensitively.
//!
//! The same settings are edited at run time by master admins (see `live_policy`): an edit is applied to
//! the settings as serde sees them and checked by [`PolicyConfig::problems`], the one check the
//! configuration file goes through too, so a value the file refuses is refused on the socket as well.

use serde::{Deserialize, Serialize};

use crate::directory::dn;
pub use twofold_wire::policy::{
    Channel, EffectivePolicy, OldDevices, RestoreCodeDelivery, RestorePolicy,
    RestorePolicyOverride, RestoreRule, TwoFactorRule, SETTINGS,
};

/// `[policy]`: the defaults, and the per-group overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    #[serde(default = "default_two_factor")]
    pub two_factor: TwoFactorRule,
    #[serde(default = "all_channels")]
    pub channels: Vec<Channel>,
    #[serde(default = "default_restore")]
    pub restore: RestoreRule,
    /// Restores per user per `restore_period_days`; 0: no limit.
    #[serde(default = "defaults::limit")]
    pub restore_limit: u32,
    #[serde(default = "defaults::period_days")]
    pub restore_period_days: u32,
    #[serde(default = "defaults::old_devices")]
    pub restore_old_devices: OldDevices,
    #[serde(default = "defaults::code_delivery")]
    pub restore_code_delivery: RestoreCodeDelivery,
    #[serde(default = "defaults::resend_channels")]
    pub restore_resend_channels: Vec<Channel>,
    #[serde(default = "defaults::auto_activate")]
    pub restore_auto_activate: bool,
    #[serde(default = "defaults::prompt_after_logins")]
    pub restore_prompt_after_logins: u32,
    #[serde(default)]
    pub group: Vec<GroupPolicy>,
}

mod defaults {
    use super::{Channel, OldDevices, RestoreCodeDelivery, RestorePolicy};
    pub fn limit() -> u32 {
        RestorePolicy::default().limit
    }
    pub fn period_days() -> u32 {
        RestorePolicy::default().period_days
    }
    pub fn old_devices() -> OldDevices {
        RestorePolicy::default().old_devices
    }
    pub fn code_delivery() -> RestoreCodeDelivery {
        RestorePolicy::default().code_delivery
    }
    pub fn resend_channels() -> Vec<Channel> {
        RestorePolicy::default().resend_channels
    }
    pub fn auto_activate() -> bool {
        RestorePolicy::default().auto_activate
    }
    pub fn prompt_after_logins() -> u32 {
        RestorePolicy::default().prompt_after_logins
    }
}

fn default_two_factor() -> TwoFactorRule {
    TwoFactorRule::Optional
}
fn all_channels() -> Vec<Channel> {
    vec![
        Channel::Totp,
        Channel::Sms,
        Channel::Voice,
        Channel::Email,
        Channel::InPerson,
    ]
}
fn default_restore() -> RestoreRule {
    RestoreRule::Allowed
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            two_factor: default_two_factor(),
            channels: all_channels(),
            restore: default_restore(),
            restore_limit: defaults::limit(),
            restore_period_days: defaults::period_days(),
            restore_old_devices: defaults::old_devices(),
            restore_code_delivery: defaults::code_delivery(),
            restore_resend_channels: defaults::resend_channels(),
            restore_auto_activate: defaults::auto_activate(),
            restore_prompt_after_logins: defaults::prompt_after_logins(),
            group: Vec::new(),
        }
    }
}

/// `[[policy.group]]`: settings for the members of one group; absent settings fall through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupPolicy {
    pub group: String,
    #[serde(default)]
    pub two_factor: Option<TwoFactorRule>,
    #[serde(default)]
    pub channels: Option<Vec<Channel>>,
    #[serde(default)]
    pub restore: Option<RestoreRule>,
    #[serde(default)]
    pub restore_limit: Option<u32>,
    #[serde(default)]
    pub restore_period_days: Option<u32>,
    #[serde(default)]
    pub restore_old_devices: Option<OldDevices>,
    #[serde(default)]
    pub restore_code_delivery: Option<RestoreCodeDelivery>,
    #[serde(default)]
    pub restore_resend_channels: Option<Vec<Channel>>,
    #[serde(default)]
    pub restore_auto_activate: Option<bool>,
    #[serde(default)]
    pub restore_prompt_after_logins: Option<u32>,
}

impl GroupPolicy {
    pub fn restore_overrides(&self) -> RestorePolicyOverride {
        RestorePolicyOverride {
            limit: self.restore_limit,
            period_days: self.restore_period_days,
            old_devices: self.restore_old_devices,
            code_delivery: self.restore_code_delivery,
            resend_channels: self.restore_resend_channels.clone(),
            auto_activate: self.restore_auto_activate,
            prompt_after_logins: self.restore_prompt_after_logins,
        }
    }
}

/// The first matching group entry's setting (file order is the priority), else the default.
fn first<T>(
    matching: &[&GroupPolicy],
    setting: impl Fn(&GroupPolicy) -> Option<T>,
    default: impl FnOnce() -> T,
) -> T {
    matching
        .iter()
        .find_map(|p| setting(p))
        .unwrap_or_else(default)
}

impl PolicyConfig {
    /// The group entries that name one of `groups`, in file order (the priority).
    fn matching<'a>(&'a self, groups: &'a [String]) -> impl Iterator<Item = &'a GroupPolicy> {
        self.group
            .iter()
            .filter(|p| groups.iter().any(|g| dn::names_group(&p.group, g)))
    }

    pub fn for_groups(&self, groups: &[String]) -> EffectivePolicy {
        let matching: Vec<&GroupPolicy> = self.matching(groups).collect();
        EffectivePolicy {
            two_factor: first(&matching, |p| p.two_factor, || self.two_factor),
            channels: first(&matching, |p| p.channels.clone(), || self.channels.clone()),
            restore: first(&matching, |p| p.restore, || self.restore),
            restore_settings: self.restore_for(&matching),
            from_groups: matching.iter().map(|p| p.group.clone()).collect(),
        }
    }

    /// `for_groups(groups).two_factor` without building the rest: verification asks it on every
    /// request.
    pub fn two_factor_for(&self, groups: &[String]) -> TwoFactorRule {
        self.matching(groups)
            .find_map(|p| p.two_factor)
            .unwrap_or(self.two_factor)
    }

    /// The defaults of the restore settings, as `[policy]` sets them.
    pub fn restore_defaults(&self) -> RestorePolicy {
        RestorePolicy {
            limit: self.restore_limit,
            period_days: self.restore_period_days,
            old_devices: self.restore_old_devices,
            code_delivery: self.restore_code_delivery,
            resend_channels: self.restore_resend_channels.clone(),
            auto_activate: self.restore_auto_activate,
            prompt_after_logins: self.restore_prompt_after_logins,
        }
    }

    fn restore_for(&self, matching: &[&GroupPolicy]) -> RestorePolicy {
        RestorePolicy {
            limit: first(matching, |p| p.restore_limit, || self.restore_limit),
            period_days: first(
                matching,
                |p| p.restore_period_days,
                || self.restore_period_days,
            ),
            old_devices: first(
                matching,
                |p| p.restore_old_devices,
                || self.restore_old_devices,
            ),
            code_delivery: first(
                matching,
                |p| p.restore_code_delivery,
                || self.restore_code_delivery,
            ),
            resend_channels: first(
                matching,
                |p| p.restore_resend_channels.clone(),
                || self.restore_resend_channels.clone(),
            ),
            auto_activate: first(
                matching,
                |p| p.restore_auto_activate,
                || self.restore_auto_activate,
            ),
            prompt_after_logins: first(
                matching,
                |p| p.restore_prompt_after_logins,
                || self.restore_prompt_after_logins,
            ),
        }
    }

    /// `restore_prompt_after_logins` for a user's groups, 0 when their restore is prohibited; without
    /// building the whole policy (verify asks on every accepted code).
    pub fn restore_prompt_after(&self, groups: &[String]) -> u32 {
        let (mut prompt, mut rule) = (None, None);
        for p in self.matching(groups) {
            prompt = prompt.or(p.restore_prompt_after_logins);
            rule = rule.or(p.restore);
        }
        match rule.unwrap_or(self.restore) {
            RestoreRule::Prohibited => 0,
            RestoreRule::Allowed => prompt.unwrap_or(self.restore_prompt_after_logins),
        }
    }
}

/// Longest group name an entry may hold; a DN is rarely a tenth of it. Also the longest setting name or
/// value an edit takes, so that a refusal (which is audited) never repeats megabytes.
const MAX_GROUP_NAME: usize = 1024;

const RESEND_TOTP: &str = "restore_resend_channels cannot hold totp: an authenticator app cannot receive a restore code; use sms, voice, email, in_person";

/// A policy rule that the types alone cannot express, broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyProblem {
    /// The group entry at fault; `None`: `[policy]`.
    pub group: Option<String>,
    /// The setting at fault (`group` for the entry's name), for the configuration file's line number.
    pub key: &'static str,
    /// Names the setting, so it reads alone.
    pub message: String,
}

impl std::fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.group {
            None => f.write_str(&self.message),
            Some(group) => write!(f, "[[policy.group]] {group}: {}", self.message),
        }
    }
}

/// An edit of the live policies by a master admin (see `live_policy`). Values are spelled as on the
/// command line: `required`, `totp,sms`, `3`, `true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyEdit {
    /// Sets one `[policy]` setting.
    Default {
        key: String,
        value: String,
    },
    /// Sets (or, with `None`, clears) one setting of a group's entry; a new group's entry goes last.
    Group {
        group: String,
        key: String,
        value: Option<String>,
    },
    RemoveGroup {
        group: String,
    },
    /// To `position`, 1 being the first (highest priority).
    MoveGroup {
        group: String,
        position: u32,
    },
    /// All of it, e.g. the configuration file's.
    Replace(PolicyConfig),
}

impl PolicyConfig {
    /// Every rule broken: `[policy]` first, then each group entry in order. The configuration file and
    /// the admins' edits both go through this one check.
    pub fn problems(&self) -> Vec<PolicyProblem> {
        let mut found = Vec::new();
        let mut add = |group: Option<&str>, key: &'static str, message: String| {
            found.push(PolicyProblem {
                group: group.map(str::to_owned),
                key,
                message,
            })
        };
        if self.restore_limit > 0 && self.restore_period_days == 0 {
            add(
                None,
                "restore_period_days",
                "restore_period_days must be at least 1 when restore_limit is set".into(),
            );
        }
        if self.restore_resend_channels.contains(&Channel::Totp) {
            add(None, "restore_resend_channels", RESEND_TOTP.into());
        }
        let mut names = std::collections::HashSet::new();
        for g in &self.group {
            let name = Some(g.group.as_str());
            if g.group.trim().is_empty()
                || g.group.chars().any(char::is_control)
                || g.group.len() > MAX_GROUP_NAME
            {
                add(
                    name,
                    "group",
                    format!("group must name a group: its DN or CN, at most {MAX_GROUP_NAME} characters"),
                );
            } else if !names.insert(dn::fold(&g.group)) {
                add(
                    name,
                    "group",
                    "the group has an entry already above: one entry per group".into(),
                );
            }
            let limit = g.restore_limit.unwrap_or(self.restore_limit);
            let period = g.restore_period_days.unwrap_or(self.restore_period_days);
            if limit > 0 && period == 0 {
                add(
                    name,
                    "restore_period_days",
                    "restore_period_days must be at least 1 when restore_limit is set".into(),
                );
            }
            if g.restore_resend_channels
                .as_ref()
                .is_some_and(|c| c.contains(&Channel::Totp))
            {
                add(name, "restore_resend_channels", RESEND_TOTP.into());
            }
        }
        found
    }

    /// The entry of `group` (named as in the entry, case-insensitively).
    pub fn group_index(&self, group: &str) -> Option<usize> {
        let group = group.trim();
        self.group
            .iter()
            .position(|g| dn::same_name(&g.group, group))
    }

    /// The policies with `edit` made, when they pass the same parsing and checks as the configuration
    /// file; else why not, in one line.
    pub fn edited(&self, edit: &PolicyEdit) -> Result<PolicyConfig, String> {
        let inputs: Vec<(&str, &str)> = match edit {
            PolicyEdit::Default { key, value } => vec![("setting", key), ("value", value)],
            PolicyEdit::Group { group, key, value } => vec![
                ("group", group),
                ("setting", key),
                ("value", value.as_deref().unwrap_or_default()),
            ],
            PolicyEdit::RemoveGroup { group } | PolicyEdit::MoveGroup { group, .. } => {
                vec![("group", group)]
            }
            PolicyEdit::Replace(_) => Vec::new(),
        };
        if let Some((what, _)) = inputs.iter().find(|(_, text)| text.len() > MAX_GROUP_NAME) {
            return Err(format!(
                "the {what} is longer than {MAX_GROUP_NAME} characters"
            ));
        }
        let mut next = self.clone();
        match edit {
            PolicyEdit::Default { key, value } => {
                let key = setting_key(key)?;
                next = with_setting(self, key, Some(value))?;
            }
            PolicyEdit::Group { group, key, value } => {
                let key = setting_key(key)?;
                let at = match self.group_index(group) {
                    Some(at) => at,
                    None => {
                        next.group.push(GroupPolicy::named(group.trim()));
                        next.group.len() - 1
                    }
                };
                next.group[at] = with_setting(&next.group[at], key, value.as_deref())?;
            }
            PolicyEdit::RemoveGroup { group } => {
                let at = self.group_index(group).ok_or_else(|| no_entry(group))?;
                next.group.remove(at);
            }
            PolicyEdit::MoveGroup { group, position } => {
                let at = self.group_index(group).ok_or_else(|| no_entry(group))?;
                let to = usize::try_from(*position).unwrap_or(usize::MAX);
                if !(1..=self.group.len()).contains(&to) {
                    return Err(format!(
                        "position must be between 1 and {} (the number of group entries)",
                        self.group.len()
                    ));
                }
                let entry = next.group.remove(at);
                next.group.insert(to - 1, entry);
            }
            PolicyEdit::Replace(all) => next = all.clone(),
        }
        let problems = next.problems();
        if problems.is_empty() {
            Ok(next)
        } else {
            Err(problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "))
        }
    }
}

impl GroupPolicy {
    fn named(group: &str) -> GroupPolicy {
        GroupPolicy {
            group: group.to_owned(),
            two_factor: None,
            channels: None,
            restore: None,
            restore_limit: None,
            restore_period_days: None,
            restore_old_devices: None,
            restore_code_delivery: None,
            restore_resend_channels: None,
            restore_auto_activate: None,
            restore_prompt_after_logins: None,
        }
    }
}

fn no_entry(group: &str) -> String {
    format!(
        "no group entry for {:?} (policy show lists them)",
        group.trim()
    )
}

/// A setting's name as the configuration spells it (`restore-limit` is taken for `restore_limit`).
fn setting_key(key: &str) -> Result<&'static str, String> {
    let wanted = key.trim().to_lowercase().replace('-', "_");
    SETTINGS
        .iter()
        .find(|k| **k == wanted)
        .copied()
        .ok_or_else(|| {
            format!(
                "unknown policy setting {:?}; the settings are {}",
                key.trim(),
                SETTINGS.join(", ")
            )
        })
}

/// `value` set on `entry` (`None` clears it), through serde: the file's parsing, so an unknown word is
/// refused with the file's message ("unknown variant `maybe`, expected one of ...").
fn with_setting<T: Serialize + serde::de::DeserializeOwned>(
    entry: &T,
    key: &'static str,
    value: Option<&str>,
) -> Result<T, String> {
    let mut doc = serde_json::to_value(entry).map_err(|e| e.to_string())?;
    let value = match value {
        Some(text) => setting_value(key, text)?,
        None => serde_json::Value::Null,
    };
    doc.as_object_mut()
        .ok_or_else(|| "policy settings are not a table".to_owned())?
        .insert(key.to_owned(), value);
    serde_json::from_value(doc).map_err(|e| format!("{key}: {e}"))
}

/// A value typed on the command line as the setting's kind: a list (`totp,sms`, also `[totp, sms]`;
/// `none` or an empty text is an empty list), a whole number, true or false, or a word (`in-person` is `in_person`).
fn setting_value(key: &str, text: &str) -> Result<serde_json::Value, String> {
    use serde_json::Value;
    let word = |w: &str| {
        w.trim()
            .trim_matches('"')
            .trim()
            .to_lowercase()
            .replace(['-', ' '], "_")
    };
    let text = text.trim();
    let kind = serde_json::to_value(PolicyConfig::default()).map_err(|e| e.to_string())?;
    Ok(match kind.get(key) {
        Some(Value::Array(_)) if word(text) == "none" => Value::Array(Vec::new()),
        Some(Value::Array(_)) => Value::Array(
            text.trim_start_matches('[')
                .trim_end_matches(']')
                .split(',')
                .map(word)
                .filter(|w| !w.is_empty())
                .map(Value::String)
                .collect(),
        ),
        Some(Value::Number(_)) => text.parse::<u32>().map(Value::from).map_err(|_| {
            format!(
                "{key} takes a whole number from 0 to {}, not {text:?}",
                u32::MAX
            )
        })?,
        Some(Value::Bool(_)) => match word(text).as_str() {
            "true" | "yes" | "on" => Value::Bool(true),
            "false" | "no" | "off" => Value::Bool(false),
            _ => return Err(format!("{key} takes true or false, not {text:?}")),
        },
        _ => Value::String(word(text)),
    })
}

fn spelled(value: Option<&serde_json::Value>) -> String {
    value.map_or_else(|| "-".to_owned(), twofold_wire::policy::spelled)
}

/// The settings an entry sets, `key value` each: a group entry's summary for the audit log.
fn settings_of(doc: &serde_json::Value) -> String {
    let set: Vec<String> = SETTINGS
        .iter()
        .filter(|k| doc.get(**k).is_some_and(|v| !v.is_null()))
        .map(|k| format!("{k} {}", spelled(doc.get(*k))))
        .collect();
    if set.is_empty() {
        "no settings".to_owned()
    } else {
        set.join(", ")
    }
}

/// What changed from `before` to `after`, one line per setting, for answers and the audit log:
/// `two_factor: optional -> required`, `group VPN: channels - -> totp, sms`, `group VPN added: ...`,
/// `group VPN removed (...)`, `group order: A, B -> B, A`.
pub fn changes(before: &PolicyConfig, after: &PolicyConfig) -> Vec<String> {
    let (old, new) = (doc(before), doc(after));
    let mut lines = Vec::new();
    for key in SETTINGS {
        let (a, b) = (old.get(key), new.get(key));
        if a != b {
            lines.push(format!("{key}: {} -> {}", spelled(a), spelled(b)));
        }
    }
    for entry in &after.group {
        let new_doc = doc(entry);
        match before.group_index(&entry.group) {
            None => lines.push(format!(
                "group {} added: {}",
                entry.group,
                settings_of(&new_doc)
            )),
            Some(at) => {
                let old_doc = doc(&before.group[at]);
                for key in SETTINGS {
                    let (a, b) = (old_doc.get(key), new_doc.get(key));
                    if a != b {
                        lines.push(format!(
                            "group {}: {key} {} -> {}",
                            entry.group,
                            spelled(a),
                            spelled(b)
                        ));
                    }
                }
            }
        }
    }
    for entry in &before.group {
        if after.group_index(&entry.group).is_none() {
            lines.push(format!(
                "group {} removed ({})",
                entry.group,
                settings_of(&doc(entry))
            ));
        }
    }
    let kept = |from: &PolicyConfig, other: &PolicyConfig| -> Vec<String> {
        from.group
            .iter()
            .filter(|g| other.group_index(&g.group).is_some())
            .map(|g| g.group.clone())
            .collect()
    };
    let (old_order, new_order) = (kept(before, after), kept(after, before));
    if old_order != new_order {
        lines.push(format!(
            "group order: {} -> {}",
            old_order.join(", "),
            new_order.join(", ")
        ));
    }
    lines
}

/// Policies or a group entry as JSON, to compare them setting by setting (their serialization cannot
/// fail: plain fields, string keys).
fn doc<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> PolicyConfig {
        let text = r#"
            two_factor = "optional"
            [[group]]
            group = "CN=Admins,OU=Groups,DC=corp,DC=example"
            two_factor = "required"
            restore = "prohibited"
            [[group]]
            group = "VPN Users"
            two_factor = "optional"
            channels = ["totp", "sms"]
            [[group]]
            group = "sso"
            two_factor = "off"
        "#;
        match toml::from_str(text) {
            Ok(c) => c,
            Err(e) => unreachable!("{e}"),
        }
    }

    #[test]
    fn first_matching_group_wins_per_setting() {
        let c = config();
        let admins = "CN=Admins,OU=Groups,DC=corp,DC=example".to_owned();
        let vpn = "CN=VPN Users,OU=Groups,DC=corp,DC=example".to_owned();
        let sso = "cn=SSO,OU=Groups,DC=corp,DC=example".to_owned();
        // (groups, two_factor, channels, restore)
        let table: Vec<(Vec<String>, TwoFactorRule, Vec<Channel>, RestoreRule)> = vec![
            (
                vec![],
                TwoFactorRule::Optional,
                all_channels(),
                RestoreRule::Allowed,
            ),
            (
                vec![admins.clone()],
                TwoFactorRule::Required,
                all_channels(),
                RestoreRule::Prohibited,
            ),
            (
                vec![vpn.clone()],
                TwoFactorRule::Optional,
                vec![Channel::Totp, Channel::Sms],
                RestoreRule::Allowed,
            ),
            // Admins comes first in the file: its two_factor wins; channels fall through to VPN Users.
            (
                vec![vpn.clone(), admins],
                TwoFactorRule::Required,
                vec![Channel::Totp, Channel::Sms],
                RestoreRule::Prohibited,
            ),
            (
                vec![sso.clone()],
                TwoFactorRule::Off,
                all_channels(),
                RestoreRule::Allowed,
            ),
            (
                vec![sso, vpn],
                TwoFactorRule::Optional,
                vec![Channel::Totp, Channel::Sms],
                RestoreRule::Allowed,
            ),
        ];
        for (i, (groups, two_factor, channels, restore)) in table.into_iter().enumerate() {
            let p = c.for_groups(&groups);
            assert_eq!(
                (p.two_factor, p.channels, p.restore),
                (two_factor, channels, restore),
                "row {i}"
            );
        }
    }
}

#[cfg(test)]
mod edit_tests {
    use super::*;

    fn policies() -> PolicyConfig {
        let text = r#"
            two_factor = "optional"
            channels = ["totp", "sms", "email"]
            [[group]]
            group = "CN=Admins,OU=Groups,DC=corp,DC=example"
            two_factor = "required"
            [[group]]
            group = "VPN Users"
            channels = ["totp", "sms"]
            [[group]]
            group = "sso"
            two_factor = "off"
        "#;
        match toml::from_str(text) {
            Ok(c) => c,
            Err(e) => unreachable!("{e}"),
        }
    }

    fn set(key: &str, value: &str) -> PolicyEdit {
        PolicyEdit::Default {
            key: key.into(),
            value: value.into(),
        }
    }

    fn group(group: &str, key: &str, value: Option<&str>) -> PolicyEdit {
        PolicyEdit::Group {
            group: group.into(),
            key: key.into(),
            value: value.map(str::to_owned),
        }
    }

    #[test]
    fn an_edit_answers_its_changes_or_the_files_refusal() {
        let admins_removed =
            "group CN=Admins,OU=Groups,DC=corp,DC=example removed (two_factor required)";
        let huge = "x".repeat(2000);
        // (edit, the changes it makes, or a part of the one-line refusal)
        let table: Vec<(PolicyEdit, Result<Vec<&str>, &str>)> = vec![
            (
                set("two_factor", "required"),
                Ok(vec!["two_factor: optional -> required"]),
            ),
            (set("two_factor", "optional"), Ok(vec![])),
            (
                set("two_factor", "maybe"),
                Err("two_factor: unknown variant `maybe`, expected one of `required`, `optional`, `off`"),
            ),
            (
                set("channels", "[totp, SMS]"),
                Ok(vec!["channels: totp, sms, email -> totp, sms"]),
            ),
            (set("channels", ""), Ok(vec!["channels: totp, sms, email -> none"])),
            (set("channels", "totp,fax"), Err("unknown variant `fax`")),
            (
                set("restore_resend_channels", "None"),
                Ok(vec!["restore_resend_channels: email, in_person -> none"]),
            ),
            (
                set("restore-limit", "0"),
                Ok(vec!["restore_limit: 3 -> 0"]),
            ),
            (
                set("restore_limit", "three"),
                Err("restore_limit takes a whole number from 0 to 4294967295, not \"three\""),
            ),
            (set("restore_limit", "-1"), Err("takes a whole number")),
            (
                set("restore_period_days", "0"),
                Err("restore_period_days must be at least 1 when restore_limit is set"),
            ),
            (
                set("restore_resend_channels", "email,totp"),
                Err("restore_resend_channels cannot hold totp"),
            ),
            (
                set("restore_auto_activate", "yes"),
                Ok(vec!["restore_auto_activate: false -> true"]),
            ),
            (set("restore_auto_activate", "maybe"), Err("takes true or false")),
            (
                set("restore_code_delivery", "in person"),
                Ok(vec!["restore_code_delivery: screen -> in_person"]),
            ),
            (set("two_factor", &huge), Err("the value is longer than 1024 characters")),
            (
                PolicyEdit::RemoveGroup { group: huge.clone() },
                Err("the group is longer than 1024 characters"),
            ),
            (set("colour", "red"), Err("unknown policy setting \"colour\"; the settings are two_factor, channels,")),
            (set("group", "x"), Err("unknown policy setting \"group\"")),
            (
                group("Kiosk", "channels", Some("totp")),
                Ok(vec!["group Kiosk added: channels totp"]),
            ),
            (
                group("vpn users", "two_factor", Some("required")),
                Ok(vec!["group VPN Users: two_factor - -> required"]),
            ),
            (
                group("VPN Users", "channels", None),
                Ok(vec!["group VPN Users: channels totp, sms -> -"]),
            ),
            (
                group("VPN Users", "restore_period_days", Some("0")),
                Err("[[policy.group]] VPN Users: restore_period_days must be at least 1 when restore_limit is set"),
            ),
            (group(" ", "two_factor", Some("off")), Err("group must name a group")),
            (
                group("sso", "two_factor", Some("sometimes")),
                Err("two_factor: unknown variant `sometimes`"),
            ),
            (
                PolicyEdit::RemoveGroup { group: "SSO".into() },
                Ok(vec!["group sso removed (two_factor off)"]),
            ),
            (
                PolicyEdit::RemoveGroup { group: "nobody".into() },
                Err("no group entry for \"nobody\""),
            ),
            (
                PolicyEdit::MoveGroup { group: "sso".into(), position: 1 },
                Ok(vec![
                    "group order: CN=Admins,OU=Groups,DC=corp,DC=example, VPN Users, sso -> sso, CN=Admins,OU=Groups,DC=corp,DC=example, VPN Users",
                ]),
            ),
            (
                PolicyEdit::MoveGroup { group: "sso".into(), position: 4 },
                Err("position must be between 1 and 3"),
            ),
            (
                PolicyEdit::Replace(PolicyConfig::default()),
                Ok(vec![
                    "channels: totp, sms, email -> totp, sms, voice, email, in_person",
                    admins_removed,
                    "group VPN Users removed (channels totp, sms)",
                    "group sso removed (two_factor off)",
                ]),
            ),
        ];
        let before = policies();
        for (i, (edit, expected)) in table.into_iter().enumerate() {
            let got = before.edited(&edit).map(|after| changes(&before, &after));
            match (got, expected) {
                (Ok(got), Ok(expected)) => assert_eq!(got, expected, "row {i}"),
                (Err(got), Err(part)) => {
                    assert!(got.contains(part), "row {i}: {got:?} lacks {part:?}");
                    assert!(!got.contains('\n'), "row {i}: one line: {got:?}");
                }
                (got, expected) => unreachable!("row {i}: {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn an_edited_group_applies_to_its_members_first_match_still_wins() -> Result<(), String> {
        let vpn = "CN=VPN Users,OU=Groups,DC=corp,DC=example".to_owned();
        let admins = "CN=Admins,OU=Groups,DC=corp,DC=example".to_owned();
        let after = policies().edited(&group("VPN Users", "two_factor", Some("off")))?;
        assert_eq!(
            after.for_groups(std::slice::from_ref(&vpn)).two_factor,
            TwoFactorRule::Off
        );
        // Admins comes first: its `required` still wins for members of both.
        assert_eq!(
            after.for_groups(&[vpn.clone(), admins.clone()]).two_factor,
            TwoFactorRule::Required
        );
        let moved = after.edited(&PolicyEdit::MoveGroup {
            group: "vpn users".into(),
            position: 1,
        })?;
        assert_eq!(
            moved.for_groups(&[vpn, admins]).two_factor,
            TwoFactorRule::Off
        );
        Ok(())
    }

    #[test]
    fn the_file_and_an_edit_are_refused_with_the_same_words() -> Result<(), String> {
        let file = crate::config::Config::parse(
            "version = 1\n[policy]\nrestore_limit = 2\n\n[[policy.group]]\ngroup = \"VPN\"\nchannels = [\"sms\"]\nrestore_period_days = 0\n",
        )
        .err()
        .ok_or("the file must be refused")?;
        let line = |e: &crate::config::ConfigError| (e.line, e.message.clone());
        let edit = PolicyConfig::default()
            .edited(&set("restore_limit", "2"))?
            .edited(&group("VPN", "restore_period_days", Some("0")))
            .err()
            .ok_or("the edit must be refused")?;
        assert_eq!(file.iter().map(line).collect::<Vec<_>>(), vec![(8, edit)]);
        Ok(())
    }

    #[test]
    fn the_settings_list_is_the_files_keys() {
        let doc = doc(&PolicyConfig::default());
        let mut keys: Vec<&str> = doc
            .as_object()
            .map(|o| {
                o.keys()
                    .map(String::as_str)
                    .filter(|k| *k != "group")
                    .collect()
            })
            .unwrap_or_default();
        let mut settings = SETTINGS.to_vec();
        keys.sort_unstable();
        settings.sort_unstable();
        assert_eq!(keys, settings);
        // A group entry has the same settings.
        let entry = doc_keys(&GroupPolicy::named("g"));
        assert_eq!(entry, settings);
    }

    fn doc_keys(entry: &GroupPolicy) -> Vec<&'static str> {
        let doc = doc(entry);
        let mut keys: Vec<&'static str> = SETTINGS
            .iter()
            .filter(|k| doc.get(**k).is_some())
            .copied()
            .collect();
        keys.sort_unstable();
        keys
    }

    #[test]
    fn one_entry_per_group() {
        let twice = PolicyConfig {
            group: vec![GroupPolicy::named("VPN"), GroupPolicy::named("vpn")],
            ..PolicyConfig::default()
        };
        assert_eq!(
            twice
                .problems()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            vec!["[[policy.group]] vpn: the group has an entry already above: one entry per group"]
        );
    }
}
