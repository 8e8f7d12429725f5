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

use crate::error::Result;

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
    /// The cached record, without reading sled when there is none.
    pub fn cached(&self, id: &str) -> Option<V> {
        lock(&self.inner).records.get(id).cloned()
    }

    /// The cached record, else what `read` finds in sled, kept for next time.
    pub fn read_through(&self, id: &str, read: impl FnOnce() -> Result<V>) -> Result<V> {
        match self.lookup(id) {
            Ok(record) => Ok(record),
            Err(generation) => {
                let record = read()?;
                self.keep(id, record.clone(), generation);
                Ok(record)
            }
        }
    }

    /// As `read_through`, for records that may be missing: a missing one is not kept, so that
    /// looking up made-up ids (guessed API keys) cannot fill the memory.
    pub fn read_through_found(
        &self,
        id: &str,
        read: impl FnOnce() -> Result<Option<V>>,
    ) -> Result<Option<V>> {
        match self.lookup(id) {
            Ok(record) => Ok(Some(record)),
            Err(generation) => {
                let found = read()?;
                if let Some(record) = &found {
                    self.keep(id, record.clone(), generation);
                }
                Ok(found)
            }
        }
    }

    /// The cached record, or the generation to hand to `keep` after reading it from sled.
    fn lookup(&self, id: &str) -> std::result::Result<V, u64> {
        let inner = lock(&self.inner);
        inner.records.get(id).cloned().ok_or(inner.generation)
    }

    /// Keeps a record read from sled, unless a record was written since `generation`.
    fn keep(&self, id: &str, record: V, generation: u64) {
        let mut inner = lock(&self.inner);
        if inner.generation != generation {
            return;
        }
        if inner.records.len() >= MAX_RECORDS {
            inner.records.clear();
        }
        inner.records.insert(id.to_owned(), record);
    }

    /// Runs `write` (a sled write of the record `id`), then drops the record from the cache, whether
    /// the write succeeded or not.
    pub fn write<T>(&self, id: &str, write: impl FnOnce() -> T) -> T {
        let written = write();
        self.written(id);
        written
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
