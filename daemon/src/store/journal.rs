//! The journal: what changes on every verification, kept out of sled.
//!
//! A verification changes a few bytes: a device's last used time step (replay protection), a failure
//! counter, and one audit event. Writing them as sled records costs a JSON encode, a B-tree node copy and
//! a share of sled's log writer each; here they are small binary frames appended to one file, and the
//! group commit makes them durable with one `fdatasync` for every request waiting at that moment.
//!
//! - Device use (last step, drift, last used) and failure counters live in memory, written through to the
//!   journal; the journal is replayed at start. `journal.snapshot` holds the state as of an offset of the
//!   journal, written at each start, so a start replays only what was appended since the previous one.
//! - Audit events are only ever appended, and never rewritten: the journal is the audit log, read
//!   newest-first for the admin's audit queries.
//! - Frame: `len u32 | crc32(payload) u32 | payload | len u32`, little-endian. The trailing length lets
//!   the audit reader walk backwards. A torn or corrupt frame can only be at the end (one writer,
//!   acknowledged only after `fdatasync`): replay stops there and zeroes what follows the last good frame.
//! - The file is kept zero-filled `PREALLOCATE` bytes ahead of its last frame, so a commit overwrites
//!   blocks the file already has: its `fdatasync` then writes data only, without a metadata journal commit
//!   (on ext4 about half the time and CPU of an append). A zero length ends the frames.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use twofold_wire::admin::AuditEvent;

use crate::error::{Error, Result};
use crate::lockout::FailureCount;

const JOURNAL_FILE: &str = "journal";
const SNAPSHOT_FILE: &str = "journal.snapshot";
const SNAPSHOT_MAGIC: &[u8; 8] = b"TFSNAP01";

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
/// How far ahead of the last frame the file is zero-filled.
const PREALLOCATE: u64 = 8 * 1024 * 1024;

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

pub(super) struct Journal {
    path: PathBuf,
    snapshot_path: PathBuf,
    file: File,
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
    /// Where the file's frames end.
    end: u64,
    /// The file's length: zeros from `end` to here.
    allocated: u64,
    /// How much of it `fdatasync` has covered.
    synced: u64,
    /// The previous batch's buffer, reused so appends rarely allocate (unless it grew past `KEPT_BUFFER`).
    spare: Vec<u8>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these cannot leave a half-applied change the journal would not
    // replay the same way, so a poisoned lock is still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Journal {
    /// Opens the journal in `dir`: loads the snapshot, replays the frames after it, and cuts off a torn
    /// last frame.
    pub fn open(dir: &Path) -> Result<Journal> {
        let path = dir.join(JOURNAL_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let snapshot_path = dir.join(SNAPSHOT_FILE);
        let mut state = match read_snapshot(&snapshot_path) {
            Ok(Some(state)) => state,
            Ok(None) => ReplayState::default(),
            Err(e) => {
                // The journal holds everything the snapshot summarises, so it can be rebuilt from it.
                tracing::warn!(error = %e, "journal snapshot unreadable, replaying the whole journal");
                ReplayState::default()
            }
        };
        let file_len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        if state.offset > file_len {
            tracing::warn!("journal snapshot is ahead of the journal, replaying the whole journal");
            state = ReplayState::default();
        }
        let end = state.replay(&file, &path)?;
        if !zeroes_after(&file, end, file_len).map_err(|e| Error::io(&path, e))? {
            tracing::warn!(
                offset = end,
                "journal ended in a torn or corrupt frame (never acknowledged); zeroed from the last good one"
            );
            zero_fill(&file, end, file_len).map_err(|e| Error::io(&path, e))?;
            file.sync_all().map_err(|e| Error::io(&path, e))?;
        }
        Ok(Journal {
            path,
            snapshot_path,
            file,
            devices: Mutex::new(state.devices),
            counters: Mutex::new(state.counters),
            snapshotting: Mutex::new(()),
            tail: Mutex::new(Tail {
                pending: Vec::new(),
                next_audit_id: state.next_audit_id,
            }),
            writer: Mutex::new(Writer {
                end,
                allocated: file_len,
                synced: end,
                spare: Vec::new(),
            }),
        })
    }

    /// Empties the journal and its snapshot (a migration rebuilds them from the old layout).
    pub fn reset(&self) -> Result<()> {
        let mut writer = lock(&self.writer);
        let mut tail = lock(&self.tail);
        self.file.set_len(0).map_err(|e| Error::io(&self.path, e))?;
        self.file.sync_all().map_err(|e| Error::io(&self.path, e))?;
        remove_if_present(&self.snapshot_path)?;
        tail.pending.clear();
        tail.next_audit_id = 1;
        writer.end = 0;
        writer.allocated = 0;
        writer.synced = 0;
        lock(&self.devices).clear();
        lock(&self.counters).clear();
        Ok(())
    }

    /// Writes the current state as the snapshot, first dropping devices of users `keep_user` rejects and
    /// letting `prune_counters` drop failure counters. Dropping needs no frame: the snapshot is the
    /// state as of its offset, and a replay starts from it. The state is encoded under the locks and
    /// written out after them, so verifications wait for the encoding only, not the file's fsync.
    pub fn write_snapshot(
        &self,
        keep_user: impl Fn(&str) -> Result<bool>,
        prune_counters: impl FnOnce(&mut HashMap<String, FailureCount>),
    ) -> Result<()> {
        // One snapshot at a time: an older one must never replace a newer one.
        let _one_at_a_time = lock(&self.snapshotting);
        let out = {
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
            let next_audit_id = lock(&self.tail).next_audit_id;
            let mut out = Vec::with_capacity(64 + devices.len() * 64 + counters.len() * 48);
            out.extend_from_slice(SNAPSHOT_MAGIC);
            out.extend_from_slice(&writer.end.to_le_bytes());
            out.extend_from_slice(&next_audit_id.to_le_bytes());
            for (user, list) in devices.iter() {
                for (device, used) in list {
                    frame(&mut out, |b| encode_device(b, user, device, *used));
                }
            }
            for (key, count) in counters.iter() {
                frame(&mut out, |b| encode_counter(b, key, *count));
            }
            out
        };
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
        write().map_err(|e| Error::io(&self.snapshot_path, e))
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
    pub fn append_audit(&self, event: &AuditEvent) -> u64 {
        let mut tail = lock(&self.tail);
        let id = tail.next_audit_id;
        tail.next_audit_id += 1;
        frame(&mut tail.pending, |b| encode_audit(b, id, event));
        id
    }

    /// Appends an event that already has an id (migrated from the old layout).
    pub fn append_audit_with_id(&self, event: &AuditEvent) {
        let mut tail = lock(&self.tail);
        tail.next_audit_id = tail.next_audit_id.max(event.id.saturating_add(1));
        frame(&mut tail.pending, |b| encode_audit(b, event.id, event));
    }

    /// The newest `limit` events with an id below `before` (all if `None`) that `keep` accepts, oldest
    /// first.
    pub fn audit_newest(
        &self,
        limit: usize,
        before: Option<u64>,
        keep: impl Fn(&AuditEvent) -> bool,
    ) -> Result<Vec<AuditEvent>> {
        // Everything appended so far goes to the file (not synced: that stays the commit's job), so a
        // query sees its own writes. Frames before `end` never change, so the scan needs no lock.
        let end = {
            let mut writer = lock(&self.writer);
            self.write_out(&mut writer)?;
            writer.end
        };
        let mut events = Vec::new();
        if limit == 0 {
            return Ok(events);
        }
        let mut reader = Backward {
            file: &self.file,
            pos: end,
            buf: Vec::new(),
            buf_start: end,
        };
        while let Some(payload) = reader.next_payload().map_err(|e| self.corrupt(e))? {
            if payload.first() != Some(&KIND_AUDIT) {
                continue;
            }
            let event =
                decode_audit(&payload[1..]).ok_or_else(|| self.corrupt("bad audit frame"))?;
            if before.is_some_and(|b| event.id >= b) {
                continue;
            }
            if keep(&event) {
                events.push(event);
                if events.len() >= limit {
                    break;
                }
            }
        }
        events.reverse();
        Ok(events)
    }

    // ---- durability ----

    /// Writes every appended frame to the file and `fdatasync`s it. Called by the group commit.
    pub fn sync(&self) -> Result<()> {
        let mut writer = lock(&self.writer);
        self.write_out(&mut writer)?;
        if writer.synced != writer.end {
            self.file
                .sync_data()
                .map_err(|e| Error::io(&self.path, e))?;
            writer.synced = writer.end;
        }
        Ok(())
    }

    fn write_out(&self, writer: &mut Writer) -> Result<()> {
        {
            let mut tail = lock(&self.tail);
            if tail.pending.is_empty() {
                return Ok(());
            }
            std::mem::swap(&mut tail.pending, &mut writer.spare);
        }
        let needed = writer.end + writer.spare.len() as u64;
        let result = self
            .preallocate(writer, needed)
            .and_then(|()| self.file.write_all_at(&writer.spare, writer.end));
        match result {
            Ok(()) => {
                writer.end += writer.spare.len() as u64;
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
                Err(Error::io(&self.path, e))
            }
        }
    }

    /// Zero-fills the file up to `PREALLOCATE` past `needed` once `needed` passes its length.
    fn preallocate(&self, writer: &mut Writer, needed: u64) -> std::io::Result<()> {
        if needed <= writer.allocated {
            return Ok(());
        }
        let target = needed + PREALLOCATE;
        zero_fill(&self.file, writer.allocated, target)?;
        writer.allocated = target;
        Ok(())
    }

    fn append(&self, encode: impl FnOnce(&mut Vec<u8>)) {
        frame(&mut lock(&self.tail).pending, encode);
    }

    fn corrupt(&self, what: impl std::fmt::Display) -> Error {
        Error::Store(format!("{}: {what}", self.path.display()))
    }
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

// ---- replay ----

#[derive(Default)]
struct ReplayState {
    /// Journal offset the state is valid at.
    offset: u64,
    next_audit_id: u64,
    devices: HashMap<String, Vec<(String, DeviceUse)>>,
    counters: HashMap<String, FailureCount>,
}

impl ReplayState {
    /// Applies the journal's frames from `self.offset` on; returns where the last good frame ends.
    fn replay(&mut self, file: &File, path: &Path) -> Result<u64> {
        self.next_audit_id = self.next_audit_id.max(1);
        let mut reader = BufReader::with_capacity(256 * 1024, file);
        reader
            .seek(SeekFrom::Start(self.offset))
            .map_err(|e| Error::io(path, e))?;
        let mut end = self.offset;
        let mut payload = Vec::new();
        while let Some(len) = read_frame(&mut reader, &mut payload) {
            if !self.apply(&payload) {
                break;
            }
            end += u64::from(len) + 12;
        }
        Ok(end)
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
    let bad = || Error::Store(format!("{}: not a valid snapshot", path.display()));
    let (body, crc) = bytes
        .split_at_checked(bytes.len().saturating_sub(4))
        .ok_or_else(bad)?;
    if body.len() < 24 || &body[..8] != SNAPSHOT_MAGIC || crc32fast::hash(body).to_le_bytes() != crc
    {
        return Err(bad());
    }
    let mut state = ReplayState {
        offset: u64::from_le_bytes(body[8..16].try_into().map_err(|_| bad())?),
        next_audit_id: u64::from_le_bytes(body[16..24].try_into().map_err(|_| bad())?),
        ..ReplayState::default()
    };
    let mut frames = &body[24..];
    let mut payload = Vec::new();
    while !frames.is_empty() {
        read_frame(&mut frames, &mut payload).ok_or_else(bad)?;
        if !state.apply(&payload) {
            return Err(bad());
        }
    }
    Ok(Some(state))
}

/// Walks the journal's frames from the end towards the start.
struct Backward<'a> {
    file: &'a File,
    pos: u64,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_start: u64,
}

impl Backward<'_> {
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
}

fn encode_audit(out: &mut Vec<u8>, id: u64, event: &AuditEvent) {
    out.push(KIND_AUDIT);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&event.time.to_le_bytes());
    put_str(out, &event.actor);
    put_str(out, &event.action);
    put_opt_str(out, event.user.as_deref());
    put_str(out, &event.outcome);
    put_opt_str(out, event.detail.as_deref());
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
    d.done().then_some((
        key,
        FailureCount {
            failures,
            last_failure,
            locked_at,
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
            let torn_at = lock(&journal.writer).end + 20;
            journal.record_device_use("u1", "d1", used(101, 6));
            journal.record_device_use("u1", "d1", used(103, 6));
            journal.sync()?;
            // A write cut short in the second frame; the third, never acknowledged, must not come back.
            journal
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
}
