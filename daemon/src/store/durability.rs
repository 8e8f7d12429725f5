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
    pub fn start(db: sled::Db) -> Committer {
        let (requests, mut incoming) = mpsc::unbounded_channel::<Waiter>();
        tokio::spawn(async move {
            let mut batch = Vec::new();
            while let Some(first) = incoming.recv().await {
                let db = first.1.clone();
                batch.push(first);
                while let Ok(more) = incoming.try_recv() {
                    batch.push(more);
                }
                let outcome = match tokio::task::spawn_blocking(move || db.flush()).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(e) => Err(format!("flush task: {e}")),
                };
                if let Err(e) = &outcome {
                    tracing::error!(error = %e, "store flush failed");
                }
                for (waiter, _) in batch.drain(..) {
                    let _ = waiter.send(outcome.clone());
                }
            }
        });
        Committer { requests, db }
    }

    pub async fn commit(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.requests.send((tx, self.db.clone())).map_err(|_| Error::Store("the commit task has stopped".into()))?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::Store(format!("flush: {e}"))),
            Err(_) => Err(Error::Store("the commit task has stopped".into())),
        }
    }
}
