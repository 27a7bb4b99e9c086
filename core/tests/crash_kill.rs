//! Crash tests at the third depth (STYLE §11): a child process appends under load and is
//! killed with SIGKILL at a random moment; the parent reopens the directory and checks that
//! every record the child reported as acknowledged is there, at its offset, intact.
//!
//! A killed process loses nothing the kernel already has, so `Written` acknowledgements must
//! survive as well as `Durable` ones (power loss is the simulation's job: `crash_sim.rs`).
//!
//! The child rolls 16 KiB segments, runs maintenance every 20 ms with retention of 32 KiB per
//! partition (so kills land in rolls, retention deletions, background syncs and group
//! commits), and prepares segments by a policy that changes with every incarnation; each
//! incarnation starts with recovery, which a short-lived child is killed in. Acknowledged
//! records below the log start after a restart were deleted by retention and are not
//! checked; the log start must never go back.
//!
//! The child is this test binary run again with `TIDELOG_KILL_CHILD_DIR` set.
//! `TIDELOG_KILL_ITERATIONS=N` sets the number of kills (default 8).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tidelog_core::{
    Durability, Engine, EngineConfig, IoChoice, ReadRequest, Record, SegmentPreparation,
    TopicConfig,
};

const CHILD_ENV: &str = "TIDELOG_KILL_CHILD_DIR";
const PARTITIONS: u32 = 4;

/// The child: append until killed, printing `ack <partition> <offset> <value>` for every
/// acknowledged record.
#[test]
fn kill_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let io: IoChoice =
        std::env::var("TIDELOG_KILL_IO").unwrap_or_else(|_| "auto".into()).parse().unwrap();
    let incarnation = std::env::var("TIDELOG_KILL_INCARNATION").unwrap_or_default();
    let preparation =
        [SegmentPreparation::Grow, SegmentPreparation::Fallocate, SegmentPreparation::ZeroFill]
            [incarnation.parse::<usize>().unwrap_or(0) % 3];
    let mut config = EngineConfig::default().shards(2).io(io).segment_preparation(preparation);
    config.maintenance_interval_ms = 20;
    let engine = Engine::open(&dir, config).unwrap();
    let config = TopicConfig::default()
        .partitions(PARTITIONS)
        .segment_size_bytes(16 * 1024)
        .record_size_bytes_max(8 * 1024)
        .retention_bytes(Some(32 * 1024));
    match engine.create_topic("t", config) {
        Ok(()) | Err(tidelog_core::Error::TopicExists { .. }) => {}
        Err(err) => panic!("{err}"),
    }
    let stdout = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4u32)
        .map(|worker| {
            let engine = engine.clone();
            let stdout = stdout.clone();
            let stop = stop.clone();
            let incarnation = incarnation.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let partition = (worker + n as u32) % PARTITIONS;
                    let durability =
                        if n.is_multiple_of(2) { Durability::Durable } else { Durability::Written };
                    let count = 1 + (n % 5) as usize;
                    let values: Vec<String> = (0..count)
                        .map(|i| {
                            format!(
                                "i{incarnation}-w{worker}-n{n}-r{i}-{}",
                                "z".repeat((n as usize * 37) % 700)
                            )
                        })
                        .collect();
                    let records: Vec<Record<'_>> =
                        values.iter().map(|v| Record::new(v.as_bytes())).collect();
                    let result = engine.append("t", partition, &records, durability).unwrap();
                    let mut out = stdout.lock().unwrap();
                    for (i, value) in values.iter().enumerate() {
                        writeln!(out, "ack {partition} {} {value}", result.base_offset + i as u64)
                            .unwrap();
                    }
                    out.flush().unwrap();
                    n += 1;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
}

/// Check every acknowledged record at or above its partition's log start; returns the records
/// read and the acknowledged ones checked. `log_starts` must never go back.
fn verify(
    dir: &Path,
    io: IoChoice,
    acked: &BTreeMap<(u32, u64), String>,
    log_starts: &mut [u64],
) -> (usize, usize) {
    let engine = Engine::open(dir, EngineConfig::default().shards(2).io(io)).unwrap();
    let mut present: BTreeMap<(u32, u64), String> = BTreeMap::new();
    for partition in 0..PARTITIONS {
        let info = match engine.partition_info("t", partition) {
            // Killed before the topic's creation finished: nothing can have been acknowledged.
            Err(tidelog_core::Error::UnknownTopic { .. }) if acked.is_empty() => {
                engine.close().unwrap();
                return (0, 0);
            }
            other => other.unwrap(),
        };
        let start = info.log_start_offset;
        assert!(
            start >= log_starts[partition as usize],
            "partition {partition}: log start went back from {} to {start}",
            log_starts[partition as usize]
        );
        log_starts[partition as usize] = start;
        let mut offset = start;
        while offset < info.high_watermark {
            let fetch = engine.read("t", partition, ReadRequest::new(offset)).unwrap();
            for record in fetch.records() {
                let record = record.unwrap();
                assert_eq!(
                    record.offset() as u64,
                    offset,
                    "offsets not dense in partition {partition}"
                );
                present.insert(
                    (partition, offset),
                    String::from_utf8(record.value().unwrap().to_vec()).unwrap(),
                );
                offset += 1;
            }
        }
    }
    let mut checked = 0;
    for (key, value) in acked {
        if key.1 < log_starts[key.0 as usize] {
            continue; // deleted by retention
        }
        checked += 1;
        match present.get(key) {
            Some(found) => assert_eq!(found, value, "acknowledged record {key:?} changed"),
            None => panic!("acknowledged record {key:?} lost"),
        }
    }
    engine.close().unwrap();
    (present.len(), checked)
}

#[test]
fn acknowledged_records_survive_sigkill_portable() {
    kill_loop(IoChoice::Portable);
}

#[test]
fn acknowledged_records_survive_sigkill_uring() {
    if tidelog_io::uring::probe().is_err() {
        eprintln!("io_uring is not usable here; skipped");
        return;
    }
    kill_loop(IoChoice::Uring);
}

fn kill_loop(io: IoChoice) {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let iterations: u32 =
        std::env::var("TIDELOG_KILL_ITERATIONS").ok().and_then(|n| n.parse().ok()).unwrap_or(8);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: BTreeMap<(u32, u64), String> = BTreeMap::new();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut total_acks = 0usize;
    let mut total_checked = 0usize;
    let mut log_starts = [0u64; PARTITIONS as usize];
    for iteration in 0..iterations {
        let mut child = Command::new(&exe)
            .args(["--exact", "kill_child", "--nocapture", "--test-threads", "1"])
            .env(CHILD_ENV, dir.path())
            .env("TIDELOG_KILL_INCARNATION", iteration.to_string())
            .env("TIDELOG_KILL_IO", io.name())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                lines.push(line);
            }
            lines
        });
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(50 + seed % 400));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let lines = reader.join().unwrap();
        for line in lines {
            let mut parts = line.splitn(4, ' ');
            if parts.next() != Some("ack") {
                continue;
            }
            let (Some(p), Some(o), Some(v)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let key = (p.parse().unwrap(), o.parse().unwrap());
            if let Some(previous) = acked.insert(key, v.to_string()) {
                assert_eq!(previous, v, "offset {key:?} acknowledged twice with different records");
            }
            total_acks += 1;
        }
        let (_, checked) = verify(dir.path(), io, &acked, &mut log_starts);
        total_checked += checked;
    }
    eprintln!(
        "SIGKILL test ({}): {iterations} kills survived, {total_acks} acknowledged records, \
         {total_checked} checks of them after restarts (the rest deleted by retention), 0 lost; \
         log starts {log_starts:?}",
        io.name()
    );
    assert!(total_acks > 0, "the child never acknowledged anything");
}
