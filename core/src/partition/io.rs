//! What a shard lends a partition while it works: the storage, the clock, settings, and a
//! way to wait for one operation while others are in flight.

use std::io;

use bytes::Bytes;
use tidelog_io::{
    AlignedBuf, BLOCK_SIZE, Clock, Completion, FileId, Op, Storage, Submission, Wait,
};

use crate::config::SegmentPreparation;
use crate::partition::memory::ShardMemory;

/// Shard-wide settings partitions need.
#[derive(Clone, Debug)]
pub(crate) struct ShardSettings {
    /// How segments are prepared.
    pub preparation: SegmentPreparation,
    /// Largest write buffer of a partition.
    pub write_buffer_bytes: usize,
    /// Memory the shard's tail caches may hold together.
    pub tail_cache_bytes_per_shard: usize,
    /// Open segment logs with `O_DIRECT` (where the file system allows it).
    pub direct_io: bool,
    /// Run an idle shard's `fdatasync` as a system call (`EngineConfig::inline_sync`).
    pub inline_sync: bool,
}

/// Token of operations submitted by [`ShardIo::run_now`]: never routed to a partition.
pub(crate) const RUN_NOW_TOKEN: u64 = u64::MAX;

/// Build an operation token from a partition slot and a sequence number.
pub(crate) fn token(slot: u32, seq: u32) -> u64 {
    (u64::from(slot) << 32) | u64::from(seq)
}

/// Split a token into slot and sequence number.
pub(crate) fn split_token(token: u64) -> (u32, u32) {
    ((token >> 32) as u32, token as u32)
}

/// The shard's I/O services, borrowed by a partition for one call.
pub(crate) struct ShardIo<'a> {
    pub storage: &'a mut dyn Storage,
    pub clock: &'a dyn Clock,
    /// Completions reaped while waiting for something else; the shard dispatches them next.
    pub stash: &'a mut Vec<Completion>,
    pub settings: &'a ShardSettings,
    /// Spare write buffers and the tail-cache account, shared by the shard's partitions.
    pub memory: &'a mut ShardMemory,
}

impl ShardIo<'_> {
    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// How many more submissions the queue takes now.
    pub fn room(&self) -> usize {
        self.storage.queue_depth().saturating_sub(self.storage.in_flight())
    }

    /// Room for `n` more submissions?
    pub fn has_room(&self, n: usize) -> bool {
        self.storage.in_flight() + n <= self.storage.queue_depth()
    }

    /// An empty write buffer of at least `capacity` bytes: a spare from the shard, a slot of
    /// the storage's registered pool (full-size buffers only) or the heap.
    pub fn take_write_buffer(&mut self, capacity: usize) -> AlignedBuf {
        self.memory.buffers.take(&mut *self.storage, capacity)
    }

    /// A write buffer the kernel is done with: kept by the shard for reuse if it has room.
    pub fn recycle_write_buffer(&mut self, buf: AlignedBuf) {
        self.memory.buffers.give_back(buf);
    }

    /// Submit, handing the submission back when the queue is full.
    pub fn submit(&mut self, submission: Submission) -> Result<(), Submission> {
        self.storage.submit(submission)
    }

    /// Run one operation to completion while others may be in flight (their completions are
    /// stashed for the shard). For slow paths only: the shard does nothing else meanwhile.
    pub fn run_now(&mut self, op: Op) -> (io::Result<usize>, Option<AlignedBuf>) {
        let mut submission = Submission::new(RUN_NOW_TOKEN, op);
        loop {
            match self.storage.submit(submission) {
                Ok(()) => break,
                Err(rejected) => {
                    submission = rejected;
                    if let Err(err) = self.storage.complete(self.stash, Wait::One) {
                        return (Err(err), submission.op.into_buf());
                    }
                }
            }
        }
        let mut done = Vec::new();
        loop {
            if let Err(err) = self.storage.complete(&mut done, Wait::One) {
                // The storage is broken; whatever was reaped still goes to the shard.
                self.stash.append(&mut done);
                return (Err(err), None);
            }
            let mut mine = None;
            for completion in done.drain(..) {
                if completion.token == RUN_NOW_TOKEN {
                    mine = Some(completion);
                } else {
                    self.stash.push(completion);
                }
            }
            if let Some(completion) = mine {
                return (completion.result, completion.buf);
            }
        }
    }

    /// Read `len` bytes at `offset` (fewer at end of file), waiting for them. On a direct
    /// file the read is widened to whole blocks and the wanted bytes returned as a view of
    /// the aligned buffer: no copy either way.
    pub fn read_now(&mut self, file: FileId, offset: u64, len: usize) -> io::Result<Bytes> {
        self.read_into(file, offset, len, false)
    }

    /// As [`ShardIo::read_now`], for a fetch: its bytes go to a reader, who may hold views of
    /// them for a while, so the buffer is a registered pool slot when one is to spare
    /// (`READ_FIXED` on io_uring; `Storage::alloc_read_buf`), else the heap.
    pub fn read_for_fetch(&mut self, file: FileId, offset: u64, len: usize) -> io::Result<Bytes> {
        self.read_into(file, offset, len, true)
    }

    fn read_into(
        &mut self,
        file: FileId,
        offset: u64,
        len: usize,
        for_fetch: bool,
    ) -> io::Result<Bytes> {
        let ReadShape { start, skip, want, direct, .. } =
            ReadShape::new(self.storage.is_direct(file), file, offset, len);
        let mut gathered: Option<AlignedBuf> = None;
        let mut done = 0usize;
        loop {
            let chunk = if for_fetch {
                self.storage.alloc_read_buf(want - done)
            } else {
                AlignedBuf::with_capacity(want - done)
            };
            let read = Op::Read { file, offset: start + done as u64, len: want - done, buf: chunk };
            let (result, chunk) = self.run_now(read);
            let n = result?;
            let chunk =
                chunk.ok_or_else(|| io::Error::other("read completed without its buffer"))?;
            let complete = n == want - done;
            // A short read ends at end of file, except a whole-block short read, which may
            // continue (and must, to stay aligned on a direct file).
            let at_end = n == 0 || (!complete && direct && !n.is_multiple_of(BLOCK_SIZE));
            if gathered.is_none() && (complete || at_end) {
                gathered = Some(chunk);
                done = n;
                break;
            }
            if n == 0 {
                break;
            }
            gathered
                .get_or_insert_with(|| AlignedBuf::with_capacity(want))
                .extend_from_slice(&chunk[..n]);
            done += n;
            if done >= want || at_end {
                break;
            }
        }
        let Some(buf) = gathered else { return Ok(Bytes::new()) };
        let end = done.min(skip + len);
        if end <= skip {
            return Ok(Bytes::new());
        }
        Ok(Bytes::from_owner(buf).slice(skip..end))
    }

    /// Submit a read for a fetch — what [`ShardIo::read_for_fetch`] reads, without waiting
    /// for it — under `token`. `None` (nothing submitted) if less than a quarter of the queue
    /// is free. Hand the completion to [`ShardIo::finish_fetch_read`] with the shape returned.
    pub fn submit_fetch_read(
        &mut self,
        token: u64,
        file: FileId,
        offset: u64,
        len: usize,
    ) -> Option<ReadShape> {
        // Reads leave a quarter of the queue to writes and syncs: many readers must not turn
        // the write path's submissions away.
        if !self.has_room(self.storage.queue_depth() / 4 + 1) {
            return None;
        }
        let shape = ReadShape::new(self.storage.is_direct(file), file, offset, len);
        let buf = self.storage.alloc_read_buf(shape.want);
        let op = Op::Read { file, offset: shape.start, len: shape.want, buf };
        self.storage.submit(Submission::new(token, op)).ok()?;
        Some(shape)
    }

    /// The bytes a fetch read submitted by [`ShardIo::submit_fetch_read`] asked for, from its
    /// completion: a view of the buffer read into. A short read that is not the end of the
    /// file (rare: a signal, a page-cache race) is read again whole, waiting.
    pub fn finish_fetch_read(
        &mut self,
        shape: &ReadShape,
        completion: Completion,
    ) -> io::Result<Bytes> {
        let n = completion.result?;
        let buf =
            completion.buf.ok_or_else(|| io::Error::other("read completed without its buffer"))?;
        let at_end = n == 0 || (shape.direct && !n.is_multiple_of(BLOCK_SIZE));
        if n < shape.want && !at_end {
            return self.read_for_fetch(shape.file, shape.offset, shape.len);
        }
        let end = n.min(shape.skip + shape.len);
        if end <= shape.skip {
            return Ok(Bytes::new());
        }
        Ok(Bytes::from_owner(buf).slice(shape.skip..end))
    }

    /// Write all of `bytes` at `offset`, waiting for it.
    pub fn write_now(&mut self, file: FileId, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let mut done = 0usize;
        while done < bytes.len() {
            let buf = AlignedBuf::from_slice(&bytes[done..]);
            let (result, _) = self.run_now(Op::Write { file, offset: offset + done as u64, buf });
            match result? {
                0 => {
                    return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0 bytes"));
                }
                n => done += n,
            }
        }
        Ok(())
    }

    /// `fdatasync`, waiting for it.
    pub fn sync_now(&mut self, file: FileId) -> io::Result<()> {
        self.run_now(Op::SyncData { file }).0.map(|_| ())
    }
}

/// What a read for `len` bytes at `offset` of `file` asks the storage for (waited for or
/// not): on a direct file, whole blocks from the block holding `offset` (the wanted bytes
/// start `skip` into them).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReadShape {
    file: FileId,
    offset: u64,
    len: usize,
    direct: bool,
    start: u64,
    skip: usize,
    want: usize,
}

impl ReadShape {
    fn new(direct: bool, file: FileId, offset: u64, len: usize) -> Self {
        let (start, skip, want) = if direct {
            let start = tidelog_io::buffer::round_down_to_block(offset);
            let skip = (offset - start) as usize;
            (start, skip, tidelog_io::buffer::round_up_to_block(skip + len))
        } else {
            (offset, 0, len)
        };
        Self { file, offset, len, direct, start, skip, want }
    }
}
