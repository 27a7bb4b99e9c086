//! Faults on the real backends (portable and io_uring, on real files), where `faults.rs`
//! uses the simulated disk: a tmpfs that really fills up mid-segment, `EIO` reported for a
//! write or an fdatasync that the kernel really ran, and a slow device. Each must fail-stop
//! with a clear error (or push back), keep reads working, and lose nothing acknowledged.
//!
//! io_uring is skipped, with a note, where `tidelog_io::uring::probe` says it is unusable; the
//! tmpfs test needs root (it mounts one) and says "skipped: cannot mount tmpfs" otherwise.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::{EIO, Faults, FaultyFactory, Target};
use tidelog_core::{
    Durability, Engine, EngineConfig, Error, IoChoice, ReadRequest, Record, TopicConfig, limits,
};

/// The tests of this file run one at a time: the heap-buffer counters are process-wide, and
/// the machine has two cores.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The real backends usable here: portable always, io_uring if the probe allows.
fn backends() -> Vec<IoChoice> {
    let mut choices = vec![IoChoice::Portable];
    match tidelog_io::uring::probe() {
        Ok(_) => choices.push(IoChoice::Uring),
        Err(reason) => println!("skipped io_uring: {reason}"),
    }
    choices
}

fn config(choice: IoChoice) -> EngineConfig {
    // No pinning: the shard shares two cores with everything else.
    EngineConfig::default().shards(1).io(choice).pin_shards(false)
}

/// `config(choice)` with its real storage wrapped by `faults`.
fn faulty_config(choice: IoChoice, faults: &Arc<Faults>) -> EngineConfig {
    let real = config(choice).storage_factory().unwrap();
    config(choice).storage(FaultyFactory::new(real, faults.clone()))
}

/// Every record of a partition, from its log start to its high watermark, checking that the
/// offsets are dense.
fn values_in(engine: &Engine, topic: &str, partition: u32) -> Vec<Vec<u8>> {
    let info = engine.partition_info(topic, partition).unwrap();
    let mut out = Vec::new();
    let mut offset = info.log_start_offset;
    while offset < info.high_watermark {
        let fetch = engine.read(topic, partition, ReadRequest::new(offset)).unwrap();
        for record in fetch.records() {
            let record = record.unwrap();
            assert_eq!(record.offset() as u64, offset, "{topic}/{partition}: offsets dense");
            out.push(record.value().unwrap().to_vec());
            offset += 1;
        }
        assert_eq!(fetch.next_offset(), offset);
    }
    out
}

/// `recovered` holds `acknowledged` in order at its start, and after it at most the records
/// of `maybe` (appends that failed after their write reached the file).
fn assert_kept(recovered: &[Vec<u8>], acknowledged: &[Vec<u8>], maybe: &[&[u8]], what: &str) {
    assert!(
        recovered.len() >= acknowledged.len(),
        "{what}: {} records recovered, {} acknowledged",
        recovered.len(),
        acknowledged.len()
    );
    for (i, (got, want)) in recovered.iter().zip(acknowledged).enumerate() {
        assert!(got == want, "{what}: acknowledged record {i} changed");
    }
    for extra in &recovered[acknowledged.len()..] {
        assert!(maybe.contains(&extra.as_slice()), "{what}: a record never appended came back");
    }
}

fn value(tag: &str, i: usize, len: usize) -> Vec<u8> {
    let mut value = format!("{tag} {i} ").into_bytes();
    value.resize(len, b'a' + (i % 26) as u8);
    value
}

// ---------------------------------------------------------------------------------------
// A full disk: a tmpfs of 4 MiB
// ---------------------------------------------------------------------------------------

/// A tmpfs mounted over a directory, unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let root = status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0");
        if !root {
            return None;
        }
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tidelog-enospc"])
            .arg(path)
            .status()
            .is_ok_and(|status| status.success());
        mounted.then(|| Tmpfs { path: path.to_owned() })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted =
            Command::new("umount").arg(&self.path).status().is_ok_and(|status| status.success());
        if !unmounted {
            // Something still holds a file open (a failed test's engine): detach it anyway.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

#[test]
fn a_full_tmpfs_fails_stop_mid_segment_and_keeps_what_was_acknowledged() {
    let _serial = serial();
    for choice in backends() {
        let dir = tempfile::tempdir().unwrap();
        let Some(tmpfs) = Tmpfs::mount(dir.path(), "4m") else {
            println!("skipped: cannot mount tmpfs");
            return;
        };
        full_tmpfs(choice, &tmpfs.path);
    }
}

fn full_tmpfs(choice: IoChoice, mount: &Path) {
    let what = choice.name();
    // Space to free later: 1 MiB taken before the engine starts.
    let filler = mount.join("filler");
    std::fs::write(&filler, vec![7u8; 1024 * 1024]).unwrap();
    let data = mount.join("data");
    // tmpfs refuses O_DIRECT: direct I/O stays off (the default).
    let engine = Engine::open(&data, config(choice)).unwrap();
    let topic = TopicConfig::default()
        .partitions(2)
        .segment_size_bytes(1024 * 1024)
        .record_size_bytes_max(8192);
    engine.create_topic("t", topic).unwrap();
    engine.append("t", 1, &[Record::new(b"bystander")], Durability::Durable).unwrap();

    let mut acknowledged = Vec::new();
    let error = loop {
        let value = value("full", acknowledged.len(), 2000);
        match engine.append("t", 0, &[Record::new(&value)], Durability::Durable) {
            Ok(result) => {
                assert_eq!(result.base_offset, acknowledged.len() as u64, "{what}");
                acknowledged.push(value);
            }
            Err(err) => break err,
        }
        assert!(acknowledged.len() < 5_000, "{what}: a 4 MiB tmpfs never filled");
    };
    let message = error.to_string();
    println!("{what}: {} records acknowledged, then: {message}", acknowledged.len());
    assert!(matches!(error, Error::PartitionFailed { .. }), "{what}: {error:?}");
    assert!(message.contains("no space left on device"), "{what}: {message}");
    assert!(message.contains(&data.join("topics/t/0").display().to_string()), "{what}: {message}");
    let info = engine.partition_info("t", 0).unwrap();
    assert!(info.segments.len() >= 2, "{what}: the disk filled in a later segment");
    let last = info.segments.last().unwrap();
    assert!(
        last.size_bytes > 0 && last.size_bytes < 1024 * 1024,
        "{what}: the disk filled mid-segment: {last:?}"
    );
    assert!(info.failed.as_deref().is_some_and(|f| f.contains("no space")), "{what}: {info:?}");
    assert_eq!(info.high_watermark, acknowledged.len() as u64, "{what}");
    // Fail-stop: nothing more is taken, whatever the durability.
    for durability in [Durability::None, Durability::Written, Durability::Durable] {
        let again = engine.append("t", 0, &[Record::new(b"more")], durability).unwrap_err();
        assert!(matches!(again, Error::PartitionFailed { .. }), "{what}: {again:?}");
    }
    // Reads keep working, and see every acknowledged record intact.
    assert!(values_in(&engine, "t", 0) == acknowledged, "{what}: reads after the failure");
    assert_eq!(values_in(&engine, "t", 1), vec![b"bystander".to_vec()], "{what}");
    engine.close().unwrap();

    // Room again: the reopened engine has every acknowledged record and takes appends.
    std::fs::remove_file(&filler).unwrap();
    let engine = Engine::open(&data, config(choice)).unwrap();
    let recovered = values_in(&engine, "t", 0);
    let doomed = value("full", acknowledged.len(), 2000);
    assert_kept(&recovered, &acknowledged, &[&doomed], what);
    let after = engine.append("t", 0, &[Record::new(b"after")], Durability::Durable).unwrap();
    assert_eq!(after.base_offset, recovered.len() as u64, "{what}");
    assert_eq!(values_in(&engine, "t", 0).last().map(Vec::as_slice), Some(&b"after"[..]));
    assert_eq!(engine.partition_info("t", 0).unwrap().failed, None, "{what}");
    engine.close().unwrap();
}

// ---------------------------------------------------------------------------------------
// EIO on write and on fdatasync
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Failing {
    Write,
    Sync,
}

#[test]
fn eio_on_a_log_write_fails_stop_naming_the_file() {
    let _serial = serial();
    for choice in backends() {
        eio(choice, Failing::Write);
    }
}

#[test]
fn eio_on_a_log_fdatasync_fails_stop_naming_the_file() {
    let _serial = serial();
    for choice in backends() {
        eio(choice, Failing::Sync);
    }
}

fn eio(choice: IoChoice, failing: Failing) {
    let what = format!("{} {failing:?}", choice.name());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let faults = Faults::new();
    let engine = Engine::open(&data, faulty_config(choice, &faults)).unwrap();
    engine.create_topic("t", TopicConfig::default().partitions(2)).unwrap();
    let mut acknowledged = [Vec::new(), Vec::new()];
    for i in 0..40 {
        for (partition, acked) in acknowledged.iter_mut().enumerate() {
            let value = value(&format!("p{partition}"), i, 300);
            engine
                .append("t", partition as u32, &[Record::new(&value)], Durability::Durable)
                .unwrap();
            acked.push(value);
        }
    }

    let victim = data.join("topics/t/0");
    assert!(victim.is_dir(), "{what}: partition directory {victim:?}");
    let target = Target::new(&victim, ".log");
    match failing {
        Failing::Write => faults.fail_next_write(target),
        Failing::Sync => faults.fail_next_sync(target),
    }
    let doomed = b"doomed".to_vec();
    let error = engine.append("t", 0, &[Record::new(&doomed)], Durability::Durable).unwrap_err();
    assert!(!faults.armed(), "{what}: the fault fired");
    let injected = faults.injected();
    assert_eq!(injected.len(), 1, "{what}: {injected:?}");
    let message = error.to_string();
    println!("{what}: {message}");
    assert!(matches!(error, Error::PartitionFailed { partition: 0, .. }), "{what}: {error:?}");
    // The cause names the operation, the file and the device's error.
    let op = match failing {
        Failing::Write => "write",
        Failing::Sync => "fdatasync",
    };
    assert_eq!(injected[0].op, op);
    assert!(message.contains(&injected[0].path.display().to_string()), "{what}: {message}");
    assert!(message.contains(op), "{what}: {message}");
    let eio = std::io::Error::from_raw_os_error(EIO).to_string();
    assert!(message.contains(&eio), "{what}: {message} lacks {eio:?}");

    // Fail-stop: the partition takes nothing more.
    for durability in [Durability::None, Durability::Written, Durability::Durable] {
        let again = engine.append("t", 0, &[Record::new(b"more")], durability).unwrap_err();
        assert!(matches!(again, Error::PartitionFailed { .. }), "{what}: {again:?}");
    }
    let info = engine.partition_info("t", 0).unwrap();
    assert!(info.failed.as_deref().is_some_and(|f| f.contains(&eio)), "{what}: {info:?}");
    assert_eq!(info.durable_offset, acknowledged[0].len() as u64, "{what}: {info:?}");
    // Reads keep working: every acknowledged record. A failed write's record is not visible;
    // after a failed fdatasync the record was written, so it is below the high watermark (as
    // any `Written` record is) though its `Durable` append failed.
    let read = values_in(&engine, "t", 0);
    match failing {
        Failing::Write => assert!(read == acknowledged[0], "{what}: reads after the failure"),
        Failing::Sync => {
            assert_kept(&read, &acknowledged[0], &[&doomed], &what);
            assert_eq!(info.high_watermark, read.len() as u64, "{what}");
        }
    }
    // The other partition is unaffected.
    let fine = value("p1", 40, 300);
    engine.append("t", 1, &[Record::new(&fine)], Durability::Durable).unwrap();
    acknowledged[1].push(fine);
    assert!(values_in(&engine, "t", 1) == acknowledged[1], "{what}: the other partition");
    assert_eq!(engine.partition_info("t", 1).unwrap().failed, None, "{what}");
    engine.close().unwrap();

    // Reopened (as an operator would, without a reboot): everything acknowledged is there.
    let engine = Engine::open(&data, faulty_config(choice, &faults)).unwrap();
    assert_kept(&values_in(&engine, "t", 0), &acknowledged[0], &[&doomed], &what);
    assert!(values_in(&engine, "t", 1) == acknowledged[1], "{what}: the other partition");
    let next = engine.partition_info("t", 0).unwrap().next_offset;
    let after = engine.append("t", 0, &[Record::new(b"after")], Durability::Durable).unwrap();
    assert_eq!(after.base_offset, next, "{what}");
    engine.close().unwrap();
    assert_eq!(faults.injected().len(), 1, "{what}: one fault only");
}

// ---------------------------------------------------------------------------------------
// A slow disk
// ---------------------------------------------------------------------------------------

const SLOW_DELAY: Duration = Duration::from_millis(20);
const SLOW_QUEUE_DEPTH: usize = 32;
const SLOW_PRODUCERS: u32 = 4;
const SLOW_RECORDS: usize = 2_500;
const SLOW_RECORD_BYTES: usize = 1_000;
const SLOW_WRITE_BUFFER: usize = 16 * 1024;
const SLOW_TAIL_CACHE: usize = 256 * 1024;

#[test]
fn a_slow_disk_pushes_back_with_bounded_memory_and_loses_nothing() {
    let _serial = serial();
    for choice in backends() {
        slow_disk(choice);
    }
}

fn slow_disk(choice: IoChoice) {
    let what = choice.name();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let faults = Faults::new();
    let sized = |config: EngineConfig| EngineConfig {
        write_buffer_bytes: SLOW_WRITE_BUFFER,
        buffer_pool_slots: 4,
        ..config.tail_cache_bytes_per_shard(SLOW_TAIL_CACHE)
    };
    let engine = Engine::open(&data, sized(faulty_config(choice, &faults))).unwrap();
    engine.create_topic("t", TopicConfig::default().partitions(SLOW_PRODUCERS)).unwrap();
    faults.slow(SLOW_DELAY, SLOW_QUEUE_DEPTH);

    // The device really is slow: a durable append waits for a delayed write and sync.
    let started = Instant::now();
    engine.append("t", 0, &[Record::new(b"first")], Durability::Durable).unwrap();
    assert!(started.elapsed() >= SLOW_DELAY, "{what}: the slow disk is not slow");

    // Bound on heap write buffers, from the engine's limits: what the device may hold in
    // flight, each partition's buffer and sealed buffers (backpressure starts there), the
    // shard's spares, and the tail cache.
    let bound = SLOW_QUEUE_DEPTH * SLOW_WRITE_BUFFER
        + SLOW_PRODUCERS as usize * (limits::WRITE_BUFFERS_SEALED_MAX + 2) * SLOW_WRITE_BUFFER
        + 2 * limits::WRITE_BUFFERS_SPARE_PER_CLASS_MAX * SLOW_WRITE_BUFFER
        + SLOW_TAIL_CACHE;
    let volume = SLOW_PRODUCERS as usize * SLOW_RECORDS * SLOW_RECORD_BYTES;
    assert!(volume >= 4 * bound, "the load ({volume} B) must dwarf the bound ({bound} B)");
    tidelog_io::buffer::reset_heap_bytes_peak();
    let before = tidelog_io::buffer::heap_bytes().live;

    let started = Instant::now();
    let producers: Vec<_> = (0..SLOW_PRODUCERS)
        .map(|partition| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                // Every append in flight at once, none waited for until all are made: only
                // the engine's backpressure holds the producer back.
                let pending: Vec<_> = (0..SLOW_RECORDS)
                    .map(|i| {
                        let durability =
                            if i % 2 == 0 { Durability::Written } else { Durability::Durable };
                        let value = value(&format!("p{partition}"), i, SLOW_RECORD_BYTES);
                        engine.append_async("t", partition, &[Record::new(&value)], durability)
                    })
                    .collect();
                pending
                    .into_iter()
                    .map(|ack| ack.wait().map(|result| result.base_offset))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let acks: Vec<_> = producers.into_iter().map(|p| p.join().unwrap()).collect();
    let elapsed = started.elapsed();
    let peak = tidelog_io::buffer::heap_bytes().peak;
    faults.slow(Duration::ZERO, 0);
    println!(
        "{what}: {volume} B through a {SLOW_DELAY:?} disk in {elapsed:?}; heap write buffers \
         peaked at {peak} B ({before} B before; bound {bound} B)"
    );
    assert!(
        peak <= before + bound,
        "{what}: heap write buffers reached {peak} B, over {before} B + the bound {bound} B"
    );
    for (partition, acks) in acks.iter().enumerate() {
        let first = u64::from(partition == 0);
        for (i, ack) in acks.iter().enumerate() {
            let offset =
                ack.as_ref().unwrap_or_else(|err| panic!("{what}: p{partition}/{i}: {err}"));
            assert_eq!(*offset, first + i as u64, "{what}: p{partition} appends in order");
        }
    }
    engine.close().unwrap();

    let engine = Engine::open(&data, config(choice)).unwrap();
    for partition in 0..SLOW_PRODUCERS {
        let mut expected: Vec<Vec<u8>> = (0..SLOW_RECORDS)
            .map(|i| value(&format!("p{partition}"), i, SLOW_RECORD_BYTES))
            .collect();
        if partition == 0 {
            expected.insert(0, b"first".to_vec());
        }
        assert!(
            values_in(&engine, "t", partition) == expected,
            "{what}: p{partition} after reopen"
        );
    }
    engine.close().unwrap();
}
