//! Decoded records kept in memory, so that a verification does not read and parse its user's whole
//! JSON record (all devices, backup-code hashes) or restore record on every request.
//!
//! A cache holds records as sled has them; a write drops the record's entry after the write, and a
//! record read from sled is kept only if no record was written while it was being read (the generation
//! did not move). So a reader never sees an older record than sled's: a blocked or deleted device is
//! refused from the next request on.
//!
//! `NameHints` remembers which user id a name (lowercased username or UPN) led to, as a hint only: the
//! store trusts it when the cached user record still holds that name, and asks sled otherwise.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// Enough for every user who signs in during a busy hour; when full a cache starts over.
const MAX_RECORDS: usize = 16_384;

pub(super) struct RecordCache<V> {
    inner: Mutex<Inner<V>>,
}

struct Inner<V> {
    generation: u64,
    records: HashMap<String, V>,
}

impl<V> Default for RecordCache<V> {
    fn default() -> Self {
        RecordCache {
            inner: Mutex::new(Inner {
                generation: 0,
                records: HashMap::new(),
            }),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<V: Clone> RecordCache<V> {
    /// The cached record, or the generation to hand to `keep` after reading it from sled.
    pub fn get(&self, id: &str) -> Result<V, u64> {
        let inner = lock(&self.inner);
        inner.records.get(id).cloned().ok_or(inner.generation)
    }

    /// Keeps a record read from sled, unless a record was written since `generation`.
    pub fn keep(&self, id: &str, record: V, generation: u64) {
        let mut inner = lock(&self.inner);
        if inner.generation != generation {
            return;
        }
        if inner.records.len() >= MAX_RECORDS {
            inner.records.clear();
        }
        inner.records.insert(id.to_owned(), record);
    }

    /// Called after a record was written or deleted.
    pub fn written(&self, id: &str) {
        let mut inner = lock(&self.inner);
        inner.generation += 1;
        inner.records.remove(id);
    }
}

/// Lowercased name -> user id, as last read from sled's name index.
#[derive(Default)]
pub(super) struct NameHints {
    names: Mutex<HashMap<String, String>>,
}

impl NameHints {
    /// The id a name led to before; it may no longer hold that name.
    pub fn get(&self, name: &str) -> Option<String> {
        lock(&self.names).get(name).cloned()
    }

    /// Remembers that sled's name index led `name` to `id`.
    pub fn remember(&self, name: String, id: String) {
        let mut names = lock(&self.names);
        if names.len() >= MAX_RECORDS {
            names.clear();
        }
        names.insert(name, id);
    }
}
