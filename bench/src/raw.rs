//! Raw baselines: the same storage operations the engine issues, with no engine around them,
//! through the same backend (`EngineConfig::storage_factory`).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tidelog_core::SegmentPreparation;
use tidelog_io::{AlignedBuf, FileId, Op, OpenOptions, Storage, Submission, Wait};

use crate::stats::{Latency, Measurement};

/// A file prepared the way the engine prepares segments, and the storage it is open on.
pub struct RawFile {
    storage: Box<dyn Storage>,
    file: FileId,
    size: u64,
    direct: bool,
}

impl std::fmt::Debug for RawFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawFile").field("size", &self.size).field("direct", &self.direct).finish()
    }
}

fn run(storage: &mut dyn Storage, op: Op) -> Result<(usize, Option<AlignedBuf>)> {
    let (result, buf) = tidelog_io::storage::run(storage, op);
    Ok((result?, buf))
}

impl RawFile {
    /// Create `path` of `size` bytes as `preparation` says (grow: empty; fallocate;
    /// zero-fill: written with zeros and synced), opened direct if asked (and allowed).
    pub fn create(
        mut storage: Box<dyn Storage>,
        path: &Path,
        size: u64,
        preparation: SegmentPreparation,
        direct: bool,
    ) -> Result<Self> {
        let file = storage
            .open(path, OpenOptions::create().direct(direct))
            .with_context(|| format!("create {}", path.display()))?;
        storage.set_len(file, 0)?;
        match preparation {
            SegmentPreparation::Grow => {}
            SegmentPreparation::Fallocate => {
                run(&mut *storage, Op::Allocate { file, offset: 0, len: size })?;
            }
            SegmentPreparation::ZeroFill => {
                let chunk = 1 << 20;
                let mut offset = 0;
                while offset < size {
                    let len = chunk.min((size - offset) as usize);
                    let mut buf = AlignedBuf::with_capacity(len);
                    buf.extend_zeroed(len);
                    let (written, _) = run(&mut *storage, Op::Write { file, offset, buf })?;
                    if written != len {
                        bail!("short write while zero-filling");
                    }
                    offset += len as u64;
                }
            }
        }
        run(&mut *storage, Op::SyncData { file })?;
        let direct = storage.is_direct(file);
        Ok(Self { storage, file, size, direct })
    }

    /// Whether the file is open with `O_DIRECT`.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// `write` of `block` bytes linked to `fdatasync`, one at a time, sequentially (wrapping
    /// at the end of the file), for `duration`.
    pub fn write_sync_qd1(&mut self, block: usize, duration: Duration) -> Result<Measurement> {
        self.qd1(block, duration, true)
    }

    /// `write` of `block` bytes, one at a time, sequentially, for `duration` (no sync): the
    /// device's write latency.
    pub fn write_qd1(&mut self, block: usize, duration: Duration) -> Result<Measurement> {
        self.qd1(block, duration, false)
    }

    /// Writes of `block` bytes at queue depth 1, each linked to an `fdatasync` if `sync`.
    fn qd1(&mut self, block: usize, duration: Duration, sync: bool) -> Result<Measurement> {
        let mut latency = Latency::default();
        let mut buf = AlignedBuf::with_capacity(block);
        buf.extend_from_slice(&vec![0xa5; block]);
        let mut offset = 0u64;
        let mut ops = 0u64;
        let mut completions = Vec::new();
        let expected = 1 + usize::from(sync);
        let started = Instant::now();
        while started.elapsed() < duration {
            if offset + block as u64 > self.size {
                offset = 0;
            }
            let op_started = Instant::now();
            let write = Op::Write { file: self.file, offset, buf };
            let write = if sync { Submission::linked(1, write) } else { Submission::new(1, write) };
            if self.storage.submit(write).is_err()
                || (sync
                    && self
                        .storage
                        .submit(Submission::new(2, Op::SyncData { file: self.file }))
                        .is_err())
            {
                bail!("raw baseline: submission queue full at depth 1");
            }
            completions.clear();
            while completions.len() < expected {
                self.storage.complete(&mut completions, Wait::One)?;
            }
            latency.record(op_started.elapsed());
            let mut returned = None;
            for completion in completions.drain(..) {
                completion.result.context(if sync {
                    "raw write+fdatasync"
                } else {
                    "raw write"
                })?;
                if let Some(b) = completion.buf {
                    returned = Some(b);
                }
            }
            buf = returned.context("write buffer not returned")?;
            offset += block as u64;
            ops += 1;
        }
        let mut measurement = Measurement::throughput(ops, ops * block as u64, started.elapsed());
        measurement.latency = Some(latency);
        Ok(measurement)
    }

    /// Sequential writes of `block` bytes, `depth` in flight, for `duration` (no sync):
    /// the device's write bandwidth at that size and depth.
    pub fn write_bandwidth(
        &mut self,
        block: usize,
        depth: usize,
        duration: Duration,
    ) -> Result<Measurement> {
        let mut buffers: Vec<AlignedBuf> = (0..depth)
            .map(|_| {
                let mut buf = AlignedBuf::with_capacity(block);
                buf.extend_from_slice(&vec![0x5a; block]);
                buf
            })
            .collect();
        let mut offset = 0u64;
        let mut ops = 0u64;
        let mut in_flight = 0usize;
        let mut completions = Vec::new();
        let started = Instant::now();
        loop {
            let running = started.elapsed() < duration;
            while running && in_flight < depth {
                let Some(buf) = buffers.pop() else { break };
                if offset + block as u64 > self.size {
                    offset = 0;
                }
                if let Err(rejected) = self
                    .storage
                    .submit(Submission::new(0, Op::Write { file: self.file, offset, buf }))
                {
                    buffers.extend(rejected.op.into_buf());
                    break;
                }
                offset += block as u64;
                in_flight += 1;
            }
            if in_flight == 0 {
                break;
            }
            completions.clear();
            self.storage.complete(&mut completions, Wait::One)?;
            for completion in completions.drain(..) {
                let written = completion.result.context("raw write")?;
                if written != block {
                    bail!("short raw write: {written} of {block}");
                }
                buffers.extend(completion.buf);
                in_flight -= 1;
                ops += 1;
            }
        }
        Ok(Measurement::throughput(ops, ops * block as u64, started.elapsed()))
    }

    /// Sequential `write` of `block` bytes each followed (linked) by `fdatasync`, one at a time,
    /// for `duration`: what a group commit of that size can reach.
    pub fn group_commit(&mut self, block: usize, duration: Duration) -> Result<Measurement> {
        self.write_sync_qd1(block, duration)
    }
}
