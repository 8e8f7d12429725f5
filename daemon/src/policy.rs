//! 2FA policies: global defaults, overridden per directory group.
//!
//! The rule: for each setting, the first `[[policy.group]]` entry (in file order) that names one of the
//! user's groups and sets that setting wins; a setting no matching entry sets comes from `[policy]`.
//! File order is the priority, so an admin reads the file top-down to know what applies. A group is named
//! by its DN or by its CN (`VPN Users` matches `CN=VPN Users,OU=Groups,...`), case-insensitively.

use serde::Deserialize;
pub use twofold_wire::policy::{
    Channel, EffectivePolicy, OldDevices, RestoreCodeDelivery, RestorePolicy,
    RestorePolicyOverride, RestoreRule, TwoFactorRule,
};

/// `[policy]`: the defaults, and the per-group overrides.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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

/// True when `wanted` (a DN or a CN) names the group `dn`. Also how `[admin.roles.directory]` names
/// the groups that give admin roles (see `roles`).
pub(crate) fn names_group(wanted: &str, dn: &str) -> bool {
    if wanted.eq_ignore_ascii_case(dn) {
        return true;
    }
    let cn = dn
        .split(',')
        .next()
        .and_then(|rdn| rdn.strip_prefix("CN=").or_else(|| rdn.strip_prefix("cn=")));
    cn.is_some_and(|cn| cn.eq_ignore_ascii_case(wanted))
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
    pub fn for_groups(&self, groups: &[String]) -> EffectivePolicy {
        let matching: Vec<&GroupPolicy> = self
            .group
            .iter()
            .filter(|p| groups.iter().any(|g| names_group(&p.group, g)))
            .collect();
        EffectivePolicy {
            two_factor: first(&matching, |p| p.two_factor, || self.two_factor),
            channels: first(&matching, |p| p.channels.clone(), || self.channels.clone()),
            restore: first(&matching, |p| p.restore, || self.restore),
            restore_settings: self.restore_for(&matching),
            from_groups: matching.iter().map(|p| p.group.clone()).collect(),
        }
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
        if !self.group.is_empty() {
            for p in self
                .group
                .iter()
                .filter(|p| groups.iter().any(|g| names_group(&p.group, g)))
            {
                prompt = prompt.or(p.restore_prompt_after_logins);
                rule = rule.or(p.restore);
            }
        }
        match rule.unwrap_or(self.restore) {
            RestoreRule::Prohibited => 0,
            RestoreRule::Allowed => prompt.unwrap_or(self.restore_prompt_after_logins),
        }
    }
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
