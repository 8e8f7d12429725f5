//! The daemon's logic: users, devices, enrollment, verification, backup codes, API keys, audit.
//!
//! Both front doors (the HTTPS API and the admin socket) call these methods; neither touches the store.
//! Every method that changes state writes, appends its audit event, and awaits `Store::commit` before it
//! returns, so whatever an answer promises survives `kill -9`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use twofold_wire::admin::{
    ApiKeyAccess, ApiKeyInfo, ApiScope, AuditEvent, DirectoryInfo, NewUser, UserSummary, UserView,
};
use twofold_wire::api::{
    ConfirmAnswer, EnrollAnswer, Factor, RejectReason, VerifyAnswer, VerifyResult,
};
use twofold_wire::{
    DeviceInfo, DeviceKind, DeviceOrigin, DeviceStatus, TotpAlgorithm, TwoFactorState,
};

use crate::clock::SharedClock;
use crate::config::Config;
use crate::crypto::{self, Argon2Cost, BackupCodeSet, HashPool, HashTurn, SecretBox};
use crate::directory::Directories;
use crate::error::{Error, Result, StoreError};
use crate::lockout::{address_key, user_key, FailureCount, Gate, KnownAddresses};
use crate::store::records::{ApiKeyRecord, DeviceRecord, SignInBlock, TotpState, UserRecord};
use crate::store::{AuditEntry, DeviceUse, Store};
use crate::totp::{self, TotpCheck, TotpParams};
use crate::validate;

/// Who asked: recorded in the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A relying application, by its API key's name.
    Api(String),
    /// An operator on the admin socket, by Unix uid, and by `<domain>/<username>` when the role came
    /// from the groups of that synced AD user.
    Admin {
        uid: u32,
        directory_user: Option<String>,
    },
    Daemon,
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Actor::Api(name) => write!(f, "api:{name}"),
            Actor::Admin {
                uid,
                directory_user: None,
            } => write!(f, "admin:uid={uid}"),
            Actor::Admin {
                uid,
                directory_user: Some(user),
            } => write!(f, "admin:uid={uid},ad={user}"),
            Actor::Daemon => f.write_str("daemon"),
        }
    }
}

/// What the enrolling side chose for a new TOTP device; each absent one takes its default.
#[derive(Debug, Clone, Default)]
pub struct TotpChoice {
    pub label: Option<String>,
    pub algorithm: Option<TotpAlgorithm>,
    pub digits: Option<u8>,
}

/// What an application shows for the user when it acts for them: a code of one of the user's factors,
/// and the end user's address that a wrong code counts against.
#[derive(Debug, Clone, Copy)]
pub struct UserProof<'a> {
    pub code: Option<&'a str>,
    pub address: IpAddr,
}

const LOCK_STRIPES: usize = 1024;

/// What a journal compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactedJournal {
    pub counters_dropped: usize,
    pub counters_kept: usize,
    /// Journal segments deleted because all their audit events passed `[audit] retention_days`.
    pub segments_dropped: usize,
}

pub struct Service {
    store: Store,
    clock: SharedClock,
    secrets: SecretBox,
    config: Arc<Config>,
    /// Verification reads a device's last step and writes the new one: the pair must not interleave with
    /// another request for the same user. Striped so unrelated users rarely wait on each other.
    user_locks: Vec<tokio::sync::Mutex<()>>,
    /// Every argon2 hash runs here, a bounded number at a time (see `crypto::HashPool`).
    hash_pool: HashPool,
    directories: Directories,
    /// Codes sent out of band and admin access codes (see `challenge`); set by `start`.
    challenges: Option<Arc<crate::challenge::Challenges>>,
    /// The system-wide 2FA switch as last read from the store (see `lifecycle`).
    pub(crate) system_two_factor:
        std::sync::RwLock<Option<Arc<crate::store::records::SystemTwoFactor>>>,
    /// The live policies (see `live_policy`): read on every verification, lock-free.
    pub(crate) policies: arc_swap::ArcSwap<crate::store::records::LivePolicy>,
    /// The configuration file's policy sections as last read (at start or on SIGHUP): what
    /// `policy reset-to-config` applies.
    pub(crate) file_policy: arc_swap::ArcSwap<crate::policy::PolicyConfig>,
}

/// What narrows a verification: the user source a privacyIDEA realm names, the device a serial names,
/// the factors a request that needs an authenticator app takes. Decided before any code is checked, so
/// that a code of a factor the request does not take is never used up by it.
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyScope<'a> {
    /// `local` or `ad:NAME`: users of other sources are treated as unknown.
    pub source: Option<&'a str>,
    /// Only this device's TOTP codes are accepted (no challenge codes, no backup codes).
    pub device: Option<&'a str>,
    /// Only codes of active authenticator apps: a backup or sent code is refused as
    /// `factor_not_allowed`, unchecked and not used up.
    pub apps_only: bool,
    /// A code of this device is refused as `factor_not_allowed` (its step not used up): the device
    /// acted on cannot vouch for itself.
    pub not_device: Option<&'a str>,
}

impl VerifyScope<'_> {
    fn takes_backup_codes(&self) -> bool {
        !self.apps_only && self.device.is_none()
    }
}

/// What one verification concluded, before it is recorded.
enum Outcome {
    Accepted {
        device: Option<DeviceInfo>,
        factor: Factor,
        backup_codes_remaining: Option<u32>,
    },
    Rejected(RejectReason),
}

impl Service {
    pub fn new(
        store: Store,
        clock: SharedClock,
        secrets: SecretBox,
        config: Arc<Config>,
    ) -> Service {
        Service {
            store,
            clock,
            secrets,
            user_locks: (0..LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            hash_pool: HashPool::per_core(),
            directories: Directories::new(&config.directory),
            policies: arc_swap::ArcSwap::from_pointee(crate::live_policy::unsaved(&config.policy)),
            file_policy: arc_swap::ArcSwap::from_pointee(config.policy.clone()),
            config,
            challenges: None,
            system_two_factor: std::sync::RwLock::new(None),
        }
    }

    pub fn with_challenges(mut self, challenges: Arc<crate::challenge::Challenges>) -> Service {
        self.challenges = Some(challenges);
        self
    }

    pub fn challenges(&self) -> Result<&Arc<crate::challenge::Challenges>> {
        self.challenges
            .as_ref()
            .ok_or_else(|| Error::Conflict("code delivery is not running".into()))
    }

    pub fn directories(&self) -> &Directories {
        &self.directories
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Writes a journal snapshot, drops failure counters that ran out or exceed the cap on unknown
    /// names (`lockout::prune`), and deletes the journal segments whose audit events all passed the
    /// retention, with an `audit_retention` event saying what went. Blocking (file writes and fsyncs):
    /// call it off the async workers.
    pub fn compact_journal(&self) -> Result<CompactedJournal> {
        let now = self.now();
        let rules = &self.config.lockout;
        let retention_days = self.config.audit.retention_days;
        let mut dropped = 0;
        let (kept, segments_dropped) = self.store.compact_journal(
            now,
            i64::from(retention_days) * 86_400,
            |counters| dropped = crate::lockout::prune(counters, rules, now),
            |expired| {
                self.audit(
                    &Actor::Daemon,
                    "audit_retention",
                    None,
                    "ok",
                    Some(format!(
                        "{} retention_days={retention_days}",
                        expired.audit_detail()
                    )),
                )
            },
        )?;
        Ok(CompactedJournal {
            counters_dropped: dropped,
            counters_kept: kept,
            segments_dropped,
        })
    }

    /// The audit log on disk, for the admin's status.
    pub fn audit_log_status(&self) -> Result<twofold_wire::admin::AuditLogStatus> {
        let stats = self.store.journal_stats()?;
        Ok(twofold_wire::admin::AuditLogStatus {
            segments: stats.segments,
            bytes: stats.bytes,
            oldest_event: stats.oldest_event,
            retention_days: self.config.audit.retention_days,
        })
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub(crate) fn argon2_cost(&self) -> Argon2Cost {
        Argon2Cost {
            memory_kib: self.config.store.argon2_memory_kib,
            iterations: self.config.store.argon2_iterations,
        }
    }

    pub(crate) fn audit(
        &self,
        actor: &Actor,
        action: &str,
        user: Option<&str>,
        outcome: &str,
        detail: Option<String>,
    ) -> Result<()> {
        let actor = actor.to_string();
        let detail = detail.as_deref();
        // Verifications go to the audit log and, at debug level, to the system log: at thousands a
        // second they would cost a tenth of the daemon's CPU and overrun journald, whose default rate
        // limit (10,000 lines per 30 s) drops them anyway. Locks that follow say so at warning level.
        if action == "verify" {
            tracing::debug!(target: "twofold::audit", actor = %actor, action, user, outcome, detail, "audit");
        } else {
            tracing::info!(target: "twofold::audit", actor = %actor, action, user, outcome, detail, "audit");
        }
        self.store.append_audit(&AuditEntry {
            time: self.now(),
            actor: &actor,
            action,
            user,
            outcome,
            detail,
        });
        Ok(())
    }

    pub(crate) async fn lock_user(&self, key: &str) -> tokio::sync::MutexGuard<'_, ()> {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        let stripe = usize::try_from(h.finish() % LOCK_STRIPES as u64).unwrap_or(0);
        self.user_locks[stripe].lock().await
    }

    /// Starts a code attempt for `name` from `address`: takes the user's lock and reads the user once
    /// under it (another request for this user may have just used a step). Unknown names are locked and
    /// counted too, so that answers for them look like answers for users.
    pub(crate) async fn begin_attempt(&self, name: &str, address: IpAddr) -> Result<Attempt<'_>> {
        // The name is looked up before the user's lock is taken, so a directory sync may rename the
        // record in between (two users swapping names): the record read under the lock must still hold
        // the name, or the name is looked up again. A second miss answers as an unknown name.
        let mut looked_up = 0;
        let (id, key, guard, user) = loop {
            looked_up += 1;
            let id = self.store.user_id(name)?;
            let key = match &id {
                Some(id) => user_key(id),
                None => crate::lockout::unknown_name_key(name),
            };
            let guard = self.lock_user(&key).await;
            let user = match &id {
                Some(id) => self.store.stored_user(id)?,
                None => None,
            };
            match user {
                Some(u) if !crate::store::holds_name(&u, &name.to_lowercase()) => {
                    if looked_up < 2 {
                        continue;
                    }
                    drop(guard);
                    let key = crate::lockout::unknown_name_key(name);
                    let guard = self.lock_user(&key).await;
                    break (None, key, guard, None);
                }
                user => break (id, key, guard, user),
            }
        };
        let audit_name = user
            .as_ref()
            .map_or_else(|| name.to_owned(), |u| u.username.clone());
        Ok(Attempt {
            id,
            key,
            addr_key: address_key(address),
            user,
            audit_name,
            _guard: guard,
        })
    }

    /// The lockout's verdict on an attempt: the stricter of the user's (or unknown name's) counter
    /// and the address's, the user's waived from a known address (see `lockout`). Without an address
    /// (an operator's attempt on the admin socket), the user's alone.
    pub(crate) fn lockout_gate(&self, key: &str, addr_key: Option<&str>, now: i64) -> Result<Gate> {
        let rules = &self.config.lockout;
        let user_gate = self.store.failure_count(key)?.gate(&rules.user, now);
        let Some(addr_key) = addr_key else {
            return Ok(user_gate);
        };
        let addr_gate = self
            .store
            .failure_count(addr_key)?
            .gate(&rules.address, now);
        let known = user_gate != Gate::Open && self.is_known_address(key, addr_key, now)?;
        Ok(Gate::combine(user_gate, addr_gate, known))
    }

    /// Whether the user of counter `key` succeeded from `addr_key` within `known_address_days`.
    fn is_known_address(&self, key: &str, addr_key: &str, now: i64) -> Result<bool> {
        let days = self.config.lockout.known_address_days;
        match crate::lockout::user_of_key(key) {
            Some(user_id) if days > 0 => Ok(self
                .store
                .known_addresses(user_id)?
                .knows(addr_key, now, days)),
            _ => Ok(false),
        }
    }

    /// Remembers a user's success from `addr_key`, where the site trusts known addresses.
    fn remember_address(&self, user_id: &str, addr_key: &str, now: i64) -> Result<()> {
        let days = self.config.lockout.known_address_days;
        if days == 0 {
            return Ok(());
        }
        let known: KnownAddresses = self.store.known_addresses(user_id)?;
        if let Some(updated) = known.remember(addr_key, now, days) {
            self.store.put_known_addresses(user_id, &updated)?;
        }
        Ok(())
    }

    /// Counts a failed attempt by `who` (the audited name) against the user's (or unknown name's)
    /// counter and the address's, if any; returns the user's count. A counter that locks says so in
    /// the system log at warning level: the attempts themselves are only in the audit log (see `audit`).
    pub(crate) fn count_failure(
        &self,
        who: &str,
        key: &str,
        addr_key: Option<&str>,
        now: i64,
    ) -> Result<FailureCount> {
        let rules = &self.config.lockout;
        let (user_rule, addr_rule) = (rules.user, rules.address);
        let after = self
            .store
            .update_failure_count(key, |c| c.fail(&user_rule, now))?;
        // `fail` does not lock a locked counter again, so the count equals the maximum only on the
        // failure that locked.
        if after.locked_at.is_some() && after.failures == user_rule.max_failures {
            tracing::warn!(target: "twofold::audit", user = who, failures = after.failures, locks = after.locks, "locked after too many failed codes");
        }
        let Some(addr_key) = addr_key else {
            return Ok(after);
        };
        let addr_after = self
            .store
            .update_failure_count(addr_key, |c| c.fail(&addr_rule, now))?;
        if addr_after.locked_at.is_some() && addr_after.failures == addr_rule.max_failures {
            let address = addr_key
                .strip_prefix(crate::lockout::ADDRESS_PREFIX)
                .unwrap_or(addr_key);
            tracing::warn!(target: "twofold::audit", address, failures = addr_after.failures, "address locked after too many failed codes");
        }
        Ok(after)
    }

    /// Writes a changed user, audits the change as done, and answers only once both are durable: the
    /// write-audit-commit step most user changes end with.
    pub(crate) async fn save_user(
        &self,
        actor: &Actor,
        user: &UserRecord,
        action: &str,
        detail: Option<String>,
    ) -> Result<()> {
        self.store.put_user(user)?;
        self.audit(actor, action, Some(&user.username), "ok", detail)?;
        self.store.commit().await
    }

    pub(crate) fn user_by_name(&self, name: &str) -> Result<UserRecord> {
        validate::lookup_name(name)?;
        self.store
            .find_user(name)?
            .ok_or_else(|| Error::UserNotFound(name.to_owned()))
    }

    // ---- users ----

    pub async fn create_user(&self, actor: &Actor, new: NewUser) -> Result<UserView> {
        validate::username(&new.username)?;
        if let Some(upn) = &new.upn {
            validate::text("upn", upn, 256)?;
        }
        if let Some(name) = &new.display_name {
            validate::text("display_name", name, 256)?;
        }
        if let Some(email) = &new.email {
            validate::email(email)?;
        }
        if let Some(mobile) = &new.mobile {
            validate::phone("mobile", mobile)?;
        }
        if let Some(voice) = &new.voice {
            validate::phone("voice", voice)?;
        }
        for group in &new.groups {
            validate::text("group", group, 256)?;
        }
        let id = new_user_id();
        let user = UserRecord {
            upn: new.upn,
            display_name: new.display_name,
            email: new.email,
            mobile: new.mobile,
            voice: new.voice,
            groups: new.groups,
            ..UserRecord::new_local(&id, &new.username, self.now())
        };
        self.store.insert_user(&user)?;
        self.audit(actor, "user_create", Some(&user.username), "ok", None)?;
        self.store.commit().await?;
        self.user_view(&user)
    }

    /// Why `user` cannot authenticate now, if they cannot: `UserRecord::sign_in_block` with the clock
    /// and their directory's `honour_ad_lockout`.
    pub fn sign_in_block(&self, user: &UserRecord) -> Option<SignInBlock> {
        let honour_ad_lockout = user.directory.as_ref().is_none_or(|link| {
            self.config
                .directory
                .iter()
                .find(|d| d.name == link.domain)
                .is_none_or(|d| d.honour_ad_lockout)
        });
        user.sign_in_block(self.now(), honour_ad_lockout)
    }

    pub fn user_view(&self, user: &UserRecord) -> Result<UserView> {
        let failures = self
            .store
            .failure_count(&user_key(&user.id))?
            .current(&self.config.lockout.user, self.now());
        Ok(UserView {
            id: user.id.clone(),
            username: user.username.clone(),
            upn: user.upn.clone(),
            display_name: user.display_name.clone(),
            email: user.email.clone(),
            mobile: user.mobile.clone(),
            voice: user.voice.clone(),
            mobile_override: user.mobile_override.clone(),
            voice_override: user.voice_override.clone(),
            mobile_dialled: user.effective_mobile().map(crate::phone::dialled),
            voice_dialled: user.effective_voice().map(crate::phone::dialled),
            groups: user.groups.clone(),
            enabled: user.enabled,
            source: user.source.clone(),
            policy: Some(self.policy().rules.for_groups(&user.groups)),
            directory: user.directory.as_ref().map(|d| DirectoryInfo {
                domain: d.domain.clone(),
                guid: d.guid.clone(),
                dn: d.dn.clone(),
                account_disabled: d.account_disabled,
                removed_at: d.removed_at,
                expires: d.expires,
                locked_out: d.locked_out,
                locked_until: d.locked_until,
            }),
            cannot_sign_in: self.sign_in_block(user).map(|b| b.explain().to_owned()),
            state: self.state_of(user)?,
            devices: user.devices.iter().map(DeviceRecord::info).collect(),
            backup_codes_remaining: user.backup_codes_remaining(),
            failures: failures.failures,
            locked: failures.locked_at.is_some(),
            created: user.created,
            restore: Some(self.restore_state(user)?),
        })
    }

    pub fn show_user(&self, name: &str) -> Result<UserView> {
        self.user_view(&self.user_by_name(name)?)
    }

    pub fn list_users(&self, query: Option<&str>, limit: Option<u32>) -> Result<Vec<UserSummary>> {
        let limit = usize::try_from(limit.unwrap_or(100).min(10_000)).unwrap_or(100);
        let system = self.system_two_factor()?;
        let policy = self.policies.load_full();
        Ok(self
            .store
            .list_users(query, limit)?
            .into_iter()
            .map(|u| UserSummary {
                state: u.state(&policy.rules, &system),
                id: u.id,
                username: u.username,
                display_name: u.display_name,
                enabled: u.enabled,
            })
            .collect())
    }

    pub async fn set_user_enabled(
        &self,
        actor: &Actor,
        name: &str,
        enabled: bool,
    ) -> Result<UserView> {
        let mut user = self.user_by_name(name)?;
        let _guard = self.lock_user(&user_key(&user.id)).await;
        user = self
            .store
            .user(&user.id)?
            .ok_or(Error::NotFound { what: "user" })?;
        user.enabled = enabled;
        self.save_user(
            actor,
            &user,
            if enabled {
                "user_enable"
            } else {
                "user_disable"
            },
            None,
        )
        .await?;
        self.user_view(&user)
    }

    pub async fn delete_user(&self, actor: &Actor, name: &str) -> Result<()> {
        let user = self.user_by_name(name)?;
        let _guard = self.lock_user(&user_key(&user.id)).await;
        self.store.delete_user(&user)?;
        self.store.clear_failure_count(&user_key(&user.id))?;
        self.store.remove_restore_record(&user.id)?;
        self.audit(actor, "user_delete", Some(&user.username), "ok", None)?;
        self.store.commit().await
    }

    /// Numbers that win over the directory's until cleared (None clears).
    pub async fn set_phone_override(
        &self,
        actor: &Actor,
        name: &str,
        mobile: Option<String>,
        voice: Option<String>,
    ) -> Result<UserView> {
        if let Some(m) = &mobile {
            validate::phone("mobile", m)?;
        }
        if let Some(v) = &voice {
            validate::phone("voice", v)?;
        }
        let found = self.user_by_name(name)?;
        let _guard = self.lock_user(&user_key(&found.id)).await;
        let mut user = self
            .store
            .user(&found.id)?
            .ok_or(Error::NotFound { what: "user" })?;
        user.mobile_override = mobile;
        user.voice_override = voice;
        self.store.put_user(&user)?;
        let detail = format!(
            "mobile={} voice={}",
            if user.mobile_override.is_some() {
                "set"
            } else {
                "cleared"
            },
            if user.voice_override.is_some() {
                "set"
            } else {
                "cleared"
            }
        );
        self.audit(
            actor,
            "user_phone_override",
            Some(&user.username),
            "ok",
            Some(detail),
        )?;
        self.store.commit().await?;
        self.user_view(&user)
    }

    pub async fn unlock_user(&self, actor: &Actor, name: &str) -> Result<bool> {
        let user = self.user_by_name(name)?;
        let cleared = self.store.clear_failure_count(&user_key(&user.id))?;
        self.audit(
            actor,
            "user_unlock",
            Some(&user.username),
            if cleared { "ok" } else { "not_locked" },
            None,
        )?;
        self.store.commit().await?;
        Ok(cleared)
    }

    pub async fn unlock_address(&self, actor: &Actor, address: &str) -> Result<bool> {
        let ip: IpAddr = address
            .parse()
            .map_err(|_| Error::invalid("address must be an IP address"))?;
        let cleared = self.store.clear_failure_count(&address_key(ip))?;
        self.audit(
            actor,
            "address_unlock",
            None,
            if cleared { "ok" } else { "not_locked" },
            Some(format!("address={ip}")),
        )?;
        self.store.commit().await?;
        Ok(cleared)
    }

    // ---- devices ----

    pub fn devices(&self, name: &str) -> Result<Vec<DeviceInfo>> {
        Ok(self
            .user_by_name(name)?
            .devices
            .iter()
            .map(DeviceRecord::info)
            .collect())
    }

    pub async fn delete_device(
        &self,
        actor: &Actor,
        name: &str,
        device: &str,
    ) -> Result<DeviceInfo> {
        let found = self.user_by_name(name)?;
        let _guard = self.lock_user(&user_key(&found.id)).await;
        let mut user = self
            .store
            .user(&found.id)?
            .ok_or(Error::NotFound { what: "user" })?;
        let index = user
            .devices
            .iter()
            .position(|d| d.id == device)
            .ok_or(Error::NotFound { what: "device" })?;
        let removed = user.devices.remove(index);
        self.save_user(
            actor,
            &user,
            "device_delete",
            Some(format!("device={device}")),
        )
        .await?;
        Ok(removed.info())
    }

    pub async fn set_device_blocked(
        &self,
        actor: &Actor,
        name: &str,
        device: &str,
        blocked: bool,
    ) -> Result<DeviceInfo> {
        let found = self.user_by_name(name)?;
        let _guard = self.lock_user(&user_key(&found.id)).await;
        let mut user = self
            .store
            .user(&found.id)?
            .ok_or(Error::NotFound { what: "user" })?;
        let d = user
            .device_mut(device)
            .ok_or(Error::NotFound { what: "device" })?;
        match (d.status, blocked) {
            (DeviceStatus::Pending, _) => {
                return Err(Error::Conflict(
                    "the device's enrollment is not confirmed".into(),
                ))
            }
            (_, true) => d.status = DeviceStatus::Blocked,
            (_, false) if d.reported_at.is_some() => {
                return Err(Error::Conflict(
                    "its user reported this device as not theirs: it stays blocked for good".into(),
                ))
            }
            (_, false) => d.status = DeviceStatus::Active,
        }
        let info = d.info();
        self.save_user(
            actor,
            &user,
            if blocked {
                "device_block"
            } else {
                "device_unblock"
            },
            Some(format!("device={device}")),
        )
        .await?;
        Ok(info)
    }

    // ---- TOTP enrollment ----

    /// Starts a TOTP device for `name`. An application (`proof` given) enrolling for a user who already
    /// has an active device must show a current code of one of the user's factors: otherwise any key
    /// holder could add their own authenticator to someone's account. Admins on the socket need none.
    pub async fn enroll_totp(
        &self,
        actor: &Actor,
        name: &str,
        label: Option<String>,
        algorithm: Option<TotpAlgorithm>,
        digits: Option<u8>,
        proof: Option<UserProof<'_>>,
    ) -> Result<EnrollAnswer> {
        let origin = match actor {
            Actor::Admin { .. } => DeviceOrigin::Admin,
            Actor::Api(_) | Actor::Daemon => DeviceOrigin::Enrolled,
        };
        let choice = TotpChoice {
            label,
            algorithm,
            digits,
        };
        self.enroll_device(actor, name, choice, origin, proof).await
    }

    /// Refuses unless `proof` holds a code the user's factors accept now (verified, counted and audited
    /// as any verification).
    async fn check_user_proof(
        &self,
        actor: &Actor,
        name: &str,
        proof: UserProof<'_>,
    ) -> Result<()> {
        let Some(code) = proof.code else {
            return Err(Error::Refused {
                code: "proof_required",
                message: "the user already has an active device: send code, a current code of one of the user's factors (or add the device through pairing or restore)".into(),
            });
        };
        let answer = self.verify(actor, name, code, proof.address).await?;
        if answer.result == VerifyResult::Accept {
            return Ok(());
        }
        Err(Error::Refused {
            code: "second_factor_required",
            message: format!(
                "the code does not prove the user ({})",
                answer.reason.map_or("refused", reason_name)
            ),
        })
    }

    /// Starts a TOTP device that came to be as `origin` (restore and pairing make theirs here too, with
    /// their own proof, so they pass no `proof`).
    pub(crate) async fn enroll_device(
        &self,
        actor: &Actor,
        name: &str,
        choice: TotpChoice,
        origin: DeviceOrigin,
        proof: Option<UserProof<'_>>,
    ) -> Result<EnrollAnswer> {
        let label = choice.label.unwrap_or_else(|| "Authenticator".to_owned());
        validate::text("label", &label, 64)?;
        let params = TotpParams::new(choice.algorithm, choice.digits)?;
        let found = self.user_by_name(name)?;
        refuse_enrollment(&found)?;
        self.refuse_when_off(&found)?;
        if let Some(proof) = proof {
            if found
                .devices
                .iter()
                .any(|d| d.status == DeviceStatus::Active)
            {
                self.check_user_proof(actor, name, proof).await?;
            }
        }
        let _guard = self.lock_user(&user_key(&found.id)).await;
        let mut user = self
            .store
            .user(&found.id)?
            .ok_or(Error::NotFound { what: "user" })?;
        // Read again under the lock: a sync may have removed the user since.
        refuse_enrollment(&user)?;

        let secret: [u8; totp::SECRET_BYTES] = crypto::random_bytes();
        let device_id = format!(
            "d{}",
            data_encoding::HEXLOWER.encode(&crypto::random_bytes::<8>())
        );
        let account = user.upn.clone().unwrap_or_else(|| user.username.clone());
        let generator = totp::totp(params, &secret, &self.config.totp.issuer, &account)?;
        let uri = totp::otpauth_uri(&generator)?;
        let sealed = self
            .secrets
            .seal(&secret, seed_context(&user.id, &device_id).as_bytes())?;
        let device = DeviceRecord {
            id: device_id.clone(),
            kind: DeviceKind::Totp,
            label,
            status: DeviceStatus::Pending,
            created: self.now(),
            last_used: None,
            destination: None,
            totp: Some(TotpState {
                params,
                sealed_secret: data_encoding::BASE64.encode(&sealed),
                last_step: None,
                drift: 0,
            }),
            origin,
            reported_at: None,
        };
        // A new enrollment replaces one that was started and never confirmed.
        user.devices
            .retain(|d| !(d.kind == DeviceKind::Totp && d.status == DeviceStatus::Pending));
        user.devices.push(device.clone());
        self.store.put_user(&user)?;
        self.audit(
            actor,
            "totp_enroll",
            Some(&user.username),
            "pending",
            Some(format!("device={device_id} origin={}", origin_name(origin))),
        )?;
        self.store.commit().await?;
        Ok(EnrollAnswer {
            device: device.info(),
            qr_png_base64: data_encoding::BASE64.encode(&totp::qr_png(&uri)?),
            qr_svg: totp::qr_svg(&uri)?,
            otpauth_uri: uri,
            secret: totp::base32(&secret),
        })
    }

    /// Activates a pending device with its first code; issues backup codes if the user has none.
    /// A restored device is finished by its restore instead (see `restore`). `address`: where an
    /// application's request came from (see `confirm_device`); none for an operator.
    pub async fn confirm_totp(
        &self,
        actor: &Actor,
        name: &str,
        device_id: &str,
        code: &str,
        address: Option<IpAddr>,
    ) -> Result<ConfirmAnswer> {
        let (mut answer, user, first) = self
            .confirm_device(actor, name, device_id, code, false, address)
            .await?;
        if first {
            self.notify_two_factor_enabled(&user, &answer.device);
        }
        answer.restore_code = self
            .after_device_confirmed(actor, &user, &answer.device, first)
            .await?;
        Ok(answer)
    }

    /// Activates a pending device. Returns the answer, the user after it, and whether it is the user's
    /// first confirmed device. `restoring`: the caller completes a restore with it.
    ///
    /// An application's confirm (with the `address` it came from) is a guess like a verification's:
    /// refused unchecked while the user or the address must wait or is locked, and a wrong code counts
    /// against both. An operator on the admin socket (no address) is trusted, and not counted.
    pub(crate) async fn confirm_device(
        &self,
        actor: &Actor,
        name: &str,
        device_id: &str,
        code: &str,
        restoring: bool,
        address: Option<IpAddr>,
    ) -> Result<(ConfirmAnswer, UserRecord, bool)> {
        validate::code(code)?;
        let found = self.user_by_name(name)?;
        let key = user_key(&found.id);
        let _guard = self.lock_user(&key).await;
        let mut user = self
            .store
            .user(&found.id)?
            .ok_or(Error::NotFound { what: "user" })?;
        let now = self.now();
        let addr_key = address.map(address_key);
        let where_from = address.map_or_else(String::new, |a| format!(" address={a}"));
        if let Some(addr_key) = &addr_key {
            let throttled = match self.lockout_gate(&key, Some(addr_key), now)? {
                Gate::Open => None,
                Gate::Wait(s) => Some(Error::Throttled {
                    locked: false,
                    retry_after: Some(s),
                }),
                Gate::Locked(after) => Some(Error::Throttled {
                    locked: true,
                    retry_after: after,
                }),
            };
            if let Some(refusal) = throttled {
                self.audit(
                    actor,
                    "totp_confirm",
                    Some(&user.username),
                    "refused",
                    Some(format!(
                        "device={device_id} reason={}{where_from}",
                        refusal.code()
                    )),
                )?;
                self.store.commit().await?;
                return Err(refusal);
            }
        }
        let user_id = user.id.clone();
        let device = user
            .device_mut(device_id)
            .ok_or(Error::NotFound { what: "device" })?;
        if device.status != DeviceStatus::Pending {
            return Err(Error::Conflict("the device is already confirmed".into()));
        }
        if (device.origin == DeviceOrigin::Restored) != restoring {
            return Err(Error::Conflict(if restoring {
                "the device was not made by this restore".into()
            } else {
                "a restored device is confirmed through its restore (/api/v1/restore/{transaction}/confirm)".into()
            }));
        }
        let state = device
            .totp
            .as_mut()
            .ok_or_else(|| Error::Conflict("not a TOTP device".into()))?;
        let secret = open_seed(&self.secrets, &user_id, device_id, state)?;
        let digits = totp::looks_like_totp(code)
            .ok_or_else(|| Error::invalid("code must be 6 or 8 digits"))?;
        match totp::check(
            state.params,
            &secret,
            &digits,
            now,
            self.config.totp.window,
            state.last_step,
        )? {
            TotpCheck::Accepted { step, drift } => {
                state.last_step = Some(step);
                state.drift = drift;
            }
            TotpCheck::Replayed | TotpCheck::NoMatch => {
                let failures = match &addr_key {
                    Some(addr_key) => {
                        let after =
                            self.count_failure(&user.username, &key, Some(addr_key), now)?;
                        format!(" failures={}", after.failures)
                    }
                    None => String::new(),
                };
                self.audit(
                    actor,
                    "totp_confirm",
                    Some(&user.username),
                    "wrong_code",
                    Some(format!("device={device_id}{failures}{where_from}")),
                )?;
                self.store.commit().await?;
                return Err(Error::invalid("the code does not match: check the authenticator's clock and try the next code"));
            }
        }
        device.status = DeviceStatus::Active;
        device.last_used = Some(now);
        let info = device.info();
        let first = !user
            .devices
            .iter()
            .any(|d| d.id != device_id && d.status != DeviceStatus::Pending);
        user.enrolled_epoch = self.system_two_factor()?.epoch;
        let backup_codes = if user.backup_codes.is_none() {
            let (set, codes) = self.new_backup_codes().await?;
            user.backup_codes = Some(set);
            Some(codes)
        } else {
            None
        };
        user.enrollment_required = false;
        self.save_user(
            actor,
            &user,
            "totp_confirm",
            Some(format!("device={device_id}")),
        )
        .await?;
        Ok((
            ConfirmAnswer {
                device: info,
                backup_codes,
                restore_code: None,
            },
            user,
            first,
        ))
    }

    async fn new_backup_codes(&self) -> Result<(BackupCodeSet, Vec<String>)> {
        let (count, cost, now) = (
            self.config.backup_codes.count,
            self.argon2_cost(),
            self.now(),
        );
        self.hash_pool
            .run(move |memory| BackupCodeSet::generate(count, cost, now, memory))
            .await
    }

    /// Runs argon2 work in the daemon's bounded hash pool (see `crypto::HashPool`).
    pub(crate) fn hash_pool(&self) -> &HashPool {
        &self.hash_pool
    }

    // ---- verification ----

    /// Checks a TOTP or backup code for a user, under the lockout rules (see `lockout`).
    pub async fn verify(
        &self,
        actor: &Actor,
        name: &str,
        code: &str,
        address: IpAddr,
    ) -> Result<VerifyAnswer> {
        self.verify_with(actor, name, code, None, address).await
    }

    /// As `verify`; with a challenge's transaction id, only that challenge's code is accepted.
    pub async fn verify_with(
        &self,
        actor: &Actor,
        name: &str,
        code: &str,
        transaction: Option<&str>,
        address: IpAddr,
    ) -> Result<VerifyAnswer> {
        self.verify_scoped(
            actor,
            name,
            code,
            transaction,
            VerifyScope::default(),
            address,
        )
        .await
    }

    /// As `verify_with`, narrowed by `scope`: a user outside it is treated as unknown, and a named
    /// device accepts only its own codes. The one verification path, whichever API asks.
    pub async fn verify_scoped(
        &self,
        actor: &Actor,
        name: &str,
        code: &str,
        transaction: Option<&str>,
        scope: VerifyScope<'_>,
        address: IpAddr,
    ) -> Result<VerifyAnswer> {
        validate::lookup_name(name)?;
        validate::code(code)?;
        let Attempt {
            id,
            key,
            addr_key,
            user,
            audit_name: audit_user,
            _guard,
        } = self.begin_attempt(name, address).await?;
        // Outside the scope's source, a user is answered as unknown, before anything else looks at it.
        let user = user.filter(|u| scope.source.is_none_or(|source| u.source == source));
        let state = user.as_deref().map(|u| self.state_of(u)).transpose()?;
        if let Some(answer) = self
            .answer_when_off(actor, user.as_deref(), state, &audit_user)
            .await?
        {
            return Ok(answer);
        }
        // An accepted verification then also sends the user to enrollment.
        let enrollment_required = state == Some(TwoFactorState::EnrollmentRequired);
        // A code that can only be a backup code is hashed, for a user with backup codes or not (the
        // time taken must not tell who has them), in a turn of the hash pool taken before the
        // lockout is asked (see `crypto::HashPool`).
        let hash_turn = if transaction.is_none()
            && scope.takes_backup_codes()
            && totp::looks_like_totp(code).is_none()
            && crypto::normalise_backup_code(code).is_some()
        {
            Some(self.hash_pool.turn().await?)
        } else {
            None
        };
        let now = self.now();
        let refused = match self.lockout_gate(&key, Some(&addr_key), now)? {
            Gate::Locked(after) => Some((RejectReason::Locked, after)),
            Gate::Wait(s) => Some((RejectReason::RateLimited, Some(s))),
            Gate::Open if scope.apps_only && totp::looks_like_totp(code).is_none() => {
                Some((RejectReason::FactorNotAllowed, None))
            }
            Gate::Open => None,
        };
        if let Some((reason, retry_after)) = refused {
            self.audit(
                actor,
                "verify",
                Some(&audit_user),
                "refused",
                Some(format!("reason={} address={address}", reason_name(reason))),
            )?;
            self.store.commit().await?;
            return Ok(reject(reason, retry_after));
        }

        let prompt_after = user.as_ref().map_or(0, |u| self.restore_prompt_after(u));
        // The answer stays `invalid_code` (it must not tell who exists); the audit says why.
        let blocked = user.as_deref().and_then(|u| self.sign_in_block(u));
        let outcome = self
            .evaluate(user, code, transaction, scope, hash_turn, now)
            .await?;
        match outcome {
            Outcome::Accepted {
                device,
                factor,
                backup_codes_remaining,
            } => {
                self.store.clear_failure_count(&key)?;
                if let Some(id) = &id {
                    self.remember_address(id, &addr_key, now)?;
                }
                let detail = format!(
                    "factor={} device={} address={address}",
                    factor_name(factor),
                    device.as_ref().map_or("-", |d| d.id.as_str())
                );
                self.audit(actor, "verify", Some(&audit_user), "accept", Some(detail))?;
                let restore_prompt = match &id {
                    Some(id) => self.count_login(id, prompt_after)?,
                    None => false,
                };
                self.store.commit().await?;
                Ok(VerifyAnswer {
                    restore_prompt,
                    result: VerifyResult::Accept,
                    method: Some("two_factor".to_owned()),
                    factor: Some(factor),
                    device,
                    reason: None,
                    retry_after: None,
                    backup_codes_remaining,
                    enrollment_required,
                })
            }
            // A right code of a factor this request does not take: no guess, so not counted.
            Outcome::Rejected(RejectReason::FactorNotAllowed) => {
                self.audit(
                    actor,
                    "verify",
                    Some(&audit_user),
                    "refused",
                    Some(format!("reason=factor_not_allowed address={address}")),
                )?;
                self.store.commit().await?;
                Ok(reject(RejectReason::FactorNotAllowed, None))
            }
            Outcome::Rejected(reason) => {
                let after_user = self.count_failure(&audit_user, &key, Some(&addr_key), now)?;
                let detail = format!(
                    "reason={} failures={} address={address}",
                    blocked.map_or(reason_name(reason), SignInBlock::code),
                    after_user.failures
                );
                self.audit(actor, "verify", Some(&audit_user), "reject", Some(detail))?;
                self.store.commit().await?;
                Ok(reject(reason, None))
            }
        }
    }

    /// Decides accept or reject and, on accept, writes the device's new state. Caller holds the user
    /// lock. With `hash_turn`, the code can only be a backup code: it is hashed whether or not there
    /// is a user with backup codes to compare it with.
    async fn evaluate(
        &self,
        user: Option<Arc<UserRecord>>,
        code: &str,
        transaction: Option<&str>,
        scope: VerifyScope<'_>,
        hash_turn: Option<HashTurn>,
        now: i64,
    ) -> Result<Outcome> {
        let device_only = scope.device;
        let Some(user) = user.filter(|u| self.sign_in_block(u).is_none()) else {
            self.hash_in_vain(hash_turn, code).await?;
            return Ok(Outcome::Rejected(RejectReason::InvalidCode));
        };
        if let (Some(challenges), None, false) = (&self.challenges, device_only, scope.apps_only) {
            match challenges.check(&self.store, &user, code, transaction, now)? {
                Some(factor) => {
                    return Ok(Outcome::Accepted {
                        device: None,
                        factor,
                        backup_codes_remaining: None,
                    })
                }
                None if transaction.is_some() => {
                    return Ok(Outcome::Rejected(RejectReason::InvalidCode))
                }
                None => {}
            }
        }
        if let Some(digits) = totp::looks_like_totp(code) {
            let (mut replayed, mut excluded_matched) = (false, false);
            for device in user
                .devices
                .iter()
                .filter(|d| d.status == DeviceStatus::Active)
                .filter(|d| device_only.is_none_or(|id| d.id == id))
            {
                let Some(state) = device.totp.as_ref() else {
                    continue;
                };
                if usize::from(state.params.digits) != digits.len() {
                    continue;
                }
                let secret = open_seed(&self.secrets, &user.id, &device.id, state)?;
                let last_step = self.store.device_use(&user.id, &device.id).last_step;
                match totp::check(
                    state.params,
                    &secret,
                    &digits,
                    now,
                    self.config.totp.window,
                    last_step,
                )? {
                    TotpCheck::Accepted { .. } if scope.not_device == Some(device.id.as_str()) => {
                        excluded_matched = true;
                    }
                    TotpCheck::Accepted { step, drift } => {
                        self.store.record_device_use(
                            &user.id,
                            &device.id,
                            DeviceUse {
                                last_step: Some(step),
                                drift,
                                last_used: Some(now),
                            },
                        );
                        return Ok(Outcome::Accepted {
                            device: Some(DeviceInfo {
                                last_used: Some(now),
                                ..device.info()
                            }),
                            factor: Factor::Totp,
                            backup_codes_remaining: None,
                        });
                    }
                    TotpCheck::Replayed => replayed = true,
                    TotpCheck::NoMatch => {}
                }
            }
            return Ok(Outcome::Rejected(if excluded_matched {
                RejectReason::FactorNotAllowed
            } else if replayed {
                RejectReason::Replayed
            } else {
                RejectReason::InvalidCode
            }));
        }
        let (Some(turn), Some(candidate)) = (hash_turn, crypto::normalise_backup_code(code)) else {
            return Ok(Outcome::Rejected(RejectReason::InvalidCode));
        };
        let Some(set) = user.backup_codes.clone() else {
            self.hash_in_vain(Some(turn), code).await?;
            return Ok(Outcome::Rejected(RejectReason::InvalidCode));
        };
        let (index, mut set) = turn
            .run(move |memory| set.find(&candidate, memory).map(|i| (i, set)))
            .await?;
        let Some(i) = index else {
            return Ok(Outcome::Rejected(RejectReason::InvalidCode));
        };
        set.hashes[i] = None;
        let remaining = set.remaining();
        // A stored record: its devices' use is left as stored, which the journal's wins over.
        let mut user = UserRecord::clone(&user);
        user.backup_codes = Some(set);
        self.store.put_user(&user)?;
        Ok(Outcome::Accepted {
            device: None,
            factor: Factor::BackupCode,
            backup_codes_remaining: Some(remaining),
        })
    }

    /// Hashes a backup-code-shaped guess that has nothing to be compared with (no such user, no backup
    /// codes, a disabled user), at the configured cost: it then takes as long as a real comparison, so
    /// the time of a wrong answer does not tell who is enrolled.
    async fn hash_in_vain(&self, turn: Option<HashTurn>, code: &str) -> Result<()> {
        let (Some(turn), Some(candidate)) = (turn, crypto::normalise_backup_code(code)) else {
            return Ok(());
        };
        let cost = self.argon2_cost();
        turn.run(move |memory| crypto::SlowHash::new(&candidate, cost, memory).map(drop))
            .await
    }

    /// New backup codes after a valid second factor; the old set stops working.
    pub async fn regenerate_backup_codes(
        &self,
        actor: &Actor,
        name: &str,
        code: &str,
        address: IpAddr,
    ) -> Result<Option<Vec<String>>> {
        let verdict = self.verify(actor, name, code, address).await?;
        if verdict.result != VerifyResult::Accept {
            return Ok(None);
        }
        let found = self.user_by_name(name)?;
        let _guard = self.lock_user(&user_key(&found.id)).await;
        let mut user = self
            .store
            .user(&found.id)?
            .ok_or(Error::NotFound { what: "user" })?;
        let (set, codes) = self.new_backup_codes().await?;
        user.backup_codes = Some(set);
        self.save_user(actor, &user, "backup_codes_regenerate", None)
            .await?;
        Ok(Some(codes))
    }

    // ---- API keys ----

    pub async fn create_api_key(
        &self,
        actor: &Actor,
        name: &str,
        scopes: &[ApiScope],
        trusted_proxy: bool,
    ) -> Result<String> {
        validate::text("name", name, 64)?;
        if name.chars().any(char::is_whitespace) {
            return Err(Error::invalid("name must not contain spaces"));
        }
        let access = key_access(scopes, trusted_proxy)?;
        let (key, hash) = crypto::new_api_key();
        self.store.insert_api_key(
            &hash,
            &ApiKeyRecord {
                name: name.to_owned(),
                created: self.now(),
                access: Some(access.clone()),
            },
        )?;
        self.audit(
            actor,
            "apikey_create",
            None,
            "ok",
            Some(format!("name={name} {}", describe_access(&access))),
        )?;
        self.store.commit().await?;
        Ok(key)
    }

    /// Gives an existing key new scopes or proxy trust; what is not given stays as it was.
    pub async fn set_api_key(
        &self,
        actor: &Actor,
        name: &str,
        scopes: Option<&[ApiScope]>,
        trusted_proxy: Option<bool>,
    ) -> Result<ApiKeyInfo> {
        let current = self
            .store
            .api_keys()?
            .into_iter()
            .map(|(_, r)| r)
            .find(|r| r.name == name)
            .ok_or(Error::NotFound { what: "API key" })?
            .access();
        let access = key_access(
            scopes.unwrap_or(&current.scopes),
            trusted_proxy.unwrap_or(current.trusted_proxy),
        )?;
        let record = self
            .store
            .set_api_key_access(name, access.clone())?
            .ok_or(Error::NotFound { what: "API key" })?;
        self.audit(
            actor,
            "apikey_set",
            None,
            "ok",
            Some(format!("name={name} {}", describe_access(&access))),
        )?;
        self.store.commit().await?;
        Ok(key_info(record))
    }

    pub fn api_keys(&self) -> Result<Vec<ApiKeyInfo>> {
        let mut keys: Vec<ApiKeyInfo> = self
            .store
            .api_keys()?
            .into_iter()
            .map(|(_, r)| key_info(r))
            .collect();
        keys.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(keys)
    }

    pub async fn revoke_api_key(&self, actor: &Actor, name: &str) -> Result<()> {
        if !self.store.remove_api_key(name)? {
            return Err(Error::NotFound { what: "API key" });
        }
        self.audit(
            actor,
            "apikey_revoke",
            None,
            "ok",
            Some(format!("name={name}")),
        )?;
        self.store.commit().await
    }

    /// The application holding `key` and what it may do, if it is a current key.
    pub fn authenticate(&self, key: &str) -> Result<Option<(String, ApiKeyAccess)>> {
        Ok(self
            .store
            .api_key(&crypto::sha256_hex(key.as_bytes()))?
            .map(|r| {
                let access = r.access();
                (r.name, access)
            }))
    }

    pub fn audit_tail(&self, limit: Option<u32>) -> Result<Vec<AuditEvent>> {
        self.store
            .audit_tail(usize::try_from(limit.unwrap_or(50).min(10_000)).unwrap_or(50))
    }

    // ---- the admin console ----

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether a user's failure counter is locked now.
    fn user_locked(&self, user: &UserRecord) -> Result<bool> {
        let count = self
            .store
            .failure_count(&user_key(&user.id))?
            .current(&self.config.lockout.user, self.now());
        Ok(count.locked_at.is_some())
    }

    /// Counts over every user, for the console's dashboard. One pass over the store.
    pub fn dashboard(&self) -> Result<twofold_wire::admin::DashboardStats> {
        let mut stats = twofold_wire::admin::DashboardStats {
            users: 0,
            enrolled: 0,
            enrollment_required: 0,
            disabled: 0,
            locked: 0,
            devices_active: 0,
            devices_blocked: 0,
            devices_pending: 0,
            api_keys: self.store.api_keys()?.len() as u64,
            recent: self.store.audit_tail(12)?,
        };
        let system = self.system_two_factor()?;
        let policy = self.policies.load_full();
        for user in self.store.list_users(None, usize::MAX)? {
            stats.users += 1;
            match user.state(&policy.rules, &system) {
                twofold_wire::TwoFactorState::Enrolled => stats.enrolled += 1,
                twofold_wire::TwoFactorState::EnrollmentRequired => stats.enrollment_required += 1,
                twofold_wire::TwoFactorState::NotEnrolled | twofold_wire::TwoFactorState::Off => {}
            }
            stats.disabled += u64::from(!user.enabled);
            stats.locked += u64::from(self.user_locked(&user)?);
            for device in &user.devices {
                match device.status {
                    DeviceStatus::Active => stats.devices_active += 1,
                    DeviceStatus::Blocked => stats.devices_blocked += 1,
                    DeviceStatus::Pending => stats.devices_pending += 1,
                }
            }
        }
        Ok(stats)
    }

    /// Every user, compact and sorted by username, for the console's local search.
    pub fn user_index(&self) -> Result<Vec<twofold_wire::admin::UserIndexEntry>> {
        let system = self.system_two_factor()?;
        let policy = self.policies.load_full();
        self.store
            .list_users(None, usize::MAX)?
            .into_iter()
            .map(|u| {
                Ok(twofold_wire::admin::UserIndexEntry {
                    locked: self.user_locked(&u)?,
                    state: u.state(&policy.rules, &system),
                    enabled: u.enabled,
                    username: u.username,
                    upn: u.upn,
                    display_name: u.display_name,
                    email: u.email,
                })
            })
            .collect()
    }

    pub fn audit_search(
        &self,
        filter: &twofold_wire::admin::AuditFilter,
    ) -> Result<Vec<AuditEvent>> {
        let limit = usize::try_from(filter.limit.unwrap_or(200).min(10_000)).unwrap_or(200);
        self.store
            .audit_newest_matching(limit, filter.before, |e| filter.matches(e))
    }

    /// Records an admin request refused for the operator's role.
    pub async fn audit_refusal(&self, actor: &Actor, action: &str, detail: String) -> Result<()> {
        self.audit(actor, action, None, "forbidden", Some(detail))?;
        self.store.commit().await
    }
}

pub(crate) fn new_user_id() -> String {
    format!(
        "u{}",
        data_encoding::HEXLOWER.encode(&crypto::random_bytes::<8>())
    )
}

/// A code attempt in progress (see `Service::begin_attempt`); the user's lock is held until it drops.
pub(crate) struct Attempt<'a> {
    pub(crate) id: Option<String>,
    /// The lockout counter of the user, or of the unknown name.
    pub(crate) key: String,
    pub(crate) addr_key: String,
    /// As stored: its devices' use is in `Store::device_use`.
    pub(crate) user: Option<Arc<UserRecord>>,
    /// The stored username, else the name as given.
    pub(crate) audit_name: String,
    pub(crate) _guard: tokio::sync::MutexGuard<'a, ()>,
}

fn seed_context(user_id: &str, device_id: &str) -> String {
    format!("totp-seed/{user_id}/{device_id}")
}

/// A device's seed, opened. Verification opens one for every code, so the sealed bytes and the context
/// are put together on the stack when they fit (they always do for ids this daemon makes).
fn open_seed(
    secrets: &SecretBox,
    user_id: &str,
    device_id: &str,
    state: &TotpState,
) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    let encoded = state.sealed_secret.as_bytes();
    let mut sealed_buf = [0u8; 128];
    let mut context_buf = [0u8; 160];
    let context = [
        b"totp-seed/",
        user_id.as_bytes(),
        b"/",
        device_id.as_bytes(),
    ];
    let context = match joined(&mut context_buf, &context) {
        Some(context) => context,
        None => {
            return secrets.open(
                &decode_base64(encoded)?,
                seed_context(user_id, device_id).as_bytes(),
            )
        }
    };
    let len = data_encoding::BASE64
        .decode_len(encoded.len())
        .map_err(|_| not_base64())?;
    match sealed_buf.get_mut(..len) {
        Some(out) => {
            let n = data_encoding::BASE64
                .decode_mut(encoded, out)
                .map_err(|_| not_base64())?;
            secrets.open(&out[..n], context)
        }
        None => secrets.open(&decode_base64(encoded)?, context),
    }
}

fn decode_base64(encoded: &[u8]) -> Result<Vec<u8>> {
    data_encoding::BASE64
        .decode(encoded)
        .map_err(|_| not_base64())
}

fn not_base64() -> Error {
    StoreError::corrupt("sealed seed is not base64")
}

/// `parts` one after another in `buf`, if they fit.
fn joined<'b>(buf: &'b mut [u8], parts: &[&[u8]]) -> Option<&'b [u8]> {
    let mut at = 0;
    for part in parts {
        buf.get_mut(at..at + part.len())?.copy_from_slice(part);
        at += part.len();
    }
    Some(&buf[..at])
}

/// A key's powers from what the admin gave: at least one scope, each once, in a stable order.
fn key_access(scopes: &[ApiScope], trusted_proxy: bool) -> Result<ApiKeyAccess> {
    let mut scopes = scopes.to_vec();
    scopes.sort_unstable();
    scopes.dedup();
    if scopes.is_empty() {
        return Err(Error::invalid(
            "an API key needs at least one scope: verify, enroll or manage",
        ));
    }
    Ok(ApiKeyAccess {
        scopes,
        trusted_proxy,
    })
}

fn describe_access(access: &ApiKeyAccess) -> String {
    let scopes: Vec<&str> = access.scopes.iter().map(|s| s.name()).collect();
    format!(
        "scopes={} trusted_proxy={}",
        scopes.join(","),
        access.trusted_proxy
    )
}

fn key_info(record: ApiKeyRecord) -> ApiKeyInfo {
    ApiKeyInfo {
        unscoped: record.access.is_none(),
        access: record.access(),
        name: record.name,
        created: record.created,
    }
}

pub(crate) fn reject(reason: RejectReason, retry_after: Option<u64>) -> VerifyAnswer {
    VerifyAnswer {
        result: VerifyResult::Reject,
        method: None,
        factor: None,
        device: None,
        reason: Some(reason),
        retry_after,
        backup_codes_remaining: None,
        restore_prompt: false,
        enrollment_required: false,
    }
}

fn reason_name(reason: RejectReason) -> &'static str {
    match reason {
        RejectReason::InvalidCode => "invalid_code",
        RejectReason::Replayed => "replayed",
        RejectReason::RateLimited => "rate_limited",
        RejectReason::Locked => "locked",
        RejectReason::FactorNotAllowed => "factor_not_allowed",
        RejectReason::TwoFactorOff => "two_factor_off",
    }
}

pub(crate) fn origin_name(origin: DeviceOrigin) -> &'static str {
    match origin {
        DeviceOrigin::Enrolled => "enrolled",
        DeviceOrigin::Admin => "admin",
        DeviceOrigin::Restored => "restored",
        DeviceOrigin::Duplicated => "duplicated",
    }
}

fn factor_name(factor: Factor) -> &'static str {
    match factor {
        Factor::Totp => "totp",
        Factor::BackupCode => "backup_code",
        Factor::Sms => "sms",
        Factor::Voice => "voice",
        Factor::Email => "email",
        Factor::InPerson => "in_person",
        Factor::AccessCode => "access_code",
    }
}

/// A device is only enrolled for a user who may sign in: one removed from or disabled in the directory
/// would hold a device that rejects every code (and a removed record is purged with it).
fn refuse_enrollment(user: &UserRecord) -> Result<()> {
    if !user.enabled {
        return Err(Error::Conflict("the user is disabled".into()));
    }
    match &user.directory {
        Some(d) if d.removed_at.is_some() => Err(Error::Conflict(format!(
            "the user was removed from the directory {}: no device can be enrolled for a removed user",
            d.domain
        ))),
        Some(d) if d.account_disabled => Err(Error::Conflict(format!(
            "the user is disabled in the directory {}: enable the account in AD first",
            d.domain
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sealed as enrollment seals, opened by `open_seed` on the stack and, for ids too long for it,
    /// from the heap; a seed sealed for another device does not open.
    #[test]
    fn a_seed_opens_for_its_own_device_whatever_the_id_lengths() -> Result<()> {
        let secrets = SecretBox::new(&[7u8; 32]);
        let long = "u".repeat(300);
        for (user, device) in [("u1", "d1"), (long.as_str(), "d1"), ("u1", long.as_str())] {
            let seed = crypto::random_bytes::<20>().to_vec();
            let state = TotpState {
                params: TotpParams::default(),
                sealed_secret: data_encoding::BASE64
                    .encode(&secrets.seal(&seed, seed_context(user, device).as_bytes())?),
                last_step: None,
                drift: 0,
            };
            assert_eq!(*open_seed(&secrets, user, device, &state)?, seed);
            assert!(open_seed(&secrets, user, "d2", &state).is_err());
        }
        let broken = TotpState {
            params: TotpParams::default(),
            sealed_secret: "not base64!".into(),
            last_step: None,
            drift: 0,
        };
        assert!(open_seed(&secrets, "u1", "d1", &broken).is_err());
        Ok(())
    }
}
