//! Group commit: many callers, one fsync.
//!
//! A caller writes, then asks for a commit and waits. A dedicated thread collects every waiting caller,
//! makes the store durable once, and answers them all. Anyone who asked while a commit was running waits
//! for the next one, which starts right after: their writes may have missed the running one. So each
//! caller's writes are on disk before its answer, and under load one fsync serves dozens of requests:
//! while commits keep finding company, each waits `COMMIT_WINDOW` for more before it syncs.
//!
//! Durable means `fdatasync`: the journal (see `journal`) always, sled's data file only when sled was
//! written since its last sync (sled 0.34's `flush` ends in `sync_file_range`, which survives a killed
//! process but not a power loss on a disk with a write-back cache). A verification writes only the
//! journal, so it costs one `fdatasync` shared by its batch.
//!
//! A failed commit (a full disk, an I/O error) is final for this process: after a failed `fdatasync`
//! Linux may have dropped the dirty pages and report the next one as a success, and sled 0.34 keeps its
//! write error anyway. Memory may then hold writes the disk does not, so the store refuses every later
//! commit, `failure()` tells the daemon, and the daemon exits for its supervisor to restart it from
//! what is on disk, which is everything any answer promised.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use super::journal::Journal;
use crate::error::{Error, Result, StoreError};

/// How long a commit waits for more callers once the previous commit served more than one. Under load an
/// `fdatasync` costs about 40 µs of CPU and a wake-up of this thread; batches sized only by the time one
/// `fdatasync` takes held 5-6 verifications at 21,000/s (3,760 syncs a second). Waiting 250 µs, as
/// PostgreSQL's `commit_delay` does, cuts that to a third. A lone caller (idle daemon) is never delayed.
const COMMIT_WINDOW: Duration = Duration::from_micros(250);

/// What a commit makes durable.
pub(super) struct Durable {
    pub db: sled::Db,
    /// sled's data file.
    pub db_file: std::fs::File,
    pub journal: Journal,
    /// Counts sled writes (see `tree`).
    sled_writes: Arc<AtomicU64>,
    /// The value of `sled_writes` that the last sled sync covered.
    sled_synced: AtomicU64,
}

impl Durable {
    pub fn new(
        db: sled::Db,
        sled_writes: Arc<AtomicU64>,
        db_file: std::fs::File,
        journal: Journal,
    ) -> Durable {
        Durable {
            db,
            db_file,
            journal,
            sled_writes,
            sled_synced: AtomicU64::new(0),
        }
    }

    fn sync(&self) -> Result<(), String> {
        // Read before flushing: a write counted here is in sled's log before the flush starts.
        let sled_writes = self.sled_writes.load(Ordering::Acquire);
        self.journal.sync().map_err(|e| e.to_string())?;
        if sled_writes != self.sled_synced.load(Ordering::Relaxed) {
            self.db.flush().map_err(|e| e.to_string())?;
            self.db_file
                .sync_data()
                .map_err(|e| format!("fdatasync: {e}"))?;
            self.sled_synced.store(sled_writes, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// A caller waiting for its writes to be durable. It brings the store along, so that the commit thread
/// holds no handle of its own while idle: dropping the store closes the database.
type Waiter = (oneshot::Sender<Result<(), String>>, Arc<Durable>);

#[derive(Clone)]
pub struct Committer {
    requests: mpsc::Sender<Waiter>,
    durable: Arc<Durable>,
    /// The first failed commit's error; `None` while commits succeed.
    failure: watch::Receiver<Option<String>>,
}

impl Committer {
    /// Starts the commit thread; it ends when the last `Committer` is dropped.
    pub(super) fn start(durable: Arc<Durable>) -> Result<Committer> {
        let (requests, incoming) = mpsc::channel::<Waiter>();
        let (failed, failure) = watch::channel(None);
        std::thread::Builder::new()
            .name("store-commit".into())
            .spawn(move || {
                let mut batch = Vec::new();
                // Callers the previous commit served: more than one means load, worth a window.
                let mut last_batch = 0usize;
                while let Ok(first) = incoming.recv() {
                    let durable = first.1.clone();
                    batch.push(first);
                    if last_batch > 1 {
                        // Not woken by senders (they only wake a thread blocked in `recv`), so the
                        // callers arriving meanwhile cost no context switch each.
                        std::thread::park_timeout(COMMIT_WINDOW);
                    }
                    while let Ok(more) = incoming.try_recv() {
                        batch.push(more);
                    }
                    last_batch = batch.len();
                    let outcome = match failed.borrow().clone() {
                        Some(earlier) => Err(earlier),
                        None => durable.sync(),
                    };
                    if let Err(e) = &outcome {
                        if failed.borrow().is_none() {
                            tracing::error!(error = %e, "store commit failed: the store refuses all further writes");
                            failed.send_replace(Some(e.clone()));
                        }
                    }
                    // Drop the batch's store handles before answering: a caller that closes the store
                    // after its commit must not find the database still held open by this thread.
                    drop(durable);
                    let waiters: Vec<_> = batch.drain(..).map(|(waiter, _)| waiter).collect();
                    for waiter in waiters {
                        let _ = waiter.send(outcome.clone());
                    }
                }
            })
            .map_err(|e| Error::Store(StoreError::CommitThreadStart(e)))?;
        Ok(Committer {
            requests,
            durable,
            failure,
        })
    }

    /// The first failed commit's error, once there is one.
    pub fn failure(&self) -> watch::Receiver<Option<String>> {
        self.failure.clone()
    }

    pub async fn commit(&self) -> Result<()> {
        if let Some(e) = self.failure.borrow().clone() {
            return Err(Error::StoreFailed(e));
        }
        let (tx, rx) = oneshot::channel();
        self.requests
            .send((tx, self.durable.clone()))
            .map_err(|_| Error::Store(StoreError::CommitThreadStopped))?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::StoreFailed(e)),
            Err(_) => Err(Error::Store(StoreError::CommitThreadStopped)),
        }
    }
}
