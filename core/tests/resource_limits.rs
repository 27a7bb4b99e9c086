//! Resource limits (STYLE §2): an engine with many partitions on real files (portable
//! backend, a temporary directory), watching the process's resident memory (`VmRSS` in
//! `/proc/self/status`) and open descriptors (`/proc/self/fd`) — they must stay bounded, or
//! the engine must refuse with an error that names the limit hit. And records at the size
//! limit and empty records.
//!
//! `TIDELOG_RESOURCE_PARTITIONS=N` sets the partitions (default 1,000; the figures in
//! docs/TESTING.md are for 10,000 with `--nocapture`).

use std::path::Path;

use tidelog_core::{
    Durability, Engine, EngineConfig, Error, IoChoice, ReadRequest, Record, TopicConfig,
};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn open(dir: &Path) -> Engine {
    let config = EngineConfig::default().shards(2).io(IoChoice::Portable).pin_shards(false);
    Engine::open(dir, config).unwrap()
}

#[test]
fn many_partitions_keep_memory_and_descriptors_bounded_or_fail_clearly() {
    let partitions: u32 = std::env::var("TIDELOG_RESOURCE_PARTITIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000);
    let per_topic = partitions.min(1_000);
    let dir = tempfile::tempdir().unwrap();
    let (rss_before, fds_before) = (rss_kib(), open_fds());
    let engine = open(dir.path());
    eprintln!(
        "open: {} KiB RSS (+{}), {} fds (+{})",
        rss_kib(),
        rss_kib() - rss_before,
        open_fds(),
        open_fds() - fds_before
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
        eprintln!(
            "{created} partitions: {} KiB RSS, {} fds ({:.2} per partition)",
            rss_kib(),
            open_fds(),
            (open_fds() - fds_before) as f64 / created as f64
        );
    }
    if let Some(err) = &refused {
        // The only acceptable refusal names the limit it hit.
        eprintln!("refused after {created} partitions: {err}");
        let message = err.to_string();
        assert!(
            matches!(err, Error::Io { .. }) && message.contains("Too many open files"),
            "refused without naming the limit: {message}"
        );
    }
    // One small append to every partition created: write buffers and tail caches appear.
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
    let appended = pending.into_iter().filter_map(|p| p.wait().ok()).count();
    eprintln!(
        "after one 100-byte append to {appended} partitions: {} KiB RSS ({} KiB per partition), {} fds",
        rss_kib(),
        rss_kib().saturating_sub(rss_before) / appended.max(1) as u64,
        open_fds()
    );
    engine.close().unwrap();
    drop(engine);
    let leaked = open_fds().saturating_sub(fds_before);
    eprintln!(
        "closed: {} KiB RSS, {} fds ({leaked} more than before opening)",
        rss_kib(),
        open_fds()
    );
    assert!(leaked <= 2, "{leaked} descriptors left open after close");
}

#[test]
fn records_at_the_size_limit_and_empty_records_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
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
    let engine = open(dir.path());
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
