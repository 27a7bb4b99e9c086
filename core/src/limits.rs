//! Every limit the engine enforces, in one place (STYLE §2).
//!
//! Units go last in names. Related limits are tied together by `const` assertions so a change
//! that breaks an assumption fails to compile.

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
/// per group-commit window.
pub const WRITE_BUFFER_BYTES: usize = 1024 * 1024;

/// Registered write buffers per shard (io_uring), by default.
pub const BUFFER_POOL_SLOTS_DEFAULT: usize = 16;

/// Most registered write buffers per shard.
pub const BUFFER_POOL_SLOTS_MAX: usize = 1024;

/// Most write buffers a partition keeps in reserve for reuse.
pub const WRITE_BUFFERS_SPARE_MAX: usize = 4;

/// Memory a partition's tail cache may hold (at least two write buffers): readers at the
/// tail are served from it without a storage read.
pub const TAIL_CACHE_BYTES_PER_PARTITION: usize = 2 * 1024 * 1024;

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

/// How often a shard checks segment age and retention.
pub const MAINTENANCE_INTERVAL_MS: u64 = 1000;

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
const _: () = assert!(FETCH_BYTES_DEFAULT <= FETCH_BYTES_MAX);
const _: () = assert!(INDEX_INTERVAL_BYTES as usize >= BATCH_HEADER_SIZE);
