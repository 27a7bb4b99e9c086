//! Byte offsets and masks of the v2 batch header, each derived from the one before and checked
//! against Kafka's published layout at compile time.
//!
//! All multi-byte header fields are big-endian (network order), as Kafka defines them.

use std::mem::size_of;

/// `baseOffset: i64` — offset of the first record; assigned by the log on append.
pub const BASE_OFFSET_OFFSET: usize = 0;
/// `batchLength: i32` — bytes that follow this field (total batch size − 12).
pub const BATCH_LENGTH_OFFSET: usize = BASE_OFFSET_OFFSET + size_of::<i64>();
/// `partitionLeaderEpoch: i32` — stamped by the leader; not covered by the CRC.
pub const PARTITION_LEADER_EPOCH_OFFSET: usize = BATCH_LENGTH_OFFSET + size_of::<i32>();
/// `magic: i8` — format version, 2.
pub const MAGIC_OFFSET: usize = PARTITION_LEADER_EPOCH_OFFSET + size_of::<i32>();
/// `crc: u32` — CRC-32C (Castagnoli) of everything from `attributes` to the end of the batch.
pub const CRC_OFFSET: usize = MAGIC_OFFSET + size_of::<i8>();
/// `attributes: i16` — compression, timestamp type and flags; first byte covered by the CRC.
pub const ATTRIBUTES_OFFSET: usize = CRC_OFFSET + size_of::<u32>();
/// `lastOffsetDelta: i32` — offset of the last record relative to `baseOffset`.
pub const LAST_OFFSET_DELTA_OFFSET: usize = ATTRIBUTES_OFFSET + size_of::<i16>();
/// `baseTimestamp: i64` — timestamp of the first record (or the delete horizon, see
/// [`DELETE_HORIZON_MASK`]); record timestamps are deltas from it.
pub const BASE_TIMESTAMP_OFFSET: usize = LAST_OFFSET_DELTA_OFFSET + size_of::<i32>();
/// `maxTimestamp: i64` — largest record timestamp, or the log-append time.
pub const MAX_TIMESTAMP_OFFSET: usize = BASE_TIMESTAMP_OFFSET + size_of::<i64>();
/// `producerId: i64` — idempotent/transactional producer id, −1 if none.
pub const PRODUCER_ID_OFFSET: usize = MAX_TIMESTAMP_OFFSET + size_of::<i64>();
/// `producerEpoch: i16` — −1 if none.
pub const PRODUCER_EPOCH_OFFSET: usize = PRODUCER_ID_OFFSET + size_of::<i64>();
/// `baseSequence: i32` — producer sequence number of the first record, −1 if none.
pub const BASE_SEQUENCE_OFFSET: usize = PRODUCER_EPOCH_OFFSET + size_of::<i16>();
/// `recordsCount: i32` — number of records that follow.
pub const RECORDS_COUNT_OFFSET: usize = BASE_SEQUENCE_OFFSET + size_of::<i32>();
/// First byte of the first record.
pub const RECORDS_OFFSET: usize = RECORDS_COUNT_OFFSET + size_of::<i32>();

/// Attributes bits 0–2: compression codec id (see [`super::Compression`]).
pub const COMPRESSION_MASK: i16 = 0x07;
/// Attributes bit 3: 0 = create time, 1 = log-append time.
pub const TIMESTAMP_TYPE_MASK: i16 = 0x08;
/// Attributes bit 4: the batch belongs to a transaction.
pub const TRANSACTIONAL_MASK: i16 = 0x10;
/// Attributes bit 5: the batch holds control records (transaction markers).
pub const CONTROL_MASK: i16 = 0x20;
/// Attributes bit 6: `baseTimestamp` holds the compaction delete horizon (KIP-534).
pub const DELETE_HORIZON_MASK: i16 = 0x40;

// Kafka's DefaultRecordBatch offsets, spelled out: a reordering above fails the build.
const _: () = assert!(BASE_OFFSET_OFFSET == 0);
const _: () = assert!(BATCH_LENGTH_OFFSET == 8);
const _: () = assert!(PARTITION_LEADER_EPOCH_OFFSET == 12);
const _: () = assert!(MAGIC_OFFSET == 16);
const _: () = assert!(CRC_OFFSET == 17);
const _: () = assert!(ATTRIBUTES_OFFSET == 21);
const _: () = assert!(LAST_OFFSET_DELTA_OFFSET == 23);
const _: () = assert!(BASE_TIMESTAMP_OFFSET == 27);
const _: () = assert!(MAX_TIMESTAMP_OFFSET == 35);
const _: () = assert!(PRODUCER_ID_OFFSET == 43);
const _: () = assert!(PRODUCER_EPOCH_OFFSET == 51);
const _: () = assert!(BASE_SEQUENCE_OFFSET == 53);
const _: () = assert!(RECORDS_COUNT_OFFSET == 57);
const _: () = assert!(RECORDS_OFFSET == 61);
const _: () = assert!(RECORDS_OFFSET == super::BATCH_HEADER_SIZE);
const _: () = assert!(PARTITION_LEADER_EPOCH_OFFSET == super::LOG_OVERHEAD);
// The CRC must not cover baseOffset, batchLength, partitionLeaderEpoch, magic or itself: the
// first three are rewritten by the log without recomputing it.
const _: () = assert!(ATTRIBUTES_OFFSET == CRC_OFFSET + size_of::<u32>());
// The masks are pairwise disjoint (their sum equals their union) and cover bits 0–6.
const _: () = assert!(
    COMPRESSION_MASK
        + TIMESTAMP_TYPE_MASK
        + TRANSACTIONAL_MASK
        + CONTROL_MASK
        + DELETE_HORIZON_MASK
        == COMPRESSION_MASK
            | TIMESTAMP_TYPE_MASK
            | TRANSACTIONAL_MASK
            | CONTROL_MASK
            | DELETE_HORIZON_MASK
);
const _: () = assert!(
    COMPRESSION_MASK
        | TIMESTAMP_TYPE_MASK
        | TRANSACTIONAL_MASK
        | CONTROL_MASK
        | DELETE_HORIZON_MASK
        == 0x7f
);
