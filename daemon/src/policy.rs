//! 2FA policies: global defaults, overridden per directory group.
//!
//! The rule: for each setting, the first `[[policy.group]]` entry (in file order) that names one of the
//! user's groups and sets that setting wins; a setting no matching entry sets comes from `[policy]`.
//! File order is the priority, so an admin reads the file top-down to know what applies. A group is named
//! by its DN or by its CN (`VPN Users` matches `CN=VPN Users,OU=Groups,...`), case-insensitively.

use serde::Deserialize;
pub use twofold_wire::policy::{Channel, EffectivePolicy, RestoreRule, TwoFactorRule};

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
    #[serde(default)]
    pub group: Vec<GroupPolicy>,
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
}

/// True when `wanted` (a DN or a CN) names the group `dn`.
fn names_group(wanted: &str, dn: &str) -> bool {
    if wanted.eq_ignore_ascii_case(dn) {
        return true;
    }
    let cn = dn
        .split(',')
        .next()
        .and_then(|rdn| rdn.strip_prefix("CN=").or_else(|| rdn.strip_prefix("cn=")));
    cn.is_some_and(|cn| cn.eq_ignore_ascii_case(wanted))
}

impl PolicyConfig {
    pub fn for_groups(&self, groups: &[String]) -> EffectivePolicy {
        let matching: Vec<&GroupPolicy> = self
            .group
            .iter()
            .filter(|p| groups.iter().any(|g| names_group(&p.group, g)))
            .collect();
        EffectivePolicy {
            two_factor: matching
                .iter()
                .find_map(|p| p.two_factor)
                .unwrap_or(self.two_factor),
            channels: matching
                .iter()
                .find_map(|p| p.channels.clone())
                .unwrap_or_else(|| self.channels.clone()),
            restore: matching
                .iter()
                .find_map(|p| p.restore)
                .unwrap_or(self.restore),
            from_groups: matching.iter().map(|p| p.group.clone()).collect(),
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
