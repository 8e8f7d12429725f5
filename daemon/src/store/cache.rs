//! Decoded user records, kept so that a verification does not parse its user's whole JSON record (all
//! devices, backup-code hashes) on every request.
//!
//! The cache holds records as sled has them; a write to a user drops its entry after the write, and a
//! record read from sled is kept only if no user was written while it was being read (the generation
//! did not move). So a reader never sees an older record than sled's: a blocked or deleted device is
//! refused from the next request on.
//!
//! It also remembers which id a name (lowercased username or UPN) led to, as a hint only: the store
//! trusts it when the cached record still holds that name, and asks sled otherwise.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::records::UserRecord;

/// Enough for every user who signs in during a busy hour; when full the cache starts over.
const MAX_USERS: usize = 16_384;

#[derive(Default)]
pub(super) struct UserCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    generation: u64,
    users: HashMap<String, Arc<UserRecord>>,
    /// Lowercased name -> user id, as last read from sled's name index.
    names: HashMap<String, String>,
}

impl UserCache {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cached record, or the generation to hand to `keep` after reading it from sled.
    pub fn get(&self, id: &str) -> Result<Arc<UserRecord>, u64> {
        let inner = self.lock();
        inner.users.get(id).cloned().ok_or(inner.generation)
    }

    /// Keeps a record read from sled, unless a user was written since `generation`.
    pub fn keep(&self, record: Arc<UserRecord>, generation: u64) {
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        if inner.users.len() >= MAX_USERS {
            inner.users.clear();
        }
        inner.users.insert(record.id.clone(), record);
    }

    /// The cached record a name led to before, if it is still cached; it may no longer hold that name.
    pub fn named(&self, name: &str) -> Option<Arc<UserRecord>> {
        let inner = self.lock();
        inner
            .names
            .get(name)
            .and_then(|id| inner.users.get(id))
            .cloned()
    }

    /// Remembers that sled's name index led `name` to `id`.
    pub fn remember_name(&self, name: String, id: String) {
        let mut inner = self.lock();
        if inner.names.len() >= MAX_USERS {
            inner.names.clear();
        }
        inner.names.insert(name, id);
    }

    /// Called after a user's record was written or deleted.
    pub fn written(&self, id: &str) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.users.remove(id);
    }
}
