//! Reading batches in place: [`BatchView`], its records and headers, and [`BatchIter`] over a
//! run of batches. Nothing here copies record data or allocates.

use std::fmt;
use std::iter::FusedIterator;

use super::error::BATCH_LENGTH_MIN;
use super::layout::{
    ATTRIBUTES_OFFSET, BASE_OFFSET_OFFSET, BASE_SEQUENCE_OFFSET, BASE_TIMESTAMP_OFFSET,
    BATCH_LENGTH_OFFSET, COMPRESSION_MASK, CONTROL_MASK, CRC_OFFSET, DELETE_HORIZON_MASK,
    LAST_OFFSET_DELTA_OFFSET, MAGIC_OFFSET, MAX_TIMESTAMP_OFFSET, PARTITION_LEADER_EPOCH_OFFSET,
    PRODUCER_EPOCH_OFFSET, PRODUCER_ID_OFFSET, RECORDS_COUNT_OFFSET, RECORDS_OFFSET,
    TIMESTAMP_TYPE_MASK, TRANSACTIONAL_MASK,
};
use super::varint::{VarintError, read_varint, read_varlong};
use super::{
    BATCH_HEADER_SIZE, Compression, DecodeError, LOG_OVERHEAD, MAGIC_V2, RECORD_SIZE_MIN,
    TimestampType,
};

type BatchHeader = [u8; BATCH_HEADER_SIZE];

// Readers of fixed fields. Offsets are the layout constants, inside the array by the layout's
// compile-time checks, so the indexing below compiles to plain loads.
#[inline]
fn be_i16<const N: usize>(bytes: &[u8; N], at: usize) -> i16 {
    i16::from_be_bytes([bytes[at], bytes[at + 1]])
}

#[inline]
fn be_i32<const N: usize>(bytes: &[u8; N], at: usize) -> i32 {
    i32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

#[inline]
fn be_i64<const N: usize>(bytes: &[u8; N], at: usize) -> i64 {
    let mut field = [0u8; 8];
    field.copy_from_slice(&bytes[at..at + 8]);
    i64::from_be_bytes(field)
}

/// A borrowed, zero-copy view of one v2 record batch.
///
/// Made by [`parse`](BatchView::parse), which guarantees the view spans exactly the batch
/// (`12 + batchLength` bytes, at least a full header) and that magic is 2 and the record count
/// is not negative. Header accessors are plain loads; nothing is checked or copied after parse.
#[derive(Clone, Copy)]
pub struct BatchView<'a> {
    /// Exactly the batch: `LOG_OVERHEAD + batchLength` bytes.
    bytes: &'a [u8],
    /// The first `BATCH_HEADER_SIZE` bytes of `bytes`.
    header: &'a BatchHeader,
}

impl<'a> BatchView<'a> {
    /// Delimits the batch at the start of `bytes` (which may continue past it) and checks that
    /// it can be a v2 batch: `batchLength` at least a header and within `bytes`, magic 2,
    /// record count not negative.
    ///
    /// Does **not** verify the CRC ([`verify_crc`](BatchView::verify_crc)) or decode records
    /// ([`validate`](BatchView::validate), [`records`](BatchView::records)).
    ///
    /// Errors, in the order checked: [`DecodeError::Truncated`] (fewer than 12 bytes);
    /// [`DecodeError::UnsupportedMagic`] (as soon as the magic byte is present, so a legacy
    /// v0/v1 message is named as such even when short or cut off);
    /// [`DecodeError::InvalidLength`]; [`DecodeError::Truncated`] (batch longer than `bytes`);
    /// [`DecodeError::InvalidRecordCount`].
    pub fn parse(bytes: &'a [u8]) -> Result<BatchView<'a>, DecodeError> {
        let available = bytes.len();
        let Some(prefix) = bytes.first_chunk::<LOG_OVERHEAD>() else {
            return Err(DecodeError::Truncated { needed: LOG_OVERHEAD, available });
        };
        let length = be_i32(prefix, BATCH_LENGTH_OFFSET);
        // Every Kafka format version keeps its magic byte at offset 16, so a legacy (v0/v1)
        // message, shorter than a v2 header, is named by its magic rather than its length —
        // as long as the declared length reaches the magic byte at all.
        if length > (MAGIC_OFFSET - LOG_OVERHEAD) as i32
            && let Some(&magic) = bytes.get(MAGIC_OFFSET)
            && magic as i8 != MAGIC_V2
        {
            return Err(DecodeError::UnsupportedMagic { magic: magic as i8 });
        }
        if length < BATCH_LENGTH_MIN {
            return Err(DecodeError::InvalidLength { length });
        }
        // `length` is at least BATCH_LENGTH_MIN, so positive.
        let total_len = LOG_OVERHEAD + length as usize;
        let Some(batch) = bytes.get(..total_len) else {
            return Err(DecodeError::Truncated { needed: total_len, available });
        };
        let Some(header) = batch.first_chunk::<BATCH_HEADER_SIZE>() else {
            // Unreachable: total_len >= LOG_OVERHEAD + BATCH_LENGTH_MIN = BATCH_HEADER_SIZE.
            return Err(DecodeError::Truncated { needed: BATCH_HEADER_SIZE, available });
        };
        let count = be_i32(header, RECORDS_COUNT_OFFSET);
        if count < 0 {
            return Err(DecodeError::InvalidRecordCount { count });
        }
        Ok(BatchView { bytes: batch, header })
    }

    /// Checks the stored CRC-32C against the bytes it covers (`attributes` to the end).
    pub fn verify_crc(&self) -> Result<(), DecodeError> {
        let stored = self.stored_crc();
        let computed = self.compute_crc();
        if stored == computed {
            Ok(())
        } else {
            Err(DecodeError::ChecksumMismatch { stored, computed })
        }
    }

    /// Checks everything an appended batch must satisfy, cheapest first: the CRC, an
    /// uncompressed codec, at least one record, `lastOffsetDelta == recordsCount − 1`, every
    /// record well-formed and exactly filling the batch, and offset deltas `0, 1, 2, …`.
    ///
    /// This is the producer-facing check (Kafka's broker applies the same ones). Batches that
    /// log compaction has thinned have gaps in their offset deltas and fail it; read those with
    /// [`verify_crc`](BatchView::verify_crc) and [`records`](BatchView::records).
    pub fn validate(&self) -> Result<(), DecodeError> {
        self.verify_crc()?;
        let records = self.records()?;
        let count = self.record_count();
        if count == 0 {
            return Err(DecodeError::EmptyBatch);
        }
        let expected_last = count - 1;
        if self.last_offset_delta() != expected_last {
            return Err(DecodeError::LastOffsetDeltaMismatch {
                header: self.last_offset_delta(),
                expected: expected_last,
            });
        }
        let mut expected_delta = 0i32;
        for (index, record) in records.enumerate() {
            let record = record?;
            if record.offset_delta() != expected_delta {
                return Err(DecodeError::OffsetDeltaMismatch {
                    index,
                    expected: expected_delta,
                    found: record.offset_delta(),
                });
            }
            // At most `count` records are yielded, so this stays within i32.
            expected_delta += 1;
        }
        debug_assert_eq!(expected_delta, count, "RecordIter yields exactly count records or errs");
        Ok(())
    }

    /// The batch's bytes, exactly [`total_len`](BatchView::total_len) of them.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Size of the whole batch in bytes: `12 + batchLength`.
    pub fn total_len(&self) -> usize {
        self.bytes.len()
    }

    /// The records region: everything after the header (compressed, for compressed batches).
    pub fn records_bytes(&self) -> &'a [u8] {
        self.bytes.get(RECORDS_OFFSET..).unwrap_or_default()
    }

    /// `baseOffset`: offset of the first record.
    pub fn base_offset(&self) -> i64 {
        be_i64(self.header, BASE_OFFSET_OFFSET)
    }

    /// `lastOffsetDelta`.
    pub fn last_offset_delta(&self) -> i32 {
        be_i32(self.header, LAST_OFFSET_DELTA_OFFSET)
    }

    /// Offset of the last record: `baseOffset + lastOffsetDelta` (wrapping on garbage).
    pub fn last_offset(&self) -> i64 {
        self.base_offset().wrapping_add(i64::from(self.last_offset_delta()))
    }

    /// `batchLength`: bytes after the length field.
    pub fn batch_length(&self) -> i32 {
        be_i32(self.header, BATCH_LENGTH_OFFSET)
    }

    /// `partitionLeaderEpoch`.
    pub fn partition_leader_epoch(&self) -> i32 {
        be_i32(self.header, PARTITION_LEADER_EPOCH_OFFSET)
    }

    /// `magic`: always [`MAGIC_V2`] for a parsed view.
    pub fn magic(&self) -> i8 {
        self.header[MAGIC_OFFSET] as i8
    }

    /// The CRC-32C stored in the header.
    pub fn stored_crc(&self) -> u32 {
        be_i32(self.header, CRC_OFFSET) as u32
    }

    /// CRC-32C of the bytes the stored CRC covers: `attributes` to the end of the batch.
    pub fn compute_crc(&self) -> u32 {
        crc32c::crc32c(self.bytes.get(ATTRIBUTES_OFFSET..).unwrap_or_default())
    }

    /// The raw `attributes` field.
    pub fn attributes(&self) -> i16 {
        be_i16(self.header, ATTRIBUTES_OFFSET)
    }

    /// Compression codec from attribute bits 0–2; ids 5–7 are
    /// [`DecodeError::UnsupportedCompression`] with name `unknown`.
    pub fn compression(&self) -> Result<Compression, DecodeError> {
        let codec = (self.attributes() & COMPRESSION_MASK) as u8;
        Compression::from_id(codec)
            .ok_or(DecodeError::UnsupportedCompression { codec, name: "unknown" })
    }

    /// Timestamp type from attribute bit 3.
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes() & TIMESTAMP_TYPE_MASK == 0 {
            TimestampType::CreateTime
        } else {
            TimestampType::LogAppendTime
        }
    }

    /// Attribute bit 4: part of a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes() & TRANSACTIONAL_MASK != 0
    }

    /// Attribute bit 5: holds control records (transaction markers), not application data.
    pub fn is_control(&self) -> bool {
        self.attributes() & CONTROL_MASK != 0
    }

    /// The compaction delete horizon (attribute bit 6 set: `baseTimestamp` holds it), if any.
    pub fn delete_horizon_ms(&self) -> Option<i64> {
        (self.attributes() & DELETE_HORIZON_MASK != 0).then(|| self.base_timestamp())
    }

    /// `baseTimestamp`: the first record's timestamp (or the delete horizon); record
    /// timestamps are deltas from it.
    pub fn base_timestamp(&self) -> i64 {
        be_i64(self.header, BASE_TIMESTAMP_OFFSET)
    }

    /// `maxTimestamp`: the largest record timestamp, or the log-append time.
    pub fn max_timestamp(&self) -> i64 {
        be_i64(self.header, MAX_TIMESTAMP_OFFSET)
    }

    /// `producerId` (−1 without idempotence).
    pub fn producer_id(&self) -> i64 {
        be_i64(self.header, PRODUCER_ID_OFFSET)
    }

    /// `producerEpoch` (−1 without idempotence).
    pub fn producer_epoch(&self) -> i16 {
        be_i16(self.header, PRODUCER_EPOCH_OFFSET)
    }

    /// `baseSequence` (−1 without idempotence).
    pub fn base_sequence(&self) -> i32 {
        be_i32(self.header, BASE_SEQUENCE_OFFSET)
    }

    /// `recordsCount`; never negative for a parsed view.
    pub fn record_count(&self) -> i32 {
        be_i32(self.header, RECORDS_COUNT_OFFSET)
    }

    /// Iterates the records in place. The iterator checks structure as it goes — each record
    /// within the batch and consistent with its length, exactly `recordsCount` records, no
    /// trailing bytes — and ends with an `Err` item on the first violation. It does not verify
    /// the CRC or the offset deltas ([`validate`](BatchView::validate) does).
    ///
    /// Compressed batches (and unknown codecs) are [`DecodeError::UnsupportedCompression`].
    pub fn records(&self) -> Result<RecordIter<'a>, DecodeError> {
        match self.compression()? {
            Compression::None => {}
            other => {
                return Err(DecodeError::UnsupportedCompression {
                    codec: other.id(),
                    name: other.name(),
                });
            }
        }
        let log_append_time = match self.timestamp_type() {
            TimestampType::CreateTime => None,
            TimestampType::LogAppendTime => Some(self.max_timestamp()),
        };
        Ok(RecordIter {
            records: self.records_bytes(),
            position: 0,
            index: 0,
            // Parse guarantees a non-negative count.
            count: self.record_count().max(0) as usize,
            base_offset: self.base_offset(),
            base_timestamp: self.base_timestamp(),
            log_append_time,
            finished: false,
        })
    }
}

impl fmt::Debug for BatchView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchView")
            .field("base_offset", &self.base_offset())
            .field("last_offset_delta", &self.last_offset_delta())
            .field("total_len", &self.total_len())
            .field("partition_leader_epoch", &self.partition_leader_epoch())
            .field("crc", &format_args!("{:#010x}", self.stored_crc()))
            .field("attributes", &format_args!("{:#06x}", self.attributes()))
            .field("base_timestamp", &self.base_timestamp())
            .field("max_timestamp", &self.max_timestamp())
            .field("producer_id", &self.producer_id())
            .field("producer_epoch", &self.producer_epoch())
            .field("base_sequence", &self.base_sequence())
            .field("record_count", &self.record_count())
            .finish()
    }
}

// Why a record failed to decode; the `reason` of `DecodeError::InvalidRecord`.
const REASON_LENGTH_TRUNCATED: &str = "its length varint runs past the end of the batch";
const REASON_LENGTH_NEGATIVE: &str = "its length is negative";
const REASON_BODY_TRUNCATED: &str = "its length runs past the end of the batch";
const REASON_ATTRIBUTES_TRUNCATED: &str = "it ends before its attributes";
const REASON_TIMESTAMP_TRUNCATED: &str = "it ends inside its timestamp delta";
const REASON_OFFSET_TRUNCATED: &str = "it ends inside its offset delta";
const REASON_KEY_LENGTH_TRUNCATED: &str = "it ends inside its key length";
const REASON_KEY_LENGTH_NEGATIVE: &str = "its key length is negative but not -1 (null)";
const REASON_KEY_TRUNCATED: &str = "its key runs past the end of the record";
const REASON_VALUE_LENGTH_TRUNCATED: &str = "it ends inside its value length";
const REASON_VALUE_LENGTH_NEGATIVE: &str = "its value length is negative but not -1 (null)";
const REASON_VALUE_TRUNCATED: &str = "its value runs past the end of the record";
const REASON_HEADER_COUNT_TRUNCATED: &str = "it ends inside its header count";
const REASON_HEADER_COUNT_NEGATIVE: &str = "its header count is negative";
const REASON_HEADER_KEY_LENGTH_TRUNCATED: &str = "it ends inside a header key length";
const REASON_HEADER_KEY_LENGTH_NEGATIVE: &str = "a header key length is negative";
const REASON_HEADER_KEY_TRUNCATED: &str = "a header key runs past the end of the record";
const REASON_HEADER_VALUE_LENGTH_TRUNCATED: &str = "it ends inside a header value length";
const REASON_HEADER_VALUE_LENGTH_NEGATIVE: &str =
    "a header value length is negative but not -1 (null)";
const REASON_HEADER_VALUE_TRUNCATED: &str = "a header value runs past the end of the record";
const REASON_LENGTH_MISMATCH: &str = "its length does not match its contents";

/// A bounds-checked reader over one region of a batch.
#[derive(Debug, Clone)]
struct Cursor<'a> {
    bytes: &'a [u8],
    position: usize,
    /// Offset of `bytes[0]` from the start of the batch, for error positions.
    origin: usize,
    /// Index of the record being read, for error messages.
    index: usize,
}

impl<'a> Cursor<'a> {
    fn invalid(&self, reason: &'static str) -> DecodeError {
        DecodeError::InvalidRecord { index: self.index, reason }
    }

    fn varint_error(&self, error: VarintError, truncated: &'static str) -> DecodeError {
        match error {
            VarintError::Truncated => self.invalid(truncated),
            VarintError::Overlong => {
                DecodeError::InvalidVarint { position: self.origin + self.position }
            }
        }
    }

    #[inline]
    fn varint(&mut self, truncated: &'static str) -> Result<i32, DecodeError> {
        match read_varint(self.bytes, self.position) {
            Ok((value, next)) => {
                self.position = next;
                Ok(value)
            }
            Err(error) => Err(self.varint_error(error, truncated)),
        }
    }

    #[inline]
    fn varlong(&mut self, truncated: &'static str) -> Result<i64, DecodeError> {
        match read_varlong(self.bytes, self.position) {
            Ok((value, next)) => {
                self.position = next;
                Ok(value)
            }
            Err(error) => Err(self.varint_error(error, truncated)),
        }
    }

    #[inline]
    fn byte(&mut self, truncated: &'static str) -> Result<u8, DecodeError> {
        let byte = *self.bytes.get(self.position).ok_or_else(|| self.invalid(truncated))?;
        self.position += 1;
        Ok(byte)
    }

    #[inline]
    fn take(&mut self, len: usize, truncated: &'static str) -> Result<&'a [u8], DecodeError> {
        let taken = self
            .position
            .checked_add(len)
            .and_then(|end| self.bytes.get(self.position..end))
            .ok_or_else(|| self.invalid(truncated))?;
        self.position += len;
        Ok(taken)
    }

    /// A length-prefixed field where length −1 means null.
    #[inline]
    fn nullable(
        &mut self,
        length_truncated: &'static str,
        negative: &'static str,
        truncated: &'static str,
    ) -> Result<Option<&'a [u8]>, DecodeError> {
        match self.varint(length_truncated)? {
            -1 => Ok(None),
            length if length < 0 => Err(self.invalid(negative)),
            length => self.take(length as usize, truncated).map(Some),
        }
    }

    fn header(&mut self) -> Result<HeaderView<'a>, DecodeError> {
        let key_length = self.varint(REASON_HEADER_KEY_LENGTH_TRUNCATED)?;
        if key_length < 0 {
            return Err(self.invalid(REASON_HEADER_KEY_LENGTH_NEGATIVE));
        }
        let key = self.take(key_length as usize, REASON_HEADER_KEY_TRUNCATED)?;
        let value = self.nullable(
            REASON_HEADER_VALUE_LENGTH_TRUNCATED,
            REASON_HEADER_VALUE_LENGTH_NEGATIVE,
            REASON_HEADER_VALUE_TRUNCATED,
        )?;
        Ok(HeaderView { key, value })
    }
}

/// Iterator over the records of an uncompressed batch, from [`BatchView::records`].
///
/// Yields `Ok` for each well-formed record, in order. On the first structural problem it yields
/// one `Err` and then ends: a record that overruns the batch or its own length, fewer records
/// than declared ([`DecodeError::RecordCountMismatch`]), or bytes left after the last declared
/// record ([`DecodeError::TrailingBytes`]).
#[derive(Debug, Clone)]
pub struct RecordIter<'a> {
    /// The records region of the batch.
    records: &'a [u8],
    /// Start of the next record within `records`.
    position: usize,
    /// Index of the next record.
    index: usize,
    /// `recordsCount`.
    count: usize,
    base_offset: i64,
    base_timestamp: i64,
    log_append_time: Option<i64>,
    finished: bool,
}

impl<'a> RecordIter<'a> {
    fn decode_next(&self) -> Result<RecordView<'a>, DecodeError> {
        let index = self.index;
        let mut framing =
            Cursor { bytes: self.records, position: self.position, origin: RECORDS_OFFSET, index };
        let body_length = framing.varint(REASON_LENGTH_TRUNCATED)?;
        if body_length < 0 {
            return Err(framing.invalid(REASON_LENGTH_NEGATIVE));
        }
        let body_start = framing.position;
        let body = framing.take(body_length as usize, REASON_BODY_TRUNCATED)?;

        let mut body =
            Cursor { bytes: body, position: 0, origin: RECORDS_OFFSET + body_start, index };
        let attributes = body.byte(REASON_ATTRIBUTES_TRUNCATED)? as i8;
        let timestamp_delta = body.varlong(REASON_TIMESTAMP_TRUNCATED)?;
        let offset_delta = body.varint(REASON_OFFSET_TRUNCATED)?;
        let key = body.nullable(
            REASON_KEY_LENGTH_TRUNCATED,
            REASON_KEY_LENGTH_NEGATIVE,
            REASON_KEY_TRUNCATED,
        )?;
        let value = body.nullable(
            REASON_VALUE_LENGTH_TRUNCATED,
            REASON_VALUE_LENGTH_NEGATIVE,
            REASON_VALUE_TRUNCATED,
        )?;
        let header_count = body.varint(REASON_HEADER_COUNT_TRUNCATED)?;
        if header_count < 0 {
            return Err(body.invalid(REASON_HEADER_COUNT_NEGATIVE));
        }
        // Walk the headers once so that a record is known well-formed when it is yielded. Each
        // header consumes at least two bytes or fails, so a hostile count cannot spin.
        let headers_start = body.position;
        for _ in 0..header_count {
            body.header()?;
        }
        if body.position != body.bytes.len() {
            return Err(body.invalid(REASON_LENGTH_MISMATCH));
        }
        let headers = body.bytes.get(headers_start..).unwrap_or_default();

        Ok(RecordView {
            attributes,
            timestamp_delta,
            offset_delta,
            key,
            value,
            headers,
            header_count: header_count as u32,
            headers_origin: body.origin + headers_start,
            index,
            encoded_len: framing.position - self.position,
            base_offset: self.base_offset,
            base_timestamp: self.base_timestamp,
            log_append_time: self.log_append_time,
        })
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RecordView<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let remaining_bytes = self.records.len().saturating_sub(self.position);
        if self.index == self.count {
            self.finished = true;
            return (remaining_bytes != 0)
                .then_some(Err(DecodeError::TrailingBytes { trailing: remaining_bytes }));
        }
        if remaining_bytes == 0 {
            self.finished = true;
            return Some(Err(DecodeError::RecordCountMismatch {
                header: i32::try_from(self.count).unwrap_or(i32::MAX),
                decoded: self.index,
            }));
        }
        match self.decode_next() {
            Ok(record) => {
                self.position += record.encoded_len;
                self.index += 1;
                Some(Ok(record))
            }
            Err(error) => {
                self.finished = true;
                Some(Err(error))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.finished {
            return (0, Some(0));
        }
        // Never trust the declared count for a lower bound: `collect` would allocate by it.
        // At most one record per RECORD_SIZE_MIN bytes, plus one error item.
        let remaining_bytes = self.records.len().saturating_sub(self.position);
        let upper = (self.count - self.index).min(remaining_bytes / RECORD_SIZE_MIN) + 1;
        (0, Some(upper))
    }
}

impl FusedIterator for RecordIter<'_> {}

/// One record of a batch, borrowed from the batch's bytes.
#[derive(Clone, Copy)]
pub struct RecordView<'a> {
    attributes: i8,
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    /// The encoded headers, already checked well-formed.
    headers: &'a [u8],
    header_count: u32,
    /// Offset of `headers[0]` from the start of the batch.
    headers_origin: usize,
    index: usize,
    encoded_len: usize,
    base_offset: i64,
    base_timestamp: i64,
    log_append_time: Option<i64>,
}

impl<'a> RecordView<'a> {
    /// The record's offset: the batch's `baseOffset` plus its offset delta.
    pub fn offset(&self) -> i64 {
        self.base_offset.wrapping_add(i64::from(self.offset_delta))
    }

    /// The record's timestamp: `baseTimestamp + timestampDelta` for create time; for
    /// log-append time, the batch's `maxTimestamp`, as Kafka reports it.
    pub fn timestamp(&self) -> i64 {
        match self.log_append_time {
            Some(append_time) => append_time,
            None => self.base_timestamp.wrapping_add(self.timestamp_delta),
        }
    }

    /// `timestampDelta` as stored.
    pub fn timestamp_delta(&self) -> i64 {
        self.timestamp_delta
    }

    /// `offsetDelta` as stored.
    pub fn offset_delta(&self) -> i32 {
        self.offset_delta
    }

    /// The record's attributes byte (unused by Kafka; 0 from every known producer).
    pub fn attributes(&self) -> i8 {
        self.attributes
    }

    /// The key, or `None` for a null key.
    pub fn key(&self) -> Option<&'a [u8]> {
        self.key
    }

    /// The value, or `None` for a null value (a tombstone).
    pub fn value(&self) -> Option<&'a [u8]> {
        self.value
    }

    /// Number of headers.
    pub fn header_count(&self) -> usize {
        self.header_count as usize
    }

    /// The headers, in order. They were checked when the record was decoded, so the items are
    /// always `Ok` for a record from [`RecordIter`].
    pub fn headers(&self) -> HeaderIter<'a> {
        HeaderIter {
            cursor: Cursor {
                bytes: self.headers,
                position: 0,
                origin: self.headers_origin,
                index: self.index,
            },
            remaining: self.header_count,
        }
    }

    /// Index of the record in its batch.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Bytes the record takes in the batch, including its length varint.
    pub fn encoded_len(&self) -> usize {
        self.encoded_len
    }
}

impl fmt::Debug for RecordView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordView")
            .field("offset", &self.offset())
            .field("timestamp", &self.timestamp())
            .field("key_len", &self.key.map(<[u8]>::len))
            .field("value_len", &self.value.map(<[u8]>::len))
            .field("header_count", &self.header_count)
            .field("encoded_len", &self.encoded_len)
            .finish()
    }
}

/// Iterator over a record's headers, from [`RecordView::headers`]. Ends after an `Err` item.
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    cursor: Cursor<'a>,
    remaining: u32,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = Result<HeaderView<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let header = self.cursor.header();
        if header.is_err() {
            self.remaining = 0;
        }
        Some(header)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // Exact: the headers were validated when the record was decoded.
        (self.remaining as usize, Some(self.remaining as usize))
    }
}

impl FusedIterator for HeaderIter<'_> {}

/// One record header, borrowed from the batch's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HeaderView<'a> {
    /// The key's bytes; Kafka writes UTF-8 but does not check it on read, nor does tidelog.
    pub key: &'a [u8],
    /// The value, or `None` for a null value.
    pub value: Option<&'a [u8]>,
}

impl<'a> HeaderView<'a> {
    /// The key as UTF-8 text.
    pub fn key_str(&self) -> Result<&'a str, std::str::Utf8Error> {
        std::str::from_utf8(self.key)
    }
}

/// Iterator over back-to-back batches (a segment, a fetch response), yielding a [`BatchView`]
/// per batch after [`BatchView::parse`] — no CRC check; call
/// [`verify_crc`](BatchView::verify_crc) or [`validate`](BatchView::validate) per batch.
///
/// Ends (`None`) exactly at the end of the input; a truncated or malformed batch yields one
/// `Err` and ends the iteration. [`position`](BatchIter::position) then still points at the
/// start of the bad batch — the length of the good prefix, where recovery truncates.
#[derive(Debug, Clone)]
pub struct BatchIter<'a> {
    bytes: &'a [u8],
    position: usize,
    finished: bool,
}

impl<'a> BatchIter<'a> {
    /// Iterates the batches in `bytes`, which must start at a batch boundary.
    pub fn new(bytes: &'a [u8]) -> BatchIter<'a> {
        BatchIter { bytes, position: 0, finished: false }
    }

    /// Bytes consumed by the batches yielded so far: the start of the next (or failed) batch.
    pub fn position(&self) -> usize {
        self.position
    }

    /// The bytes not yet consumed.
    pub fn remaining(&self) -> &'a [u8] {
        self.bytes.get(self.position..).unwrap_or_default()
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<BatchView<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let rest = self.remaining();
        if rest.is_empty() {
            self.finished = true;
            return None;
        }
        match BatchView::parse(rest) {
            Ok(batch) => {
                self.position += batch.total_len();
                Some(Ok(batch))
            }
            Err(error) => {
                self.finished = true;
                Some(Err(error))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.finished {
            return (0, Some(0));
        }
        let remaining = self.bytes.len().saturating_sub(self.position);
        (0, Some(remaining.div_ceil(BATCH_HEADER_SIZE)))
    }
}

impl FusedIterator for BatchIter<'_> {}

#[cfg(test)]
mod tests;
