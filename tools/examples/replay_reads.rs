//! Replay from the segment files: how fast a reader gets through old data that is no longer
//! in the tail cache (a reopened engine), at a given fetch size.
//!
//! ```sh
//! cargo run --release -p tidelog-tools --example replay_reads -- [MB] [FETCH_KIB] [uring|portable] [ROUNDS]
//! ```
//!
//! Writes MB megabytes of 1 KiB records (default 512) to one partition in a temporary
//! directory, reopens the engine, then reads everything from offset 0 in fetches of FETCH_KIB
//! (default 256: the io_uring pool's slot size, so reads can go out as `READ_FIXED`), ROUNDS
//! times (default 5), printing MB/s of record bytes per round. The file stays in the page
//! cache: this measures the engine's read path (read, CRC check of every batch, hand-over),
//! not the device.

use std::time::Instant;

use tidelog_core::{Durability, Engine, EngineConfig, IoChoice, ReadRequest, Record, TopicConfig};

fn main() {
    let mut args = std::env::args().skip(1);
    let mb: usize = args.next().map_or(512, |a| a.parse().expect("megabytes to write"));
    let fetch_kib: usize = args.next().map_or(256, |a| a.parse().expect("fetch size in KiB"));
    let io = match args.next().as_deref() {
        None | Some("uring") => IoChoice::Uring,
        Some("portable") => IoChoice::Portable,
        Some(other) => panic!("unknown backend {other:?}: uring or portable"),
    };
    let rounds: usize = args.next().map_or(5, |a| a.parse().expect("rounds"));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = || EngineConfig::default().io(io).shards(1);
    let value = vec![0x5au8; 1024];
    let records: Vec<Record<'_>> = (0..64).map(|_| Record::new(&value)).collect();
    let appends = mb * 1_000_000 / (1024 * records.len());
    {
        let engine = Engine::open(dir.path(), config()).expect("open");
        engine.create_topic("replay", TopicConfig::default().partitions(1)).expect("topic");
        for _ in 0..appends {
            engine.append("replay", 0, &records, Durability::None).expect("append");
        }
        engine.close().expect("close");
    }
    let engine = Engine::open(dir.path(), config()).expect("reopen");
    let end = engine.partition_info("replay", 0).expect("info").high_watermark;
    println!("{io:?}: {end} records of 1 KiB, fetches of {fetch_kib} KiB");
    for round in 1..=rounds {
        let started = Instant::now();
        let (mut offset, mut bytes) = (0u64, 0usize);
        while offset < end {
            let request = ReadRequest::new(offset).max_bytes(fetch_kib * 1024);
            let fetch = engine.read("replay", 0, request).expect("read");
            bytes += fetch.len_bytes();
            offset = fetch.next_offset();
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "round {round}: {:.0} MB/s ({bytes} bytes in {seconds:.3} s)",
            bytes as f64 / 1e6 / seconds
        );
    }
    engine.close().expect("close");
}
