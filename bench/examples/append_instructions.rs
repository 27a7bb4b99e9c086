//! Appends for an instruction count: `BATCHES` batches of 1,000 records of 100 bytes through an
//! engine with one shard on the simulated in-memory disk, `Durability::None` (the last one
//! `Written`), 16 in flight — the workload of `benches/append.rs`, run once, for callgrind.
//!
//! ```text
//! cargo build --release -p tidelog-bench --example append_instructions
//! valgrind --tool=callgrind --separate-threads=yes \
//!     target/release/examples/append_instructions preencoded|encode BATCHES
//! ```
//!
//! Wall-clock time on a shared 2-vCPU machine is noisy; instructions are not. Run it with two
//! batch counts and divide the difference per thread by the difference in records: that is
//! the cost per record with the engine's start-up and shutdown taken out.

use std::collections::VecDeque;
use std::sync::Arc;

use tidelog_core::record::{BatchOptions, encode_batch};
use tidelog_core::{AppendResult, Durability, Engine, EngineConfig, Pending, Record, TopicConfig};
use tidelog_io::sim::SimDisk;

const RECORDS_PER_BATCH: usize = 1000;
const VALUE_BYTES: usize = 100;
const IN_FLIGHT: usize = 16;
const TOPIC: &str = "bench";
const TIMESTAMP_MS: i64 = 1_700_000_000_000;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "preencoded".to_string());
    let batches: usize = args.next().map_or(100, |n| n.parse().expect("BATCHES is a number"));
    assert!(mode == "preencoded" || mode == "encode", "mode: preencoded or encode");

    let values: Vec<Vec<u8>> =
        (0..RECORDS_PER_BATCH).map(|i| vec![(i % 251) as u8; VALUE_BYTES]).collect();
    let records: Vec<Record<'_>> = values.iter().map(|v| Record::new(v)).collect();
    let encoded = encode_batch(&records, TIMESTAMP_MS, BatchOptions::default());
    // Copies for `append_batch` are made before the engine starts, outside what is compared.
    let mut copies: Vec<Vec<u8>> = if mode == "preencoded" {
        (0..batches).map(|_| encoded.clone()).collect()
    } else {
        Vec::new()
    };

    let disk = SimDisk::new(1);
    let config = EngineConfig::default().shards(1).storage(Arc::new(disk.factory()));
    let engine = Engine::open("/sim/bench", config).expect("open");
    engine.create_topic(TOPIC, TopicConfig::default()).expect("create topic");
    let mut window: VecDeque<Pending<AppendResult>> = VecDeque::with_capacity(IN_FLIGHT);
    for i in 0..batches {
        let durability = if i + 1 == batches { Durability::Written } else { Durability::None };
        if window.len() == IN_FLIGHT
            && let Some(pending) = window.pop_front()
        {
            pending.wait().expect("append");
        }
        window.push_back(match copies.pop() {
            Some(batch) => engine.append_batch(TOPIC, 0, batch, durability),
            None => engine.append_async(TOPIC, 0, &records, durability),
        });
    }
    for pending in window {
        pending.wait().expect("append");
    }
    engine.close().expect("close");
    println!("{mode}: {} records appended", batches * RECORDS_PER_BATCH);
}
