//! Device lifecycle and the 2FA rules that decide whether a user must, may or need not use a second
//! factor.
//!
//! The rules:
//! - A user's rule is their policy (`required`, `optional`, `off`), except while the system-wide switch
//!   is on: then it is `required` for everyone, `off` groups included.
//! - The switch keeps an epoch in the store's meta tree; each switch-on increments it, and each confirmed
//!   enrollment remembers the epoch it happened in. While the switch is on, a user whose enrollment is
//!   older than the current epoch must enroll again; so switching off and on again makes everyone enroll
//!   again, and switching it off lets the policies apply as before.
//! - `off` means no second factor applies: enrollment is refused and verify answers `two_factor_off`
//!   without checking the code or counting a failure.
//! - A user acts on their own devices (unpair, block) only with a code from ANOTHER active
//!   authenticator of theirs: the device being removed cannot vouch for its own removal. Turning 2FA off
//!   for oneself needs a code from any factor and is refused when the rule is `required`.
//! - An admin "reset two-factor" removes the user's devices and backup codes and requires enrollment
//!   at their next login, for that user alone.
//!
//! A blocked or deleted device's codes are refused at once: verify reads the user's record under the
//! user's lock and only checks active devices, and every change here is committed before it is answered.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use twofold_wire::admin::{SystemTwoFactorView, UserView};
use twofold_wire::api::{Factor, RejectReason, TwoFactorStatus, VerifyAnswer, VerifyResult};
use twofold_wire::policy::TwoFactorRule;
use twofold_wire::{DeviceInfo, DeviceStatus, TwoFactorState};

use crate::email::Template;
use crate::error::{Error, Result};
use crate::lockout::user_key;
use crate::service::{reject, Actor, Service, VerifyScope};
use crate::store::records::{DeviceRecord, SystemTwoFactor, UserRecord};
use crate::totp;

const SYSTEM_TWO_FACTOR_KEY: &str = "system_two_factor";

fn refused(code: &'static str, message: impl Into<String>) -> Error {
    Error::Refused {
        code,
        message: message.into(),
    }
}

impl Service {
    /// The system-wide switch, read from the store once and kept (shared: every verification asks).
    pub(crate) fn system_two_factor(&self) -> Result<Arc<SystemTwoFactor>> {
        if let Ok(cached) = self.system_two_factor.read() {
            if let Some(system) = cached.as_ref() {
                return Ok(system.clone());
            }
        }
        let system: Arc<SystemTwoFactor> = Arc::new(
            self.store()
                .meta(SYSTEM_TWO_FACTOR_KEY)?
                .unwrap_or_default(),
        );
        if let Ok(mut cached) = self.system_two_factor.write() {
            *cached = Some(system.clone());
        }
        Ok(system)
    }

    pub(crate) fn state_of(&self, user: &UserRecord) -> Result<TwoFactorState> {
        Ok(user.state(&self.policy().rules, &*self.system_two_factor()?))
    }

    pub(crate) fn refuse_when_off(&self, user: &UserRecord) -> Result<()> {
        if self.state_of(user)? == TwoFactorState::Off {
            return Err(Error::Conflict(format!(
                "two-factor authentication is off for {} by policy",
                user.username
            )));
        }
        Ok(())
    }

    /// Verify's answer for a user to whom no second factor applies; `None` for everyone else (unknown
    /// users included, so that they keep answering like users with a wrong code).
    /// `state` is the user's (`state_of`).
    pub(crate) async fn answer_when_off(
        &self,
        actor: &Actor,
        user: Option<&UserRecord>,
        state: Option<TwoFactorState>,
        audit_user: &str,
    ) -> Result<Option<VerifyAnswer>> {
        if user.is_none_or(|u| self.sign_in_block(u).is_some())
            || state != Some(TwoFactorState::Off)
        {
            return Ok(None);
        }
        self.audit(
            actor,
            "verify",
            Some(audit_user),
            "not_applicable",
            Some("reason=two_factor_off".into()),
        )?;
        self.store().commit().await?;
        Ok(Some(reject(RejectReason::TwoFactorOff, None)))
    }

    /// The "two-factor authentication has been enabled" mail, when the user has an address.
    pub(crate) fn notify_two_factor_enabled(&self, user: &UserRecord, device: &DeviceInfo) {
        let (Some(email), Ok(challenges)) = (&user.email, self.challenges()) else {
            return;
        };
        let values = BTreeMap::from([
            ("user", user.username.clone()),
            (
                "display_name",
                user.display_name
                    .clone()
                    .unwrap_or_else(|| user.username.clone()),
            ),
            ("device", device.label.clone()),
            ("time", crate::delivery::utc_text(self.now())),
        ]);
        challenges
            .delivery()
            .send_notice(Template::TwoFactorEnabled, email, values);
    }

    /// What the relying application asks at login: must, may or need the user not use a second factor.
    pub fn two_factor_status(&self, name: &str) -> Result<TwoFactorStatus> {
        let user = self.user_by_name(name)?;
        self.status_of(&user)
    }

    fn status_of(&self, user: &UserRecord) -> Result<TwoFactorStatus> {
        let system = self.system_two_factor()?;
        Ok(TwoFactorStatus {
            user: user.username.clone(),
            state: user.state(&self.policy().rules, &system),
            rule: user.rule(&self.policy().rules, &system),
            system_required: system.on,
            active_devices: user.active_devices(),
        })
    }

    /// Reads the user again under their lock: the caller holds the guard.
    fn current(&self, found: &UserRecord) -> Result<UserRecord> {
        self.store()
            .user(&found.id)?
            .ok_or(Error::NotFound { what: "user" })
    }

    /// Removes the user's devices and backup codes; they must enroll again at their next login.
    pub async fn reset_two_factor(&self, actor: &Actor, name: &str) -> Result<UserView> {
        let found = self.user_by_name(name)?;
        let user = self
            .remove_second_factor(actor, &found, true, "two_factor_reset")
            .await?;
        self.user_view(&user)
    }

    /// Turns 2FA off for the user themselves, with a code from any of their factors. Refused when their
    /// rule requires 2FA.
    pub async fn disable_two_factor(
        &self,
        actor: &Actor,
        name: &str,
        code: &str,
        address: IpAddr,
    ) -> Result<TwoFactorStatus> {
        let found = self.user_by_name(name)?;
        let system = self.system_two_factor()?;
        match found.rule(&self.policy().rules, &system) {
            TwoFactorRule::Required => {
                return Err(refused(
                    "two_factor_required",
                    if system.on {
                        "two-factor authentication is required for everyone (system-wide switch)"
                            .to_owned()
                    } else {
                        format!(
                            "the policy of {} requires two-factor authentication",
                            found.username
                        )
                    },
                ))
            }
            TwoFactorRule::Off => {
                return Err(Error::Conflict(format!(
                    "two-factor authentication is already off for {} by policy",
                    found.username
                )))
            }
            TwoFactorRule::Optional => {}
        }
        self.prove(actor, name, code, address, None).await?;
        let user = self
            .remove_second_factor(actor, &found, false, "two_factor_disable")
            .await?;
        self.status_of(&user)
    }

    /// Removes the user's devices, backup codes and restore code, durably and audited as `action`;
    /// `enrollment_required` says whether they must enroll again at their next login.
    async fn remove_second_factor(
        &self,
        actor: &Actor,
        found: &UserRecord,
        enrollment_required: bool,
        action: &str,
    ) -> Result<UserRecord> {
        let _guard = self.lock_user(&user_key(&found.id)).await;
        let mut user = self.current(found)?;
        let removed = user.devices.len();
        user.devices.clear();
        user.backup_codes = None;
        user.enrollment_required = enrollment_required;
        self.store().put_user(&user)?;
        self.retire_restore_code(&user.id)?;
        self.audit(
            actor,
            action,
            Some(&user.username),
            "ok",
            Some(format!("devices_removed={removed}")),
        )?;
        self.store().commit().await?;
        Ok(user)
    }

    /// A user without devices has no identity to restore: their restore code stops working (a reset
    /// after a stolen phone must not leave the thief's copy of the code usable). The dates of past
    /// restores stay, because the restore limit counts them.
    fn retire_restore_code(&self, user_id: &str) -> Result<()> {
        self.store().update_restore_record(user_id, |record| {
            record.code = None;
            record.code_issued_at = None;
            record.activated_at = None;
            record.logins = 0;
        })?;
        Ok(())
    }

    /// Checks `code` as a login would. With `other_than`, only a code from an active authenticator other
    /// than that device is proof. Returns the device that vouched, if any.
    async fn prove(
        &self,
        actor: &Actor,
        name: &str,
        code: &str,
        address: IpAddr,
        other_than: Option<&str>,
    ) -> Result<Option<String>> {
        // Which factors may vouch is decided before the code is checked: a backup or sent code, or a
        // code of the device acted on, is refused without being used up.
        let scope = VerifyScope {
            apps_only: other_than.is_some(),
            not_device: other_than,
            ..VerifyScope::default()
        };
        let verdict = self
            .verify_scoped(actor, name, code, None, scope, address)
            .await?;
        if verdict.reason == Some(RejectReason::FactorNotAllowed) {
            return Err(refused(
                "other_device_required",
                if totp::looks_like_totp(code).is_some() {
                    "the code came from the device acted on: a code from another of the user's devices is needed"
                } else {
                    "a code from another of the user's authenticator apps is needed (not a backup or sent code)"
                },
            ));
        }
        if verdict.result != VerifyResult::Accept {
            let reason = match verdict.reason {
                Some(RejectReason::Replayed) => "it was already used",
                Some(RejectReason::RateLimited) => "too many failures: try again later",
                Some(RejectReason::Locked) => "the user is locked",
                Some(RejectReason::TwoFactorOff) => "two-factor authentication is off",
                Some(RejectReason::FactorNotAllowed) => "it is not of a factor this request takes",
                Some(RejectReason::InvalidCode) | None => "it is not valid",
            };
            return Err(refused(
                "second_factor_required",
                format!("a valid code from the user's authenticator is needed; the code was refused: {reason}"),
            ));
        }
        let vouching = verdict
            .device
            .filter(|_| verdict.factor == Some(Factor::Totp));
        match (other_than, vouching) {
            (None, device) => Ok(device.map(|d| d.id)),
            (Some(_), None) => Err(refused(
                "other_device_required",
                "a code from another of the user's authenticator apps is needed (not a backup or sent code)",
            )),
            (Some(target), Some(device)) if device.id == target => Err(refused(
                "other_device_required",
                "the code came from the device acted on: a code from another of the user's devices is needed",
            )),
            (Some(_), Some(device)) => Ok(Some(device.id)),
        }
    }

    fn device_exists(&self, found: &UserRecord, device: &str) -> Result<()> {
        found
            .device(device)
            .map(|_| ())
            .ok_or(Error::NotFound { what: "device" })
    }

    /// Unpairs (deletes) one of the user's devices, vouched for by a code from another of their active
    /// authenticators. Answers the remaining devices.
    pub async fn unpair_from_device(
        &self,
        actor: &Actor,
        name: &str,
        device: &str,
        code: &str,
        address: IpAddr,
    ) -> Result<Vec<DeviceInfo>> {
        validate_code_shape(code)?;
        let found = self.user_by_name(name)?;
        self.device_exists(&found, device)?;
        let by = self
            .prove(actor, name, code, address, Some(device))
            .await?
            .unwrap_or_default();
        let _guard = self.lock_user(&user_key(&found.id)).await;
        let mut user = self.current(&found)?;
        let before = user.devices.len();
        user.devices.retain(|d| d.id != device);
        if user.devices.len() == before {
            return Err(Error::NotFound { what: "device" });
        }
        self.save_user(
            actor,
            &user,
            "device_delete",
            Some(format!("device={device} vouched_by={by}")),
        )
        .await?;
        Ok(user.devices.iter().map(DeviceRecord::info).collect())
    }

    /// Blocks one of the user's devices (a lost phone), vouched for by a code from another of their
    /// active authenticators. Unblocking is for admins.
    pub async fn block_from_device(
        &self,
        actor: &Actor,
        name: &str,
        device: &str,
        code: &str,
        address: IpAddr,
    ) -> Result<DeviceInfo> {
        validate_code_shape(code)?;
        let found = self.user_by_name(name)?;
        self.device_exists(&found, device)?;
        if found
            .device(device)
            .is_some_and(|d| d.status == DeviceStatus::Pending)
        {
            return Err(Error::Conflict(
                "the device's enrollment is not confirmed".into(),
            ));
        }
        let by = self
            .prove(actor, name, code, address, Some(device))
            .await?
            .unwrap_or_default();
        let _guard = self.lock_user(&user_key(&found.id)).await;
        let mut user = self.current(&found)?;
        let target = user
            .device_mut(device)
            .ok_or(Error::NotFound { what: "device" })?;
        target.status = DeviceStatus::Blocked;
        let info = target.info();
        self.save_user(
            actor,
            &user,
            "device_block",
            Some(format!("device={device} vouched_by={by}")),
        )
        .await?;
        Ok(info)
    }

    pub fn system_two_factor_view(&self) -> Result<SystemTwoFactorView> {
        let system = self.system_two_factor()?;
        let mut view = SystemTwoFactorView {
            on: system.on,
            epoch: system.epoch,
            changed_at: system.changed_at,
            changed_by: system.changed_by.clone(),
            enrollment_required: 0,
            users: 0,
        };
        let policy = self.policies.load_full();
        for user in self.store().list_users(None, usize::MAX)? {
            view.users += 1;
            if user.state(&policy.rules, &system) == TwoFactorState::EnrollmentRequired {
                view.enrollment_required += 1;
            }
        }
        Ok(view)
    }

    /// Switches the system-wide 2FA requirement. Switching on starts a new epoch: everyone must enroll
    /// again at their next login. Switching to the state it is in changes nothing (and is audited so).
    pub async fn set_system_two_factor(
        &self,
        actor: &Actor,
        on: bool,
    ) -> Result<SystemTwoFactorView> {
        // One switch at a time: the epoch is read, incremented and written.
        let _guard = self.lock_user(SYSTEM_TWO_FACTOR_KEY).await;
        let current: SystemTwoFactor = self
            .store()
            .meta(SYSTEM_TWO_FACTOR_KEY)?
            .unwrap_or_default();
        if current.on == on {
            self.audit(
                actor,
                "system_two_factor",
                None,
                "unchanged",
                Some(format!("on={on} epoch={}", current.epoch)),
            )?;
            self.store().commit().await?;
            return self.system_two_factor_view();
        }
        let next = SystemTwoFactor {
            on,
            epoch: if on { current.epoch + 1 } else { current.epoch },
            changed_at: Some(self.now()),
            changed_by: Some(actor.to_string()),
        };
        self.store().set_meta(SYSTEM_TWO_FACTOR_KEY, &next)?;
        self.audit(
            actor,
            "system_two_factor",
            None,
            if on { "on" } else { "off" },
            Some(format!("epoch={}", next.epoch)),
        )?;
        self.store().commit().await?;
        if let Ok(mut cached) = self.system_two_factor.write() {
            *cached = Some(Arc::new(next));
        }
        self.system_two_factor_view()
    }
}

/// A malformed code is the caller's mistake: refused before it could count as a failure.
fn validate_code_shape(code: &str) -> Result<()> {
    crate::validate::code(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicyConfig;
    use twofold_wire::{DeviceKind, DeviceOrigin};

    fn user(groups: &[&str], devices: &[DeviceStatus], epoch: u64, reset: bool) -> UserRecord {
        UserRecord {
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            enrollment_required: reset,
            devices: devices
                .iter()
                .enumerate()
                .map(|(i, status)| DeviceRecord {
                    id: format!("d{i}"),
                    kind: DeviceKind::Totp,
                    label: "phone".into(),
                    status: *status,
                    created: 0,
                    last_used: None,
                    destination: None,
                    totp: None,
                    origin: DeviceOrigin::Enrolled,
                    reported_at: None,
                })
                .collect(),
            enrolled_epoch: epoch,
            ..UserRecord::new_local("u1", "ann", 0)
        }
    }

    #[test]
    fn the_state_follows_policy_reset_and_the_system_switch_epoch() -> Result<()> {
        let policy: PolicyConfig = toml::from_str(
            "two_factor = \"optional\"\n[[group]]\ngroup = \"vpn\"\ntwo_factor = \"required\"\n[[group]]\ngroup = \"sso\"\ntwo_factor = \"off\"\n",
        )
        .map_err(|e| Error::Config(e.to_string()))?;
        let off = SystemTwoFactor::default();
        let on = |epoch| SystemTwoFactor {
            on: true,
            epoch,
            changed_at: None,
            changed_by: None,
        };
        let active = [DeviceStatus::Active];
        let blocked = [DeviceStatus::Blocked];
        let pending = [DeviceStatus::Pending];
        use TwoFactorState::*;
        // (groups, devices, enrolled epoch, reset by an admin, switch, state)
        type Row<'a> = (
            &'a [&'a str],
            &'a [DeviceStatus],
            u64,
            bool,
            SystemTwoFactor,
            TwoFactorState,
        );
        let table: Vec<Row> = vec![
            (&[], &[], 0, false, off.clone(), NotEnrolled),
            (&[], &pending, 0, false, off.clone(), NotEnrolled),
            (&[], &active, 0, false, off.clone(), Enrolled),
            (&[], &blocked, 0, false, off.clone(), Enrolled),
            (&[], &[], 0, true, off.clone(), EnrollmentRequired),
            (&["vpn"], &[], 0, false, off.clone(), EnrollmentRequired),
            (&["vpn"], &active, 0, false, off.clone(), Enrolled),
            (&["sso"], &[], 0, false, off.clone(), Off),
            (&["sso"], &active, 0, false, off.clone(), Off),
            // The switch on: only an enrollment of the current epoch counts, `off` groups included.
            (&[], &active, 0, false, on(1), EnrollmentRequired),
            (&[], &active, 1, false, on(1), Enrolled),
            (&["sso"], &[], 0, false, on(1), EnrollmentRequired),
            (&["sso"], &active, 1, false, on(1), Enrolled),
            (&[], &[], 1, false, on(1), EnrollmentRequired),
            // Off and on again: epoch 2, the epoch-1 enrollment no longer counts.
            (&[], &active, 1, false, on(2), EnrollmentRequired),
            // Off again: the policy applies, whatever the epoch.
            (
                &[],
                &active,
                1,
                false,
                SystemTwoFactor {
                    on: false,
                    epoch: 2,
                    changed_at: None,
                    changed_by: None,
                },
                Enrolled,
            ),
        ];
        for (i, (groups, devices, epoch, reset, system, state)) in table.into_iter().enumerate() {
            let u = user(groups, devices, epoch, reset);
            assert_eq!(u.state(&policy, &system), state, "row {i}");
        }
        Ok(())
    }
}
