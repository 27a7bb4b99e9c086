//! Crash tests at the second depth (STYLE §11): an engine on the simulated disk is crashed
//! (power loss: only synced bytes are sure to survive; unsynced writes may be lost, torn at
//! sector granularity or reordered) at random moments — with appends in flight, during
//! group commits and segment rolls, and during recovery itself — then reopened and checked
//! against a reference model:
//!
//! - every record acknowledged `Durable` is present, at its offset, byte for byte;
//! - offsets are dense; every record present is one that was appended to that partition;
//! - whatever recovery keeps is durable from then on (it syncs what it keeps), so it joins
//!   the model and must survive every later crash too.
//!
//! `TIDELOG_SIM_SEEDS=N` runs N seeds (default 300, three crashes each); a failure prints its
//! seed, and `TIDELOG_SIM_SEED=S` replays just that one.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tidelog_core::{
    Durability, Engine, EngineConfig, Error, Pending, ReadRequest, Record, SegmentPreparation,
    TopicConfig,
};
use tidelog_io::sim::SimDisk;

const DIR: &str = "/sim/data";
const TOPIC: &str = "t";
const PARTITIONS: u32 = 3;
const CRASHES_PER_SEED: u32 = 3;

/// A small deterministic generator (xorshift64*), so a seed replays the same workload.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// An append in flight: durability, partition, values, acknowledgement.
type InFlight = (Durability, u32, Vec<Vec<u8>>, Pending<tidelog_core::AppendResult>);

#[derive(Default)]
struct Model {
    /// Per partition: records that must survive, by offset.
    durable: Vec<BTreeMap<u64, Vec<u8>>>,
    /// Every payload ever submitted (payloads are unique and name their partition).
    submitted: HashSet<Vec<u8>>,
    /// Counters for the report.
    durable_acks: u64,
    records_checked: u64,
}

fn payload(seed: u64, incarnation: u32, partition: u32, seq: u64, len: usize) -> Vec<u8> {
    let mut bytes = format!("s{seed}-i{incarnation}-p{partition}-n{seq}:").into_bytes();
    let mut x = seq.wrapping_mul(31).wrapping_add(u64::from(incarnation));
    while bytes.len() < len {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        bytes.push((x >> 56) as u8);
    }
    bytes
}

fn partition_of(payload: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(&payload[..payload.iter().position(|&b| b == b':')?]).ok()?;
    text.split('-').find_map(|part| part.strip_prefix('p')).and_then(|p| p.parse().ok())
}

fn config(disk: &SimDisk) -> EngineConfig {
    // Every preparation policy, by seed: prepared and renamed files must recover as well.
    let preparation =
        [SegmentPreparation::Grow, SegmentPreparation::ZeroFill, SegmentPreparation::Fallocate]
            [(disk.seed() % 3) as usize];
    // And direct I/O on odd seeds: block-aligned writes that rewrite the partial last block.
    let direct = disk.seed() % 2 == 1;
    // And idle syncs as system calls on every other pair of seeds.
    let inline_sync = disk.seed() % 4 >= 2;
    EngineConfig::default()
        .shards(2)
        .storage(Arc::new(disk.factory()))
        .segment_preparation(preparation)
        .direct_io(direct)
        .inline_sync(inline_sync)
}

/// Open the engine after a crash: recovery must succeed.
fn open(disk: &SimDisk) -> Engine {
    Engine::open(DIR, config(disk)).unwrap_or_else(|err| panic!("reopen after crash failed: {err}"))
}

/// Read every record of every partition and check it against the model; what is present
/// becomes durable.
fn check(engine: &Engine, model: &mut Model, seed: u64, round: u32) {
    for partition in 0..PARTITIONS {
        let info = engine.partition_info(TOPIC, partition).unwrap();
        if std::env::var("TIDELOG_SIM_VERBOSE").is_ok() {
            eprintln!("seed {seed} round {round} p{partition}: {info:?}");
        }
        assert_eq!(
            info.log_start_offset, 0,
            "seed {seed} round {round}: no retention in this test"
        );
        assert_eq!(
            info.durable_offset, info.high_watermark,
            "seed {seed}: recovery syncs what it keeps"
        );
        let mut present = BTreeMap::new();
        let mut offset = 0;
        while offset < info.high_watermark {
            let fetch = engine
                .read(TOPIC, partition, ReadRequest::new(offset).max_bytes(64 * 1024))
                .unwrap();
            assert!(
                !fetch.is_empty(),
                "seed {seed}: empty read at {offset} below {}",
                info.high_watermark
            );
            for record in fetch.records() {
                let record = record
                    .unwrap_or_else(|e| panic!("seed {seed}: bad record in p{partition}: {e}"));
                assert_eq!(
                    record.offset() as u64,
                    offset,
                    "seed {seed}: offsets not dense in p{partition}"
                );
                let value = record.value().unwrap().to_vec();
                assert!(
                    model.submitted.contains(&value),
                    "seed {seed}: p{partition}@{offset} holds bytes never appended"
                );
                assert_eq!(
                    partition_of(&value),
                    Some(partition),
                    "seed {seed}: record of another partition in p{partition}"
                );
                present.insert(offset, value);
                offset += 1;
            }
        }
        let durable = &mut model.durable[partition as usize];
        for (offset, value) in durable.iter() {
            match present.get(offset) {
                Some(found) => assert!(
                    found == value,
                    "seed {seed} round {round}: durable record p{partition}@{offset} changed"
                ),
                None => panic!(
                    "seed {seed} round {round}: durable record p{partition}@{offset} lost (high watermark {})",
                    info.high_watermark
                ),
            }
        }
        model.records_checked += present.len() as u64;
        *durable = present;
    }
}

fn run_seed(seed: u64, model: &mut Model) {
    let mut rng = Rng::new(seed);
    let disk = SimDisk::new(seed);
    let engine = Engine::open(DIR, config(&disk)).unwrap();
    engine
        .create_topic(
            TOPIC,
            TopicConfig::default()
                .partitions(PARTITIONS)
                .segment_size_bytes(16 * 1024)
                .record_size_bytes_max(8 * 1024),
        )
        .unwrap();
    model.durable = vec![BTreeMap::new(); PARTITIONS as usize];
    let mut engine = Some(engine);
    let mut seq = 0u64;
    for round in 0..CRASHES_PER_SEED {
        let current = engine.take().unwrap_or_else(|| open(&disk));
        if round > 0 {
            check(&current, model, seed, round);
        }
        // A burst of appends, some awaited, some left in flight when the power goes.
        let mut pending: Vec<InFlight> = Vec::new();
        let ops = 1 + rng.below(60);
        for _ in 0..ops {
            let partition = rng.below(u64::from(PARTITIONS)) as u32;
            let durability =
                [Durability::None, Durability::Written, Durability::Durable][rng.below(3) as usize];
            let count = 1 + rng.below(4) as usize;
            let values: Vec<Vec<u8>> = (0..count)
                .map(|_| {
                    seq += 1;
                    payload(seed, round, partition, seq, 20 + rng.below(1500) as usize)
                })
                .collect();
            model.submitted.extend(values.iter().cloned());
            let records: Vec<Record<'_>> = values.iter().map(|v| Record::new(v)).collect();
            let ack = current.append_async(TOPIC, partition, &records, durability);
            pending.push((durability, partition, values, ack));
            if rng.below(8) == 0 {
                // Let some complete before the next ones.
                std::thread::sleep(Duration::from_micros(rng.below(300)));
            }
        }
        match rng.below(3) {
            0 => {}
            1 => std::thread::sleep(Duration::from_micros(rng.below(2000))),
            _ => {
                // Wait for everything: the crash hits a settled engine.
                for (_, _, _, ack) in pending.iter_mut() {
                    while !ack.is_ready() {
                        std::thread::sleep(Duration::from_micros(50));
                    }
                }
            }
        }
        // Nothing may have failed before the power goes (only faults this test injects).
        for partition in 0..PARTITIONS {
            let info = current.partition_info(TOPIC, partition).unwrap();
            assert_eq!(
                info.failed, None,
                "seed {seed} round {round}: p{partition} failed before the crash"
            );
        }
        let report = disk.crash();
        if std::env::var("TIDELOG_SIM_VERBOSE").is_ok() {
            eprintln!("seed {seed} round {round}: crash {report:?}");
        }
        for (durability, partition, values, ack) in pending {
            match ack.wait() {
                Ok(result) if durability == Durability::Durable => {
                    if std::env::var("TIDELOG_SIM_VERBOSE").is_ok() {
                        eprintln!("seed {seed} round {round}: durable ack p{partition} {result:?}");
                    }
                    model.durable_acks += 1;
                    for (i, value) in values.into_iter().enumerate() {
                        let offset = result.base_offset + i as u64;
                        if let Some(previous) =
                            model.durable[partition as usize].insert(offset, value.clone())
                        {
                            assert_eq!(
                                previous, value,
                                "seed {seed}: offset p{partition}@{offset} acknowledged twice"
                            );
                        }
                    }
                }
                Ok(_) => {}
                Err(
                    Error::PartitionFailed { .. }
                    | Error::ShardStopped { .. }
                    | Error::Closed
                    | Error::Io { .. },
                ) => {}
                Err(other) => panic!("seed {seed}: unexpected append error after a crash: {other}"),
            }
        }
        // The dead engine's close fails; that is expected after power loss.
        let _ = current.close();
        drop(current);
        if rng.below(4) == 0 {
            // Crash again while recovery runs.
            let crasher = disk.clone();
            let delay = Duration::from_micros(rng.below(3000));
            let handle = std::thread::spawn(move || {
                std::thread::sleep(delay);
                crasher.crash();
            });
            if let Ok(engine) = Engine::open(DIR, config(&disk)) {
                let _ = engine.close();
            }
            handle.join().unwrap();
        }
    }
    let last = open(&disk);
    check(&last, model, seed, CRASHES_PER_SEED);
    last.close().unwrap();
}

#[test]
fn acknowledged_durable_records_survive_power_loss() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let seeds: Vec<u64> = match std::env::var("TIDELOG_SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("TIDELOG_SIM_SEED is a number")],
        Err(_) => {
            let n =
                std::env::var("TIDELOG_SIM_SEEDS").ok().and_then(|n| n.parse().ok()).unwrap_or(300);
            (0..n).collect()
        }
    };
    let mut totals = Model::default();
    for &seed in &seeds {
        let mut model = Model::default();
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_seed(seed, &mut model)));
        if let Err(panic) = outcome {
            eprintln!(
                "crash simulation failed for seed {seed}; replay with:\n  TIDELOG_SIM_SEED={seed} cargo test -p tidelog-core --test crash_sim"
            );
            std::panic::resume_unwind(panic);
        }
        totals.durable_acks += model.durable_acks;
        totals.records_checked += model.records_checked;
    }
    eprintln!(
        "crash simulation: {} seeds, {} crashes, {} durable acknowledgements, {} records checked, 0 lost",
        seeds.len(),
        seeds.len() as u64 * u64::from(CRASHES_PER_SEED),
        totals.durable_acks,
        totals.records_checked
    );
    assert!(totals.durable_acks > 0);
}
