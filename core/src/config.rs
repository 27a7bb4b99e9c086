//! Engine and topic configuration, with defaults and validation.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tidelog_io::{Clock, StorageFactory, SystemClock};

use crate::error::{Error, Result};
use crate::limits;

/// When an append is acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Durability {
    /// Once the owning shard has accepted the batch and assigned its offsets (in memory).
    None,
    /// Once the write has completed: in the page cache (buffered I/O) or the device's
    /// volatile cache (direct I/O). Survives a process crash, not a power loss.
    #[default]
    Written,
    /// Once an `fdatasync` covering the batch has completed. Survives a power loss.
    Durable,
}

impl Durability {
    /// Lower-case name, as used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Durability::None => "none",
            Durability::Written => "written",
            Durability::Durable => "durable",
        }
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "none" => Ok(Durability::None),
            "written" => Ok(Durability::Written),
            "durable" => Ok(Durability::Durable),
            other => {
                Err(format!("unknown durability {other:?}: expected none, written or durable"))
            }
        }
    }
}

/// Which I/O backend the engine uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IoChoice {
    /// The best available backend.
    #[default]
    Auto,
    /// io_uring; opening fails if it is unavailable.
    Uring,
    /// `pread`/`pwrite`/`fdatasync`.
    Portable,
}

impl IoChoice {
    /// Lower-case name, as used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            IoChoice::Auto => "auto",
            IoChoice::Uring => "uring",
            IoChoice::Portable => "portable",
        }
    }
}

impl FromStr for IoChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(IoChoice::Auto),
            "uring" => Ok(IoChoice::Uring),
            "portable" => Ok(IoChoice::Portable),
            other => {
                Err(format!("unknown I/O backend {other:?}: expected auto, uring or portable"))
            }
        }
    }
}

/// How a segment file is prepared before the writer reaches it (`docs/ARCHITECTURE.md`,
/// "Segment preparation", has the measurements behind the default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SegmentPreparation {
    /// Create an empty file; appends grow it.
    #[default]
    Grow,
    /// `fallocate` the whole segment (unwritten extents).
    Fallocate,
    /// Write zeros over the whole segment so its blocks already hold data.
    ZeroFill,
}

impl SegmentPreparation {
    /// Lower-case name, as used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            SegmentPreparation::Grow => "grow",
            SegmentPreparation::Fallocate => "fallocate",
            SegmentPreparation::ZeroFill => "zero-fill",
        }
    }
}

impl fmt::Display for SegmentPreparation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SegmentPreparation {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "grow" => Ok(SegmentPreparation::Grow),
            "fallocate" => Ok(SegmentPreparation::Fallocate),
            "zero-fill" => Ok(SegmentPreparation::ZeroFill),
            other => {
                Err(format!("unknown preparation {other:?}: expected grow, fallocate or zero-fill"))
            }
        }
    }
}

/// Engine-wide settings. `EngineConfig::default()` is right for most embedders.
#[derive(Clone)]
pub struct EngineConfig {
    /// Shard threads; each owns a subset of the partitions. Default: the CPUs this process may
    /// use.
    pub shards: usize,
    /// I/O backend.
    pub io: IoChoice,
    /// Overrides `io` with a specific storage factory (the simulated disk in tests).
    pub storage: Option<Arc<dyn StorageFactory>>,
    /// Source of time for record timestamps, segment age and retention.
    pub clock: Arc<dyn Clock>,
    /// How segments are prepared ahead of the writer.
    pub segment_preparation: SegmentPreparation,
    /// Largest write buffer of a partition. A partition's first buffer is
    /// [`limits::WRITE_BUFFER_BYTES_MIN`]; buffers double toward this size while appends
    /// overflow them and shrink again when a flush fills less than a quarter of one. A
    /// partition holds a buffer only while it has bytes waiting to be written.
    pub write_buffer_bytes: usize,
    /// Memory the tail caches of one shard may hold together: recently written batches kept
    /// in memory so that readers at the tail need no storage read. Each partition's cache
    /// holds at most [`limits::TAIL_CACHE_BYTES_PER_PARTITION`] (or two write buffers, if
    /// larger); when the shard's caches together exceed this budget, the oldest chunks go
    /// first, whichever partition holds them, so memory stays bounded however many
    /// partitions the shard has. Reads that miss the cache read the segment files. 0 turns
    /// the cache off. Default [`limits::TAIL_CACHE_BYTES_PER_SHARD_DEFAULT`] (64 MiB), at
    /// most [`limits::TAIL_CACHE_BYTES_PER_SHARD_MAX`].
    pub tail_cache_bytes_per_shard: usize,
    /// How often shards check segment age and retention.
    pub maintenance_interval_ms: u64,
    /// Write segment logs with `O_DIRECT` (block-aligned writes from aligned buffers, no page
    /// cache), falling back to buffered I/O where the file system refuses it.
    pub direct_io: bool,
    /// Pin shard `i` to the `i`-th CPU this process may use (modulo their number).
    pub pin_shards: bool,
    /// When a shard has nothing else in flight, run a needed `fdatasync` as a plain system
    /// call on the shard's thread instead of submitting it. On io_uring an fsync always goes
    /// to a kernel worker thread (two thread hand-offs), so this lowers the latency of
    /// one-at-a-time durable appends — at the price of blocking the shard for the sync, and of
    /// `fdatasync` system calls on the append path. Off by default (docs/BENCHMARKS.md has
    /// both measured). No effect on the portable backend, which syncs inline anyway.
    pub inline_sync: bool,
    /// The scheduler time slice each shard thread asks for (Linux ≥ 6.12, whose EEVDF
    /// scheduler takes a `SCHED_OTHER` thread's `sched_runtime` as its slice; older kernels
    /// ignore it). A shard sleeps between requests and completions and runs for a few
    /// microseconds when woken; with a short slice its wake-up preempts a thread that is
    /// using up a default slice (1.4 ms on a 2-CPU 6.18 kernel) instead of waiting behind it. It
    /// asks for no more CPU than before. `None` leaves the threads as they are. Default
    /// [`limits::SHARD_SCHEDULER_SLICE_DEFAULT`] (100 µs, the kernel's minimum); allowed
    /// 100 µs..=100 ms. docs/BENCHMARKS.md has it measured.
    pub shard_scheduler_slice: Option<Duration>,
    /// How long an idle shard thread polls its mailbox before it sleeps, when it has no
    /// operation in flight. A producer answering the acknowledgement it just got (a
    /// one-at-a-time durable writer, an open-loop stream) usually sends its next request within
    /// tens of microseconds; finding the shard awake saves a wake-up on both sides. Costs up to
    /// this much CPU after each burst of work. Zero turns it off. Default
    /// [`limits::IDLE_POLL_DEFAULT`] (50 µs), at most [`limits::IDLE_POLL_MAX`].
    /// docs/BENCHMARKS.md has it measured.
    pub idle_poll: Duration,
    /// Write buffers per shard in the io_uring backend's registered pool (each
    /// `write_buffer_bytes`; allocated, pre-faulted and registered when the shard starts).
    /// When they are all in use, writes use heap buffers without `WRITE_FIXED`.
    pub buffer_pool_slots: usize,
    /// Run no shard threads: shards run only when the caller steps them
    /// ([`crate::Engine::step`], [`crate::Engine::block_on`]). With the simulated disk and a
    /// manual clock this makes a whole engine deterministic, for simulation testing. A plain
    /// [`crate::Pending::wait`] would wait forever in this mode: use `Engine::block_on`.
    pub manual_shards: bool,
}

impl fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineConfig")
            .field("shards", &self.shards)
            .field("io", &self.io)
            .field("storage", &self.storage)
            .field("clock", &self.clock)
            .field("segment_preparation", &self.segment_preparation)
            .field("write_buffer_bytes", &self.write_buffer_bytes)
            .field("tail_cache_bytes_per_shard", &self.tail_cache_bytes_per_shard)
            .field("maintenance_interval_ms", &self.maintenance_interval_ms)
            .field("direct_io", &self.direct_io)
            .field("pin_shards", &self.pin_shards)
            .field("inline_sync", &self.inline_sync)
            .field("shard_scheduler_slice", &self.shard_scheduler_slice)
            .field("idle_poll", &self.idle_poll)
            .field("buffer_pool_slots", &self.buffer_pool_slots)
            .field("manual_shards", &self.manual_shards)
            .finish()
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            shards: std::thread::available_parallelism().map_or(1, |n| n.get()),
            io: IoChoice::Auto,
            storage: None,
            clock: Arc::new(SystemClock::default()),
            segment_preparation: SegmentPreparation::default(),
            write_buffer_bytes: limits::WRITE_BUFFER_BYTES,
            tail_cache_bytes_per_shard: limits::TAIL_CACHE_BYTES_PER_SHARD_DEFAULT,
            maintenance_interval_ms: limits::MAINTENANCE_INTERVAL_MS,
            direct_io: false,
            pin_shards: true,
            inline_sync: false,
            shard_scheduler_slice: Some(limits::SHARD_SCHEDULER_SLICE_DEFAULT),
            idle_poll: limits::IDLE_POLL_DEFAULT,
            buffer_pool_slots: limits::BUFFER_POOL_SLOTS_DEFAULT,
            manual_shards: false,
        }
    }
}

impl EngineConfig {
    /// Set the number of shards.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards;
        self
    }
    /// Set the I/O backend.
    pub fn io(mut self, io: IoChoice) -> Self {
        self.io = io;
        self
    }
    /// Use a specific storage factory.
    pub fn storage(mut self, storage: Arc<dyn StorageFactory>) -> Self {
        self.storage = Some(storage);
        self
    }
    /// Use a specific clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
    /// Run shards manually (see [`EngineConfig::manual_shards`]).
    pub fn manual_shards(mut self, manual: bool) -> Self {
        self.manual_shards = manual;
        self
    }
    /// Pin shard threads to CPUs (or not).
    pub fn pin_shards(mut self, pin: bool) -> Self {
        self.pin_shards = pin;
        self
    }
    /// Use `O_DIRECT` for segment logs.
    pub fn direct_io(mut self, direct: bool) -> Self {
        self.direct_io = direct;
        self
    }
    /// Set how long an idle shard polls before sleeping ([`EngineConfig::idle_poll`]).
    pub fn idle_poll(mut self, poll: Duration) -> Self {
        self.idle_poll = poll;
        self
    }
    /// Set the scheduler slice shard threads ask for ([`EngineConfig::shard_scheduler_slice`]).
    pub fn shard_scheduler_slice(mut self, slice: Option<Duration>) -> Self {
        self.shard_scheduler_slice = slice;
        self
    }
    /// Run an idle shard's `fdatasync` as a system call ([`EngineConfig::inline_sync`]).
    pub fn inline_sync(mut self, inline: bool) -> Self {
        self.inline_sync = inline;
        self
    }

    /// Set segment preparation.
    pub fn segment_preparation(mut self, preparation: SegmentPreparation) -> Self {
        self.segment_preparation = preparation;
        self
    }
    /// Set the memory one shard's tail caches may hold together.
    pub fn tail_cache_bytes_per_shard(mut self, bytes: usize) -> Self {
        self.tail_cache_bytes_per_shard = bytes;
        self
    }

    /// The storage factory this configuration selects: `storage` if set, else the backend
    /// `io` names. Benchmarks use it to measure the raw device through the same backend.
    ///
    /// `auto` probes io_uring (can a ring be made here, are the operations the engine needs
    /// supported?) and falls back to the portable backend if not, logging the reason once per
    /// process; `uring` fails with that reason instead.
    pub fn storage_factory(&self) -> Result<Arc<dyn StorageFactory>> {
        if let Some(storage) = &self.storage {
            return Ok(storage.clone());
        }
        // Pool slots are write-buffer sized, so every partition write can be a WRITE_FIXED.
        let uring = || {
            Arc::new(tidelog_io::UringFactory::new(tidelog_io::UringConfig {
                buffer_pool_slots: self.buffer_pool_slots,
                buffer_pool_slot_bytes: self.write_buffer_bytes,
                ..tidelog_io::UringConfig::default()
            }))
        };
        match self.io {
            IoChoice::Portable => Ok(Arc::new(tidelog_io::PortableFactory)),
            IoChoice::Uring => match tidelog_io::uring::probe() {
                Ok(_) => Ok(uring()),
                Err(reason) => {
                    Err(Error::config("io", format!("io_uring is not usable here: {reason}")))
                }
            },
            IoChoice::Auto => match tidelog_io::uring::probe() {
                Ok(_) => Ok(uring()),
                Err(reason) => {
                    static WARNED: std::sync::Once = std::sync::Once::new();
                    WARNED.call_once(|| {
                        tracing::warn!(%reason, "io_uring is not usable here; using the portable backend");
                    });
                    Ok(Arc::new(tidelog_io::PortableFactory))
                }
            },
        }
    }

    /// Check every field against the limits.
    pub fn validate(&self) -> Result<()> {
        if self.shards == 0 || self.shards > limits::SHARDS_MAX {
            return Err(Error::config("shards", format!("must be 1..={}", limits::SHARDS_MAX)));
        }
        if self.write_buffer_bytes < tidelog_io::BLOCK_SIZE
            || self.write_buffer_bytes > limits::FETCH_BYTES_MAX
        {
            return Err(Error::config(
                "write_buffer_bytes",
                format!("must be {}..={}", tidelog_io::BLOCK_SIZE, limits::FETCH_BYTES_MAX),
            ));
        }
        if self.buffer_pool_slots > limits::BUFFER_POOL_SLOTS_MAX {
            return Err(Error::config(
                "buffer_pool_slots",
                format!("must be at most {}", limits::BUFFER_POOL_SLOTS_MAX),
            ));
        }
        if self.tail_cache_bytes_per_shard > limits::TAIL_CACHE_BYTES_PER_SHARD_MAX {
            return Err(Error::config(
                "tail_cache_bytes_per_shard",
                format!(
                    "must be at most {}, not {}",
                    limits::TAIL_CACHE_BYTES_PER_SHARD_MAX,
                    self.tail_cache_bytes_per_shard
                ),
            ));
        }
        if self.maintenance_interval_ms == 0 {
            return Err(Error::config("maintenance_interval_ms", "must be positive"));
        }
        if self.idle_poll > limits::IDLE_POLL_MAX {
            return Err(Error::config(
                "idle_poll",
                format!("must be at most {:?}, not {:?}", limits::IDLE_POLL_MAX, self.idle_poll),
            ));
        }
        if let Some(slice) = self.shard_scheduler_slice
            && !(limits::SHARD_SCHEDULER_SLICE_MIN..=limits::SHARD_SCHEDULER_SLICE_MAX)
                .contains(&slice)
        {
            return Err(Error::config(
                "shard_scheduler_slice",
                format!(
                    "must be {:?}..={:?}, not {slice:?}",
                    limits::SHARD_SCHEDULER_SLICE_MIN,
                    limits::SHARD_SCHEDULER_SLICE_MAX
                ),
            ));
        }
        Ok(())
    }
}

/// Per-topic settings, fixed when the topic is created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicConfig {
    /// Number of partitions.
    pub partitions: u32,
    /// A segment rolls when an append would take it past this size.
    pub segment_size_bytes: u64,
    /// A segment rolls when its first record was appended this long ago.
    pub segment_age_ms: u64,
    /// Delete closed segments while the partition holds more than this (None: no limit).
    pub retention_bytes: Option<u64>,
    /// Delete closed segments whose newest record is older than this (None: keep forever).
    pub retention_ms: Option<u64>,
    /// Largest record batch one append may carry, in encoded bytes.
    pub record_size_bytes_max: u32,
}

impl Default for TopicConfig {
    fn default() -> Self {
        Self {
            partitions: 1,
            segment_size_bytes: limits::SEGMENT_SIZE_BYTES_DEFAULT,
            segment_age_ms: limits::SEGMENT_AGE_MS_DEFAULT,
            retention_bytes: None,
            retention_ms: Some(7 * 24 * 60 * 60 * 1000),
            record_size_bytes_max: limits::RECORD_SIZE_BYTES_MAX_DEFAULT,
        }
    }
}

impl TopicConfig {
    /// Set the partition count.
    pub fn partitions(mut self, partitions: u32) -> Self {
        self.partitions = partitions;
        self
    }
    /// Set the segment size.
    pub fn segment_size_bytes(mut self, bytes: u64) -> Self {
        self.segment_size_bytes = bytes;
        self
    }
    /// Set the segment age.
    pub fn segment_age_ms(mut self, ms: u64) -> Self {
        self.segment_age_ms = ms;
        self
    }
    /// Set size-based retention.
    pub fn retention_bytes(mut self, bytes: Option<u64>) -> Self {
        self.retention_bytes = bytes;
        self
    }
    /// Set time-based retention.
    pub fn retention_ms(mut self, ms: Option<u64>) -> Self {
        self.retention_ms = ms;
        self
    }
    /// Set the largest batch.
    pub fn record_size_bytes_max(mut self, bytes: u32) -> Self {
        self.record_size_bytes_max = bytes;
        self
    }

    /// Check every field against the limits.
    pub fn validate(&self) -> Result<()> {
        if self.partitions == 0 || self.partitions > limits::PARTITIONS_PER_TOPIC_MAX {
            return Err(Error::config(
                "partitions",
                format!(
                    "must be 1..={}, not {}",
                    limits::PARTITIONS_PER_TOPIC_MAX,
                    self.partitions
                ),
            ));
        }
        let segment = limits::SEGMENT_SIZE_BYTES_MIN..=limits::SEGMENT_SIZE_BYTES_MAX;
        if !segment.contains(&self.segment_size_bytes) {
            return Err(Error::config(
                "segment_size_bytes",
                format!(
                    "must be {}..={}, not {}",
                    segment.start(),
                    segment.end(),
                    self.segment_size_bytes
                ),
            ));
        }
        if self.segment_age_ms == 0 {
            return Err(Error::config("segment_age_ms", "must be positive"));
        }
        if self.retention_ms == Some(0) {
            return Err(Error::config("retention_ms", "must be positive (or none)"));
        }
        let record_max =
            (crate::record::BATCH_HEADER_SIZE as u32 + 1)..=limits::BATCH_SIZE_BYTES_MAX;
        if !record_max.contains(&self.record_size_bytes_max) {
            return Err(Error::config(
                "record_size_bytes_max",
                format!(
                    "must be {}..={}, not {}",
                    record_max.start(),
                    record_max.end(),
                    self.record_size_bytes_max
                ),
            ));
        }
        if !self.segment_size_bytes.is_multiple_of(tidelog_io::BLOCK_SIZE as u64) {
            return Err(Error::config(
                "segment_size_bytes",
                format!(
                    "must be a multiple of {}, not {}",
                    tidelog_io::BLOCK_SIZE,
                    self.segment_size_bytes
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        EngineConfig::default().validate().unwrap();
        TopicConfig::default().validate().unwrap();
    }

    #[test]
    fn bad_engine_configs_are_rejected_with_the_field_named() {
        let cases = [
            (EngineConfig::default().shards(0), "shards"),
            (
                EngineConfig::default()
                    .tail_cache_bytes_per_shard(limits::TAIL_CACHE_BYTES_PER_SHARD_MAX + 1),
                "tail_cache_bytes_per_shard",
            ),
        ];
        for (config, field) in cases {
            let err = config.validate().unwrap_err();
            assert!(
                matches!(err, Error::InvalidConfig { field: f, .. } if f == field),
                "{config:?}: {err}"
            );
        }
        // No tail cache at all is a valid choice.
        EngineConfig::default().tail_cache_bytes_per_shard(0).validate().unwrap();
    }

    #[test]
    fn bad_topic_configs_are_rejected_with_the_field_named() {
        let cases = [
            (TopicConfig::default().partitions(0), "partitions"),
            (TopicConfig::default().partitions(limits::PARTITIONS_PER_TOPIC_MAX + 1), "partitions"),
            (TopicConfig::default().segment_size_bytes(10), "segment_size_bytes"),
            (TopicConfig::default().segment_size_bytes(1 << 40), "segment_size_bytes"),
            (TopicConfig::default().segment_age_ms(0), "segment_age_ms"),
            (TopicConfig::default().retention_ms(Some(0)), "retention_ms"),
            (TopicConfig::default().record_size_bytes_max(3), "record_size_bytes_max"),
        ];
        for (config, field) in cases {
            let err = config.validate().unwrap_err();
            assert!(
                matches!(err, Error::InvalidConfig { field: f, .. } if f == field),
                "{config:?}: {err}"
            );
        }
    }

    #[test]
    fn names_parse_back() {
        for d in [Durability::None, Durability::Written, Durability::Durable] {
            assert_eq!(d.name().parse::<Durability>().unwrap(), d);
        }
        assert!("sometimes".parse::<Durability>().is_err());
        for io in [IoChoice::Auto, IoChoice::Uring, IoChoice::Portable] {
            assert_eq!(io.name().parse::<IoChoice>().unwrap(), io);
        }
        for preparation in
            [SegmentPreparation::Grow, SegmentPreparation::Fallocate, SegmentPreparation::ZeroFill]
        {
            assert_eq!(preparation.name().parse::<SegmentPreparation>().unwrap(), preparation);
        }
        assert!("zero".parse::<SegmentPreparation>().is_err());
    }
}
