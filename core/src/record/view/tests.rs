use super::*;
use crate::record::{
    BatchOptions, Header, Record, encode_batch, set_base_offset, set_partition_leader_epoch,
};

/// Decodes hex, ignoring whitespace.
fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert_eq!(digits.len() % 2, 0, "odd number of hex digits");
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

/// Rewrites the CRC so that a deliberately malformed batch reaches the structural checks.
fn fix_crc(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..]);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Builds a batch header around hand-written record bytes, with a correct length and CRC.
fn batch_with_records(count: i32, last_offset_delta: i32, records: &[u8]) -> Vec<u8> {
    let mut batch = vec![0u8; BATCH_HEADER_SIZE];
    batch.extend_from_slice(records);
    let length = (batch.len() - LOG_OVERHEAD) as i32;
    batch[BATCH_LENGTH_OFFSET..BATCH_LENGTH_OFFSET + 4].copy_from_slice(&length.to_be_bytes());
    batch[MAGIC_OFFSET] = 2;
    batch[LAST_OFFSET_DELTA_OFFSET..LAST_OFFSET_DELTA_OFFSET + 4]
        .copy_from_slice(&last_offset_delta.to_be_bytes());
    batch[RECORDS_COUNT_OFFSET..RECORDS_COUNT_OFFSET + 4].copy_from_slice(&count.to_be_bytes());
    fix_crc(&mut batch);
    batch
}

// Four batches fetched from a live Kafka broker (0.11 for the first three, 2.x for the
// fourth), published as test data by kafka-python (test/record/test_records.py, Apache-2.0).
// Fields: baseOffset batchLength partitionLeaderEpoch magic crc attributes lastOffsetDelta
// baseTimestamp maxTimestamp producerId producerEpoch baseSequence recordsCount | records.
const LIVE_BATCH_1: &str = "0000000000000000 0000003b 00000001 02 0318a270 0000 00000000
    0000015dff7b063c 0000015dff7b063c ffffffffffffffff ffff ffffffff 00000001
    12 00 00 00 01 06313233 00";
const LIVE_BATCH_2: &str = "0000000000000001 00000040 00000002 02 c85cbd23 0000 00000001
    0000015dff7cdd6c 0000015dff7cde14 ffffffffffffffff ffff ffffffff 00000002
    0c 00 00 00 01 00 00
    0e 00 d002 02 01 00 00";
const LIVE_BATCH_3: &str = "0000000000000003 0000003b 00000002 02 2e0b85b7 0000 00000000
    0000015dff7ce79d 0000015dff7ce79d ffffffffffffffff ffff ffffffff 00000001
    12 00 00 00 01 06313233 00";
const LIVE_BATCH_4: &str = "0000000000000000 00000045 00000000 02 5cd8ef52 0000 00000000
    0000016585b6f3c1 0000016585b6f3c1 ffffffffffffffff ffff ffffffff 00000001
    26 00 00 00 01 06686472 02 08686b6579 086876616c";

// Batches encoded by Sarama (record_test.go, MIT): one record, key 01020304, value 050607,
// header 08090a → 0b0c, base timestamp 1479847795000, delta 5; producer fields 0 and
// maxTimestamp 0, as Sarama writes them. The compressed ones carry the same record.
const SARAMA_UNCOMPRESSED: &str = "0000000000000000 00000046 00000000 02 547961fd 0000 00000000
    000001588dcd5938 0000000000000000 0000000000000000 0000 00000000 00000001
    28 00 0a 00 08 01020304 06 050607 02 06 08090a 04 0b0c";
const SARAMA_GZIP: &str = "0000000000000000 0000005f 00000000 02 e74acea5 0001 00000000
    000001588dcd5938 0000000000000000 0000000000000000 0000 00000000 00000001
    1f8b080000096e8800ff001500eaff28000a00080102030406050607020608090a040b0c0300adc9586715000000";
const SARAMA_SNAPPY: &str = "0000000000000000 00000048 00000000 02 15009f61 0002 00000000
    000001588dcd5938 0000000000000000 0000000000000000 0000 00000000 00000001
    155028000a00080102030406050607020608090a040b0c";
const SARAMA_LZ4: &str = "0000000000000000 00000059 00000000 02 a94a77c5 0003 00000000
    000001588dcd5938 0000000000000000 0000000000000000 0000 00000000 00000001
    04224d186470b91500008028000a00080102030406050607020608090a040b0c000000000c3bef92";

fn live_batches() -> Vec<u8> {
    [LIVE_BATCH_1, LIVE_BATCH_2, LIVE_BATCH_3, LIVE_BATCH_4].map(hex).concat()
}

fn collect_records<'a>(batch: &BatchView<'a>) -> Vec<RecordView<'a>> {
    batch.records().unwrap().map(Result::unwrap).collect()
}

fn collect_headers<'a>(record: &RecordView<'a>) -> Vec<HeaderView<'a>> {
    record.headers().map(Result::unwrap).collect()
}

#[test]
fn live_kafka_batches_decode_field_by_field() {
    let bytes = live_batches();
    assert_eq!(bytes.len(), 299);
    let batches: Vec<BatchView<'_>> = BatchIter::new(&bytes).map(Result::unwrap).collect();
    assert_eq!(batches.len(), 4);
    for batch in &batches {
        batch.validate().unwrap();
    }

    let first = &batches[0];
    assert_eq!(first.total_len(), 71);
    assert_eq!(first.base_offset(), 0);
    assert_eq!(first.batch_length(), 59);
    assert_eq!(first.partition_leader_epoch(), 1);
    assert_eq!(first.magic(), 2);
    assert_eq!(first.stored_crc(), 0x0318_a270);
    assert_eq!(first.compute_crc(), 0x0318_a270);
    assert_eq!(first.attributes(), 0);
    assert_eq!(first.compression(), Ok(Compression::None));
    assert_eq!(first.timestamp_type(), TimestampType::CreateTime);
    assert!(!first.is_transactional());
    assert!(!first.is_control());
    assert_eq!(first.delete_horizon_ms(), None);
    assert_eq!(first.last_offset_delta(), 0);
    assert_eq!(first.last_offset(), 0);
    assert_eq!(first.base_timestamp(), 1_503_229_838_908);
    assert_eq!(first.max_timestamp(), 1_503_229_838_908);
    assert_eq!(first.producer_id(), -1);
    assert_eq!(first.producer_epoch(), -1);
    assert_eq!(first.base_sequence(), -1);
    assert_eq!(first.record_count(), 1);
    let records = collect_records(first);
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.offset(), 0);
    assert_eq!(record.offset_delta(), 0);
    assert_eq!(record.timestamp(), 1_503_229_838_908);
    assert_eq!(record.timestamp_delta(), 0);
    assert_eq!(record.attributes(), 0);
    assert_eq!(record.key(), None);
    assert_eq!(record.value(), Some(&b"123"[..]));
    assert_eq!(record.header_count(), 0);
    assert_eq!(record.headers().count(), 0);
    assert_eq!(record.encoded_len(), 10);
    assert_eq!(record.index(), 0);

    let second = &batches[1];
    assert_eq!(second.base_offset(), 1);
    assert_eq!(second.partition_leader_epoch(), 2);
    assert_eq!(second.last_offset_delta(), 1);
    assert_eq!(second.last_offset(), 2);
    assert_eq!(second.max_timestamp(), 1_503_229_959_700);
    let records = collect_records(second);
    let summary: Vec<_> =
        records.iter().map(|r| (r.offset(), r.timestamp(), r.key(), r.value())).collect();
    assert_eq!(
        summary,
        [
            (1, 1_503_229_959_532, None, Some(&b""[..])),
            (2, 1_503_229_959_700, None, Some(&b""[..])),
        ]
    );
    assert_eq!(records[1].timestamp_delta(), 168);

    let third = &batches[2];
    assert_eq!(third.base_offset(), 3);
    assert_eq!(collect_records(third)[0].value(), Some(&b"123"[..]));

    let fourth = &batches[3];
    assert_eq!(fourth.base_timestamp(), 1_535_546_684_353);
    let records = collect_records(fourth);
    assert_eq!(records[0].value(), Some(&b"hdr"[..]));
    let headers = collect_headers(&records[0]);
    assert_eq!(headers, [HeaderView { key: b"hkey", value: Some(b"hval") }]);
    assert_eq!(headers[0].key_str(), Ok("hkey"));
}

#[test]
fn encoder_reproduces_live_kafka_batches_byte_for_byte() {
    let options = |epoch| BatchOptions { partition_leader_epoch: epoch, ..BatchOptions::default() };

    let mut first =
        encode_batch(&[Record::new(b"123").with_timestamp(1_503_229_838_908)], 0, options(1));
    set_base_offset(&mut first, 0);
    assert_eq!(first, hex(LIVE_BATCH_1));

    let records = [
        Record::new(b"").with_timestamp(1_503_229_959_532),
        Record::new(b"").with_timestamp(1_503_229_959_700),
    ];
    let mut second = encode_batch(&records, 0, options(2));
    set_base_offset(&mut second, 1);
    assert_eq!(second, hex(LIVE_BATCH_2));

    let mut third = encode_batch(&[Record::new(b"123")], 1_503_229_962_141, options(0));
    set_base_offset(&mut third, 3);
    set_partition_leader_epoch(&mut third, 2);
    assert_eq!(third, hex(LIVE_BATCH_3));

    let headers = [Header::new("hkey", b"hval")];
    let record = Record::new(b"hdr").with_headers(&headers).with_timestamp(1_535_546_684_353);
    assert_eq!(encode_batch(&[record], 0, options(0)), hex(LIVE_BATCH_4));
}

#[test]
fn sarama_batch_decodes_including_binary_header_keys() {
    let bytes = hex(SARAMA_UNCOMPRESSED);
    let batch = BatchView::parse(&bytes).unwrap();
    batch.validate().unwrap();
    assert_eq!(batch.producer_id(), 0);
    assert_eq!(batch.max_timestamp(), 0);
    let records = collect_records(&batch);
    assert_eq!(records[0].key(), Some(&[1, 2, 3, 4][..]));
    assert_eq!(records[0].value(), Some(&[5, 6, 7][..]));
    assert_eq!(records[0].timestamp(), 1_479_847_795_005);
    let headers = collect_headers(&records[0]);
    assert_eq!(headers, [HeaderView { key: &[8, 9, 10], value: Some(&[11, 12]) }]);
}

#[test]
fn compressed_batches_are_refused_with_the_codec_named() {
    for (fixture, codec, name) in [
        (SARAMA_GZIP, Compression::Gzip, "gzip"),
        (SARAMA_SNAPPY, Compression::Snappy, "snappy"),
        (SARAMA_LZ4, Compression::Lz4, "lz4"),
    ] {
        let bytes = hex(fixture);
        let batch = BatchView::parse(&bytes).unwrap();
        batch.verify_crc().unwrap();
        assert_eq!(batch.compression(), Ok(codec));
        let expected = DecodeError::UnsupportedCompression { codec: codec.id(), name };
        assert_eq!(batch.records().unwrap_err(), expected);
        assert_eq!(batch.validate(), Err(expected.clone()));
        let message = expected.to_string();
        assert!(message.contains(name), "{message}");
        assert!(message.contains("uncompressed"), "{message}");
        // Still iterable as a stored batch.
        assert_eq!(BatchIter::new(&bytes).count(), 1);
    }
}

#[test]
fn zstd_and_undefined_codecs_are_refused() {
    let mut bytes = encode_batch(&[Record::new(b"v")], 0, BatchOptions::default());
    for codec in 4u8..=7 {
        bytes[ATTRIBUTES_OFFSET + 1] = codec;
        fix_crc(&mut bytes);
        let batch = BatchView::parse(&bytes).unwrap();
        let name = Compression::from_id(codec).map_or("unknown", Compression::name);
        let expected = DecodeError::UnsupportedCompression { codec, name };
        if codec == 4 {
            assert_eq!(batch.compression(), Ok(Compression::Zstd));
        } else {
            assert_eq!(batch.compression(), Err(expected.clone()));
        }
        assert_eq!(batch.records().unwrap_err(), expected);
        assert_eq!(batch.validate(), Err(expected.clone()));
        assert!(expected.to_string().contains(name));
    }
}

#[test]
fn attribute_flags_are_read_from_their_bits() {
    let mut bytes =
        encode_batch(&[Record::new(b"v").with_timestamp(5)], 0, BatchOptions::default());
    bytes[ATTRIBUTES_OFFSET + 1] = 0x10 | 0x20 | 0x40;
    let batch = BatchView::parse(&bytes).unwrap();
    assert!(batch.is_transactional());
    assert!(batch.is_control());
    assert_eq!(batch.delete_horizon_ms(), Some(5));
    assert_eq!(batch.timestamp_type(), TimestampType::CreateTime);
}

#[test]
fn flipping_any_bit_under_the_crc_is_a_checksum_mismatch() {
    let headers = [Header::new("trace", b"abc"), Header { key: "n", value: None }];
    let records = [
        Record::new(b"first value").with_key(b"k1").with_headers(&headers),
        Record::tombstone(b"k2"),
        Record::new(&[0xff; 300]),
    ];
    let original = encode_batch(&records, 1_700_000_000_000, BatchOptions::default());
    let mut batch = original.clone();
    for byte in ATTRIBUTES_OFFSET..batch.len() {
        for bit in 0..8 {
            batch[byte] ^= 1 << bit;
            match BatchView::parse(&batch) {
                Ok(view) => {
                    assert!(
                        matches!(view.verify_crc(), Err(DecodeError::ChecksumMismatch { .. })),
                        "byte {byte} bit {bit}"
                    );
                    assert!(
                        matches!(view.validate(), Err(DecodeError::ChecksumMismatch { .. })),
                        "byte {byte} bit {bit}"
                    );
                }
                // The one flip that parse itself catches: the sign bit of recordsCount.
                Err(error) => {
                    assert_eq!((byte, bit), (RECORDS_COUNT_OFFSET, 7));
                    assert!(matches!(error, DecodeError::InvalidRecordCount { .. }), "{error}");
                }
            }
            batch[byte] ^= 1 << bit;
        }
    }
    // The stored CRC itself is checked too.
    for bit in 0..32 {
        batch[CRC_OFFSET + bit / 8] ^= 1 << (bit % 8);
        let view = BatchView::parse(&batch).unwrap();
        assert!(matches!(view.validate(), Err(DecodeError::ChecksumMismatch { .. })), "bit {bit}");
        batch[CRC_OFFSET + bit / 8] ^= 1 << (bit % 8);
    }
    assert_eq!(batch, original);
}

#[test]
fn checksum_mismatch_reports_both_values() {
    let mut batch = encode_batch(&[Record::new(b"v")], 0, BatchOptions::default());
    let stored = BatchView::parse(&batch).unwrap().stored_crc();
    let last = batch.len() - 1;
    batch[last] ^= 0x01;
    let view = BatchView::parse(&batch).unwrap();
    let error = view.verify_crc().unwrap_err();
    assert_eq!(error, DecodeError::ChecksumMismatch { stored, computed: view.compute_crc() });
    assert!(error.to_string().contains(&format!("{stored:#010x}")), "{error}");
}

#[test]
fn truncation_at_every_length_is_reported_as_truncated() {
    let headers = [Header::new("h", b"v")];
    let records = [Record::new(b"hello").with_key(b"k").with_headers(&headers), Record::new(b"")];
    let batch = encode_batch(&records, 42, BatchOptions::default());
    for len in 0..batch.len() {
        let needed = if len < LOG_OVERHEAD { LOG_OVERHEAD } else { batch.len() };
        assert_eq!(
            BatchView::parse(&batch[..len]).unwrap_err(),
            DecodeError::Truncated { needed, available: len },
            "length {len}"
        );
    }
    assert!(BatchView::parse(&batch).is_ok());
}

#[test]
fn batch_iter_stops_at_a_torn_tail_and_reports_where() {
    let first = encode_batch(&[Record::new(b"one")], 1, BatchOptions::default());
    let second = encode_batch(&[Record::new(b"two")], 2, BatchOptions::default());
    let log = [first.as_slice(), second.as_slice()].concat();

    for cut in 0..=log.len() {
        let mut batches = BatchIter::new(&log[..cut]);
        let mut good = 0;
        let mut error = None;
        for item in batches.by_ref() {
            match item {
                Ok(batch) => {
                    batch.validate().unwrap();
                    good += 1;
                }
                Err(e) => error = Some(e),
            }
        }
        let complete = usize::from(cut >= first.len()) + usize::from(cut == log.len());
        assert_eq!(good, complete, "cut {cut}");
        let boundary = cut == 0 || cut == first.len() || cut == log.len();
        assert_eq!(error.is_none(), boundary, "cut {cut}: {error:?}");
        if let Some(error) = error {
            assert!(matches!(error, DecodeError::Truncated { .. }), "cut {cut}: {error}");
        }
        let expected_position = if cut >= first.len() { first.len() } else { 0 };
        let expected_position = if cut == log.len() { log.len() } else { expected_position };
        assert_eq!(batches.position(), expected_position, "cut {cut}");
        assert_eq!(batches.next().map(|_| ()), None, "fused after the end or an error");
    }
}

#[test]
fn batch_iter_over_nothing_yields_nothing() {
    assert_eq!(BatchIter::new(&[]).count(), 0);
}

#[test]
fn legacy_message_formats_are_named_by_their_magic() {
    // kafka-python's live v1 and v0 messages (value "123").
    let v1 =
        hex("0000000000000000 00000019 478628c2 01 00 0000015e1867abae ffffffff 00000003 313233");
    let v0 = hex("0000000000000000 00000011 feb01dbf 00 00 ffffffff 00000003 313233");
    assert_eq!(BatchView::parse(&v1).unwrap_err(), DecodeError::UnsupportedMagic { magic: 1 });
    assert_eq!(BatchView::parse(&v0).unwrap_err(), DecodeError::UnsupportedMagic { magic: 0 });
    let mut batch = encode_batch(&[Record::new(b"v")], 0, BatchOptions::default());
    batch[MAGIC_OFFSET] = 3;
    assert_eq!(BatchView::parse(&batch).unwrap_err(), DecodeError::UnsupportedMagic { magic: 3 });
    assert!(DecodeError::UnsupportedMagic { magic: 1 }.to_string().contains("magic 1"));
}

#[test]
fn lengths_shorter_than_a_header_are_invalid() {
    let mut batch = encode_batch(&[Record::new(b"v")], 0, BatchOptions::default());
    for length in [i32::MIN, -1, 0, 4, 5, 48] {
        batch[BATCH_LENGTH_OFFSET..BATCH_LENGTH_OFFSET + 4].copy_from_slice(&length.to_be_bytes());
        assert_eq!(BatchView::parse(&batch).unwrap_err(), DecodeError::InvalidLength { length });
    }
    // A hostile huge length is just a truncated batch: nothing is allocated for it.
    batch[BATCH_LENGTH_OFFSET..BATCH_LENGTH_OFFSET + 4].copy_from_slice(&i32::MAX.to_be_bytes());
    assert_eq!(
        BatchView::parse(&batch).unwrap_err(),
        DecodeError::Truncated { needed: LOG_OVERHEAD + i32::MAX as usize, available: batch.len() }
    );
}

#[test]
fn a_header_only_batch_parses_and_is_empty() {
    let batch = batch_with_records(0, 0, &[]);
    let view = BatchView::parse(&batch).unwrap();
    assert_eq!(view.total_len(), BATCH_HEADER_SIZE);
    assert_eq!(view.records().unwrap().count(), 0);
    assert_eq!(view.validate(), Err(DecodeError::EmptyBatch));
}

#[test]
fn negative_record_count_is_rejected_by_parse() {
    let batch = batch_with_records(-1, 0, &[]);
    assert_eq!(
        BatchView::parse(&batch).unwrap_err(),
        DecodeError::InvalidRecordCount { count: -1 }
    );
}

// A minimal record: length 6, attributes, timestamp delta 0, offset delta (zig-zag) `delta`,
// null key, null value, no headers.
fn minimal_record(offset_delta_zigzag: u8) -> [u8; 7] {
    [12, 0, 0, offset_delta_zigzag, 1, 1, 0]
}

#[test]
fn record_count_must_match_the_records() {
    let one = minimal_record(0);
    let batch = batch_with_records(2, 1, &one);
    let view = BatchView::parse(&batch).unwrap();
    assert_eq!(view.validate(), Err(DecodeError::RecordCountMismatch { header: 2, decoded: 1 }));

    let two = [minimal_record(0), minimal_record(2)].concat();
    let batch = batch_with_records(1, 0, &two);
    let view = BatchView::parse(&batch).unwrap();
    assert_eq!(view.validate(), Err(DecodeError::TrailingBytes { trailing: 7 }));
    let items: Vec<_> = view.records().unwrap().collect();
    assert_eq!(items.len(), 2);
    assert!(items[0].is_ok());
    assert_eq!(items[1].as_ref().err(), Some(&DecodeError::TrailingBytes { trailing: 7 }));
}

#[test]
fn offset_deltas_must_be_dense_and_in_order() {
    let records = [minimal_record(0), minimal_record(4)].concat(); // deltas 0, 2
    let batch = batch_with_records(2, 1, &records);
    let view = BatchView::parse(&batch).unwrap();
    assert_eq!(
        view.validate(),
        Err(DecodeError::OffsetDeltaMismatch { index: 1, expected: 1, found: 2 })
    );
    // Readers that skip validate (compacted batches have gaps) still get the records.
    let offsets: Vec<i64> = view.records().unwrap().map(|r| r.unwrap().offset()).collect();
    assert_eq!(offsets, [0, 2]);
}

#[test]
fn last_offset_delta_must_be_count_minus_one() {
    let batch = batch_with_records(1, 3, &minimal_record(0));
    let view = BatchView::parse(&batch).unwrap();
    assert_eq!(
        view.validate(),
        Err(DecodeError::LastOffsetDeltaMismatch { header: 3, expected: 0 })
    );
}

#[test]
fn malformed_records_name_the_record_and_the_problem() {
    let valid_second = minimal_record(2);
    let cases: [(&[u8], DecodeError); 12] = [
        // Record length varint cut off by the end of the batch.
        (&[0x80], DecodeError::InvalidRecord { index: 1, reason: REASON_LENGTH_TRUNCATED }),
        // Negative record length (-1).
        (&[0x01], DecodeError::InvalidRecord { index: 1, reason: REASON_LENGTH_NEGATIVE }),
        // Length 20 with 6 bytes left.
        (
            &[40, 0, 0, 2, 1, 1, 0],
            DecodeError::InvalidRecord { index: 1, reason: REASON_BODY_TRUNCATED },
        ),
        // Length 0: no attributes.
        (&[0], DecodeError::InvalidRecord { index: 1, reason: REASON_ATTRIBUTES_TRUNCATED }),
        // Key length -2.
        (
            &[12, 0, 0, 2, 3, 1, 0],
            DecodeError::InvalidRecord { index: 1, reason: REASON_KEY_LENGTH_NEGATIVE },
        ),
        // Key length 5 inside a 6-byte body.
        (
            &[12, 0, 0, 2, 10, 1, 0],
            DecodeError::InvalidRecord { index: 1, reason: REASON_KEY_TRUNCATED },
        ),
        // Value length -3.
        (
            &[12, 0, 0, 2, 1, 5, 0],
            DecodeError::InvalidRecord { index: 1, reason: REASON_VALUE_LENGTH_NEGATIVE },
        ),
        // Header count -1.
        (
            &[12, 0, 0, 2, 1, 1, 1],
            DecodeError::InvalidRecord { index: 1, reason: REASON_HEADER_COUNT_NEGATIVE },
        ),
        // Header count i32::MAX with no header bytes: stops at the end of the record.
        (
            &[20, 0, 0, 2, 1, 1, 0xfe, 0xff, 0xff, 0xff, 0x0f],
            DecodeError::InvalidRecord { index: 1, reason: REASON_HEADER_KEY_LENGTH_TRUNCATED },
        ),
        // One header whose value length is -2.
        (
            &[18, 0, 0, 2, 1, 1, 2, 2, b'h', 3],
            DecodeError::InvalidRecord { index: 1, reason: REASON_HEADER_VALUE_LENGTH_NEGATIVE },
        ),
        // Body longer than its fields: one byte left over.
        (
            &[14, 0, 0, 2, 1, 1, 0, 0],
            DecodeError::InvalidRecord { index: 1, reason: REASON_LENGTH_MISMATCH },
        ),
        // Timestamp delta varlong whose tenth byte still has the continuation bit: too long.
        // The record starts at byte 61 + 7 = 68, its body at 69, the varlong (after the
        // attributes byte) at 70.
        (
            &[24, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            DecodeError::InvalidVarint { position: 70 },
        ),
    ];
    for (second, expected) in cases {
        let records = [&minimal_record(0)[..], second].concat();
        let batch = batch_with_records(2, 1, &records);
        let view = BatchView::parse(&batch).unwrap();
        assert_eq!(view.validate(), Err(expected.clone()), "{second:02x?}");
        let items: Vec<_> = view.records().unwrap().collect();
        assert_eq!(items.len(), 2, "one good record, then the error, then the end");
        assert_eq!(items[1].as_ref().err(), Some(&expected), "{second:02x?}");
    }
    // The good second record really is good.
    let batch = batch_with_records(2, 1, &[minimal_record(0), valid_second].concat());
    BatchView::parse(&batch).unwrap().validate().unwrap();
}

#[test]
fn error_messages_are_specific() {
    let error = DecodeError::InvalidRecord { index: 3, reason: REASON_KEY_TRUNCATED };
    assert_eq!(error.to_string(), "invalid record 3: its key runs past the end of the record");
    let error = DecodeError::Truncated { needed: 100, available: 40 };
    assert_eq!(error.to_string(), "truncated record batch: 100 bytes needed, only 40 available");
    let error = DecodeError::InvalidLength { length: 7 };
    assert!(error.to_string().contains("length 7"), "{error}");
    assert!(error.to_string().contains("49"), "{error}");
}

#[test]
fn header_iteration_handles_null_values_and_non_utf8_keys() {
    let headers = [Header { key: "null", value: None }, Header::new("", b"")];
    let record = Record::new(b"v").with_headers(&headers);
    let batch = encode_batch(&[record], 0, BatchOptions::default());
    let view = BatchView::parse(&batch).unwrap();
    let records = collect_records(&view);
    let decoded = collect_headers(&records[0]);
    assert_eq!(
        decoded,
        [HeaderView { key: b"null", value: None }, HeaderView { key: b"", value: Some(b"") }]
    );
    assert_eq!(records[0].headers().size_hint(), (2, Some(2)));
    assert!(HeaderView { key: &[0xff], value: None }.key_str().is_err());
}

#[test]
fn views_borrow_the_input_without_copying() {
    let batch =
        encode_batch(&[Record::new(b"payload").with_key(b"key")], 0, BatchOptions::default());
    let view = BatchView::parse(&batch).unwrap();
    let record = collect_records(&view).remove(0);
    let range = batch.as_ptr_range();
    for field in [record.key().unwrap(), record.value().unwrap()] {
        assert!(range.contains(&field.as_ptr()), "field points into the batch");
    }
    assert_eq!(view.as_bytes().as_ptr(), batch.as_ptr());
}

#[test]
fn parse_accepts_input_that_continues_past_the_batch() {
    let batch = encode_batch(&[Record::new(b"v")], 0, BatchOptions::default());
    let mut longer = batch.clone();
    longer.extend_from_slice(&[0xab; 100]);
    let view = BatchView::parse(&longer).unwrap();
    assert_eq!(view.as_bytes(), &batch[..]);
    view.validate().unwrap();
}

#[test]
fn debug_output_summarises_instead_of_dumping_bytes() {
    let batch = encode_batch(&[Record::new(&[7; 1000])], 0, BatchOptions::default());
    let view = BatchView::parse(&batch).unwrap();
    let text = format!("{view:?} {:?}", collect_records(&view)[0]);
    assert!(text.contains("record_count: 1"), "{text}");
    assert!(text.contains("value_len: Some(1000)"), "{text}");
    assert!(text.len() < 600, "{text}");
}

#[test]
fn size_hints_never_trust_the_declared_count() {
    let batch = batch_with_records(i32::MAX, i32::MAX - 1, &minimal_record(0));
    let view = BatchView::parse(&batch).unwrap();
    let records = view.records().unwrap();
    assert_eq!(records.size_hint(), (0, Some(2)));
    let items: Vec<_> = records.collect();
    assert_eq!(items.len(), 2);
    assert_eq!(
        items[1].as_ref().err(),
        Some(&DecodeError::RecordCountMismatch { header: i32::MAX, decoded: 1 })
    );
}
