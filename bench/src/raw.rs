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
    /// Bytes prepared at a time (the engine's segment size).
    size: u64,
    direct: bool,
    preparation: SegmentPreparation,
    /// Bytes below this are prepared.
    prepared_end: u64,
    /// Time spent preparing after creation, which measurements leave out.
    preparing: Duration,
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
    /// Create `path` with its first `size` bytes prepared as `preparation` says (grow: empty;
    /// fallocate; zero-fill: written with zeros), synced, opened direct if asked (and allowed).
    /// Writes never wrap around: past the prepared bytes the next `size` bytes are prepared
    /// the same way first (as the engine prepares its next segment ahead of the writer), and
    /// that time is left out of the measurements. Overwriting its own earlier blocks would
    /// measure a pre-written file — a faster `fdatasync`, no block allocation — which the
    /// engine under `grow` or `fallocate` never writes to.
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
        let direct = storage.is_direct(file);
        let mut raw = Self {
            storage,
            file,
            size,
            direct,
            preparation,
            prepared_end: 0,
            preparing: Duration::ZERO,
        };
        raw.prepare_next()?;
        raw.preparing = Duration::ZERO;
        Ok(raw)
    }

    /// Prepare the `size` bytes after what is prepared, and sync them.
    fn prepare_next(&mut self) -> Result<()> {
        let started = Instant::now();
        let (file, from, size) = (self.file, self.prepared_end, self.size);
        let storage = &mut *self.storage;
        match self.preparation {
            SegmentPreparation::Grow => {}
            SegmentPreparation::Fallocate => {
                run(storage, Op::Allocate { file, offset: from, len: size })?;
            }
            SegmentPreparation::ZeroFill => {
                let chunk = 1 << 20;
                let mut offset = from;
                while offset < from + size {
                    let len = chunk.min((from + size - offset) as usize);
                    let mut buf = AlignedBuf::with_capacity(len);
                    buf.extend_zeroed(len);
                    let (written, _) = run(storage, Op::Write { file, offset, buf })?;
                    if written != len {
                        bail!("short write while zero-filling");
                    }
                    offset += len as u64;
                }
            }
        }
        run(storage, Op::SyncData { file })?;
        self.prepared_end = from + size;
        self.preparing += started.elapsed();
        Ok(())
    }

    /// Before writing `len` bytes at `offset`: prepare what they reach (nothing to do for
    /// `grow`, whose file just grows).
    fn make_room(&mut self, offset: u64, len: usize) -> Result<()> {
        while self.needs_room(offset, len) {
            self.prepare_next()?;
        }
        Ok(())
    }

    /// Do `len` bytes at `offset` reach past what is prepared? (Never for `grow`.) Preparing
    /// needs an idle storage (`tidelog_io::storage::run`).
    fn needs_room(&self, offset: u64, len: usize) -> bool {
        self.preparation != SegmentPreparation::Grow && offset + len as u64 > self.prepared_end
    }

    /// Time measured since `started`, less the preparation done meanwhile.
    fn measured_since(&self, started: Instant, preparing_before: Duration) -> Duration {
        started.elapsed().saturating_sub(self.preparing.saturating_sub(preparing_before))
    }

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
        let preparing_before = self.preparing;
        while self.measured_since(started, preparing_before) < duration {
            self.make_room(offset, block)?;
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
        let elapsed = self.measured_since(started, preparing_before);
        let mut measurement = Measurement::throughput(ops, ops * block as u64, elapsed);
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
        let preparing_before = self.preparing;
        loop {
            let running = self.measured_since(started, preparing_before) < duration;
            while running && in_flight < depth {
                if self.needs_room(offset, block) {
                    // Preparing takes an idle storage: let the writes in flight finish first.
                    if in_flight > 0 {
                        break;
                    }
                    self.make_room(offset, block)?;
                }
                let Some(buf) = buffers.pop() else { break };
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
        let elapsed = self.measured_since(started, preparing_before);
        Ok(Measurement::throughput(ops, ops * block as u64, elapsed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidelog_io::portable::PortableStorage;

    const BLOCK: usize = 4096;
    /// Prepared a region of four blocks at a time, so a short run crosses many regions.
    const REGION: u64 = 4 * BLOCK as u64;

    /// For each preparation policy: `run` on a fresh raw file, then `check` its measurement
    /// and the file's bytes.
    fn for_each_preparation(
        run: impl Fn(&mut RawFile) -> Measurement,
        check: impl Fn(SegmentPreparation, Measurement, Vec<u8>),
    ) {
        for preparation in
            [SegmentPreparation::Grow, SegmentPreparation::Fallocate, SegmentPreparation::ZeroFill]
        {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("raw");
            let storage = Box::new(PortableStorage::new());
            let mut raw = RawFile::create(storage, &path, REGION, preparation, false).unwrap();
            let measurement = run(&mut raw);
            drop(raw);
            check(preparation, measurement, std::fs::read(&path).unwrap());
        }
    }

    /// Writes at depth 3 across many regions: regions are prepared between writes (never
    /// with writes in flight, which `run` refuses), and the file holds every write.
    #[test]
    fn bandwidth_at_depth_prepares_regions_with_nothing_in_flight() {
        for_each_preparation(
            |raw| raw.write_bandwidth(BLOCK, 3, Duration::from_millis(10)).unwrap(),
            |preparation, m, data| {
                assert!(m.mb_per_s > 0.0);
                assert!(data.len() as u64 > 2 * REGION, "{preparation:?}: {} bytes", data.len());
                let whole = data.len() / BLOCK * BLOCK;
                let last_written = data[..whole]
                    .chunks(BLOCK)
                    .take_while(|c| c.iter().all(|&b| b == 0x5a))
                    .count();
                // Every block up to the last one written holds a write (nothing skipped or
                // lost to a wrap); only the prepared tail after it may be zeros.
                assert!(data[last_written * BLOCK..].iter().all(|&b| b == 0), "{preparation:?}");
            },
        );
    }

    /// Written well past a region's end: every write lands after the one before (the file
    /// holds them all), however the regions are prepared.
    #[test]
    fn writes_never_wrap_around_onto_written_blocks() {
        for_each_preparation(
            // Long enough for more than 8 write+fdatasync cycles even when a busy disk takes
            // ~20 ms per sync (30 ms was too short for one CI run on a loaded machine).
            |raw| raw.write_sync_qd1(BLOCK, Duration::from_millis(250)).unwrap(),
            |preparation, m, data| {
                let ops = m.latency.as_ref().map_or(0, Latency::count);
                assert!(
                    ops > 8,
                    "{preparation:?}: only {ops} writes, the test needs more than 2 regions"
                );
                let written = ops as usize * BLOCK;
                assert!(
                    data.len() >= written,
                    "{preparation:?}: {} bytes for {written}",
                    data.len()
                );
                assert!(data[..written].iter().all(|&b| b == 0xa5), "{preparation:?}");
                if preparation == SegmentPreparation::Grow {
                    assert_eq!(data.len(), written);
                } else {
                    // Prepared a region at a time, and no further than the writes needed.
                    assert_eq!(data.len() as u64 % REGION, 0, "{preparation:?}");
                    assert!(data.len() < written + REGION as usize, "{preparation:?}");
                }
            },
        );
    }
}
