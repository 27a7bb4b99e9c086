//! Bad input and bad disks: a full disk, failing writes and syncs, an unusable directory.
//! Each must be a typed error with a clear message, never a panic, and must not cost any
//! record already acknowledged.

use std::sync::Arc;

use tidelog_core::{Durability, Engine, EngineConfig, Error, ReadRequest, Record, TopicConfig};
use tidelog_io::sim::{FaultRule, OpKind, SimDisk};

const DIR: &str = "/sim/data";

fn sim_engine(disk: &SimDisk) -> Engine {
    Engine::open(DIR, EngineConfig::default().shards(1).storage(Arc::new(disk.factory()))).unwrap()
}

fn values_in(engine: &Engine, topic: &str, partition: u32) -> Vec<Vec<u8>> {
    let info = engine.partition_info(topic, partition).unwrap();
    let mut out = Vec::new();
    let mut offset = info.log_start_offset;
    while offset < info.high_watermark {
        let fetch = engine.read(topic, partition, ReadRequest::new(offset)).unwrap();
        for record in fetch.records() {
            out.push(record.unwrap().value().unwrap().to_vec());
        }
        offset = fetch.next_offset();
    }
    out
}

#[test]
fn a_full_disk_stops_the_partition_and_keeps_what_was_acknowledged() {
    let disk = SimDisk::new(7);
    let engine = sim_engine(&disk);
    engine
        .create_topic(
            "t",
            TopicConfig::default().segment_size_bytes(64 * 1024).record_size_bytes_max(8192),
        )
        .unwrap();
    disk.set_capacity_bytes(Some(disk.used_bytes() + 200 * 1024));
    let mut acknowledged = Vec::new();
    let error = loop {
        let value = format!("record {} {}", acknowledged.len(), "x".repeat(900)).into_bytes();
        match engine.append("t", 0, &[Record::new(&value)], Durability::Durable) {
            Ok(_) => acknowledged.push(value),
            Err(err) => break err,
        }
        assert!(acknowledged.len() < 10_000, "the disk never filled");
    };
    let message = error.to_string();
    assert!(matches!(error, Error::PartitionFailed { .. }), "{error:?}");
    assert!(message.contains("no space left on device"), "{message}");
    // Fail-stop: no more writes, until reopened.
    let again = engine.append("t", 0, &[Record::new(b"more")], Durability::None).unwrap_err();
    assert!(matches!(again, Error::PartitionFailed { .. }), "{again:?}");
    // Reads keep working and see every acknowledged record.
    assert_eq!(values_in(&engine, "t", 0), acknowledged);
    assert_eq!(
        engine.partition_info("t", 0).unwrap().failed.as_deref().map(|f| f.contains("no space")),
        Some(true)
    );
    engine.close().unwrap();

    // With room again, the reopened engine has them all and takes writes.
    disk.set_capacity_bytes(None);
    let engine = sim_engine(&disk);
    let recovered = values_in(&engine, "t", 0);
    assert_eq!(&recovered[..acknowledged.len()], &acknowledged[..]);
    engine.append("t", 0, &[Record::new(b"after")], Durability::Durable).unwrap();
    engine.close().unwrap();
}

#[test]
fn a_failed_fsync_fails_stop_and_nothing_acknowledged_is_lost() {
    let disk = SimDisk::new(11);
    let engine = sim_engine(&disk);
    engine.create_topic("t", TopicConfig::default()).unwrap();
    let mut acknowledged = Vec::new();
    for i in 0..20 {
        let value = format!("before {i}").into_bytes();
        engine.append("t", 0, &[Record::new(&value)], Durability::Durable).unwrap();
        acknowledged.push(value);
    }
    disk.inject_fault(FaultRule::io(OpKind::SyncData).under("/sim/data/topics/t/0"));
    let error = engine.append("t", 0, &[Record::new(b"doomed")], Durability::Durable).unwrap_err();
    assert!(
        matches!(&error, Error::PartitionFailed { cause, .. } if cause.contains("fdatasync")),
        "{error}"
    );
    assert!(matches!(
        engine.append("t", 0, &[Record::new(b"x")], Durability::Written),
        Err(Error::PartitionFailed { .. })
    ));
    // Reads still work.
    let read = values_in(&engine, "t", 0);
    assert_eq!(&read[..20], &acknowledged[..]);
    let _ = engine.close();
    disk.crash();
    disk.clear_faults();
    let engine = sim_engine(&disk);
    assert_eq!(&values_in(&engine, "t", 0)[..20], &acknowledged[..]);
    engine.close().unwrap();
}

#[test]
fn a_failed_write_fails_stop_with_the_path() {
    let disk = SimDisk::new(12);
    let engine = sim_engine(&disk);
    engine.create_topic("t", TopicConfig::default().partitions(2)).unwrap();
    engine.append("t", 0, &[Record::new(b"ok")], Durability::Durable).unwrap();
    disk.inject_fault(FaultRule::io(OpKind::Write).under("/sim/data/topics/t/0"));
    let error = engine.append("t", 0, &[Record::new(b"doomed")], Durability::Written).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("/sim/data/topics/t/0/"), "{message}");
    // The other partition is unaffected.
    engine.append("t", 1, &[Record::new(b"fine")], Durability::Durable).unwrap();
    engine.close().unwrap();
}

#[test]
fn an_unusable_directory_is_a_typed_error() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let below_a_file = file.path().join("data");
    let error = Engine::open(&below_a_file, EngineConfig::default()).unwrap_err();
    assert!(matches!(&error, Error::Io { path, .. } if path.starts_with(file.path())), "{error:?}");
    assert!(error.to_string().contains(&file.path().display().to_string()));

    let disk = SimDisk::new(3);
    disk.inject_fault(FaultRule::io(OpKind::CreateDir));
    let error =
        Engine::open(DIR, EngineConfig::default().storage(Arc::new(disk.factory()))).unwrap_err();
    assert!(matches!(error, Error::Io { .. }), "{error:?}");
}

#[test]
fn bad_batches_and_arguments_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), EngineConfig::default().shards(1)).unwrap();
    engine.create_topic("t", TopicConfig::default()).unwrap();
    for garbage in
        [vec![], vec![0u8; 10], vec![0xffu8; 100], b"not a batch at all, just text".to_vec()]
    {
        let error = engine.append_batch("t", 0, garbage, Durability::None).wait().unwrap_err();
        assert!(matches!(error, Error::InvalidBatch(_)), "{error:?}");
    }
    // A valid batch with its max timestamp lowered below a record's: refused.
    let mut batch = tidelog_core::record::encode_batch(
        &[Record::new(b"v").with_timestamp(5000)],
        0,
        Default::default(),
    );
    let at = tidelog_core::record::layout::MAX_TIMESTAMP_OFFSET;
    batch[at..at + 8].copy_from_slice(&10i64.to_be_bytes());
    let crc = crc32c::crc32c(&batch[tidelog_core::record::layout::ATTRIBUTES_OFFSET..]);
    let crc_at = tidelog_core::record::layout::CRC_OFFSET;
    batch[crc_at..crc_at + 4].copy_from_slice(&crc.to_be_bytes());
    let error = engine.append_batch("t", 0, batch, Durability::None).wait().unwrap_err();
    assert!(error.to_string().contains("max timestamp"), "{error}");
    // A batch followed by stray bytes: refused.
    let mut batch = tidelog_core::record::encode_batch(&[Record::new(b"v")], 0, Default::default());
    batch.extend_from_slice(b"junk");
    assert!(matches!(
        engine.append_batch("t", 0, batch, Durability::None).wait(),
        Err(Error::InvalidBatch(_))
    ));
    // Reads with absurd parameters.
    let too_big = ReadRequest::new(0).max_bytes(usize::MAX);
    assert!(matches!(engine.read("t", 0, too_big), Err(Error::InvalidConfig { .. })));
    // Nothing above was written.
    assert_eq!(engine.partition_info("t", 0).unwrap().high_watermark, 0);
    engine.close().unwrap();
}

/// Found by the simulation (seeds 24, 26): a short write of a closing segment's index tail
/// (legal: a write may transfer less than asked) failed the partition ("short index write"),
/// or its linked fdatasync, cancelled by the short write, did ("Operation canceled"). Short
/// writes are not errors: the rest is written again.
#[test]
fn short_writes_never_fail_a_partition() {
    let disk = SimDisk::with_config(
        21,
        tidelog_io::SimConfig { short_write_probability: 1.0, ..Default::default() },
    );
    let engine = sim_engine(&disk);
    engine
        .create_topic(
            "t",
            TopicConfig::default().segment_size_bytes(16 * 1024).record_size_bytes_max(4096),
        )
        .unwrap();
    let mut acknowledged = Vec::new();
    for i in 0..60 {
        let value = format!("record {i} {}", "y".repeat(900)).into_bytes();
        engine.append("t", 0, &[Record::new(&value)], Durability::Durable).unwrap();
        acknowledged.push(value);
    }
    let info = engine.partition_info("t", 0).unwrap();
    assert_eq!(info.failed, None);
    assert!(info.segments.len() > 3, "segments rolled: {:?}", info.segments.len());
    assert_eq!(values_in(&engine, "t", 0), acknowledged);
    engine.close().unwrap();
    let engine = sim_engine(&disk);
    assert_eq!(values_in(&engine, "t", 0), acknowledged);
    engine.close().unwrap();
}

/// Found by the simulation (seed 6).
///
/// After a failed fdatasync the kernel may mark the dirty pages clean ("fsyncgate"): the
/// data stays readable in the page cache but never reaches the disk, and later fsyncs
/// succeed. An engine reopened *without a reboot* recovers those records from the page
/// cache, "syncs" them (successfully) and reports them durable; a power loss then takes
/// them — and every later record of the segment, since recovery stops at the hole.
/// Recovery now writes the bytes it scanned again before syncing them.
#[test]
fn records_reported_durable_after_reopening_past_a_failed_fsync_survive_power_loss() {
    let disk = SimDisk::new(31);
    let engine = sim_engine(&disk);
    engine.create_topic("t", TopicConfig::default()).unwrap();
    engine.append("t", 0, &[Record::new(b"synced")], Durability::Durable).unwrap();
    engine.append("t", 0, &[Record::new(b"written")], Durability::Written).unwrap();
    disk.inject_fault(FaultRule::io(OpKind::SyncData).under("/sim/data/topics/t/0"));
    let failed = engine.append("t", 0, &[Record::new(b"doomed")], Durability::Durable);
    assert!(matches!(failed, Err(Error::PartitionFailed { .. })), "{failed:?}");
    let _ = engine.close();
    // Reopened without a reboot: recovery keeps what the page cache shows, and syncs it.
    let engine = sim_engine(&disk);
    let durable = engine.partition_info("t", 0).unwrap().durable_offset;
    let after = engine.append("t", 0, &[Record::new(b"after")], Durability::Durable).unwrap();
    assert!(durable >= 2 && after.base_offset >= 2);
    engine.close().unwrap();
    disk.crash();
    let engine = sim_engine(&disk);
    let survived = values_in(&engine, "t", 0).len() as u64;
    assert!(
        survived > after.last_offset,
        "{survived} records survived the power loss; {} were acknowledged durable",
        after.last_offset + 1
    );
    engine.close().unwrap();
}

/// Found by the simulation (seed 58): retention forgot a segment (and moved the log start)
/// before its files were removed; when the removal failed (EIO), the log stayed on disk
/// and came back at the next open — records deleted by retention reappeared, the log start
/// went back. Retention now takes a segment's log aside with one rename first: if that
/// fails the segment stays (retried next time); leftovers are removed on open.
#[test]
fn a_failed_removal_does_not_bring_deleted_segments_back() {
    let disk = SimDisk::new(58);
    let engine = sim_engine(&disk);
    let config = TopicConfig::default()
        .segment_size_bytes(16 * 1024)
        .record_size_bytes_max(4096)
        .retention_bytes(Some(32 * 1024));
    engine.create_topic("t", config).unwrap();
    for i in 0..120 {
        let value = format!("record {i} {}", "z".repeat(900)).into_bytes();
        engine.append("t", 0, &[Record::new(&value)], Durability::Durable).unwrap();
    }
    disk.inject_fault(FaultRule::io(OpKind::Remove).under("/sim/data/topics/t/0").persistent());
    engine.run_maintenance().unwrap();
    let before = engine.partition_info("t", 0).unwrap().log_start_offset;
    engine.close().unwrap();
    disk.clear_faults();
    let engine = sim_engine(&disk);
    let after = engine.partition_info("t", 0).unwrap().log_start_offset;
    assert!(after >= before, "log start went back from {before} to {after} over a restart");
    engine.close().unwrap();
}

/// Found by the simulation (seed 136): closing a rolled segment waited for its writes in
/// flight, but not for the rest of a short write waiting to be resubmitted — so the close's
/// fdatasync could run before the rest was written, the rest was never synced, and the
/// durable offset crossed the segment anyway: records acknowledged `Durable` were lost at a
/// power loss (and the trusted closed segment then read as corrupt).
#[test]
fn records_acknowledged_durable_survive_power_loss_with_short_writes() {
    for seed in 0..20 {
        let disk = SimDisk::with_config(
            seed,
            tidelog_io::SimConfig { short_write_probability: 0.5, ..Default::default() },
        );
        let engine = sim_engine(&disk);
        engine
            .create_topic(
                "t",
                TopicConfig::default().segment_size_bytes(16 * 1024).record_size_bytes_max(4096),
            )
            .unwrap();
        // Many appends in flight at once, so writes of one segment are still being retried
        // when the next segment takes over.
        let values: Vec<Vec<u8>> =
            (0..80).map(|i| format!("record {i} {}", "w".repeat(700)).into_bytes()).collect();
        let pending: Vec<_> = values
            .iter()
            .map(|v| engine.append_async("t", 0, &[Record::new(v)], Durability::Durable))
            .collect();
        let acknowledged: Vec<u64> =
            pending.into_iter().map(|p| p.wait().unwrap().base_offset).collect();
        disk.crash();
        let _ = engine.close();
        let engine = sim_engine(&disk);
        let survived = values_in(&engine, "t", 0);
        for offset in acknowledged {
            assert_eq!(
                survived.get(offset as usize),
                Some(&values[offset as usize]),
                "seed {seed}: record {offset} was acknowledged durable"
            );
        }
        engine.close().unwrap();
    }
}

/// Found by the simulation (seed 197, ENOSPC): a failed write was dropped from the writes in
/// flight, so when a later write (unlinked: no fdatasync waited for) completed, the high
/// watermark moved over the hole the failed one left. Readers were served records after a
/// hole that was never written — records the next open cannot recover, since recovery stops
/// at the hole.
#[test]
fn the_high_watermark_never_passes_a_failed_write() {
    // The simulated disk returns completions in a seeded order; either order must hold.
    for seed in 0..16 {
        let disk = SimDisk::new(seed);
        let mut config = EngineConfig::default()
            .shards(1)
            .manual_shards(true)
            .storage(Arc::new(disk.factory()))
            .clock(Arc::new(tidelog_io::ManualClock::new(1_700_000_000_000)));
        // Small write buffers: the two appends below go out as two writes, unlinked.
        config.write_buffer_bytes = 4096;
        let engine = Engine::open(DIR, config).unwrap();
        engine.create_topic("t", TopicConfig::default().record_size_bytes_max(8192)).unwrap();
        let log = "/sim/data/topics/t/0/00000000000000000000.log";
        disk.inject_fault(FaultRule::io(OpKind::Write).under(log));
        let a = vec![b'a'; 3000];
        let b = vec![b'b'; 3000];
        let first = engine.append_async("t", 0, &[Record::new(&a)], Durability::None);
        let second = engine.append_async("t", 0, &[Record::new(&b)], Durability::None);
        for _ in 0..10 {
            engine.step_all();
        }
        assert_eq!(engine.block_on(first).unwrap().base_offset, 0);
        assert_eq!(engine.block_on(second).unwrap().base_offset, 1);
        let info = engine.partition_info("t", 0).unwrap();
        assert!(info.failed.is_some(), "seed {seed}: the write failed: {info:?}");
        assert_eq!(info.high_watermark, 0, "seed {seed}: offset 0 was never written: {info:?}");
        let read = engine.read("t", 0, ReadRequest::new(1));
        assert!(read.is_err(), "seed {seed}: offset 1 is past the high watermark: {read:?}");
        engine.close().unwrap();
    }
}

/// Found by the simulation (seed 622): a roll that failed after creating the new segment's
/// log (here: EIO creating its time index) left a file whose directory entry was never
/// synced. The next open adopted it as the active segment and synced its data, not the
/// directory — so records appended to it and acknowledged `Durable` vanished with the file
/// at the next power loss. Opening a partition now syncs its directory.
#[test]
fn records_in_a_segment_adopted_by_recovery_survive_power_loss() {
    // Seeds: a power loss keeps a random prefix of a directory's unsynced changes.
    for seed in 0..12 {
        let disk = SimDisk::new(seed);
        let engine = sim_engine(&disk);
        let config =
            TopicConfig::default().segment_size_bytes(16 * 1024).record_size_bytes_max(8192);
        engine.create_topic("t", config).unwrap();
        let value = vec![b'r'; 6000];
        for _ in 0..2 {
            engine.append("t", 0, &[Record::new(&value)], Durability::Durable).unwrap();
        }
        // The next append rolls: its log is created, then creating its time index fails.
        disk.inject_fault(FaultRule::io(OpKind::Open).under("/sim/data/topics/t/0").after(2));
        let failed = engine.append("t", 0, &[Record::new(&value)], Durability::Durable);
        assert!(failed.is_err(), "seed {seed}: the roll failed: {failed:?}");
        let _ = engine.close();
        disk.clear_faults();
        let engine = sim_engine(&disk);
        let acknowledged =
            engine.append("t", 0, &[Record::new(b"after")], Durability::Durable).unwrap();
        engine.close().unwrap();
        disk.crash();
        let engine = sim_engine(&disk);
        let values = values_in(&engine, "t", 0);
        assert_eq!(
            values.get(acknowledged.base_offset as usize).map(Vec::as_slice),
            Some(&b"after"[..]),
            "seed {seed}: a record acknowledged durable was lost ({} records left)",
            values.len()
        );
        engine.close().unwrap();
    }
}

/// Found by the simulation (seed 705, direct I/O with short writes): writes to a direct
/// file share the partial block between them, so they must never be in flight together —
/// but that was enforced only for the active segment. After a roll, the rolled segment's
/// last buffers went out while an earlier write of it was in flight; that one came back
/// short, its rest was written after them, and its zero padding overwrote the start of a
/// batch already acknowledged. Reads then found a corrupt batch; a power loss kept it.
#[test]
fn direct_io_writes_of_a_rolled_segment_never_overlap() {
    for seed in 0..20 {
        let disk = SimDisk::with_config(
            seed,
            tidelog_io::SimConfig { short_write_probability: 0.5, ..Default::default() },
        );
        let config = EngineConfig::default()
            .shards(1)
            .storage(Arc::new(disk.factory()))
            .direct_io(true)
            .segment_preparation(tidelog_core::SegmentPreparation::Fallocate);
        let engine = Engine::open(DIR, config.clone()).unwrap();
        engine
            .create_topic(
                "t",
                TopicConfig::default().segment_size_bytes(32 * 1024).record_size_bytes_max(16384),
            )
            .unwrap();
        let values: Vec<Vec<u8>> = (0..60)
            .map(|i| format!("record {i} {}", "d".repeat(1000 + i * 97 % 9000)).into_bytes())
            .collect();
        let pending: Vec<_> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let durability = if i % 3 == 0 { Durability::Durable } else { Durability::None };
                engine.append_async("t", 0, &[Record::new(v)], durability)
            })
            .collect();
        for ack in pending {
            ack.wait().unwrap();
        }
        engine.close().unwrap();
        let engine = Engine::open(DIR, config).unwrap();
        assert_eq!(values_in(&engine, "t", 0), values, "seed {seed}");
        engine.close().unwrap();
    }
}

/// Found by the simulation (seed 1159): a topic deletion that failed after its rename into
/// the trash (the directory sync failed) was finished by the next open, which removed the
/// trash — while the rename was still not durable. A power loss then undid the rename but
/// kept the removals: the topic came back without its records. A failed deletion may take
/// effect or not, but a topic is never half there: the open now makes the rename durable
/// before it removes anything.
#[test]
fn a_topic_whose_deletion_failed_comes_back_whole_or_not_at_all() {
    for seed in 0..16 {
        let disk = SimDisk::new(seed);
        let engine = sim_engine(&disk);
        engine.create_topic("t", TopicConfig::default()).unwrap();
        let values: Vec<Vec<u8>> = (0..10).map(|i| format!("record {i}").into_bytes()).collect();
        for value in &values {
            engine.append("t", 0, &[Record::new(value)], Durability::Durable).unwrap();
        }
        disk.inject_fault(FaultRule::io(OpKind::SyncDir).under("/sim/data/topics"));
        assert!(engine.delete_topic("t").is_err(), "seed {seed}: the deletion failed");
        engine.close().unwrap();
        // The next open finishes the deletion; then the power goes.
        sim_engine(&disk).close().unwrap();
        disk.crash();
        let engine = sim_engine(&disk);
        if engine.topics().contains(&"t".to_string()) {
            assert_eq!(values_in(&engine, "t", 0), values, "seed {seed}: the topic came back");
        }
        engine.close().unwrap();
    }
}

/// Found by the simulation (seed 2194): a segment's close wrote and synced its offset index
/// and its time index (whose last entry, the close entry, makes the next open trust the
/// segment without a scan) side by side. When the offset index's fdatasync failed (or the
/// power went before it completed) the close entry could be durable while the offset index
/// was lost; the open trusted the segment anyway and rebuilt the index from the log when it
/// was first read. A damaged batch later stopped that rebuild, so every read of the segment
/// started at its first byte and failed on the damage: intact records far past it were
/// unreadable for good. The close entry is now written only once the offset index is durable.
#[test]
fn a_closed_segment_trusted_by_the_open_has_its_offset_index() {
    let disk = SimDisk::new(2194);
    let engine = sim_engine(&disk);
    engine
        .create_topic(
            "t",
            TopicConfig::default().segment_size_bytes(16 * 1024).record_size_bytes_max(4096),
        )
        .unwrap();
    let dir = "/sim/data/topics/t/0";
    // The first fdatasync of segment 0's offset index is its close's.
    disk.inject_fault(
        FaultRule::io(OpKind::SyncData).under(format!("{dir}/00000000000000000000.index")),
    );
    let values: Vec<Vec<u8>> =
        (0..40).map(|i| format!("record {i} {}", "v".repeat(1500)).into_bytes()).collect();
    let mut acknowledged = 0;
    for value in &values {
        match engine.append("t", 0, &[Record::new(value)], Durability::Durable) {
            Ok(_) => acknowledged += 1,
            Err(_) => break,
        }
    }
    assert!(acknowledged >= 9, "segment 0 filled before the close failed ({acknowledged})");
    let _ = engine.close();
    disk.crash();
    disk.clear_faults();
    // The open trusts segment 0, or repairs it (writing its indexes and close entry).
    let engine = sim_engine(&disk);
    assert_eq!(&values_in(&engine, "t", 0)[..acknowledged], &values[..acknowledged]);
    engine.close().unwrap();
    // Bit rot in the first batch's base offset (outside the CRC) of the closed segment.
    disk.flip_bit(std::path::Path::new(&format!("{dir}/00000000000000000000.log")), 5, 3).unwrap();
    let engine = sim_engine(&disk);
    let damaged = engine.read("t", 0, ReadRequest::new(0));
    assert!(matches!(damaged, Err(Error::Corrupt { position: 0, .. })), "{damaged:?}");
    // Records more than an index interval past the damage read back intact.
    let offset = 8u64;
    let fetch = engine.read("t", 0, ReadRequest::new(offset)).unwrap();
    let first = fetch.records().next().unwrap().unwrap();
    assert_eq!(first.offset() as u64, offset);
    assert_eq!(first.value().unwrap(), &values[offset as usize][..]);
    engine.close().unwrap();
}

/// Found by the simulation (seed 7890): an append that rolled the segment started the old
/// segment's close, whose first step (cutting a direct file's block padding) failed and
/// failed the partition — but the roll itself returned fine, so the append went on into
/// the failed partition: it took offsets, and its reply was queued after the failure had
/// answered every waiter. A `Durable` append was never answered (a clean close then dropped
/// it: `Closed`); a `None` one was acknowledged by a failed partition. The roll now reports
/// the failure, and the append gets it.
#[test]
fn an_append_whose_roll_fails_the_partition_gets_the_failure() {
    for durability in [Durability::Durable, Durability::None] {
        let disk = SimDisk::new(7890);
        let config =
            EngineConfig::default().shards(1).storage(Arc::new(disk.factory())).direct_io(true);
        let engine = Engine::open(DIR, config).unwrap();
        engine
            .create_topic(
                "t",
                TopicConfig::default().segment_size_bytes(16 * 1024).record_size_bytes_max(8192),
            )
            .unwrap();
        let value = vec![b'v'; 5000];
        for _ in 0..3 {
            engine.append("t", 0, &[Record::new(&value)], Durability::Durable).unwrap();
        }
        // The next append rolls; closing segment 0 cuts its file to its data, and fails.
        disk.inject_fault(
            FaultRule::io(OpKind::SetLen).under("/sim/data/topics/t/0/00000000000000000000.log"),
        );
        let pending = engine.append_async("t", 0, &[Record::new(&value)], durability);
        match pending.wait_timeout(std::time::Duration::from_secs(10)) {
            Ok(Err(Error::PartitionFailed { cause, .. })) => {
                assert!(cause.contains("truncate"), "{durability:?}: {cause}")
            }
            Ok(other) => panic!("{durability:?}: the append into a failed partition: {other:?}"),
            Err(_) => panic!("{durability:?}: the append was never answered"),
        }
        let info = engine.partition_info("t", 0).unwrap();
        assert!(info.failed.is_some());
        assert_eq!(info.next_offset, 3, "{durability:?}: the failed partition took offsets");
        let _ = engine.close();
    }
}

/// Found by the simulation (seeds 17463, 25279): a topic whose creation failed half-way, with
/// its files left behind, shared its id with the next topic created in the same millisecond;
/// after a reopen their partitions collided — deleting one closed the other, and records
/// acknowledged to it were lost. Topic ids are now never reused by an engine.
#[test]
fn a_failed_creation_does_not_lend_its_id_to_the_next_topic() {
    let disk = SimDisk::new(17463);
    let open = || {
        let config = EngineConfig::default()
            .shards(1)
            .storage(Arc::new(disk.factory()))
            .clock(Arc::new(tidelog_io::ManualClock::new(1_700_000_000_000)));
        Engine::open(DIR, config).unwrap()
    };
    let engine = open();
    // The partition directory cannot be made, nor the half topic taken away afterwards.
    disk.inject_fault(FaultRule::io(OpKind::CreateDir).under("/sim/data/topics/a/0").persistent());
    disk.inject_fault(
        FaultRule::io(OpKind::Rename).under("/sim/data/topics/a").after(1).persistent(),
    );
    disk.inject_fault(FaultRule::io(OpKind::Remove).under("/sim/data/topics/a").persistent());
    assert!(engine.create_topic("a", TopicConfig::default()).is_err());
    disk.clear_faults();
    engine.create_topic("b", TopicConfig::default()).unwrap();
    engine.append("b", 0, &[Record::new(b"kept")], Durability::Durable).unwrap();
    engine.close().unwrap();
    let engine = open();
    // The half topic is back (its cleanup failed): the case this test is about.
    assert!(engine.topics().contains(&"a".to_string()), "{:?}", engine.topics());
    engine.delete_topic("a").unwrap();
    assert_eq!(values_in(&engine, "b", 0), vec![b"kept".to_vec()]);
    engine.append("b", 0, &[Record::new(b"more")], Durability::Durable).unwrap();
    engine.close().unwrap();
    let engine = open();
    assert_eq!(values_in(&engine, "b", 0), vec![b"kept".to_vec(), b"more".to_vec()]);
    engine.close().unwrap();
}
