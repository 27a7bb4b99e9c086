//! Writing batches: [`BatchBuilder`], [`encode_batch`], and the header fields the log stamps on
//! append.

use super::layout::{
    ATTRIBUTES_OFFSET, BASE_OFFSET_OFFSET, BASE_SEQUENCE_OFFSET, BASE_TIMESTAMP_OFFSET,
    BATCH_LENGTH_OFFSET, CRC_OFFSET, LAST_OFFSET_DELTA_OFFSET, MAGIC_OFFSET, MAX_TIMESTAMP_OFFSET,
    PARTITION_LEADER_EPOCH_OFFSET, PRODUCER_EPOCH_OFFSET, PRODUCER_ID_OFFSET, RECORDS_COUNT_OFFSET,
    TIMESTAMP_TYPE_MASK,
};
use super::varint::{put_varint, put_varlong, varint_size, varlong_size};
use super::{
    BATCH_HEADER_SIZE, BATCH_SIZE_BYTES_MAX, BatchOptions, BatchView, DecodeError, LOG_OVERHEAD,
    MAGIC_V2, NO_TIMESTAMP, RECORD_SIZE_MIN, Record,
};

// A batch at the size limit holds fewer records than an i32 can count, so the record counter
// and the offset deltas cannot overflow.
const _: () = assert!(BATCH_SIZE_BYTES_MAX / RECORD_SIZE_MIN < i32::MAX as usize);

/// Size of the varint that frames a length. Lengths beyond `i32::MAX` cannot be encoded; a
/// record holding one exceeds [`BATCH_SIZE_BYTES_MAX`] and is refused before anything is
/// written, so the size reported for it only needs to be some number.
#[inline]
fn length_prefix_size(len: usize) -> usize {
    varint_size(i32::try_from(len).unwrap_or(i32::MAX))
}

#[inline]
fn nullable_size(field: Option<&[u8]>) -> usize {
    match field {
        None => 1,
        Some(bytes) => length_prefix_size(bytes.len()) + bytes.len(),
    }
}

/// Bytes of a record after its length varint.
#[inline]
fn record_body_size(record: &Record<'_>, timestamp_delta: i64, offset_delta: i32) -> usize {
    let mut size = 1 // attributes
        + varlong_size(timestamp_delta)
        + varint_size(offset_delta)
        + nullable_size(record.key)
        + nullable_size(record.value)
        + length_prefix_size(record.headers.len());
    for header in record.headers {
        size +=
            length_prefix_size(header.key.len()) + header.key.len() + nullable_size(header.value);
    }
    size
}

/// Bytes `record` takes in a batch, including its leading length varint, when written with
/// these deltas against the batch's base timestamp and base offset.
///
/// Use it to decide whether a record still fits a size-limited batch before pushing it.
pub fn record_encoded_size(record: &Record<'_>, timestamp_delta: i64, offset_delta: i32) -> usize {
    let body = record_body_size(record, timestamp_delta, offset_delta);
    length_prefix_size(body) + body
}

/// Lengths passed here are bounded by the batch size check in [`BatchBuilder::push`], which
/// runs before anything is written, so they fit an `i32`.
#[inline]
fn put_length(out: &mut Vec<u8>, len: usize) {
    debug_assert!(i32::try_from(len).is_ok());
    put_varint(out, len as i32);
}

#[inline]
fn put_nullable(out: &mut Vec<u8>, field: Option<&[u8]>) {
    match field {
        None => put_varint(out, -1),
        Some(bytes) => {
            put_length(out, bytes.len());
            out.extend_from_slice(bytes);
        }
    }
}

fn write_record(
    out: &mut Vec<u8>,
    record: &Record<'_>,
    timestamp_delta: i64,
    offset_delta: i32,
    body_size: usize,
) {
    put_length(out, body_size);
    out.push(0); // record attributes: unused by Kafka, always 0
    put_varlong(out, timestamp_delta);
    put_varint(out, offset_delta);
    put_nullable(out, record.key);
    put_nullable(out, record.value);
    put_length(out, record.headers.len());
    for header in record.headers {
        put_length(out, header.key.len());
        out.extend_from_slice(header.key.as_bytes());
        put_nullable(out, header.value);
    }
}

/// Incremental encoder of one uncompressed, create-time v2 batch into a `Vec<u8>`.
///
/// Records are appended as they are pushed; [`finish`](BatchBuilder::finish) writes the header
/// (counts, timestamps, producer fields) and the CRC. Offset deltas are the records' indexes
/// and the base offset is 0 until the log assigns one with [`set_base_offset`].
///
/// The buffer grows by at most one reservation per record; start from
/// [`with_capacity`](BatchBuilder::with_capacity) or a recycled buffer
/// ([`with_buffer`](BatchBuilder::with_buffer)) to avoid even that.
#[derive(Debug)]
pub struct BatchBuilder {
    /// Header placeholder followed by the records written so far.
    buffer: Vec<u8>,
    options: BatchOptions,
    record_count: i32,
    /// Timestamp of record 0; meaningless while `record_count` is 0.
    base_timestamp: i64,
    /// Largest timestamp pushed; meaningless while `record_count` is 0.
    max_timestamp: i64,
}

impl BatchBuilder {
    /// A builder with a fresh buffer.
    pub fn new(options: BatchOptions) -> BatchBuilder {
        BatchBuilder::with_buffer(Vec::new(), options)
    }

    /// A builder whose buffer can hold `capacity_bytes` of batch (header included) without
    /// reallocating.
    pub fn with_capacity(capacity_bytes: usize, options: BatchOptions) -> BatchBuilder {
        BatchBuilder::with_buffer(Vec::with_capacity(capacity_bytes), options)
    }

    /// A builder that reuses `buffer`'s allocation; its contents are discarded.
    pub fn with_buffer(mut buffer: Vec<u8>, options: BatchOptions) -> BatchBuilder {
        buffer.clear();
        buffer.resize(BATCH_HEADER_SIZE, 0);
        BatchBuilder {
            buffer,
            options,
            record_count: 0,
            base_timestamp: NO_TIMESTAMP,
            max_timestamp: NO_TIMESTAMP,
        }
    }

    /// Appends `record` with offset delta = its index in the batch. A record without a
    /// timestamp gets `default_timestamp_ms`. The first record's timestamp becomes the batch's
    /// base timestamp; later ones may be smaller (deltas are signed).
    ///
    /// # Panics
    ///
    /// If the batch would exceed [`BATCH_SIZE_BYTES_MAX`] (about 2 GiB), the largest size its
    /// `i32` length field can describe. Callers enforce their own, far smaller, batch limit
    /// with [`len`](BatchBuilder::len) and [`record_encoded_size`] before pushing.
    pub fn push(&mut self, record: &Record<'_>, default_timestamp_ms: i64) {
        let timestamp = record.timestamp.unwrap_or(default_timestamp_ms);
        let first = self.record_count == 0;
        let base_timestamp = if first { timestamp } else { self.base_timestamp };
        // Wrapping: the decoder's wrapping add restores the exact timestamp for any pair.
        let timestamp_delta = timestamp.wrapping_sub(base_timestamp);
        let offset_delta = self.record_count;
        let body_size = record_body_size(record, timestamp_delta, offset_delta);
        let size = length_prefix_size(body_size) + body_size;
        // `buffer.len() <= BATCH_SIZE_BYTES_MAX` holds between calls, so this cannot underflow.
        assert!(
            size <= BATCH_SIZE_BYTES_MAX - self.buffer.len(),
            "a record of {size} bytes would grow the batch ({} bytes) past {BATCH_SIZE_BYTES_MAX} \
             bytes, the most a v2 batch length can describe",
            self.buffer.len(),
        );

        self.buffer.reserve(size);
        let start = self.buffer.len();
        write_record(&mut self.buffer, record, timestamp_delta, offset_delta, body_size);
        debug_assert_eq!(self.buffer.len() - start, size, "record size estimate is exact");

        if first {
            self.base_timestamp = timestamp;
            self.max_timestamp = timestamp;
        } else {
            self.max_timestamp = self.max_timestamp.max(timestamp);
        }
        self.record_count += 1;
    }

    /// Records pushed so far.
    pub fn record_count(&self) -> usize {
        // Never negative: it only counts up from 0.
        self.record_count as usize
    }

    /// Bytes of the batch so far, header included: what [`finish`](BatchBuilder::finish)
    /// will return. At least [`BATCH_HEADER_SIZE`].
    pub fn len(&self) -> usize {
        self.buffer.len()
    }

    /// Whether no record has been pushed yet ([`len`](BatchBuilder::len) is then
    /// [`BATCH_HEADER_SIZE`]).
    pub fn is_empty(&self) -> bool {
        self.record_count == 0
    }

    /// Writes the header and the CRC and returns the batch, with base offset 0.
    ///
    /// A builder with no records yields a header-only batch (count 0, lastOffsetDelta 0,
    /// timestamps −1) that parses but that [`BatchView::validate`] rejects as empty.
    pub fn finish(self) -> Vec<u8> {
        let BatchBuilder { mut buffer, options, record_count, base_timestamp, max_timestamp } =
            self;
        debug_assert!(buffer.len() >= BATCH_HEADER_SIZE);
        debug_assert!(buffer.len() <= BATCH_SIZE_BYTES_MAX);
        // `push` keeps the total within BATCH_SIZE_BYTES_MAX = LOG_OVERHEAD + i32::MAX.
        let batch_length = (buffer.len() - LOG_OVERHEAD) as i32;
        let (last_offset_delta, base_timestamp, max_timestamp) = if record_count == 0 {
            (0, NO_TIMESTAMP, NO_TIMESTAMP)
        } else {
            (record_count - 1, base_timestamp, max_timestamp)
        };

        let mut header = [0u8; BATCH_HEADER_SIZE];
        put_be(&mut header, BASE_OFFSET_OFFSET, &0i64.to_be_bytes());
        put_be(&mut header, BATCH_LENGTH_OFFSET, &batch_length.to_be_bytes());
        put_be(
            &mut header,
            PARTITION_LEADER_EPOCH_OFFSET,
            &options.partition_leader_epoch.to_be_bytes(),
        );
        put_be(&mut header, MAGIC_OFFSET, &MAGIC_V2.to_be_bytes());
        // CRC_OFFSET stays zero until the rest is in place.
        // Attributes: no compression, create time, not transactional, not control.
        put_be(&mut header, ATTRIBUTES_OFFSET, &0i16.to_be_bytes());
        put_be(&mut header, LAST_OFFSET_DELTA_OFFSET, &last_offset_delta.to_be_bytes());
        put_be(&mut header, BASE_TIMESTAMP_OFFSET, &base_timestamp.to_be_bytes());
        put_be(&mut header, MAX_TIMESTAMP_OFFSET, &max_timestamp.to_be_bytes());
        put_be(&mut header, PRODUCER_ID_OFFSET, &options.producer_id.to_be_bytes());
        put_be(&mut header, PRODUCER_EPOCH_OFFSET, &options.producer_epoch.to_be_bytes());
        put_be(&mut header, BASE_SEQUENCE_OFFSET, &options.base_sequence.to_be_bytes());
        put_be(&mut header, RECORDS_COUNT_OFFSET, &record_count.to_be_bytes());
        put_be(&mut buffer, 0, &header);

        let crc = crc32c::crc32c(&buffer[ATTRIBUTES_OFFSET..]);
        put_be(&mut buffer, CRC_OFFSET, &crc.to_be_bytes());
        buffer
    }
}

/// Copies `bytes` to `target[at..]`. Callers pass constant offsets inside a buffer they have
/// checked to hold a whole header.
#[inline]
fn put_be(target: &mut [u8], at: usize, bytes: &[u8]) {
    target[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Encodes `records` as one uncompressed, create-time batch (base offset 0) in a buffer sized
/// exactly once. Records without a timestamp get `default_timestamp_ms`.
///
/// # Panics
///
/// If the batch would exceed [`BATCH_SIZE_BYTES_MAX`], as [`BatchBuilder::push`].
pub fn encode_batch(
    records: &[Record<'_>],
    default_timestamp_ms: i64,
    options: BatchOptions,
) -> Vec<u8> {
    let base_timestamp = records
        .first()
        .map_or(default_timestamp_ms, |r| r.timestamp.unwrap_or(default_timestamp_ms));
    let mut size = BATCH_HEADER_SIZE;
    for (index, record) in records.iter().enumerate() {
        let timestamp_delta =
            record.timestamp.unwrap_or(default_timestamp_ms).wrapping_sub(base_timestamp);
        let offset_delta = i32::try_from(index).unwrap_or(i32::MAX);
        size = size.saturating_add(record_encoded_size(record, timestamp_delta, offset_delta));
    }
    assert!(
        size <= BATCH_SIZE_BYTES_MAX,
        "a batch of {size} bytes exceeds {BATCH_SIZE_BYTES_MAX} bytes, the most a v2 batch \
         length can describe"
    );
    let mut builder = BatchBuilder::with_capacity(size, options);
    for record in records {
        builder.push(record, default_timestamp_ms);
    }
    debug_assert_eq!(builder.len(), size);
    builder.finish()
}

/// Sets a batch's `baseOffset`. The field is outside the CRC (Kafka's design, so the log can
/// assign offsets on append), so the checksum stays valid and is not recomputed.
///
/// # Panics
///
/// If `batch` is shorter than a batch header ([`BATCH_HEADER_SIZE`] bytes).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    assert_header(batch, "set_base_offset");
    put_be(batch, BASE_OFFSET_OFFSET, &base_offset.to_be_bytes());
}

/// Sets a batch's `partitionLeaderEpoch`. The field is outside the CRC, so the checksum stays
/// valid and is not recomputed.
///
/// # Panics
///
/// If `batch` is shorter than a batch header ([`BATCH_HEADER_SIZE`] bytes).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    assert_header(batch, "set_partition_leader_epoch");
    put_be(batch, PARTITION_LEADER_EPOCH_OFFSET, &epoch.to_be_bytes());
}

/// Stamps a batch with log-append time, as a Kafka broker does for topics with
/// `message.timestamp.type=LogAppendTime`: sets the timestamp-type attribute and
/// `maxTimestamp`, then recomputes the CRC (both fields are covered by it). Readers then report
/// `timestamp_ms` as every record's timestamp.
///
/// The existing checksum is verified first, so a corrupt batch is reported rather than given a
/// fresh, valid checksum.
pub fn set_log_append_time(batch: &mut [u8], timestamp_ms: i64) -> Result<(), DecodeError> {
    let view = BatchView::parse(batch)?;
    view.verify_crc()?;
    let attributes = view.attributes() | TIMESTAMP_TYPE_MASK;
    let total_len = view.total_len();
    let batch = &mut batch[..total_len];
    put_be(batch, ATTRIBUTES_OFFSET, &attributes.to_be_bytes());
    put_be(batch, MAX_TIMESTAMP_OFFSET, &timestamp_ms.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..]);
    put_be(batch, CRC_OFFSET, &crc.to_be_bytes());
    Ok(())
}

fn assert_header(batch: &[u8], operation: &str) {
    assert!(
        batch.len() >= BATCH_HEADER_SIZE,
        "{operation} needs a whole batch header ({BATCH_HEADER_SIZE} bytes), got {} bytes",
        batch.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Header, TimestampType};

    #[test]
    fn tiny_batch_matches_hand_checked_bytes() {
        // One record: key "k", value "v", one header ("h" → null), timestamp 1000.
        let headers = [Header { key: "h", value: None }];
        let record = Record::new(b"v").with_key(b"k").with_headers(&headers).with_timestamp(1000);
        let options = BatchOptions {
            producer_id: 7,
            producer_epoch: 3,
            base_sequence: 42,
            partition_leader_epoch: 5,
        };
        let batch = encode_batch(&[record], 0, options);

        #[rustfmt::skip]
        let expected_without_crc: Vec<u8> = [
            &[0, 0, 0, 0, 0, 0, 0, 0][..],      // baseOffset 0
            &[0, 0, 0, 0x3d],                   // batchLength 61 = 73 - 12
            &[0, 0, 0, 5],                      // partitionLeaderEpoch 5
            &[2],                               // magic
            &[0, 0, 0, 0],                      // crc (checked below)
            &[0, 0],                            // attributes
            &[0, 0, 0, 0],                      // lastOffsetDelta 0
            &[0, 0, 0, 0, 0, 0, 0x03, 0xe8],    // baseTimestamp 1000
            &[0, 0, 0, 0, 0, 0, 0x03, 0xe8],    // maxTimestamp 1000
            &[0, 0, 0, 0, 0, 0, 0, 7],          // producerId 7
            &[0, 3],                            // producerEpoch 3
            &[0, 0, 0, 42],                     // baseSequence 42
            &[0, 0, 0, 1],                      // recordsCount 1
            // record: body is 11 bytes → length varint 22
            &[22],
            &[0],                               // attributes
            &[0],                               // timestampDelta 0
            &[0],                               // offsetDelta 0
            &[2, b'k'],                         // key length 1, "k"
            &[2, b'v'],                         // value length 1, "v"
            &[2],                               // 1 header
            &[2, b'h'],                         // header key length 1, "h"
            &[1],                               // header value length -1 (null)
        ]
        .concat();
        assert_eq!(batch.len(), 73);
        let mut without_crc = batch.clone();
        without_crc[CRC_OFFSET..CRC_OFFSET + 4].fill(0);
        assert_eq!(without_crc, expected_without_crc);
        let crc = u32::from_be_bytes([batch[17], batch[18], batch[19], batch[20]]);
        assert_eq!(crc, crc32c::crc32c(&batch[21..]));
    }

    #[test]
    fn builder_tracks_sizes_and_timestamps() {
        let mut builder = BatchBuilder::new(BatchOptions::default());
        assert!(builder.is_empty());
        assert_eq!(builder.len(), BATCH_HEADER_SIZE);
        let records = [
            Record::new(b"a").with_timestamp(100),
            Record::new(b"bb").with_timestamp(90),
            Record::new(b"ccc"),
            Record { value: None, ..Record::default() },
        ];
        let mut expected_len = BATCH_HEADER_SIZE;
        for (index, record) in records.iter().enumerate() {
            let delta = record.timestamp.unwrap_or(150) - 100;
            expected_len += record_encoded_size(record, delta, index as i32);
            builder.push(record, 150);
            assert_eq!(builder.len(), expected_len);
            assert_eq!(builder.record_count(), index + 1);
        }
        let batch = builder.finish();
        assert_eq!(batch.len(), expected_len);
        let view = BatchView::parse(&batch).unwrap();
        view.validate().unwrap();
        assert_eq!(view.base_timestamp(), 100);
        assert_eq!(view.max_timestamp(), 150);
        assert_eq!(view.last_offset_delta(), 3);
        let timestamps: Vec<i64> =
            view.records().unwrap().map(|r| r.unwrap().timestamp()).collect();
        assert_eq!(timestamps, [100, 90, 150, 150]);
        assert_eq!(batch, encode_batch(&records, 150, BatchOptions::default()));
    }

    #[test]
    fn with_buffer_discards_old_contents() {
        let old = encode_batch(&[Record::new(b"old")], 1, BatchOptions::default());
        let capacity = old.capacity();
        let mut builder = BatchBuilder::with_buffer(old, BatchOptions::default());
        assert_eq!(builder.len(), BATCH_HEADER_SIZE);
        builder.push(&Record::new(b"new"), 2);
        let batch = builder.finish();
        assert!(batch.capacity() >= capacity);
        assert_eq!(batch, encode_batch(&[Record::new(b"new")], 2, BatchOptions::default()));
    }

    #[test]
    fn empty_builder_yields_a_header_only_batch_that_validate_rejects() {
        let batch = BatchBuilder::new(BatchOptions::default()).finish();
        assert_eq!(batch.len(), BATCH_HEADER_SIZE);
        let view = BatchView::parse(&batch).unwrap();
        view.verify_crc().unwrap();
        assert_eq!(view.record_count(), 0);
        assert_eq!(view.base_timestamp(), NO_TIMESTAMP);
        assert_eq!(view.records().unwrap().count(), 0);
        assert_eq!(view.validate(), Err(DecodeError::EmptyBatch));
    }

    #[test]
    fn extreme_timestamps_round_trip() {
        let records = [
            Record::new(b"").with_timestamp(i64::MAX),
            Record::new(b"").with_timestamp(i64::MIN),
            Record::new(b"").with_timestamp(0),
        ];
        let batch = encode_batch(&records, 0, BatchOptions::default());
        let view = BatchView::parse(&batch).unwrap();
        view.validate().unwrap();
        let timestamps: Vec<i64> =
            view.records().unwrap().map(|r| r.unwrap().timestamp()).collect();
        assert_eq!(timestamps, [i64::MAX, i64::MIN, 0]);
        assert_eq!(view.max_timestamp(), i64::MAX);
    }

    #[test]
    fn stamping_offset_and_epoch_keeps_the_crc_valid() {
        let mut batch =
            encode_batch(&[Record::new(b"x"), Record::new(b"y")], 5, BatchOptions::default());
        let crc_before = BatchView::parse(&batch).unwrap().stored_crc();
        set_base_offset(&mut batch, 1_000_000);
        set_partition_leader_epoch(&mut batch, 9);
        let view = BatchView::parse(&batch).unwrap();
        view.validate().unwrap();
        assert_eq!(view.stored_crc(), crc_before);
        assert_eq!(view.base_offset(), 1_000_000);
        assert_eq!(view.last_offset(), 1_000_001);
        assert_eq!(view.partition_leader_epoch(), 9);
        let offsets: Vec<i64> = view.records().unwrap().map(|r| r.unwrap().offset()).collect();
        assert_eq!(offsets, [1_000_000, 1_000_001]);
    }

    #[test]
    fn log_append_time_overrides_record_timestamps_and_recomputes_the_crc() {
        let records = [Record::new(b"x").with_timestamp(10), Record::new(b"y").with_timestamp(20)];
        let mut batch = encode_batch(&records, 0, BatchOptions::default());
        set_log_append_time(&mut batch, 5_000).unwrap();
        let view = BatchView::parse(&batch).unwrap();
        view.validate().unwrap();
        assert_eq!(view.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(view.max_timestamp(), 5_000);
        assert_eq!(view.base_timestamp(), 10);
        let timestamps: Vec<i64> =
            view.records().unwrap().map(|r| r.unwrap().timestamp()).collect();
        assert_eq!(timestamps, [5_000, 5_000]);
    }

    #[test]
    fn log_append_time_refuses_to_bless_a_corrupt_batch() {
        let mut batch = encode_batch(&[Record::new(b"x")], 0, BatchOptions::default());
        let last = batch.len() - 1;
        batch[last] ^= 1;
        let before = batch.clone();
        assert!(matches!(
            set_log_append_time(&mut batch, 5_000),
            Err(DecodeError::ChecksumMismatch { .. })
        ));
        assert_eq!(batch, before);
    }

    #[test]
    #[should_panic(expected = "needs a whole batch header")]
    fn set_base_offset_on_a_short_slice_panics_with_a_clear_message() {
        set_base_offset(&mut [0u8; 20], 1);
    }
}
