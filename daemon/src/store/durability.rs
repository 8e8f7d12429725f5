//! Group commit: many callers, one fsync.
//!
//! A caller writes, then asks for a commit and waits. One task collects every waiting caller, flushes the
//! store once on a blocking thread, and answers them all. Anyone who asked while a flush was running waits
//! for the next one, which starts right after: their writes may have missed the running flush. So each
//! caller's writes are on disk before its answer, and under load one fsync serves dozens of requests.

use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};

/// A caller waiting for its writes to be durable. It brings the database along, so that the commit task
/// holds no handle of its own while idle: dropping the store closes the database.
type Waiter = (oneshot::Sender<Result<(), String>>, sled::Db);

#[derive(Clone)]
pub struct Committer {
    requests: mpsc::UnboundedSender<Waiter>,
    db: sled::Db,
}

impl Committer {
    /// `log` is sled's data file: sled 0.34's `flush` ends in `sync_file_range`, which survives a killed
    /// process but not a power loss on a disk with a write-back cache, so each batch also `fdatasync`s it.
    pub fn start(db: sled::Db, log: std::fs::File) -> Committer {
        let log = std::sync::Arc::new(log);
        let (requests, mut incoming) = mpsc::unbounded_channel::<Waiter>();
        tokio::spawn(async move {
            let mut batch = Vec::new();
            while let Some(first) = incoming.recv().await {
                let db = first.1.clone();
                batch.push(first);
                while let Ok(more) = incoming.try_recv() {
                    batch.push(more);
                }
                let log = log.clone();
                let flush = move || -> Result<(), String> {
                    db.flush().map_err(|e| e.to_string())?;
                    log.sync_data().map_err(|e| format!("fdatasync: {e}"))
                };
                let outcome = match tokio::task::spawn_blocking(flush).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(format!("flush task: {e}")),
                };
                if let Err(e) = &outcome {
                    tracing::error!(error = %e, "store flush failed");
                }
                // Drop the batch's database handles before answering: a caller that closes the store
                // after its commit must not find the database still held open by this task.
                let waiters: Vec<_> = batch.drain(..).map(|(waiter, _db)| waiter).collect();
                for waiter in waiters {
                    let _ = waiter.send(outcome.clone());
                }
            }
        });
        Committer { requests, db }
    }

    pub async fn commit(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send((tx, self.db.clone()))
            .map_err(|_| Error::Store("the commit task has stopped".into()))?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::Store(format!("flush: {e}"))),
            Err(_) => Err(Error::Store("the commit task has stopped".into())),
        }
    }
}
