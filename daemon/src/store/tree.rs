//! A sled tree that notes its writes, so that the group commit syncs sled only when sled was written
//! (see `durability`): a verification writes only the journal and should not pay for sled's fsync.
//! Every write of the store goes through these methods, so none can be missed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::{IVec, Transactional};

#[derive(Clone)]
pub(super) struct Tree {
    inner: sled::Tree,
    writes: Arc<AtomicU64>,
}

impl Tree {
    pub fn new(inner: sled::Tree, writes: Arc<AtomicU64>) -> Tree {
        Tree { inner, writes }
    }

    /// Counted after the write, so a commit that sees the count finds the write in sled's log.
    fn wrote<T>(&self, result: T) -> T {
        self.writes.fetch_add(1, Ordering::Release);
        result
    }

    pub fn get(&self, key: impl AsRef<[u8]>) -> sled::Result<Option<IVec>> {
        self.inner.get(key)
    }

    pub fn contains_key(&self, key: impl AsRef<[u8]>) -> sled::Result<bool> {
        self.inner.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.inner.len()
    }

    pub fn iter(&self) -> sled::Iter {
        self.inner.iter()
    }

    pub fn range<K: AsRef<[u8]>, R: std::ops::RangeBounds<K>>(&self, range: R) -> sled::Iter {
        self.inner.range(range)
    }

    pub fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> sled::Iter {
        self.inner.scan_prefix(prefix)
    }

    pub fn insert(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<IVec>,
    ) -> sled::Result<Option<IVec>> {
        self.wrote(self.inner.insert(key, value))
    }

    pub fn remove(&self, key: impl AsRef<[u8]>) -> sled::Result<Option<IVec>> {
        self.wrote(self.inner.remove(key))
    }

    pub fn update_and_fetch<V: Into<IVec>>(
        &self,
        key: impl AsRef<[u8]>,
        f: impl FnMut(Option<&[u8]>) -> Option<V>,
    ) -> sled::Result<Option<IVec>> {
        self.wrote(self.inner.update_and_fetch(key, f))
    }

    pub fn compare_and_swap<V1: AsRef<[u8]>, V2: Into<IVec>>(
        &self,
        key: impl AsRef<[u8]>,
        old: Option<V1>,
        new: Option<V2>,
    ) -> sled::Result<Result<(), sled::CompareAndSwapError>> {
        self.wrote(self.inner.compare_and_swap(key, old, new))
    }

    /// One transaction over three trees (a user record with its name and GUID indexes).
    pub fn transaction3<A, E>(
        trees: (&Tree, &Tree, &Tree),
        f: impl Fn(
            &(TransactionalTree, TransactionalTree, TransactionalTree),
        ) -> Result<A, ConflictableTransactionError<E>>,
    ) -> Result<A, TransactionError<E>> {
        let (a, b, c) = trees;
        a.wrote((&a.inner, &b.inner, &c.inner).transaction(f))
    }
}
