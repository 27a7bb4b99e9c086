//! Why a batch or a record could not be decoded.

use super::{BATCH_HEADER_SIZE, LOG_OVERHEAD};

/// Smallest legal `batchLength`: a header with no records.
pub(crate) const BATCH_LENGTH_MIN: i32 = (BATCH_HEADER_SIZE - LOG_OVERHEAD) as i32;
const _: () = assert!(BATCH_LENGTH_MIN == 49);

/// A batch or record failed to decode. Every decoder in [`crate::record`] returns this instead
/// of panicking, whatever the input bytes.
///
/// Positions are byte offsets from the first byte of the batch (its `baseOffset`); record
/// indexes count from 0 in batch order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ends before the batch does: a torn or partial write when it is the tail of a
    /// log, otherwise a short read.
    #[error("truncated record batch: {needed} bytes needed, only {available} available")]
    Truncated {
        /// Bytes the batch needs (its header, or its declared total size).
        needed: usize,
        /// Bytes the input holds.
        available: usize,
    },
    /// `batchLength` is smaller than a v2 header (49 bytes after the length field).
    #[error(
        "invalid record batch length {length}: a v2 batch has at least {min} bytes after its \
         12-byte offset and length prefix",
        min = BATCH_LENGTH_MIN
    )]
    InvalidLength {
        /// The `batchLength` field as stored.
        length: i32,
    },
    /// The magic byte is not 2: a legacy v0/v1 message set, or not a batch at all.
    #[error("unsupported record batch magic {magic}: only v2 batches (magic 2) are supported")]
    UnsupportedMagic {
        /// The magic byte as stored.
        magic: i8,
    },
    /// The CRC-32C stored in the header does not match the bytes it covers.
    #[error(
        "record batch checksum mismatch: stored CRC-32C {stored:#010x}, computed {computed:#010x}"
    )]
    ChecksumMismatch {
        /// The `crc` field as stored.
        stored: u32,
        /// CRC-32C of the bytes from `attributes` to the end of the batch.
        computed: u32,
    },
    /// The batch is compressed (or names an unknown codec); only uncompressed batches can have
    /// their records decoded.
    #[error(
        "unsupported compression codec {name} (attributes codec id {codec}): tidelog decodes \
         only uncompressed batches"
    )]
    UnsupportedCompression {
        /// Codec id from attribute bits 0–2.
        codec: u8,
        /// Kafka's name for the codec (`gzip`, `snappy`, `lz4`, `zstd`), or `unknown`.
        name: &'static str,
    },
    /// `recordsCount` is negative.
    #[error("invalid record count {count}: must not be negative")]
    InvalidRecordCount {
        /// The `recordsCount` field as stored.
        count: i32,
    },
    /// A varint is longer than its type allows, or sets bits beyond the type's width.
    #[error("malformed varint at byte {position} of the batch: too long for its type")]
    InvalidVarint {
        /// Offset of the varint's first byte.
        position: usize,
    },
    /// A record's fields are inconsistent with its length or with the batch.
    #[error("invalid record {index}: {reason}")]
    InvalidRecord {
        /// Index of the record in the batch.
        index: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The records end (exactly at the end of the batch) before `recordsCount` records.
    #[error(
        "record count mismatch: the header declares {header} records but the batch holds {decoded}"
    )]
    RecordCountMismatch {
        /// The `recordsCount` field.
        header: i32,
        /// Records actually decoded before the batch ended.
        decoded: usize,
    },
    /// Bytes remain after the `recordsCount`-th record.
    #[error("{trailing} bytes follow the last declared record of the batch")]
    TrailingBytes {
        /// Number of unexplained bytes at the end of the batch.
        trailing: usize,
    },
    /// A record's offset delta is not its index (offsets must be dense and in order).
    #[error("record {index} has offset delta {found}, expected {expected}")]
    OffsetDeltaMismatch {
        /// Index of the record in the batch.
        index: usize,
        /// The delta it should have (its index).
        expected: i32,
        /// The delta it has.
        found: i32,
    },
    /// `lastOffsetDelta` does not equal `recordsCount − 1`.
    #[error("lastOffsetDelta is {header}, expected {expected} (the record count minus one)")]
    LastOffsetDeltaMismatch {
        /// The `lastOffsetDelta` field.
        header: i32,
        /// `recordsCount − 1`.
        expected: i32,
    },
    /// The batch holds no records; a batch appended to a log must hold at least one.
    #[error("empty record batch: a batch must hold at least one record")]
    EmptyBatch,
}
