//! A partition: an append-only sequence of record batches with dense offsets, stored as a list
//! of segments of which the last is active.
//!
//! A partition belongs to one shard thread and is driven by it: the shard hands it requests
//! (append, read, lookups), the completions of the operations it submitted, and periodic
//! ticks. Nothing here blocks on the append path: appends are copied into a write buffer and
//! written by operations submitted to the shard's storage; acknowledgements follow the
//! completions.
//!
//! Offsets a partition tracks (`log_start ≤ durable ≤ written ≤ next`):
//! - `log_start_offset`: the first retained offset (the base of the oldest segment);
//! - `durable_offset`: records below it are covered by a completed `fdatasync` — and so is
//!   everything before them (the durable prefix never has a hole, also across segment rolls);
//! - `written_offset`: records below it have completed writes; this is the high watermark,
//!   what readers see;
//! - `next_offset`: the offset the next appended record gets.
//!
//! Group commit: while an `fdatasync` is in flight, appends accumulate in the write buffer;
//! when it completes, everything accumulated goes out as one linked write chain ending in one
//! `fdatasync`. After a failed write or sync the partition refuses writes until the engine is
//! reopened (fail-stop: retrying an fsync is not safe); reads keep working.

mod io;
mod memory;
mod prepare;
mod read;
mod recovery;
mod retention;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use tidelog_io::{AlignedBuf, BLOCK_SIZE, Completion, FileId, Op, Submission};

use crate::completion::Reply;
use crate::config::{Durability, TopicConfig};
use crate::error::{Error, Result};
use crate::record::{self, BatchView};
use crate::segment::{self, Segment};

pub(crate) use io::{RUN_NOW_TOKEN, ShardIo, ShardSettings, split_token};
pub(crate) use memory::ShardMemory;
pub(crate) use prepare::{SPARE_FILLING, SPARE_READY};
pub(crate) use read::Subscription;
pub use read::{Fetch, FetchRecords, Isolation, ReadRequest};

/// What an append returns: the offsets its records were given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendResult {
    /// Offset of the first record.
    pub base_offset: u64,
    /// Offset of the last record.
    pub last_offset: u64,
}

impl AppendResult {
    /// Number of records appended.
    pub fn record_count(&self) -> u64 {
        self.last_offset - self.base_offset + 1
    }
}

/// A segment as reported by [`PartitionInfo`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// First offset.
    pub base_offset: u64,
    /// One past the last offset.
    pub next_offset: u64,
    /// Bytes of batch data.
    pub size_bytes: u64,
    /// Largest record timestamp (-1 if none).
    pub max_timestamp: i64,
    /// True for the segment being written.
    pub active: bool,
}

/// A snapshot of a partition's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: u32,
    /// Shard that owns the partition.
    pub shard: usize,
    /// First retained offset.
    pub log_start_offset: u64,
    /// One past the last readable offset (records below it have been written).
    pub high_watermark: u64,
    /// One past the last durable offset.
    pub durable_offset: u64,
    /// Offset the next appended record gets.
    pub next_offset: u64,
    /// Segments, oldest first.
    pub segments: Vec<SegmentInfo>,
    /// Why the partition stopped accepting writes, if it did.
    pub failed: Option<String>,
    /// I/O counters since the partition was opened.
    pub stats: PartitionStats,
    /// What the partition's write path is doing right now.
    pub pending_io: PendingIo,
}

/// The state of a partition's write path: what is in flight and what waits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PendingIo {
    /// Storage operations submitted and not yet completed.
    pub ops_in_flight: usize,
    /// Log writes in flight (or waiting to be retried).
    pub writes_in_flight: usize,
    /// Short or cancelled writes waiting to be submitted again.
    pub retries_waiting: usize,
    /// Full buffers waiting to be submitted.
    pub sealed_buffers: usize,
    /// Bytes in the current write buffer.
    pub buffered_bytes: usize,
    /// An `fdatasync` of the active log is in flight.
    pub sync_in_flight: bool,
    /// Appends waiting for `Written` / `Durable`.
    pub written_waiters: usize,
    /// Appends waiting for `Durable`.
    pub durable_waiters: usize,
    /// Segments still closing.
    pub closing_segments: usize,
}

/// I/O a partition has done since it was opened: what group commit achieved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartitionStats {
    /// Log writes completed.
    pub log_writes: u64,
    /// Bytes those writes carried (including rewritten partial blocks on direct files).
    pub log_write_bytes: u64,
    /// `fdatasync`s of the active log completed.
    pub syncs: u64,
}

impl PartitionInfo {
    /// Total bytes of batch data.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size_bytes).sum()
    }
}

/// An operation in flight, by sequence number.
#[derive(Debug)]
enum OpKind {
    /// Log data for `segment`.
    Write { segment: u64, file: FileId, position: u64 },
    /// Index bytes for `segment`.
    IndexWrite { segment: u64, file: FileId, position: u64 },
    /// `fdatasync` of the active segment's log, covering offsets below `covers` and bytes
    /// below `covers_position`.
    Sync { segment: u64, covers: u64, covers_position: u64 },
    /// A step of closing `segment` (an `fdatasync` of its log or of an index).
    Close { segment: u64 },
    /// A write of a closing segment's index tail (with the close entry) at `position`.
    CloseIndexWrite { segment: u64, file: FileId, position: u64 },
    /// A step of preparing the spare segment.
    Prepare,
    /// A read of a fetch's walk through a segment file.
    FetchRead(Box<read::FetchRead>),
}

/// A log write in flight, in offset order.
#[derive(Debug)]
struct WriteInFlight {
    /// Sequence number of the operation in flight; `None` while a retry waits for room.
    seq: Option<u32>,
    segment: u64,
    end_offset: u64,
    end_position: u64,
    done: bool,
    /// The rest of a short (or cancelled) write, to be submitted again.
    retry: Option<PendingWrite>,
    /// Offset and position of the first batch the write carries, for the tail cache (`None`
    /// once retried: the rest is not cached).
    first: Option<(u64, u64)>,
}

/// Bytes of a segment waiting to be submitted.
///
/// On a direct (`O_DIRECT`) file, `position` is block-aligned, the buffer starts with the
/// bytes of the partial block before it (rewritten with more data after them) and is padded
/// with zeros to a whole block when sealed; `end_position` is where the data ends.
#[derive(Debug)]
struct PendingWrite {
    segment: u64,
    file: FileId,
    position: u64,
    end_position: u64,
    end_offset: u64,
    /// Offset and position of the first batch in the buffer (after any carried bytes).
    first: (u64, u64),
    buf: AlignedBuf,
}

/// Recently written batches kept in memory, served to readers without a storage read.
#[derive(Debug)]
struct CachedChunk {
    segment: u64,
    /// Offset of the first batch.
    base_offset: u64,
    /// One past the last offset.
    end_offset: u64,
    /// Whole batches, exactly as written.
    data: Bytes,
    /// Memory the chunk holds (its buffer's capacity, or the copy's length).
    held: usize,
}

/// An append waiting for its durability.
#[derive(Debug)]
struct Waiter {
    result: AppendResult,
    reply: Reply<AppendResult>,
}

/// One of a segment's two indexes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IndexKind {
    Offset,
    Time,
}

/// Progress of closing a rolled segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CloseStage {
    /// Waiting for its writes to complete.
    Draining,
    /// Its log `fdatasync` is in flight.
    SyncingLog,
    /// Its offset index tail is being written and synced.
    WritingOffsetIndex,
    /// Its time index tail, which ends with the close entry, is being written and synced:
    /// only after the offset index is durable, because recovery trusts a segment with a
    /// durable close entry without a scan — its offset index too. (Written side by side, a
    /// power loss could keep the close entry and lose the offset index; its rebuild stops at
    /// any damage in the log, and every intact batch after the damage became unreadable.)
    WritingTimeIndex,
    /// Closed.
    Done,
}

#[derive(Debug)]
struct Closing {
    segment: u64,
    end_offset: u64,
    /// Offsets below this were synced (in this segment's file) before it rolled: the durable
    /// offset may not pass it until the close's own `fdatasync` completes.
    synced_floor: u64,
    stage: CloseStage,
    ops: u32,
    /// A submission of its index writes was refused: its close entry must not be written.
    incomplete: bool,
}

/// One partition. See the module documentation.
#[derive(Debug)]
pub(crate) struct Partition {
    topic: Arc<str>,
    id: u32,
    shard: usize,
    dir: PathBuf,
    config: Arc<TopicConfig>,
    slot: u32,
    /// Oldest first; the last is active. Never empty.
    segments: Vec<Segment>,
    log_start_offset: u64,
    next_offset: u64,
    written_offset: u64,
    durable_offset: u64,
    /// Offsets below this are synced in the active segment's file (or earlier files).
    active_synced_offset: u64,
    /// The buffer appends are copied into.
    buffer: Option<PendingWrite>,
    /// Full buffers not yet submitted.
    sealed: VecDeque<PendingWrite>,
    /// Size class of the next write buffer (`memory::BufferClasses`): grows while appends
    /// overflow buffers, shrinks while flushes fill less than a quarter of one.
    buffer_class: usize,
    writes: VecDeque<WriteInFlight>,
    ops: HashMap<u32, OpKind>,
    next_seq: u32,
    sync_in_flight: bool,
    closing: VecDeque<Closing>,
    written_waiters: VecDeque<Waiter>,
    durable_waiters: VecDeque<Waiter>,
    parked: Vec<read::ParkedRead>,
    /// Set by a failed write or sync: the partition refuses writes.
    failed: Option<String>,
    /// Sync everything now (shutdown).
    draining: bool,
    /// The periodic background sync is due: bounds what a power loss can take from
    /// non-durable appends, and how far recovery must scan.
    sync_due: bool,
    /// The next segment's file, being prepared or ready.
    spare: Option<prepare::Spare>,
    /// Preparation failed (ENOSPC, EIO): rolls grow files from now on.
    prepare_failed: bool,
    /// On a direct active file: the bytes of the partial block at the end of the data, which
    /// the next write rewrites together with what follows them.
    tail_block: Vec<u8>,
    stats: PartitionStats,
    /// Recently written batches, oldest first (`CachedChunk`).
    tail_cache: VecDeque<CachedChunk>,
    /// Memory the tail cache holds.
    tail_cache_held: usize,
}

impl Partition {
    /// The partition number.
    pub fn id(&self) -> u32 {
        self.id
    }

    fn active(&self) -> &Segment {
        // `segments` is never empty: open() creates a first segment and retention never
        // deletes the active one.
        self.segments.last().expect("a partition always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments.last_mut().expect("a partition always has an active segment")
    }

    fn segment_mut(&mut self, base: u64) -> Option<&mut Segment> {
        self.segments.iter_mut().find(|s| s.base_offset == base)
    }

    fn failed_error(&self) -> Option<Error> {
        self.failed.as_ref().map(|cause| Error::PartitionFailed {
            topic: self.topic.to_string(),
            partition: self.id,
            cause: cause.clone(),
        })
    }

    fn next_seq(&mut self) -> u32 {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        seq
    }

    /// A snapshot for callers.
    pub fn info(&self) -> PartitionInfo {
        let active_base = self.active().base_offset;
        PartitionInfo {
            topic: self.topic.to_string(),
            partition: self.id,
            shard: self.shard,
            log_start_offset: self.log_start_offset,
            high_watermark: self.written_offset,
            durable_offset: self.durable_offset,
            next_offset: self.next_offset,
            segments: self
                .segments
                .iter()
                .map(|s| SegmentInfo {
                    base_offset: s.base_offset,
                    next_offset: s.next_offset,
                    size_bytes: s.size_bytes,
                    max_timestamp: s.max_timestamp,
                    active: s.base_offset == active_base,
                })
                .collect(),
            failed: self.failed.clone(),
            stats: self.stats,
            pending_io: PendingIo {
                ops_in_flight: self.ops.len(),
                writes_in_flight: self.writes.iter().filter(|w| !w.done).count(),
                retries_waiting: self.writes.iter().filter(|w| w.retry.is_some()).count(),
                sealed_buffers: self.sealed.len(),
                buffered_bytes: self.buffer.as_ref().map_or(0, |b| b.buf.len()),
                sync_in_flight: self.sync_in_flight,
                written_waiters: self.written_waiters.len(),
                durable_waiters: self.durable_waiters.len(),
                closing_segments: self.closing.len(),
            },
        }
    }

    /// True while operations are in flight or data waits to be written.
    pub fn is_busy(&self) -> bool {
        if self.failed.is_some() {
            // Nothing more will be submitted; only what is in flight must come back.
            return !self.ops.is_empty();
        }
        !self.ops.is_empty()
            || !self.closing.is_empty()
            || self.buffer.as_ref().is_some_and(|b| !b.buf.is_empty())
            || !self.sealed.is_empty()
            || self.writes.iter().any(|w| w.retry.is_some())
            // Written during a sync, and the sync that covers it has not gone out yet (the
            // queue was full): a drain is not over until it has.
            || (self.draining && self.written_offset > self.active_synced_offset)
    }

    /// True while a clean shutdown (or the closing of its topic) is writing and syncing
    /// everything buffered.
    pub fn is_draining(&self) -> bool {
        self.draining && self.failed.is_none()
    }

    /// True when so much is waiting to be submitted that the shard should stop taking new
    /// appends for this partition until completions drain it (backpressure): sealed buffers
    /// holding `WRITE_BUFFERS_SEALED_MAX` full-size buffers' worth, or — while buffers are
    /// still small, growing — `WRITE_BUFFERS_SEALED_COUNT_MAX` of them.
    pub fn is_backlogged(&self, write_buffer_bytes: usize) -> bool {
        let sealed_bytes: usize = self.sealed.iter().map(|p| p.buf.len()).sum();
        sealed_bytes >= crate::limits::WRITE_BUFFERS_SEALED_MAX * write_buffer_bytes
            || self.sealed.len() >= crate::limits::WRITE_BUFFERS_SEALED_COUNT_MAX
    }

    // ----------------------------------------------------------------------------------
    // Appends
    // ----------------------------------------------------------------------------------

    /// Append an encoded batch (from [`record::BatchBuilder`]): validate it, assign offsets,
    /// buffer it, and answer `reply` once `durability` is reached.
    pub fn append(
        &mut self,
        io: &mut ShardIo<'_>,
        mut batch: Vec<u8>,
        durability: Durability,
        reply: Reply<AppendResult>,
    ) {
        if let Some(err) = self.failed_error() {
            return reply.send(Err(err));
        }
        let (count, max_timestamp) = match self.check_batch(&batch) {
            Ok(checked) => checked,
            Err(err) => return reply.send(Err(err)),
        };
        let len = batch.len() as u64;
        let active = self.active();
        if !active.is_empty()
            && active.size_bytes + len > self.config.segment_size_bytes
            && let Err(err) = self.roll(io)
        {
            self.fail(&err);
            return reply.send(Err(err));
        }
        let base_offset = self.next_offset;
        record::set_base_offset(&mut batch, base_offset as i64);
        record::set_partition_leader_epoch(&mut batch, 0);
        let now = io.now_ms();
        let active = self.active_mut();
        let position = active.size_bytes;
        active.rolling_base_ms.get_or_insert(now);
        active.note_batch(position, base_offset, base_offset + count, len, max_timestamp);
        self.next_offset = base_offset + count;
        self.buffer_bytes(io, &batch, position, base_offset);
        let result = AppendResult { base_offset, last_offset: base_offset + count - 1 };
        match durability {
            Durability::None => reply.send(Ok(result)),
            Durability::Written => self.written_waiters.push_back(Waiter { result, reply }),
            Durability::Durable => self.durable_waiters.push_back(Waiter { result, reply }),
        }
    }

    /// Validate a batch about to be written (the first of the paired checks; the second is
    /// on read). Returns its record count and max timestamp.
    fn check_batch(&self, batch: &[u8]) -> Result<(u64, i64)> {
        let max = self.config.record_size_bytes_max as usize;
        if batch.len() > max {
            return Err(Error::RecordTooLarge {
                topic: self.topic.to_string(),
                size: batch.len(),
                max,
            });
        }
        let view = BatchView::parse(batch).map_err(Error::InvalidBatch)?;
        view.validate().map_err(Error::InvalidBatch)?;
        if view.total_len() != batch.len() {
            let trailing = batch.len() - view.total_len();
            return Err(Error::InvalidBatch(record::DecodeError::TrailingBytes { trailing }));
        }
        // The time index relies on the header's max timestamp bounding every record's
        // (a batch from outside the engine's own encoder might not).
        let max_timestamp = view.max_timestamp();
        for (index, record) in view.records().map_err(Error::InvalidBatch)?.enumerate() {
            if record.map_err(Error::InvalidBatch)?.timestamp() > max_timestamp {
                let reason = "timestamp above the batch's max timestamp";
                return Err(Error::InvalidBatch(record::DecodeError::InvalidRecord {
                    index,
                    reason,
                }));
            }
        }
        let count = u64::from(view.last_offset_delta() as u32) + 1;
        Ok((count, max_timestamp))
    }

    /// Copy bytes into the write buffer of the active segment at `position`.
    fn buffer_bytes(
        &mut self,
        io: &mut ShardIo<'_>,
        bytes: &[u8],
        position: u64,
        base_offset: u64,
    ) {
        let fits = self.buffer.as_ref().is_some_and(|b| b.buf.remaining() >= bytes.len());
        if !fits {
            if self.buffer.is_some() {
                // Appends overflow this partition's buffers: its next ones are larger.
                self.buffer_class = io.memory.buffers.classes().grow(self.buffer_class);
            }
            self.seal_buffer(io);
            let active = self.active();
            let file = active.log.expect("the active segment's log is open");
            let segment = active.base_offset;
            // A direct file takes whole blocks: start at the block holding `position`, with
            // the bytes already written before it in that block.
            let (start, prefix) = if io.storage.is_direct(file) {
                (
                    tidelog_io::buffer::round_down_to_block(position),
                    std::mem::take(&mut self.tail_block),
                )
            } else {
                (position, Vec::new())
            };
            debug_assert_eq!(start + prefix.len() as u64, position);
            // The partition's size class, or more for a batch larger than that. Full-size
            // buffers come from the storage's registered pool when a slot is free (writes
            // then go out as WRITE_FIXED).
            let class_bytes = io.memory.buffers.classes().size(self.buffer_class);
            let capacity = class_bytes.max(prefix.len() + bytes.len());
            let mut buf = io.take_write_buffer(capacity);
            buf.extend_from_slice(&prefix);
            self.buffer = Some(PendingWrite {
                segment,
                file,
                position: start,
                end_position: position,
                end_offset: 0,
                first: (base_offset, position),
                buf,
            });
        }
        let next_offset = self.next_offset;
        let pending = self.buffer.as_mut().expect("buffer was just ensured");
        debug_assert_eq!(pending.position + pending.buf.len() as u64, position);
        pending.buf.extend_from_slice(bytes);
        pending.end_position = position + bytes.len() as u64;
        pending.end_offset = next_offset;
    }

    /// Move the current write buffer (if it holds data) to the sealed list. On a direct file,
    /// keep its last partial block (the next buffer starts with it) and pad it with zeros to
    /// a whole block.
    fn seal_buffer(&mut self, io: &mut ShardIo<'_>) {
        let Some(mut pending) = self.buffer.take() else { return };
        let data_len = (pending.end_position - pending.position) as usize;
        if data_len == 0 {
            io.recycle_write_buffer(pending.buf);
            return;
        }
        if io.storage.is_direct(pending.file) {
            let whole = data_len / BLOCK_SIZE * BLOCK_SIZE;
            self.tail_block = pending.buf[whole..data_len].to_vec();
            let padded = tidelog_io::buffer::round_up_to_block(data_len);
            pending.buf.extend_zeroed(padded - data_len);
        }
        self.sealed.push_back(pending);
    }

    /// Submit what is buffered, as the group-commit policy says. Called by the shard after
    /// each round of requests and after completions.
    pub fn flush(&mut self, io: &mut ShardIo<'_>) {
        if self.failed.is_some() {
            return;
        }
        self.advance_closings(io);
        if !self.submit_retries(io) {
            return;
        }
        let want_sync = self.want_sync();
        let active = self.active();
        let active_base = active.base_offset;
        // Writes to a direct file overlap at the partial block they share, so they must
        // never be in flight together: they go out as one ordered (linked) chain at a time.
        // That holds for a rolled segment too, whose last buffers may still be sealed: wait
        // for every write in flight, not only the active segment's.
        // Any direct file being written counts, not only the active one: after a roll the
        // rolled segment's file and the active one need not be opened alike.
        let direct = active.log.is_some_and(|log| io.storage.is_direct(log))
            || self.sealed.iter().any(|p| io.storage.is_direct(p.file))
            || self.writes.iter().any(|w| {
                !w.done
                    && self
                        .segments
                        .iter()
                        .find(|s| s.base_offset == w.segment)
                        .and_then(|s| s.log)
                        .is_some_and(|log| io.storage.is_direct(log))
            });
        let active_writes =
            self.writes.iter().any(|w| !w.done && (direct || w.segment == active_base));
        let chained = want_sync || direct;
        let written_bytes = active.written_bytes;
        // Group commit: while a write is in flight, appends accumulate in the current buffer
        // and go out together when it completes (sealing now would leave a buffer per
        // append). An fdatasync in flight holds back only the next sync, not the next write:
        // written records become visible to readers and ready for the next sync without
        // waiting a whole sync. On a direct file, where every write rewrites the partial tail
        // block on the device, the next write also waits for a sync that a waiter (or a
        // drain) needs.
        let wait = active_writes || (want_sync && direct && self.sync_in_flight);
        if chained && wait {
            return;
        }
        // A whole flush window (nothing else sealed) filled less than a quarter of the
        // buffer: this partition's next buffers are smaller.
        if self.sealed.is_empty()
            && let Some(pending) = &self.buffer
            && pending.buf.len() * 4 < pending.buf.capacity()
        {
            self.buffer_class = io.memory.buffers.classes().shrink(self.buffer_class);
        }
        self.seal_buffer(io);
        // A sync goes out only once the one before it has been answered: its completion may
        // be reaped (the storage idle) but not yet handled, and a sync that succeeds after one
        // that failed proves nothing (the failed one took the unsynced pages off the path to
        // disk: fsyncgate).
        let can_sync = want_sync && !self.sync_in_flight;
        // With `inline_sync` and nothing else in flight on this shard, a sync runs inline
        // (`sync_data_now`): cheaper than a linked fsync, which io_uring always hands to a
        // kernel worker thread. What is written but not yet synced is synced first, then new
        // writes go out.
        let idle = io.settings.inline_sync && io.storage.in_flight() == 0;
        if can_sync
            && idle
            && self.written_offset > self.active_synced_offset
            && !self.sync_inline(io)
        {
            return;
        }
        if chained && !self.sealed.is_empty() {
            // The chain goes out whole if the queue has room; otherwise as many writes as
            // fit, and the rest (with the sync) when they complete.
            let room = io.room();
            let whole = room > self.sealed.len();
            let writes = if whole {
                self.sealed.len()
            } else {
                room.saturating_sub(1).max(usize::from(room > 0))
            };
            if writes == 0 {
                return;
            }
            let sync = can_sync && whole && !idle;
            let covers = self.sealed.back().map_or(self.written_offset, |p| p.end_offset);
            let covers_position = self
                .sealed
                .iter()
                .filter(|p| p.segment == active_base)
                .map(|p| p.end_position)
                .max()
                .unwrap_or(written_bytes);
            for left in (0..writes).rev() {
                let Some(pending) = self.sealed.pop_front() else { break };
                self.submit_write(io, pending, sync || left > 0);
            }
            if sync {
                self.submit_sync(io, covers, covers_position);
            }
        } else if want_sync {
            // Everything is written: a sync alone, if anything is not yet covered — inline
            // (above) when `inline_sync` and nothing else is in flight on this shard.
            if can_sync
                && self.written_offset > self.active_synced_offset
                && !idle
                && io.has_room(1)
            {
                self.submit_sync(io, self.written_offset, self.active().written_bytes);
            }
        } else {
            while !self.sealed.is_empty() && io.has_room(1) {
                let Some(pending) = self.sealed.pop_front() else { break };
                self.submit_write(io, pending, false);
            }
        }
        self.flush_index(io);
        self.prepare_step(io);
    }

    /// Does any waiter (or the periodic background sync) need an fdatasync?
    fn want_sync(&self) -> bool {
        self.draining || self.sync_due || !self.durable_waiters.is_empty()
    }

    fn submit_write(&mut self, io: &mut ShardIo<'_>, pending: PendingWrite, link_next: bool) {
        let (segment, end_offset, end_position, first) =
            (pending.segment, pending.end_offset, pending.end_position, pending.first);
        match self.submit_log_write(io, pending, link_next) {
            Ok(seq) => self.writes.push_back(WriteInFlight {
                seq: Some(seq),
                segment,
                end_offset,
                end_position,
                done: false,
                retry: None,
                first: Some(first),
            }),
            // Callers check for room first; a full queue here is a bookkeeping bug, but the
            // data must not be lost: put it back.
            Err(pending) => self.sealed.push_front(pending),
        }
    }

    /// Submit a log write and record it as in flight; a rejected one (full queue) comes back
    /// whole, buffer included.
    fn submit_log_write(
        &mut self,
        io: &mut ShardIo<'_>,
        pending: PendingWrite,
        link_next: bool,
    ) -> Result<u32, PendingWrite> {
        let seq = self.next_seq();
        let PendingWrite { segment, file, position, end_position, end_offset, first, buf } =
            pending;
        let submission = Submission {
            token: io::token(self.slot, seq),
            op: Op::Write { file, offset: position, buf },
            link_next,
        };
        if let Err(rejected) = io.submit(submission) {
            let buf = rejected.op.into_buf().expect("a write owns its buffer");
            return Err(PendingWrite {
                segment,
                file,
                position,
                end_position,
                end_offset,
                first,
                buf,
            });
        }
        self.ops.insert(seq, OpKind::Write { segment, file, position });
        if let Some(s) = self.segment_mut(segment) {
            s.ops_in_flight += 1;
        }
        Ok(seq)
    }

    /// Submit the rests of short or cancelled writes, in offset order, before anything new:
    /// as one linked chain, once no other log write is in flight (so writes sharing a direct
    /// file's partial block never overlap in flight). Returns false while any retry waits.
    fn submit_retries(&mut self, io: &mut ShardIo<'_>) -> bool {
        let waiting = self.writes.iter().filter(|w| w.retry.is_some()).count();
        if waiting == 0 {
            return true;
        }
        let in_flight = self.writes.iter().any(|w| w.seq.is_some() && !w.done);
        if in_flight || !io.has_room(waiting) {
            return false;
        }
        let mut left = waiting;
        for i in 0..self.writes.len() {
            let Some(retry) = self.writes[i].retry.take() else { continue };
            left -= 1;
            match self.submit_log_write(io, retry, left > 0) {
                Ok(seq) => self.writes[i].seq = Some(seq),
                Err(retry) => {
                    // Room was checked; keep the data regardless.
                    self.writes[i].retry = Some(retry);
                    return false;
                }
            }
        }
        true
    }

    /// Submit an `fdatasync` of the active log that makes offsets below `covers` (bytes below
    /// `covers_position` of the active segment) durable.
    fn submit_sync(&mut self, io: &mut ShardIo<'_>, covers: u64, covers_position: u64) {
        let active = self.active();
        let (segment, file) =
            (active.base_offset, active.log.expect("the active segment's log is open"));
        let seq = self.next_seq();
        if io.submit(Submission::new(io::token(self.slot, seq), Op::SyncData { file })).is_ok() {
            self.sync_due = false;
            self.ops.insert(seq, OpKind::Sync { segment, covers, covers_position });
            self.sync_in_flight = true;
            self.active_mut().ops_in_flight += 1;
        }
    }

    /// Write the active segment's pending index bytes (not synced: indexes are rebuilt from
    /// the log by recovery).
    fn flush_index(&mut self, io: &mut ShardIo<'_>) {
        if !io.has_room(2) {
            return;
        }
        let slot = self.slot;
        let active = self.active_mut();
        let Some((offset_file, time_file)) = active.index_files else { return };
        let mut submitted = Vec::new();
        // Entries go to storage only once the log bytes they point at are durable.
        let durable = active.synced_bytes;
        if let Some((at, bytes)) =
            active.offset_index.as_mut().and_then(|i| i.take_unwritten(durable))
        {
            submitted.push((offset_file, at, bytes));
        }
        if let Some((at, bytes)) =
            active.time_index.as_mut().and_then(|i| i.take_unwritten(durable))
        {
            submitted.push((time_file, at, bytes));
        }
        let segment = active.base_offset;
        for (file, position, bytes) in submitted {
            self.submit_index_write(io, slot, segment, file, position, &bytes);
        }
    }

    fn submit_index_write(
        &mut self,
        io: &mut ShardIo<'_>,
        slot: u32,
        segment: u64,
        file: FileId,
        position: u64,
        bytes: &[u8],
    ) {
        let seq = self.next_seq();
        let buf = AlignedBuf::from_slice(bytes);
        let submission =
            Submission::new(io::token(slot, seq), Op::Write { file, offset: position, buf });
        match io.submit(submission) {
            Ok(()) => {
                self.ops.insert(seq, OpKind::IndexWrite { segment, file, position });
                if let Some(s) = self.segment_mut(segment) {
                    s.ops_in_flight += 1;
                }
            }
            Err(_) => {
                // Callers check for room. Losing an index write is harmless (recovery
                // rebuilds), but say so.
                tracing::warn!(topic = %self.topic, partition = self.id, "index write dropped: queue full");
            }
        }
    }

    // ----------------------------------------------------------------------------------
    // Completions
    // ----------------------------------------------------------------------------------

    /// Handle the completion of an operation this partition submitted.
    pub fn on_completion(&mut self, io: &mut ShardIo<'_>, seq: u32, completion: Completion) {
        let Some(kind) = self.ops.remove(&seq) else {
            tracing::error!(topic = %self.topic, partition = self.id, seq, "completion for an unknown operation");
            return;
        };
        if matches!(kind, OpKind::Prepare) {
            self.on_prepare(io, completion);
            self.flush(io);
            return;
        }
        let segment = match &kind {
            OpKind::Prepare => unreachable!("handled above"),
            // Counted apart: see `Segment::reads_in_flight`.
            OpKind::FetchRead(read) => {
                if let Some(s) = self.segment_mut(read.segment()) {
                    s.reads_in_flight = s.reads_in_flight.saturating_sub(1);
                }
                None
            }
            OpKind::Write { segment, .. }
            | OpKind::IndexWrite { segment, .. }
            | OpKind::Sync { segment, .. }
            | OpKind::Close { segment }
            | OpKind::CloseIndexWrite { segment, .. } => Some(*segment),
        };
        if let Some(s) = segment.and_then(|segment| self.segment_mut(segment)) {
            s.ops_in_flight = s.ops_in_flight.saturating_sub(1);
        }
        match kind {
            OpKind::Write { segment, file, position } => {
                self.on_write(io, seq, segment, file, position, completion)
            }
            OpKind::IndexWrite { segment, file, position } => match completion.result {
                Ok(n) => {
                    let len = completion.buf.as_ref().map_or(0, |b| b.len());
                    if n < len && self.failed.is_none() {
                        let rest =
                            completion.buf.as_ref().map(|b| b[n..].to_vec()).unwrap_or_default();
                        self.submit_index_write(
                            io,
                            self.slot,
                            segment,
                            file,
                            position + n as u64,
                            &rest,
                        );
                    }
                }
                Err(err) => self.fail_io("write index", segment, err),
            },
            OpKind::Sync { segment, covers, covers_position } => {
                self.sync_in_flight = false;
                match completion.result {
                    Ok(_) => self.synced(segment, covers, covers_position),
                    Err(err) if is_cancelled(&err) => {}
                    Err(err) => self.fail_io("fdatasync", segment, err),
                }
            }
            OpKind::Close { segment } => self.on_close_step(segment, completion),
            OpKind::CloseIndexWrite { segment, file, position } => {
                self.on_close_index_write(io, segment, file, position, completion)
            }
            OpKind::FetchRead(read) => self.on_fetch_read(io, *read, completion),
            OpKind::Prepare => {}
        }
        self.flush(io);
        self.serve_parked(io);
    }

    /// `fdatasync` the active log on the shard's thread, now (the storage must be idle).
    /// Returns false if it failed (the partition has failed stop).
    fn sync_inline(&mut self, io: &mut ShardIo<'_>) -> bool {
        let (covers, position) = (self.written_offset, self.active().written_bytes);
        let active = self.active();
        let (segment, file) =
            (active.base_offset, active.log.expect("the active segment's log is open"));
        match io.storage.sync_data_now(file) {
            Ok(()) => {
                self.sync_due = false;
                self.synced(segment, covers, position);
                true
            }
            Err(err) => {
                self.fail_io("fdatasync", segment, err);
                false
            }
        }
    }

    /// An `fdatasync` of the active log completed, covering offsets below `covers`.
    fn synced(&mut self, segment: u64, covers: u64, covers_position: u64) {
        self.stats.syncs += 1;
        if let Some(s) = self.segment_mut(segment) {
            s.synced_bytes = s.synced_bytes.max(covers_position);
        }
        self.active_synced_offset = self.active_synced_offset.max(covers);
        self.advance_durable();
    }

    fn on_write(
        &mut self,
        io: &mut ShardIo<'_>,
        seq: u32,
        segment: u64,
        file: FileId,
        position: u64,
        completion: Completion,
    ) {
        let Some(index) = self.writes.iter().position(|w| w.seq == Some(seq)) else {
            tracing::error!(topic = %self.topic, partition = self.id, seq, "write completion not in flight");
            return;
        };
        let buf = completion.buf;
        let len = buf.as_ref().map_or(0, |b| b.len());
        let written = match completion.result {
            Ok(n) => n,
            Err(err) if is_cancelled(&err) && self.failed.is_none() => 0,
            Err(err) => {
                // The write stays, never done, with nothing in flight: the written offset
                // (the high watermark) must never pass the hole it leaves, whatever later
                // writes complete.
                self.writes[index].seq = None;
                self.writes[index].first = None;
                return self.fail_io("write", segment, err);
            }
        };
        if written < len {
            // Short, or cancelled because a linked write before it fell short: the rest goes
            // out again before anything that follows (`submit_retries`), and
            // `written_offset` cannot pass it meanwhile.
            let Some(buf) = buf else {
                return self.fail_io(
                    "write",
                    segment,
                    std::io::Error::other("write completed without its buffer"),
                );
            };
            // A direct file takes whole blocks: restart at the block the write stopped in.
            let keep = if io.storage.is_direct(file) {
                written / BLOCK_SIZE * BLOCK_SIZE
            } else {
                written
            };
            let rest = if keep == 0 { buf } else { AlignedBuf::from_slice(&buf[keep..]) };
            let entry = &mut self.writes[index];
            entry.seq = None;
            entry.first = None;
            entry.retry = Some(PendingWrite {
                segment,
                file,
                position: position + keep as u64,
                end_position: entry.end_position,
                end_offset: entry.end_offset,
                first: (entry.end_offset, entry.end_position),
                buf: rest,
            });
            self.submit_retries(io);
            return;
        }
        self.writes[index].done = true;
        self.stats.log_writes += 1;
        self.stats.log_write_bytes += len as u64;
        let (first, end_offset, end_position) = (
            self.writes[index].first,
            self.writes[index].end_offset,
            self.writes[index].end_position,
        );
        if let Some(buf) = buf {
            match first {
                Some((base_offset, first_position)) if end_offset > base_offset => {
                    let range =
                        (first_position - position) as usize..(end_position - position) as usize;
                    self.cache_written(io, segment, base_offset, end_offset, range, buf);
                }
                _ => io.recycle_write_buffer(buf),
            }
        }
        self.advance_written();
    }

    /// Keep the batches a completed write carried in the tail cache. A buffer mostly full
    /// is kept as it is (a view, no copy); the data of a small write is copied, so a small
    /// write does not pin a whole buffer, which goes back for reuse. The cache holds at most
    /// its own budget; the shard evicts the oldest chunks of all its partitions' caches
    /// beyond the shard's (`memory::TailCacheLedger`).
    fn cache_written(
        &mut self,
        io: &mut ShardIo<'_>,
        segment: u64,
        base_offset: u64,
        end_offset: u64,
        range: std::ops::Range<usize>,
        buf: AlignedBuf,
    ) {
        let keep = range.len() * 4 >= buf.capacity();
        let held = if keep { buf.capacity() } else { range.len() };
        let budget = io.memory.tail_cache.partition_budget_bytes(io.settings.write_buffer_bytes);
        if held > budget {
            // Larger than the cache may hold (a tiny shard budget): readers read the file.
            return io.recycle_write_buffer(buf);
        }
        let data = if keep {
            Bytes::from_owner(buf).slice(range)
        } else {
            let data = Bytes::copy_from_slice(&buf[range]);
            io.recycle_write_buffer(buf);
            data
        };
        let chunk = CachedChunk { segment, base_offset, end_offset, data, held };
        // Completions may arrive out of order: keep the cache sorted by offset.
        let at = self.tail_cache.partition_point(|c| c.base_offset < base_offset);
        self.tail_cache.insert(at, chunk);
        self.tail_cache_held += held;
        io.memory.tail_cache.cached(self.slot, base_offset, held);
        while self.tail_cache_held > budget {
            let Some(evicted) = self.tail_cache.pop_front() else { break };
            self.tail_cache_held -= evicted.held;
            io.memory.tail_cache.dropped(evicted.held);
        }
    }

    /// Drop the cached chunk starting at `base_offset`, if it is still cached: the shard's
    /// tail caches together hold more than its budget, and it is the oldest.
    pub fn evict_cached(&mut self, io: &mut ShardIo<'_>, base_offset: u64) {
        let at = self.tail_cache.partition_point(|c| c.base_offset < base_offset);
        if self.tail_cache.get(at).is_some_and(|c| c.base_offset == base_offset)
            && let Some(evicted) = self.tail_cache.remove(at)
        {
            self.tail_cache_held -= evicted.held;
            io.memory.tail_cache.dropped(evicted.held);
        }
    }

    /// Drop the whole tail cache (the partition is being removed from its shard).
    pub fn drop_tail_cache(&mut self, io: &mut ShardIo<'_>) {
        for evicted in self.tail_cache.drain(..) {
            io.memory.tail_cache.dropped(evicted.held);
        }
        self.tail_cache_held = 0;
    }

    /// Move `written_offset` over writes completed in order, and answer waiters.
    fn advance_written(&mut self) {
        while self.writes.front().is_some_and(|w| w.done) {
            let Some(write) = self.writes.pop_front() else { break };
            self.written_offset = self.written_offset.max(write.end_offset);
            if let Some(segment) = self.segment_mut(write.segment) {
                segment.written_bytes = segment.written_bytes.max(write.end_position);
            }
        }
        while self
            .written_waiters
            .front()
            .is_some_and(|w| w.result.last_offset < self.written_offset)
        {
            let Some(waiter) = self.written_waiters.pop_front() else { break };
            waiter.reply.send(Ok(waiter.result));
        }
    }

    /// Move `durable_offset` as far as syncs and closed segments allow, and answer waiters.
    fn advance_durable(&mut self) {
        // A sync of the active file says nothing of segments still closing: their data is
        // durable only up to what was synced before they rolled, until their close completes.
        let cap = self.closing.front().map_or(u64::MAX, |c| c.synced_floor);
        let durable = self.active_synced_offset.min(cap).min(self.written_offset);
        if durable > self.durable_offset {
            self.durable_offset = durable;
        }
        while self
            .durable_waiters
            .front()
            .is_some_and(|w| w.result.last_offset < self.durable_offset)
        {
            let Some(waiter) = self.durable_waiters.pop_front() else { break };
            waiter.reply.send(Ok(waiter.result));
        }
    }

    /// Stop accepting writes: answer every waiter that has not reached its durability with
    /// the error, drop what was not yet submitted.
    fn fail(&mut self, err: &Error) {
        if self.failed.is_none() {
            tracing::error!(topic = %self.topic, partition = self.id, error = %err, "partition stopped accepting writes");
            self.failed = Some(err.to_string());
        }
        let failed = || Error::PartitionFailed {
            topic: self.topic.to_string(),
            partition: self.id,
            cause: self.failed.clone().unwrap_or_default(),
        };
        for waiter in self.written_waiters.drain(..).chain(self.durable_waiters.drain(..)) {
            waiter.reply.send(Err(failed()));
        }
        self.buffer = None;
        self.sealed.clear();
    }

    /// The storage is gone: fail stop, and forget operations that will never complete.
    pub fn abandon_io(&mut self, reason: &str) {
        let err = Error::io("storage", self.dir.clone(), std::io::Error::other(reason.to_string()));
        self.fail(&err);
        self.ops.clear();
        self.writes.clear();
        self.closing.clear();
        self.sync_in_flight = false;
        self.parked.clear();
    }

    fn fail_io(&mut self, op: &'static str, segment: u64, source: std::io::Error) {
        let err = Error::io(op, segment::log_path(&self.dir, segment), source);
        self.fail(&err);
    }

    // ----------------------------------------------------------------------------------
    // Segment roll and close
    // ----------------------------------------------------------------------------------

    /// Start a new active segment at `next_offset`; the old one closes in the background.
    fn roll(&mut self, io: &mut ShardIo<'_>) -> Result<()> {
        self.seal_buffer(io);
        // The new segment starts at byte 0: no partial block carries over.
        self.tail_block.clear();
        let old_base = self.active().base_offset;
        let base = self.next_offset;
        let log = self.take_ready_spare(io, base)?;
        let segment = recovery::create_segment(io, &self.dir, base, log)?;
        self.segments.push(segment);
        self.closing.push_back(Closing {
            segment: old_base,
            end_offset: base,
            synced_floor: self.active_synced_offset,
            stage: CloseStage::Draining,
            ops: 0,
            incomplete: false,
        });
        tracing::debug!(topic = %self.topic, partition = self.id, base, "rolled segment");
        self.advance_closings(io);
        // Starting the old segment's close may have failed the partition (fail-stop): the
        // append that rolled must not go on into it.
        match self.failed_error() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// Move every closing segment through its stages as far as it can go now.
    fn advance_closings(&mut self, io: &mut ShardIo<'_>) {
        let mut finished = false;
        for i in 0..self.closing.len() {
            let (base, stage, ops) =
                (self.closing[i].segment, self.closing[i].stage, self.closing[i].ops);
            match stage {
                CloseStage::Draining => {
                    // Every write of the segment completed in full: none waiting to be
                    // submitted, in flight, or — the rest of a short write — waiting to be
                    // submitted again (it has no operation in flight then).
                    let drained = self.sealed.iter().all(|p| p.segment != base)
                        && self.writes.iter().all(|w| w.segment != base || w.done)
                        && self
                            .segments
                            .iter()
                            .find(|s| s.base_offset == base)
                            .is_some_and(|s| s.ops_in_flight == 0);
                    if drained && io.has_room(1) {
                        if let Err(err) = self.start_close_sync(io, base) {
                            return self.fail(&err);
                        }
                        self.closing[i].stage = CloseStage::SyncingLog;
                        self.closing[i].ops = 1;
                    }
                }
                CloseStage::SyncingLog if ops == 0 && io.has_room(2) => {
                    let ops = self.write_close_index(io, base, IndexKind::Offset);
                    self.closing[i].stage = CloseStage::WritingOffsetIndex;
                    self.closing[i].ops = ops;
                }
                CloseStage::WritingOffsetIndex if ops == 0 && io.has_room(2) => {
                    let ops = if self.closing[i].incomplete {
                        0
                    } else {
                        self.write_close_index(io, base, IndexKind::Time)
                    };
                    self.closing[i].stage = CloseStage::WritingTimeIndex;
                    self.closing[i].ops = ops;
                }
                CloseStage::WritingTimeIndex if ops == 0 => {
                    self.finish_close(io, base);
                    self.closing[i].stage = CloseStage::Done;
                    finished = true;
                }
                _ => {}
            }
        }
        if finished {
            // A closed segment is synced whole: the durable prefix may cross it.
            while let Some(closed) = self.closing.pop_front() {
                if closed.stage != CloseStage::Done {
                    self.closing.push_front(closed);
                    break;
                }
                self.active_synced_offset = self.active_synced_offset.max(closed.end_offset);
            }
            self.advance_durable();
        }
    }

    fn start_close_sync(&mut self, io: &mut ShardIo<'_>, base: u64) -> Result<()> {
        let dir = self.dir.clone();
        let Some(segment) = self.segment_mut(base) else { return Ok(()) };
        let file = segment.log.expect("a closing segment's log is open");
        let size = segment.size_bytes;
        // A prepared file may be longer than its data: cut it, so a closed segment's file is
        // exactly its data.
        let len = io
            .storage
            .file_len(file)
            .map_err(|e| Error::io("stat", segment::log_path(&dir, base), e))?;
        if len != size {
            io.storage
                .set_len(file, size)
                .map_err(|e| Error::io("truncate", segment::log_path(&dir, base), e))?;
        }
        let seq = self.next_seq();
        if let Err(rejected) =
            io.submit(Submission::new(io::token(self.slot, seq), Op::SyncData { file }))
        {
            drop(rejected);
            return Err(Error::io(
                "fdatasync",
                segment::log_path(&dir, base),
                std::io::Error::other("submission queue full"),
            ));
        }
        self.ops.insert(seq, OpKind::Close { segment: base });
        if let Some(s) = self.segment_mut(base) {
            s.ops_in_flight += 1;
        }
        Ok(())
    }

    /// Write a closing segment's offset index tail, or its time index tail with the close
    /// entry, linked to an `fdatasync` of its file; returns how many operations went out.
    fn write_close_index(&mut self, io: &mut ShardIo<'_>, base: u64, kind: IndexKind) -> u32 {
        let Some(segment) = self.segment_mut(base) else { return 0 };
        let Some((offset_file, time_file)) = segment.index_files else { return 0 };
        let (file, tail) = match kind {
            IndexKind::Offset => (
                offset_file,
                segment.offset_index.as_mut().and_then(|i| i.take_unwritten(u64::MAX)),
            ),
            IndexKind::Time => {
                segment.push_close_entry();
                (time_file, segment.time_index.as_mut().and_then(|i| i.take_unwritten(u64::MAX)))
            }
        };
        self.submit_close_index_tail(io, base, file, tail)
    }

    /// Submit `tail` (if any) of a closing segment's index `file`, linked to an `fdatasync`
    /// of the file; returns how many operations went out.
    fn submit_close_index_tail(
        &mut self,
        io: &mut ShardIo<'_>,
        base: u64,
        file: FileId,
        tail: Option<(u64, Vec<u8>)>,
    ) -> u32 {
        let mut submissions = Vec::new();
        if let Some((at, bytes)) = tail {
            let op = Op::Write { file, offset: at, buf: AlignedBuf::from_slice(&bytes) };
            submissions.push((op, OpKind::CloseIndexWrite { segment: base, file, position: at }));
        }
        submissions.push((Op::SyncData { file }, OpKind::Close { segment: base }));
        let last = submissions.len() - 1;
        let mut ops = 0;
        for (i, (op, kind)) in submissions.into_iter().enumerate() {
            let seq = self.next_seq();
            let submission =
                Submission { token: io::token(self.slot, seq), op, link_next: i < last };
            if io.submit(submission).is_err() {
                // A full queue: the close entry is not written then (the index before it
                // may be incomplete). Harmless: recovery verifies the segment and writes it.
                if let Some(closing) = self.closing.iter_mut().find(|c| c.segment == base) {
                    closing.incomplete = true;
                }
                break;
            }
            self.ops.insert(seq, kind);
            ops += 1;
            if let Some(s) = self.segment_mut(base) {
                s.ops_in_flight += 1;
            }
        }
        ops
    }

    fn on_close_step(&mut self, base: u64, completion: Completion) {
        match completion.result {
            // Cancelled because the index write linked before it fell short: that write goes
            // out again with a new fdatasync (`on_close_index_write`).
            Err(err) if is_cancelled(&err) && self.failed.is_none() => {}
            Err(err) => return self.fail_io("close segment", base, err),
            Ok(_) => {}
        }
        self.close_op_done(base, 0);
    }

    /// A closing segment's index tail was written: all of it, or (a short write) part of it,
    /// in which case the rest goes out again, linked to a new `fdatasync`.
    fn on_close_index_write(
        &mut self,
        io: &mut ShardIo<'_>,
        base: u64,
        file: FileId,
        position: u64,
        completion: Completion,
    ) {
        let written = match completion.result {
            Ok(n) => n,
            Err(err) => return self.fail_io("close segment", base, err),
        };
        let len = completion.buf.as_ref().map_or(0, |b| b.len());
        let mut more = 0;
        if written < len && self.failed.is_none() {
            let rest = completion.buf.as_ref().map(|b| b[written..].to_vec());
            more = self.submit_close_index_tail(
                io,
                base,
                file,
                rest.map(|bytes| (position + written as u64, bytes)),
            );
        }
        self.close_op_done(base, more);
    }

    /// One operation of closing `base` completed; `more` new ones went out.
    fn close_op_done(&mut self, base: u64, more: u32) {
        if let Some(closing) = self.closing.iter_mut().find(|c| c.segment == base) {
            closing.ops = closing.ops.saturating_sub(1) + more;
        }
    }

    fn finish_close(&mut self, io: &mut ShardIo<'_>, base: u64) {
        let Some(segment) = self.segment_mut(base) else { return };
        if let Some((offset_file, time_file)) = segment.index_files.take() {
            let _ = io.storage.close(offset_file);
            let _ = io.storage.close(time_file);
        }
        segment.written_bytes = segment.size_bytes;
        // The indexes stay loaded for reads; the log stays open.
        tracing::debug!(topic = %self.topic, partition = self.id, base, "closed segment");
    }

    // ----------------------------------------------------------------------------------
    // Shutdown
    // ----------------------------------------------------------------------------------

    /// Start a clean shutdown: write and sync everything buffered.
    pub fn start_drain(&mut self, io: &mut ShardIo<'_>) {
        self.draining = true;
        self.flush(io);
    }

    /// After draining (no operation in flight): sync the active indexes and close all files.
    pub fn close_files(&mut self, io: &mut ShardIo<'_>) -> Result<()> {
        let mut first_error = None;
        let dir = self.dir.clone();
        for segment in &mut self.segments {
            if let Some((offset_file, time_file)) = segment.index_files.take() {
                for (file, path) in [
                    (offset_file, segment::offset_index_path(&dir, segment.base_offset)),
                    (time_file, segment::time_index_path(&dir, segment.base_offset)),
                ] {
                    let mut bytes = None;
                    if file == offset_file {
                        bytes = segment
                            .offset_index
                            .as_mut()
                            .and_then(|i| i.take_unwritten(segment.synced_bytes));
                    } else if let Some(index) = segment.time_index.as_mut() {
                        bytes = index.take_unwritten(segment.synced_bytes);
                    }
                    let result = match bytes {
                        Some((at, bytes)) => io.write_now(file, at, &bytes),
                        None => Ok(()),
                    }
                    .and_then(|()| io.sync_now(file));
                    if let Err(err) = result {
                        first_error.get_or_insert(Error::io("sync index", path, err));
                    }
                    let _ = io.storage.close(file);
                }
            }
            if let Some(log) = segment.log.take() {
                let _ = io.storage.close(log);
            }
        }
        if let Some(spare) = self.spare.take() {
            let _ = io.storage.close(spare.file);
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

fn is_cancelled(err: &std::io::Error) -> bool {
    err.raw_os_error() == Some(125) // ECANCELED
}
