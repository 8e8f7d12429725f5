//! The restore function's records, in one tree by key prefix:
//! - `state/<user id>` -> `RestoreRecord`: the restore code's hash, activation, restores made, logins;
//! - `session/<transaction id>` -> `RestoreSession`: a self-service restore between its steps;
//! - `pairing/<SHA-256 of the token>` -> `SecretGrant`: a pairing token for a second device;
//! - `block/<SHA-256 of the code>` -> `SecretGrant`: a "this wasn't me" code for one device.
//!
//! Pairing tokens and block codes are 130-bit random values, so a fast hash is enough (NIST allows it
//! from 112 bits); the restore code is kept as argon2id as the brief for look-up secrets asks.

use serde::{Deserialize, Serialize};

use super::{decode, encode, Store};
use crate::crypto::SlowHash;
use crate::error::Result;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreRecord {
    /// The current restore code; `None` until activation.
    pub code: Option<SlowHash>,
    pub code_issued_at: Option<i64>,
    pub activated_at: Option<i64>,
    /// When each completed restore happened, oldest first (bounded, see `restore`).
    pub restores: Vec<i64>,
    /// Successful logins, for the restore prompt.
    pub logins: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreSession {
    pub user_id: String,
    pub created: i64,
    /// After this the restore must start again.
    pub expires_at: i64,
    /// The new device, once the emailed OTP was accepted.
    pub device: Option<String>,
}

/// A single-use grant bound to a user (and, for block codes, a device).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretGrant {
    pub user_id: String,
    pub device_id: Option<String>,
    pub created: i64,
    pub expires_at: i64,
}

/// What the restore prompt needs of a restore record. Kept in memory (`Store::login_count`): counting
/// logins looks at it on every accepted verification, and after the first few logins it rarely changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoginCount {
    pub activated: bool,
    pub logins: u32,
}

impl LoginCount {
    fn of(record: &RestoreRecord) -> LoginCount {
        LoginCount {
            activated: record.activated_at.is_some(),
            logins: record.logins,
        }
    }
}

fn state_key(user_id: &str) -> String {
    format!("state/{user_id}")
}

impl Store {
    pub fn restore_record(&self, user_id: &str) -> Result<RestoreRecord> {
        Ok(self
            .restore
            .get(state_key(user_id).as_bytes())?
            .map(|v| decode(&v))
            .transpose()?
            .unwrap_or_default())
    }

    /// The user's restore activation and login count, from memory when a read or write left it there.
    pub fn login_count(&self, user_id: &str) -> Result<LoginCount> {
        self.login_counts.read_through(user_id, || {
            Ok(LoginCount::of(&self.restore_record(user_id)?))
        })
    }

    /// Replaces a user's restore record with `change(current)` atomically; returns the new record.
    pub fn update_restore_record(
        &self,
        user_id: &str,
        change: impl Fn(&mut RestoreRecord),
    ) -> Result<RestoreRecord> {
        let mut decode_error = None;
        let updated = self.login_counts.write(user_id, || {
            self.restore
                .update_and_fetch(state_key(user_id).as_bytes(), |old| {
                    let mut record = match old.map(serde_json::from_slice::<RestoreRecord>) {
                        Some(Ok(r)) => r,
                        Some(Err(e)) => {
                            decode_error = Some(e);
                            return old.map(<[u8]>::to_vec);
                        }
                        None => RestoreRecord::default(),
                    };
                    change(&mut record);
                    serde_json::to_vec(&record).ok()
                })
        })?;
        if let Some(e) = decode_error {
            return Err(e.into());
        }
        Ok(updated.map(|v| decode(&v)).transpose()?.unwrap_or_default())
    }

    pub fn remove_restore_record(&self, user_id: &str) -> Result<()> {
        self.login_counts.write(user_id, || {
            self.restore.remove(state_key(user_id).as_bytes())
        })?;
        Ok(())
    }

    pub fn restore_session(&self, transaction_id: &str) -> Result<Option<RestoreSession>> {
        self.restore
            .get(format!("session/{transaction_id}").as_bytes())?
            .map(|v| decode(&v))
            .transpose()
    }

    pub fn put_restore_session(
        &self,
        transaction_id: &str,
        session: &RestoreSession,
    ) -> Result<()> {
        self.restore.insert(
            format!("session/{transaction_id}").as_bytes(),
            encode(session)?,
        )?;
        Ok(())
    }

    pub fn remove_restore_session(&self, transaction_id: &str) -> Result<()> {
        self.restore
            .remove(format!("session/{transaction_id}").as_bytes())?;
        Ok(())
    }

    /// Stores a grant under `kind/<hash>` (`pairing` or `block`).
    pub fn put_grant(&self, kind: &str, hash: &str, grant: &SecretGrant) -> Result<()> {
        self.restore
            .insert(format!("{kind}/{hash}").as_bytes(), encode(grant)?)?;
        Ok(())
    }

    pub fn grant(&self, kind: &str, hash: &str) -> Result<Option<SecretGrant>> {
        self.restore
            .get(format!("{kind}/{hash}").as_bytes())?
            .map(|v| decode(&v))
            .transpose()
    }

    /// Removes and returns a grant: whoever takes it first uses it, so it is used once.
    pub fn take_grant(&self, kind: &str, hash: &str) -> Result<Option<SecretGrant>> {
        self.restore
            .remove(format!("{kind}/{hash}").as_bytes())?
            .map(|v| decode(&v))
            .transpose()
    }

    /// Forgets grants and sessions that expired before `now`. Returns how many.
    pub fn prune_restore(&self, now: i64) -> Result<usize> {
        let mut pruned = 0;
        for prefix in ["pairing/", "block/", "session/"] {
            for item in self.restore.scan_prefix(prefix.as_bytes()) {
                let (key, value) = item?;
                let expires_at = if prefix == "session/" {
                    decode::<RestoreSession>(&value)?.expires_at
                } else {
                    decode::<SecretGrant>(&value)?.expires_at
                };
                if expires_at <= now {
                    self.restore.remove(&key)?;
                    pruned += 1;
                }
            }
        }
        Ok(pruned)
    }
}
