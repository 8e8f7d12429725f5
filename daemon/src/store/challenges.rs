//! Challenges (codes sent out of band) and admin access codes. Codes are kept only as MACs (see
//! `challenge`); a challenge record also carries its delivery's status, which the background delivery
//! updates while verification may mark the same record used: every change goes through `update_challenge`,
//! an atomic read-modify-write, so neither overwrites the other.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use twofold_wire::delivery::{DeliveryAttempt, DeliveryState};
use twofold_wire::policy::Channel;

use super::{decode, encode, Store};
use crate::error::Result;

/// Attempts kept per challenge: enough to read a failover, bounded against a retry storm.
pub const MAX_ATTEMPTS_KEPT: usize = 30;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeRecord {
    pub transaction_id: String,
    pub user_id: String,
    pub username: String,
    pub channel: Channel,
    /// Masked for display; the full destination lives only in the delivery job's memory.
    pub destination: String,
    /// HMAC-SHA256 of the code (hex), see `challenge::CodeKey`.
    pub code_mac: String,
    pub created: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    /// Replaced by a newer challenge for the same user.
    pub superseded: bool,
    pub state: DeliveryState,
    pub attempts: Vec<DeliveryAttempt>,
}

impl ChallengeRecord {
    /// Whether its code may still be accepted at `now`.
    pub fn open(&self, now: i64) -> bool {
        self.used_at.is_none() && !self.superseded && now < self.expires_at
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessCodeRecord {
    pub code_mac: String,
    pub created: i64,
    pub expires_at: i64,
    /// Who generated it, as in the audit log.
    pub by: String,
}

fn order_key(created: i64, transaction_id: &str) -> Vec<u8> {
    let mut key = created.to_be_bytes().to_vec();
    key.extend_from_slice(transaction_id.as_bytes());
    key
}

impl Store {
    /// Stores a new challenge and makes it the user's open one, returning the one it replaces.
    pub fn insert_challenge(&self, record: &ChallengeRecord) -> Result<Option<String>> {
        self.challenges
            .insert(record.transaction_id.as_bytes(), encode(record)?)?;
        self.challenge_order
            .insert(order_key(record.created, &record.transaction_id), &[])?;
        let previous = self.open_challenge_ids.write(&record.user_id, || {
            self.open_challenges
                .insert(record.user_id.as_bytes(), record.transaction_id.as_bytes())
        })?;
        Ok(previous.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Stores a challenge that is not the user's open one (a restore OTP, a notice sent by SMS): its
    /// delivery is tracked like any other, and it never replaces or stands in for a sign-in challenge.
    pub fn insert_detached_challenge(&self, record: &ChallengeRecord) -> Result<()> {
        self.challenges
            .insert(record.transaction_id.as_bytes(), encode(record)?)?;
        self.challenge_order
            .insert(order_key(record.created, &record.transaction_id), &[])?;
        Ok(())
    }

    pub fn challenge(&self, transaction_id: &str) -> Result<Option<ChallengeRecord>> {
        self.challenges
            .get(transaction_id.as_bytes())?
            .map(|v| decode(&v))
            .transpose()
    }

    /// The user's most recent challenge, open or not. Whether there is one is remembered (verify asks
    /// for every code, and most users never have one).
    pub fn open_challenge(&self, user_id: &str) -> Result<Option<ChallengeRecord>> {
        let tx = self.open_challenge_ids.read_through(user_id, || {
            Ok(self
                .open_challenges
                .get(user_id.as_bytes())?
                .map(|v| Arc::<[u8]>::from(v.as_ref())))
        })?;
        match tx {
            Some(tx) => self.challenges.get(&*tx)?.map(|v| decode(&v)).transpose(),
            None => Ok(None),
        }
    }

    /// Applies `change` to a challenge atomically; returns the record after the change.
    pub fn update_challenge(
        &self,
        transaction_id: &str,
        change: impl Fn(&mut ChallengeRecord),
    ) -> Result<Option<ChallengeRecord>> {
        let mut decode_error = None;
        let updated = self
            .challenges
            .update_and_fetch(transaction_id.as_bytes(), |old| {
                let old = old?;
                match serde_json::from_slice::<ChallengeRecord>(old) {
                    Ok(mut record) => {
                        change(&mut record);
                        record.attempts.truncate(MAX_ATTEMPTS_KEPT);
                        serde_json::to_vec(&record)
                            .ok()
                            .or_else(|| Some(old.to_vec()))
                    }
                    Err(e) => {
                        decode_error = Some(e);
                        Some(old.to_vec())
                    }
                }
            })?;
        if let Some(e) = decode_error {
            return Err(e.into());
        }
        updated.map(|v| decode(&v)).transpose()
    }

    /// The newest challenges first, of one user or all, at most `limit`.
    pub fn recent_challenges(
        &self,
        user_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ChallengeRecord>> {
        let mut out = Vec::new();
        for item in self.challenge_order.iter().rev() {
            if out.len() >= limit {
                break;
            }
            let (key, _) = item?;
            let Some(record) = self
                .challenges
                .get(&key[8..])?
                .map(|v| decode::<ChallengeRecord>(&v))
                .transpose()?
            else {
                continue;
            };
            if user_id.is_none_or(|u| u == record.user_id) {
                out.push(record);
            }
        }
        Ok(out)
    }

    /// Forgets challenges created before `before` (their codes expired long ago). Returns how many.
    pub fn prune_challenges(&self, before: i64) -> Result<usize> {
        let mut pruned = 0;
        for item in self.challenge_order.range(..before.to_be_bytes().to_vec()) {
            let (key, _) = item?;
            let tx = &key[8..];
            if let Some(record) = self
                .challenges
                .remove(tx)?
                .map(|v| decode::<ChallengeRecord>(&v))
                .transpose()?
            {
                // The open-challenge pointer goes too, unless a newer challenge took its place.
                let _ = self.open_challenge_ids.write(&record.user_id, || {
                    self.open_challenges.compare_and_swap(
                        record.user_id.as_bytes(),
                        Some(tx),
                        None::<&[u8]>,
                    )
                })?;
            }
            self.challenge_order.remove(&key)?;
            pruned += 1;
        }
        Ok(pruned)
    }

    pub fn set_access_code(&self, user_id: &str, record: &AccessCodeRecord) -> Result<()> {
        self.access_codes
            .insert(user_id.as_bytes(), encode(record)?)?;
        Ok(())
    }

    pub fn access_code(&self, user_id: &str) -> Result<Option<AccessCodeRecord>> {
        self.access_codes
            .get(user_id.as_bytes())?
            .map(|v| decode(&v))
            .transpose()
    }

    pub fn remove_access_code(&self, user_id: &str) -> Result<bool> {
        Ok(self.access_codes.remove(user_id.as_bytes())?.is_some())
    }
}
