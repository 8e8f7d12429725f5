//! The restore function: a user moves their 2FA identity onto a new device on their own, safely.
//!
//! The rules:
//! - Activation makes a restore code (125 bits, Crockford base32 in five groups) and stores only its
//!   argon2id hash. It happens when a user with an email address confirms their first device (policy
//!   `restore_auto_activate`), or when the user asks with a valid code from an active authenticator
//!   (`POST /api/v1/users/{user}/restore-code`), which the relying application offers when verify
//!   answers `restore_prompt: true` (from the `restore_prompt_after_logins`th login on, until activated).
//!   Asking again re-issues: a new code, and the old one stops working. The restore code *is* the
//!   recovery key: rotating one rotates the other. It reaches the user as the policy says
//!   (`restore_code_delivery`): in the answer (screen), by email, or through the handover queue.
//! - A restore needs both paths: the restore code (step 1), then an OTP emailed to the user's directory
//!   address (step 2), under one transaction id. Only then is a new TOTP device made (origin
//!   `restored`), and it counts once confirmed with its first code (step 3): the old devices are deleted
//!   or kept (`restore_old_devices`), a new restore code replaces the one used, the restore is counted.
//! - Wrong restore codes, emailed OTPs, pairing tokens and block codes count toward the same lockout as
//!   wrong sign-in codes, per user and per address, and are not even checked while the lockout says
//!   wait: guessing is throttled exactly like guessing a TOTP code.
//! - `restore = "prohibited"`, and a user past `restore_limit` restores in `restore_period_days`, are
//!   refused with the reason, after the restore code was checked (so the answer tells nothing to someone
//!   without it). Only an admin restores them (`RestoreStart`/`RestoreConfirm` on the admin socket).
//! - Duplicate: an active authenticator's code makes a single-use pairing token (minutes), with which
//!   a second device is enrolled (origin `duplicated`) without the restore code.
//! - Every restore, duplicate or added device is announced to the user's email and to every other active
//!   SMS, voice and email device, each with its own single-use block code: `POST /api/v1/block` blocks
//!   the new device at once and for good ("this wasn't me"). An authenticator app cannot receive
//!   messages, so users with only TOTP devices are told by email.
//! - A user who forgot a device's PIN or password restores: the restore re-creates the device.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use serde::Deserialize;
use twofold_wire::api::{EnrollAnswer, Factor, RejectReason, VerifyAnswer, VerifyResult};
use twofold_wire::policy::{
    Channel, EffectivePolicy, OldDevices, RestoreCodeDelivery, RestoreRule,
};
use twofold_wire::restore::{
    DeviceBlocked, PairingToken, RestoreCodeIssued, RestoreCodeResent, RestoreCompleted,
    RestoreStarted, RestoreState,
};
use twofold_wire::{DeviceInfo, DeviceKind, DeviceOrigin, DeviceStatus};

use crate::challenge::new_transaction_id;
use crate::challenge::{self, mask, numeric_code};
use crate::crypto::{self, SlowHash, BACKUP_ALPHABET};
use crate::delivery::Job;
use crate::email::Template;
use crate::error::{Error, Result, StoreError};
use crate::lockout::Gate;
use crate::lockout::{address_key, user_key};
use crate::service::{origin_name, Actor, Attempt, Service, TotpChoice, VerifyScope};
use crate::store::records::UserRecord;
use crate::store::restore::{RestoreRecord, RestoreSession, SecretGrant};
use crate::validate;

/// Characters of a restore code (25 of 32 symbols: 125 bits).
pub const RESTORE_CODE_CHARS: usize = 25;
/// Characters of pairing tokens and block codes (26 of 32 symbols: 130 bits).
const TOKEN_CHARS: usize = 26;
/// Completed restores remembered per user: more than any sensible limit.
const RESTORES_KEPT: usize = 64;
const DAY: i64 = 86_400;

/// `[restore]`: lifetimes of the restore function's short-lived secrets. The policies themselves are
/// the `restore_*` keys of `[policy]` and `[[policy.group]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreConfig {
    /// A restore must be finished this long after its restore code was accepted.
    #[serde(default = "default_session_seconds")]
    pub session_lifetime_seconds: u64,
    /// A pairing token is valid this long.
    #[serde(default = "default_pairing_seconds")]
    pub pairing_lifetime_seconds: u64,
    /// A notification's block code is valid this long.
    #[serde(default = "default_block_code_days")]
    pub block_code_lifetime_days: u32,
    /// A restore code waits this long in the handover queue.
    #[serde(default = "default_handover_hours")]
    pub handover_lifetime_hours: u32,
}

fn default_session_seconds() -> u64 {
    900
}
fn default_pairing_seconds() -> u64 {
    600
}
fn default_block_code_days() -> u32 {
    30
}
fn default_handover_hours() -> u32 {
    72
}

impl Default for RestoreConfig {
    fn default() -> Self {
        RestoreConfig {
            session_lifetime_seconds: default_session_seconds(),
            pairing_lifetime_seconds: default_pairing_seconds(),
            block_code_lifetime_days: default_block_code_days(),
            handover_lifetime_hours: default_handover_hours(),
        }
    }
}

/// Why a restore-function request was refused (the API answers each with its own 4xx code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Wrong, used or expired code, or no such user: told apart from none of these.
    InvalidCode,
    /// Too soon after failures: retry after this many seconds. The code was not checked.
    RateLimited(u64),
    /// Locked after too many failures; `Some(s)`: the lock lifts in s seconds.
    Locked(Option<u64>),
    /// The user's policy allows only an admin to restore.
    Prohibited,
    /// `restore_limit` restores in the period are used up.
    LimitReached {
        limit: u32,
        period_days: u32,
        next_restore_at: Option<i64>,
    },
}

pub type Refused<T> = std::result::Result<T, Refusal>;

/// Restores within the period ending at `now`, and (when the limit is reached) when the oldest of
/// them leaves the period so that one more restore fits.
pub fn limit_check(restores: &[i64], limit: u32, period_days: u32, now: i64) -> (u32, Option<i64>) {
    let period = i64::from(period_days).saturating_mul(DAY);
    let mut window: Vec<i64> = restores
        .iter()
        .copied()
        .filter(|&t| t > now.saturating_sub(period) && t <= now)
        .collect();
    window.sort_unstable();
    let used = u32::try_from(window.len()).unwrap_or(u32::MAX);
    if limit == 0 || used < limit {
        return (used, None);
    }
    let leaving = usize::try_from(used - limit).unwrap_or(0);
    (used, window.get(leaving).map(|t| t.saturating_add(period)))
}

/// A user's restore state, from their record and policy, at `now`.
pub fn state_of(record: &RestoreRecord, policy: &EffectivePolicy, now: i64) -> RestoreState {
    let settings = &policy.restore_settings;
    let (used, next) = limit_check(&record.restores, settings.limit, settings.period_days, now);
    RestoreState {
        allowed: policy.restore == RestoreRule::Allowed,
        activated: record.activated_at.is_some() && record.code.is_some(),
        activated_at: record.activated_at,
        code_issued_at: record.code_issued_at,
        restores_in_period: used,
        limit: settings.limit,
        period_days: settings.period_days,
        last_restore: record.restores.last().copied(),
        next_restore_at: next,
        logins: record.logins,
    }
}

/// 25 symbols in groups of five: `7k2m9-...`.
fn new_restore_code() -> String {
    let raw = random_symbols(RESTORE_CODE_CHARS);
    raw.as_bytes()
        .chunks(5)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

fn random_symbols(n: usize) -> String {
    (0..n)
        .map(|_| char::from(BACKUP_ALPHABET[crypto::random_below(32) as usize]))
        .collect()
}

/// A code as typed (case, spaces and dashes do not matter); `None` when it cannot be one of `len`.
fn normalise(input: &str, len: usize) -> Option<String> {
    let s: String = input
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (s.len() == len && s.bytes().all(|b| BACKUP_ALPHABET.contains(&b))).then_some(s)
}

fn refusal_of(answer: &VerifyAnswer) -> Refusal {
    match answer.reason {
        Some(RejectReason::RateLimited) => Refusal::RateLimited(answer.retry_after.unwrap_or(1)),
        Some(RejectReason::Locked) => Refusal::Locked(answer.retry_after),
        _ => Refusal::InvalidCode,
    }
}

fn refusal_name(refusal: &Refusal) -> &'static str {
    match refusal {
        Refusal::InvalidCode => "invalid_code",
        Refusal::RateLimited(_) => "rate_limited",
        Refusal::Locked(_) => "locked",
        Refusal::Prohibited => "prohibited",
        Refusal::LimitReached { .. } => "limit_reached",
    }
}

fn how_added(origin: DeviceOrigin) -> &'static str {
    match origin {
        DeviceOrigin::Enrolled => "enrolled",
        DeviceOrigin::Admin => "enrolled by an administrator",
        DeviceOrigin::Restored => "added by restoring your two-factor authentication",
        DeviceOrigin::Duplicated => "added by pairing with one of your devices",
    }
}

/// Where a restore code goes.
enum Route {
    Screen,
    Email(String),
    InPerson,
    Phone(Channel, String),
}

impl Service {
    /// The `restore_prompt_after_logins` that applies to a user (0 when restore is prohibited).
    pub(crate) fn restore_prompt_after(&self, user: &UserRecord) -> u32 {
        self.policy().rules.restore_prompt_after(&user.groups)
    }

    /// Counts a successful login; true when the relying application should prompt the user to activate
    /// restore. Counting stops at the prompt and after activation, so most logins cost one look into
    /// memory.
    pub(crate) fn count_login(&self, user_id: &str, prompt_after: u32) -> Result<bool> {
        if prompt_after == 0 {
            return Ok(false);
        }
        let count = self.store().login_count(user_id)?;
        if count.activated {
            return Ok(false);
        }
        if count.logins >= prompt_after {
            return Ok(true);
        }
        let record = self
            .store()
            .update_restore_record(user_id, |r| r.logins = r.logins.saturating_add(1))?;
        Ok(record.logins >= prompt_after)
    }

    pub fn restore_state(&self, user: &UserRecord) -> Result<RestoreState> {
        let record = self.store().restore_record(&user.id)?;
        let policy = self.policy().rules.for_groups(&user.groups);
        Ok(state_of(&record, &policy, self.now()))
    }

    pub fn restore_status(&self, name: &str) -> Result<(String, RestoreState)> {
        let user = self.find(name)?;
        Ok((user.username.clone(), self.restore_state(&user)?))
    }

    fn find(&self, name: &str) -> Result<UserRecord> {
        validate::lookup_name(name)?;
        self.store()
            .find_user(name)?
            .ok_or_else(|| Error::UserNotFound(name.to_owned()))
    }

    /// The lockout's verdict on an attempt, as a restore refusal.
    fn gate(&self, key: &str, addr_key: &str, now: i64) -> Result<Option<Refusal>> {
        Ok(match self.lockout_gate(key, Some(addr_key), now)? {
            Gate::Locked(after) => Some(Refusal::Locked(after)),
            Gate::Wait(s) => Some(Refusal::RateLimited(s)),
            Gate::Open => None,
        })
    }

    /// Audits a refusal (and counts a wrong code), commits, and hands the refusal back.
    async fn refuse<T>(
        &self,
        actor: &Actor,
        action: &str,
        user: &str,
        refusal: Refusal,
        counted: Option<(&str, &str)>,
        address: IpAddr,
    ) -> Result<Refused<T>> {
        let now = self.now();
        let mut detail = format!("reason={} address={address}", refusal_name(&refusal));
        let outcome = match counted {
            Some((key, addr_key)) => {
                let failures = self.count_failure(user, key, Some(addr_key), now)?.failures;
                detail.push_str(&format!(" failures={failures}"));
                "reject"
            }
            None => "refused",
        };
        self.audit(actor, action, Some(user), outcome, Some(detail))?;
        self.store().commit().await?;
        Ok(Err(refusal))
    }

    /// A code from one of the user's active authenticator apps, checked (and counted) as a login. A
    /// backup or sent code is refused before it is checked, so it stays usable.
    async fn authenticated_device(
        &self,
        actor: &Actor,
        name: &str,
        code: &str,
        address: IpAddr,
    ) -> Result<Refused<DeviceInfo>> {
        let apps_only = VerifyScope {
            apps_only: true,
            ..VerifyScope::default()
        };
        let verdict = self
            .verify_scoped(actor, name, code, None, apps_only, address)
            .await?;
        let needs_an_app = || {
            Error::Forbidden(
                "a code from an active authenticator app is needed, not a backup or sent code"
                    .into(),
            )
        };
        if verdict.reason == Some(RejectReason::FactorNotAllowed) {
            return Err(needs_an_app());
        }
        if verdict.result != VerifyResult::Accept {
            return Ok(Err(refusal_of(&verdict)));
        }
        match (verdict.factor, verdict.device) {
            (Some(Factor::Totp), Some(device)) => Ok(Ok(device)),
            _ => Err(needs_an_app()),
        }
    }

    // ---- the restore code ----

    /// Activates restore, or re-issues the restore code (the old one stops working), after a valid code
    /// from an active authenticator.
    pub async fn request_restore_code(
        &self,
        actor: &Actor,
        name: &str,
        code: &str,
        address: IpAddr,
    ) -> Result<Refused<RestoreCodeIssued>> {
        let device = match self
            .authenticated_device(actor, name, code, address)
            .await?
        {
            Ok(device) => device,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let user = self.find(name)?;
        let policy = self.policy().rules.for_groups(&user.groups);
        if policy.restore == RestoreRule::Prohibited {
            return self
                .refuse(
                    actor,
                    "restore_code_issue",
                    &user.username,
                    Refusal::Prohibited,
                    None,
                    address,
                )
                .await;
        }
        let reason = format!("requested device={}", device.id);
        Ok(Ok(self.issue_restore_code(actor, &user, &reason).await?))
    }

    /// Makes a new restore code (replacing any other) and sends it as the policy says.
    async fn issue_restore_code(
        &self,
        actor: &Actor,
        user: &UserRecord,
        reason: &str,
    ) -> Result<RestoreCodeIssued> {
        let delivery = self
            .policy()
            .rules
            .for_groups(&user.groups)
            .restore_settings
            .code_delivery;
        let route = match delivery {
            RestoreCodeDelivery::Screen => Route::Screen,
            RestoreCodeDelivery::InPerson => Route::InPerson,
            RestoreCodeDelivery::Email => Route::Email(user.email.clone().ok_or_else(|| {
                Error::Conflict(
                    "the policy sends restore codes by email and the user has no email address"
                        .into(),
                )
            })?),
        };
        let (code, destination, issued_at) = self
            .replace_restore_code(actor, user, route, reason)
            .await?;
        Ok(RestoreCodeIssued {
            delivery,
            restore_code: (delivery == RestoreCodeDelivery::Screen).then_some(code),
            destination,
            issued_at,
        })
    }

    /// Stores a fresh restore code's hash, audits, commits, then sends the code along `route`.
    /// Returns the code, the masked destination and when it was made.
    async fn replace_restore_code(
        &self,
        actor: &Actor,
        user: &UserRecord,
        route: Route,
        reason: &str,
    ) -> Result<(String, Option<String>, i64)> {
        let delivery = match &route {
            Route::Screen => None,
            Route::Email(_) => {
                let delivery = self.challenges()?.delivery();
                delivery.can_deliver(Channel::Email)?;
                Some(delivery)
            }
            Route::InPerson => Some(self.challenges()?.delivery()),
            Route::Phone(channel, _) => {
                let delivery = self.challenges()?.delivery();
                delivery.can_deliver(*channel)?;
                Some(delivery)
            }
        };
        let code = new_restore_code();
        let normal = normalise(&code, RESTORE_CODE_CHARS)
            .ok_or_else(|| Error::Crypto("a new restore code is malformed".into()))?;
        let cost = self.argon2_cost();
        let hash = self
            .hash_pool()
            .run(move |memory| SlowHash::new(&normal, cost, memory))
            .await?;
        let now = self.now();
        self.store().update_restore_record(&user.id, |r| {
            r.code = Some(hash.clone());
            r.code_issued_at = Some(now);
            r.activated_at.get_or_insert(now);
        })?;
        let (via, destination) = match &route {
            Route::Screen => ("screen", None),
            Route::Email(to) => ("email", Some(mask(to, Channel::Email))),
            Route::InPerson => ("in_person", Some(mask("", Channel::InPerson))),
            Route::Phone(channel, to) => {
                (challenge::channel_name(*channel), Some(mask(to, *channel)))
            }
        };
        // Only an SMS or a call is tracked as a delivery; it needs its record before the commit.
        let job = match &route {
            Route::Phone(channel, to) => Some(self.detached_job(
                user,
                *channel,
                to,
                &code,
                "restore-code",
                Template::RestoreCode,
                now,
            )?),
            _ => None,
        };
        self.audit(
            actor,
            "restore_code_issue",
            Some(&user.username),
            "ok",
            Some(format!(
                "{reason} delivery={via}{}",
                destination
                    .as_ref()
                    .map(|d| format!(" destination={d}"))
                    .unwrap_or_default()
            )),
        )?;
        self.store().commit().await?;
        if let Some(delivery) = delivery {
            match route {
                Route::Screen => {}
                Route::Email(to) => {
                    delivery.mail(
                        Template::RestoreCode,
                        &to,
                        BTreeMap::from([
                            ("restore_code", code.clone()),
                            ("user", user.username.clone()),
                            ("display_name", display_name(user)),
                        ]),
                    );
                }
                Route::InPerson => {
                    let hours = i64::from(self.config().restore.handover_lifetime_hours);
                    let expires_at = now.saturating_add(hours.saturating_mul(3600));
                    let job = Job {
                        transaction_id: new_transaction_id(),
                        username: user.username.clone(),
                        display_name: user.display_name.clone(),
                        channel: Channel::InPerson,
                        destination: String::new(),
                        code: code.clone(),
                        locale: "en".to_owned(),
                        expires_at,
                        valid_seconds: u32::try_from(hours * 3600).unwrap_or(u32::MAX),
                        template: Template::RestoreCode,
                    };
                    delivery.handover().push(
                        &job,
                        "Restore code: check the photo ID, hand it over in a sealed envelope."
                            .to_owned(),
                        now,
                    );
                }
                Route::Phone(..) => {
                    if let Some(job) = job {
                        delivery.submit(job);
                    }
                }
            }
        }
        Ok((code, destination, now))
    }

    /// A message by SMS, call or email whose delivery is tracked like a challenge's, but which is not
    /// the user's open challenge: its MAC is under `purpose`, so it never passes as a sign-in code.
    #[allow(clippy::too_many_arguments)]
    fn detached_job(
        &self,
        user: &UserRecord,
        channel: Channel,
        destination: &str,
        code: &str,
        purpose: &str,
        template: Template,
        now: i64,
    ) -> Result<Job> {
        let challenges = self.challenges()?;
        let transaction_id = new_transaction_id();
        let lifetime = self.config().challenge.lifetime_seconds;
        let expires_at = now.saturating_add(i64::try_from(lifetime).unwrap_or(i64::MAX));
        self.store()
            .insert_detached_challenge(&challenges.queued_record(
                purpose,
                &transaction_id,
                user,
                channel,
                destination,
                code,
                now,
                expires_at,
            ))?;
        Ok(Job {
            transaction_id,
            username: user.username.clone(),
            display_name: user.display_name.clone(),
            channel,
            destination: destination.to_owned(),
            code: code.to_owned(),
            locale: "en".to_owned(),
            expires_at,
            valid_seconds: u32::try_from(lifetime).unwrap_or(u32::MAX),
            template,
        })
    }

    /// An admin re-sends a lost restore code: a new one, by a channel the user's policy allows.
    pub async fn resend_restore_code(
        &self,
        actor: &Actor,
        name: &str,
        channel: Channel,
    ) -> Result<RestoreCodeResent> {
        let user = self.find(name)?;
        let policy = self.policy().rules.for_groups(&user.groups);
        if !policy.restore_settings.resend_channels.contains(&channel) {
            self.audit(
                actor,
                "restore_code_resend",
                Some(&user.username),
                "refused",
                Some(format!(
                    "channel={} reason=policy",
                    challenge::channel_name(channel)
                )),
            )?;
            self.store().commit().await?;
            let allowed: Vec<&str> = policy
                .restore_settings
                .resend_channels
                .iter()
                .map(|c| challenge::channel_name(*c))
                .collect();
            return Err(Error::Forbidden(if allowed.is_empty() {
                "the user's policy does not re-send lost restore codes".into()
            } else {
                format!(
                    "the user's policy re-sends restore codes only by {}",
                    allowed.join(", ")
                )
            }));
        }
        let route = match channel {
            Channel::Email => Route::Email(challenge::destination(&user, channel)?),
            Channel::InPerson => Route::InPerson,
            Channel::Sms | Channel::Voice => {
                Route::Phone(channel, challenge::destination(&user, channel)?)
            }
            Channel::Totp => {
                return Err(Error::invalid(
                    "an authenticator app cannot receive a restore code: choose sms, voice, email or in_person",
                ))
            }
        };
        let (_, destination, _) = self
            .replace_restore_code(actor, &user, route, "resent_by_admin")
            .await?;
        Ok(RestoreCodeResent {
            user: user.username,
            channel,
            destination: destination.unwrap_or_default(),
        })
    }

    /// Runs after a device was confirmed outside a restore: auto-activation of restore with the first
    /// device, and the notification of any device after the first.
    pub(crate) async fn after_device_confirmed(
        &self,
        actor: &Actor,
        user: &UserRecord,
        device: &DeviceInfo,
        first: bool,
    ) -> Result<Option<RestoreCodeIssued>> {
        if !first {
            self.notify_device_added(actor, user, device).await?;
            return Ok(None);
        }
        let policy = self.policy().rules.for_groups(&user.groups);
        let wanted = policy.restore == RestoreRule::Allowed
            && policy.restore_settings.auto_activate
            && user.email.is_some()
            && self
                .store()
                .restore_record(&user.id)?
                .activated_at
                .is_none();
        if !wanted {
            return Ok(None);
        }
        match self.issue_restore_code(actor, user, "auto_activate").await {
            Ok(issued) => Ok(Some(issued)),
            // The device is confirmed either way; the user can activate restore later.
            Err(e) if e.is_caller_error() => {
                self.audit(
                    actor,
                    "restore_code_issue",
                    Some(&user.username),
                    "failed",
                    Some(format!("auto_activate error={e}")),
                )?;
                self.store().commit().await?;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    // ---- restore ----

    /// Step 1: the restore code. On success an OTP goes to the user's email.
    pub async fn start_restore(
        &self,
        actor: &Actor,
        name: &str,
        restore_code: &str,
        address: IpAddr,
    ) -> Result<Refused<RestoreStarted>> {
        validate::lookup_name(name)?;
        validate::code(restore_code)?;
        let Attempt {
            key,
            addr_key,
            user,
            audit_name,
            _guard: guard,
            ..
        } = self.begin_attempt(name, address).await?;
        let candidate = normalise(restore_code, RESTORE_CODE_CHARS);
        // The hash pool's turn comes before the lockout's verdict: a request that queued behind a
        // flood of guesses from its address is refused unhashed once they have been counted.
        let turn = match candidate {
            Some(_) => Some(self.hash_pool().turn().await?),
            None => None,
        };
        let now = self.now();
        if let Some(refusal) = self.gate(&key, &addr_key, now)? {
            return self
                .refuse(actor, "restore_start", &audit_name, refusal, None, address)
                .await;
        }
        let user = user.filter(|u| self.sign_in_block(u).is_none());
        let stored = match &user {
            Some(u) => self.store().restore_record(&u.id)?.code,
            None => None,
        };
        let cost = self.argon2_cost();
        let matched = match (turn, candidate) {
            (Some(turn), Some(c)) => {
                turn.run(move |memory| match stored {
                    Some(hash) => hash.matches(&c, memory),
                    // Hash anyway, so that the time taken does not tell who has a restore code.
                    None => SlowHash::new(&c, cost, memory).map(|_| false),
                })
                .await?
            }
            _ => false,
        };
        let Some(user) = user.filter(|_| matched) else {
            return self
                .refuse(
                    actor,
                    "restore_start",
                    &audit_name,
                    Refusal::InvalidCode,
                    Some((&key, &addr_key)),
                    address,
                )
                .await;
        };
        let policy = self.policy().rules.for_groups(&user.groups);
        if policy.restore == RestoreRule::Prohibited {
            return self
                .refuse(
                    actor,
                    "restore_start",
                    &user.username,
                    Refusal::Prohibited,
                    None,
                    address,
                )
                .await;
        }
        let settings = &policy.restore_settings;
        let record = self.store().restore_record(&user.id)?;
        let (used, next_restore_at) =
            limit_check(&record.restores, settings.limit, settings.period_days, now);
        if settings.limit > 0 && used >= settings.limit {
            let refusal = Refusal::LimitReached {
                limit: settings.limit,
                period_days: settings.period_days,
                next_restore_at,
            };
            return self
                .refuse(
                    actor,
                    "restore_start",
                    &user.username,
                    refusal,
                    None,
                    address,
                )
                .await;
        }
        let email = user.email.clone().ok_or_else(|| {
            Error::Conflict(
                "the user has no email address for the second code of a restore: an admin must restore".into(),
            )
        })?;
        let challenges = self.challenges()?;
        challenges.delivery().can_deliver(Channel::Email)?;
        let otp = numeric_code(usize::from(self.config().challenge.code_digits));
        let mut job = self.detached_job(
            &user,
            Channel::Email,
            &email,
            &otp,
            "restore",
            Template::RestoreOtp,
            now,
        )?;
        let transaction_id = job.transaction_id.clone();
        let session_seconds =
            i64::try_from(self.config().restore.session_lifetime_seconds).unwrap_or(i64::MAX);
        self.store().put_restore_session(
            &transaction_id,
            &RestoreSession {
                user_id: user.id.clone(),
                created: now,
                expires_at: now.saturating_add(session_seconds),
                device: None,
            },
        )?;
        let destination = mask(&email, Channel::Email);
        self.audit(
            actor,
            "restore_start",
            Some(&user.username),
            "ok",
            Some(format!(
                "transaction={transaction_id} destination={destination} address={address}"
            )),
        )?;
        self.store().commit().await?;
        drop(guard);
        let expires_at = job.expires_at;
        job.locale = "en".to_owned();
        challenges.delivery().submit(job);
        Ok(Ok(RestoreStarted {
            transaction_id,
            destination,
            expires_at,
        }))
    }

    /// A restore session that has not expired, and its user.
    fn session(&self, transaction_id: &str) -> Result<(RestoreSession, UserRecord)> {
        validate::text("transaction", transaction_id, 64)?;
        let session = self
            .store()
            .restore_session(transaction_id)?
            .ok_or(Error::NotFound { what: "restore" })?;
        if self.now() >= session.expires_at {
            return Err(Error::Conflict(
                "the restore has expired: start again with the restore code".into(),
            ));
        }
        let user = self
            .store()
            .user(&session.user_id)?
            .filter(|u| self.sign_in_block(u).is_none())
            .ok_or(Error::NotFound { what: "restore" })?;
        Ok((session, user))
    }

    /// Step 2: the emailed OTP. Answers the new, pending TOTP device with its QR code.
    pub async fn restore_enroll(
        &self,
        actor: &Actor,
        transaction_id: &str,
        otp: &str,
        label: Option<String>,
        address: IpAddr,
    ) -> Result<Refused<EnrollAnswer>> {
        validate::code(otp)?;
        if let Some(label) = &label {
            validate::text("label", label, 64)?;
        }
        let (mut session, user) = self.session(transaction_id)?;
        let key = user_key(&user.id);
        let addr_key = address_key(address);
        {
            let _guard = self.lock_user(&key).await;
            let now = self.now();
            if let Some(refusal) = self.gate(&key, &addr_key, now)? {
                return self
                    .refuse(actor, "restore_otp", &user.username, refusal, None, address)
                    .await;
            }
            if session.device.is_some() {
                return Err(Error::Conflict(
                    "the emailed code of this restore was already used: confirm the new device"
                        .into(),
                ));
            }
            let digits: String = otp.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
            let challenges = self.challenges()?;
            let matched = self
                .store()
                .challenge(transaction_id)?
                .filter(|c| c.user_id == user.id && c.open(now))
                .is_some_and(|c| {
                    challenges.key().matches(
                        &c.code_mac,
                        "restore",
                        &user.id,
                        transaction_id,
                        &digits,
                    )
                });
            if !matched {
                return self
                    .refuse(
                        actor,
                        "restore_otp",
                        &user.username,
                        Refusal::InvalidCode,
                        Some((&key, &addr_key)),
                        address,
                    )
                    .await;
            }
            self.store()
                .update_challenge(transaction_id, |r| r.used_at = Some(now))?;
            self.audit(
                actor,
                "restore_otp",
                Some(&user.username),
                "ok",
                Some(format!("transaction={transaction_id} address={address}")),
            )?;
        }
        let answer = self
            .enroll_device(
                actor,
                &user.username,
                TotpChoice {
                    label: Some(label.unwrap_or_else(|| "Restored authenticator".to_owned())),
                    ..TotpChoice::default()
                },
                DeviceOrigin::Restored,
                None,
            )
            .await?;
        session.device = Some(answer.device.id.clone());
        self.store().put_restore_session(transaction_id, &session)?;
        self.store().commit().await?;
        Ok(Ok(answer))
    }

    /// Step 3: the new device's first code, gated and counted like a sign-in code. Completes the
    /// restore.
    pub async fn restore_confirm(
        &self,
        actor: &Actor,
        transaction_id: &str,
        code: &str,
        address: IpAddr,
    ) -> Result<RestoreCompleted> {
        let (session, user) = self.session(transaction_id)?;
        let device = session.device.ok_or_else(|| {
            Error::Conflict("enter the code emailed to the user first (…/enroll)".into())
        })?;
        let (answer, user, _) = self
            .confirm_device(actor, &user.username, &device, code, true, Some(address))
            .await?;
        self.store().remove_restore_session(transaction_id)?;
        self.complete_restore(actor, &user, answer.device, "self")
            .await
    }

    /// An admin restores a user onto a new device (their policy prohibits restore, or the limit is
    /// reached): a pending device, confirmed by `admin_restore_confirm`.
    pub async fn admin_restore_start(
        &self,
        actor: &Actor,
        name: &str,
        label: Option<String>,
    ) -> Result<EnrollAnswer> {
        let user = self.find(name)?;
        let answer = self
            .enroll_device(
                actor,
                &user.username,
                TotpChoice {
                    label: Some(label.unwrap_or_else(|| "Restored authenticator".to_owned())),
                    ..TotpChoice::default()
                },
                DeviceOrigin::Restored,
                None,
            )
            .await?;
        Ok(answer)
    }

    pub async fn admin_restore_confirm(
        &self,
        actor: &Actor,
        name: &str,
        device: &str,
        code: &str,
    ) -> Result<RestoreCompleted> {
        let user = self.find(name)?;
        let (answer, user, _) = self
            .confirm_device(actor, &user.username, device, code, true, None)
            .await?;
        self.complete_restore(actor, &user, answer.device, "admin")
            .await
    }

    /// The restored device is active: old devices go (or stay), the restore is counted, a new restore
    /// code replaces the old one, and the user is told.
    async fn complete_restore(
        &self,
        actor: &Actor,
        user: &UserRecord,
        device: DeviceInfo,
        by: &str,
    ) -> Result<RestoreCompleted> {
        let policy = self.policy().rules.for_groups(&user.groups);
        let key = user_key(&user.id);
        let now = self.now();
        let user = {
            let _guard = self.lock_user(&key).await;
            let mut user = self
                .store()
                .user(&user.id)?
                .ok_or(Error::NotFound { what: "user" })?;
            let removed: Vec<DeviceInfo> = match policy.restore_settings.old_devices {
                OldDevices::Delete => {
                    let (gone, kept) = std::mem::take(&mut user.devices)
                        .into_iter()
                        .partition(|d| d.id != device.id);
                    user.devices = kept;
                    gone.iter()
                        .map(|d: &crate::store::records::DeviceRecord| d.info())
                        .collect()
                }
                OldDevices::Keep => Vec::new(),
            };
            self.store().put_user(&user)?;
            // The old restore code is spent whatever happens to the new one.
            self.store().update_restore_record(&user.id, |r| {
                r.code = None;
                r.restores.push(now);
                let excess = r.restores.len().saturating_sub(RESTORES_KEPT);
                r.restores.drain(..excess);
            })?;
            self.store().clear_failure_count(&key)?;
            let ids: Vec<&str> = removed.iter().map(|d| d.id.as_str()).collect();
            self.audit(
                actor,
                "restore",
                Some(&user.username),
                "ok",
                Some(format!(
                    "device={} by={by} removed={}",
                    device.id,
                    if ids.is_empty() {
                        "-".to_owned()
                    } else {
                        ids.join(",")
                    }
                )),
            )?;
            self.store().commit().await?;
            (user, removed)
        };
        let (user, removed_devices) = user;
        let restore_code = self.issue_restore_code(actor, &user, "restored").await?;
        self.notify_device_added(actor, &user, &device).await?;
        Ok(RestoreCompleted {
            user: user.username.clone(),
            device,
            restore_code,
            removed_devices,
        })
    }

    // ---- duplicate ----

    /// A single-use pairing token for a second device, after a valid code from an active one.
    pub async fn create_pairing(
        &self,
        actor: &Actor,
        name: &str,
        code: &str,
        address: IpAddr,
    ) -> Result<Refused<PairingToken>> {
        let device = match self
            .authenticated_device(actor, name, code, address)
            .await?
        {
            Ok(device) => device,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let user = self.find(name)?;
        let token = random_symbols(TOKEN_CHARS);
        let now = self.now();
        let seconds =
            i64::try_from(self.config().restore.pairing_lifetime_seconds).unwrap_or(i64::MAX);
        let expires_at = now.saturating_add(seconds);
        self.store().prune_restore(now)?;
        self.store().put_grant(
            "pairing",
            &crypto::sha256_hex(token.as_bytes()),
            &SecretGrant {
                user_id: user.id.clone(),
                device_id: None,
                created: now,
                expires_at,
            },
        )?;
        self.audit(
            actor,
            "pairing_create",
            Some(&user.username),
            "ok",
            Some(format!("from_device={} expires_at={expires_at}", device.id)),
        )?;
        self.store().commit().await?;
        let account = user.upn.clone().unwrap_or_else(|| user.username.clone());
        let issuer = &self.config().totp.issuer;
        let uri = format!(
            "twofold-pair://{}:{}?token={token}&issuer={}",
            percent(issuer),
            percent(&account),
            percent(issuer)
        );
        Ok(Ok(PairingToken {
            qr_png_base64: data_encoding::BASE64.encode(&crate::totp::qr_png(&uri)?),
            qr_svg: crate::totp::qr_svg(&uri)?,
            pairing_uri: uri,
            token,
            expires_at,
        }))
    }

    /// Takes a grant of `kind` for the user if `code` names one that is theirs and current: used once.
    async fn take_grant_for(
        &self,
        actor: &Actor,
        action: &str,
        kind: &str,
        name: &str,
        code: &str,
        address: IpAddr,
    ) -> Result<Refused<(Arc<UserRecord>, SecretGrant)>> {
        validate::lookup_name(name)?;
        validate::code(code)?;
        let Attempt {
            key,
            addr_key,
            user,
            audit_name,
            _guard,
            ..
        } = self.begin_attempt(name, address).await?;
        let now = self.now();
        if let Some(refusal) = self.gate(&key, &addr_key, now)? {
            return self
                .refuse(actor, action, &audit_name, refusal, None, address)
                .await;
        }
        let found = match (normalise(code, TOKEN_CHARS), &user) {
            (Some(token), Some(user)) => {
                let hash = crypto::sha256_hex(token.as_bytes());
                match self.store().grant(kind, &hash)? {
                    Some(grant) if grant.user_id == user.id && now < grant.expires_at => {
                        self.store().take_grant(kind, &hash)?
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        match (found, user) {
            (Some(grant), Some(user)) => Ok(Ok((user, grant))),
            _ => {
                self.refuse(
                    actor,
                    action,
                    &audit_name,
                    Refusal::InvalidCode,
                    Some((&key, &addr_key)),
                    address,
                )
                .await
            }
        }
    }

    /// Enrolls a second device with a pairing token; it is confirmed like any enrollment.
    pub async fn pair(
        &self,
        actor: &Actor,
        name: &str,
        token: &str,
        label: Option<String>,
        address: IpAddr,
    ) -> Result<Refused<EnrollAnswer>> {
        if let Some(label) = &label {
            validate::text("label", label, 64)?;
        }
        let (user, _) = match self
            .take_grant_for(actor, "pair", "pairing", name, token, address)
            .await?
        {
            Ok(found) => found,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let answer = self
            .enroll_device(
                actor,
                &user.username,
                TotpChoice {
                    label: Some(label.unwrap_or_else(|| "Paired authenticator".to_owned())),
                    ..TotpChoice::default()
                },
                DeviceOrigin::Duplicated,
                None,
            )
            .await?;
        Ok(Ok(answer))
    }

    // ---- "this wasn't me" ----

    /// Tells the user that `device` was added: by email, and on every other active SMS, voice and
    /// email device, each message with its own block code.
    async fn notify_device_added(
        &self,
        actor: &Actor,
        user: &UserRecord,
        device: &DeviceInfo,
    ) -> Result<()> {
        let Ok(challenges) = self.challenges() else {
            return Ok(());
        };
        let delivery = challenges.delivery();
        let now = self.now();
        let mut emails: Vec<String> = user.email.iter().cloned().collect();
        let mut phones: Vec<(Channel, String)> = Vec::new();
        for other in user
            .devices
            .iter()
            .filter(|d| d.id != device.id && d.status == DeviceStatus::Active)
        {
            let Some(to) = other.destination.clone() else {
                continue;
            };
            match other.kind {
                DeviceKind::Email if !emails.contains(&to) => emails.push(to),
                DeviceKind::Sms if delivery.can_deliver(Channel::Sms).is_ok() => {
                    phones.push((Channel::Sms, to));
                }
                DeviceKind::Voice if delivery.can_deliver(Channel::Voice).is_ok() => {
                    phones.push((Channel::Voice, to));
                }
                _ => {}
            }
        }
        if delivery.can_deliver(Channel::Email).is_err() {
            emails.clear();
        }
        if emails.is_empty() && phones.is_empty() {
            self.audit(
                actor,
                "device_notice",
                Some(&user.username),
                "unsent",
                Some(format!(
                    "device={} reason=no_channel (an authenticator app cannot receive messages)",
                    device.id
                )),
            )?;
            return self.store().commit().await;
        }
        let days = i64::from(self.config().restore.block_code_lifetime_days);
        let grant = SecretGrant {
            user_id: user.id.clone(),
            device_id: Some(device.id.clone()),
            created: now,
            expires_at: now.saturating_add(days.saturating_mul(DAY)),
        };
        let mut mails = Vec::new();
        let mut jobs = Vec::new();
        for to in &emails {
            let code = random_symbols(TOKEN_CHARS);
            self.store()
                .put_grant("block", &crypto::sha256_hex(code.as_bytes()), &grant)?;
            mails.push((to.clone(), code));
        }
        for (channel, to) in &phones {
            let code = random_symbols(TOKEN_CHARS);
            self.store()
                .put_grant("block", &crypto::sha256_hex(code.as_bytes()), &grant)?;
            jobs.push(self.detached_job(
                user,
                *channel,
                to,
                &code,
                "device-notice",
                Template::NewDevice,
                now,
            )?);
        }
        self.audit(
            actor,
            "device_notice",
            Some(&user.username),
            "sent",
            Some(format!(
                "device={} origin={} emails={} phones={}",
                device.id,
                origin_name(device.origin),
                mails.len(),
                jobs.len()
            )),
        )?;
        self.store().commit().await?;
        for (to, code) in mails {
            delivery.mail(
                Template::NewDevice,
                &to,
                BTreeMap::from([
                    ("user", user.username.clone()),
                    ("display_name", display_name(user)),
                    ("device", device.label.clone()),
                    ("how", how_added(device.origin).to_owned()),
                    ("time", utc_text(now)),
                    ("block_code", code),
                ]),
            );
        }
        for job in jobs {
            delivery.submit(job);
        }
        Ok(())
    }

    /// "This wasn't me": a notification's block code blocks its device at once and for good.
    pub async fn block_reported_device(
        &self,
        actor: &Actor,
        name: &str,
        code: &str,
        address: IpAddr,
    ) -> Result<Refused<DeviceBlocked>> {
        let (user, grant) = match self
            .take_grant_for(actor, "device_block_reported", "block", name, code, address)
            .await?
        {
            Ok(found) => found,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let device_id = grant
            .device_id
            .ok_or_else(|| StoreError::corrupt("a block code without its device"))?;
        let _guard = self.lock_user(&user_key(&user.id)).await;
        let now = self.now();
        let mut user = self
            .store()
            .user(&user.id)?
            .ok_or(Error::NotFound { what: "user" })?;
        let device = user.device_mut(&device_id).ok_or(Error::NotFound {
            what: "device (it was already removed)",
        })?;
        device.status = DeviceStatus::Blocked;
        device.reported_at.get_or_insert(now);
        let info = device.info();
        self.save_user(
            actor,
            &user,
            "device_block_reported",
            Some(format!(
                "device={device_id} origin={} address={address}",
                origin_name(info.origin)
            )),
        )
        .await?;
        Ok(Ok(DeviceBlocked {
            user: user.username,
            device: info,
        }))
    }
}

fn display_name(user: &UserRecord) -> String {
    user.display_name
        .clone()
        .unwrap_or_else(|| user.username.clone())
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `2026-05-04 13:05 UTC`
fn utc_text(unix: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| unix.to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use twofold_wire::admin::NewUser;

    use super::*;
    use crate::clock::ManualClock;
    use crate::config::Config;
    use crate::store::Store;

    const T0: i64 = 1_800_000_000;

    #[test]
    fn the_limit_as_a_table() {
        // (restores made at, limit, period in days, asked at) -> (restores in the period, next possible)
        type Row = (&'static [i64], u32, u32, i64, (u32, Option<i64>));
        let table: &[Row] = &[
            (&[], 3, 30, T0, (0, None)),
            (&[T0 - 10], 3, 30, T0, (1, None)),
            (
                &[T0 - 3, T0 - 2, T0 - 1],
                3,
                30,
                T0,
                (3, Some(T0 - 3 + 30 * DAY)),
            ),
            // the oldest leaves the period: one more fits
            (
                &[T0 - 3, T0 - 2, T0 - 1],
                3,
                30,
                T0 - 3 + 30 * DAY,
                (2, None),
            ),
            // older than the period: not counted at all
            (
                &[T0 - 31 * DAY, T0 - 1],
                1,
                30,
                T0,
                (1, Some(T0 - 1 + 30 * DAY)),
            ),
            // over the limit (an admin restored too): wait until enough have left
            (
                &[T0 - 5, T0 - 4, T0 - 3],
                1,
                7,
                T0,
                (3, Some(T0 - 3 + 7 * DAY)),
            ),
            // 0: no limit
            (&[T0 - 3, T0 - 2, T0 - 1], 0, 30, T0, (3, None)),
        ];
        for (i, (restores, limit, days, now, expected)) in table.iter().enumerate() {
            assert_eq!(
                limit_check(restores, *limit, *days, *now),
                *expected,
                "row {i}"
            );
        }
    }

    #[test]
    fn codes_normalise_and_have_their_length() {
        let code = new_restore_code();
        assert_eq!(code.len(), RESTORE_CODE_CHARS + 4);
        let normal = normalise(&code.to_uppercase(), RESTORE_CODE_CHARS);
        assert_eq!(normal.map(|n| n.len()), Some(RESTORE_CODE_CHARS));
        assert_eq!(normalise("abc", RESTORE_CODE_CHARS), None);
        assert_eq!(
            normalise(&"u".repeat(25), RESTORE_CODE_CHARS),
            None,
            "u is not in the alphabet"
        );
        assert_eq!(percent("Acme Corp:x"), "Acme%20Corp%3Ax");
    }

    async fn service(clock: Arc<ManualClock>) -> Result<(Service, std::path::PathBuf)> {
        let text = r#"
version = 1
[store]
argon2_memory_kib = 1024
argon2_iterations = 1
[policy]
restore_limit = 3
restore_period_days = 30
restore_prompt_after_logins = 4
[[policy.group]]
group = "strict"
restore_limit = 1
restore_period_days = 7
restore_prompt_after_logins = 2
[[policy.group]]
group = "admins-only"
restore = "prohibited"
"#;
        let config = Config::parse(text).map_err(|e| Error::Config(format!("{e:?}")))?;
        let dir = std::env::temp_dir().join(format!(
            "tf-restore-{}",
            data_encoding::HEXLOWER.encode(&crypto::random_bytes::<6>())
        ));
        let store = Store::open(&dir)?;
        let service = Service::new(
            store,
            clock,
            crypto::SecretBox::new(&[7u8; 32]),
            Arc::new(config),
        );
        for (name, group) in [
            ("ann", None),
            ("sid", Some("strict")),
            ("ada", Some("admins-only")),
        ] {
            service
                .create_user(
                    &Actor::Daemon,
                    NewUser {
                        username: name.into(),
                        groups: group.map(|g| vec![g.to_owned()]).unwrap_or_default(),
                        ..NewUser::default()
                    },
                )
                .await?;
        }
        Ok((service, dir))
    }

    #[tokio::test]
    async fn limits_per_period_over_the_injected_clock() -> Result<()> {
        let clock = ManualClock::new(T0);
        let (service, dir) = service(clock.clone()).await?;
        let restore = |name: &str| -> Result<()> {
            let user = service.find(name)?;
            let now = service.now();
            service
                .store()
                .update_restore_record(&user.id, |r| r.restores.push(now))?;
            Ok(())
        };
        let state =
            |name: &str| -> Result<RestoreState> { service.restore_state(&service.find(name)?) };
        // (at, user, restore now?, expected restores in the period, expected next possible restore)
        let table: &[(i64, &str, bool, u32, Option<i64>)] = &[
            (T0, "ann", true, 1, None),
            (T0 + DAY, "ann", true, 2, None),
            (T0 + 2 * DAY, "ann", true, 3, Some(T0 + 30 * DAY)),
            (T0 + 30 * DAY - 1, "ann", false, 3, Some(T0 + 30 * DAY)),
            (T0 + 30 * DAY, "ann", false, 2, None),
            (T0 + 31 * DAY, "ann", false, 1, None),
            // the group "strict": one per 7 days
            (T0, "sid", true, 1, Some(T0 + 7 * DAY)),
            (T0 + 6 * DAY, "sid", false, 1, Some(T0 + 7 * DAY)),
            (T0 + 7 * DAY, "sid", false, 0, None),
        ];
        for (i, (at, name, restore_now, used, next)) in table.iter().enumerate() {
            clock.set(*at);
            if *restore_now {
                restore(name)?;
            }
            let s = state(name)?;
            assert_eq!(
                (s.restores_in_period, s.next_restore_at),
                (*used, *next),
                "row {i}"
            );
        }
        assert!(!state("ada")?.allowed);
        assert!(state("ann")?.allowed);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[tokio::test]
    async fn the_login_prompt_follows_the_policy() -> Result<()> {
        let clock = ManualClock::new(T0);
        let (service, dir) = service(clock).await?;
        // (user, prompts over six logins)
        let table: &[(&str, [bool; 6])] = &[
            ("ann", [false, false, false, true, true, true]),
            ("sid", [false, true, true, true, true, true]),
            // prohibited: the application is never told to offer restore
            ("ada", [false; 6]),
        ];
        for (name, expected) in table {
            let user = service.find(name)?;
            let after = service.restore_prompt_after(&user);
            let prompts: Vec<bool> = (0..6)
                .map(|_| service.count_login(&user.id, after))
                .collect::<Result<_>>()?;
            assert_eq!(prompts, expected.to_vec(), "{name}");
        }
        // Once activated, no prompt.
        let ann = service.find("ann")?;
        service
            .store()
            .update_restore_record(&ann.id, |r| r.activated_at = Some(T0))?;
        assert!(!service.count_login(&ann.id, 4)?);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
