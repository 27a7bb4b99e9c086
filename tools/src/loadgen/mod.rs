//! `tidelog loadgen`: drive an embedded engine with producers and consumers, verify every
//! record, and report throughput and latency.
//!
//! The command line ([`LoadgenArgs`]) is parsed into a [`LoadgenConfig`]; [`run`] takes only
//! the config, so other front ends (benchmarks, tests) can drive it, and later knobs (consumer
//! groups, late and poison fractions) slot in as config fields and [`Scenario`]s.
//!
//! Who does what: producers ([`producer`] threads, or [`pinned`] tasks on the shards) send the
//! appends of a [`schedule::Phase`] — as fast as their in-flight limit allows (closed loop,
//! `--max`) or each at its scheduled time (open loop, `--rate`); [`consumer`] threads, each
//! with its share of the partitions, read everything back and verify it ([`verify`],
//! [`message`]); [`report`] puts the results together.

mod consumer;
mod message;
mod pinned;
mod producer;
mod report;
mod schedule;
mod signal;
mod verify;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use hdrhistogram::Histogram;
use tidelog_core::record::{BATCH_HEADER_SIZE, RECORD_OVERHEAD_MAX};
use tidelog_core::{
    Delivery, Durability, Engine, EngineConfig, IoChoice, SegmentPreparation, TopicConfig, limits,
};

use crate::duration::parse_duration;
pub use report::Report;
pub use schedule::Pace;

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

/// In open loop, the first message is scheduled this long after measuring is set up (the
/// run's start, or the end of the warm-up), so that every producer — thread or shard task —
/// is running and waiting when it is due. Starting threads and tasks takes well under a
/// millisecond; a start that takes longer shows as lateness of the first messages.
pub const OPEN_LOOP_LEAD: Duration = Duration::from_millis(20);

/// What a run exercises.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Producer threads append through the shards' mailboxes; consumer threads read every
    /// partition back and verify every record.
    #[default]
    EndToEnd,
    /// Producers run on the shards that own their partitions, as shard tasks appending
    /// through the local path; consumer threads read and verify as in `end-to-end`.
    PinnedProducer,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::EndToEnd => "end-to-end",
            Scenario::PinnedProducer => "pinned-producer",
        }
    }
}

/// Let the calling thread's timed waits end on time: the default timer slack (50 µs) would
/// add up to 50 µs to every sleep of an open-loop producer, and to every wake-up it measures.
/// Waits stay sleeps: on two cores a spinning producer would take the shard's CPU.
pub fn precise_sleeps() {
    // Failing leaves the default slack: latencies are then a little worse, not wrong.
    let _ = nix::sys::prctl::set_timerslack(1);
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
    /// Consumer threads; consumer `c` reads partitions `c, c + consumers, …`.
    pub consumers: u32,
    pub partitions: u32,
    /// Closed loop, or open loop at a rate.
    pub pace: Pace,
    /// How consumers take records.
    pub delivery: Delivery,
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
            (1..=self.partitions).contains(&self.consumers),
            "--consumers must be 1..={} (--partitions): every consumer reads at least one partition",
            self.partitions
        );
        if let Pace::Rate { msgs_per_s } = self.pace {
            ensure!(
                msgs_per_s.is_finite() && msgs_per_s > 0.0,
                "--rate must be a positive number of messages per second"
            );
        }
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
    /// Senders (producer threads, or producer tasks on shards) still warming up.
    warming_up: AtomicU32,
    /// From the moment measuring is set up to when it starts: 0 in closed loop,
    /// [`OPEN_LOOP_LEAD`] in open loop.
    lead_ns: u64,
    /// When measuring starts (ns since `start`; may be ahead); `u64::MAX` while warming up.
    measure_from_ns: AtomicU64,
}

impl Shared {
    fn new(warming_up: u32, lead: Duration) -> Self {
        let lead_ns = lead.as_nanos() as u64;
        Shared {
            start: Instant::now(),
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            verified: AtomicU64::new(0),
            aborted: AtomicBool::new(false),
            targets: OnceLock::new(),
            warming_up: AtomicU32::new(warming_up),
            lead_ns,
            measure_from_ns: AtomicU64::new(if warming_up == 0 { lead_ns } else { u64::MAX }),
        }
    }

    /// Messages sent (in open loop: scheduled) at or after this time (ns since `start`) are
    /// measured.
    pub fn measure_from_ns(&self) -> u64 {
        self.measure_from_ns.load(Ordering::Acquire)
    }

    /// When the warm-up's first message is scheduled (open loop).
    pub fn warmup_origin_ns(&self) -> u64 {
        self.lead_ns
    }

    /// A sender's warm-up messages are all acknowledged. Measuring starts (a lead after) when
    /// every sender's are: wait for [`Shared::measuring_scheduled`].
    pub fn warmup_done(&self) {
        if self.warming_up.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.measure_from_ns.store(self.now_ns() + self.lead_ns, Ordering::Release);
        }
    }

    /// True once it is known when measuring starts.
    pub fn measuring_scheduled(&self) -> bool {
        self.measure_from_ns() != u64::MAX
    }

    /// When measuring starts: the origin of the measured phase's schedule. Now, if the run
    /// aborted while warming up.
    pub fn measure_origin_ns(&self) -> u64 {
        match self.measure_from_ns() {
            u64::MAX => self.now_ns(),
            ns => ns,
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
    // Everything that sends takes part in the warm-up barrier.
    let senders = match config.scenario {
        Scenario::EndToEnd => plans.len(),
        Scenario::PinnedProducer => pinned::task_count(engine, &plans),
    };
    let lead = match config.pace {
        Pace::Max => Duration::ZERO,
        Pace::Rate { .. } => OPEN_LOOP_LEAD,
    };
    let warming_up = if config.warmup_messages > 0 { senders as u32 } else { 0 };
    let shared = Arc::new(Shared::new(warming_up, lead));
    let mut progress = Progress::new(config.progress, &shared);
    let (producers, produce_ns, consumers, finish_ns) = std::thread::scope(|scope| {
        let mut consumers = Vec::new();
        for id in 0..config.consumers {
            let read = consumer::partitions_of(id, config.consumers, config.partitions);
            let shared = &*shared;
            let handle = std::thread::Builder::new()
                .name(format!("loadgen-consumer-{id}"))
                .spawn_scoped(scope, move || {
                    let outcome = consumer::run(engine, config, id, read.clone(), shared);
                    (read, outcome)
                });
            consumers.push(started(shared, "a consumer thread", handle)?);
        }
        let producers: Vec<producer::ProducerOutcome> = match config.scenario {
            Scenario::EndToEnd => {
                let mut handles = Vec::new();
                for plan in plans.iter().cloned() {
                    let producer_shared = shared.clone();
                    let handle = std::thread::Builder::new()
                        .name(format!("loadgen-producer-{}", plan.id))
                        .spawn_scoped(scope, move || {
                            producer::run(engine, config, plan, producer_shared)
                        });
                    handles.push(started(&shared, "a producer thread", handle)?);
                }
                while handles.iter().any(|h| !h.is_finished()) {
                    progress.tick(false);
                }
                handles.into_iter().map(join).collect()
            }
            Scenario::PinnedProducer => {
                pinned::run(engine, config, &plans, &shared, || progress.show(false))?
            }
        };
        let produce_ns = shared.now_ns();
        let mut targets = vec![0u64; config.partitions as usize];
        for acks in producers.iter().flat_map(|p| &p.partitions) {
            let target = &mut targets[acks.partition as usize];
            *target = (*target).max(acks.end_offset);
        }
        let _ = shared.targets.set(targets);
        while consumers.iter().any(|c| !c.is_finished()) {
            progress.tick(true);
        }
        let consumers: Vec<_> = consumers.into_iter().map(join).collect();
        let finish_ns = shared.now_ns();
        progress.finish();
        anyhow::Ok((producers, produce_ns, consumers, finish_ns))
    })?;
    let consumer = consumer::merge(consumers, config.producers, config.partitions);

    // Without warm-up, 0 (closed loop) or the open-loop lead. With it, set unless the run
    // aborted while warming up: then the whole run is the measured window (and it failed
    // anyway).
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
    let mut all = producer::ProducerOutcome::new(Vec::new());
    for producer in &producers {
        all.publish_latency.add(&producer.publish_latency).expect("same histogram bounds");
        all.send_lateness.add(&producer.send_lateness).expect("same histogram bounds");
    }
    let mut errors: Vec<String> = producers.iter().filter_map(|p| p.error.clone()).collect();
    errors.extend(consumer.error.clone());
    Ok(Report {
        scenario: config.scenario,
        producers: config.producers,
        consumers: config.consumers,
        partitions: config.partitions,
        pace: config.pace,
        delivery: config.delivery,
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
        publish_latency: all.publish_latency,
        send_lateness: all.send_lateness,
        end_to_end_latency: consumer.end_to_end_latency,
        dir: None,
    })
}

/// A thread started, or the error — after stopping the threads already started, which the
/// scope would otherwise wait for forever.
fn started<T>(shared: &Shared, what: &str, result: std::io::Result<T>) -> anyhow::Result<T> {
    result.with_context(|| format!("starting {what}")).inspect_err(|_| shared.abort())
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
        self.show(catching_up);
    }

    /// Print if a second has passed since the last line.
    fn show(&mut self, catching_up: bool) {
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
    /// What to run. end-to-end: producer threads append through the shards' mailboxes.
    /// pinned-producer: producers run on the shards that own their partitions, as shard tasks
    /// appending through the local path (the lowest-latency way to produce); publish latency
    /// is then measured to the acknowledgement as the shard sees it. In both, consumer threads
    /// read every partition from offset 0 and verify every record
    #[arg(long, value_enum, default_value_t = Scenario::EndToEnd)]
    pub scenario: Scenario,

    /// Data directory to use and keep (default: a temporary directory, removed at the end).
    /// It must not hold a topic named `loadgen` already
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Producers (threads; in pinned-producer, one task per shard a producer appends to).
    /// Producer i appends to partitions i, i+N, i+2N, … (N = producers), so each partition has
    /// one producer; with fewer partitions than producers, producer i shares partition
    /// i mod partitions
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub producers: u32,

    /// Consumer threads, splitting the partitions: consumer i reads partitions i, i+N, i+2N, …
    /// (N = consumers) and verifies them. At most --partitions
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub consumers: u32,

    /// Partitions of the topic [default: one per producer]
    #[arg(long, value_name = "N")]
    pub partitions: Option<u32>,

    /// Open loop: send this many messages per second in total, split evenly across
    /// producers, each producer's messages scheduled at a fixed interval. Publish and
    /// end-to-end latency are measured from the scheduled send time, so a stall cannot hide
    /// (no coordinated omission): a producer that falls behind sends at once, and its
    /// lateness counts. With --duration, every message scheduled within it is sent
    #[arg(long, value_name = "MSGS_PER_S", value_parser = parse_rate, conflicts_with = "max")]
    pub rate: Option<f64>,

    /// Closed loop (the default): each producer sends as fast as --in-flight allows, and
    /// latency is measured from the actual send
    #[arg(long)]
    pub max: bool,

    /// How consumers take records: streaming (each as soon as it is visible) or
    /// micro-batch:INTERVAL (everything visible, once per interval, as Spark Structured
    /// Streaming does; the interval in us, ms or s, e.g. micro-batch:100ms)
    #[arg(long, value_name = "streaming|micro-batch:<interval>", default_value = "streaming")]
    pub delivery: Delivery,

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

    /// Most appends each producer keeps outstanding. 64 by default for every durability:
    /// under `durable`, appends that arrive while an fdatasync is in flight share the next one
    /// (group commit), so depth is what buys throughput; use 1 to measure the latency of one
    /// append at a time (closed loop). In open loop a producer at the limit waits, and the
    /// wait shows as lateness: the limit must cover rate × acknowledgement time (20,000
    /// msgs/s × a 3 ms fdatasync = 60 under `durable`), or the producer falls behind for good
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
            consumers: self.consumers,
            partitions: self.partitions.unwrap_or(self.producers),
            pace: match self.rate {
                Some(msgs_per_s) => Pace::Rate { msgs_per_s },
                None => Pace::Max,
            },
            delivery: self.delivery,
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

/// `--rate`: a positive number of messages per second.
fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of messages per second"))?;
    if !rate.is_finite() || rate <= 0.0 {
        return Err(format!(
            "the rate must be a positive number of messages per second, not {text}"
        ));
    }
    Ok(rate)
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
