//! `tidelog loadgen`: drive an embedded engine with producers and a consumer, verify every
//! record, and report throughput and latency.
//!
//! The command line ([`LoadgenArgs`]) is parsed into a [`LoadgenConfig`]; [`run`] takes only
//! the config, so other front ends (benchmarks, tests) can drive it, and later knobs (open-loop
//! `--rate`, consumer groups, `--delivery`, late and poison fractions) slot in as config fields
//! and [`Scenario`]s.

mod consumer;
mod message;
mod producer;
mod report;
mod signal;
mod verify;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use hdrhistogram::Histogram;
use tidelog_core::record::{BATCH_HEADER_SIZE, RECORD_OVERHEAD_MAX};
use tidelog_core::{
    Durability, Engine, EngineConfig, IoChoice, SegmentPreparation, TopicConfig, limits,
};

use crate::duration::parse_duration;
pub use report::Report;

/// The topic a run creates.
pub const TOPIC: &str = "loadgen";

/// Run length when neither `--count` nor `--duration` is given.
pub const DURATION_DEFAULT: Duration = Duration::from_secs(5);

/// Outstanding appends per producer by default, for every durability.
///
/// `written` and `none` need depth to overlap the producer's encoding with the shard's work.
/// `durable` needs it most: appends that arrive while an `fdatasync` is in flight share the
/// next one (group commit), so depth is what turns one sync per append into one per window.
/// Measured on the 2-vCPU development VM (1 producer, 1024-byte messages, portable backend,
/// release build): in-flight 1 → 3.5k msgs/s at p50 240 µs; 16 → 35k msgs/s at p50 390 µs;
/// 64 → 104k msgs/s at p50 500 µs; 256 → 146k msgs/s at p50 1.5 ms. 64 is the knee: 30× the
/// throughput of 1 for twice its median latency.
pub const IN_FLIGHT_DEFAULT: usize = 64;

/// Latencies are recorded in nanoseconds, 1 ns to 1 hour, 3 significant digits.
const LATENCY_NS_MAX: u64 = 3_600_000_000_000;

/// What a run exercises.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Producers append; one consumer reads every partition back and verifies every record.
    #[default]
    EndToEnd,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::EndToEnd => "end-to-end",
        }
    }
}

/// When producers stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopAfter {
    /// This many messages in total.
    Count(u64),
    /// Sending for this long.
    Duration(Duration),
}

/// Everything a run needs, independent of the command line.
#[derive(Clone, Debug)]
pub struct LoadgenConfig {
    pub scenario: Scenario,
    /// Data directory to use and keep; `None`: a temporary one.
    pub dir: Option<PathBuf>,
    pub producers: u32,
    pub partitions: u32,
    /// Bytes of each record value.
    pub message_size_bytes: usize,
    pub stop: StopAfter,
    /// Messages sent (and verified) before measuring starts, split across producers like
    /// `--count`: they move the run past start-up effects (the first segment of a partition is
    /// never prepared) and count in neither throughput nor latency.
    pub warmup_messages: u64,
    pub durability: Durability,
    pub io: IoChoice,
    /// Shards; `None`: the engine's default.
    pub shards: Option<usize>,
    /// Records per append.
    pub batch_records: u32,
    /// Most appends outstanding per producer.
    pub in_flight: usize,
    /// Segment size of the topic; `None`: the engine's default.
    pub segment_size_bytes: Option<u64>,
    /// How the engine prepares segments ahead of the writer; `None`: the engine's default.
    pub segment_preparation: Option<SegmentPreparation>,
    /// Print live progress on stderr.
    pub progress: bool,
}

impl LoadgenConfig {
    /// Check the config; the error says which flag is wrong and why.
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(self.producers >= 1, "--producers must be at least 1");
        ensure!(
            (1..=limits::PARTITIONS_PER_TOPIC_MAX).contains(&self.partitions),
            "--partitions must be 1..={}",
            limits::PARTITIONS_PER_TOPIC_MAX
        );
        ensure!(
            self.message_size_bytes >= message::HEADER_BYTES,
            "--message-size must be at least {} bytes: the header the consumer verifies",
            message::HEADER_BYTES
        );
        ensure!(
            (1..=limits::BATCH_RECORDS_MAX).contains(&(self.batch_records as usize)),
            "--batch must be 1..={}",
            limits::BATCH_RECORDS_MAX
        );
        ensure!(self.in_flight >= 1, "--in-flight must be at least 1");
        if let StopAfter::Count(count) = self.stop {
            ensure!(count >= 1, "--count must be at least 1");
        }
        let batch = self.batch_size_bytes_max();
        if let Some(segment) = self.segment_size_bytes {
            let sizes = limits::SEGMENT_SIZE_BYTES_MIN..=limits::SEGMENT_SIZE_BYTES_MAX;
            ensure!(
                sizes.contains(&segment),
                "--segment-size-bytes must be {}..={}",
                sizes.start(),
                sizes.end()
            );
            ensure!(
                batch <= segment,
                "--batch {} of --message-size {} makes batches of up to {batch} bytes, more than --segment-size-bytes {segment}",
                self.batch_records,
                self.message_size_bytes
            );
        }
        ensure!(
            batch <= u64::from(limits::BATCH_SIZE_BYTES_MAX),
            "--batch {} of --message-size {} makes batches of up to {batch} bytes, above the {}-byte limit",
            self.batch_records,
            self.message_size_bytes,
            limits::BATCH_SIZE_BYTES_MAX
        );
        Ok(())
    }

    /// Producer `id`'s share of `total` messages.
    fn share(&self, total: u64, id: u32) -> u64 {
        let producers = u64::from(self.producers);
        total / producers + u64::from(u64::from(id) < total % producers)
    }

    /// Upper bound on an encoded batch of `batch_records` messages.
    fn batch_size_bytes_max(&self) -> u64 {
        let record = (self.message_size_bytes + RECORD_OVERHEAD_MAX) as u64;
        BATCH_HEADER_SIZE as u64 + u64::from(self.batch_records) * record
    }

    /// The segment preparation the engine runs with.
    fn segment_preparation(&self) -> SegmentPreparation {
        self.segment_preparation.unwrap_or(EngineConfig::default().segment_preparation)
    }

    /// The topic a run creates: the default, with room for the largest batch.
    fn topic_config(&self) -> TopicConfig {
        let needed = u32::try_from(self.batch_size_bytes_max()).unwrap_or(u32::MAX);
        let mut config = TopicConfig::default().partitions(self.partitions);
        if let Some(bytes) = self.segment_size_bytes {
            config = config.segment_size_bytes(bytes);
        }
        // The default largest batch, unless segments are smaller; never below what a run sends
        // (validate() checked that fits a segment).
        let segment = u32::try_from(config.segment_size_bytes).unwrap_or(u32::MAX);
        let record_max = config.record_size_bytes_max.min(segment).max(needed);
        config.record_size_bytes_max(record_max)
    }
}

/// Counters and hand-offs shared by the threads of a run.
#[derive(Debug)]
pub struct Shared {
    /// Time zero: send and ack times are nanoseconds since it.
    pub start: Instant,
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub verified: AtomicU64,
    aborted: AtomicBool,
    /// Per partition, the offset the consumer must reach: set once the producers are done.
    pub targets: OnceLock<Vec<u64>>,
    /// Producers still warming up.
    warming_up: AtomicU32,
    /// When measuring started (ns since `start`); `u64::MAX` while warming up.
    measure_from_ns: AtomicU64,
}

impl Shared {
    fn new(warming_up: u32) -> Self {
        Shared {
            start: Instant::now(),
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            verified: AtomicU64::new(0),
            aborted: AtomicBool::new(false),
            targets: OnceLock::new(),
            warming_up: AtomicU32::new(warming_up),
            measure_from_ns: AtomicU64::new(if warming_up == 0 { 0 } else { u64::MAX }),
        }
    }

    /// Messages sent at or after this time (ns since `start`) are measured.
    pub fn measure_from_ns(&self) -> u64 {
        self.measure_from_ns.load(Ordering::Acquire)
    }

    /// A producer's warm-up messages are all acknowledged: wait until every producer's are (or
    /// the run aborts), then measuring starts.
    pub fn finish_warmup(&self) {
        if self.warming_up.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.measure_from_ns.store(self.now_ns(), Ordering::Release);
        }
        while self.measure_from_ns() == u64::MAX && !self.aborted() {
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Stop everything: an error happened.
    pub fn abort(&self) {
        self.aborted.store(true, Ordering::Release);
    }

    pub fn aborted(&self) -> bool {
        self.aborted.load(Ordering::Acquire)
    }
}

/// An empty latency histogram (nanoseconds).
pub fn latency_histogram() -> Histogram<u64> {
    // Constant, valid bounds (low >= 1, high >= 2 * low, 3 significant digits): cannot fail.
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3).expect("valid histogram bounds")
}

/// Run a load test as `config` says. `Err` when it could not run (bad config, engine failed
/// to open); violations and engine errors during the run are in the [`Report`].
pub fn run(config: &LoadgenConfig) -> anyhow::Result<Report> {
    config.validate()?;
    let temporary;
    let dir = match &config.dir {
        Some(dir) => dir.clone(),
        None => {
            temporary = tempfile::Builder::new()
                .prefix("tidelog-loadgen-")
                .tempdir()
                .context("creating a temporary data directory")?;
            temporary.path().to_path_buf()
        }
    };
    let mut engine_config =
        EngineConfig::default().io(config.io).segment_preparation(config.segment_preparation());
    if let Some(shards) = config.shards {
        engine_config = engine_config.shards(shards);
    }
    let engine = Engine::open(&dir, engine_config)
        .with_context(|| format!("opening an engine in {}", dir.display()))?;
    if engine.topics().iter().any(|t| t == TOPIC) {
        let _ = engine.close();
        bail!(
            "{} already holds a topic {TOPIC:?}: loadgen needs a fresh one (delete it with `tidelog topics delete {TOPIC} --dir {}`, or use another --dir)",
            dir.display(),
            dir.display()
        );
    }
    let result = run_on(&engine, config);
    let closed = engine.close();
    let mut report = result?;
    if let Err(err) = closed {
        report.errors.push(format!("closing the engine failed: {err}"));
    }
    report.dir = config.dir.clone();
    Ok(report)
}

fn run_on(engine: &Engine, config: &LoadgenConfig) -> anyhow::Result<Report> {
    engine
        .create_topic(TOPIC, config.topic_config())
        .with_context(|| format!("creating topic {TOPIC:?}"))?;
    let shared = Shared::new(if config.warmup_messages > 0 { config.producers } else { 0 });
    let plans: Vec<producer::ProducerPlan> = (0..config.producers)
        .map(|id| producer::ProducerPlan {
            id,
            partitions: producer::partitions_of(id, config.producers, config.partitions),
            warmup_messages: config.share(config.warmup_messages, id),
            messages: match config.stop {
                StopAfter::Count(count) => Some(config.share(count, id)),
                StopAfter::Duration(_) => None,
            },
            duration: match config.stop {
                StopAfter::Duration(duration) => Some(duration),
                StopAfter::Count(_) => None,
            },
        })
        .collect();
    let mut progress = Progress::new(config.progress, &shared);
    let (producers, produce_ns, consumer, finish_ns) = std::thread::scope(|scope| {
        let consumer = std::thread::Builder::new()
            .name("loadgen-consumer".into())
            .spawn_scoped(scope, || {
                consumer::Consumer::new(
                    engine,
                    TOPIC,
                    config.producers,
                    config.partitions,
                    config.message_size_bytes,
                    &shared,
                )
                .run()
            })
            .context("starting the consumer thread")?;
        let mut handles = Vec::new();
        for plan in plans {
            let shared = &shared;
            let handle = std::thread::Builder::new()
                .name(format!("loadgen-producer-{}", plan.id))
                .spawn_scoped(scope, move || producer::run(engine, TOPIC, config, plan, shared))
                .context("starting a producer thread")?;
            handles.push(handle);
        }
        while handles.iter().any(|h| !h.is_finished()) {
            progress.tick(false);
        }
        let producers: Vec<producer::ProducerOutcome> = handles.into_iter().map(join).collect();
        let produce_ns = shared.now_ns();
        let mut targets = vec![0u64; config.partitions as usize];
        for acks in producers.iter().flat_map(|p| &p.partitions) {
            let target = &mut targets[acks.partition as usize];
            *target = (*target).max(acks.end_offset);
        }
        let _ = shared.targets.set(targets);
        // It may be asleep waiting for reads that have nothing left to return.
        consumer.thread().unpark();
        while !consumer.is_finished() {
            progress.tick(true);
        }
        let consumer = join(consumer);
        let finish_ns = shared.now_ns();
        progress.finish();
        anyhow::Ok((producers, produce_ns, consumer, finish_ns))
    })?;

    // Without warm-up, 0. With it, set unless the run aborted while warming up: then the
    // whole run is the measured window (and it failed anyway).
    let measure_from_ns = match shared.measure_from_ns() {
        u64::MAX => 0,
        ns => ns.min(produce_ns),
    };

    // Lost: acknowledged, never consumed.
    let mut violations = consumer.violations;
    let partitions = config.partitions as usize;
    for (id, producer) in producers.iter().enumerate() {
        for acks in &producer.partitions {
            let tracker = &consumer.sequences[id * partitions + acks.partition as usize];
            violations.lost += acks.acked.saturating_sub(tracker.received());
        }
    }
    let mut publish_latency = latency_histogram();
    let mut errors = Vec::new();
    for producer in &producers {
        // Both histograms have the same bounds, so adding cannot fail.
        publish_latency.add(&producer.publish_latency).expect("same histogram bounds");
        errors.extend(producer.error.clone());
    }
    errors.extend(consumer.error.clone());
    Ok(Report {
        scenario: config.scenario,
        producers: config.producers,
        consumers: 1,
        partitions: config.partitions,
        message_size_bytes: config.message_size_bytes,
        batch_records: config.batch_records,
        in_flight: config.in_flight,
        segment_size_bytes: config.topic_config().segment_size_bytes,
        segment_preparation: config.segment_preparation(),
        durability: config.durability,
        io_backend: engine.backend(),
        shards: engine.shard_count(),
        messages_sent: producers.iter().map(|p| p.sent).sum(),
        messages_acked: producers.iter().map(|p| p.acked).sum(),
        messages_verified: consumer.verified,
        violations,
        samples: consumer.samples,
        errors,
        warmup_messages: config.warmup_messages,
        warmup: Duration::from_nanos(measure_from_ns),
        duration: Duration::from_nanos(finish_ns - measure_from_ns),
        produce_duration: Duration::from_nanos(produce_ns - measure_from_ns),
        publish_latency,
        end_to_end_latency: consumer.end_to_end_latency,
        dir: None,
    })
}

/// Join a thread, passing a panic on (a panic there is a bug, not a result).
fn join<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// The live progress line on stderr, updated once a second.
struct Progress<'a> {
    enabled: bool,
    terminal: bool,
    shared: &'a Shared,
    last_at: Instant,
    last_sent: u64,
    last_verified: u64,
    printed: bool,
}

impl<'a> Progress<'a> {
    const INTERVAL: Duration = Duration::from_secs(1);

    fn new(enabled: bool, shared: &'a Shared) -> Self {
        Progress {
            enabled,
            terminal: std::io::stderr().is_terminal(),
            shared,
            last_at: Instant::now(),
            last_sent: 0,
            last_verified: 0,
            printed: false,
        }
    }

    /// Sleep a little; print when a second has passed.
    fn tick(&mut self, catching_up: bool) {
        std::thread::sleep(Duration::from_millis(20));
        if !self.enabled || self.last_at.elapsed() < Self::INTERVAL {
            return;
        }
        let now = Instant::now();
        let seconds = now.duration_since(self.last_at).as_secs_f64();
        let sent = self.shared.sent.load(Ordering::Relaxed);
        let acked = self.shared.acked.load(Ordering::Relaxed);
        let verified = self.shared.verified.load(Ordering::Relaxed);
        let line = format!(
            "{:>6.1} s  sent {sent} ({:.0}/s)  acked {acked}  verified {verified} ({:.0}/s){}",
            self.shared.start.elapsed().as_secs_f64(),
            (sent - self.last_sent) as f64 / seconds,
            (verified - self.last_verified) as f64 / seconds,
            if catching_up { "  consumer catching up" } else { "" },
        );
        let mut stderr = std::io::stderr().lock();
        let _ = if self.terminal {
            write!(stderr, "\r\x1b[2K{line}")
        } else {
            writeln!(stderr, "{line}")
        };
        let _ = stderr.flush();
        self.printed = true;
        self.last_at = now;
        self.last_sent = sent;
        self.last_verified = verified;
    }

    fn finish(&mut self) {
        if self.printed && self.terminal {
            let _ = writeln!(std::io::stderr());
        }
    }
}

/// `tidelog loadgen`: the command line.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Exits 0 when every acknowledged message was consumed exactly once, in order, intact; \
1 on any violation (lost, duplicated, reordered, corrupt, offset gaps) or engine error; \
2 when the run could not start.")]
pub struct LoadgenArgs {
    /// What to run. end-to-end: producers append; one consumer reads every partition from
    /// offset 0 and verifies every record
    #[arg(long, value_enum, default_value_t = Scenario::EndToEnd)]
    pub scenario: Scenario,

    /// Data directory to use and keep (default: a temporary directory, removed at the end).
    /// It must not hold a topic named `loadgen` already
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Producer threads. Producer i appends to partitions i, i+N, i+2N, … (N = producers), so
    /// each partition has one producer; with fewer partitions than producers, producer i
    /// shares partition i mod partitions
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub producers: u32,

    /// Partitions of the topic [default: one per producer]
    #[arg(long, value_name = "N")]
    pub partitions: Option<u32>,

    /// Bytes of each record's value (at least 32: producer, partition, sequence number, send
    /// time and checksum; the rest is filler the consumer regenerates and compares). MB/s
    /// counts these bytes, 1 MB = 10^6 bytes
    #[arg(long, value_name = "BYTES", default_value_t = 1024)]
    pub message_size: usize,

    /// Messages to send in total, split evenly across producers
    #[arg(long, value_name = "N", conflicts_with = "duration")]
    pub count: Option<u64>,

    /// How long producers send, as a number and a unit: ns, us, ms, s, m, h (500ms, 10s,
    /// 2m) [default: 5s, unless --count is given]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// When an append counts as acknowledged: none (the shard accepted it), written (its
    /// write completed: page cache), durable (an fdatasync covering it completed)
    #[arg(long, value_name = "none|written|durable", default_value = "written")]
    pub durability: Durability,

    /// I/O backend: auto (best available), uring (io_uring; fails if unavailable), portable
    /// (pread/pwrite/fdatasync)
    #[arg(long, value_name = "auto|uring|portable", default_value = "auto")]
    pub io: IoChoice,

    /// Shard threads in the engine [default: the CPUs this process may use]
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,

    /// Records per append call (one Kafka record batch)
    #[arg(long, value_name = "RECORDS", default_value_t = 1)]
    pub batch: u32,

    /// Most appends each producer keeps outstanding (closed loop). 64 by default for every
    /// durability: under `durable`, appends that arrive while an fdatasync is in flight share
    /// the next one (group commit), so depth is what buys throughput; use 1 to measure the
    /// latency of one append at a time
    #[arg(long, value_name = "N", default_value_t = IN_FLIGHT_DEFAULT)]
    pub in_flight: usize,

    /// Messages to send before measuring starts, split evenly across producers. They are
    /// verified like all others but count in neither throughput nor latency; --count and
    /// --duration apply to the measured part. Use it to get past start-up effects: a
    /// partition's first segment is never prepared (see --segment-preparation), so
    /// measuring a policy needs at least one segment's worth of warm-up
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub warmup_messages: u64,

    /// Segment size of the topic, in bytes: small segments exercise rolls and segment closes
    /// under load [default: the engine's, 268435456]
    #[arg(long, value_name = "BYTES")]
    pub segment_size_bytes: Option<u64>,

    /// How segments are prepared before the writer reaches them: grow (an empty file that
    /// appends extend), fallocate (the whole segment allocated, unwritten extents), zero-fill
    /// (zeros written over it in the background, so appends land in blocks that hold data)
    /// [default: the engine's, grow]
    #[arg(long, value_name = "grow|fallocate|zero-fill")]
    pub segment_preparation: Option<SegmentPreparation>,

    /// Also write the results as JSON to FILE
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// No live progress and no table; errors and violations still go to stderr
    #[arg(long)]
    pub quiet: bool,
}

impl LoadgenArgs {
    pub fn config(&self) -> LoadgenConfig {
        LoadgenConfig {
            scenario: self.scenario,
            dir: self.dir.clone(),
            producers: self.producers,
            partitions: self.partitions.unwrap_or(self.producers),
            message_size_bytes: self.message_size,
            stop: match (self.count, self.duration) {
                (Some(count), _) => StopAfter::Count(count),
                (None, Some(duration)) => StopAfter::Duration(duration),
                (None, None) => StopAfter::Duration(DURATION_DEFAULT),
            },
            warmup_messages: self.warmup_messages,
            durability: self.durability,
            io: self.io,
            shards: self.shards,
            batch_records: self.batch,
            in_flight: self.in_flight,
            segment_size_bytes: self.segment_size_bytes,
            segment_preparation: self.segment_preparation,
            progress: !self.quiet,
        }
    }
}

/// Run `tidelog loadgen`: print the table, write the JSON; the exit code says whether every
/// check passed.
pub fn command(args: &LoadgenArgs) -> anyhow::Result<std::process::ExitCode> {
    let config = args.config();
    let report = run(&config)?;
    if !args.quiet {
        print!("{}", report.table());
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report.json()).context("encoding the JSON")?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    let problems = report.problems();
    if problems.is_empty() {
        return Ok(std::process::ExitCode::SUCCESS);
    }
    eprintln!("loadgen FAILED:");
    for problem in &problems {
        eprintln!("  {problem}");
    }
    Ok(std::process::ExitCode::from(1))
}
