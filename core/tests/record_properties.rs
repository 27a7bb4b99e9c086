//! Property tests of the record-batch format through its public API: what is encoded decodes to
//! the same fields, and no input — random, mutated or truncated — makes a decoder panic.

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use tidelog_core::partitioner::partition_for_key;
use tidelog_core::record::varint::{
    put_varint, put_varlong, read_varint, read_varlong, varint_size, varlong_size,
};
use tidelog_core::record::{
    BATCH_HEADER_SIZE, BatchBuilder, BatchIter, BatchOptions, BatchView, DecodeError, Header,
    Record, encode_batch, record_encoded_size, set_base_offset, set_partition_leader_epoch,
};

/// An owned record, so that strategies can generate it; borrowed as a [`Record`] to encode.
#[derive(Debug, Clone)]
struct OwnedRecord {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    timestamp: Option<i64>,
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=max)
}

fn timestamp() -> impl Strategy<Value = i64> {
    // Mostly realistic epoch milliseconds, sometimes the extremes.
    prop_oneof![
        4 => 1_600_000_000_000i64..1_800_000_000_000,
        1 => any::<i64>(),
    ]
}

fn owned_record() -> impl Strategy<Value = OwnedRecord> {
    let header = (vec(any::<char>(), 0..8).prop_map(String::from_iter), option::of(bytes(16)));
    (option::of(bytes(32)), option::of(bytes(300)), vec(header, 0..4), option::of(timestamp()))
        .prop_map(|(key, value, headers, timestamp)| OwnedRecord { key, value, headers, timestamp })
}

fn options() -> impl Strategy<Value = BatchOptions> {
    (any::<i64>(), any::<i16>(), any::<i32>(), any::<i32>()).prop_map(
        |(producer_id, producer_epoch, base_sequence, partition_leader_epoch)| BatchOptions {
            producer_id,
            producer_epoch,
            base_sequence,
            partition_leader_epoch,
        },
    )
}

/// Encodes owned records (headers need a place to live while borrowed).
fn encode(records: &[OwnedRecord], default_timestamp: i64, options: BatchOptions) -> Vec<u8> {
    let headers: Vec<Vec<Header<'_>>> = records
        .iter()
        .map(|r| {
            r.headers.iter().map(|(key, value)| Header { key, value: value.as_deref() }).collect()
        })
        .collect();
    let borrowed: Vec<Record<'_>> = records
        .iter()
        .zip(&headers)
        .map(|(r, headers)| Record {
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            headers,
            timestamp: r.timestamp,
        })
        .collect();
    encode_batch(&borrowed, default_timestamp, options)
}

fn valid_batch() -> impl Strategy<Value = Vec<u8>> {
    (vec(owned_record(), 1..6), timestamp(), options()).prop_map(
        |(records, default_timestamp, options)| encode(&records, default_timestamp, options),
    )
}

/// Runs every decoder over `bytes`, touching every field; must never panic.
fn decode_everything(bytes: &[u8]) -> usize {
    let mut touched = 0usize;
    for batch in BatchIter::new(bytes) {
        let Ok(batch) = batch else { break };
        let _ = batch.verify_crc();
        let _ = batch.validate();
        let _ = (batch.compression(), batch.timestamp_type(), batch.delete_horizon_ms());
        touched ^= (batch.last_offset() ^ batch.max_timestamp()) as usize;
        if let Ok(records) = batch.records() {
            for record in records {
                let Ok(record) = record else { break };
                touched ^= (record.offset() ^ record.timestamp()) as usize;
                touched = touched.wrapping_add(record.key().map_or(0, <[u8]>::len));
                touched = touched.wrapping_add(record.value().map_or(0, <[u8]>::len));
                for header in record.headers() {
                    let header = header.expect("headers of a decoded record were validated");
                    touched = touched
                        .wrapping_add(header.key.len() + header.value.map_or(0, <[u8]>::len));
                    let _ = header.key_str();
                }
            }
        }
    }
    touched
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2048,
        // Integration tests have no lib.rs beside them; keep regressions next to this file.
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn encoded_records_decode_to_the_same_fields(
        records in vec(owned_record(), 1..12),
        default_timestamp in timestamp(),
        options in options(),
        base_offset in 0i64..i64::MAX / 2,
        leader_epoch in any::<i32>(),
    ) {
        let mut batch = encode(&records, default_timestamp, options);
        set_base_offset(&mut batch, base_offset);
        set_partition_leader_epoch(&mut batch, leader_epoch);

        let view = BatchView::parse(&batch).unwrap();
        view.validate().unwrap();
        prop_assert_eq!(view.total_len(), batch.len());
        prop_assert_eq!(view.base_offset(), base_offset);
        prop_assert_eq!(view.partition_leader_epoch(), leader_epoch);
        prop_assert_eq!(view.record_count() as usize, records.len());
        prop_assert_eq!(view.last_offset(), base_offset + records.len() as i64 - 1);
        prop_assert_eq!(view.producer_id(), options.producer_id);
        prop_assert_eq!(view.producer_epoch(), options.producer_epoch);
        prop_assert_eq!(view.base_sequence(), options.base_sequence);
        let timestamps: Vec<i64> =
            records.iter().map(|r| r.timestamp.unwrap_or(default_timestamp)).collect();
        prop_assert_eq!(view.base_timestamp(), timestamps[0]);
        prop_assert_eq!(view.max_timestamp(), *timestamps.iter().max().unwrap());

        let decoded: Vec<_> = view.records().unwrap().map(Result::unwrap).collect();
        prop_assert_eq!(decoded.len(), records.len());
        let mut encoded_total = BATCH_HEADER_SIZE;
        for (index, (record, original)) in decoded.iter().zip(&records).enumerate() {
            prop_assert_eq!(record.offset(), base_offset + index as i64);
            prop_assert_eq!(record.offset_delta(), index as i32);
            prop_assert_eq!(record.timestamp(), timestamps[index]);
            prop_assert_eq!(record.key(), original.key.as_deref());
            prop_assert_eq!(record.value(), original.value.as_deref());
            prop_assert_eq!(record.attributes(), 0);
            let headers: Vec<(Vec<u8>, Option<Vec<u8>>)> = record
                .headers()
                .map(|h| h.map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec))))
                .collect::<Result<_, _>>()
                .unwrap();
            let expected: Vec<(Vec<u8>, Option<Vec<u8>>)> = original
                .headers
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.clone()))
                .collect();
            prop_assert_eq!(headers, expected);
            for header in record.headers() {
                prop_assert!(header.unwrap().key_str().is_ok());
            }
            encoded_total += record.encoded_len();
        }
        prop_assert_eq!(encoded_total, batch.len());
    }

    #[test]
    fn builder_len_matches_record_encoded_size(
        records in vec(owned_record(), 0..8),
        default_timestamp in timestamp(),
    ) {
        let headers: Vec<Vec<Header<'_>>> = records
            .iter()
            .map(|r| r.headers.iter().map(|(k, v)| Header { key: k, value: v.as_deref() }).collect())
            .collect();
        let mut builder = BatchBuilder::new(BatchOptions::default());
        let mut base_timestamp = None;
        for (index, (r, headers)) in records.iter().zip(&headers).enumerate() {
            let record = Record { key: r.key.as_deref(), value: r.value.as_deref(), headers, timestamp: r.timestamp };
            let timestamp = r.timestamp.unwrap_or(default_timestamp);
            let base = *base_timestamp.get_or_insert(timestamp);
            let before = builder.len();
            builder.push(&record, default_timestamp);
            let size = record_encoded_size(&record, timestamp.wrapping_sub(base), index as i32);
            prop_assert_eq!(builder.len() - before, size);
        }
        let len = builder.len();
        prop_assert_eq!(builder.finish().len(), len);
    }

    #[test]
    fn random_bytes_never_panic(input in bytes(600)) {
        decode_everything(&input);
    }

    #[test]
    fn random_bytes_behind_a_plausible_header_never_panic(
        length in 49i32..400,
        count in prop_oneof![0i32..8, any::<i32>()],
        attributes in prop_oneof![Just(0u8), any::<u8>()],
        records in bytes(400),
    ) {
        // A header that passes parse, followed by random "records", with a correct CRC so
        // that validate reaches the record decoder.
        let mut batch = vec![0u8; BATCH_HEADER_SIZE];
        batch[8..12].copy_from_slice(&length.to_be_bytes());
        batch[16] = 2;
        batch[22] = attributes;
        batch[57..61].copy_from_slice(&count.to_be_bytes());
        batch.extend_from_slice(&records);
        let total = (12 + length as usize).min(batch.len());
        let crc = crc32c::crc32c(&batch[21..total]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        decode_everything(&batch);
        if let Ok(view) = BatchView::parse(&batch) {
            // The CRC is right, so any failure is structural, never a checksum complaint.
            let result = view.validate();
            prop_assert!(
                !matches!(result, Err(DecodeError::ChecksumMismatch { .. })),
                "validate complained about a correct CRC: {:?}",
                result
            );
        }
    }

    #[test]
    fn mutated_batches_never_panic(
        batch in valid_batch(),
        mutations in vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        fix_crc in any::<bool>(),
    ) {
        let mut batch = batch;
        for (index, byte) in &mutations {
            let at = index.index(batch.len());
            batch[at] = *byte;
        }
        if fix_crc && batch.len() >= BATCH_HEADER_SIZE {
            let crc = crc32c::crc32c(&batch[21..]);
            batch[17..21].copy_from_slice(&crc.to_be_bytes());
        }
        decode_everything(&batch);
    }

    #[test]
    fn a_changed_byte_under_the_crc_is_always_detected(
        batch in valid_batch(),
        index in any::<prop::sample::Index>(),
        xor in 1u8..,
    ) {
        let mut batch = batch;
        let at = 21 + index.index(batch.len() - 21);
        batch[at] ^= xor;
        match BatchView::parse(&batch) {
            Ok(view) => prop_assert!(
                matches!(view.validate(), Err(DecodeError::ChecksumMismatch { .. })),
                "byte {} ^ {:#x} went unnoticed", at, xor
            ),
            // Only the record count is checked by parse itself.
            Err(error) => prop_assert!(
                matches!(error, DecodeError::InvalidRecordCount { .. }) && (57..61).contains(&at),
                "{}", error
            ),
        }
    }

    #[test]
    fn truncated_logs_yield_the_whole_batches_then_truncated(
        batches in vec(valid_batch(), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let log = batches.concat();
        let cut = cut.index(log.len() + 1);
        let mut iter = BatchIter::new(&log[..cut]);
        let mut whole = 0;
        let mut end = 0;
        for item in iter.by_ref() {
            match item {
                Ok(batch) => {
                    batch.validate().unwrap();
                    prop_assert_eq!(batch.as_bytes(), &batches[whole][..]);
                    end += batch.total_len();
                    whole += 1;
                }
                Err(error) => prop_assert!(matches!(error, DecodeError::Truncated { .. }), "{}", error),
            }
        }
        prop_assert_eq!(iter.position(), end);
        let boundaries: Vec<usize> = batches
            .iter()
            .scan(0, |sum, b| { *sum += b.len(); Some(*sum) })
            .collect();
        prop_assert_eq!(whole, boundaries.iter().filter(|&&b| b <= cut).count());
    }

    #[test]
    fn varints_round_trip(value in any::<i32>(), long in any::<i64>(), prefix in bytes(3)) {
        let mut out = prefix.clone();
        put_varint(&mut out, value);
        put_varlong(&mut out, long);
        prop_assert_eq!(out.len(), prefix.len() + varint_size(value) + varlong_size(long));
        let (decoded, next) = read_varint(&out, prefix.len()).unwrap();
        prop_assert_eq!(decoded, value);
        let (decoded_long, end) = read_varlong(&out, next).unwrap();
        prop_assert_eq!(decoded_long, long);
        prop_assert_eq!(end, out.len());
    }

    #[test]
    fn varint_readers_never_panic(input in bytes(12), position in 0usize..16) {
        let _ = read_varint(&input, position);
        let _ = read_varlong(&input, position);
    }

    #[test]
    fn keyed_partitions_are_in_range(key in bytes(64), partitions in 1u32..) {
        prop_assert!(partition_for_key(&key, partitions) < partitions);
    }
}
