//! The journal: what changes on every verification, kept out of sled.
//!
//! A verification changes a few bytes: a device's last used time step (replay protection), a failure
//! counter, and one audit event. Writing them as sled records costs a JSON encode, a B-tree node copy and
//! a share of sled's log writer each; here they are small binary frames appended to a file, and the
//! group commit makes them durable with one `fdatasync` for every request waiting at that moment.
//!
//! - Device use (last step, drift, last used) and failure counters live in memory, written through to the
//!   journal; the journal is replayed at start. `journal.snapshot` holds the state as of a position of
//!   the journal, written at each start and each compaction, so a start replays only what was appended
//!   since the last one.
//! - Audit events are only ever appended, and never rewritten: the journal is the audit log, read
//!   newest-first for the admin's audit queries.
//! - Segments: the journal is a run of files `journal.d/NNNNNNNNNN.seg`, numbered from 1, and frames are
//!   appended to the last. A new segment starts once the last passes `SEGMENT_BYTES`, and at a compaction
//!   once the last holds an audit event older than `ROLL_AFTER_SECONDS`. A finished segment is cut to its
//!   frames and never written again. A position is (segment, offset); a frame never spans two segments.
//! - Retention: the oldest segments are deleted whole once they lie before the snapshot's position (the
//!   snapshot holds the device use and counters they recorded) and their newest audit event has passed
//!   the audit retention. The caller records the deletion as an audit event first (`expired_segments`,
//!   then `drop_segments`): an audit log never shrinks without saying so.
//! - Frame: `len u32 | crc32(payload) u32 | payload | len u32`, little-endian. The trailing length lets
//!   the audit reader walk backwards. A torn or corrupt frame can only be at the end (one writer,
//!   acknowledged only after `fdatasync`): replay stops there, zeroes what follows the last good frame
//!   and deletes any later segment (nothing in it was acknowledged either).
//! - The segment being written is kept zero-filled `PREALLOCATE` bytes ahead of its last frame, so a
//!   commit overwrites blocks the file already has: its `fdatasync` then writes data only, without a
//!   metadata journal commit (on ext4 about half the time and CPU of an append). A zero length ends the
//!   frames.
//! - Earlier versions kept one file, `journal`: it becomes segment 1 at open, and the offset its
//!   snapshot names is an offset of segment 1.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use twofold_wire::admin::AuditEvent;

use crate::error::{Error, Result, StoreError};
use crate::lockout::FailureCount;

/// The one file of earlier versions' journal.
const LEGACY_JOURNAL_FILE: &str = "journal";
const SEGMENT_DIR: &str = "journal.d";
const SEGMENT_EXTENSION: &str = "seg";
const SNAPSHOT_FILE: &str = "journal.snapshot";
/// A snapshot of earlier versions: an offset of the one file, now segment 1.
const SNAPSHOT_MAGIC_ONE_FILE: &[u8; 8] = b"TFSNAP01";
const SNAPSHOT_MAGIC: &[u8; 8] = b"TFSNAP02";

const KIND_DEVICE: u8 = 1;
const KIND_COUNTER: u8 = 2;
const KIND_AUDIT: u8 = 3;

/// Largest payload a reader accepts: far above any real frame, far below what a corrupt length could ask.
const MAX_PAYLOAD: u32 = 1 << 20;
/// How much the backward audit reader reads at once.
const READ_CHUNK: u64 = 64 * 1024;
/// Largest append buffer kept for reuse. A full directory sync appends an audit event per user before
/// its one commit (8 MB at 100,000 users); kept, that buffer would stay allocated for good.
const KEPT_BUFFER: usize = 1 << 20;
/// How far ahead of the last frame the segment being written is zero-filled.
const PREALLOCATE: u64 = 8 * 1024 * 1024;
/// Size past which the next write starts a new segment. A verification appends about 300 bytes, so a
/// segment holds about 220,000: a busy appliance (1,000,000 a day) starts a few a day, each rolled at
/// a batch's boundary (a segment may pass this by one batch).
pub(super) const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// A compaction starts a new segment once the one being written holds an audit event this old: a quiet
/// appliance would otherwise fill a segment for months, and keep its oldest events that much longer than
/// the retention asks. With a segment a day at most, an event outlives the retention by about a day.
pub(super) const ROLL_AFTER_SECONDS: i64 = 86_400;

/// What replay protection and the device list need to know about a device's last use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceUse {
    /// Last accepted TOTP time step: no step at or before it is accepted again.
    pub last_step: Option<u64>,
    /// Steps between the device's clock and ours at the last accepted code.
    pub drift: i64,
    pub last_used: Option<i64>,
}

impl DeviceUse {
    /// The later of two views of the same device. Replay protection only moves forward: a writer holding
    /// an older copy of a user record can never bring back a step that was already used.
    pub fn merge(self, other: DeviceUse) -> DeviceUse {
        let newer = if other.last_step > self.last_step {
            other
        } else {
            self
        };
        DeviceUse {
            last_step: newer.last_step,
            drift: newer.drift,
            last_used: self.last_used.max(other.last_used),
        }
    }
}

/// A place between frames of the journal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// An audit event to append, borrowed: every verification appends one, and owning its parts cost
/// four allocations each time.
#[derive(Debug, Clone, Copy)]
pub struct AuditEntry<'a> {
    pub time: i64,
    pub actor: &'a str,
    pub action: &'a str,
    pub user: Option<&'a str>,
    pub outcome: &'a str,
    pub detail: Option<&'a str>,
}

impl<'a> AuditEntry<'a> {
    pub fn of(event: &'a AuditEvent) -> AuditEntry<'a> {
        AuditEntry {
            time: event.time,
            actor: &event.actor,
            action: &event.action,
            user: event.user.as_deref(),
            outcome: &event.outcome,
            detail: event.detail.as_deref(),
        }
    }
}

/// One audit event's id and time, marking the ends of what a deletion drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditMark {
    pub id: u64,
    pub time: i64,
}

impl AuditMark {
    fn of(event: &AuditEvent) -> AuditMark {
        AuditMark {
            id: event.id,
            time: event.time,
        }
    }
}

/// The oldest segments, which the retention lets go (see `Journal::expired_segments`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpiredSegments {
    /// Oldest first, consecutive.
    pub ids: Vec<u64>,
    pub bytes: u64,
    /// The oldest and the newest audit event they hold (none if they hold no event).
    pub oldest: Option<AuditMark>,
    pub newest: Option<AuditMark>,
}

impl ExpiredSegments {
    /// `segments=2 bytes=1200 events=1..12 from=2023-11-14T22:13:20Z to=2023-11-15T22:13:20Z`, for the
    /// audit event that records the deletion.
    pub fn audit_detail(&self) -> String {
        use std::fmt::Write;
        let mut detail = format!("segments={} bytes={}", self.ids.len(), self.bytes);
        if let (Some(oldest), Some(newest)) = (self.oldest, self.newest) {
            let _ = write!(
                detail,
                " events={}..{} from={} to={}",
                oldest.id,
                newest.id,
                rfc3339(oldest.time),
                rfc3339(newest.time)
            );
        }
        detail
    }
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// The journal on disk, for the admin's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalStats {
    pub segments: u64,
    /// Bytes of frames (the zeros kept ahead of the last frame not counted).
    pub bytes: u64,
    /// Time of the oldest audit event kept.
    pub oldest_event: Option<i64>,
}

pub(super) struct Journal {
    /// `journal.d`: the segments.
    dir: PathBuf,
    snapshot_path: PathBuf,
    /// `SEGMENT_BYTES`, smaller in tests.
    segment_bytes: u64,
    /// user id -> (device id, use); a user has a handful of devices.
    devices: Mutex<HashMap<String, Vec<(String, DeviceUse)>>>,
    counters: Mutex<HashMap<String, FailureCount>>,
    /// Held while a snapshot is written.
    snapshotting: Mutex<()>,
    tail: Mutex<Tail>,
    /// Held while frames go to the file, so they land in the order they were appended.
    writer: Mutex<Writer>,
}

/// Frames appended but not yet handed to the file.
struct Tail {
    pending: Vec<u8>,
    next_audit_id: u64,
}

struct Writer {
    /// The segment frames go to.
    current: Segment,
    /// How much of `current` `fdatasync` has covered.
    synced: u64,
    /// The segments before `current`, oldest first.
    finished: Vec<Finished>,
    /// Segments finished since the last sync: their last frames and their cut must reach the disk, and
    /// so must the directory entry of the segment after them, before a commit answers.
    unsynced: Vec<Arc<File>>,
    dir_unsynced: bool,
    /// The first failed sync's error: after a failed `fdatasync` Linux may have dropped the dirty pages
    /// and report the next one as a success, so no later sync is trusted.
    failed: Option<String>,
    /// The previous batch's buffer, reused so appends rarely allocate (unless it grew past `KEPT_BUFFER`).
    spare: Vec<u8>,
}

struct Segment {
    id: u64,
    file: Arc<File>,
    /// Where its frames end.
    end: u64,
    /// The file's length: zeros from `end` to here.
    allocated: u64,
}

#[derive(Debug, Clone, Copy)]
struct Finished {
    id: u64,
    /// Its length, all frames.
    len: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these cannot leave a half-applied change the journal would not
    // replay the same way, so a poisoned lock is still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Journal {
    /// Opens the journal in `dir`: adopts an earlier version's one file, loads the snapshot, replays the
    /// frames after it, and cuts off a torn last frame.
    pub fn open(dir: &Path) -> Result<Journal> {
        Journal::open_with_segment_bytes(dir, SEGMENT_BYTES)
    }

    pub(super) fn open_with_segment_bytes(dir: &Path, segment_bytes: u64) -> Result<Journal> {
        let segment_dir = dir.join(SEGMENT_DIR);
        if !segment_dir.is_dir() {
            std::fs::create_dir(&segment_dir).map_err(|e| Error::io(&segment_dir, e))?;
            sync_dir(dir)?;
        }
        adopt_one_file_journal(dir, &segment_dir)?;
        let mut ids = segment_ids(&segment_dir)?;
        if ids.is_empty() {
            create_segment(&segment_dir, 1)?;
            sync_dir(&segment_dir)?;
            ids.push(1);
        }
        let snapshot_path = dir.join(SNAPSHOT_FILE);
        let mut state = start_state(&snapshot_path, &segment_dir, &ids)?;
        let first = ids
            .iter()
            .position(|&id| id == state.position.segment)
            .unwrap_or(0);
        // Past the snapshot every segment is replayed, so none may be missing; before it a gap is only
        // a hole in the audit log, which its readers pass over.
        for pair in ids[first..].windows(2) {
            if pair[1] != pair[0] + 1 {
                return Err(StoreError::corrupt(format!(
                    "{}: journal segment {} is missing (the state it recorded would be lost)",
                    segment_dir.display(),
                    pair[0] + 1
                )));
            }
        }
        let mut finished = Vec::with_capacity(ids.len());
        for &id in &ids[..first] {
            let path = segment_path(&segment_dir, id);
            let len = std::fs::metadata(&path)
                .map_err(|e| Error::io(&path, e))?
                .len();
            finished.push(Finished { id, len });
        }
        let mut offset = state.position.offset;
        let mut current = None;
        for (i, &id) in ids.iter().enumerate().skip(first) {
            let path = segment_path(&segment_dir, id);
            let file = open_segment(&path)?;
            let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
            let end = state.replay(&file, offset, &path)?;
            offset = 0;
            let clean = zeroes_after(&file, end, len).map_err(|e| Error::io(&path, e))?;
            let last = i + 1 == ids.len();
            if last || !clean {
                if !clean {
                    tracing::warn!(
                        segment = id,
                        offset = end,
                        "journal ended in a torn or corrupt frame (never acknowledged); zeroed from the last good one"
                    );
                    zero_fill(&file, end, len).map_err(|e| Error::io(&path, e))?;
                    file.sync_all().map_err(|e| Error::io(&path, e))?;
                    for &later in &ids[i + 1..] {
                        remove_if_present(&segment_path(&segment_dir, later))?;
                    }
                    sync_dir(&segment_dir)?;
                }
                current = Some(Segment {
                    id,
                    file: Arc::new(file),
                    end,
                    allocated: len,
                });
                break;
            }
            if end < len {
                // Finished, but its cut did not reach the disk before a crash.
                file.set_len(end).map_err(|e| Error::io(&path, e))?;
                file.sync_all().map_err(|e| Error::io(&path, e))?;
            }
            finished.push(Finished { id, len: end });
        }
        let current = current.ok_or_else(|| {
            StoreError::corrupt(format!("{}: no journal segment", segment_dir.display()))
        })?;
        Ok(Journal {
            dir: segment_dir,
            snapshot_path,
            segment_bytes,
            devices: Mutex::new(state.devices),
            counters: Mutex::new(state.counters),
            snapshotting: Mutex::new(()),
            tail: Mutex::new(Tail {
                pending: Vec::new(),
                next_audit_id: state.next_audit_id,
            }),
            writer: Mutex::new(Writer {
                synced: current.end,
                current,
                finished,
                unsynced: Vec::new(),
                dir_unsynced: false,
                failed: None,
                spare: Vec::new(),
            }),
        })
    }

    /// Writes the current state as the snapshot, first dropping devices of users `keep_user` rejects and
    /// letting `prune_counters` drop failure counters; returns the position it holds the state at.
    /// Dropping needs no frame: the snapshot is the state as of its position, and a replay starts from
    /// it. The state is encoded under the locks and written out after them, so verifications wait for
    /// the encoding only, not the fsyncs. The journal up to the position is durable before the snapshot
    /// names it.
    pub fn write_snapshot(
        &self,
        keep_user: impl Fn(&str) -> Result<bool>,
        prune_counters: impl FnOnce(&mut HashMap<String, FailureCount>),
    ) -> Result<Position> {
        // One snapshot at a time: an older one must never replace a newer one.
        let _one_at_a_time = lock(&self.snapshotting);
        let (out, position) = {
            let mut devices = lock(&self.devices);
            let mut dropped = Vec::new();
            for user in devices.keys() {
                if !keep_user(user)? {
                    dropped.push(user.clone());
                }
            }
            for user in dropped {
                devices.remove(&user);
            }
            let mut counters = lock(&self.counters);
            prune_counters(&mut counters);
            let mut writer = lock(&self.writer);
            self.write_out(&mut writer)?;
            let position = Position {
                segment: writer.current.id,
                offset: writer.current.end,
            };
            let next_audit_id = lock(&self.tail).next_audit_id;
            let mut out = Vec::with_capacity(64 + devices.len() * 64 + counters.len() * 48);
            out.extend_from_slice(SNAPSHOT_MAGIC);
            out.extend_from_slice(&position.segment.to_le_bytes());
            out.extend_from_slice(&position.offset.to_le_bytes());
            out.extend_from_slice(&next_audit_id.to_le_bytes());
            for (user, list) in devices.iter() {
                for (device, used) in list {
                    frame(&mut out, |b| encode_device(b, user, device, *used));
                }
            }
            for (key, count) in counters.iter() {
                frame(&mut out, |b| encode_counter(b, key, *count));
            }
            (out, position)
        };
        self.sync()?;
        let mut out = out;
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        let tmp = self.snapshot_path.with_extension("snapshot.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            std::io::Write::write_all(&mut f, &out)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.snapshot_path)?;
            if let Some(dir) = self.snapshot_path.parent() {
                File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| Error::io(&self.snapshot_path, e))?;
        Ok(position)
    }

    /// How many failure counters are held (for the dashboard and tests).
    pub fn counter_count(&self) -> usize {
        lock(&self.counters).len()
    }

    // ---- device use ----

    pub fn device_use(&self, user: &str, device: &str) -> DeviceUse {
        lock(&self.devices)
            .get(user)
            .and_then(|list| list.iter().find(|(id, _)| id == device))
            .map(|(_, used)| *used)
            .unwrap_or_default()
    }

    /// Calls `f` with each device's use for `user` (under one lock, for reading a whole record).
    pub fn with_user_devices<R>(
        &self,
        user: &str,
        f: impl FnOnce(&[(String, DeviceUse)]) -> R,
    ) -> R {
        let devices = lock(&self.devices);
        f(devices.get(user).map_or(&[], Vec::as_slice))
    }

    /// Records a device's use, merged with what is known (see `DeviceUse::merge`). Durable after the next
    /// commit.
    pub fn record_device_use(&self, user: &str, device: &str, used: DeviceUse) {
        let mut devices = lock(&self.devices);
        let list = devices.entry(user.to_owned()).or_default();
        let merged = match list.iter_mut().find(|(id, _)| id == device) {
            Some((_, known)) => {
                let merged = known.merge(used);
                if merged == *known {
                    return;
                }
                *known = merged;
                merged
            }
            None if used == DeviceUse::default() => return,
            None => {
                list.push((device.to_owned(), used));
                used
            }
        };
        self.append(|b| encode_device(b, user, device, merged));
    }

    /// Forgets devices of `user` that `keep` rejects (deleted devices), in memory. Nothing is appended:
    /// a device id is never reused, so an entry that a replay brings back is never read.
    pub fn retain_devices(&self, user: &str, keep: impl Fn(&str) -> bool) {
        let mut devices = lock(&self.devices);
        if let Some(list) = devices.get_mut(user) {
            list.retain(|(id, _)| keep(id));
            if list.is_empty() {
                devices.remove(user);
            }
        }
    }

    // ---- failure counters ----

    pub fn counter(&self, key: &str) -> FailureCount {
        lock(&self.counters).get(key).copied().unwrap_or_default()
    }

    /// Atomically replaces a counter with `f(current)`; returns the new value.
    pub fn update_counter(
        &self,
        key: &str,
        f: impl FnOnce(FailureCount) -> FailureCount,
    ) -> FailureCount {
        let mut counters = lock(&self.counters);
        let current = counters.get(key).copied().unwrap_or_default();
        let next = f(current);
        if next == current {
            return next;
        }
        if next == FailureCount::default() {
            counters.remove(key);
        } else {
            counters.insert(key.to_owned(), next);
        }
        self.append(|b| encode_counter(b, key, next));
        next
    }

    // ---- audit ----

    /// Appends an event, assigning its id (ids grow in the journal's order).
    #[cfg(test)]
    pub fn append_audit(&self, event: &AuditEvent) -> u64 {
        self.append_audit_entry(&AuditEntry::of(event))
    }

    /// Appends an event given as borrowed parts, assigning its id.
    pub fn append_audit_entry(&self, entry: &AuditEntry<'_>) -> u64 {
        let mut tail = lock(&self.tail);
        let id = tail.next_audit_id;
        tail.next_audit_id += 1;
        frame(&mut tail.pending, |b| encode_audit(b, id, entry));
        id
    }

    /// The newest `limit` events with an id below `before` (all if `None`) that `keep` accepts, oldest
    /// first.
    pub fn audit_newest(
        &self,
        limit: usize,
        before: Option<u64>,
        keep: impl Fn(&AuditEvent) -> bool,
    ) -> Result<Vec<AuditEvent>> {
        let mut events = Vec::new();
        if limit == 0 {
            return Ok(events);
        }
        let written = self.written_segments()?;
        'segments: for &Finished { id, len } in written.segments.iter().rev() {
            let path = segment_path(&self.dir, id);
            let file = match written.reader(&self.dir, id)? {
                Some(file) => file,
                // Dropped by the retention since the list was taken: nothing older is left.
                None => break,
            };
            if let Some(before) = before {
                // Paging back through a long log: a segment that starts at or after `before` holds
                // nothing wanted, and is passed over unread.
                let first = first_audit(&file, len).map_err(|e| corrupt(&path, e))?;
                if first.is_some_and(|e| e.id >= before) {
                    continue;
                }
            }
            let mut reader = Backward::new(&file, len);
            while let Some(payload) = reader.next_payload().map_err(|e| corrupt(&path, e))? {
                if payload.first() != Some(&KIND_AUDIT) {
                    continue;
                }
                let event =
                    decode_audit(&payload[1..]).ok_or_else(|| corrupt(&path, "bad audit frame"))?;
                if before.is_some_and(|b| event.id >= b) {
                    continue;
                }
                if keep(&event) {
                    events.push(event);
                    if events.len() >= limit {
                        break 'segments;
                    }
                }
            }
        }
        events.reverse();
        Ok(events)
    }

    // ---- segments and retention ----

    /// Starts a new segment if the one being written holds an audit event older than `cutoff` (see
    /// `ROLL_AFTER_SECONDS`); returns whether it did.
    pub fn roll_if_older(&self, cutoff: i64) -> Result<bool> {
        let (id, file, end) = {
            let mut writer = lock(&self.writer);
            self.write_out(&mut writer)?;
            let current = &writer.current;
            (current.id, current.file.clone(), current.end)
        };
        let path = segment_path(&self.dir, id);
        let oldest = first_audit(&file, end).map_err(|e| corrupt(&path, e))?;
        if oldest.is_none_or(|e| e.time >= cutoff) {
            return Ok(false);
        }
        let mut writer = lock(&self.writer);
        self.write_out(&mut writer)?;
        if writer.current.id != id {
            // It filled up meanwhile and was rolled already.
            return Ok(false);
        }
        self.roll(&mut writer).map_err(|e| Error::io(&path, e))?;
        Ok(true)
    }

    /// The oldest finished segments that lie before `before` and hold no audit event as recent as
    /// `cutoff`, from the oldest on up to the first that does; `None` if there are none. Whole
    /// segments only, from the oldest on, so the log stays one run; and never the segment being
    /// written. Drop them with `drop_segments`, once the deletion is recorded.
    pub fn expired_segments(
        &self,
        before: Position,
        cutoff: i64,
    ) -> Result<Option<ExpiredSegments>> {
        let finished = lock(&self.writer).finished.clone();
        let mut expired = ExpiredSegments::default();
        for segment in finished.iter().filter(|f| f.id < before.segment) {
            let path = segment_path(&self.dir, segment.id);
            let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
            let newest = last_audit(&file, segment.len).map_err(|e| corrupt(&path, e))?;
            if newest.as_ref().is_some_and(|e| e.time >= cutoff) {
                break;
            }
            if expired.oldest.is_none() {
                expired.oldest = first_audit(&file, segment.len)
                    .map_err(|e| corrupt(&path, e))?
                    .map(|e| AuditMark::of(&e));
            }
            if let Some(newest) = newest {
                expired.newest = Some(AuditMark::of(&newest));
            }
            expired.ids.push(segment.id);
            expired.bytes += segment.len;
        }
        Ok((!expired.ids.is_empty()).then_some(expired))
    }

    /// Deletes the segments `expired_segments` found.
    pub fn drop_segments(&self, expired: &ExpiredSegments) -> Result<()> {
        {
            let mut writer = lock(&self.writer);
            let n = expired.ids.len();
            let still_oldest = writer.finished.len() >= n
                && writer.finished[..n]
                    .iter()
                    .map(|f| f.id)
                    .eq(expired.ids.iter().copied());
            if !still_oldest {
                return Err(StoreError::corrupt(format!(
                    "{}: the journal segments to drop are no longer the oldest finished ones",
                    self.dir.display()
                )));
            }
            writer.finished.drain(..n);
        }
        for &id in &expired.ids {
            remove_if_present(&segment_path(&self.dir, id))?;
        }
        sync_dir(&self.dir)
    }

    /// The segments, their bytes and the oldest audit event kept.
    pub fn stats(&self) -> Result<JournalStats> {
        let written = self.written_segments()?;
        let mut oldest_event = None;
        for &Finished { id, len } in &written.segments {
            let Some(file) = written.reader(&self.dir, id)? else {
                continue;
            };
            let first =
                first_audit(&file, len).map_err(|e| corrupt(&segment_path(&self.dir, id), e))?;
            if let Some(event) = first {
                oldest_event = Some(event.time);
                break;
            }
        }
        Ok(JournalStats {
            segments: written.segments.len() as u64,
            bytes: written.segments.iter().map(|s| s.len).sum(),
            oldest_event,
        })
    }

    /// Every segment, with everything appended so far written to the last (not synced: that stays the
    /// commit's job, but a query sees its own writes).
    fn written_segments(&self) -> Result<WrittenSegments> {
        let mut writer = lock(&self.writer);
        self.write_out(&mut writer)?;
        let current = &writer.current;
        Ok(WrittenSegments {
            segments: writer
                .finished
                .iter()
                .copied()
                .chain([Finished {
                    id: current.id,
                    len: current.end,
                }])
                .collect(),
            current: current.file.clone(),
        })
    }

    // ---- durability ----

    /// Writes every appended frame to the file and makes it durable: the segments finished since the
    /// last sync, the directory entry of the new one, then `fdatasync` of the segment being written.
    /// Called by the group commit.
    pub fn sync(&self) -> Result<()> {
        let mut writer = lock(&self.writer);
        if let Some(e) = &writer.failed {
            return Err(StoreError::corrupt(format!(
                "{}: an earlier sync failed ({e}): nothing written since is trusted",
                self.dir.display()
            )));
        }
        self.write_out(&mut writer)?;
        let result = (|| -> std::io::Result<()> {
            for file in &writer.unsynced {
                file.sync_all()?;
            }
            writer.unsynced.clear();
            if writer.dir_unsynced {
                File::open(&self.dir)?.sync_all()?;
                writer.dir_unsynced = false;
            }
            if writer.synced != writer.current.end {
                writer.current.file.sync_data()?;
                writer.synced = writer.current.end;
            }
            Ok(())
        })();
        result.map_err(|e| {
            let e = Error::io(&self.dir, e);
            writer.failed = Some(e.to_string());
            e
        })
    }

    fn write_out(&self, writer: &mut Writer) -> Result<()> {
        {
            let mut tail = lock(&self.tail);
            if tail.pending.is_empty() {
                return Ok(());
            }
            std::mem::swap(&mut tail.pending, &mut writer.spare);
        }
        match self.write_batch(writer) {
            Ok(()) => {
                writer.current.end += writer.spare.len() as u64;
                writer.spare.clear();
                if writer.spare.capacity() > KEPT_BUFFER {
                    writer.spare = Vec::new();
                }
                Ok(())
            }
            Err(e) => {
                // The frames were not written: nothing that waits for them is answered "ok", and the
                // next write puts them (and what came since) at the same place.
                let mut tail = lock(&self.tail);
                writer.spare.append(&mut tail.pending);
                std::mem::swap(&mut tail.pending, &mut writer.spare);
                Err(Error::io(segment_path(&self.dir, writer.current.id), e))
            }
        }
    }

    /// Writes `writer.spare` after the last frame, in a new segment if the current one is full.
    fn write_batch(&self, writer: &mut Writer) -> std::io::Result<()> {
        if writer.current.end >= self.segment_bytes {
            self.roll(writer)?;
        }
        let current = &mut writer.current;
        let needed = current.end + writer.spare.len() as u64;
        if needed > current.allocated {
            // Zero-filled `PREALLOCATE` past what is needed once the file is too short.
            let target = needed + PREALLOCATE;
            zero_fill(&current.file, current.allocated, target)?;
            current.allocated = target;
        }
        current.file.write_all_at(&writer.spare, current.end)
    }

    /// Finishes the segment being written (cut to its frames) and starts the next one. Both reach the
    /// disk at the next sync, before anything written to the new one is acknowledged.
    fn roll(&self, writer: &mut Writer) -> std::io::Result<()> {
        let id = writer.current.id + 1;
        let file = create_file(&segment_path(&self.dir, id))?;
        writer.current.file.set_len(writer.current.end)?;
        let done = std::mem::replace(
            &mut writer.current,
            Segment {
                id,
                file: Arc::new(file),
                end: 0,
                allocated: 0,
            },
        );
        writer.finished.push(Finished {
            id: done.id,
            len: done.end,
        });
        writer.unsynced.push(done.file);
        writer.dir_unsynced = true;
        writer.synced = 0;
        tracing::info!(segment = id, "journal segment started");
        Ok(())
    }

    fn append(&self, encode: impl FnOnce(&mut Vec<u8>)) {
        frame(&mut lock(&self.tail).pending, encode);
    }
}

/// The segments as far as they are written, for readers: frames before these lengths never change, so
/// reading them needs no lock.
struct WrittenSegments {
    /// Oldest first; the last is the one being written.
    segments: Vec<Finished>,
    /// The file of the one being written, shared with the writer.
    current: Arc<File>,
}

impl WrittenSegments {
    /// A handle to read segment `id`; `None` if the retention dropped it meanwhile.
    fn reader(&self, dir: &Path, id: u64) -> Result<Option<Arc<File>>> {
        if self.segments.last().is_some_and(|s| s.id == id) {
            return Ok(Some(self.current.clone()));
        }
        let path = segment_path(dir, id);
        match File::open(&path) {
            Ok(file) => Ok(Some(Arc::new(file))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }
}

fn corrupt(path: &Path, what: impl std::fmt::Display) -> Error {
    StoreError::corrupt(format!("{}: {what}", path.display()))
}

// ---- segment files ----

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:010}.{SEGMENT_EXTENSION}"))
}

/// The segments in `dir`, in order.
fn segment_ids(dir: &Path) -> Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let name = entry.map_err(|e| Error::io(dir, e))?.file_name();
        let id = name
            .to_str()
            .and_then(|n| n.strip_suffix(SEGMENT_EXTENSION))
            .and_then(|n| n.strip_suffix('.'))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u64>().ok());
        ids.extend(id);
    }
    ids.sort_unstable();
    Ok(ids)
}

fn open_segment(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))
}

/// A new, empty segment. One left by a crash under the same name held nothing acknowledged.
fn create_segment(dir: &Path, id: u64) -> Result<File> {
    let path = segment_path(dir, id);
    create_file(&path).map_err(|e| Error::io(&path, e))
}

fn create_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// An earlier version's journal, one file, becomes segment 1 (its snapshot's offset is one of it).
fn adopt_one_file_journal(dir: &Path, segment_dir: &Path) -> Result<()> {
    let one_file = dir.join(LEGACY_JOURNAL_FILE);
    if !one_file.is_file() {
        return Ok(());
    }
    if !segment_ids(segment_dir)?.is_empty() {
        return Err(StoreError::corrupt(format!(
            "{} and the segments in {} both exist: the one file is an earlier version's journal, which \
             should have become segment 1; move away whichever was restored by mistake",
            one_file.display(),
            segment_dir.display()
        )));
    }
    let first = segment_path(segment_dir, 1);
    std::fs::rename(&one_file, &first).map_err(|e| Error::io(&one_file, e))?;
    sync_dir(segment_dir)?;
    sync_dir(dir)?;
    tracing::info!(path = %first.display(), "journal of an earlier version adopted as its first segment");
    Ok(())
}

/// The state replay starts from: the snapshot's, or (without a usable one) nothing, from the oldest
/// segment on. Without the snapshot, state recorded only in segments the retention dropped would be
/// lost (failure counters that lock a user, above all), so a start refuses rather than forget it.
fn start_state(snapshot_path: &Path, segment_dir: &Path, ids: &[u64]) -> Result<ReplayState> {
    let oldest = ids.first().copied().unwrap_or(1);
    let from_oldest = ReplayState {
        position: Position {
            segment: oldest,
            offset: 0,
        },
        ..ReplayState::default()
    };
    let problem = match read_snapshot(snapshot_path) {
        Ok(Some(state)) => {
            let position = state.position;
            let len = match ids.binary_search(&position.segment) {
                Ok(_) => {
                    let path = segment_path(segment_dir, position.segment);
                    Some(
                        std::fs::metadata(&path)
                            .map_err(|e| Error::io(&path, e))?
                            .len(),
                    )
                }
                Err(_) => None,
            };
            if len.is_some_and(|len| position.offset <= len) {
                return Ok(state);
            }
            "the journal snapshot is ahead of the journal".to_owned()
        }
        Ok(None) if oldest == 1 => return Ok(from_oldest),
        Ok(None) => {
            // Only someone's hand removes a snapshot: take it as their decision.
            tracing::warn!(
                oldest_segment = oldest,
                "no journal snapshot while the retention dropped older segments: device use and failure counters recorded only in those are lost"
            );
            return Ok(from_oldest);
        }
        Err(e) => format!("the journal snapshot is unreadable ({e})"),
    };
    if oldest != 1 {
        return Err(StoreError::corrupt(format!(
            "{problem}, and the segments before {oldest} were dropped by the audit retention: only the \
             snapshot holds the device use and failure counters they recorded. Restore {} from a backup, \
             or delete it to start with what the remaining segments hold",
            snapshot_path.display()
        )));
    }
    // The whole journal is there, and holds everything the snapshot summarises.
    tracing::warn!("{problem}: replaying the whole journal");
    Ok(from_oldest)
}

/// Whether bytes `[from, to)` of the file are all zero.
fn zeroes_after(file: &File, from: u64, to: u64) -> std::io::Result<bool> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut at = from;
    while at < to {
        let n = usize::try_from((to - at).min(buf.len() as u64)).unwrap_or(buf.len());
        file.read_exact_at(&mut buf[..n], at)?;
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        at += n as u64;
    }
    Ok(true)
}

fn zero_fill(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    let zeros = vec![0u8; 256 * 1024];
    let mut at = from;
    while at < to {
        let n = usize::try_from((to - at).min(zeros.len() as u64)).unwrap_or(zeros.len());
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

/// Reads a file from an offset on without moving the file's own position (readers share the handle of
/// the segment being written), up to `end`.
struct ReadAt<'a> {
    file: &'a File,
    at: u64,
    end: u64,
    /// A read that failed. Frame readers take any error for the end of the frames; this tells a disk
    /// error (fatal) from a torn frame (cut off).
    failed: Option<std::io::Error>,
}

impl<'a> ReadAt<'a> {
    fn new(file: &'a File, at: u64, end: u64) -> ReadAt<'a> {
        ReadAt {
            file,
            at,
            end,
            failed: None,
        }
    }
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = usize::try_from(self.end.saturating_sub(self.at)).unwrap_or(usize::MAX);
        let n = buf.len().min(left);
        if n == 0 {
            return Ok(0);
        }
        match self.file.read_at(&mut buf[..n], self.at) {
            Ok(n) => {
                self.at += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let kind = e.kind();
                self.failed = Some(e);
                Err(kind.into())
            }
        }
    }
}

/// The first audit event among a segment's first `len` bytes.
fn first_audit(file: &File, len: u64) -> std::result::Result<Option<AuditEvent>, String> {
    let mut reader = BufReader::with_capacity(16 * 1024, ReadAt::new(file, 0, len));
    let mut payload = Vec::new();
    while read_frame(&mut reader, &mut payload).is_some() {
        if payload.first() == Some(&KIND_AUDIT) {
            return decode_audit(&payload[1..])
                .map(Some)
                .ok_or_else(|| "bad audit frame".to_owned());
        }
    }
    match &reader.get_ref().failed {
        Some(e) => Err(e.to_string()),
        None => Ok(None),
    }
}

/// The last audit event among a segment's first `len` bytes.
fn last_audit(file: &File, len: u64) -> std::result::Result<Option<AuditEvent>, String> {
    let mut reader = Backward::new(file, len);
    while let Some(payload) = reader.next_payload()? {
        if payload.first() == Some(&KIND_AUDIT) {
            return decode_audit(&payload[1..])
                .map(Some)
                .ok_or_else(|| "bad audit frame".to_owned());
        }
    }
    Ok(None)
}

// ---- replay ----

#[derive(Default)]
struct ReplayState {
    /// Journal position the state is valid at.
    position: Position,
    next_audit_id: u64,
    devices: HashMap<String, Vec<(String, DeviceUse)>>,
    counters: HashMap<String, FailureCount>,
}

impl ReplayState {
    /// Applies a segment's frames from `from` on; returns where the last good frame ends.
    fn replay(&mut self, file: &File, from: u64, path: &Path) -> Result<u64> {
        self.next_audit_id = self.next_audit_id.max(1);
        let mut reader = BufReader::with_capacity(256 * 1024, ReadAt::new(file, from, u64::MAX));
        let mut end = from;
        let mut payload = Vec::new();
        while let Some(len) = read_frame(&mut reader, &mut payload) {
            if !self.apply(&payload) {
                break;
            }
            end += u64::from(len) + 12;
        }
        match reader.into_inner().failed {
            Some(e) => Err(Error::io(path, e)),
            None => Ok(end),
        }
    }

    fn apply(&mut self, payload: &[u8]) -> bool {
        let Some((&kind, body)) = payload.split_first() else {
            return false;
        };
        match kind {
            KIND_DEVICE => match decode_device(body) {
                Some((user, device, used)) => {
                    let list = self.devices.entry(user).or_default();
                    match list.iter_mut().find(|(id, _)| *id == device) {
                        Some((_, known)) => *known = used,
                        None => list.push((device, used)),
                    }
                    true
                }
                None => false,
            },
            KIND_COUNTER => match decode_counter(body) {
                Some((key, count)) => {
                    if count == FailureCount::default() {
                        self.counters.remove(&key);
                    } else {
                        self.counters.insert(key, count);
                    }
                    true
                }
                None => false,
            },
            KIND_AUDIT => match body.get(..8) {
                Some(id) => {
                    let id = u64::from_le_bytes(id.try_into().unwrap_or_default());
                    self.next_audit_id = self.next_audit_id.max(id.saturating_add(1));
                    true
                }
                None => false,
            },
            _ => false,
        }
    }
}

/// Reads one frame's payload into `payload`; `None` at the end or at a torn or corrupt frame.
fn read_frame(reader: &mut impl Read, payload: &mut Vec<u8>) -> Option<u32> {
    let mut header = [0u8; 8];
    reader.read_exact(&mut header).ok()?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len == 0 || len > MAX_PAYLOAD {
        return None;
    }
    payload.resize(len as usize, 0);
    reader.read_exact(payload).ok()?;
    let mut trailer = [0u8; 4];
    reader.read_exact(&mut trailer).ok()?;
    (u32::from_le_bytes(trailer) == len && crc32fast::hash(payload) == crc).then_some(len)
}

fn read_snapshot(path: &Path) -> Result<Option<ReplayState>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    let bad = || StoreError::corrupt(format!("{}: not a valid snapshot", path.display()));
    let (body, crc) = bytes
        .split_at_checked(bytes.len().saturating_sub(4))
        .ok_or_else(bad)?;
    if crc32fast::hash(body).to_le_bytes() != crc {
        return Err(bad());
    }
    let mut header = Decoder(body);
    let magic: [u8; 8] = header.bytes().ok_or_else(bad)?;
    let position = match &magic {
        SNAPSHOT_MAGIC => Position {
            segment: header.u64().ok_or_else(bad)?,
            offset: header.u64().ok_or_else(bad)?,
        },
        SNAPSHOT_MAGIC_ONE_FILE => Position {
            segment: 1,
            offset: header.u64().ok_or_else(bad)?,
        },
        _ => return Err(bad()),
    };
    let mut state = ReplayState {
        position,
        next_audit_id: header.u64().ok_or_else(bad)?,
        ..ReplayState::default()
    };
    let mut frames = header.0;
    let mut payload = Vec::new();
    while !frames.is_empty() {
        read_frame(&mut frames, &mut payload).ok_or_else(bad)?;
        if !state.apply(&payload) {
            return Err(bad());
        }
    }
    Ok(Some(state))
}

/// Walks a segment's frames from the end towards the start.
struct Backward<'a> {
    file: &'a File,
    pos: u64,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_start: u64,
}

impl<'a> Backward<'a> {
    /// A reader of the frames before `end`.
    fn new(file: &'a File, end: u64) -> Backward<'a> {
        Backward {
            file,
            pos: end,
            buf: Vec::new(),
            buf_start: end,
        }
    }

    fn next_payload(&mut self) -> std::result::Result<Option<Vec<u8>>, String> {
        if self.pos == 0 {
            return Ok(None);
        }
        let pos = self.pos;
        let trailer = self.range(pos.checked_sub(4).ok_or("truncated frame")?, pos)?;
        let len = u64::from(u32::from_le_bytes(
            trailer.try_into().map_err(|_| "truncated frame")?,
        ));
        let start = pos
            .checked_sub(12 + len)
            .ok_or("frame length past the start")?;
        let frame = self.range(start, pos)?;
        let header_len = u64::from(u32::from_le_bytes(
            frame[..4].try_into().map_err(|_| "truncated frame")?,
        ));
        let crc = u32::from_le_bytes(frame[4..8].try_into().map_err(|_| "truncated frame")?);
        let payload = &frame[8..frame.len() - 4];
        if header_len != len || crc32fast::hash(payload) != crc {
            return Err(format!("corrupt frame ending at offset {pos}"));
        }
        let payload = payload.to_vec();
        self.pos = start;
        Ok(Some(payload))
    }

    /// Bytes `[from, to)` of the file, reading backwards in chunks.
    fn range(&mut self, from: u64, to: u64) -> std::result::Result<&[u8], String> {
        let buf_end = self.buf_start + self.buf.len() as u64;
        if from < self.buf_start || to > buf_end {
            let start = to.saturating_sub(READ_CHUNK).min(from);
            self.buf
                .resize(usize::try_from(to - start).map_err(|e| e.to_string())?, 0);
            self.file
                .read_exact_at(&mut self.buf, start)
                .map_err(|e| e.to_string())?;
            self.buf_start = start;
        }
        let lo = usize::try_from(from - self.buf_start).map_err(|e| e.to_string())?;
        let hi = usize::try_from(to - self.buf_start).map_err(|e| e.to_string())?;
        Ok(&self.buf[lo..hi])
    }
}

// ---- encoding ----

/// Appends one frame whose payload `encode` writes.
fn frame(out: &mut Vec<u8>, encode: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    encode(out);
    let len = u32::try_from(out.len() - start - 8).unwrap_or(u32::MAX);
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Names and audit details are short; a longer string is cut at a character boundary.
    let mut n = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    out.extend_from_slice(&u16::try_from(n).unwrap_or(u16::MAX).to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..n]);
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
        None => out.push(0),
    }
}

fn put_opt_i64(out: &mut Vec<u8>, v: Option<i64>) {
    match v {
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&v.to_le_bytes());
        }
        None => out.push(0),
    }
}

fn encode_device(out: &mut Vec<u8>, user: &str, device: &str, used: DeviceUse) {
    out.push(KIND_DEVICE);
    put_str(out, user);
    put_str(out, device);
    put_opt_i64(
        out,
        used.last_step.map(|s| i64::from_le_bytes(s.to_le_bytes())),
    );
    out.extend_from_slice(&used.drift.to_le_bytes());
    put_opt_i64(out, used.last_used);
}

fn encode_counter(out: &mut Vec<u8>, key: &str, count: FailureCount) {
    out.push(KIND_COUNTER);
    put_str(out, key);
    out.extend_from_slice(&count.failures.to_le_bytes());
    out.extend_from_slice(&count.last_failure.to_le_bytes());
    put_opt_i64(out, count.locked_at);
    out.extend_from_slice(&count.locks.to_le_bytes());
}

fn encode_audit(out: &mut Vec<u8>, id: u64, event: &AuditEntry<'_>) {
    out.push(KIND_AUDIT);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&event.time.to_le_bytes());
    put_str(out, event.actor);
    put_str(out, event.action);
    put_opt_str(out, event.user);
    put_str(out, event.outcome);
    put_opt_str(out, event.detail);
}

struct Decoder<'a>(&'a [u8]);

impl Decoder<'_> {
    fn bytes<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.bytes::<1>().map(|[b]| b)
    }

    fn u32(&mut self) -> Option<u32> {
        self.bytes().map(u32::from_le_bytes)
    }

    fn i64(&mut self) -> Option<i64> {
        self.bytes().map(i64::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.bytes().map(u64::from_le_bytes)
    }

    fn str(&mut self) -> Option<String> {
        let n = usize::from(u16::from_le_bytes(self.bytes()?));
        let (s, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        String::from_utf8(s.to_vec()).ok()
    }

    fn opt_str(&mut self) -> Option<Option<String>> {
        match self.u8()? {
            0 => Some(None),
            1 => self.str().map(Some),
            _ => None,
        }
    }

    fn opt_i64(&mut self) -> Option<Option<i64>> {
        match self.u8()? {
            0 => Some(None),
            1 => self.i64().map(Some),
            _ => None,
        }
    }

    fn done(&self) -> bool {
        self.0.is_empty()
    }
}

fn decode_device(body: &[u8]) -> Option<(String, String, DeviceUse)> {
    let mut d = Decoder(body);
    let user = d.str()?;
    let device = d.str()?;
    let last_step = d.opt_i64()?.map(|s| u64::from_le_bytes(s.to_le_bytes()));
    let drift = d.i64()?;
    let last_used = d.opt_i64()?;
    d.done().then_some((
        user,
        device,
        DeviceUse {
            last_step,
            drift,
            last_used,
        },
    ))
}

fn decode_counter(body: &[u8]) -> Option<(String, FailureCount)> {
    let mut d = Decoder(body);
    let key = d.str()?;
    let failures = d.u32()?;
    let last_failure = d.i64()?;
    let locked_at = d.opt_i64()?;
    // Frames written before locks grew end here: their run had at most the one lock they show.
    let locks = if d.done() {
        u32::from(locked_at.is_some())
    } else {
        d.u32()?
    };
    d.done().then_some((
        key,
        FailureCount {
            failures,
            last_failure,
            locked_at,
            locks,
        },
    ))
}

fn decode_audit(body: &[u8]) -> Option<AuditEvent> {
    let mut d = Decoder(body);
    let event = AuditEvent {
        id: d.u64()?,
        time: d.i64()?,
        actor: d.str()?,
        action: d.str()?,
        user: d.opt_str()?,
        outcome: d.str()?,
        detail: d.opt_str()?,
    };
    d.done().then_some(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let suffix = data_encoding::HEXLOWER.encode(&crate::crypto::random_bytes::<6>());
        let dir = std::env::temp_dir().join(format!("tf-journal-{name}-{suffix}"));
        let _ = std::fs::create_dir_all(&dir);
        dir
    }

    fn event(action: &str, user: Option<&str>) -> AuditEvent {
        AuditEvent {
            id: 0,
            time: 1_700_000_000,
            actor: "api:vpn".into(),
            action: action.into(),
            user: user.map(Into::into),
            outcome: "accept".into(),
            detail: Some("factor=totp device=d1 address=10.0.0.1".into()),
        }
    }

    fn event_at(time: i64, action: &str) -> AuditEvent {
        AuditEvent {
            time,
            ..event(action, Some("alice"))
        }
    }

    fn used(step: u64, at: i64) -> DeviceUse {
        DeviceUse {
            last_step: Some(step),
            drift: -1,
            last_used: Some(at),
        }
    }

    #[test]
    fn state_and_audit_survive_a_reopen_with_and_without_a_snapshot() -> Result<()> {
        let dir = temp_dir("reopen");
        let count = FailureCount {
            failures: 3,
            last_failure: 42,
            locked_at: Some(41),
            locks: 1,
        };
        {
            let journal = Journal::open(&dir)?;
            journal.record_device_use("u1", "d1", used(100, 5));
            journal.record_device_use("u1", "d2", used(7, 6));
            journal.update_counter("addr:10.0.0.1", |_| count);
            journal.update_counter("user:u2", |_| count);
            journal.update_counter("user:u2", |_| FailureCount::default());
            assert_eq!(journal.append_audit(&event("verify", Some("alice"))), 1);
            assert_eq!(journal.append_audit(&event("user_create", None)), 2);
            journal.sync()?;
        }
        for round in 0..3 {
            let journal = Journal::open(&dir)?;
            assert_eq!(
                journal.device_use("u1", "d1"),
                used(100, 5),
                "round {round}"
            );
            assert_eq!(journal.device_use("u1", "d2"), used(7, 6));
            assert_eq!(journal.device_use("u1", "d3"), DeviceUse::default());
            assert_eq!(journal.counter("addr:10.0.0.1"), count);
            assert_eq!(journal.counter("user:u2"), FailureCount::default());
            let events = journal.audit_newest(10, None, |_| true)?;
            let ids: Vec<u64> = events.iter().map(|e| e.id).collect();
            assert_eq!(ids, (1..=2 + 2 * round).collect::<Vec<_>>());
            assert_eq!(events[0].user.as_deref(), Some("alice"));
            assert_eq!(events[0].detail, event("verify", None).detail);
            // Appends after a snapshot are replayed on top of it.
            journal.append_audit(&event("verify", None));
            journal.sync()?;
            journal.write_snapshot(|_| Ok(true), |_| {})?;
            journal.append_audit(&event("late", None));
            journal.sync()?;
            let late = journal.audit_newest(1, None, |_| true)?;
            assert_eq!(late[0].action, "late");
        }
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn counters_pruned_at_a_snapshot_stay_pruned_and_later_updates_replay() -> Result<()> {
        let dir = temp_dir("prune");
        let count = |failures| FailureCount {
            failures,
            last_failure: 42,
            locked_at: None,
            locks: 0,
        };
        {
            let journal = Journal::open(&dir)?;
            journal.update_counter("name:a", |_| count(1));
            journal.update_counter("name:b", |_| count(2));
            journal.sync()?;
            journal.write_snapshot(
                |_| Ok(true),
                |counters| {
                    counters.remove("name:a");
                },
            )?;
            journal.update_counter("name:c", |_| count(3));
            journal.sync()?;
        }
        let journal = Journal::open(&dir)?;
        assert_eq!(journal.counter("name:a"), FailureCount::default());
        assert_eq!(journal.counter("name:b"), count(2));
        assert_eq!(journal.counter("name:c"), count(3));
        assert_eq!(journal.counter_count(), 2);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn a_burst_of_appends_leaves_no_big_buffer_behind() -> Result<()> {
        let dir = temp_dir("burst");
        let journal = Journal::open(&dir)?;
        // A full sync of 100,000 users appends an event for each before its one commit.
        let burst = 2 * KEPT_BUFFER / 80;
        for _ in 0..burst {
            journal.append_audit(&event("directory_add", Some("bulk00001")));
        }
        journal.sync()?;
        assert!(lock(&journal.writer).spare.capacity() <= KEPT_BUFFER);
        assert!(lock(&journal.tail).pending.capacity() <= KEPT_BUFFER);
        // A small batch keeps its buffer for the next one.
        journal.append_audit(&event("verify", None));
        journal.sync()?;
        assert!(lock(&journal.writer).spare.capacity() > 0);
        assert_eq!(
            journal.audit_newest(1, None, |_| true)?[0].id,
            burst as u64 + 1
        );
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn a_torn_frame_ends_the_journal_and_appends_continue_after_it() -> Result<()> {
        let dir = temp_dir("torn");
        {
            let journal = Journal::open(&dir)?;
            journal.record_device_use("u1", "d1", used(100, 5));
            journal.sync()?;
            let torn_at = lock(&journal.writer).current.end + 20;
            journal.record_device_use("u1", "d1", used(101, 6));
            journal.record_device_use("u1", "d1", used(103, 6));
            journal.sync()?;
            // A write cut short in the second frame; the third, never acknowledged, must not come back.
            lock(&journal.writer)
                .current
                .file
                .write_all_at(&[0xff; 3], torn_at)
                .map_err(|e| Error::io(&dir, e))?;
        }
        {
            let journal = Journal::open(&dir)?;
            assert_eq!(journal.device_use("u1", "d1"), used(100, 5));
            journal.record_device_use("u1", "d1", used(102, 7));
            journal.sync()?;
        }
        let journal = Journal::open(&dir)?;
        assert_eq!(journal.device_use("u1", "d1"), used(102, 7));
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn replay_protection_only_moves_forward() -> Result<()> {
        let dir = temp_dir("forward");
        let journal = Journal::open(&dir)?;
        journal.record_device_use("u1", "d1", used(100, 50));
        // A writer holding an older copy of the record cannot bring back step 90.
        journal.record_device_use("u1", "d1", used(90, 60));
        assert_eq!(
            journal.device_use("u1", "d1"),
            DeviceUse {
                last_step: Some(100),
                drift: -1,
                last_used: Some(60)
            }
        );
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn audit_queries_page_backwards_and_filter() -> Result<()> {
        let dir = temp_dir("audit");
        let journal = Journal::open(&dir)?;
        for i in 0..5000 {
            journal.record_device_use("u1", "d1", used(i, 1));
            let user = if i % 10 == 0 { "bob" } else { "alice" };
            journal.append_audit(&event("verify", Some(user)));
        }
        let bobs = journal.audit_newest(1000, None, |e| e.user.as_deref() == Some("bob"))?;
        assert_eq!(bobs.len(), 500);
        assert!(bobs.windows(2).all(|w| w[0].id < w[1].id));
        let page = journal.audit_newest(3, Some(11), |_| true)?;
        assert_eq!(page.iter().map(|e| e.id).collect::<Vec<_>>(), [8, 9, 10]);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    /// 4 KiB segments: a few dozen verifications each.
    const SMALL: u64 = 4096;
    const T0: i64 = 1_700_000_000;
    const DAY: i64 = 86_400;

    fn segment_files(dir: &Path) -> Result<Vec<u64>> {
        segment_ids(&dir.join(SEGMENT_DIR))
    }

    fn file_len(dir: &Path, id: u64) -> Result<u64> {
        let path = segment_path(&dir.join(SEGMENT_DIR), id);
        Ok(std::fs::metadata(&path)
            .map_err(|e| Error::io(&path, e))?
            .len())
    }

    fn all_audit(journal: &Journal) -> Result<Vec<AuditEvent>> {
        journal.audit_newest(usize::MAX, None, |_| true)
    }

    /// What `n` verifications append (a device's use, an address counter, an audit event each) for the
    /// users v0..v4, committed in batches of 7.
    fn verifications(journal: &Journal, from: u64, n: u64, time: i64) -> Result<()> {
        for i in from..from + n {
            journal.record_device_use(&format!("v{}", i % 5), "d1", used(i, time));
            journal.update_counter(&format!("addr:{}", i % 3), |c| FailureCount {
                failures: c.failures + 1,
                last_failure: time,
                locked_at: None,
                locks: 0,
            });
            journal.append_audit(&event_at(time, "verify"));
            if i % 7 == 6 {
                journal.sync()?;
            }
        }
        journal.sync()
    }

    /// Appends events at `time` until the segment being written is full (the next write starts a new
    /// one); returns that segment's id.
    fn fill_segment(journal: &Journal, time: i64) -> Result<u64> {
        // The first write starts a new segment if the one being written is full.
        journal.append_audit(&event_at(time, "verify"));
        journal.sync()?;
        let id = lock(&journal.writer).current.id;
        while lock(&journal.writer).current.end < SMALL {
            journal.append_audit(&event_at(time, "verify"));
            journal.sync()?;
        }
        assert_eq!(lock(&journal.writer).current.id, id);
        Ok(id)
    }

    fn state_of(journal: &Journal) -> (Vec<DeviceUse>, Vec<FailureCount>) {
        (
            (0..5)
                .map(|u| journal.device_use(&format!("v{u}"), "d1"))
                .collect(),
            (0..3)
                .map(|a| journal.counter(&format!("addr:{a}")))
                .collect(),
        )
    }

    #[test]
    fn segments_roll_at_the_size_limit_and_replay_as_one_journal() -> Result<()> {
        let small = temp_dir("roll-small");
        let one = temp_dir("roll-one");
        let (audit, state, snapshot_at) = {
            let journal = Journal::open_with_segment_bytes(&small, SMALL)?;
            let whole = Journal::open(&one)?;
            verifications(&journal, 0, 200, T0)?;
            let snapshot_at = journal.write_snapshot(|_| Ok(true), |_| {})?;
            verifications(&journal, 200, 200, T0)?;
            verifications(&whole, 0, 400, T0)?;
            {
                // Rolls happened since the last sync; that sync covered the finished segments too.
                let writer = lock(&journal.writer);
                assert!(writer.finished.len() > 10, "{}", writer.finished.len());
                assert!(writer.unsynced.is_empty() && !writer.dir_unsynced);
            }
            let audit = all_audit(&journal)?;
            assert_eq!(audit.len(), 400);
            assert_eq!(audit, all_audit(&whole)?, "the same log as in one file");
            assert_eq!(state_of(&journal), state_of(&whole));
            (audit, state_of(&whole), snapshot_at)
        };
        let ids = segment_files(&small)?;
        assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
        assert!(snapshot_at.segment > 3 && snapshot_at.segment < ids.len() as u64 - 3);
        assert_eq!(segment_files(&one)?, [1]);
        for &id in &ids[..ids.len() - 1] {
            // Finished segments are cut to their frames: past the limit by at most a batch, no zeros.
            let len = file_len(&small, id)?;
            assert!(
                (SMALL..SMALL + 7 * 200).contains(&len),
                "segment {id}: {len}"
            );
            let path = segment_path(&small.join(SEGMENT_DIR), id);
            let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
            assert_eq!(ReplayState::default().replay(&file, 0, &path)?, len);
        }
        // Reopened twice: from the snapshot in the middle, then from the one the first reopen wrote at
        // its end; the state and the log are what they were.
        for round in 0..2 {
            let journal = Journal::open_with_segment_bytes(&small, SMALL)?;
            let reread = all_audit(&journal)?;
            assert_eq!(reread.len() as u64, 400 + round, "round {round}");
            assert!(reread[..400] == audit, "round {round}");
            assert_eq!(state_of(&journal), state, "round {round}");
            assert_eq!(journal.append_audit(&event("late", None)), 401 + round);
            journal.sync()?;
            journal.write_snapshot(|_| Ok(true), |_| {})?;
        }
        let _ = std::fs::remove_dir_all(&small);
        let _ = std::fs::remove_dir_all(&one);
        Ok(())
    }

    #[test]
    fn a_torn_frame_at_the_end_of_the_last_segment_is_cut_and_earlier_segments_stay() -> Result<()>
    {
        let dir = temp_dir("torn-last");
        let kept = {
            let journal = Journal::open_with_segment_bytes(&dir, SMALL)?;
            verifications(&journal, 0, 200, T0)?;
            let kept = all_audit(&journal)?;
            let (id, end) = {
                let writer = lock(&journal.writer);
                (writer.current.id, writer.current.end)
            };
            journal.record_device_use("v0", "d1", used(1000, T0));
            journal.append_audit(&event_at(T0, "never acknowledged"));
            journal.sync()?;
            // The write was cut short in its first frame.
            let writer = lock(&journal.writer);
            let torn_at = if writer.current.id == id { end } else { 0 } + 20;
            writer
                .current
                .file
                .write_all_at(&[0xff; 3], torn_at)
                .map_err(|e| Error::io(&dir, e))?;
            kept
        };
        let ids = segment_files(&dir)?;
        assert!(ids.len() > 5, "{ids:?}");
        let finished_lens = ids[..ids.len() - 1]
            .iter()
            .map(|&id| file_len(&dir, id))
            .collect::<Result<Vec<_>>>()?;
        {
            let journal = Journal::open_with_segment_bytes(&dir, SMALL)?;
            assert_eq!(segment_files(&dir)?, ids);
            for (&id, &len) in ids.iter().zip(&finished_lens) {
                assert_eq!(file_len(&dir, id)?, len, "segment {id} untouched");
            }
            assert_eq!(all_audit(&journal)?, kept);
            assert_eq!(journal.device_use("v0", "d1"), used(195, T0));
            journal.record_device_use("v0", "d1", used(1001, T0));
            journal.sync()?;
        }
        let journal = Journal::open_with_segment_bytes(&dir, SMALL)?;
        assert_eq!(journal.device_use("v0", "d1"), used(1001, T0));
        assert_eq!(all_audit(&journal)?, kept);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn a_torn_frame_in_a_finished_segment_drops_the_later_ones() -> Result<()> {
        // A crash right after a roll: the new segment's frames reached the disk, the old segment's last
        // one did not. None of them was acknowledged: the journal ends before the torn frame.
        let dir = temp_dir("torn-finished");
        {
            let journal = Journal::open_with_segment_bytes(&dir, SMALL)?;
            verifications(&journal, 0, 100, T0)?;
        }
        let ids = segment_files(&dir)?;
        assert!(ids.len() > 3, "{ids:?}");
        let torn = ids[ids.len() - 3];
        let path = segment_path(&dir.join(SEGMENT_DIR), torn);
        let file = open_segment(&path)?;
        let len = file_len(&dir, torn)?;
        // Batches end with an audit frame, and segments roll between batches.
        let last = last_audit(&file, len)
            .map_err(|e| corrupt(&path, e))?
            .ok_or_else(|| corrupt(&path, "no audit event"))?;
        file.write_all_at(&[0xff; 2], len - 6)
            .map_err(|e| Error::io(&path, e))?;
        let journal = Journal::open_with_segment_bytes(&dir, SMALL)?;
        assert_eq!(segment_files(&dir)?, ids[..ids.len() - 2]);
        let ids_kept: Vec<u64> = all_audit(&journal)?.iter().map(|e| e.id).collect();
        assert_eq!(ids_kept, (1..last.id).collect::<Vec<_>>());
        assert_eq!(journal.append_audit(&event("next", None)), last.id);
        journal.sync()?;
        assert_eq!(journal.audit_newest(1, None, |_| true)?[0].action, "next");
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn audit_queries_page_backwards_across_segments() -> Result<()> {
        let dir = temp_dir("audit-segments");
        let journal = Journal::open_with_segment_bytes(&dir, SMALL)?;
        for i in 0..2000 {
            let user = if i % 10 == 0 { "bob" } else { "alice" };
            journal.append_audit(&event("verify", Some(user)));
            if i % 50 == 49 {
                journal.sync()?;
            }
        }
        journal.sync()?;
        assert!(segment_files(&dir)?.len() > 20);
        let mut pages = Vec::new();
        let mut before = None;
        loop {
            let page = journal.audit_newest(7, before, |_| true)?;
            let Some(first) = page.first() else { break };
            assert!(page.len() <= 7);
            before = Some(first.id);
            pages.push(page);
        }
        let ids: Vec<u64> = pages.iter().rev().flatten().map(|e| e.id).collect();
        assert_eq!(ids, (1..=2000).collect::<Vec<_>>());
        // A page across a boundary: the last events of segment 2 and the first of segment 3.
        let path = segment_path(&dir.join(SEGMENT_DIR), 3);
        let third = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let boundary = first_audit(&third, file_len(&dir, 3)?)
            .map_err(|e| corrupt(&path, e))?
            .map_or(0, |e| e.id);
        assert!(boundary > 1);
        let page = journal.audit_newest(4, Some(boundary + 2), |_| true)?;
        assert_eq!(
            page.iter().map(|e| e.id).collect::<Vec<_>>(),
            (boundary - 2..boundary + 2).collect::<Vec<_>>()
        );
        let bobs = journal.audit_newest(1000, None, |e| e.user.as_deref() == Some("bob"))?;
        assert_eq!(bobs.len(), 200);
        assert!(bobs.windows(2).all(|w| w[0].id < w[1].id));
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn retention_drops_the_oldest_segments_past_it_and_before_the_snapshot_only() -> Result<()> {
        let dir = temp_dir("retention");
        let journal = Journal::open_with_segment_bytes(&dir, SMALL)?;
        // Segments 1-5 with their events' times (4 after a clock set back); 6 is being written.
        let times = [T0, T0 + 1000, T0 + 50 * DAY, T0 + 2000, T0 + 60 * DAY];
        for (i, &time) in times.iter().enumerate() {
            assert_eq!(fill_segment(&journal, time)?, i as u64 + 1);
        }
        journal.append_audit(&event_at(T0 + 61 * DAY, "verify"));
        let end = journal.write_snapshot(|_| Ok(true), |_| {})?;
        assert_eq!(end.segment, 6);
        let at = |segment| Position { segment, offset: 0 };
        let ids = |before: Position, cutoff: i64| -> Result<Vec<u64>> {
            Ok(journal
                .expired_segments(before, cutoff)?
                .map(|e| e.ids)
                .unwrap_or_default())
        };
        // (snapshot's position, events older than this go, segments dropped)
        let table: [(Position, i64, &[u64]); 7] = [
            (end, T0 + 40 * DAY, &[1, 2]), // 3 is recent, so 4 stays behind it
            (at(2), T0 + 40 * DAY, &[1]),  // the snapshot's segment and later ones stay
            (at(1), T0 + 40 * DAY, &[]),
            (end, T0 + 55 * DAY, &[1, 2, 3, 4]),
            (end, T0 + 1000 * DAY, &[1, 2, 3, 4, 5]), // never 6, which is being written
            (end, T0 + 1000, &[1]),                   // 2's newest event is at the cutoff: kept
            (end, T0, &[]),
        ];
        for (row, (before, cutoff, expected)) in table.into_iter().enumerate() {
            assert_eq!(ids(before, cutoff)?, expected, "row {row}");
        }
        let expired = journal
            .expired_segments(end, T0 + 40 * DAY)?
            .ok_or_else(|| StoreError::corrupt("nothing expired"))?;
        let first_of_3 = {
            let path = segment_path(&dir.join(SEGMENT_DIR), 3);
            let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
            first_audit(&file, file_len(&dir, 3)?)
                .map_err(|e| corrupt(&path, e))?
                .map_or(0, |e| e.id)
        };
        assert_eq!(
            expired,
            ExpiredSegments {
                ids: vec![1, 2],
                bytes: file_len(&dir, 1)? + file_len(&dir, 2)?,
                oldest: Some(AuditMark { id: 1, time: T0 }),
                newest: Some(AuditMark {
                    id: first_of_3 - 1,
                    time: T0 + 1000
                }),
            }
        );
        assert_eq!(
            expired.audit_detail(),
            format!(
                "segments=2 bytes={} events=1..{} from=2023-11-14T22:13:20Z to=2023-11-14T22:30:00Z",
                expired.bytes,
                first_of_3 - 1
            )
        );
        let before_drop = journal.stats()?;
        assert_eq!(
            (before_drop.segments, before_drop.oldest_event),
            (6, Some(T0))
        );
        journal.drop_segments(&expired)?;
        assert_eq!(segment_files(&dir)?, [3, 4, 5, 6]);
        let stats = journal.stats()?;
        assert_eq!(
            (stats.segments, stats.bytes, stats.oldest_event),
            (4, before_drop.bytes - expired.bytes, Some(T0 + 50 * DAY))
        );
        assert_eq!(all_audit(&journal)?[0].id, first_of_3);
        assert!(
            journal.drop_segments(&expired).is_err(),
            "the same segments twice"
        );
        drop(journal);
        let journal = Journal::open_with_segment_bytes(&dir, SMALL)?;
        assert_eq!(all_audit(&journal)?[0].id, first_of_3);
        assert_eq!(journal.stats()?.segments, 4);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn the_segment_being_written_is_never_dropped_until_a_compaction_rolls_it() -> Result<()> {
        let dir = temp_dir("current");
        let journal = Journal::open(&dir)?;
        for _ in 0..100 {
            journal.append_audit(&event_at(T0, "verify"));
        }
        let end = journal.write_snapshot(|_| Ok(true), |_| {})?;
        let far = Position {
            segment: u64::MAX,
            offset: 0,
        };
        assert_eq!(journal.expired_segments(far, T0 + 1000 * DAY)?, None);
        assert_eq!(journal.expired_segments(end, T0 + 1000 * DAY)?, None);
        assert!(!journal.roll_if_older(T0)?, "no event older than T0");
        assert!(journal.roll_if_older(T0 + 1)?);
        assert_eq!(segment_files(&dir)?, [1, 2]);
        assert!(
            !journal.roll_if_older(i64::MAX)?,
            "an empty segment holds nothing old"
        );
        let end = journal.write_snapshot(|_| Ok(true), |_| {})?;
        assert_eq!(
            end,
            Position {
                segment: 2,
                offset: 0
            }
        );
        let expired = journal.expired_segments(end, T0 + 1)?;
        assert_eq!(expired.map(|e| e.ids), Some(vec![1]));
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn a_one_file_journal_of_an_earlier_version_becomes_segment_one_with_its_snapshot() -> Result<()>
    {
        let dir = temp_dir("one-file");
        let count = FailureCount {
            failures: 4,
            last_failure: T0,
            locked_at: None,
            locks: 0,
        };
        // The earlier layout, as it wrote it: frames, zeros kept ahead, and a snapshot of an offset
        // that holds a counter no frame after it mentions.
        let mut frames = Vec::new();
        frame(&mut frames, |b| encode_device(b, "u1", "d1", used(100, 5)));
        frame(&mut frames, |b| {
            encode_audit(b, 1, &AuditEntry::of(&event("verify", None)))
        });
        let offset = frames.len() as u64;
        frame(&mut frames, |b| encode_device(b, "u1", "d1", used(101, 6)));
        frame(&mut frames, |b| {
            encode_audit(b, 2, &AuditEntry::of(&event("verify", None)))
        });
        let mut one_file = frames.clone();
        one_file.resize(frames.len() + 4096, 0);
        let write = |path: PathBuf, bytes: &[u8]| {
            std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))
        };
        write(dir.join(LEGACY_JOURNAL_FILE), &one_file)?;
        let mut snapshot = SNAPSHOT_MAGIC_ONE_FILE.to_vec();
        snapshot.extend_from_slice(&offset.to_le_bytes());
        snapshot.extend_from_slice(&2u64.to_le_bytes());
        frame(&mut snapshot, |b| {
            encode_device(b, "u1", "d1", used(100, 5))
        });
        frame(&mut snapshot, |b| encode_counter(b, "user:u1", count));
        let crc = crc32fast::hash(&snapshot);
        snapshot.extend_from_slice(&crc.to_le_bytes());
        write(dir.join(SNAPSHOT_FILE), &snapshot)?;
        {
            let journal = Journal::open(&dir)?;
            assert!(!dir.join(LEGACY_JOURNAL_FILE).exists());
            assert_eq!(segment_files(&dir)?, [1]);
            assert_eq!(journal.counter("user:u1"), count, "the snapshot was read");
            assert_eq!(
                journal.device_use("u1", "d1"),
                used(101, 6),
                "the frames after its offset replayed on top"
            );
            let ids: Vec<u64> = all_audit(&journal)?.iter().map(|e| e.id).collect();
            assert_eq!(ids, [1, 2]);
            assert_eq!(journal.append_audit(&event("verify", None)), 3);
            journal.write_snapshot(|_| Ok(true), |_| {})?;
        }
        let snapshot = std::fs::read(dir.join(SNAPSHOT_FILE)).map_err(|e| Error::io(&dir, e))?;
        assert_eq!(&snapshot[..8], SNAPSHOT_MAGIC);
        {
            let journal = Journal::open(&dir)?;
            assert_eq!(journal.counter("user:u1"), count);
            assert_eq!(journal.device_use("u1", "d1"), used(101, 6));
            let ids: Vec<u64> = all_audit(&journal)?.iter().map(|e| e.id).collect();
            assert_eq!(ids, [1, 2, 3]);
        }
        // Both layouts at once (an old file restored by mistake) are refused, not merged.
        write(dir.join(LEGACY_JOURNAL_FILE), &one_file)?;
        let refused = Journal::open(&dir).err().map(|e| e.to_string());
        assert!(
            refused.as_deref().is_some_and(|e| e.contains("both exist")),
            "{refused:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn after_dropping_segments_a_reopen_keeps_replay_protection_and_locks() -> Result<()> {
        let dir = temp_dir("dropped-reopen");
        let locked = FailureCount {
            failures: 10,
            last_failure: T0,
            locked_at: Some(T0),
            locks: 1,
        };
        {
            let journal = Journal::open_with_segment_bytes(&dir, SMALL)?;
            // Only segment 1 records u1's last step and its lock.
            journal.record_device_use("u1", "d1", used(100, T0));
            journal.update_counter("user:u1", |_| locked);
            assert_eq!(fill_segment(&journal, T0)?, 1);
            for segment in 2..=4 {
                assert_eq!(fill_segment(&journal, T0 + 10 * DAY)?, segment);
            }
            journal.append_audit(&event_at(T0 + 10 * DAY, "verify"));
            let end = journal.write_snapshot(|_| Ok(true), |_| {})?;
            let expired = journal
                .expired_segments(end, T0 + DAY)?
                .ok_or_else(|| StoreError::corrupt("nothing expired"))?;
            assert_eq!(expired.ids, [1]);
            journal.drop_segments(&expired)?;
        }
        {
            let journal = Journal::open_with_segment_bytes(&dir, SMALL)?;
            assert_eq!(segment_files(&dir)?, [2, 3, 4, 5]);
            assert_eq!(journal.device_use("u1", "d1"), used(100, T0));
            assert_eq!(journal.counter("user:u1"), locked);
            assert_eq!(journal.stats()?.oldest_event, Some(T0 + 10 * DAY));
        }
        // Without its snapshot that state is gone with segment 1: a start refuses rather than forget it.
        let snapshot = dir.join(SNAPSHOT_FILE);
        let mut bytes = std::fs::read(&snapshot).map_err(|e| Error::io(&snapshot, e))?;
        bytes[20] ^= 0xff;
        std::fs::write(&snapshot, &bytes).map_err(|e| Error::io(&snapshot, e))?;
        let refused = Journal::open_with_segment_bytes(&dir, SMALL)
            .err()
            .map(|e| e.to_string());
        assert!(
            refused
                .as_deref()
                .is_some_and(|e| e.contains("unreadable") && e.contains("before 2")),
            "{refused:?}"
        );
        // An admin who deletes it starts with what the remaining segments hold.
        std::fs::remove_file(&snapshot).map_err(|e| Error::io(&snapshot, e))?;
        let journal = Journal::open_with_segment_bytes(&dir, SMALL)?;
        assert_eq!(journal.counter("user:u1"), FailureCount::default());
        assert_eq!(
            all_audit(&journal)?.first().map(|e| e.time),
            Some(T0 + 10 * DAY)
        );
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    /// Drops `dir`'s files from the page cache, so a replay reads them from the disk.
    fn evict_from_cache(dir: &Path) -> Result<()> {
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let path = entry.map_err(|e| Error::io(dir, e))?.path();
            if path.is_dir() {
                evict_from_cache(&path)?;
            } else {
                let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
                file.sync_all().map_err(|e| Error::io(&path, e))?;
                nix::fcntl::posix_fadvise(
                    &file,
                    0,
                    0,
                    nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
                )
                .map_err(|e| Error::Store(StoreError::Advice(e)))?;
            }
        }
        Ok(())
    }

    /// A measurement, not a check (see docs/BENCHMARKS.md): how long an open takes to replay a journal
    /// of 1,000,000 frames (500,000 verifications: a device frame and an audit event each), from the
    /// page cache and from the disk.
    #[test]
    #[ignore = "a benchmark: run with --ignored --nocapture"]
    fn replay_time_of_a_million_frames() -> Result<()> {
        let dir = temp_dir("replay-bench");
        let verifications = 500_000u64;
        {
            let journal = Journal::open(&dir)?;
            for i in 0..verifications {
                let user = format!("user{:05}", i % 10_000);
                journal.record_device_use(&user, "d1", used(i, 1_700_000_000));
                journal.append_audit(&event("verify", Some(&user)));
                if i % 10_000 == 9_999 {
                    journal.sync()?;
                }
            }
            journal.sync()?;
        }
        // Three times from the page cache (a shared machine's noise shows in their spread), once from
        // the disk, then once more from a snapshot written at the end (what a start after a compaction
        // replays: nothing).
        for (round, from) in ["cache", "cache", "cache", "disk", "snapshot"]
            .into_iter()
            .enumerate()
        {
            match from {
                "disk" => evict_from_cache(&dir)?,
                "snapshot" => {
                    Journal::open(&dir)?.write_snapshot(|_| Ok(true), |_| {})?;
                }
                _ => {}
            }
            let started = std::time::Instant::now();
            let journal = Journal::open(&dir)?;
            let took = started.elapsed();
            let stats = journal.stats()?;
            eprintln!(
                "open {round}: 1,000,000 frames ({} bytes in {} segments) replayed from the {from}: {took:?}",
                stats.bytes, stats.segments
            );
            assert_eq!(
                journal.device_use("user09999", "d1"),
                used(verifications - 1, 1_700_000_000)
            );
            assert_eq!(
                journal.audit_newest(1, None, |_| true)?[0].id,
                verifications
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
