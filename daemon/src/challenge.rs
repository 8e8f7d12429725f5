//! The challenge flow: a code sent out of band (SMS, voice call, email, in person), and admin access codes.
//!
//! The rules:
//! - A relying application asks for a challenge for a user on a channel. The channel must be one the
//!   user's policy allows, and have a destination (the user's effective mobile or voice number, email).
//!   Twofold makes a fresh code, replaces the user's previous open challenge (its code stops working at
//!   once), answers with a transaction id, and delivers in the background (`delivery`).
//! - One challenge per user per `min_interval_seconds`: each costs an SMS or a call.
//! - The code is accepted once, until `lifetime_seconds` after it was made, for its user only (a phone
//!   number several users share gets a separate code per user). It is checked inside `Service::verify`,
//!   so a wrong code counts toward the user's and the address's lockout like any wrong code.
//! - A challenge group (the privacyIDEA API's "one transaction, a challenge per token"): codes on several
//!   channels at once under one transaction id `tx…`, each member stored as `tx….<channel>` with a code
//!   of its own. Any member's code completes the group; the others stop working then. The group counts
//!   as one challenge for `min_interval_seconds`: asked again within it, the open group is answered again
//!   instead of sending more codes.
//! - Access codes: with `[challenge] access_codes = true`, an admin holding "generate access codes" makes
//!   a single-use code for one user, shown to the admin once, valid `access_code_lifetime_seconds`. A new
//!   one replaces the previous. The user types it as "I have a code"; it goes through verify as well.
//!
//! Storage: codes are kept only as HMAC-SHA256 under a key derived from the master key, bound to the
//! user and the transaction. Why not argon2id as for backup codes: an out-of-band code lives minutes and
//! is guarded by the lockout, and a challenge must cost microseconds at thousands per second, not tens of
//! milliseconds. Why not a plain hash: a 6-digit code hashed without a secret falls to 10^6 guesses from
//! a copy of the store; keyed with a key that is not in the store (the master key is kept apart), the
//! stored MAC says nothing about the code. Comparisons are constant-time.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use twofold_wire::api::Factor;
use twofold_wire::delivery::{
    AccessCodeIssued, ChallengeAnswer, ChallengeStatus, DeliveryInfo, DeliveryState,
};
use twofold_wire::policy::Channel;

use crate::crypto;
use crate::delivery::{Delivery, Job};
use crate::error::{Error, Result};
use crate::lockout::user_key;
use crate::service::{Actor, Service};
use crate::store::challenges::{AccessCodeRecord, ChallengeRecord};
use crate::store::records::UserRecord;
use crate::store::Store;
use crate::validate;

/// Digits of an access code: 12, so it is told apart from TOTP (6 or 8 digits) and challenge codes
/// (6 to 10), and is strong enough to be valid for longer than a challenge code.
pub const ACCESS_CODE_DIGITS: usize = 12;
/// Challenges are kept (for admins' delivery status) this long after they were made.
const CHALLENGE_RETENTION_SECONDS: i64 = 7 * 86_400;
/// Old challenges are pruned once every this many new ones.
const PRUNE_EVERY: u64 = 256;

/// The key codes are MACed under, wiped from memory when dropped.
#[derive(Clone, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct CodeKey([u8; 32]);

impl std::fmt::Debug for CodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CodeKey(..)")
    }
}

impl CodeKey {
    pub fn derive(master_key: &[u8]) -> CodeKey {
        CodeKey(crate::plugins::derive_key(
            master_key,
            b"twofold out-of-band code v1",
        ))
    }

    /// MAC over the purpose, the user, the transaction and the code, so that a MAC copied onto another
    /// user's or another challenge's record does not match there.
    pub(crate) fn mac(
        &self,
        purpose: &str,
        user_id: &str,
        transaction: &str,
        code: &str,
    ) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        for part in [purpose, user_id, transaction, code] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        data_encoding::HEXLOWER.encode(&mac.finalize().into_bytes())
    }

    pub(crate) fn matches(
        &self,
        stored: &str,
        purpose: &str,
        user_id: &str,
        transaction: &str,
        code: &str,
    ) -> bool {
        crypto::constant_time_eq(
            self.mac(purpose, user_id, transaction, code).as_bytes(),
            stored.as_bytes(),
        )
    }
}

/// What a challenge request came to.
#[derive(Debug)]
pub enum Started {
    Sent(ChallengeAnswer),
    /// Another challenge for this user was made less than `min_interval_seconds` ago.
    TooSoon {
        retry_after: u64,
    },
}

/// One transaction id over codes sent on several channels.
#[derive(Debug)]
pub struct ChallengeGroup {
    pub transaction_id: String,
    pub members: Vec<ChallengeAnswer>,
}

#[derive(Debug)]
pub enum GroupStarted {
    Sent(ChallengeGroup),
    /// The user's last challenge was answered less than `min_interval_seconds` ago.
    TooSoon {
        retry_after: u64,
    },
    NoChannel,
}

pub struct Challenges {
    key: CodeKey,
    delivery: Arc<Delivery>,
    started: std::sync::atomic::AtomicU64,
}

/// A new transaction id: `tx` and 96 random bits in hex.
pub(crate) fn new_transaction_id() -> String {
    format!(
        "tx{}",
        data_encoding::HEXLOWER.encode(&crypto::random_bytes::<12>())
    )
}

impl Challenges {
    /// The record of a code just made for `user`, queued for delivery to `destination` (stored masked);
    /// the code itself is kept only as its MAC under `purpose`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn queued_record(
        &self,
        purpose: &str,
        transaction_id: &str,
        user: &UserRecord,
        channel: Channel,
        destination: &str,
        code: &str,
        now: i64,
        expires_at: i64,
    ) -> ChallengeRecord {
        ChallengeRecord {
            transaction_id: transaction_id.to_owned(),
            user_id: user.id.clone(),
            username: user.username.clone(),
            channel,
            destination: mask(destination, channel),
            code_mac: self.key.mac(purpose, &user.id, transaction_id, code),
            created: now,
            expires_at,
            used_at: None,
            superseded: false,
            state: DeliveryState::Queued,
            attempts: Vec::new(),
        }
    }

    pub fn new(key: CodeKey, delivery: Arc<Delivery>) -> Challenges {
        Challenges {
            key,
            delivery,
            started: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn delivery(&self) -> &Arc<Delivery> {
        &self.delivery
    }

    /// The key restore OTPs are MACed under too (with their own purpose).
    pub(crate) fn key(&self) -> &CodeKey {
        &self.key
    }

    /// Makes a challenge and starts its delivery; answers before the code is delivered.
    pub async fn start(
        &self,
        service: &Service,
        actor: &Actor,
        name: &str,
        channel: Channel,
        locale: Option<String>,
    ) -> Result<Started> {
        validate::lookup_name(name)?;
        let locale = locale.unwrap_or_else(|| "en".to_owned());
        if locale.is_empty()
            || locale.len() > 35
            || !locale
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Error::invalid(
                "locale must be a language tag such as en or de-CH",
            ));
        }
        let config = service.config();
        let found = service
            .store()
            .find_user(name)?
            .ok_or_else(|| Error::UserNotFound(name.to_owned()))?;
        let _guard = service.lock_user(&user_key(&found.id)).await;
        let user = service
            .store()
            .user(&found.id)?
            .ok_or(Error::NotFound { what: "user" })?;
        if let Some(block) = service.sign_in_block(&user) {
            return Err(Error::Conflict(format!(
                "the user cannot sign in: {}",
                block.explain()
            )));
        }
        let policy = service.policy().rules.for_groups(&user.groups);
        if channel == Channel::Totp {
            return Err(Error::invalid(
                "channel totp has no challenge: verify the authenticator's code directly",
            ));
        }
        if !policy.channels.contains(&channel) {
            service.audit(
                actor,
                "challenge",
                Some(&user.username),
                "refused",
                Some(format!("channel={} reason=policy", channel_name(channel))),
            )?;
            service.store().commit().await?;
            return Err(Error::Forbidden(format!(
                "the user's policy does not allow codes by {}",
                channel_name(channel)
            )));
        }
        let destination = destination(&user, channel)?;
        self.delivery.can_deliver(channel)?;
        let now = service.now();
        if let Some(previous) = service.store().open_challenge(&user.id)? {
            let ready_at = previous.created.saturating_add(
                i64::try_from(config.challenge.min_interval_seconds).unwrap_or(i64::MAX),
            );
            if now < ready_at && !previous.superseded {
                return Ok(Started::TooSoon {
                    retry_after: u64::try_from(ready_at - now).unwrap_or(1).max(1),
                });
            }
        }

        let code = numeric_code(usize::from(config.challenge.code_digits));
        let transaction_id = new_transaction_id();
        let lifetime = config.challenge.lifetime_seconds;
        let expires_at = now.saturating_add(i64::try_from(lifetime).unwrap_or(i64::MAX));
        let record = self.queued_record(
            "challenge",
            &transaction_id,
            &user,
            channel,
            &destination,
            &code,
            now,
            expires_at,
        );
        if let Some(previous) = service.store().insert_challenge(&record)? {
            self.supersede(service.store(), &previous, None)?;
        }
        if self
            .started
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .is_multiple_of(PRUNE_EVERY)
        {
            service
                .store()
                .prune_challenges(now - CHALLENGE_RETENTION_SECONDS)?;
        }
        service.audit(
            actor,
            "challenge",
            Some(&user.username),
            "sent",
            Some(format!(
                "channel={} transaction={transaction_id} destination={}",
                channel_name(channel),
                record.destination
            )),
        )?;
        service.store().commit().await?;
        self.delivery.submit(Job {
            transaction_id: transaction_id.clone(),
            username: user.username.clone(),
            display_name: user.display_name.clone(),
            channel,
            destination,
            code,
            locale,
            expires_at,
            valid_seconds: u32::try_from(lifetime).unwrap_or(u32::MAX),
            template: crate::email::Template::Code,
        });
        Ok(Started::Sent(ChallengeAnswer {
            transaction_id,
            channel,
            destination: record.destination,
            expires_at,
            delivery: DeliveryState::Queued,
        }))
    }

    /// Makes a challenge group on each of `channels` the user can receive codes on (allowed by their
    /// policy, with a destination and a configured delivery), or answers the user's open group again
    /// within `min_interval_seconds`. Users who are unknown, outside `source`, disabled or without a
    /// usable channel all come to `NoChannel`, alike.
    pub async fn start_group(
        &self,
        service: &Service,
        actor: &Actor,
        name: &str,
        channels: &[Channel],
        source: Option<&str>,
    ) -> Result<GroupStarted> {
        validate::lookup_name(name)?;
        let config = service.config();
        let Some(id) = service.store().user_id(name)? else {
            return Ok(GroupStarted::NoChannel);
        };
        let _guard = service.lock_user(&user_key(&id)).await;
        let Some(user) = service
            .store()
            .user(&id)?
            .filter(|u| service.sign_in_block(u).is_none() && source.is_none_or(|s| u.source == s))
        else {
            return Ok(GroupStarted::NoChannel);
        };
        let policy = service.policy().rules.for_groups(&user.groups);
        let usable: Vec<(Channel, String)> = channels
            .iter()
            .filter(|c| **c != Channel::Totp && policy.channels.contains(c))
            .filter(|c| self.delivery.can_deliver(**c).is_ok())
            .filter_map(|c| destination(&user, *c).ok().map(|d| (*c, d)))
            .collect();
        if usable.is_empty() {
            return Ok(GroupStarted::NoChannel);
        }
        let now = service.now();
        if let Some(previous) = service.store().open_challenge(&user.id)? {
            let ready_at = previous.created.saturating_add(
                i64::try_from(config.challenge.min_interval_seconds).unwrap_or(i64::MAX),
            );
            if now < ready_at && !previous.superseded {
                if !previous.open(now) {
                    return Ok(GroupStarted::TooSoon {
                        retry_after: u64::try_from(ready_at - now).unwrap_or(1).max(1),
                    });
                }
                let (transaction_id, members) = match group_of(&previous.transaction_id) {
                    Some(group) => (
                        group.to_owned(),
                        group_members(service.store(), group)?
                            .into_iter()
                            .filter(|c| c.open(now))
                            .collect(),
                    ),
                    None => (previous.transaction_id.clone(), vec![previous]),
                };
                return Ok(GroupStarted::Sent(ChallengeGroup {
                    transaction_id,
                    members: members.into_iter().map(|c| answer_of(&c)).collect(),
                }));
            }
        }

        let group = new_transaction_id();
        let lifetime = config.challenge.lifetime_seconds;
        let expires_at = now.saturating_add(i64::try_from(lifetime).unwrap_or(i64::MAX));
        let mut jobs = Vec::new();
        let mut members = Vec::new();
        for (channel, destination) in usable {
            let code = numeric_code(usize::from(config.challenge.code_digits));
            let transaction_id = format!("{group}.{}", channel_name(channel));
            let record = self.queued_record(
                "challenge",
                &transaction_id,
                &user,
                channel,
                &destination,
                &code,
                now,
                expires_at,
            );
            if let Some(previous) = service.store().insert_challenge(&record)? {
                if group_of(&previous) != Some(group.as_str()) {
                    self.supersede(service.store(), &previous, None)?;
                }
            }
            service.audit(
                actor,
                "challenge",
                Some(&user.username),
                "sent",
                Some(format!(
                    "channel={} transaction={transaction_id} destination={}",
                    channel_name(channel),
                    record.destination
                )),
            )?;
            members.push(answer_of(&record));
            jobs.push(Job {
                transaction_id,
                username: user.username.clone(),
                display_name: user.display_name.clone(),
                channel,
                destination,
                code,
                locale: "en".to_owned(),
                expires_at,
                valid_seconds: u32::try_from(lifetime).unwrap_or(u32::MAX),
                template: crate::email::Template::Code,
            });
        }
        service.store().commit().await?;
        for job in jobs {
            self.delivery.submit(job);
        }
        Ok(GroupStarted::Sent(ChallengeGroup {
            transaction_id: group,
            members,
        }))
    }

    /// Stops a challenge's code (every member's, for a group or a group member), except `keep`.
    fn supersede(&self, store: &Store, transaction: &str, keep: Option<&str>) -> Result<()> {
        let targets: Vec<String> = match group_of(transaction) {
            Some(group) => group_members(store, group)?
                .into_iter()
                .map(|c| c.transaction_id)
                .collect(),
            None if store.challenge(transaction)?.is_some() => vec![transaction.to_owned()],
            None => group_members(store, transaction)?
                .into_iter()
                .map(|c| c.transaction_id)
                .collect(),
        };
        for tx in targets.iter().filter(|tx| Some(tx.as_str()) != keep) {
            store.update_challenge(tx, |r| r.superseded = true)?;
            self.delivery.handover().remove_transaction(tx);
        }
        Ok(())
    }

    /// Checks `code` against the user's open challenge (or the one `transaction` names) and access code,
    /// and uses up what matches. Called by verify with the user's lock held. `None`: no match.
    pub fn check(
        &self,
        store: &Store,
        user: &UserRecord,
        code: &str,
        transaction: Option<&str>,
        now: i64,
    ) -> Result<Option<Factor>> {
        let digits: String = code.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(None);
        }
        let candidates = match transaction {
            Some(tx) => match store.challenge(tx)? {
                Some(challenge) => vec![challenge],
                None => group_members(store, tx)?,
            },
            None => match store.open_challenge(&user.id)? {
                Some(challenge) => match group_of(&challenge.transaction_id) {
                    Some(group) => group_members(store, group)?,
                    None => vec![challenge],
                },
                None => Vec::new(),
            },
        };
        for challenge in candidates
            .into_iter()
            .filter(|c| c.user_id == user.id && c.open(now))
        {
            if self.key.matches(
                &challenge.code_mac,
                "challenge",
                &user.id,
                &challenge.transaction_id,
                &digits,
            ) {
                // The caller holds the user's lock, so no other verification marks it used meanwhile; the
                // update is atomic against the delivery task's status writes.
                store.update_challenge(&challenge.transaction_id, |r| r.used_at = Some(now))?;
                self.delivery
                    .handover()
                    .remove_transaction(&challenge.transaction_id);
                if let Some(group) = group_of(&challenge.transaction_id) {
                    self.supersede(store, group, Some(&challenge.transaction_id))?;
                }
                return Ok(Some(factor_of(challenge.channel)));
            }
        }
        if transaction.is_none() && digits.len() == ACCESS_CODE_DIGITS {
            if let Some(access) = store.access_code(&user.id)? {
                if now < access.expires_at
                    && self
                        .key
                        .matches(&access.code_mac, "access", &user.id, "", &digits)
                    && store.remove_access_code(&user.id)?
                {
                    return Ok(Some(Factor::AccessCode));
                }
            }
        }
        Ok(None)
    }

    /// A single-use access code for a user, shown once to the admin who asked.
    pub async fn generate_access_code(
        &self,
        service: &Service,
        actor: &Actor,
        name: &str,
    ) -> Result<AccessCodeIssued> {
        let config = service.config();
        if !config.challenge.access_codes {
            return Err(Error::Forbidden(
                "access codes are switched off: set [challenge] access_codes = true".into(),
            ));
        }
        validate::lookup_name(name)?;
        let found = service
            .store()
            .find_user(name)?
            .ok_or_else(|| Error::UserNotFound(name.to_owned()))?;
        let _guard = service.lock_user(&user_key(&found.id)).await;
        let now = service.now();
        let code = numeric_code(ACCESS_CODE_DIGITS);
        let expires_at = now.saturating_add(
            i64::try_from(config.challenge.access_code_lifetime_seconds).unwrap_or(i64::MAX),
        );
        let record = AccessCodeRecord {
            code_mac: self.key.mac("access", &found.id, "", &code),
            created: now,
            expires_at,
            by: actor.to_string(),
        };
        service.store().set_access_code(&found.id, &record)?;
        service.audit(
            actor,
            "access_code_generate",
            Some(&found.username),
            "ok",
            Some(format!("expires_at={expires_at}")),
        )?;
        service.store().commit().await?;
        if let Some(email) = &found.email {
            self.delivery
                .notify_access_code(email, &found, actor, expires_at);
        }
        let grouped = code
            .as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("-");
        Ok(AccessCodeIssued {
            user: found.username,
            code: grouped,
            expires_at,
        })
    }

    /// A challenge's state, for the relying application that made it.
    pub fn status(&self, store: &Store, transaction_id: &str) -> Result<ChallengeStatus> {
        let record = store
            .challenge(transaction_id)?
            .ok_or(Error::NotFound { what: "challenge" })?;
        Ok(ChallengeStatus {
            transaction_id: record.transaction_id,
            state: record.state,
            expires_at: record.expires_at,
            used: record.used_at.is_some(),
        })
    }

    /// Recent challenges with their delivery, for admins.
    pub fn deliveries(
        &self,
        service: &Service,
        user: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Vec<DeliveryInfo>> {
        let user_id = match user {
            Some(name) => {
                validate::lookup_name(name)?;
                Some(
                    service
                        .store()
                        .find_user(name)?
                        .ok_or_else(|| Error::UserNotFound(name.to_owned()))?
                        .id,
                )
            }
            None => None,
        };
        let limit = usize::try_from(limit.unwrap_or(50).min(1000)).unwrap_or(50);
        Ok(service
            .store()
            .recent_challenges(user_id.as_deref(), limit)?
            .into_iter()
            .map(|r| DeliveryInfo {
                transaction_id: r.transaction_id,
                user: r.username,
                channel: r.channel,
                destination: r.destination,
                created: r.created,
                expires_at: r.expires_at,
                state: r.state,
                used: r.used_at.is_some(),
                attempts: r.attempts,
            })
            .collect())
    }
}

/// The group a member's transaction id (`tx….sms`) belongs to.
fn group_of(transaction_id: &str) -> Option<&str> {
    transaction_id.split_once('.').map(|(group, _)| group)
}

/// A group's members, whichever channels it was sent on.
fn group_members(store: &Store, group: &str) -> Result<Vec<ChallengeRecord>> {
    if group.contains('.') {
        return Ok(Vec::new());
    }
    let mut members = Vec::new();
    for channel in [
        Channel::Sms,
        Channel::Voice,
        Channel::Email,
        Channel::InPerson,
    ] {
        if let Some(c) = store.challenge(&format!("{group}.{}", channel_name(channel)))? {
            members.push(c);
        }
    }
    Ok(members)
}

fn answer_of(record: &ChallengeRecord) -> ChallengeAnswer {
    ChallengeAnswer {
        transaction_id: record.transaction_id.clone(),
        channel: record.channel,
        destination: record.destination.clone(),
        expires_at: record.expires_at,
        delivery: record.state,
    }
}

/// Where a code on `channel` goes for this user.
pub(crate) fn destination(user: &UserRecord, channel: Channel) -> Result<String> {
    let missing = |what: &str| {
        Error::Conflict(format!(
            "the user has no {what}: choose another channel, or set one"
        ))
    };
    // Plugins get the number as dialled: E.164 when it has a country code (see `phone`).
    let dial = |written: &str| {
        crate::phone::dial(written).map_err(|reason| {
            Error::Conflict(format!(
                "the user's number cannot be dialled ({reason}): correct it in the directory or set an override"
            ))
        })
    };
    match channel {
        Channel::Sms => user
            .effective_mobile()
            .ok_or_else(|| missing("mobile number"))
            .and_then(dial),
        // "Call me" is for users without a mobile too: the voice number, else the mobile.
        Channel::Voice => user
            .effective_voice()
            .or(user.effective_mobile())
            .ok_or_else(|| missing("phone number"))
            .and_then(dial),
        Channel::Email => user.email.clone().ok_or_else(|| missing("email address")),
        Channel::InPerson => Ok(String::new()),
        Channel::Totp => Err(Error::invalid("channel totp has no destination")),
    }
}

/// `+41 •• ••• •• 67` (the last two digits), `a•••@example.com`.
pub fn mask(destination: &str, channel: Channel) -> String {
    match channel {
        Channel::Email => match destination.split_once('@') {
            Some((local, domain)) => format!("{}•••@{domain}", local.chars().next().unwrap_or('•')),
            None => "•••".to_owned(),
        },
        Channel::InPerson => "helpdesk".to_owned(),
        _ => {
            let digits: Vec<char> = destination.chars().filter(char::is_ascii_digit).collect();
            let tail: String = digits[digits.len().saturating_sub(2)..].iter().collect();
            format!(
                "{}••••{tail}",
                if destination.trim_start().starts_with('+') {
                    "+"
                } else {
                    ""
                }
            )
        }
    }
}

/// Uniform random digits (bytes of 250 and above are drawn again, so no digit is favoured).
pub(crate) fn numeric_code(digits: usize) -> String {
    use rand_core::{OsRng, RngCore};
    let mut code = String::with_capacity(digits);
    while code.len() < digits {
        let mut byte = [0u8; 1];
        OsRng.fill_bytes(&mut byte);
        if byte[0] < 250 {
            code.push(char::from(b'0' + byte[0] % 10));
        }
    }
    code
}

pub fn channel_name(channel: Channel) -> &'static str {
    match channel {
        Channel::Totp => "totp",
        Channel::Sms => "sms",
        Channel::Voice => "voice",
        Channel::Email => "email",
        Channel::InPerson => "in_person",
    }
}

fn factor_of(channel: Channel) -> Factor {
    match channel {
        Channel::Sms => Factor::Sms,
        Channel::Voice => Factor::Voice,
        Channel::Email => Factor::Email,
        Channel::InPerson => Factor::InPerson,
        Channel::Totp => Factor::Totp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_bind_user_transaction_and_purpose() {
        let key = CodeKey::derive(&[7u8; 32]);
        let mac = key.mac("challenge", "u1", "tx1", "123456");
        assert!(key.matches(&mac, "challenge", "u1", "tx1", "123456"));
        // (purpose, user, transaction, code) each changed in turn must not match
        let others = [
            ("access", "u1", "tx1", "123456"),
            ("challenge", "u2", "tx1", "123456"),
            ("challenge", "u1", "tx2", "123456"),
            ("challenge", "u1", "tx1", "123457"),
        ];
        for (p, u, t, c) in others {
            assert!(!key.matches(&mac, p, u, t, c), "{p} {u} {t} {c}");
        }
        assert!(!CodeKey::derive(&[8u8; 32]).matches(&mac, "challenge", "u1", "tx1", "123456"));
    }

    #[test]
    fn destinations_are_masked() {
        assert_eq!(mask("+41 79 123 45 67", Channel::Sms), "+••••67");
        assert_eq!(mask("079 123 45 67", Channel::Voice), "••••67");
        assert_eq!(
            mask("alice@example.com", Channel::Email),
            "a•••@example.com"
        );
        assert_eq!(mask("", Channel::InPerson), "helpdesk");
    }

    #[test]
    fn codes_are_digits_of_the_asked_length() {
        for digits in [6, 8, 10, 12] {
            let code = numeric_code(digits);
            assert_eq!(code.len(), digits);
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
        }
    }
}
