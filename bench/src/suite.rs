//! The benchmark suite behind `tidelog bench`: each case runs the engine and, in the same
//! run, its raw baseline — the same storage operations through the same backend with no
//! engine around them — and reports both and their ratio.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use tidelog_core::{
    AppendResult, Delivery, Durability, Engine, EngineConfig, PartitionStats, Pending, Record,
    TopicConfig,
};

use crate::raw::RawFile;
use crate::stats::{Latency, Measurement};
use crate::streaming;

/// The cases, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// One producer, 4 KiB records, `Durable`, one at a time.
    DurableAppendQd1_4k,
    /// 64 concurrent producers, 1 KiB records, `Durable`.
    DurableAppendConcurrent1k,
    /// 1 KiB records, `Written`, as fast as the engine takes them.
    AppendThroughput1k,
    /// 1 KiB records at a fixed rate (open loop), `None`, streaming consumer: end-to-end latency.
    EndToEndLatency1k,
    /// The same with `Durable`.
    EndToEndLatency1kDurable,
    /// The same load (`None`), streaming beside micro-batch:100ms.
    MicroBatchVsStreaming,
    /// CPU-bound `None` appends by producers on the shards: 2 shards beside 1.
    ShardScaling,
}

impl Case {
    /// Every case, in the order they run and are reported. The throughput case goes last:
    /// it writes gigabytes (both sides), and the writeback and freeing of that much would
    /// land in the tails of whatever ran after it, `sync` before each side or not.
    pub const ALL: [Case; 7] = [
        Case::DurableAppendQd1_4k,
        Case::DurableAppendConcurrent1k,
        Case::EndToEndLatency1k,
        Case::EndToEndLatency1kDurable,
        Case::MicroBatchVsStreaming,
        Case::ShardScaling,
        Case::AppendThroughput1k,
    ];

    /// The case's name.
    pub fn name(self) -> &'static str {
        match self {
            Case::DurableAppendQd1_4k => "durable-append-qd1-4k",
            Case::DurableAppendConcurrent1k => "durable-append-concurrent-1k",
            Case::AppendThroughput1k => "append-throughput-1k",
            Case::EndToEndLatency1k => "end-to-end-latency-1k",
            Case::EndToEndLatency1kDurable => "end-to-end-latency-1k-durable",
            Case::MicroBatchVsStreaming => "micro-batch-vs-streaming",
            Case::ShardScaling => "shard-scaling",
        }
    }

    /// What the baseline is.
    pub fn baseline(self) -> &'static str {
        match self {
            Case::DurableAppendQd1_4k => {
                "4 KiB write linked to fdatasync, queue depth 1, file prepared as the engine's segments"
            }
            Case::DurableAppendConcurrent1k => {
                "sequential writes of the engine's bytes-per-fdatasync, each linked to fdatasync"
            }
            Case::AppendThroughput1k => {
                "sequential writes of the engine's average write size at its queue depth"
            }
            Case::EndToEndLatency1k => "4 KiB write at queue depth 1 (the device's write latency)",
            Case::EndToEndLatency1kDurable => "4 KiB write linked to fdatasync at queue depth 1",
            Case::MicroBatchVsStreaming => "the same load consumed in micro-batches of 100 ms",
            Case::ShardScaling => "the same CPU-bound load on 1 shard",
        }
    }
}

impl std::str::FromStr for Case {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Case::ALL.into_iter().find(|c| c.name() == s).ok_or_else(|| {
            let names: Vec<_> = Case::ALL.iter().map(|c| c.name()).collect();
            format!("unknown case {s:?}: expected one of {}", names.join(", "))
        })
    }
}

/// How to run the suite.
#[derive(Clone, Debug)]
pub struct SuiteConfig {
    /// Engine configuration (backend, direct I/O, preparation, shards).
    pub engine: EngineConfig,
    /// Where to put data (a temporary directory under it per case); default the system's.
    pub dir: Option<PathBuf>,
    /// How long each side of each case runs.
    pub duration: Duration,
    /// Which cases.
    pub cases: Vec<Case>,
    /// Messages per second of the open-loop cases.
    pub rate: u64,
}

/// One case's results.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The case.
    pub case: Case,
    /// The engine's figures.
    pub engine: Measurement,
    /// The raw baseline's figures.
    pub baseline: Measurement,
}

impl CaseResult {
    /// engine / baseline for throughput and latency percentiles.
    pub fn ratios(&self) -> Vec<(&'static str, f64)> {
        let mut ratios = vec![
            ("msgs_per_s", self.engine.msgs_per_s / self.baseline.msgs_per_s.max(1e-9)),
            ("mb_per_s", self.engine.mb_per_s / self.baseline.mb_per_s.max(1e-9)),
        ];
        if let (Some(engine), Some(baseline)) = (&self.engine.latency, &self.baseline.latency) {
            for (name, q) in [("p50", 0.5), ("p99", 0.99), ("p999", 0.999)] {
                ratios.push((name, engine.quantile_us(q) / baseline.quantile_us(q).max(1e-9)));
            }
        }
        ratios
    }

    /// The JSON object `{"name", "engine", "baseline", "ratio"}`.
    pub fn to_json(&self) -> Value {
        let ratio: serde_json::Map<String, Value> =
            self.ratios().into_iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        json!({
            "name": self.case.name(),
            "engine": self.engine.to_json(),
            "baseline": self.baseline.to_json(),
            "baseline_is": self.case.baseline(),
            "ratio": Value::Object(ratio),
        })
    }
}

/// Run the cases; `progress` is told what is running.
pub fn run(config: &SuiteConfig, mut progress: impl FnMut(&str)) -> Result<Vec<CaseResult>> {
    let root = match &config.dir {
        Some(dir) => tempfile::Builder::new().prefix("tidelog-bench-").tempdir_in(dir)?,
        None => tempfile::Builder::new().prefix("tidelog-bench-").tempdir()?,
    };
    // Every side starts on a quiet disk: `sync` first, so the writeback of what an earlier
    // side wrote (gigabytes, for the throughput case) does not land in a later side's tail.
    let mut progress = |step: &str| {
        nix::unistd::sync();
        progress(step);
    };
    let mut results = Vec::new();
    for &case in &config.cases {
        if let Some(result) = run_streaming_case(config, case, root.path(), &mut progress)? {
            results.push(result);
            continue;
        }
        progress(&format!("{}: engine", case.name()));
        let engine_dir = root.path().join(format!("{}-engine", case.name()));
        let (engine, stats) = run_engine(config, case, &engine_dir)?;
        std::fs::remove_dir_all(&engine_dir).ok();
        progress(&format!("{}: baseline", case.name()));
        let baseline = run_baseline(config, case, root.path(), &stats)?;
        results.push(CaseResult { case, engine, baseline });
    }
    Ok(results)
}

/// What the engine's partitions did, summed: sizes the baselines.
#[derive(Debug, Clone, Copy, Default)]
struct EngineIo {
    stats: PartitionStats,
    partitions: u32,
}

impl EngineIo {
    fn bytes_per_write(&self) -> usize {
        (self.stats.log_write_bytes / self.stats.log_writes.max(1)) as usize
    }
    fn bytes_per_sync(&self) -> usize {
        (self.stats.log_write_bytes / self.stats.syncs.max(1)) as usize
    }
}

fn topic_config() -> TopicConfig {
    TopicConfig::default().retention_ms(None)
}

/// The end-to-end and scaling cases (`None` for the others).
fn run_streaming_case(
    config: &SuiteConfig,
    case: Case,
    root: &Path,
    progress: &mut impl FnMut(&str),
) -> Result<Option<CaseResult>> {
    let dir = |side: &str| root.join(format!("{}-{side}", case.name()));
    let e2e = |side: &str, durability, delivery| -> Result<Measurement> {
        let run = streaming::open_loop(
            &config.engine,
            &dir(side),
            config.rate,
            1024,
            durability,
            delivery,
            config.duration,
        )?;
        std::fs::remove_dir_all(dir(side)).ok();
        let mut measurement = run.end_to_end;
        let publish = run.publish;
        measurement.notes.push(("publish_p50_us".into(), publish.quantile_us(0.5)));
        measurement.notes.push(("publish_p99_us".into(), publish.quantile_us(0.99)));
        // Where the end-to-end tail is: the producer's lateness, or after the append call.
        for (name, latency) in
            [("send_lateness", &run.send_lateness), ("from_send", &run.from_send)]
        {
            for (q, label) in [(0.5, "p50"), (0.99, "p99"), (0.999, "p999")] {
                measurement.notes.push((format!("{name}_{label}_us"), latency.quantile_us(q)));
            }
        }
        Ok(measurement)
    };
    let raw = |durable: bool| -> Result<Measurement> {
        let factory = config.engine.storage_factory()?;
        let path = root.join(format!("{}-baseline", case.name()));
        let size = topic_config().segment_size_bytes;
        let mut file = RawFile::create(
            factory.create()?,
            &path,
            size,
            config.engine.segment_preparation,
            config.engine.direct_io,
        )?;
        let measurement = if durable {
            file.write_sync_qd1(4096, config.duration)?
        } else {
            file.write_qd1(4096, config.duration)?
        };
        drop(file);
        std::fs::remove_file(&path).ok();
        Ok(measurement)
    };
    let streaming = Delivery::Streaming;
    let result = match case {
        Case::EndToEndLatency1k => {
            progress(&format!("{}: engine", case.name()));
            let engine = e2e("engine", Durability::None, streaming)?;
            progress(&format!("{}: baseline", case.name()));
            CaseResult { case, engine, baseline: raw(false)? }
        }
        Case::EndToEndLatency1kDurable => {
            progress(&format!("{}: engine", case.name()));
            let mut engine = e2e("engine", Durability::Durable, streaming)?;
            progress(&format!("{}: baseline", case.name()));
            let baseline = raw(true)?;
            if let (Some(e), Some(b)) = (&engine.latency, &baseline.latency) {
                let over = e.quantile_us(0.99) - b.quantile_us(0.99);
                engine.notes.push(("p99_over_baseline_us".into(), over));
            }
            CaseResult { case, engine, baseline }
        }
        Case::MicroBatchVsStreaming => {
            progress(&format!("{}: streaming", case.name()));
            let engine = e2e("streaming", Durability::None, streaming)?;
            progress(&format!("{}: micro-batch:100ms", case.name()));
            let baseline = e2e(
                "micro-batch",
                Durability::None,
                Delivery::MicroBatch(Duration::from_millis(100)),
            )?;
            CaseResult { case, engine, baseline }
        }
        Case::ShardScaling => {
            progress(&format!("{}: 2 shards", case.name()));
            let engine = streaming::cpu_bound(&config.engine, &dir("two"), 2, config.duration)?;
            std::fs::remove_dir_all(dir("two")).ok();
            progress(&format!("{}: 1 shard", case.name()));
            let baseline = streaming::cpu_bound(&config.engine, &dir("one"), 1, config.duration)?;
            std::fs::remove_dir_all(dir("one")).ok();
            CaseResult { case, engine, baseline }
        }
        _ => return Ok(None),
    };
    Ok(Some(result))
}

fn run_engine(config: &SuiteConfig, case: Case, dir: &Path) -> Result<(Measurement, EngineIo)> {
    let engine = Engine::open(dir, config.engine.clone()).context("open the engine")?;
    let (partitions, producers, in_flight, durability, value_bytes, per_append) = match case {
        Case::DurableAppendQd1_4k => (1, 1, 1, Durability::Durable, 4096, 1),
        Case::DurableAppendConcurrent1k => (1, 2, 32, Durability::Durable, 1024, 1),
        Case::AppendThroughput1k => {
            (engine.shard_count() as u32, engine.shard_count(), 64, Durability::Written, 1024, 16)
        }
        other => bail!("{} is not an append case", other.name()),
    };
    engine.create_topic("bench", topic_config().partitions(partitions))?;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let threads: Vec<_> = (0..producers)
        .map(|producer| {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                produce(
                    &engine,
                    producer as u32 % partitions,
                    in_flight,
                    durability,
                    value_bytes,
                    per_append,
                    &stop,
                )
            })
        })
        .collect();
    std::thread::sleep(config.duration);
    stop.store(true, Ordering::Relaxed);
    let mut latency = Latency::default();
    let mut appends = 0u64;
    for thread in threads {
        let (count, histogram) =
            thread.join().map_err(|_| anyhow::anyhow!("producer panicked"))??;
        appends += count;
        latency.merge(&histogram);
    }
    let elapsed = started.elapsed();
    let mut io = EngineIo { partitions, ..EngineIo::default() };
    for partition in 0..partitions {
        let stats = engine.partition_info("bench", partition)?.stats;
        io.stats.log_writes += stats.log_writes;
        io.stats.log_write_bytes += stats.log_write_bytes;
        io.stats.syncs += stats.syncs;
    }
    engine.close()?;
    let records = appends * per_append as u64;
    let mut measurement = Measurement::throughput(records, records * value_bytes as u64, elapsed);
    measurement.latency = Some(latency);
    measurement.notes.push(("appends".into(), appends as f64));
    measurement.notes.push(("bytes_per_write".into(), io.bytes_per_write() as f64));
    measurement.notes.push(("bytes_per_fdatasync".into(), io.bytes_per_sync() as f64));
    measurement.notes.push(("writes".into(), io.stats.log_writes as f64));
    measurement.notes.push(("fdatasyncs".into(), io.stats.syncs as f64));
    Ok((measurement, io))
}

/// Records the moment a `Pending` completes (on the shard's thread) and wakes its producer.
struct Timed {
    done_at: Mutex<Option<Instant>>,
    producer: std::thread::Thread,
}

impl Wake for Timed {
    fn wake(self: Arc<Self>) {
        if let Ok(mut at) = self.done_at.lock() {
            at.get_or_insert_with(Instant::now);
        }
        self.producer.unpark();
    }
}

fn produce(
    engine: &Engine,
    partition: u32,
    in_flight: usize,
    durability: Durability,
    value_bytes: usize,
    per_append: usize,
    stop: &AtomicBool,
) -> Result<(u64, Latency)> {
    let value = vec![0x42u8; value_bytes];
    let records: Vec<Record<'_>> = (0..per_append).map(|_| Record::new(&value)).collect();
    let mut latency = Latency::default();
    let mut count = 0u64;
    let mut pending: VecDeque<(Instant, Arc<Timed>, Pending<AppendResult>)> = VecDeque::new();
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        while !stopping && pending.len() < in_flight {
            let timed =
                Arc::new(Timed { done_at: Mutex::new(None), producer: std::thread::current() });
            let mut ack = engine.append_async("bench", partition, &records, durability);
            let waker = Waker::from(timed.clone());
            // Register the waker; a completed append is recorded on the spot.
            if let Poll::Ready(result) =
                std::pin::Pin::new(&mut ack).poll(&mut Context::from_waker(&waker))
            {
                result?;
                latency.record(Duration::ZERO);
                count += 1;
                continue;
            }
            pending.push_back((Instant::now(), timed, ack));
        }
        if pending.is_empty() {
            break;
        }
        let mut progressed = false;
        let mut i = 0;
        while i < pending.len() {
            let done_at = pending[i].1.done_at.lock().ok().and_then(|at| *at);
            match done_at {
                Some(at) => {
                    let (sent, _, ack) = pending.remove(i).context("pending entry")?;
                    let result = ack.wait()?;
                    if result.record_count() != per_append as u64 {
                        bail!("append of {per_append} records returned {result:?}");
                    }
                    latency.record(at.saturating_duration_since(sent));
                    count += 1;
                    progressed = true;
                }
                None => i += 1,
            }
        }
        if !progressed {
            std::thread::park_timeout(Duration::from_millis(10));
        }
    }
    Ok((count, latency))
}

use std::future::Future as _;

fn run_baseline(
    config: &SuiteConfig,
    case: Case,
    root: &Path,
    io: &EngineIo,
) -> Result<Measurement> {
    let factory = config.engine.storage_factory()?;
    let size = topic_config().segment_size_bytes;
    let path = root.join(format!("{}-baseline", case.name()));
    // The baseline file is prepared as the engine prepares its segments.
    let preparation = config.engine.segment_preparation;
    let mut file =
        RawFile::create(factory.create()?, &path, size, preparation, config.engine.direct_io)?;
    let align = |n: usize| {
        if file.is_direct() { tidelog_io::buffer::round_up_to_block(n.max(1)) } else { n.max(1) }
    };
    let mut measurement = match case {
        Case::DurableAppendQd1_4k => file.write_sync_qd1(4096, config.duration)?,
        Case::DurableAppendConcurrent1k => {
            let block = align(io.bytes_per_sync());
            let mut m = file.write_sync_qd1(block, config.duration)?;
            m.notes.push(("block_bytes".into(), block as f64));
            m
        }
        Case::AppendThroughput1k => {
            let block = align(io.bytes_per_write());
            let depth = io.partitions.max(1) as usize;
            let mut m = file.write_bandwidth(block, depth, config.duration)?;
            m.notes.push(("block_bytes".into(), block as f64));
            m.notes.push(("queue_depth".into(), depth as f64));
            m
        }
        other => bail!("{} has no append baseline", other.name()),
    };
    drop(file);
    std::fs::remove_file(&path).ok();
    measurement.notes.push(("direct".into(), f64::from(u8::from(config.engine.direct_io))));
    Ok(measurement)
}

/// The suite's results as the JSON `tidelog bench --json` writes.
pub fn to_json(config: &SuiteConfig, results: &[CaseResult], backend: &str) -> Value {
    json!({
        "io_backend": backend,
        "direct_io": config.engine.direct_io,
        "inline_sync": config.engine.inline_sync,
        "segment_preparation": config.engine.segment_preparation.name(),
        "shard_scheduler_slice_us": config.engine.shard_scheduler_slice.map(|s| s.as_micros() as u64),
        "idle_poll_us": config.engine.idle_poll.as_micros() as u64,
        "shards": config.engine.shards,
        "duration_s": config.duration.as_secs_f64(),
        "cases": results.iter().map(CaseResult::to_json).collect::<Vec<_>>(),
    })
}

/// A plain-text table of the results.
pub fn table(results: &[CaseResult]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<30} {:>9} {:>12} {:>10} {:>10} {:>10} {:>10}\n",
        "case", "side", "msgs/s", "MB/s", "p50 µs", "p99 µs", "p99.9 µs"
    ));
    for result in results {
        for (side, m) in [("engine", &result.engine), ("baseline", &result.baseline)] {
            let q = |quantile| {
                m.latency
                    .as_ref()
                    .map_or("-".to_string(), |l| format!("{:.0}", l.quantile_us(quantile)))
            };
            out.push_str(&format!(
                "{:<30} {:>9} {:>12.0} {:>10.1} {:>10} {:>10} {:>10}\n",
                result.case.name(),
                side,
                m.msgs_per_s,
                m.mb_per_s,
                q(0.5),
                q(0.99),
                q(0.999)
            ));
        }
        let ratios: Vec<String> =
            result.ratios().iter().map(|(k, v)| format!("{k} {v:.2}")).collect();
        out.push_str(&format!("{:<30} {:>9} {}\n", result.case.name(), "ratio", ratios.join("  ")));
    }
    out
}
