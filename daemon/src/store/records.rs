//! What the store keeps. Records are JSON inside the store: readable in a debugger, and serde's defaults
//! let a new optional field arrive without a migration.

use serde::{Deserialize, Serialize};
use twofold_wire::{DeviceInfo, DeviceKind, DeviceOrigin, DeviceStatus, TwoFactorState};

use crate::crypto::BackupCodeSet;
use crate::policy::{PolicyConfig, TwoFactorRule};
use crate::totp::TotpParams;

/// Absent and empty fields are left out of the stored JSON (a synced user's record takes 422 bytes
/// instead of 590): sled caches and writes whole pages of records, so each byte counts once per user.
/// Reading fills them in with their defaults, so records written either way read the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Stable id; never reused, never changes when the username does.
    pub id: String,
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    pub enabled: bool,
    /// `local` for users created through the admin socket.
    pub source: String,
    /// Set by policy: the user must enroll at next login.
    #[serde(default, skip_serializing_if = "is_false")]
    pub enrollment_required: bool,
    pub created: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_codes: Option<BackupCodeSet>,
    /// For users synced from a directory: where they come from and their state there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<DirectoryLink>,
    /// Numbers an admin set in Twofold; they win over the directory's until cleared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile_override: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice_override: Option<String>,
    /// The system-wide switch's epoch when the user last confirmed a device (see `SystemTwoFactor`).
    /// Records written before the switch existed enrolled in epoch 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub enrolled_epoch: u64,
}

fn is_false(value: &bool) -> bool {
    !value
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// A user's tie to their directory entry. The GUID is the identity: renames and moves keep it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryLink {
    /// The `[[directory]]` name.
    pub domain: String,
    /// objectGUID in its canonical text form.
    pub guid: String,
    pub dn: String,
    /// userAccountControl bit 0x2: cannot authenticate, devices kept.
    pub account_disabled: bool,
    /// When the entry was seen deleted (or out of scope): cannot authenticate, devices revoked,
    /// purged after the retention period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_at: Option<i64>,
    /// The groups AD lists in the user's `memberOf`; `UserRecord::groups` adds the primary group and
    /// every group these are nested in (see `directory::groups`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub member_of: Vec<String>,
    /// The primary group's SID (objectSid's domain + primaryGroupID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_group: Option<String>,
    /// accountExpires, unix seconds: from then on the user cannot authenticate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
    /// Locked out in AD at the last sync: cannot authenticate while `honour_ad_lockout` holds.
    #[serde(default, skip_serializing_if = "is_false")]
    pub locked_out: bool,
    /// When that lockout ends by itself (lockoutTime + the domain's lockoutDuration), so that it ends
    /// on time between syncs: AD lifts it without changing the user's uSNChanged, so no incremental
    /// sync would see it. None while locked until an admin lifts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<i64>,
}

/// Why a user cannot authenticate. The rule (`UserRecord::sign_in_block`): disabled in Twofold, then
/// removed from, disabled in, expired in and locked out in the directory, the first that holds.
/// An AD account that Windows would refuse a logon is refused a second factor too: the second factor
/// must never be what lets in an account the directory has shut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInBlock {
    Disabled,
    RemovedFromDirectory,
    DisabledInDirectory,
    ExpiredInDirectory,
    LockedOutInDirectory,
}

impl SignInBlock {
    /// For the audit log's `reason=`.
    pub fn code(self) -> &'static str {
        match self {
            SignInBlock::Disabled => "user_disabled",
            SignInBlock::RemovedFromDirectory => "ad_removed",
            SignInBlock::DisabledInDirectory => "ad_disabled",
            SignInBlock::ExpiredInDirectory => "ad_account_expired",
            SignInBlock::LockedOutInDirectory => "ad_locked_out",
        }
    }

    /// For admins (`user show`).
    pub fn explain(self) -> &'static str {
        match self {
            SignInBlock::Disabled => "disabled in Twofold",
            SignInBlock::RemovedFromDirectory => "removed from the directory",
            SignInBlock::DisabledInDirectory => "disabled in the directory (userAccountControl)",
            SignInBlock::ExpiredInDirectory => {
                "the account expired in the directory (accountExpires)"
            }
            SignInBlock::LockedOutInDirectory => {
                "locked out in the directory (too many bad passwords); honour_ad_lockout is on"
            }
        }
    }
}

impl UserRecord {
    /// An enabled local user created at `created` with nothing else set; callers fill in the rest
    /// (`UserRecord { groups, ..UserRecord::new_local("u1", "ann", now) }`).
    pub fn new_local(id: &str, username: &str, created: i64) -> UserRecord {
        UserRecord {
            id: id.into(),
            username: username.into(),
            upn: None,
            display_name: None,
            email: None,
            mobile: None,
            voice: None,
            groups: Vec::new(),
            enabled: true,
            source: "local".into(),
            enrollment_required: false,
            created,
            devices: Vec::new(),
            backup_codes: None,
            directory: None,
            mobile_override: None,
            voice_override: None,
            enrolled_epoch: 0,
        }
    }

    /// Why this user may not authenticate at `now`, if they may not (see `SignInBlock`).
    /// `honour_ad_lockout` is the user's `[[directory]]` setting.
    pub fn sign_in_block(&self, now: i64, honour_ad_lockout: bool) -> Option<SignInBlock> {
        if !self.enabled {
            return Some(SignInBlock::Disabled);
        }
        let link = self.directory.as_ref()?;
        if link.removed_at.is_some() {
            Some(SignInBlock::RemovedFromDirectory)
        } else if link.account_disabled {
            Some(SignInBlock::DisabledInDirectory)
        } else if link.expires.is_some_and(|at| now >= at) {
            Some(SignInBlock::ExpiredInDirectory)
        } else if link.locked_out
            && honour_ad_lockout
            && link.locked_until.is_none_or(|until| now < until)
        {
            Some(SignInBlock::LockedOutInDirectory)
        } else {
            None
        }
    }

    /// The mobile number codes go to: the admin's override, else the directory's (or local) value.
    pub fn effective_mobile(&self) -> Option<&str> {
        self.mobile_override.as_deref().or(self.mobile.as_deref())
    }

    pub fn effective_voice(&self) -> Option<&str> {
        self.voice_override.as_deref().or(self.voice.as_deref())
    }

    /// The rule that applies: the user's policy, or `required` for everyone while the system-wide
    /// switch is on (it wins over `off` too: it is the master admin's "everyone, now").
    pub fn rule(&self, policy: &PolicyConfig, system: &SystemTwoFactor) -> TwoFactorRule {
        if system.on {
            TwoFactorRule::Required
        } else {
            policy.two_factor_for(&self.groups)
        }
    }

    /// While the system-wide switch is on, only an enrollment confirmed in its current epoch counts.
    /// Otherwise: `off` by policy, enrolled once a device is confirmed, and until then enrollment is
    /// required when an admin reset the user's 2FA or their policy requires it.
    pub fn state(&self, policy: &PolicyConfig, system: &SystemTwoFactor) -> TwoFactorState {
        let rule = self.rule(policy, system);
        let confirmed = self
            .devices
            .iter()
            .any(|d| d.status != DeviceStatus::Pending);
        if system.on && (!confirmed || self.enrolled_epoch < system.epoch) {
            TwoFactorState::EnrollmentRequired
        } else if rule == TwoFactorRule::Off {
            TwoFactorState::Off
        } else if confirmed {
            TwoFactorState::Enrolled
        } else if self.enrollment_required || rule == TwoFactorRule::Required {
            TwoFactorState::EnrollmentRequired
        } else {
            TwoFactorState::NotEnrolled
        }
    }

    /// Confirmed devices that are not blocked.
    pub fn active_devices(&self) -> u32 {
        let n = self
            .devices
            .iter()
            .filter(|d| d.status == DeviceStatus::Active)
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    pub fn device(&self, id: &str) -> Option<&DeviceRecord> {
        self.devices.iter().find(|d| d.id == id)
    }

    pub fn device_mut(&mut self, id: &str) -> Option<&mut DeviceRecord> {
        self.devices.iter_mut().find(|d| d.id == id)
    }

    pub fn backup_codes_remaining(&self) -> u32 {
        self.backup_codes
            .as_ref()
            .map_or(0, BackupCodeSet::remaining)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub id: String,
    pub kind: DeviceKind,
    pub label: String,
    pub status: DeviceStatus,
    pub created: i64,
    pub last_used: Option<i64>,
    pub destination: Option<String>,
    pub totp: Option<TotpState>,
    /// Records written before this field existed were all enrolled by their user.
    #[serde(default)]
    pub origin: DeviceOrigin,
    /// When its user reported it with a notification's block code ("this wasn't me"): blocked for
    /// good, nobody unblocks it.
    #[serde(default)]
    pub reported_at: Option<i64>,
}

impl DeviceRecord {
    pub fn info(&self) -> DeviceInfo {
        DeviceInfo {
            id: self.id.clone(),
            kind: self.kind,
            label: self.label.clone(),
            status: self.status,
            created: self.created,
            last_used: self.last_used,
            destination: self.destination.clone(),
            origin: self.origin,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpState {
    pub params: TotpParams,
    /// The seed sealed under the master key (see `crypto::SecretBox`), base64.
    pub sealed_secret: String,
    /// Last accepted time step: no step at or before it is accepted again.
    pub last_step: Option<u64>,
    /// Steps between the device's clock and ours at the last accepted code (RFC 6238 §6).
    pub drift: i64,
}

/// The system-wide 2FA switch, kept in the store's meta tree. Each switch-on increments `epoch`; a user
/// whose last confirmed enrollment is from an earlier epoch must enroll again while the switch is on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemTwoFactor {
    pub on: bool,
    pub epoch: u64,
    pub changed_at: Option<i64>,
    pub changed_by: Option<String>,
}

/// The live policies (see `live_policy`): the settings that apply, and where they came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LivePolicy {
    pub rules: PolicyConfig,
    pub origin: twofold_wire::policy::PolicyOrigin,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub name: String,
    pub created: i64,
    /// Absent in keys made before scopes: they keep every power keys had then (all scopes, a trusted
    /// proxy) until an admin narrows them with `twofold-admin apikey set`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<twofold_wire::admin::ApiKeyAccess>,
}

impl ApiKeyRecord {
    pub fn access(&self) -> twofold_wire::admin::ApiKeyAccess {
        self.access
            .clone()
            .unwrap_or_else(twofold_wire::admin::ApiKeyAccess::unscoped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use twofold_wire::admin::{ApiKeyAccess, ApiScope};

    #[test]
    fn a_key_made_before_scopes_keeps_every_power_until_narrowed() -> serde_json::Result<()> {
        let before: ApiKeyRecord = serde_json::from_str(r#"{"name":"vpn","created":10}"#)?;
        assert_eq!(before.access, None);
        assert_eq!(before.access(), ApiKeyAccess::unscoped());
        assert!(ApiScope::ALL.iter().all(|s| before.access().allows(*s)));
        let narrowed = ApiKeyRecord {
            access: Some(ApiKeyAccess {
                scopes: vec![ApiScope::Verify],
                trusted_proxy: false,
            }),
            ..before
        };
        let json = serde_json::to_string(&narrowed)?;
        let read: ApiKeyRecord = serde_json::from_str(&json)?;
        assert!(read.access().allows(ApiScope::Verify));
        assert!(!read.access().allows(ApiScope::Enroll));
        assert!(!read.access().trusted_proxy);
        Ok(())
    }

    #[test]
    fn who_may_sign_in_follows_twofold_then_the_directory() {
        let now = 1_000_000;
        let link = DirectoryLink {
            domain: "corp".into(),
            guid: "g1".into(),
            dn: "CN=ann,DC=corp".into(),
            ..DirectoryLink::default()
        };
        let with = |edit: &dyn Fn(&mut UserRecord)| {
            let mut u = UserRecord {
                directory: Some(link.clone()),
                ..UserRecord::new_local("u1", "ann", 0)
            };
            edit(&mut u);
            u
        };
        let ad = |edit: &'static dyn Fn(&mut DirectoryLink)| {
            move |u: &mut UserRecord| {
                if let Some(d) = u.directory.as_mut() {
                    edit(d)
                }
            }
        };
        // (user, honour_ad_lockout, expected)
        let table: Vec<(UserRecord, bool, Option<SignInBlock>)> = vec![
            (with(&|_| {}), true, None),
            (UserRecord::new_local("u2", "local", 0), true, None),
            (
                with(&|u| u.enabled = false),
                true,
                Some(SignInBlock::Disabled),
            ),
            (
                with(&ad(&|d| d.removed_at = Some(5))),
                true,
                Some(SignInBlock::RemovedFromDirectory),
            ),
            (
                with(&ad(&|d| d.account_disabled = true)),
                true,
                Some(SignInBlock::DisabledInDirectory),
            ),
            // Expiry is a moment: the second it names is already past.
            (
                with(&ad(&|d| d.expires = Some(1_000_000))),
                true,
                Some(SignInBlock::ExpiredInDirectory),
            ),
            (
                with(&ad(&|d| d.expires = Some(999_999))),
                false,
                Some(SignInBlock::ExpiredInDirectory),
            ),
            (with(&ad(&|d| d.expires = Some(1_000_001))), true, None),
            (
                with(&ad(&|d| d.locked_out = true)),
                true,
                Some(SignInBlock::LockedOutInDirectory),
            ),
            (with(&ad(&|d| d.locked_out = true)), false, None),
            // A lockout with an end (the domain's lockoutDuration) is over from that second on.
            (
                with(&ad(&|d| {
                    d.locked_out = true;
                    d.locked_until = Some(1_000_001);
                })),
                true,
                Some(SignInBlock::LockedOutInDirectory),
            ),
            (
                with(&ad(&|d| {
                    d.locked_out = true;
                    d.locked_until = Some(1_000_000);
                })),
                true,
                None,
            ),
            // Disabled and expired: the first rule that holds is the one reported.
            (
                with(&ad(&|d| {
                    d.account_disabled = true;
                    d.expires = Some(1);
                })),
                true,
                Some(SignInBlock::DisabledInDirectory),
            ),
        ];
        for (row, (user, honour, expected)) in table.into_iter().enumerate() {
            assert_eq!(user.sign_in_block(now, honour), expected, "row {row}");
        }
    }

    #[test]
    fn absent_fields_are_left_out_and_read_back_as_defaults() -> serde_json::Result<()> {
        let synced = UserRecord {
            upn: Some("bulk00001@corp.example.test".into()),
            source: "ad:corp".into(),
            created: 10,
            directory: Some(DirectoryLink {
                domain: "corp".into(),
                guid: "g1".into(),
                dn: "CN=bulk00001,DC=corp".into(),
                account_disabled: false,
                ..DirectoryLink::default()
            }),
            ..UserRecord::new_local("u1", "bulk00001", 0)
        };
        let json = serde_json::to_string(&synced)?;
        assert_eq!(
            json,
            r#"{"id":"u1","username":"bulk00001","upn":"bulk00001@corp.example.test","enabled":true,"source":"ad:corp","created":10,"directory":{"domain":"corp","guid":"g1","dn":"CN=bulk00001,DC=corp","account_disabled":false}}"#
        );
        assert_eq!(serde_json::from_str::<UserRecord>(&json)?, synced);
        // As records were written before: every field, absent ones as null or empty.
        let written_before = r#"{"id":"u1","username":"bulk00001","upn":"bulk00001@corp.example.test","display_name":null,"email":null,"mobile":null,"voice":null,"groups":[],"enabled":true,"source":"ad:corp","enrollment_required":false,"created":10,"devices":[],"backup_codes":null,"directory":{"domain":"corp","guid":"g1","dn":"CN=bulk00001,DC=corp","account_disabled":false,"removed_at":null},"mobile_override":null,"voice_override":null,"enrolled_epoch":0}"#;
        assert_eq!(serde_json::from_str::<UserRecord>(written_before)?, synced);
        Ok(())
    }
}
