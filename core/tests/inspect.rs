//! `inspect`: data written by a real engine verifies clean; each kind of damage is reported
//! with the right file and byte position; states a crash leaves are warnings, not defects.

use std::path::{Path, PathBuf};

use tidelog_core::IoChoice;
use tidelog_core::inspect::{InspectOptions, InspectReport, inspect};
use tidelog_core::record::BatchIter;
use tidelog_core::segment::index::{HEADER_SIZE, IndexEntry, OffsetEntry, TimeEntry};
use tidelog_core::segment::{self};
use tidelog_core::{
    Durability, Engine, EngineConfig, Error, Record, SegmentPreparation, TopicConfig,
};

const TOPIC: &str = "events";
const PARTITIONS: u32 = 2;
const APPENDS: u32 = 240;

const LISTING: InspectOptions = InspectOptions { verify: false, strict: false, io: IoChoice::Auto };
const VERIFY: InspectOptions =
    InspectOptions { verify: true, strict: false, io: IoChoice::Portable };
const STRICT: InspectOptions = InspectOptions { verify: true, strict: true, io: IoChoice::Uring };

/// A directory holding one topic whose partitions have several closed segments each (16 KiB
/// segments, ~300-byte records, some batches of several records).
fn populated() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), EngineConfig::default().shards(2)).unwrap();
    engine
        .create_topic(
            TOPIC,
            TopicConfig::default()
                .partitions(PARTITIONS)
                .segment_size_bytes(tidelog_core::limits::SEGMENT_SIZE_BYTES_MIN)
                .record_size_bytes_max(4096),
        )
        .unwrap();
    for i in 0..APPENDS {
        let values: Vec<String> =
            (0..1 + i % 3).map(|j| format!("{i:05}-{j}-{}", "x".repeat(280))).collect();
        let records: Vec<Record<'_>> = values.iter().map(|v| Record::new(v.as_bytes())).collect();
        engine.append(TOPIC, i % PARTITIONS, &records, Durability::Written).unwrap();
    }
    engine.close().unwrap();
    dir
}

fn partition_dir(dir: &Path, partition: u32) -> PathBuf {
    dir.join("topics").join(TOPIC).join(partition.to_string())
}

/// Base offsets of a partition's segments, oldest first.
fn segment_bases(dir: &Path, partition: u32) -> Vec<u64> {
    let mut bases: Vec<u64> = std::fs::read_dir(partition_dir(dir, partition))
        .unwrap()
        .filter_map(|e| match segment::parse_file_name(e.unwrap().file_name().to_str().unwrap()) {
            Some(segment::SegmentFile::Log(base)) => Some(base),
            _ => None,
        })
        .collect();
    bases.sort_unstable();
    bases
}

/// Byte positions of the batches in a log file.
fn batch_positions(path: &Path) -> Vec<u64> {
    let bytes = std::fs::read(path).unwrap();
    let mut at = 0u64;
    let mut positions = Vec::new();
    for batch in BatchIter::new(&bytes) {
        positions.push(at);
        at += batch.unwrap().total_len() as u64;
    }
    positions
}

fn flip_byte(path: &Path, position: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[position as usize] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

fn truncate_by(path: &Path, bytes: u64) -> u64 {
    let len = std::fs::metadata(path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.set_len(len - bytes).unwrap();
    len - bytes
}

fn defect_of(report: &InspectReport) -> &tidelog_core::inspect::Defect {
    report.defect.as_ref().unwrap_or_else(|| panic!("expected a defect, got {report:#?}"))
}

#[test]
fn clean_directory_verifies_and_listing_agrees_with_the_engine() {
    let dir = populated();
    let engine = Engine::open(dir.path(), EngineConfig::default().shards(2)).unwrap();
    let described = engine.describe_topic(TOPIC).unwrap();
    engine.close().unwrap();

    let verified = inspect(dir.path(), VERIFY).unwrap();
    assert!(verified.is_clean(), "{:#?}", verified.defect);
    assert!(verified.warnings.is_empty(), "{:#?}", verified.warnings);
    assert_eq!(verified.topics.len(), 1);
    let topic = &verified.topics[0];
    assert_eq!(topic.name, TOPIC);
    assert_eq!(topic.config, described.config);
    assert_eq!(topic.partitions.len(), PARTITIONS as usize);
    let records: u64 = topic.partitions.iter().map(|p| p.record_count()).sum();
    assert_eq!(records, (0..APPENDS).map(|i| u64::from(1 + i % 3)).sum::<u64>());

    for (partition, info) in topic.partitions.iter().zip(&described.partitions) {
        assert!(partition.segments.len() >= 3, "want several segments: {partition:#?}");
        assert_eq!(partition.log_start_offset, info.log_start_offset);
        assert_eq!(partition.next_offset, info.next_offset);
        let seen: Vec<_> = partition
            .segments
            .iter()
            .map(|s| (s.base_offset, s.next_offset, s.size_bytes, s.max_timestamp, s.active))
            .collect();
        let want: Vec<_> = info
            .segments
            .iter()
            .map(|s| (s.base_offset, s.next_offset, s.size_bytes, s.max_timestamp, s.active))
            .collect();
        assert_eq!(seen, want);
        for segment in &partition.segments {
            assert_eq!(segment.closed_cleanly, !segment.active);
            assert!(segment.batch_count.is_some_and(|n| n > 0));
            assert_eq!(segment.file_len_bytes, segment.size_bytes);
        }
    }

    // Listing reads far less but reports the same offsets, sizes and timestamps.
    let mut listed = inspect(dir.path(), LISTING).unwrap();
    assert!(listed.is_clean());
    for topic in &mut listed.topics {
        for partition in &mut topic.partitions {
            for segment in &mut partition.segments {
                assert_eq!(segment.batch_count, None);
                segment.batch_count = None;
            }
        }
    }
    let mut without_counts = verified.clone();
    for topic in &mut without_counts.topics {
        for partition in &mut topic.partitions {
            for segment in &mut partition.segments {
                segment.batch_count = None;
            }
        }
    }
    assert_eq!(listed.topics, without_counts.topics);
}

#[test]
fn spare_segments_are_part_of_a_clean_directory() {
    // The spare segment (`prepared.segment`, or `prepared.segment.tmp` while being filled)
    // holds no records and is adopted on open: it is the engine's normal state after a clean
    // close, not an unexpected file. (Before this was fixed, `--strict` reported it as a
    // defect for every directory written with fallocate or zero-fill.)
    for policy in [SegmentPreparation::Fallocate, SegmentPreparation::ZeroFill] {
        let dir = tempfile::tempdir().unwrap();
        let config = EngineConfig::default().shards(1).segment_preparation(policy);
        let engine = Engine::open(dir.path(), config.clone()).unwrap();
        engine
            .create_topic(
                TOPIC,
                TopicConfig::default()
                    .segment_size_bytes(tidelog_core::limits::SEGMENT_SIZE_BYTES_MIN)
                    .record_size_bytes_max(4096),
            )
            .unwrap();
        let value = "x".repeat(1000);
        for _ in 0..100 {
            engine.append(TOPIC, 0, &[Record::new(value.as_bytes())], Durability::Durable).unwrap();
        }
        engine.close().unwrap();
        let names: Vec<String> = std::fs::read_dir(partition_dir(dir.path(), 0))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            names.iter().any(|n| n.starts_with("prepared.segment")),
            "{policy:?}: the test needs a spare on disk: {names:?}"
        );

        let report = inspect(dir.path(), VERIFY).unwrap();
        assert!(report.is_clean(), "{policy:?}: {:#?}", report.defect);
        let partition = &report.topics[0].partitions[0];
        assert_eq!(partition.record_count(), 100, "{policy:?}");
        assert!(partition.segments.len() >= 3, "{policy:?}: several rolls: {partition:#?}");
        // What remains is the padding after the data of an active segment that was a spare
        // (the next open cuts it): a warning, and so a defect under `--strict`. See
        // docs/BENCHMARKS.md, "Segment preparation".
        let active = &partition.segments.last().unwrap().path;
        for warning in &report.warnings {
            assert_eq!(&warning.path, active, "{policy:?}: {warning:?}");
            assert!(warning.reason.contains("preparation padding"), "{policy:?}: {warning:?}");
        }
        let strict = inspect(dir.path(), STRICT).unwrap();
        if let Some(defect) = &strict.defect {
            assert_eq!(&defect.path, active, "{policy:?}: {defect:?}");
        }

        // And the engine agrees: everything is there after a reopen.
        let engine = Engine::open(dir.path(), config).unwrap();
        assert_eq!(engine.partition_info(TOPIC, 0).unwrap().next_offset, 100, "{policy:?}");
        engine.close().unwrap();
    }
}

#[test]
fn a_directory_an_engine_has_open_is_refused() {
    let dir = populated();
    let engine = Engine::open(dir.path(), EngineConfig::default().shards(1)).unwrap();
    let err = inspect(dir.path(), VERIFY).unwrap_err();
    assert!(matches!(err, Error::DirectoryInUse { .. }), "{err}");
    assert!(err.to_string().contains("in use"), "{err}");
    engine.close().unwrap();
    assert!(inspect(dir.path(), VERIFY).unwrap().is_clean());
}

#[test]
fn a_missing_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = inspect(&dir.path().join("nope"), VERIFY).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
}

#[test]
fn a_flipped_byte_in_a_closed_segment_is_found_at_its_batch() {
    let dir = populated();
    let bases = segment_bases(dir.path(), 1);
    let log = segment::log_path(&partition_dir(dir.path(), 1), bases[1]);
    let positions = batch_positions(&log);
    let victim = positions[positions.len() / 2];
    flip_byte(&log, victim + 100);

    let report = inspect(dir.path(), VERIFY).unwrap();
    let defect = defect_of(&report);
    assert_eq!(defect.path, log);
    assert_eq!(defect.position, victim);
    assert!(defect.reason.contains("checksum mismatch"), "{defect}");
    // What was inspected before the defect is still reported.
    assert_eq!(report.topics[0].partitions.len(), 2);
    assert_eq!(report.topics[0].partitions[1].segments.len(), 1);

    // Listing trusts a cleanly closed segment's close entry and reads none of its batches.
    assert!(inspect(dir.path(), LISTING).unwrap().is_clean());
}

#[test]
fn a_truncated_index_of_a_closed_segment_is_a_defect() {
    let dir = populated();
    let bases = segment_bases(dir.path(), 0);
    let index = segment::offset_index_path(&partition_dir(dir.path(), 0), bases[0]);
    let len = std::fs::metadata(&index).unwrap().len();
    assert!(len >= (HEADER_SIZE + 2 * OffsetEntry::SIZE) as u64, "index too short: {len}");
    truncate_by(&index, 5);

    let report = inspect(dir.path(), LISTING).unwrap();
    let defect = defect_of(&report);
    assert_eq!(defect.path, index);
    assert_eq!(defect.position, len - OffsetEntry::SIZE as u64);
    assert!(defect.reason.contains("ends inside an entry"), "{defect}");
}

#[test]
fn an_index_entry_off_a_batch_boundary_is_a_defect() {
    let dir = populated();
    let bases = segment_bases(dir.path(), 0);
    let base = bases[1];
    let path = segment::offset_index_path(&partition_dir(dir.path(), 0), base);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = HEADER_SIZE + OffsetEntry::SIZE; // the second entry
    let mut entry = OffsetEntry::decode(base, &bytes[at..at + OffsetEntry::SIZE]).unwrap();
    entry.position += 1;
    entry.encode(base, &mut bytes[at..at + OffsetEntry::SIZE]);
    std::fs::write(&path, bytes).unwrap();

    assert!(inspect(dir.path(), LISTING).unwrap().is_clean(), "listing does not check entries");
    let report = inspect(dir.path(), VERIFY).unwrap();
    let defect = defect_of(&report);
    assert_eq!(defect.path, path);
    assert_eq!(defect.position, at as u64);
    assert!(defect.reason.contains("not a batch boundary"), "{defect}");
}

#[test]
fn a_time_entry_below_the_records_before_it_is_a_defect() {
    let dir = populated();
    let bases = segment_bases(dir.path(), 0);
    let base = bases[0];
    let path = segment::time_index_path(&partition_dir(dir.path(), 0), base);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = HEADER_SIZE; // the first entry; a smaller timestamp still follows nothing
    let mut entry = TimeEntry::decode(base, &bytes[at..at + TimeEntry::SIZE]).unwrap();
    entry.max_timestamp = 1;
    entry.encode(base, &mut bytes[at..at + TimeEntry::SIZE]);
    std::fs::write(&path, bytes).unwrap();

    let report = inspect(dir.path(), VERIFY).unwrap();
    let defect = defect_of(&report);
    assert_eq!(defect.path, path);
    assert_eq!(defect.position, at as u64);
    assert!(defect.reason.contains("below"), "{defect}");
}

#[test]
fn damaged_topic_metadata_is_a_defect_at_the_damaged_part() {
    let dir = populated();
    let meta = dir.path().join("topics").join(TOPIC).join("topic.meta");
    let original = std::fs::read(&meta).unwrap();

    flip_byte(&meta, 40); // in the payload
    let report = inspect(dir.path(), LISTING).unwrap();
    let defect = defect_of(&report);
    assert_eq!(defect.path, meta);
    assert_eq!(defect.position, 24);
    assert!(defect.reason.contains("payload checksum mismatch"), "{defect}");
    assert!(report.topics.is_empty());

    std::fs::write(&meta, &original).unwrap();
    flip_byte(&meta, 13); // the payload length, in the header
    let defect = inspect(dir.path(), VERIFY).unwrap().defect.unwrap();
    assert_eq!((defect.path.as_path(), defect.position), (meta.as_path(), 0));
    assert!(defect.reason.contains("header checksum mismatch"), "{defect}");
}

#[test]
fn a_torn_tail_on_the_active_segment_is_a_warning_unless_strict() {
    let dir = populated();
    let bases = segment_bases(dir.path(), 0);
    let log = segment::log_path(&partition_dir(dir.path(), 0), *bases.last().unwrap());
    let positions = batch_positions(&log);
    let last = *positions.last().unwrap();
    let cut_to = truncate_by(&log, 7);

    let report = inspect(dir.path(), VERIFY).unwrap();
    assert!(report.is_clean(), "{:#?}", report.defect);
    assert_eq!(report.warnings.len(), 1, "{:#?}", report.warnings);
    let warning = &report.warnings[0];
    assert_eq!((warning.path.as_path(), warning.position), (log.as_path(), Some(last)));
    assert!(warning.reason.contains("torn tail"), "{warning}");
    let active = report.topics[0].partitions[0].segments.last().unwrap();
    assert_eq!((active.size_bytes, active.file_len_bytes), (last, cut_to));

    let strict = inspect(dir.path(), STRICT).unwrap();
    let defect = defect_of(&strict);
    assert_eq!((defect.path.as_path(), defect.position), (log.as_path(), last));

    // Listing sees the same tail.
    let listed = inspect(dir.path(), LISTING).unwrap();
    assert_eq!(listed.warnings, report.warnings);

    // The engine cuts it; then everything is clean again.
    Engine::open(dir.path(), EngineConfig::default().shards(1)).unwrap().close().unwrap();
    let after = inspect(dir.path(), STRICT).unwrap();
    assert!(after.is_clean() && after.warnings.is_empty(), "{after:#?}");
}

#[test]
fn damage_followed_by_valid_batches_on_the_active_segment_is_a_defect() {
    // In the records (the CRC fails), and in the base offset (which the CRC does not cover).
    for (within_batch, says) in [(70, "checksum mismatch"), (7, "base offset")] {
        let dir = populated();
        let bases = segment_bases(dir.path(), 1);
        let log = segment::log_path(&partition_dir(dir.path(), 1), *bases.last().unwrap());
        let positions = batch_positions(&log);
        assert!(positions.len() >= 3, "active segment too short: {positions:?}");
        let victim = positions[positions.len() - 3];
        flip_byte(&log, victim + within_batch);

        let report = inspect(dir.path(), VERIFY).unwrap();
        let defect = defect_of(&report);
        assert_eq!((defect.path.as_path(), defect.position), (log.as_path(), victim));
        assert!(defect.reason.contains("not a torn tail"), "{defect}");
        assert!(defect.reason.contains(says), "{defect}");
    }
}

#[test]
fn stale_batches_after_the_active_segment_data_are_a_tail() {
    // As a recycled segment file would hold: whole, valid batches with earlier offsets.
    let dir = populated();
    let bases = segment_bases(dir.path(), 0);
    let partition = partition_dir(dir.path(), 0);
    let old = std::fs::read(segment::log_path(&partition, bases[0])).unwrap();
    let log = segment::log_path(&partition, *bases.last().unwrap());
    let end = std::fs::metadata(&log).unwrap().len();
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend_from_slice(&old[..old.len() / 2]);
    std::fs::write(&log, bytes).unwrap();

    let report = inspect(dir.path(), VERIFY).unwrap();
    assert!(report.is_clean(), "{:#?}", report.defect);
    let warning = report.warnings.iter().find(|w| w.path == log).unwrap();
    assert_eq!(warning.position, Some(end));
    assert!(warning.reason.contains("torn tail"), "{warning}");
}

#[test]
fn an_interrupted_close_is_a_warning_and_the_engine_repairs_it() {
    let dir = populated();
    let bases = segment_bases(dir.path(), 0);
    let time = segment::time_index_path(&partition_dir(dir.path(), 0), bases[1]);
    truncate_by(&time, TimeEntry::SIZE as u64); // drop the close entry

    let report = inspect(dir.path(), VERIFY).unwrap();
    assert!(report.is_clean(), "{:#?}", report.defect);
    assert_eq!(report.warnings.len(), 1, "{:#?}", report.warnings);
    assert_eq!(report.warnings[0].path, time);
    assert!(report.warnings[0].reason.contains("not closed cleanly"));
    let segment = &report.topics[0].partitions[0].segments[1];
    assert!(!segment.closed_cleanly);
    assert_eq!(segment.next_offset, bases[2]);

    let defect = inspect(dir.path(), STRICT).unwrap().defect.unwrap();
    assert_eq!(defect.path, time);

    Engine::open(dir.path(), EngineConfig::default().shards(1)).unwrap().close().unwrap();
    let after = inspect(dir.path(), STRICT).unwrap();
    assert!(after.is_clean() && after.warnings.is_empty(), "{after:#?}");
    assert!(after.topics[0].partitions[0].segments[1].closed_cleanly);
}

#[test]
fn segments_that_do_not_join_up_are_a_defect() {
    let dir = populated();
    let partition = partition_dir(dir.path(), 1);
    let bases = segment_bases(dir.path(), 1);
    // Remove a middle segment: the one after it no longer starts where the one before ends.
    for path in [
        segment::log_path(&partition, bases[1]),
        segment::offset_index_path(&partition, bases[1]),
        segment::time_index_path(&partition, bases[1]),
    ] {
        std::fs::remove_file(path).unwrap();
    }
    let report = inspect(dir.path(), LISTING).unwrap();
    let defect = defect_of(&report);
    // The segment before now has a close entry that does not reach its successor: a warning,
    // then the gap.
    assert_eq!(defect.path, segment::log_path(&partition, bases[2]), "{report:#?}");
}
