//! Resource limits (STYLE §2): an engine with many partitions on real files (portable
//! backend, a temporary directory), watching the process's resident memory (`VmRSS` in
//! `/proc/self/status`) and open descriptors (`/proc/self/fd`) — they must stay bounded, or
//! the engine must refuse with an error that names the limit hit, before opening anything.
//! And records at the size limit and empty records.
//!
//! The measuring tests run in a child process (this binary again, with `RESOURCE_CHILD` set
//! and only that test selected): other tests of the binary run on other threads and would
//! move the figures, and lowering `RLIMIT_NOFILE` is for the whole process.
//!
//! `TIDELOG_RESOURCE_PARTITIONS=N` sets the partitions (default 1,000; the figures in
//! docs/TESTING.md are for 10,000 with `--nocapture`).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use tidelog_core::{
    Durability, Engine, EngineConfig, Error, IoChoice, ReadRequest, Record, TopicConfig, limits,
};
use tidelog_io::OpenFilesLimit;
use tidelog_io::sim::{FaultRule, OpKind, SimDisk};

/// Set in the child process that runs a measuring test.
const CHILD: &str = "RESOURCE_CHILD";

/// Most resident memory one partition may add, on average, by being created and taking one
/// 100-byte append (at 1,000 partitions). What it takes: ~1 KiB open (segment and index
/// state), a few hundred bytes after the append (the batch copied into the tail cache, index
/// entries) — and its first write buffer, 16 KiB (`limits::WRITE_BUFFER_BYTES_MIN`), which
/// lives only until the write completes but is alive for every partition of a shard round at
/// once (a round takes up to 1,024 appends), and the allocator keeps those pages after they
/// are freed. That makes 20–30 KiB per partition at 1,000; 64 KiB leaves room for allocator
/// variance and fails at once if a partition kept a buffer, or buffers went back to
/// `write_buffer_bytes` (1 MiB).
const RSS_GROWTH_PER_PARTITION_KIB_MAX: u64 = 64;

/// Most write-buffer memory allocated at once, per partition, while every partition has one
/// small append in flight: its first buffer, `WRITE_BUFFER_BYTES_MIN` (16 KiB), with room for
/// the reads and index buffers that come and go meanwhile. Resident memory alone would not
/// show a 1 MiB buffer whose untouched pages were never faulted in; this counts allocations.
const BUFFER_PEAK_PER_PARTITION_BYTES_MAX: usize = 2 * limits::WRITE_BUFFER_BYTES_MIN;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn open_fds() -> u64 {
    tidelog_io::open_files::in_use().unwrap()
}

fn open(dir: &Path) -> Result<Engine, Error> {
    let config = EngineConfig::default().shards(2).io(IoChoice::Portable).pin_shards(false);
    Engine::open(dir, config)
}

/// Run test `name` of this binary in a child process and check it passed; its output is
/// printed here (shown with `--nocapture` or when the test fails). In the child, returns
/// false: the caller runs the test's body.
fn run_in_child(name: &str) -> bool {
    if std::env::var_os(CHILD).is_some() {
        return false;
    }
    let output = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{name} failed in its child process:\n{stdout}");
    assert!(stdout.contains("1 passed"), "{name} did not run in its child process:\n{stdout}");
    true
}

#[test]
fn many_partitions_keep_memory_and_descriptors_bounded_or_fail_clearly() {
    if run_in_child("many_partitions_keep_memory_and_descriptors_bounded_or_fail_clearly") {
        return;
    }
    let partitions: u32 = std::env::var("TIDELOG_RESOURCE_PARTITIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000);
    let per_topic = partitions.min(1_000);
    let dir = tempfile::tempdir().unwrap();
    let (rss_before, fds_before) = (rss_kib(), open_fds());
    let engine = open(dir.path()).unwrap();
    let limit = tidelog_io::open_files::limit().unwrap();
    let fds_open = open_fds();
    eprintln!(
        "open: {} KiB RSS (+{}), {fds_open} fds (+{}), RLIMIT_NOFILE soft {} hard {}",
        rss_kib(),
        rss_kib() - rss_before,
        fds_open - fds_before,
        limit.soft,
        limit.hard
    );
    let mut created = 0;
    let mut refused = None;
    while created < partitions {
        let name = format!("t{}", created / per_topic);
        match engine.create_topic(&name, TopicConfig::default().partitions(per_topic)) {
            Ok(()) => created += per_topic,
            Err(err) => {
                refused = Some(err);
                break;
            }
        }
        // Exactly the active log and its two indexes per partition.
        let per_partition = (open_fds() - fds_open) as f64 / f64::from(created);
        eprintln!(
            "{created} partitions: {} KiB RSS, {} fds ({per_partition:.2} per partition)",
            rss_kib(),
            open_fds()
        );
        assert_eq!(open_fds() - fds_open, 3 * u64::from(created));
    }
    if let Some(err) = &refused {
        // The only acceptable refusal names the limit, before anything was opened.
        eprintln!("refused after {created} partitions: {err}");
        assert!(
            matches!(err, Error::ResourceLimit { what, needed, limit: l, .. }
                if what.contains("RLIMIT_NOFILE") && *l == limit.soft && *needed > *l),
            "refused without naming the limit: {err:?}"
        );
        assert!(err.to_string().contains(&limit.soft.to_string()), "{err}");
        assert_eq!(open_fds() - fds_open, 3 * u64::from(created), "the refusal opened files");
        assert_eq!(engine.topics().len() as u32, created / per_topic, "a topic was left");
        // Refused only when the next topic really would not have fitted.
        let headroom = limits::FILE_DESCRIPTORS_HEADROOM;
        assert!(fds_open + 3 * u64::from(created + per_topic) + headroom > limit.soft);
    }
    // One small append to every partition created: write buffers and tail caches appear.
    let rss_created = rss_kib();
    tidelog_io::buffer::reset_heap_bytes_peak();
    let buffers_before = tidelog_io::buffer::heap_bytes().live;
    let topics = engine.topics();
    let mut pending = Vec::new();
    for topic in &topics {
        for partition in 0..engine.topic_config(topic).unwrap().partitions {
            pending.push(engine.append_async(
                topic,
                partition,
                &[Record::new(&[7u8; 100])],
                Durability::Written,
            ));
        }
    }
    let appended = pending.into_iter().filter_map(|p| p.wait().ok()).count() as u64;
    assert_eq!(appended, u64::from(created));
    let rss_after = rss_kib();
    let growth = rss_after.saturating_sub(rss_before) / appended.max(1);
    eprintln!(
        "after one 100-byte append to {appended} partitions: {rss_after} KiB RSS ({growth} KiB per \
         partition since before opening, {} KiB per partition for the appends), {} fds",
        rss_after.saturating_sub(rss_created) / appended.max(1),
        open_fds()
    );
    assert!(
        growth <= RSS_GROWTH_PER_PARTITION_KIB_MAX,
        "{growth} KiB per partition (at most {RSS_GROWTH_PER_PARTITION_KIB_MAX})"
    );
    // Buffers: small while in flight, and after the writes only what the shards keep — their
    // spares and their tail caches — however many partitions there are.
    let buffers = tidelog_io::buffer::heap_bytes();
    let peak_per_partition = (buffers.peak - buffers_before) / appended as usize;
    let kept = buffers.live.saturating_sub(buffers_before);
    eprintln!(
        "write buffers: at most {} KiB at once ({peak_per_partition} bytes per partition), {} KiB \
         kept after",
        (buffers.peak - buffers_before) / 1024,
        kept / 1024
    );
    assert!(
        peak_per_partition <= BUFFER_PEAK_PER_PARTITION_BYTES_MAX,
        "{peak_per_partition} bytes of buffers per partition in flight"
    );
    let shard_max = 2 * limits::WRITE_BUFFERS_SPARE_PER_CLASS_MAX * limits::WRITE_BUFFER_BYTES
        + limits::TAIL_CACHE_BYTES_PER_SHARD_DEFAULT;
    assert!(kept <= 2 * shard_max, "{kept} bytes of buffers kept after the writes");
    engine.close().unwrap();
    drop(engine);
    let leaked = open_fds().saturating_sub(fds_before);
    eprintln!(
        "closed: {} KiB RSS, {} fds ({leaked} more than before opening)",
        rss_kib(),
        open_fds()
    );
    assert_eq!(leaked, 0, "descriptors left open after close");
}

/// With `RLIMIT_NOFILE` lowered (in a child process: it cannot be raised again), a topic whose
/// partitions would not fit is refused before anything is created, with an error naming the
/// limit, what was needed and the limit; so is opening a directory whose topics do not fit.
#[test]
fn partitions_beyond_rlimit_nofile_are_refused_before_anything_is_opened() {
    if run_in_child("partitions_beyond_rlimit_nofile_are_refused_before_anything_is_opened") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let low = OpenFilesLimit { soft: 1024, hard: 1024 };
    tidelog_io::open_files::set_limit(low).unwrap();
    let engine = open(dir.path()).unwrap();
    assert_eq!(tidelog_io::open_files::limit().unwrap(), low);
    // 100 partitions need 300 descriptors: they fit.
    engine.create_topic("small", TopicConfig::default().partitions(100)).unwrap();
    engine.append("small", 99, &[Record::new(b"kept")], Durability::Durable).unwrap();
    let fds = open_fds();
    // 300 more need 900: they do not.
    let err = engine.create_topic("big", TopicConfig::default().partitions(300)).unwrap_err();
    eprintln!("refused: {err}");
    assert!(
        matches!(&err, Error::ResourceLimit { what, needed, limit: 1024, .. }
            if what.contains("RLIMIT_NOFILE") && *needed >= fds + 900),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("RLIMIT_NOFILE") && message.contains("1024"), "{message}");
    assert!(message.contains("\"big\""), "{message}");
    assert_eq!(open_fds(), fds, "the refusal opened files");
    assert_eq!(engine.topics(), ["small"]);
    assert!(!dir.path().join("topics/big").exists(), "the refused topic left a directory");
    engine.close().unwrap();
    drop(engine);

    // Lower still: the existing topic's partitions no longer fit, and opening says so.
    let fds = open_fds();
    tidelog_io::open_files::set_limit(OpenFilesLimit { soft: 300, hard: 300 }).unwrap();
    let err = open(dir.path()).unwrap_err();
    eprintln!("refused: {err}");
    assert!(
        matches!(&err, Error::ResourceLimit { what, limit: 300, .. } if what.contains("RLIMIT_NOFILE")),
        "{err:?}"
    );
    assert!(err.to_string().contains("existing topic"), "{err}");
    assert_eq!(open_fds(), fds, "the refused open left files open");
}

/// A topic creation that fails half-way on real files — a partition's index file cannot be
/// created (a directory is in its way), after the partition's log and offset index were, and
/// with other partitions fully open — closes every file it opened and removes its directory.
#[test]
fn a_topic_whose_creation_fails_half_way_leaves_no_file_open() {
    if run_in_child("a_topic_whose_creation_fails_half_way_leaves_no_file_open") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path()).unwrap();
    engine.create_topic("kept", TopicConfig::default().partitions(4)).unwrap();
    let fds = open_fds();
    let in_the_way = dir.path().join("topics/half/5/00000000000000000000.timeindex");
    std::fs::create_dir_all(&in_the_way).unwrap();
    let err = engine.create_topic("half", TopicConfig::default().partitions(8)).unwrap_err();
    eprintln!("failed: {err}");
    assert!(
        matches!(&err, Error::Io { path, .. } if *path == in_the_way),
        "failed for another reason: {err:?}"
    );
    assert_eq!(open_fds(), fds, "the failed creation left files open");
    assert!(!dir.path().join("topics/half").exists(), "the failed topic's directory is left");
    assert_eq!(engine.topics(), ["kept"]);
    engine.close().unwrap();
    drop(engine);
    let engine = open(dir.path()).unwrap();
    assert_eq!(engine.topics(), ["kept"], "the failed topic came back");
    engine.close().unwrap();
}

/// A topic creation that fails half-way (here a partition's file cannot be created)
/// removes everything it created, durably: after a power loss the next open does not bring
/// back a half-made topic, nor a whole one nobody was told exists.
#[test]
fn a_topic_whose_creation_fails_half_way_is_removed_durably() {
    const DIR: &str = "/sim/data";
    for seed in 0..4 {
        let disk = SimDisk::new(seed);
        let sim = || {
            let config = EngineConfig::default().shards(2).storage(Arc::new(disk.factory()));
            Engine::open(DIR, config).unwrap()
        };
        let engine = sim();
        engine.create_topic("kept", TopicConfig::default()).unwrap();
        engine.append("kept", 0, &[Record::new(b"kept")], Durability::Durable).unwrap();
        // The metadata file is the first file opened, then 3 per partition: the 13th open
        // fails with some partitions open (on both shards, which open theirs concurrently).
        let fault =
            disk.inject_fault(FaultRule::io(OpKind::Open).after(12).under("/sim/data/topics/half"));
        let err = engine.create_topic("half", TopicConfig::default().partitions(8)).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "seed {seed}: {err:?}");
        disk.clear_fault(fault);
        assert_eq!(engine.topics(), ["kept"], "seed {seed}");
        let half = Path::new("/sim/data/topics/half");
        assert!(!disk.exists(half), "seed {seed}: the half topic's directory is still there");
        assert!(
            disk.durable_paths().iter().all(|p| !p.starts_with(half)),
            "seed {seed}: a power loss would bring the half topic back"
        );
        engine.close().unwrap();

        disk.crash();
        let engine = sim();
        assert_eq!(engine.topics(), ["kept"], "seed {seed}: the failed topic came back");
        let fetch = engine.read("kept", 0, ReadRequest::new(0)).unwrap();
        assert_eq!(fetch.records().next().unwrap().unwrap().value(), Some(&b"kept"[..]));
        // Nothing of the failed attempt stands in the way of creating it again.
        engine.create_topic("half", TopicConfig::default().partitions(8)).unwrap();
        engine.append("half", 7, &[Record::new(b"whole")], Durability::Durable).unwrap();
        engine.close().unwrap();
    }
}

/// The tail caches of a shard's partitions together stay within
/// `EngineConfig::tail_cache_bytes_per_shard`, evicting the oldest chunks of any partition;
/// reads that miss the cache read the files and return the same records.
#[test]
fn the_tail_caches_of_a_shard_stay_within_its_budget() {
    if run_in_child("the_tail_caches_of_a_shard_stay_within_its_budget") {
        return;
    }
    let budget = 64 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig::default()
        .shards(1)
        .io(IoChoice::Portable)
        .pin_shards(false)
        .tail_cache_bytes_per_shard(budget);
    let engine = Engine::open(dir.path(), config).unwrap();
    let partitions = 40;
    engine.create_topic("t", TopicConfig::default().partitions(partitions)).unwrap();
    let value = |p: u32, i: u32| vec![(p * 7 + i) as u8; 6000];
    let before = tidelog_io::buffer::heap_bytes().live;
    // Each write fills more than a quarter of a 16 KiB buffer, so the cache keeps the buffer
    // itself: 40 partitions would hold 640 KiB without the shard's budget.
    for i in 0..2 {
        for p in 0..partitions {
            engine.append("t", p, &[Record::new(&value(p, i))], Durability::Written).unwrap();
        }
    }
    let kept = tidelog_io::buffer::heap_bytes().live.saturating_sub(before);
    eprintln!("tail caches and spare buffers: {} KiB (budget {} KiB)", kept / 1024, budget / 1024);
    // The budget, plus spare buffers the shard may keep meanwhile (copies of small writes).
    assert!(kept <= budget + 2 * limits::WRITE_BUFFERS_SPARE_PER_CLASS_MAX * 16 * 1024, "{kept}");
    for p in 0..partitions {
        let fetch = engine.read("t", p, ReadRequest::new(0)).unwrap();
        let values: Vec<Vec<u8>> =
            fetch.records().map(|r| r.unwrap().value().unwrap().to_vec()).collect();
        assert_eq!(values, [value(p, 0), value(p, 1)], "partition {p}");
    }
    engine.close().unwrap();
}

#[test]
fn records_at_the_size_limit_and_empty_records_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path()).unwrap();
    let max = 64 * 1024;
    engine
        .create_topic(
            "t",
            TopicConfig::default().segment_size_bytes(256 * 1024).record_size_bytes_max(max),
        )
        .unwrap();
    // A value whose batch is exactly the limit: find the value length by encoding.
    let encoded = |len: usize| {
        tidelog_core::record::encode_batch(&[Record::new(&vec![1u8; len])], 0, Default::default())
            .len()
    };
    let mut len = max as usize - 100;
    while encoded(len) < max as usize {
        len += 1;
    }
    assert_eq!(encoded(len), max as usize, "a batch of exactly the limit");
    let at_limit = vec![b'm'; len];
    let empty: [Record<'_>; 3] = [
        Record::new(b""),
        Record { key: None, value: None, headers: &[], timestamp: None },
        Record::new(b"").with_key(b""),
    ];
    for _ in 0..3 {
        engine.append("t", 0, &[Record::new(&at_limit)], Durability::Durable).unwrap();
        engine.append("t", 0, &empty, Durability::Durable).unwrap();
    }
    let over = vec![b'o'; len + 1];
    let refused = engine.append("t", 0, &[Record::new(&over)], Durability::Durable);
    assert!(matches!(refused, Err(Error::RecordTooLarge { .. })), "{refused:?}");
    engine.close().unwrap();
    let engine = open(dir.path()).unwrap();
    let mut offset = 0;
    let mut seen = Vec::new();
    while offset < 12 {
        let fetch = engine.read("t", 0, ReadRequest::new(offset).max_bytes(1)).unwrap();
        for record in fetch.records() {
            let record = record.unwrap();
            seen.push((record.key().map(<[u8]>::to_vec), record.value().map(<[u8]>::to_vec)));
        }
        offset = fetch.next_offset();
    }
    for round in 0..3 {
        let at = round * 4;
        assert_eq!(seen[at].1.as_deref(), Some(&at_limit[..]));
        assert_eq!(seen[at + 1], (None, Some(Vec::new())));
        assert_eq!(seen[at + 2], (None, None));
        assert_eq!(seen[at + 3], (Some(Vec::new()), Some(Vec::new())));
    }
    engine.close().unwrap();
}
