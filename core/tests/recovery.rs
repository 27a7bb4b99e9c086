//! Crash tests at the first depth (STYLE §11): garbage or truncated tails, damaged indexes and
//! corrupt closed segments, on real files. Recovery must keep exactly the valid prefix of the
//! active segment; a corrupt closed segment must be an error naming the file and position,
//! never data.

use std::fs;
use std::path::{Path, PathBuf};

use tidelog_core::{Durability, Engine, EngineConfig, Error, ReadRequest, Record, TopicConfig};

fn open(dir: &Path) -> Engine {
    Engine::open(dir, EngineConfig::default().shards(1)).unwrap()
}

fn partition_dir(dir: &Path) -> PathBuf {
    dir.join("topics").join("t").join("0")
}

fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<_> = fs::read_dir(partition_dir(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}

fn read_all(engine: &Engine) -> Vec<(u64, Vec<u8>)> {
    let info = engine.partition_info("t", 0).unwrap();
    let mut out = Vec::new();
    let mut offset = info.log_start_offset;
    while offset < info.high_watermark {
        let fetch = engine.read("t", 0, ReadRequest::new(offset)).unwrap();
        for record in fetch.records() {
            let record = record.unwrap();
            out.push((record.offset() as u64, record.value().unwrap().to_vec()));
            offset = record.offset() as u64 + 1;
        }
    }
    out
}

/// Write `batches` batches of 1–3 records into one segment; return the records and the end
/// position of every batch in the log file.
fn populate(dir: &Path, batches: usize) -> (Vec<(u64, Vec<u8>)>, Vec<u64>) {
    let engine = open(dir);
    engine.create_topic("t", TopicConfig::default()).unwrap();
    let mut records = Vec::new();
    let mut ends = Vec::new();
    for i in 0..batches {
        let values: Vec<Vec<u8>> = (0..1 + i % 3)
            .map(|j| format!("batch {i} record {j} {}", "x".repeat(i * 7 % 50)).into_bytes())
            .collect();
        let batch: Vec<Record<'_>> = values.iter().map(|v| Record::new(v)).collect();
        let result = engine.append("t", 0, &batch, Durability::Durable).unwrap();
        for (k, value) in values.into_iter().enumerate() {
            records.push((result.base_offset + k as u64, value));
        }
        ends.push(engine.partition_info("t", 0).unwrap().segments[0].size_bytes);
    }
    engine.close().unwrap();
    (records, ends)
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != "LOCK" {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Expected surviving records when the log is cut at `len` bytes.
fn prefix(
    records: &[(u64, Vec<u8>)],
    ends: &[u64],
    len: u64,
    batches_per_record: &[usize],
) -> Vec<(u64, Vec<u8>)> {
    let whole = ends.iter().take_while(|&&end| end <= len).count();
    let keep: usize = batches_per_record[..whole].iter().sum();
    records[..keep].to_vec()
}

#[test]
fn truncated_tails_recover_to_the_valid_prefix() {
    let original = tempfile::tempdir().unwrap();
    let (records, ends) = populate(original.path(), 12);
    let per_batch: Vec<usize> = (0..12).map(|i| 1 + i % 3).collect();
    let mut cuts: Vec<u64> = vec![0, 1, 11, 12, 60, 61];
    for &end in &ends {
        cuts.extend([end.saturating_sub(1), end, end + 1, end.saturating_sub(30)]);
    }
    cuts.sort_unstable();
    cuts.dedup();
    for cut in cuts.into_iter().filter(|&c| c <= *ends.last().unwrap()) {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(original.path(), dir.path());
        let log = &files_with(dir.path(), "log")[0];
        fs::OpenOptions::new().write(true).open(log).unwrap().set_len(cut).unwrap();
        let engine = open(dir.path());
        let expected = prefix(&records, &ends, cut, &per_batch);
        assert_eq!(read_all(&engine), expected, "cut at {cut}");
        let info = engine.partition_info("t", 0).unwrap();
        assert_eq!(info.high_watermark, expected.len() as u64);
        // Appends continue at the next offset.
        let next = engine.append("t", 0, &[Record::new(b"after")], Durability::Durable).unwrap();
        assert_eq!(next.base_offset, expected.len() as u64);
        engine.close().unwrap();
        // The file was cut at the valid end (no garbage left behind the new batch).
        let engine = open(dir.path());
        assert_eq!(read_all(&engine).len(), expected.len() + 1, "cut at {cut}, after reopen");
        engine.close().unwrap();
    }
}

#[test]
fn garbage_tails_recover_to_the_valid_prefix() {
    let original = tempfile::tempdir().unwrap();
    let (records, ends) = populate(original.path(), 6);
    let log_bytes = fs::read(&files_with(original.path(), "log")[0]).unwrap();
    let first_batch = log_bytes[..ends[0] as usize].to_vec();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    };
    let tails: Vec<(&str, Vec<u8>)> = vec![
        ("zeros", vec![0; 4096]),
        ("random", random(1000)),
        ("random long", random(70_000)),
        // A valid batch, but with an offset that breaks continuity.
        ("stale batch", first_batch.clone()),
        // A valid batch header claiming more bytes than follow.
        ("torn header", first_batch[..40].to_vec()),
        ("ones", vec![0xff; 300]),
    ];
    for (name, tail) in tails {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(original.path(), dir.path());
        let log = &files_with(dir.path(), "log")[0];
        let mut bytes = fs::read(log).unwrap();
        bytes.extend_from_slice(&tail);
        fs::write(log, &bytes).unwrap();
        let engine = open(dir.path());
        assert_eq!(read_all(&engine), records, "tail: {name}");
        engine.close().unwrap();
        assert_eq!(
            fs::metadata(log).unwrap().len(),
            *ends.last().unwrap(),
            "tail {name} was cut off"
        );
    }
}

#[test]
fn damaged_or_missing_indexes_are_rebuilt() {
    let original = tempfile::tempdir().unwrap();
    let engine = open(original.path());
    engine.create_topic("t", TopicConfig::default()).unwrap();
    let value = vec![5u8; 900];
    for _ in 0..60 {
        engine.append("t", 0, &[Record::new(&value)], Durability::Durable).unwrap();
    }
    engine.close().unwrap();
    let records = {
        let engine = open(original.path());
        let all = read_all(&engine);
        engine.close().unwrap();
        all
    };
    assert_eq!(records.len(), 60);
    for damage in ["delete", "truncate", "flip", "garbage"] {
        for ext in ["index", "timeindex"] {
            let dir = tempfile::tempdir().unwrap();
            copy_dir(original.path(), dir.path());
            let index = &files_with(dir.path(), ext)[0];
            match damage {
                "delete" => fs::remove_file(index).unwrap(),
                "truncate" => {
                    fs::OpenOptions::new().write(true).open(index).unwrap().set_len(40).unwrap()
                }
                "flip" => {
                    let mut bytes = fs::read(index).unwrap();
                    let at = bytes.len() / 2;
                    bytes[at] ^= 0x10;
                    fs::write(index, bytes).unwrap();
                }
                _ => {
                    let mut bytes = fs::read(index).unwrap();
                    bytes.extend_from_slice(&[0xab; 100]);
                    fs::write(index, bytes).unwrap();
                }
            }
            let engine = open(dir.path());
            assert_eq!(read_all(&engine), records, "{damage} {ext}");
            assert_eq!(engine.offset_for_timestamp("t", 0, 0).unwrap(), Some(0));
            engine.close().unwrap();
        }
    }
}

#[test]
fn corruption_in_a_closed_segment_is_an_error_naming_file_and_position() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    engine
        .create_topic(
            "t",
            TopicConfig::default().segment_size_bytes(16 * 1024).record_size_bytes_max(4096),
        )
        .unwrap();
    let value = vec![9u8; 1000];
    for _ in 0..40 {
        engine.append("t", 0, &[Record::new(&value)], Durability::Durable).unwrap();
    }
    engine.close().unwrap();
    let logs = files_with(dir.path(), "log");
    assert!(logs.len() >= 2);
    let closed = &logs[0];
    let mut bytes = fs::read(closed).unwrap();
    let position = 3000;
    bytes[position] ^= 0x01;
    fs::write(closed, bytes).unwrap();

    let engine = open(dir.path());
    let mut saw_error = false;
    let mut offset = 0;
    while offset < 40 {
        match engine.read("t", 0, ReadRequest::new(offset).max_bytes(1)) {
            Ok(fetch) => offset = fetch.next_offset(),
            Err(Error::Corrupt { path, position: at, reason }) => {
                assert_eq!(&path, closed);
                assert!(at <= position as u64, "reported {at}, damage at {position}");
                assert!(reason.contains("checksum"), "{reason}");
                saw_error = true;
                offset += 1;
            }
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert!(saw_error, "the corrupt batch was never reported");
    engine.close().unwrap();
}

/// A closed segment of 1-record batches on real files; returns the log's path and the
/// byte position of every batch in it (with its offset: batch i holds offset i).
fn closed_segment_of_single_record_batches(dir: &Path) -> (PathBuf, Vec<u64>) {
    let engine = open(dir);
    engine
        .create_topic(
            "t",
            TopicConfig::default().segment_size_bytes(16 * 1024).record_size_bytes_max(4096),
        )
        .unwrap();
    for i in 0..40u8 {
        let value = vec![i; 1000];
        engine.append("t", 0, &[Record::new(&value)], Durability::Durable).unwrap();
    }
    engine.close().unwrap();
    let log = files_with(dir, "log")[0].clone();
    let bytes = fs::read(&log).unwrap();
    let mut positions = Vec::new();
    let mut batches = tidelog_core::record::BatchIter::new(&bytes);
    loop {
        let at = batches.position() as u64;
        match batches.next() {
            Some(batch) => {
                assert_eq!(batch.unwrap().base_offset() as usize, positions.len());
                positions.push(at);
            }
            None => break,
        }
    }
    (log, positions)
}

fn flip(path: &Path, at: u64, mask: u8) {
    let mut bytes = fs::read(path).unwrap();
    bytes[at as usize] ^= mask;
    fs::write(path, bytes).unwrap();
}

/// Found by the simulation (seed 0): a read whose byte range reached a damaged batch failed
/// whole, so the intact batches before it could not be read with any but a tiny
/// `max_bytes`. Only a read of the damaged batch itself must fail.
#[test]
fn a_damaged_batch_does_not_fail_reads_of_the_batches_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (log, positions) = closed_segment_of_single_record_batches(dir.path());
    flip(&log, positions[5] + 100, 0x04);
    let engine = open(dir.path());
    let fetch = engine.read("t", 0, ReadRequest::new(2).max_bytes(1 << 20)).unwrap();
    let offsets: Vec<i64> = fetch.records().map(|r| r.unwrap().offset()).collect();
    assert_eq!(offsets, [2, 3, 4], "the intact batches up to the damaged one");
    match engine.read("t", 0, ReadRequest::new(5).max_bytes(1 << 20)) {
        Err(Error::Corrupt { path, position, .. }) => {
            assert_eq!(path, log);
            assert_eq!(position, positions[5]);
        }
        other => panic!("read of the damaged batch: {other:?}"),
    }
    let fetch = engine.read("t", 0, ReadRequest::new(6).max_bytes(1 << 20)).unwrap();
    assert_eq!(fetch.records().next().unwrap().unwrap().offset(), 6);
    engine.close().unwrap();
}

/// Found by the simulation (seed 25): a batch's `baseOffset` is outside its CRC (Kafka's
/// layout: the log assigns offsets on append), so a flipped bit there went unnoticed and
/// reads returned records under the wrong offsets. Reads now check that batches continue
/// the offsets of the index entry they start from.
#[test]
fn a_flipped_base_offset_is_corruption_not_other_records() {
    for bit in [0x01u8, 0x04, 0x80] {
        let dir = tempfile::tempdir().unwrap();
        let (log, positions) = closed_segment_of_single_record_batches(dir.path());
        // The low byte of batch 7's baseOffset (big-endian, bytes 0..8 of the batch).
        flip(&log, positions[7] + 7, bit);
        let engine = open(dir.path());
        for offset in 0..12u64 {
            for max_bytes in [1, 1 << 20] {
                let request = ReadRequest::new(offset).max_bytes(max_bytes);
                match engine.read("t", 0, request) {
                    Ok(fetch) => {
                        let mut expect = offset;
                        for record in fetch.records() {
                            let record = record.unwrap();
                            assert_eq!(record.offset() as u64, expect, "read {request:?}");
                            assert_eq!(record.value().unwrap()[0] as u64, expect);
                            expect += 1;
                        }
                        assert!(expect > offset, "read {request:?} returned nothing");
                    }
                    Err(Error::Corrupt { path, position, .. }) => {
                        assert_eq!(path, log);
                        assert_eq!(position, positions[7], "read {request:?}");
                        assert_eq!(offset, 7, "read {request:?} failed, not on the damaged batch");
                    }
                    Err(other) => panic!("read {request:?}: {other}"),
                }
            }
        }
        // A lookup by time walks batches too.
        match engine.offset_for_timestamp("t", 0, i64::MAX - 1) {
            Ok(None) | Err(Error::Corrupt { .. }) => {}
            other => panic!("lookup: {other:?}"),
        }
        engine.close().unwrap();
    }
}

/// Found by the simulation (seed 17): a flipped bit in a batch's length field (outside the
/// CRC) made it claim more bytes than the segment holds; the read asked for the whole batch,
/// got the rest of the file, and asked again — forever, with the shard stuck.
#[test]
fn a_batch_length_past_the_end_of_the_log_is_corruption_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let (log, positions) = closed_segment_of_single_record_batches(dir.path());
    // Byte 9 is the second byte of the big-endian batch length: +8 MiB.
    flip(&log, positions[5] + 9, 0x80);
    let engine = open(dir.path());
    let pending = engine.read_async("t", 0, ReadRequest::new(5).max_bytes(1));
    match pending.wait_timeout(std::time::Duration::from_secs(20)) {
        Ok(Err(Error::Corrupt { path, position, .. })) => {
            assert_eq!(path, log);
            assert_eq!(position, positions[5]);
        }
        Ok(other) => panic!("read of the damaged batch: {other:?}"),
        Err(_) => panic!("the read of a batch whose length runs past the log never returned"),
    }
    engine.close().unwrap();
}

/// Found by the simulation (seed 7): a flipped bit in a batch's last offset delta (inside
/// the CRC) made the batch claim offsets past the high watermark; the read took it for a
/// batch not yet visible and returned an empty fetch — no error, and a reader at that
/// offset would wait forever.
#[test]
fn a_batch_claiming_offsets_past_the_high_watermark_is_corruption_not_an_empty_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let (log, positions) = closed_segment_of_single_record_batches(dir.path());
    // Bytes 23..27 are the big-endian last offset delta: byte 24 bit 1 adds 2^17.
    flip(&log, positions[5] + 24, 0x02);
    let engine = open(dir.path());
    for max_bytes in [1, 1 << 20] {
        match engine.read("t", 0, ReadRequest::new(5).max_bytes(max_bytes)) {
            Err(Error::Corrupt { path, position, .. }) => {
                assert_eq!(path, log);
                assert_eq!(position, positions[5]);
            }
            other => panic!("read of the damaged batch (max_bytes {max_bytes}): {other:?}"),
        }
    }
    engine.close().unwrap();
}

/// Found by the simulation (seed 1517: a closed segment's offset index lost its tail to a
/// failed fdatasync, and a batch of its log was damaged): a closed segment whose index must
/// be rebuilt was refused whole when the rebuild's scan stopped at a damaged batch, so no
/// batch of it could be read. The index is now rebuilt up to the damage: the batches before
/// it read back, a read of the damaged one fails naming it.
#[test]
fn a_damaged_batch_in_a_segment_whose_index_is_rebuilt_spares_the_batches_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (log, positions) = closed_segment_of_single_record_batches(dir.path());
    flip(&log, positions[5] + 100, 0x04);
    fs::remove_file(log.with_extension("index")).unwrap();
    let engine = open(dir.path());
    for offset in 0..5u64 {
        let fetch = engine.read("t", 0, ReadRequest::new(offset).max_bytes(1 << 20)).unwrap();
        let first = fetch.records().next().unwrap().unwrap();
        assert_eq!(first.offset() as u64, offset);
    }
    match engine.read("t", 0, ReadRequest::new(5)) {
        Err(Error::Corrupt { path, position, .. }) => {
            assert_eq!((path, position), (log.clone(), positions[5]));
        }
        other => panic!("read of the damaged batch: {other:?}"),
    }
    engine.close().unwrap();
}

/// Found by the simulation (seed 2762): a flipped bit in the last offset delta (inside the
/// CRC) of a closed segment's last batch made it claim fewer offsets than it holds. A read
/// of one of the offsets it no longer claimed walked past it (batches walked past are not
/// CRC-checked) to the end of the segment and returned an empty fetch below the high
/// watermark — no error, and a reader at that offset would wait forever. Reaching the end
/// of the written log before a visible offset is now corruption, blamed on the batch walked
/// last.
#[test]
fn a_last_batch_claiming_fewer_offsets_is_corruption_not_an_empty_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    engine
        .create_topic(
            "t",
            TopicConfig::default().segment_size_bytes(16 * 1024).record_size_bytes_max(8192),
        )
        .unwrap();
    for i in 0..10u8 {
        engine.append("t", 0, &[Record::new(&vec![i; 1000])], Durability::Durable).unwrap();
    }
    // Segment 0 ends with a batch of offsets 10..=14; the next append rolls.
    let small: Vec<Vec<u8>> = (10..15u8).map(|i| vec![i; 20]).collect();
    let records: Vec<Record<'_>> = small.iter().map(|v| Record::new(v)).collect();
    let last = engine.append("t", 0, &records, Durability::Durable).unwrap();
    assert_eq!((last.base_offset, last.last_offset), (10, 14));
    engine.append("t", 0, &[Record::new(&vec![15u8; 8000])], Durability::Durable).unwrap();
    engine.close().unwrap();
    let logs = files_with(dir.path(), "log");
    assert_eq!(logs.len(), 2, "segment 0 rolled");
    let log = logs[0].clone();
    let bytes = fs::read(&log).unwrap();
    let mut batches = tidelog_core::record::BatchIter::new(&bytes);
    let mut position = 0;
    loop {
        let at = batches.position() as u64;
        match batches.next() {
            Some(batch) if batch.as_ref().unwrap().base_offset() == 10 => position = at,
            Some(_) => {}
            None => break,
        }
    }
    assert!(position > 0);
    // Bytes 23..27 are the big-endian last offset delta: 4 becomes 0.
    flip(&log, position + 26, 0x04);
    let engine = open(dir.path());
    for offset in 11..15u64 {
        for max_bytes in [1, 1 << 20] {
            match engine.read("t", 0, ReadRequest::new(offset).max_bytes(max_bytes)) {
                Err(Error::Corrupt { path, position: at, .. }) => {
                    assert_eq!((path, at), (log.clone(), position), "read of {offset}");
                }
                other => panic!("read of {offset} in the damaged batch: {other:?}"),
            }
        }
    }
    let fetch = engine.read("t", 0, ReadRequest::new(15)).unwrap();
    assert_eq!(fetch.records().next().unwrap().unwrap().offset(), 15);
    engine.close().unwrap();
}

/// Found by the simulation (seed 5849): a flipped bit in a batch's length (outside the CRC)
/// made the walk of a read skip past it to a few bytes before the end of the segment — less
/// than a batch header — and the read returned an empty fetch below the high watermark
/// instead of failing on the damaged batch.
#[test]
fn a_length_leading_to_the_last_bytes_of_a_segment_is_corruption_not_an_empty_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    engine
        .create_topic(
            "t",
            TopicConfig::default().segment_size_bytes(16 * 1024).record_size_bytes_max(32 * 1024),
        )
        .unwrap();
    // Segment 0: batch A (offset 0), then batch B (offset 1, tiny); the next append rolls.
    engine.append("t", 0, &[Record::new(&[b'a'; 100])], Durability::Durable).unwrap();
    engine.append("t", 0, &[Record::new(b"")], Durability::Durable).unwrap();
    engine.append("t", 0, &[Record::new(&vec![b'c'; 17_000])], Durability::Durable).unwrap();
    engine.close().unwrap();
    let logs = files_with(dir.path(), "log");
    assert_eq!(logs.len(), 2, "segment 0 rolled");
    let log = logs[0].clone();
    let bytes = fs::read(&log).unwrap();
    let sizes: Vec<usize> =
        tidelog_core::record::BatchIter::new(&bytes).map(|b| b.unwrap().total_len()).collect();
    let (a, b) = (sizes[0], sizes[1]);
    assert_eq!(sizes.len(), 2);
    // Bit 6 of A's length (the low byte, byte 11): +64 bytes lands A's end inside B, less
    // than a batch header before the end of the segment.
    assert_eq!(bytes[11] & 0x40, 0, "bit 6 of A's length is clear");
    assert!(b > 64 && b - 64 < 12, "B is {b} bytes");
    flip(&log, 11, 0x40);
    let engine = open(dir.path());
    for max_bytes in [1, 1 << 20] {
        match engine.read("t", 0, ReadRequest::new(1).max_bytes(max_bytes)) {
            Err(Error::Corrupt { path, position, .. }) => {
                assert_eq!((path, position), (log.clone(), 0), "blamed on A ({a} bytes)");
            }
            other => panic!("read of offset 1 past the damaged batch: {other:?}"),
        }
    }
    let fetch = engine.read("t", 0, ReadRequest::new(2)).unwrap();
    assert_eq!(fetch.records().next().unwrap().unwrap().offset(), 2);
    engine.close().unwrap();
}
