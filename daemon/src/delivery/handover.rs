//! The in-person handover queue: codes a helpdesk admin reads out to a person at the desk.
//!
//! This is the one place a code is shown, on purpose: to an operator holding the "hand over codes in
//! person" permission, and every listing is audited. Entries live in memory only and leave the queue
//! when handed over, when the code is used or replaced, or when it expires.

use std::sync::Mutex;

use twofold_wire::delivery::HandoverEntry;

use super::Job;

struct Waiting {
    transaction_id: String,
    entry: HandoverEntry,
}

#[derive(Default)]
pub struct HandoverQueue {
    waiting: Mutex<Vec<Waiting>>,
}

impl HandoverQueue {
    pub fn push(&self, job: &Job, note: String, now: i64) {
        let entry = HandoverEntry {
            id: format!(
                "h{}",
                data_encoding::HEXLOWER.encode(&crate::crypto::random_bytes::<6>())
            ),
            user: job.username.clone(),
            display_name: job.display_name.clone(),
            code: job.code.clone(),
            note,
            created: now,
            expires_at: job.expires_at,
        };
        if let Ok(mut waiting) = self.waiting.lock() {
            // A new code for the same person replaces the one waiting.
            waiting.retain(|w| w.entry.user != entry.user);
            waiting.push(Waiting {
                transaction_id: job.transaction_id.clone(),
                entry,
            });
        }
    }

    /// The entries still valid at `now`, oldest first.
    pub fn list(&self, now: i64) -> Vec<HandoverEntry> {
        match self.waiting.lock() {
            Ok(mut waiting) => {
                waiting.retain(|w| w.entry.expires_at > now);
                waiting.iter().map(|w| w.entry.clone()).collect()
            }
            Err(_) => Vec::new(),
        }
    }

    /// Removes an entry once handed over; returns its user.
    pub fn done(&self, id: &str) -> Option<String> {
        let mut waiting = self.waiting.lock().ok()?;
        let index = waiting.iter().position(|w| w.entry.id == id)?;
        Some(waiting.remove(index).entry.user)
    }

    /// Drops the entry of a challenge that was used or replaced.
    pub fn remove_transaction(&self, transaction_id: &str) {
        if let Ok(mut waiting) = self.waiting.lock() {
            waiting.retain(|w| w.transaction_id != transaction_id);
        }
    }
}
