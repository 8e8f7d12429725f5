//! The store: every piece of state the daemon keeps, behind typed methods.
//!
//! sled is an implementation detail of this module: nothing outside it names a sled type, so a second
//! backend (a replicated one for clusters) replaces this file's internals, not the logic above it.
//!
//! Two parts: sled holds the records (users, names, API keys, challenges, settings); the journal (see
//! `journal`) holds what every verification changes (device use, failure counters) and the audit log, as
//! small binary frames, so a verification writes no sled record at all. Reading a user through the store
//! gives the record with its devices' use filled in from the journal; writing one puts each part where it
//! belongs.
//!
//! Durability: writes are only promised once `commit()` returns. Callers write, then await `commit()`,
//! then answer. Concurrent callers share one fsync (group commit, see `durability`), which is what makes
//! durable replay protection cheap under load.

mod cache;
pub mod challenges;
mod durability;
mod journal;
pub mod records;
pub mod restore;
mod tree;

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use sled::transaction::{ConflictableTransactionError, TransactionError};
use twofold_wire::admin::AuditEvent;

use crate::error::{Error, Result, StoreError};
use crate::lockout::{FailureCount, KnownAddresses};
use durability::{Committer, Durable};
pub use journal::{AuditEntry, DeviceUse, ExpiredSegments, JournalStats};
use records::{ApiKeyRecord, LivePolicy, UserRecord};
use tree::Tree;

/// Version of the record layout. Bump it and add a step to `migrate` when the layout changes.
/// 2: device use, failure counters and the audit log in the journal, the rest in sled. (Layout 1, with
/// everything in sled, was never released: its migration is gone.)
pub const SCHEMA_VERSION: u32 = 2;
const SCHEMA_KEY: &[u8] = b"schema_version";
const LIVE_POLICY_KEY: &str = "live_policy";

/// sled's page cache. sled counts a page at about its size on disk, while its decoded nodes take about
/// twice that on the heap: at 128 MiB every page of 100,000 synced users stayed in memory (180 MB of live
/// heap after a full sync, measured). Verification reads its users through the decoded `cache`, so sled's
/// cache only serves the first read of a user and the directory sync; a page read back from the OS's
/// file cache costs about 35 us more (measured: 48 against 14 us per lookup of a random user of 100,000).
const SLED_CACHE_BYTES: u64 = 32 * 1024 * 1024;

#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    meta: Tree,
    users: Tree,
    /// lower-cased username and UPN -> user id
    names: Tree,
    /// `<directory name>/<objectGUID>` -> user id, for users synced from a directory
    guids: Tree,
    /// SHA-256 of the key -> ApiKeyRecord
    api_keys: Tree,
    /// transaction id -> ChallengeRecord; big-endian created || transaction id -> () (newest last);
    /// user id -> transaction id of the user's open challenge; user id -> AccessCodeRecord
    challenges: Tree,
    challenge_order: Tree,
    open_challenges: Tree,
    access_codes: Tree,
    /// The restore function's records, by key prefix (see `restore`).
    restore: Tree,
    users_cache: Arc<cache::RecordCache<Arc<UserRecord>>>,
    name_hints: Arc<cache::NameHints>,
    /// user id -> transaction id of the open challenge, or none (see `challenges`).
    open_challenge_ids: Arc<cache::RecordCache<Option<Arc<[u8]>>>>,
    /// API keys by the SHA-256 of the key: every request of a relying application shows one.
    api_keys_cache: Arc<cache::RecordCache<ApiKeyRecord>>,
    /// What the restore prompt needs of each restore record (see `restore`).
    login_counts: Arc<cache::RecordCache<restore::LoginCount>>,
    durable: Arc<Durable>,
    committer: Committer,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store(..)")
    }
}

/// Opens sled, waiting (up to 5 s) for a file lock that an earlier open in this process still holds:
/// sled's background threads let go of it a moment after its last handle is dropped, so a quick
/// reopen (a test, an in-process restart) could otherwise fail. Another process holding the store
/// still gets a clear error after the wait.
#[allow(clippy::disallowed_methods)] // sled's lock has no event to wait on
fn open_sled(config: &sled::Config) -> sled::Result<sled::Db> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match config.open() {
            Err(e)
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

fn known_addresses_key(user_id: &str) -> String {
    format!("known_addresses/{user_id}")
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(value)?)
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    Ok(serde_json::from_slice(bytes)?)
}

impl Store {
    /// Opens (or creates) the store in `dir`, migrating an older layout and refusing a newer one.
    pub fn open(dir: &Path) -> Result<Store> {
        let db = open_sled(
            &sled::Config::new()
                .path(dir)
                .cache_capacity(SLED_CACHE_BYTES)
                // We flush when an answer needs it; the periodic flush only bounds what an
                // unacknowledged write could lose.
                .flush_every_ms(Some(1000)),
        )
        .map_err(|source| {
            Error::Store(StoreError::Open {
                path: dir.to_owned(),
                source,
            })
        })?;
        let writes = Arc::new(AtomicU64::new(0));
        let tree = |name: &str| {
            db.open_tree(name)
                .map(|t| Tree::new(t, writes.clone()))
                .map_err(Error::from)
        };
        let durable = Arc::new(Durable::new(
            db.clone(),
            writes.clone(),
            std::fs::File::open(dir.join("db")).map_err(|e| Error::io(dir.join("db"), e))?,
            journal::Journal::open(dir)?,
        ));
        let store = Store {
            meta: tree("meta")?,
            users: tree("users")?,
            names: tree("names")?,
            guids: tree("guids")?,
            api_keys: tree("api_keys")?,
            challenges: tree("challenges")?,
            challenge_order: tree("challenge_order")?,
            open_challenges: tree("open_challenges")?,
            access_codes: tree("access_codes")?,
            restore: tree("restore")?,
            users_cache: Arc::default(),
            name_hints: Arc::default(),
            api_keys_cache: Arc::default(),
            open_challenge_ids: Arc::default(),
            login_counts: Arc::default(),
            committer: Committer::start(durable.clone())?,
            durable,
            db,
        };
        store.check_schema()?;
        // The next start replays only what this run appends.
        let journal = &store.durable.journal;
        journal.write_snapshot(
            |user| Ok(store.users.contains_key(user.as_bytes())?),
            |_| {},
        )?;
        Ok(store)
    }

    /// Compacts the journal at `now`: starts a new segment once the current one holds a day-old event,
    /// writes a snapshot (a later start replays less), letting `prune` drop failure counters that no
    /// longer mean anything, then deletes the oldest segments whose events are all older than
    /// `retention_seconds`, once `record_expiry` has appended the audit event that says so. Returns how
    /// many counters remain and how many segments were deleted. Blocking.
    pub fn compact_journal(
        &self,
        now: i64,
        retention_seconds: i64,
        prune: impl FnOnce(&mut std::collections::HashMap<String, FailureCount>),
        record_expiry: impl FnOnce(&ExpiredSegments) -> Result<()>,
    ) -> Result<(usize, usize)> {
        let journal = self.journal();
        journal.roll_if_older(now.saturating_sub(journal::ROLL_AFTER_SECONDS))?;
        let snapshot = journal.write_snapshot(|_| Ok(true), prune)?;
        let mut dropped = 0;
        if let Some(expired) =
            journal.expired_segments(snapshot, now.saturating_sub(retention_seconds))?
        {
            // Said, and durable, before done: a deletion cut short is found and said again next time.
            record_expiry(&expired)?;
            journal.sync()?;
            journal.drop_segments(&expired)?;
            dropped = expired.ids.len();
        }
        Ok((journal.counter_count(), dropped))
    }

    /// The journal's segments, size and oldest audit event.
    pub fn journal_stats(&self) -> Result<JournalStats> {
        self.journal().stats()
    }

    fn journal(&self) -> &journal::Journal {
        &self.durable.journal
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
                    .map_err(|_| StoreError::corrupt("schema version is not 4 bytes"))?,
            ),
        };
        if found > SCHEMA_VERSION {
            return Err(StoreError::corrupt(format!(
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

    /// The migration hook: rewrites records from layout `from` to `from + 1`. Layout 2 is the first
    /// released one, so there is no step yet.
    fn migrate(&self, from: u32) -> Result<()> {
        Err(StoreError::corrupt(format!(
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
    /// The first failed commit's error, once there is one (see `durability`).
    pub fn failure(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.committer.failure()
    }

    pub async fn commit(&self) -> Result<()> {
        self.committer.commit().await
    }

    // ---- users ----

    pub fn user(&self, id: &str) -> Result<Option<UserRecord>> {
        Ok(self
            .stored_user(id)?
            .map(|stored| self.with_device_use(UserRecord::clone(&stored))))
    }

    /// A user's record as stored, shared with the cache instead of copied: verification reads one on
    /// every request, and a copy of a record with its backup-code hashes cost 4% of the daemon's CPU.
    /// Its devices' use is not filled in: `device_use` reads it (the journal holds it, see
    /// `encode_user`).
    pub fn stored_user(&self, id: &str) -> Result<Option<Arc<UserRecord>>> {
        self.users_cache.read_through_found(id, || {
            self.users
                .get(id.as_bytes())?
                .map(|bytes| decode::<UserRecord>(&bytes).map(Arc::new))
                .transpose()
        })
    }

    /// A device's last use (replay protection's last step among it), as the journal has it.
    pub fn device_use(&self, user_id: &str, device_id: &str) -> DeviceUse {
        self.journal().device_use(user_id, device_id)
    }

    /// A stored user record with its devices' use filled in from the journal.
    fn decode_user(&self, bytes: &[u8]) -> Result<UserRecord> {
        Ok(self.with_device_use(decode(bytes)?))
    }

    fn with_device_use(&self, mut user: UserRecord) -> UserRecord {
        self.journal().with_user_devices(&user.id, |uses| {
            for device in &mut user.devices {
                let used = uses
                    .iter()
                    .find(|(id, _)| *id == device.id)
                    .map(|(_, u)| *u)
                    .unwrap_or_default();
                set_device_use(device, used);
            }
        });
        user
    }

    /// Encodes a user for sled without its devices' use: the journal holds that, so there is one place
    /// that says which steps were used (see `user_written`).
    fn encode_user(user: &UserRecord) -> Result<Vec<u8>> {
        let mut cold = user.clone();
        for device in &mut cold.devices {
            set_device_use(device, DeviceUse::default());
        }
        encode(&cold)
    }

    /// After a user record was written: the cache drops it (see `cache`), its devices' use goes to the
    /// journal, and deleted devices are forgotten. Every write of a user record calls this.
    fn user_written(&self, user: &UserRecord) {
        self.users_cache.written(&user.id);
        let journal = self.journal();
        journal.retain_devices(&user.id, |id| user.device(id).is_some());
        for device in &user.devices {
            journal.record_device_use(&user.id, &device.id, device_use_of(device));
        }
    }

    /// Records that a device was just used (the hot path of verification: no user record is rewritten).
    /// Replay protection only moves forward (see `DeviceUse::merge`). Durable after the next commit.
    pub fn record_device_use(&self, user_id: &str, device_id: &str, used: DeviceUse) {
        self.journal().record_device_use(user_id, device_id, used);
    }

    /// By username or UPN, case-insensitively.
    pub fn find_user(&self, name: &str) -> Result<Option<UserRecord>> {
        match self.user_id(name)? {
            Some(id) => self.user(&id),
            None => Ok(None),
        }
    }

    /// The id of the user with this username or UPN. A cached record that holds the name answers
    /// without a sled read: the record and the name index change in one transaction, and a changed
    /// record leaves the cache.
    pub fn user_id(&self, name: &str) -> Result<Option<String>> {
        let lower = name.to_lowercase();
        if let Some(id) = self.name_hints.get(&lower) {
            if self
                .users_cache
                .cached(&id)
                .is_some_and(|user| holds_name(&user, &lower))
            {
                return Ok(Some(id));
            }
        }
        let id = self
            .names
            .get(lower.as_bytes())?
            .map(|id| String::from_utf8_lossy(&id).into_owned());
        if let Some(id) = &id {
            self.name_hints.remember(lower, id.clone());
        }
        Ok(id)
    }

    /// Adds a user; fails with `Conflict` if its username or UPN is taken.
    pub fn insert_user(&self, user: &UserRecord) -> Result<()> {
        self.replace_user(None, user)
    }

    /// Replaces a user's record. When `old` is given, names it had and `user` lacks are released and new
    /// names are claimed, all in one transaction; a name held by another user fails with `Conflict`.
    pub fn replace_user(&self, old: Option<&UserRecord>, user: &UserRecord) -> Result<()> {
        let value = Store::encode_user(user)?;
        let old_names = old.map(user_names).unwrap_or_default();
        let new_names = user_names(user);
        let guid = user.directory.as_ref().map(guid_key);
        let result = Tree::transaction3(
            (&self.users, &self.names, &self.guids),
            |(users, index, guids)| {
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
            },
        );
        self.users_cache.written(&user.id);
        match result {
            Ok(()) => {
                self.user_written(user);
                Ok(())
            }
            Err(TransactionError::Abort(message)) => Err(Error::Conflict(message)),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    /// Adds many users in one transaction: a directory sync's new users, a page at a time, at the cost of
    /// one write instead of one per user. A user whose username or UPN is taken, by a stored user or by
    /// one earlier in `users`, is left out: its place in the answer holds the `Conflict` message, the
    /// others' hold `None`.
    pub fn insert_users(&self, users: &[UserRecord]) -> Result<Vec<Option<String>>> {
        let prepared: Vec<(Vec<String>, Option<String>, Vec<u8>)> = users
            .iter()
            .map(|user| {
                Ok((
                    user_names(user),
                    user.directory.as_ref().map(guid_key),
                    Store::encode_user(user)?,
                ))
            })
            .collect::<Result<_>>()?;
        let outcome = Tree::transaction3(
            (&self.users, &self.names, &self.guids),
            |(records, index, guids)| {
                let mut outcome = Vec::with_capacity(users.len());
                for (user, (names, guid, value)) in users.iter().zip(&prepared) {
                    let mut taken = None;
                    for name in names {
                        if let Some(holder) = index.get(name.as_bytes())? {
                            if holder.as_ref() != user.id.as_bytes() {
                                taken = Some(format!("{name} is already taken"));
                                break;
                            }
                        }
                    }
                    if taken.is_none() {
                        for name in names {
                            index.insert(name.as_bytes(), user.id.as_bytes())?;
                        }
                        if let Some(guid) = guid {
                            guids.insert(guid.as_bytes(), user.id.as_bytes())?;
                        }
                        records.insert(user.id.as_bytes(), value.as_slice())?;
                    }
                    outcome.push(taken);
                }
                Ok::<_, ConflictableTransactionError<()>>(outcome)
            },
        )
        .map_err(|e| {
            Error::Store(StoreError::Transaction {
                what: "insert users",
                detail: format!("{e:?}"),
            })
        })?;
        for (user, taken) in users.iter().zip(&outcome) {
            if taken.is_none() {
                self.user_written(user);
            }
        }
        Ok(outcome)
    }

    /// Replaces a user's record whose names did not change.
    pub fn put_user(&self, user: &UserRecord) -> Result<()> {
        self.users
            .insert(user.id.as_bytes(), Store::encode_user(user)?)?;
        self.user_written(user);
        Ok(())
    }

    pub fn delete_user(&self, user: &UserRecord) -> Result<()> {
        let names = user_names(user);
        let guid = user.directory.as_ref().map(guid_key);
        let result = Tree::transaction3(
            (&self.users, &self.names, &self.guids),
            |(users, index, guids)| {
                for name in &names {
                    index.remove(name.as_bytes())?;
                }
                if let Some(guid) = &guid {
                    guids.remove(guid.as_bytes())?;
                }
                users.remove(user.id.as_bytes())?;
                Ok::<_, ConflictableTransactionError<()>>(())
            },
        );
        self.users_cache.written(&user.id);
        result.map_err(|e| {
            Error::Store(StoreError::Transaction {
                what: "delete user",
                detail: format!("{e:?}"),
            })
        })?;
        self.journal().retain_devices(&user.id, |_| false);
        self.meta.remove(known_addresses_key(&user.id).as_bytes())?;
        Ok(())
    }

    /// The user synced from `domain` with this objectGUID.
    pub fn user_by_guid(&self, domain: &str, guid: &str) -> Result<Option<UserRecord>> {
        match self.guids.get(format!("{domain}/{guid}").as_bytes())? {
            Some(id) => self
                .users
                .get(&id)?
                .map(|v| self.decode_user(&v))
                .transpose(),
            None => Ok(None),
        }
    }

    /// The id of the user synced from `domain` with this objectGUID, without reading the record.
    pub fn user_id_by_guid(&self, domain: &str, guid: &str) -> Result<Option<String>> {
        Ok(self
            .guids
            .get(format!("{domain}/{guid}").as_bytes())?
            .map(|id| String::from_utf8_lossy(&id).into_owned()))
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

    /// Ids of the users of `domain` marked removed at or before `cutoff`. Only the directory link of each
    /// record is decoded: the purge after every sync asks this of every user, and decoding 100,000
    /// records whole took seconds of an incremental sync.
    pub fn removed_before(&self, domain: &str, cutoff: i64) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Link<'a> {
            #[serde(borrow)]
            domain: std::borrow::Cow<'a, str>,
            #[serde(default)]
            removed_at: Option<i64>,
        }
        #[derive(serde::Deserialize)]
        struct Removal<'a> {
            #[serde(borrow, default)]
            directory: Option<Link<'a>>,
        }
        let mut ids = Vec::new();
        for item in self.users.iter() {
            let (id, value) = item?;
            let removal: Removal = serde_json::from_slice(&value)?;
            if removal.directory.is_some_and(|link| {
                link.domain == domain && link.removed_at.is_some_and(|at| at <= cutoff)
            }) {
                ids.push(String::from_utf8_lossy(&id).into_owned());
            }
        }
        Ok(ids)
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

    /// The addresses a user recently succeeded from (see `lockout::KnownAddresses`). Only where the
    /// site trusts known addresses: read at each success (one sled read) and for a user who must wait
    /// or is locked, written at most once a day per address.
    pub fn known_addresses(&self, user_id: &str) -> Result<KnownAddresses> {
        Ok(self
            .meta(&known_addresses_key(user_id))?
            .unwrap_or_default())
    }

    pub fn put_known_addresses(&self, user_id: &str, known: &KnownAddresses) -> Result<()> {
        self.set_meta(&known_addresses_key(user_id), known)
    }

    /// The live policies, once the first start has stored them.
    pub fn live_policy(&self) -> Result<Option<LivePolicy>> {
        self.meta(LIVE_POLICY_KEY)
    }

    /// Replaces the live policies; durable once `commit()` returns.
    pub fn put_live_policy(&self, policy: &LivePolicy) -> Result<()> {
        self.set_meta(LIVE_POLICY_KEY, policy)
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
            let user = self.decode_user(&v)?;
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
        Ok(self.journal().counter(key))
    }

    /// Atomically replaces a counter with `f(current)`; returns the new value.
    pub fn update_failure_count(
        &self,
        key: &str,
        f: impl FnOnce(FailureCount) -> FailureCount,
    ) -> Result<FailureCount> {
        Ok(self.journal().update_counter(key, f))
    }

    pub fn clear_failure_count(&self, key: &str) -> Result<bool> {
        let mut cleared = false;
        self.journal().update_counter(key, |c| {
            cleared = c != FailureCount::default();
            FailureCount::default()
        });
        Ok(cleared)
    }

    // ---- API keys ----

    pub fn insert_api_key(&self, hash: &str, record: &ApiKeyRecord) -> Result<()> {
        if self.api_keys()?.iter().any(|(_, r)| r.name == record.name) {
            return Err(Error::Conflict(format!(
                "an API key named {} exists",
                record.name
            )));
        }
        let value = encode(record)?;
        self.api_keys_cache
            .write(hash, || self.api_keys.insert(hash.as_bytes(), value))?;
        Ok(())
    }

    /// A known key's record, from memory after its first use. Unknown keys are not remembered: each
    /// costs a sled read, and guessing cannot fill the memory.
    pub fn api_key(&self, hash: &str) -> Result<Option<ApiKeyRecord>> {
        self.api_keys_cache.read_through_found(hash, || {
            self.api_keys
                .get(hash.as_bytes())?
                .map(|v| decode(&v))
                .transpose()
        })
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

    /// Gives the key named `name` new powers; `None` when there is no such key.
    pub fn set_api_key_access(
        &self,
        name: &str,
        access: twofold_wire::admin::ApiKeyAccess,
    ) -> Result<Option<ApiKeyRecord>> {
        for (hash, mut record) in self.api_keys()? {
            if record.name == name {
                record.access = Some(access);
                let value = encode(&record)?;
                self.api_keys_cache
                    .write(&hash, || self.api_keys.insert(hash.as_bytes(), value))?;
                return Ok(Some(record));
            }
        }
        Ok(None)
    }

    pub fn remove_api_key(&self, name: &str) -> Result<bool> {
        for (hash, record) in self.api_keys()? {
            if record.name == name {
                self.api_keys_cache
                    .write(&hash, || self.api_keys.remove(hash.as_bytes()))?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    // ---- audit ----

    /// Appends an event (its `id` is assigned here) and returns the id.
    pub fn append_audit(&self, entry: &AuditEntry<'_>) -> u64 {
        self.journal().append_audit_entry(entry)
    }

    /// The newest `limit` events, oldest first.
    pub fn audit_tail(&self, limit: usize) -> Result<Vec<AuditEvent>> {
        self.journal().audit_newest(limit, None, |_| true)
    }

    /// The newest `limit` events older than `before` (all if `None`) that `keep` accepts, oldest first.
    pub fn audit_newest_matching(
        &self,
        limit: usize,
        before: Option<u64>,
        keep: impl Fn(&AuditEvent) -> bool,
    ) -> Result<Vec<AuditEvent>> {
        self.journal().audit_newest(limit, before, keep)
    }
}

fn device_use_of(device: &records::DeviceRecord) -> DeviceUse {
    DeviceUse {
        last_step: device.totp.as_ref().and_then(|t| t.last_step),
        drift: device.totp.as_ref().map_or(0, |t| t.drift),
        last_used: device.last_used,
    }
}

fn set_device_use(device: &mut records::DeviceRecord, used: DeviceUse) {
    device.last_used = used.last_used;
    if let Some(totp) = &mut device.totp {
        totp.last_step = used.last_step;
        totp.drift = used.drift;
    }
}

fn guid_key(link: &records::DirectoryLink) -> String {
    format!("{}/{}", link.domain, link.guid)
}

/// Whether `lower` (a lowercased name) is one of `user_names(user)`, without building them.
pub fn holds_name(user: &UserRecord, lower: &str) -> bool {
    let is = |name: &str| {
        if name.is_ascii() {
            name.eq_ignore_ascii_case(lower)
        } else {
            name.to_lowercase() == lower
        }
    };
    is(&user.username) || user.upn.as_deref().is_some_and(is)
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

    #[test]
    fn a_reopen_waits_for_a_lock_that_is_let_go_of_shortly() -> Result<()> {
        let dir = temp_dir("relock");
        let first = Store::open(&dir)?;
        let closing = std::thread::spawn(move || {
            #[allow(clippy::disallowed_methods)] // stands in for sled's threads finishing late
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(first);
        });
        let second = Store::open(&dir);
        let _ = closing.join();
        assert!(second.is_ok(), "{:?}", second.err());
        drop(second);
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

    /// A store with one user, alice (u1), and her TOTP device d1.
    fn write_store_with_alice(dir: &Path) -> Result<()> {
        let store = Store::open(dir)?;
        let user: UserRecord = serde_json::from_value(serde_json::json!({
            "id": "u1", "username": "alice", "upn": null, "display_name": null, "email": null,
            "mobile": null, "voice": null, "groups": [], "enabled": true, "source": "local",
            "enrollment_required": false, "created": 10,
            "devices": [{
                "id": "d1", "kind": "totp", "label": "phone", "status": "active", "created": 11,
                "last_used": null, "destination": null,
                "totp": {"params": {"algorithm": "SHA1", "digits": 6, "period": 30},
                         "sealed_secret": "AAAA", "last_step": null, "drift": 0}
            }],
            "backup_codes": null
        }))?;
        store.insert_user(&user)?;
        store.db.flush()?;
        Ok(())
    }

    #[tokio::test]
    async fn a_read_after_a_write_sees_the_write_through_the_cache() -> Result<()> {
        let dir = temp_dir("cache");
        write_store_with_alice(&dir)?;
        let store = Store::open(&dir)?;
        let mut user = store.user("u1")?.ok_or(Error::NotFound { what: "user" })?;
        assert_eq!(
            store.user("u1")?.as_ref(),
            Some(&user),
            "read twice, same record"
        );
        user.devices[0].status = twofold_wire::DeviceStatus::Blocked;
        store.put_user(&user)?;
        assert_eq!(
            store.user("u1")?.as_ref(),
            Some(&user),
            "the block is seen at once"
        );
        user.devices.clear();
        store.replace_user(None, &user)?;
        assert_eq!(store.user("u1")?.map(|u| u.devices.len()), Some(0));
        store.delete_user(&user)?;
        assert_eq!(store.user("u1")?, None);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[tokio::test]
    async fn usernames_and_upns_are_unique_case_insensitively() -> Result<()> {
        let dir = temp_dir("names");
        let store = Store::open(&dir)?;
        let user = |id: &str, name: &str, upn: Option<&str>| UserRecord {
            upn: upn.map(Into::into),
            ..UserRecord::new_local(id, name, 0)
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

    #[tokio::test]
    async fn a_name_follows_renames_and_new_owners_through_the_cache() -> Result<()> {
        let dir = temp_dir("renames");
        let store = Store::open(&dir)?;
        let ann = UserRecord {
            upn: Some("ann@corp.example".into()),
            ..UserRecord::new_local("u1", "ann", 0)
        };
        store.insert_user(&ann)?;
        // Read twice: the second answer comes from the cached record.
        for _ in 0..2 {
            assert_eq!(store.user_id("ANN")?.as_deref(), Some("u1"));
            assert_eq!(
                store.stored_user("u1")?.map(|u| u.id.clone()).as_deref(),
                Some("u1")
            );
            assert_eq!(store.user_id("Ann@Corp.Example")?.as_deref(), Some("u1"));
        }
        let renamed = UserRecord {
            username: "anna".into(),
            upn: None,
            ..ann.clone()
        };
        store.replace_user(Some(&ann), &renamed)?;
        // The renamed record back in the cache, where the old names' hints lead.
        assert!(store.stored_user("u1")?.is_some());
        assert_eq!(store.user_id("ann")?, None, "the old name is free");
        assert_eq!(
            store.user_id("ann@corp.example")?,
            None,
            "so is the old UPN"
        );
        assert_eq!(store.user_id("anna")?.as_deref(), Some("u1"));
        store.insert_user(&UserRecord::new_local("u2", "ANN", 0))?;
        for _ in 0..2 {
            assert_eq!(
                store.user_id("ann")?.as_deref(),
                Some("u2"),
                "the old name now leads to its new owner"
            );
            let _ = store.stored_user("u2")?;
        }
        store.delete_user(&store.user("u2")?.ok_or(Error::NotFound { what: "user" })?)?;
        assert_eq!(
            store.user_id("ann")?,
            None,
            "a deleted user's name leads nowhere"
        );
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[tokio::test]
    async fn the_remembered_login_count_follows_every_change_of_the_restore_record() -> Result<()> {
        let dir = temp_dir("logins");
        let store = Store::open(&dir)?;
        let count = |logins, activated| restore::LoginCount { activated, logins };
        assert_eq!(store.login_count("u1")?, count(0, false));
        for expected in 1..=3 {
            store.update_restore_record("u1", |r| r.logins += 1)?;
            // Read twice: from sled, then from memory.
            assert_eq!(store.login_count("u1")?, count(expected, false));
            assert_eq!(store.login_count("u1")?, count(expected, false));
        }
        store.update_restore_record("u1", |r| r.activated_at = Some(5))?;
        assert_eq!(store.login_count("u1")?, count(3, true));
        assert_eq!(store.login_count("u2")?, count(0, false), "per user");
        store.remove_restore_record("u1")?;
        assert_eq!(store.login_count("u1")?, count(0, false));
        store.commit().await?;
        drop(store);
        let store = Store::open(&dir)?;
        assert_eq!(
            store.login_count("u1")?,
            count(0, false),
            "after a reopen too"
        );
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[tokio::test]
    async fn a_batch_of_users_is_added_together_except_those_whose_names_are_taken() -> Result<()> {
        let dir = temp_dir("batch");
        let store = Store::open(&dir)?;
        let user = |id: &str, name: &str, guid: &str| UserRecord {
            upn: Some(format!("{name}@corp.example")),
            source: "ad:corp".into(),
            directory: Some(records::DirectoryLink {
                domain: "corp".into(),
                guid: guid.into(),
                dn: format!("CN={name},DC=corp"),
                account_disabled: false,
                ..records::DirectoryLink::default()
            }),
            ..UserRecord::new_local(id, name, 0)
        };
        store.insert_user(&user("u0", "taken", "g0"))?;
        let outcome = store.insert_users(&[
            user("u1", "ann", "g1"),
            user("u2", "Taken", "g2"),
            user("u3", "bob", "g3"),
            user("u4", "BOB", "g4"),
        ])?;
        assert_eq!(outcome[0], None);
        assert!(outcome[1].as_deref().is_some_and(|m| m.contains("taken")));
        assert_eq!(outcome[2], None);
        assert!(
            outcome[3].is_some(),
            "a name claimed earlier in the same batch is taken too"
        );
        assert_eq!(store.find_user("ANN")?.map(|u| u.id), Some("u1".into()));
        assert_eq!(
            store.find_user("bob@corp.example")?.map(|u| u.id),
            Some("u3".into())
        );
        assert_eq!(store.user_id_by_guid("corp", "g3")?, Some("u3".into()));
        assert_eq!(store.user_id_by_guid("corp", "g2")?, None);
        assert!(store.user("u2")?.is_none() && store.user("u4")?.is_none());
        assert_eq!(store.count_users(), 3);

        let mut removed = user("u1", "ann", "g1");
        if let Some(link) = removed.directory.as_mut() {
            link.removed_at = Some(100);
        }
        store.put_user(&removed)?;
        assert_eq!(store.removed_before("corp", 100)?, vec!["u1".to_owned()]);
        assert!(store.removed_before("corp", 99)?.is_empty());
        assert!(store.removed_before("other", 100)?.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
