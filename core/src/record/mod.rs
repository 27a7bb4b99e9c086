//! Kafka's record-batch format, magic v2: the unit tidelog stores in segments and sends to
//! consumers.
//!
//! # Why this format
//!
//! Segment files hold batches exactly as a Kafka producer sends them and a Kafka consumer
//! expects them, so stored bytes go out on the network without being re-encoded, and a future
//! Kafka-protocol front end needs no translation. The layout is Kafka's `DefaultRecordBatch` /
//! `DefaultRecord`, byte for byte:
//!
//! - **Big-endian.** Every fixed-width header field is big-endian (network order), as Kafka
//!   defines it — unlike tidelog's own index and metadata layouts, which are little-endian.
//! - **One checksum per batch**, CRC-32C (Castagnoli), over everything from `attributes` to the
//!   end of the batch. `baseOffset`, `batchLength`, `partitionLeaderEpoch` and `magic` sit
//!   before it and are not covered, so the log assigns offsets and leader epochs on append
//!   ([`set_base_offset`], [`set_partition_leader_epoch`]) without recomputing the checksum.
//! - **Records are delta-encoded** against the header (offset and timestamp deltas) with
//!   zig-zag varints ([`varint`]), so a small record costs a handful of bytes of framing.
//!
//! # Batch layout
//!
//! ```text
//!  offset size field                  type   CRC  notes
//!  ------ ---- ---------------------- ------ ---  ------------------------------------------
//!       0    8 baseOffset             i64     -   offset of record 0; set by the log on append
//!       8    4 batchLength            i32     -   bytes after this field: total = 12 + batchLength
//!      12    4 partitionLeaderEpoch   i32     -   set by the leader on append
//!      16    1 magic                  i8      -   2
//!      17    4 crc                    u32     -   CRC-32C of bytes 21 .. end
//!      21    2 attributes             i16     ✓   see below
//!      23    4 lastOffsetDelta        i32     ✓   recordsCount - 1 for a freshly produced batch
//!      27    8 baseTimestamp          i64     ✓   timestamp of record 0
//!      35    8 maxTimestamp           i64     ✓   largest record timestamp (or log-append time)
//!      43    8 producerId             i64     ✓   -1 without idempotence
//!      51    2 producerEpoch          i16     ✓   -1 without idempotence
//!      53    4 baseSequence           i32     ✓   -1 without idempotence
//!      57    4 recordsCount           i32     ✓
//!      61    … records                        ✓   recordsCount records, back to back
//!
//!  attributes (i16, only the low byte is used):
//!    bit  15 … 7 |     6          |    5    |       4       |      3         |  2 … 0
//!        unused  | delete horizon | control | transactional | timestamp type | compression
//!                                                            0 create time     0 none 1 gzip
//!                                                            1 log-append      2 snappy 3 lz4
//!                                                                              4 zstd
//! ```
//!
//! # Record layout
//!
//! ```text
//!  length            varint    bytes that follow, up to the end of this record
//!  attributes        i8        unused, written as 0
//!  timestampDelta    varlong   timestamp - baseTimestamp
//!  offsetDelta       varint    offset - baseOffset (the record's index in a fresh batch)
//!  keyLength         varint    -1 = null key
//!  key               keyLength bytes
//!  valueLength       varint    -1 = null value (a tombstone)
//!  value             valueLength bytes
//!  headersCount      varint
//!  headers           headersCount times:
//!    headerKeyLength   varint
//!    headerKey         headerKeyLength bytes, UTF-8
//!    headerValueLength varint  -1 = null value
//!    headerValue       headerValueLength bytes
//! ```
//!
//! # Encoding and decoding
//!
//! [`BatchBuilder`] (and [`encode_batch`]) write a batch into one `Vec<u8>`, reserving space once
//! per record and never allocating per field; [`BatchBuilder::finish`] patches the header and
//! computes the CRC. Builders write uncompressed, create-time batches.
//!
//! [`BatchView`] reads a batch in place: every accessor borrows from the input, nothing is
//! copied. Decoding is split by cost and purpose:
//!
//! - [`BatchView::parse`] checks only what it must to delimit the batch (length, magic, record
//!   count) — enough for [`BatchIter`] to walk a segment batch by batch.
//! - [`BatchView::verify_crc`] checks the checksum — what recovery needs per batch.
//! - [`BatchView::validate`] checks everything the append path needs: checksum, supported
//!   compression, every record well-formed, dense offset deltas, consistent counts.
//! - [`BatchView::records`] iterates the records; structural errors end the iteration with an
//!   `Err` item rather than garbage.
//!
//! Compressed batches can be parsed, checksummed, stored and forwarded, but not opened:
//! [`BatchView::records`] and [`BatchView::validate`] return
//! [`DecodeError::UnsupportedCompression`] for them. No decoder panics, reads out of bounds or
//! allocates based on a length read from the input.

mod encode;
mod error;
pub mod layout;
pub mod varint;
mod view;

pub use encode::{
    BatchBuilder, encode_batch, record_encoded_size, set_base_offset, set_log_append_time,
    set_partition_leader_epoch,
};
pub use error::DecodeError;
pub use view::{BatchIter, BatchView, HeaderIter, HeaderView, RecordIter, RecordView};

use std::fmt;

/// Bytes before a batch's `partitionLeaderEpoch`: `baseOffset` (8) and `batchLength` (4). The
/// total size of a batch is `LOG_OVERHEAD + batchLength`.
pub const LOG_OVERHEAD: usize = 12;
/// Size of the fixed batch header, up to and including `recordsCount`: the size of a batch with
/// no records.
pub const BATCH_HEADER_SIZE: usize = 61;
/// Largest batch the format can describe: `batchLength` is an `i32`. Engines set their own,
/// far smaller, limit; this one only bounds what [`BatchBuilder`] will write.
pub const BATCH_SIZE_BYTES_MAX: usize = LOG_OVERHEAD + i32::MAX as usize;
/// The record-batch format version this module reads and writes.
pub const MAGIC_V2: i8 = 2;
/// Producer id of a batch from a producer without idempotence (Kafka's `NO_PRODUCER_ID`).
pub const NO_PRODUCER_ID: i64 = -1;
/// Producer epoch without idempotence (Kafka's `NO_PRODUCER_EPOCH`).
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// Base sequence without idempotence (Kafka's `NO_SEQUENCE`).
pub const NO_SEQUENCE: i32 = -1;
/// Partition leader epoch not yet assigned (Kafka's `NO_PARTITION_LEADER_EPOCH`).
pub const NO_PARTITION_LEADER_EPOCH: i32 = -1;
/// Timestamp of an empty batch (Kafka's `NO_TIMESTAMP`).
pub const NO_TIMESTAMP: i64 = -1;
/// Smallest possible encoded record: seven one-byte fields (length, attributes, timestamp
/// delta, offset delta, null key, null value, zero headers).
pub const RECORD_SIZE_MIN: usize = 7;
/// Largest framing of one record apart from key, value and headers: length varint (5),
/// attributes (1), timestamp delta varlong (10), offset delta varint (5). Kafka's
/// `MAX_RECORD_OVERHEAD`.
pub const RECORD_OVERHEAD_MAX: usize = 21;

const _: () = assert!(LOG_OVERHEAD == std::mem::size_of::<i64>() + std::mem::size_of::<i32>());
const _: () = assert!(BATCH_HEADER_SIZE == layout::RECORDS_OFFSET);
const _: () =
    assert!(RECORD_OVERHEAD_MAX == 2 * varint::VARINT_SIZE_MAX + varint::VARLONG_SIZE_MAX + 1);

/// Compression codec of a batch (attribute bits 0–2). Codec ids 5–7 are undefined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Uncompressed (id 0): the only codec whose records tidelog decodes.
    None,
    /// gzip (id 1).
    Gzip,
    /// Snappy, in Kafka's xerial framing (id 2).
    Snappy,
    /// LZ4 frame format (id 3).
    Lz4,
    /// Zstandard (id 4).
    Zstd,
}

impl Compression {
    /// The codec id stored in attribute bits 0–2.
    pub const fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The codec with this id, or `None` for ids Kafka does not define (5 and up).
    pub const fn from_id(id: u8) -> Option<Compression> {
        match id {
            0 => Some(Compression::None),
            1 => Some(Compression::Gzip),
            2 => Some(Compression::Snappy),
            3 => Some(Compression::Lz4),
            4 => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// Kafka's name for the codec, as in the `compression.type` setting: `none`, `gzip`,
    /// `snappy`, `lz4`, `zstd`.
    pub const fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a batch's timestamps mean (attribute bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimestampType {
    /// Set by the producer: each record carries its own (event) time.
    CreateTime,
    /// Set by the log on append: every record's timestamp is the batch's `maxTimestamp`.
    LogAppendTime,
}

impl TimestampType {
    /// Kafka's name for the type: `CreateTime` or `LogAppendTime`.
    pub const fn name(self) -> &'static str {
        match self {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        }
    }
}

impl fmt::Display for TimestampType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A record header to encode: a UTF-8 key and an optional value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header<'a> {
    /// Header key; Kafka requires UTF-8, which `&str` guarantees.
    pub key: &'a str,
    /// Header value; `None` is encoded as length −1.
    pub value: Option<&'a [u8]>,
}

impl<'a> Header<'a> {
    /// A header with a value.
    pub const fn new(key: &'a str, value: &'a [u8]) -> Header<'a> {
        Header { key, value: Some(value) }
    }
}

/// A record to encode. Borrowed: building a batch copies the bytes once, into the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Record<'a> {
    /// Partitioning and compaction key; `None` is a null key (length −1).
    pub key: Option<&'a [u8]>,
    /// Payload; `None` is a null value (length −1), a tombstone under compaction.
    pub value: Option<&'a [u8]>,
    /// Headers, in order.
    pub headers: &'a [Header<'a>],
    /// Create time in milliseconds since the Unix epoch; `None` takes the default passed to
    /// [`BatchBuilder::push`] / [`encode_batch`].
    pub timestamp: Option<i64>,
}

impl<'a> Record<'a> {
    /// A record with a value, no key, no headers and the default timestamp.
    pub const fn new(value: &'a [u8]) -> Record<'a> {
        Record { key: None, value: Some(value), headers: &[], timestamp: None }
    }

    /// A tombstone: a key with a null value.
    pub const fn tombstone(key: &'a [u8]) -> Record<'a> {
        Record { key: Some(key), value: None, headers: &[], timestamp: None }
    }

    /// This record with `key`.
    pub const fn with_key(self, key: &'a [u8]) -> Record<'a> {
        Record { key: Some(key), ..self }
    }

    /// This record with an explicit create time (ms since the Unix epoch).
    pub const fn with_timestamp(self, timestamp_ms: i64) -> Record<'a> {
        Record { timestamp: Some(timestamp_ms), ..self }
    }

    /// This record with `headers`.
    pub const fn with_headers(self, headers: &'a [Header<'a>]) -> Record<'a> {
        Record { headers, ..self }
    }
}

/// Producer and leader fields written into a batch header. The default (all −1) is a batch
/// from a producer without idempotence, not yet stamped by a leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BatchOptions {
    /// Idempotent producer id, or [`NO_PRODUCER_ID`].
    pub producer_id: i64,
    /// Producer epoch, or [`NO_PRODUCER_EPOCH`].
    pub producer_epoch: i16,
    /// Sequence number of the batch's first record, or [`NO_SEQUENCE`].
    pub base_sequence: i32,
    /// Leader epoch, or [`NO_PARTITION_LEADER_EPOCH`]; usually stamped later with
    /// [`set_partition_leader_epoch`].
    pub partition_leader_epoch: i32,
}

impl Default for BatchOptions {
    fn default() -> BatchOptions {
        BatchOptions {
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_ids_and_names_match_kafka() {
        let all = [
            (Compression::None, 0, "none"),
            (Compression::Gzip, 1, "gzip"),
            (Compression::Snappy, 2, "snappy"),
            (Compression::Lz4, 3, "lz4"),
            (Compression::Zstd, 4, "zstd"),
        ];
        for (codec, id, name) in all {
            assert_eq!(codec.id(), id);
            assert_eq!(Compression::from_id(id), Some(codec));
            assert_eq!(codec.name(), name);
            assert_eq!(codec.to_string(), name);
        }
        for id in 5..=u8::MAX {
            assert_eq!(Compression::from_id(id), None);
        }
    }

    #[test]
    fn record_constructors_compose() {
        let headers = [Header::new("h", b"v"), Header { key: "n", value: None }];
        let record =
            Record::new(b"value").with_key(b"key").with_timestamp(7).with_headers(&headers);
        assert_eq!(record.key, Some(&b"key"[..]));
        assert_eq!(record.value, Some(&b"value"[..]));
        assert_eq!(record.timestamp, Some(7));
        assert_eq!(record.headers, &headers);
        let tombstone = Record::tombstone(b"k");
        assert_eq!((tombstone.key, tombstone.value), (Some(&b"k"[..]), None));
        assert_eq!(Record::default().value, None);
    }

    #[test]
    fn default_options_mean_no_idempotence() {
        let options = BatchOptions::default();
        assert_eq!(options.producer_id, -1);
        assert_eq!(options.producer_epoch, -1);
        assert_eq!(options.base_sequence, -1);
        assert_eq!(options.partition_leader_epoch, -1);
    }
}
