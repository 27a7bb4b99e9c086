//! Every limit the engine enforces, in one place (STYLE §2).
//!
//! Units go last in names. Related limits are tied together by `const` assertions so a change
//! that breaks an assumption fails to compile.

use std::time::Duration;

use tidelog_io::BLOCK_SIZE;

use crate::record::{BATCH_HEADER_SIZE, LOG_OVERHEAD};

/// Longest topic name (Kafka's limit, so names round-trip through Kafka tools).
pub const TOPIC_NAME_LEN_MAX: usize = 249;

/// Most partitions one topic may have.
pub const PARTITIONS_PER_TOPIC_MAX: u32 = 10_000;

/// Most topics one engine may hold.
pub const TOPICS_MAX: usize = 100_000;

/// Largest segment a topic may configure: positions in the offset index are 32-bit.
pub const SEGMENT_SIZE_BYTES_MAX: u64 = 1 << 30;

/// Smallest segment a topic may configure (small segments are for tests).
pub const SEGMENT_SIZE_BYTES_MIN: u64 = 16 * 1024;

/// Default segment size.
pub const SEGMENT_SIZE_BYTES_DEFAULT: u64 = 256 * 1024 * 1024;

/// Default segment age before a roll (Kafka's `segment.ms`: 7 days).
pub const SEGMENT_AGE_MS_DEFAULT: u64 = 7 * 24 * 60 * 60 * 1000;

/// Default largest record (encoded, in its batch) — Kafka's `max.message.bytes` default.
pub const RECORD_SIZE_BYTES_MAX_DEFAULT: u32 = 1024 * 1024 + 12;

/// Hard ceiling on any record or batch, whatever the topic says.
pub const BATCH_SIZE_BYTES_MAX: u32 = 64 * 1024 * 1024;

/// Most records in one appended batch.
pub const BATCH_RECORDS_MAX: usize = 1 << 20;

/// Bytes of log between two sparse index entries (Kafka's `index.interval.bytes`).
pub const INDEX_INTERVAL_BYTES: u32 = 4096;

/// Default write buffer per partition: appends are copied here and written in one operation
/// per group-commit window. It is the largest a partition's buffer grows to
/// (`EngineConfig::write_buffer_bytes`).
pub const WRITE_BUFFER_BYTES: usize = 1024 * 1024;

/// Size of a partition's first write buffer. Buffers double (up to `write_buffer_bytes`)
/// while appends overflow them and halve while a whole flush fills less than a quarter of
/// one, so 10,000 partitions with one small append each in flight hold 160 MiB, not 10 GiB.
pub const WRITE_BUFFER_BYTES_MIN: usize = 4 * BLOCK_SIZE;

/// Registered write buffers per shard (io_uring), by default.
pub const BUFFER_POOL_SLOTS_DEFAULT: usize = 16;

/// Most registered write buffers per shard.
pub const BUFFER_POOL_SLOTS_MAX: usize = 1024;

/// Spare write buffers of each size class a shard keeps for reuse by any of its partitions:
/// less than twice this many full-size (`write_buffer_bytes`) buffers' worth of memory in all
/// (the classes double). A partition keeps none: it holds a buffer only while it has bytes
/// waiting to be written.
pub const WRITE_BUFFERS_SPARE_PER_CLASS_MAX: usize = 8;

/// Most sealed write buffers a partition holds, waiting to be submitted, before the shard
/// stops taking its appends until completions drain them (backpressure) — counted in
/// full-size buffers' worth of bytes; `WRITE_BUFFERS_SEALED_COUNT_MAX` caps their number
/// while buffers are still small.
pub const WRITE_BUFFERS_SEALED_MAX: usize = 4;

/// Most sealed write buffers a partition holds, whatever their size (see
/// `WRITE_BUFFERS_SEALED_MAX`).
pub const WRITE_BUFFERS_SEALED_COUNT_MAX: usize = 16;

/// Memory one partition's tail cache may hold (at least two write buffers): readers at the
/// tail are served from it without a storage read.
pub const TAIL_CACHE_BYTES_PER_PARTITION: usize = 2 * 1024 * 1024;

/// Default memory all the tail caches of one shard may hold together
/// (`EngineConfig::tail_cache_bytes_per_shard`): the most recently written chunks stay, the
/// oldest go first, whichever partition holds them.
pub const TAIL_CACHE_BYTES_PER_SHARD_DEFAULT: usize = 64 * 1024 * 1024;

/// Largest `EngineConfig::tail_cache_bytes_per_shard`.
pub const TAIL_CACHE_BYTES_PER_SHARD_MAX: usize = 1 << 40;

/// Descriptors a partition keeps open: its active log and the active segment's two indexes.
/// (One more while a segment is prepared ahead of the writer, and one per closed segment
/// whose log a read or a roll left open.)
pub const FILE_DESCRIPTORS_PER_PARTITION: u64 = 3;

/// Descriptors kept free beyond what the partitions need, when checking `RLIMIT_NOFILE`
/// before opening partitions: for rolls (a new segment's three files open before the old
/// indexes close), logs of closed segments opened by reads, the catalog's own files and
/// whatever else the embedding process opens.
pub const FILE_DESCRIPTORS_HEADROOM: u64 = 128;

/// Requests a shard's inbound queue holds before callers are pushed back.
pub const SHARD_QUEUE_DEPTH: usize = 4096;

/// Most shards (threads) one engine runs.
pub const SHARDS_MAX: usize = 256;

/// Largest read a fetch may ask for.
pub const FETCH_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Default read size of a fetch.
pub const FETCH_BYTES_DEFAULT: usize = 1024 * 1024;

/// Longest a fetch may wait for data.
pub const FETCH_WAIT_MS_MAX: u64 = 60 * 60 * 1000;

/// Fetches a streaming consumer's subscription may have answered but not yet taken before
/// the shard stops reading ahead for it (`partition::read::Subscription`): bounds what a slow
/// consumer pins to this many fetches of at most `max_bytes` each.
pub const SUBSCRIPTION_FETCHES_AHEAD: usize = 2;

/// How often a shard checks segment age and retention.
pub const MAINTENANCE_INTERVAL_MS: u64 = 1000;

/// Default idle poll of a shard thread ([`crate::EngineConfig::idle_poll`]).
pub const IDLE_POLL_DEFAULT: Duration = Duration::from_micros(50);

/// Longest idle poll a shard may be configured with.
pub const IDLE_POLL_MAX: Duration = Duration::from_millis(1);

/// Default scheduler slice of a shard thread ([`crate::EngineConfig::shard_scheduler_slice`]):
/// the shortest the kernel grants.
pub const SHARD_SCHEDULER_SLICE_DEFAULT: Duration = Duration::from_micros(100);

/// Shortest scheduler slice a shard may ask for (the kernel's lower clamp).
pub const SHARD_SCHEDULER_SLICE_MIN: Duration = Duration::from_micros(100);

/// Longest scheduler slice a shard may ask for (the kernel's upper clamp).
pub const SHARD_SCHEDULER_SLICE_MAX: Duration = Duration::from_millis(100);

const _: () = assert!(SEGMENT_SIZE_BYTES_MAX <= u32::MAX as u64);
const _: () = assert!(SEGMENT_SIZE_BYTES_MIN >= 4 * BLOCK_SIZE as u64);
const _: () = assert!(SEGMENT_SIZE_BYTES_DEFAULT <= SEGMENT_SIZE_BYTES_MAX);
const _: () = assert!(SEGMENT_SIZE_BYTES_DEFAULT >= SEGMENT_SIZE_BYTES_MIN);
const _: () = assert!(RECORD_SIZE_BYTES_MAX_DEFAULT <= BATCH_SIZE_BYTES_MAX);
// A batch larger than the segment size gets a segment of its own (a roll happens before an
// append only when the active segment is not empty): positions must still fit 32 bits.
const _: () = assert!(SEGMENT_SIZE_BYTES_MAX + (BATCH_SIZE_BYTES_MAX as u64) < u32::MAX as u64);
const _: () = assert!(BATCH_HEADER_SIZE > LOG_OVERHEAD);
const _: () = assert!(WRITE_BUFFER_BYTES.is_multiple_of(BLOCK_SIZE));
const _: () = assert!(WRITE_BUFFER_BYTES_MIN.is_multiple_of(BLOCK_SIZE));
const _: () = assert!(WRITE_BUFFER_BYTES_MIN <= WRITE_BUFFER_BYTES);
const _: () = assert!(WRITE_BUFFERS_SEALED_MAX <= WRITE_BUFFERS_SEALED_COUNT_MAX);
const _: () = assert!(TAIL_CACHE_BYTES_PER_PARTITION <= TAIL_CACHE_BYTES_PER_SHARD_DEFAULT);
const _: () = assert!(TAIL_CACHE_BYTES_PER_SHARD_DEFAULT <= TAIL_CACHE_BYTES_PER_SHARD_MAX);
const _: () = assert!(FETCH_BYTES_DEFAULT <= FETCH_BYTES_MAX);
const _: () = assert!(INDEX_INTERVAL_BYTES as usize >= BATCH_HEADER_SIZE);
