//! The store: every piece of state the daemon keeps, behind typed methods.
//!
//! sled is an implementation detail of this module: nothing outside it names a sled type, so a second
//! backend (a replicated one for clusters) replaces this file's internals, not the logic above it.
//!
//! Durability: writes land in sled's log at once, but are only promised once `commit()` returns. Callers
//! write, then await `commit()`, then answer. Concurrent callers share one fsync (group commit, see
//! `durability`), which is what makes durable replay protection cheap under load.

pub mod challenges;
mod durability;
pub mod records;
pub mod restore;

use std::path::Path;

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use twofold_wire::admin::AuditEvent;

use crate::error::{Error, Result};
use crate::lockout::FailureCount;
pub use durability::Committer;
use records::{ApiKeyRecord, UserRecord};

/// Version of the record layout. Bump it and add a step to `migrate` when the layout changes.
pub const SCHEMA_VERSION: u32 = 1;
const SCHEMA_KEY: &[u8] = b"schema_version";

#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    meta: sled::Tree,
    users: sled::Tree,
    /// lower-cased username and UPN -> user id
    names: sled::Tree,
    /// `<directory name>/<objectGUID>` -> user id, for users synced from a directory
    guids: sled::Tree,
    /// `user:<name>` / `addr:<ip>` -> FailureCount
    failures: sled::Tree,
    /// SHA-256 of the key -> ApiKeyRecord
    api_keys: sled::Tree,
    /// big-endian id -> AuditEvent; only ever appended to
    audit: sled::Tree,
    /// transaction id -> ChallengeRecord; big-endian created || transaction id -> () (newest last);
    /// user id -> transaction id of the user's open challenge; user id -> AccessCodeRecord
    challenges: sled::Tree,
    challenge_order: sled::Tree,
    open_challenges: sled::Tree,
    access_codes: sled::Tree,
    /// The restore function's records, by key prefix (see `restore`).
    restore: sled::Tree,
    committer: Committer,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store(..)")
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(value)?)
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    Ok(serde_json::from_slice(bytes)?)
}

impl Store {
    /// Opens (or creates) the store in `dir`, migrating an older layout and refusing a newer one.
    /// Must be called inside a tokio runtime (the group-commit task is spawned here).
    pub fn open(dir: &Path) -> Result<Store> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(128 * 1024 * 1024)
            // We flush when an answer needs it; the periodic flush only bounds what an unacknowledged
            // write could lose.
            .flush_every_ms(Some(1000))
            .open()
            .map_err(|e| Error::Store(format!("{}: {e}", dir.display())))?;
        let tree = |name: &str| db.open_tree(name).map_err(Error::from);
        let store = Store {
            meta: tree("meta")?,
            users: tree("users")?,
            names: tree("names")?,
            guids: tree("guids")?,
            failures: tree("failures")?,
            api_keys: tree("api_keys")?,
            audit: tree("audit")?,
            challenges: tree("challenges")?,
            challenge_order: tree("challenge_order")?,
            open_challenges: tree("open_challenges")?,
            access_codes: tree("access_codes")?,
            restore: tree("restore")?,
            committer: Committer::start(
                db.clone(),
                std::fs::File::open(dir.join("db")).map_err(|e| Error::io(dir.join("db"), e))?,
            ),
            db,
        };
        store.check_schema()?;
        Ok(store)
    }

    fn check_schema(&self) -> Result<()> {
        let found = match self.meta.get(SCHEMA_KEY)? {
            None => {
                // A new store starts at the current layout.
                self.meta
                    .insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())?;
                self.db.flush()?;
                return Ok(());
            }
            Some(v) => u32::from_be_bytes(
                <[u8; 4]>::try_from(v.as_ref())
                    .map_err(|_| Error::Store("schema version is not 4 bytes".into()))?,
            ),
        };
        if found > SCHEMA_VERSION {
            return Err(Error::Store(format!(
                "the store has schema version {found}, this daemon knows up to {SCHEMA_VERSION}: it was written by a newer twofoldd"
            )));
        }
        for from in found..SCHEMA_VERSION {
            self.migrate(from)?;
            self.meta.insert(SCHEMA_KEY, &(from + 1).to_be_bytes())?;
            self.db.flush()?;
        }
        Ok(())
    }

    /// The migration hook: rewrites records from layout `from` to `from + 1`. Layout 1 is the first.
    fn migrate(&self, from: u32) -> Result<()> {
        Err(Error::Store(format!(
            "no migration from schema version {from}"
        )))
    }

    pub fn schema_version(&self) -> Result<u32> {
        Ok(self
            .meta
            .get(SCHEMA_KEY)?
            .and_then(|v| <[u8; 4]>::try_from(v.as_ref()).ok())
            .map_or(0, u32::from_be_bytes))
    }

    /// Waits until every write made before this call is on disk.
    pub async fn commit(&self) -> Result<()> {
        self.committer.commit().await
    }

    // ---- users ----

    pub fn user(&self, id: &str) -> Result<Option<UserRecord>> {
        self.users
            .get(id.as_bytes())?
            .map(|v| decode(&v))
            .transpose()
    }

    /// By username or UPN, case-insensitively.
    pub fn find_user(&self, name: &str) -> Result<Option<UserRecord>> {
        match self.user_id(name)? {
            Some(id) => self.user(&id),
            None => Ok(None),
        }
    }

    /// The id of the user with this username or UPN, without reading the record.
    pub fn user_id(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .names
            .get(name.to_lowercase().as_bytes())?
            .map(|id| String::from_utf8_lossy(&id).into_owned()))
    }

    /// Adds a user; fails with `Conflict` if its username or UPN is taken.
    pub fn insert_user(&self, user: &UserRecord) -> Result<()> {
        self.replace_user(None, user)
    }

    /// Replaces a user's record. When `old` is given, names it had and `user` lacks are released and new
    /// names are claimed, all in one transaction; a name held by another user fails with `Conflict`.
    pub fn replace_user(&self, old: Option<&UserRecord>, user: &UserRecord) -> Result<()> {
        let value = encode(user)?;
        let old_names = old.map(user_names).unwrap_or_default();
        let new_names = user_names(user);
        let guid = user.directory.as_ref().map(guid_key);
        let result =
            (&self.users, &self.names, &self.guids).transaction(|(users, index, guids)| {
                for name in &new_names {
                    if let Some(holder) = index.get(name.as_bytes())? {
                        if holder.as_ref() != user.id.as_bytes() {
                            return Err(ConflictableTransactionError::Abort(format!(
                                "{name} is already taken"
                            )));
                        }
                    }
                }
                for name in old_names.iter().filter(|n| !new_names.contains(n)) {
                    index.remove(name.as_bytes())?;
                }
                for name in &new_names {
                    index.insert(name.as_bytes(), user.id.as_bytes())?;
                }
                if let Some(guid) = &guid {
                    guids.insert(guid.as_bytes(), user.id.as_bytes())?;
                }
                users.insert(user.id.as_bytes(), value.as_slice())?;
                Ok(())
            });
        match result {
            Ok(()) => Ok(()),
            Err(TransactionError::Abort(message)) => Err(Error::Conflict(message)),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    /// Replaces a user's record whose names did not change (the hot path of verification).
    pub fn put_user(&self, user: &UserRecord) -> Result<()> {
        self.users.insert(user.id.as_bytes(), encode(user)?)?;
        Ok(())
    }

    pub fn delete_user(&self, user: &UserRecord) -> Result<()> {
        let names = user_names(user);
        let guid = user.directory.as_ref().map(guid_key);
        (&self.users, &self.names, &self.guids)
            .transaction(|(users, index, guids)| {
                for name in &names {
                    index.remove(name.as_bytes())?;
                }
                if let Some(guid) = &guid {
                    guids.remove(guid.as_bytes())?;
                }
                users.remove(user.id.as_bytes())?;
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(|e| Error::Store(format!("delete user: {e:?}")))
    }

    /// The user synced from `domain` with this objectGUID.
    pub fn user_by_guid(&self, domain: &str, guid: &str) -> Result<Option<UserRecord>> {
        match self.guids.get(format!("{domain}/{guid}").as_bytes())? {
            Some(id) => self.users.get(&id)?.map(|v| decode(&v)).transpose(),
            None => Ok(None),
        }
    }

    /// (objectGUID, user id) of every user synced from `domain`: small enough to hold for 100k users,
    /// unlike their records.
    pub fn domain_guids(&self, domain: &str) -> Result<Vec<(String, String)>> {
        let prefix = format!("{domain}/");
        self.guids
            .scan_prefix(prefix.as_bytes())
            .map(|item| {
                let (k, id) = item?;
                let key = String::from_utf8_lossy(&k);
                Ok((
                    key[prefix.len()..].to_owned(),
                    String::from_utf8_lossy(&id).into_owned(),
                ))
            })
            .collect()
    }

    /// A small JSON document kept under `key` (sync cursors and status).
    pub fn meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.meta
            .get(key.as_bytes())?
            .map(|v| decode(&v))
            .transpose()
    }

    pub fn set_meta<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<()> {
        self.meta.insert(key.as_bytes(), encode(value)?)?;
        Ok(())
    }

    pub fn count_users(&self) -> u64 {
        self.users.len() as u64
    }

    /// Users whose username, UPN, display name or email contains `query` (case-insensitive), by username.
    pub fn list_users(&self, query: Option<&str>, limit: usize) -> Result<Vec<UserRecord>> {
        let query = query.map(str::to_lowercase);
        let mut out = Vec::new();
        for item in self.users.iter() {
            let (_, v) = item?;
            let user: UserRecord = decode(&v)?;
            let hit = match &query {
                None => true,
                Some(q) => [
                    Some(&user.username),
                    user.upn.as_ref(),
                    user.display_name.as_ref(),
                    user.email.as_ref(),
                ]
                .into_iter()
                .flatten()
                .any(|f| f.to_lowercase().contains(q.as_str())),
            };
            if hit {
                out.push(user);
            }
        }
        out.sort_by(|a, b| a.username.cmp(&b.username));
        out.truncate(limit);
        Ok(out)
    }

    // ---- failure counters ----

    pub fn failure_count(&self, key: &str) -> Result<FailureCount> {
        Ok(self
            .failures
            .get(key.as_bytes())?
            .map(|v| decode(&v))
            .transpose()?
            .unwrap_or_default())
    }

    /// Atomically replaces a counter with `f(current)`; returns the new value.
    pub fn update_failure_count(
        &self,
        key: &str,
        f: impl Fn(FailureCount) -> FailureCount,
    ) -> Result<FailureCount> {
        let mut decode_error = None;
        let updated = self.failures.update_and_fetch(key.as_bytes(), |old| {
            let current = match old.map(serde_json::from_slice::<FailureCount>).transpose() {
                Ok(c) => c.unwrap_or_default(),
                Err(e) => {
                    decode_error = Some(e);
                    FailureCount::default()
                }
            };
            let next = f(current);
            if next == FailureCount::default() {
                None
            } else {
                serde_json::to_vec(&next).ok()
            }
        })?;
        if let Some(e) = decode_error {
            tracing::warn!(key, error = %e, "failure counter was unreadable and was reset");
        }
        Ok(updated.map(|v| decode(&v)).transpose()?.unwrap_or_default())
    }

    pub fn clear_failure_count(&self, key: &str) -> Result<bool> {
        Ok(self.failures.remove(key.as_bytes())?.is_some())
    }

    // ---- API keys ----

    pub fn insert_api_key(&self, hash: &str, record: &ApiKeyRecord) -> Result<()> {
        if self.api_keys()?.iter().any(|(_, r)| r.name == record.name) {
            return Err(Error::Conflict(format!(
                "an API key named {} exists",
                record.name
            )));
        }
        self.api_keys.insert(hash.as_bytes(), encode(record)?)?;
        Ok(())
    }

    pub fn api_key(&self, hash: &str) -> Result<Option<ApiKeyRecord>> {
        self.api_keys
            .get(hash.as_bytes())?
            .map(|v| decode(&v))
            .transpose()
    }

    pub fn api_keys(&self) -> Result<Vec<(String, ApiKeyRecord)>> {
        self.api_keys
            .iter()
            .map(|item| {
                let (k, v) = item?;
                Ok((String::from_utf8_lossy(&k).into_owned(), decode(&v)?))
            })
            .collect()
    }

    pub fn remove_api_key(&self, name: &str) -> Result<bool> {
        for (hash, record) in self.api_keys()? {
            if record.name == name {
                self.api_keys.remove(hash.as_bytes())?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    // ---- audit ----

    /// Appends an event (its `id` is assigned here) and returns the id.
    pub fn append_audit(&self, mut event: AuditEvent) -> Result<u64> {
        let id = self.db.generate_id()?;
        event.id = id;
        self.audit.insert(id.to_be_bytes(), encode(&event)?)?;
        Ok(id)
    }

    /// The newest `limit` events, oldest first.
    pub fn audit_tail(&self, limit: usize) -> Result<Vec<AuditEvent>> {
        let mut events: Vec<AuditEvent> = self
            .audit
            .iter()
            .rev()
            .take(limit)
            .map(|item| decode(&item?.1))
            .collect::<Result<_>>()?;
        events.reverse();
        Ok(events)
    }

    /// The newest `limit` events older than `before` (all if `None`) that `keep` accepts, oldest first.
    pub fn audit_newest_matching(
        &self,
        limit: usize,
        before: Option<u64>,
        keep: impl Fn(&AuditEvent) -> bool,
    ) -> Result<Vec<AuditEvent>> {
        let mut events = Vec::new();
        let end = before.unwrap_or(u64::MAX).to_be_bytes();
        for item in self.audit.range(..end).rev() {
            if events.len() >= limit {
                break;
            }
            let event: AuditEvent = decode(&item?.1)?;
            if keep(&event) {
                events.push(event);
            }
        }
        events.reverse();
        Ok(events)
    }
}

fn guid_key(link: &records::DirectoryLink) -> String {
    format!("{}/{}", link.domain, link.guid)
}

fn user_names(user: &UserRecord) -> Vec<String> {
    let mut names = vec![user.username.to_lowercase()];
    if let Some(upn) = &user.upn {
        let upn = upn.to_lowercase();
        if !names.contains(&upn) {
            names.push(upn);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let suffix = data_encoding::HEXLOWER.encode(&crate::crypto::random_bytes::<6>());
        std::env::temp_dir().join(format!("tf-store-{name}-{suffix}"))
    }

    #[tokio::test]
    async fn a_new_store_gets_the_current_schema_and_a_newer_one_is_refused() -> Result<()> {
        let dir = temp_dir("schema");
        {
            let store = Store::open(&dir)?;
            assert_eq!(store.schema_version()?, SCHEMA_VERSION);
            store
                .meta
                .insert(SCHEMA_KEY, &(SCHEMA_VERSION + 1).to_be_bytes())?;
            store.commit().await?;
        }
        let refused = Store::open(&dir)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(refused.contains("newer twofoldd"), "{refused}");
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[tokio::test]
    async fn an_older_schema_runs_the_migration_hook() -> Result<()> {
        let dir = temp_dir("migrate");
        {
            let store = Store::open(&dir)?;
            store.meta.insert(SCHEMA_KEY, &0u32.to_be_bytes())?;
            store.commit().await?;
        }
        // Layout 0 never existed, so the hook has no step for it and says so instead of guessing.
        let refused = Store::open(&dir)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            refused.contains("no migration from schema version 0"),
            "{refused}"
        );
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[tokio::test]
    async fn usernames_and_upns_are_unique_case_insensitively() -> Result<()> {
        let dir = temp_dir("names");
        let store = Store::open(&dir)?;
        let user = |id: &str, name: &str, upn: Option<&str>| UserRecord {
            id: id.into(),
            username: name.into(),
            upn: upn.map(Into::into),
            display_name: None,
            email: None,
            mobile: None,
            voice: None,
            groups: vec![],
            enabled: true,
            source: "local".into(),
            enrollment_required: false,
            created: 0,
            devices: vec![],
            backup_codes: None,
            directory: None,
            mobile_override: None,
            voice_override: None,
        };
        store.insert_user(&user("u1", "Alice", Some("alice@corp.example")))?;
        assert!(matches!(
            store.insert_user(&user("u2", "ALICE", None)),
            Err(Error::Conflict(_))
        ));
        assert!(matches!(
            store.insert_user(&user("u3", "al", Some("Alice@Corp.Example"))),
            Err(Error::Conflict(_))
        ));
        assert!(
            store.user("u3")?.is_none(),
            "an aborted insert leaves nothing behind"
        );
        assert_eq!(
            store.find_user("ALICE@corp.example")?.map(|u| u.id),
            Some("u1".into())
        );
        store.delete_user(&user("u1", "Alice", Some("alice@corp.example")))?;
        assert!(store.find_user("alice")?.is_none());
        store.insert_user(&user("u4", "alice", None))?;
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
