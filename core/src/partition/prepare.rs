//! Segment preparation: the next segment's file is made ready before the writer needs it, so
//! a roll never waits for file-system allocation and small durable appends land in blocks
//! that already hold data (see `docs/ARCHITECTURE.md`, "Segment preparation", for the
//! measurements).
//!
//! Policies ([`SegmentPreparation`]):
//! - `Grow`: nothing is prepared; a roll creates an empty file that appends grow.
//! - `Fallocate`: the spare is `fallocate`d to the segment size (unwritten extents).
//! - `ZeroFill`: zeros are written over the spare, one chunk at a time, at most one chunk in
//!   flight and never while the partition has log writes waiting, so preparation yields to
//!   the writer.
//!
//! With either of the last two, segments deleted by retention are recycled as the spare
//! (their blocks hold data already, for free). Old bytes in a recycled file are harmless:
//! reads stop at the written end, recovery stops at the first batch whose offset does not
//! continue the log (a recycled file's batches all have offsets below the log start) and cuts
//! the file there.
//!
//! The spare is filled as `prepared.segment.tmp` and renamed to `prepared.segment` once
//! synced; on open a `prepared.segment` of the right size is adopted, a `.tmp` one removed.

use tidelog_io::{AlignedBuf, FileId, Op, OpenOptions, Submission};

use crate::config::SegmentPreparation;
use crate::error::{Error, Result};
use crate::partition::io::{self, ShardIo};
use crate::partition::{OpKind, Partition};

/// File name of a ready spare segment.
pub(crate) const SPARE_READY: &str = "prepared.segment";
/// File name of a spare being prepared (removed on open).
pub(crate) const SPARE_FILLING: &str = "prepared.segment.tmp";

/// Bytes of zeros per preparation write.
const ZERO_CHUNK_BYTES: usize = 1024 * 1024;

#[derive(Debug)]
pub(crate) enum SpareState {
    /// Writing zeros; `next` is the next position.
    Filling { next: u64 },
    /// `fallocate` submitted.
    Allocating,
    /// The final `fdatasync` is in flight.
    Syncing,
    /// Ready to become the next segment.
    Ready,
}

#[derive(Debug)]
pub(crate) struct Spare {
    pub file: FileId,
    pub state: SpareState,
    pub size: u64,
    /// An operation is in flight.
    pub busy: bool,
    /// Zeros, reused chunk after chunk.
    zeros: Option<AlignedBuf>,
}

impl Spare {
    /// A ready spare adopted from disk.
    pub fn ready(file: FileId, size: u64) -> Self {
        Spare { file, state: SpareState::Ready, size, busy: false, zeros: None }
    }
}

impl Partition {
    /// Advance preparation of the next segment by at most one operation.
    pub(super) fn prepare_step(&mut self, io: &mut ShardIo<'_>) {
        let policy = io.settings.preparation;
        // After a failed preparation (a full disk, EIO), rolls grow files: retrying at once
        // would only fail again, in a loop that keeps the shard busy.
        if policy == SegmentPreparation::Grow
            || self.prepare_failed
            || self.failed.is_some()
            || self.draining
            || !io.has_room(1)
        {
            return;
        }
        if self.spare.is_none() {
            // Start once the active segment is half full.
            if self.active().size_bytes * 2 < self.config.segment_size_bytes {
                return;
            }
            match self.create_spare(io, policy) {
                Ok(spare) => self.spare = Some(spare),
                Err(err) => {
                    tracing::warn!(topic = %self.topic, partition = self.id, error = %err, "cannot prepare the next segment");
                    return;
                }
            }
        }
        // Preparation yields to the writer.
        if !self.sealed.is_empty() || self.writes.iter().any(|w| !w.done) {
            return;
        }
        let segment_size = self.config.segment_size_bytes;
        let slot = self.slot;
        let seq = self.next_seq();
        let Some(spare) = self.spare.as_mut() else { return };
        if spare.busy {
            return;
        }
        let op = match spare.state {
            SpareState::Filling { next } if next < segment_size => {
                let len = ZERO_CHUNK_BYTES.min((segment_size - next) as usize);
                let mut buf = spare
                    .zeros
                    .take()
                    .unwrap_or_else(|| AlignedBuf::with_capacity(ZERO_CHUNK_BYTES));
                buf.clear();
                buf.extend_zeroed(len);
                Op::Write { file: spare.file, offset: next, buf }
            }
            SpareState::Filling { .. } => {
                spare.state = SpareState::Syncing;
                Op::SyncData { file: spare.file }
            }
            SpareState::Allocating => {
                Op::Allocate { file: spare.file, offset: 0, len: segment_size }
            }
            SpareState::Syncing | SpareState::Ready => return,
        };
        match io.submit(Submission::new(io::token(slot, seq), op)) {
            Ok(()) => {
                spare.busy = true;
                self.ops.insert(seq, OpKind::Prepare);
            }
            Err(rejected) => spare.zeros = rejected.op.into_buf(),
        }
    }

    fn create_spare(&mut self, io: &mut ShardIo<'_>, policy: SegmentPreparation) -> Result<Spare> {
        let path = self.dir.join(SPARE_FILLING);
        let file = io
            .storage
            .open(&path, OpenOptions::create())
            .map_err(|e| Error::io("create", &path, e))?;
        io.storage.set_len(file, 0).map_err(|e| Error::io("truncate", &path, e))?;
        let state = match policy {
            SegmentPreparation::Fallocate => SpareState::Allocating,
            _ => SpareState::Filling { next: 0 },
        };
        Ok(Spare { file, state, size: self.config.segment_size_bytes, busy: false, zeros: None })
    }

    /// A preparation operation completed.
    pub(super) fn on_prepare(&mut self, io: &mut ShardIo<'_>, completion: tidelog_io::Completion) {
        let Some(spare) = self.spare.as_mut() else { return };
        spare.busy = false;
        let n = match completion.result {
            Ok(n) => n,
            Err(err) => {
                // Nothing acknowledged lives in the spare: give it up, keep writing.
                tracing::warn!(topic = %self.topic, partition = self.id, error = %err, "segment preparation failed; rolls will grow files");
                self.drop_spare(io);
                self.prepare_failed = true;
                return;
            }
        };
        match spare.state {
            SpareState::Filling { next } => {
                spare.state = SpareState::Filling { next: next + n as u64 };
                spare.zeros = completion.buf;
            }
            SpareState::Allocating => spare.state = SpareState::Filling { next: spare.size },
            SpareState::Syncing => {
                spare.state = SpareState::Ready;
                let (from, to) = (self.dir.join(SPARE_FILLING), self.dir.join(SPARE_READY));
                if let Err(err) = io.storage.rename(&from, &to) {
                    tracing::warn!(error = %err, "cannot mark the prepared segment ready");
                }
            }
            SpareState::Ready => {}
        }
    }

    /// Close and remove the spare.
    pub(super) fn drop_spare(&mut self, io: &mut ShardIo<'_>) {
        if let Some(spare) = self.spare.take() {
            let _ = io.storage.close(spare.file);
            for name in [SPARE_FILLING, SPARE_READY] {
                let _ = io.storage.remove_file(&self.dir.join(name));
            }
        }
    }

    /// On a roll: rename a ready spare to the new segment's log name and return its file.
    pub(super) fn take_ready_spare(
        &mut self,
        io: &mut ShardIo<'_>,
        base: u64,
    ) -> Result<Option<FileId>> {
        if !self.spare.as_ref().is_some_and(|s| matches!(s.state, SpareState::Ready) && !s.busy) {
            return Ok(None);
        }
        let Some(spare) = self.spare.take() else { return Ok(None) };
        let to = crate::segment::log_path(&self.dir, base);
        let from = self.dir.join(SPARE_READY);
        io.storage.rename(&from, &to).map_err(|e| Error::io("rename", &from, e))?;
        Ok(Some(spare.file))
    }

    /// Retention is deleting the segment whose log is at `path` (open as `file`, if it is;
    /// closed either way): keep it as the spare if there is none. Returns true if the log
    /// was moved to the spare's name (even if it could not be opened as the spare then: the
    /// next open adopts it).
    pub(super) fn recycle_segment_file(
        &mut self,
        io: &mut ShardIo<'_>,
        file: Option<FileId>,
        path: &std::path::Path,
    ) -> bool {
        if io.settings.preparation == SegmentPreparation::Grow
            || self.spare.is_some()
            || self.prepare_failed
        {
            if let Some(file) = file {
                let _ = io.storage.close(file);
            }
            return false;
        }
        // A closed segment's log may be open read-only: reopen it for writing.
        if let Some(file) = file {
            let _ = io.storage.close(file);
        }
        let to = self.dir.join(SPARE_READY);
        if io.storage.rename(path, &to).is_err() {
            return false;
        }
        let options = OpenOptions::read_write().direct(io.settings.direct_io);
        let Ok(file) = io.storage.open(&to, options) else { return true };
        let Ok(size) = io.storage.file_len(file) else {
            let _ = io.storage.close(file);
            return true;
        };
        self.spare = Some(Spare::ready(file, size));
        true
    }
}
