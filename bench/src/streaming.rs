//! End-to-end cases: an open-loop producer at a fixed rate, a consumer reading everything, the
//! latency from each message's *scheduled* send time to its consumption (so a stalled
//! producer cannot hide a stall: coordinated omission is not possible), and CPU-bound
//! throughput with producers running on the shards.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use tidelog_core::{
    AppendResult, Consumer, ConsumerConfig, Delivery, Durability, Engine, EngineConfig,
    LocalTarget, Pending, Record, ShardContext, ShardTask, TaskPoll, TopicConfig,
};

use crate::stats::{Latency, Measurement};

/// Bytes at the start of each message: its scheduled send time, then the time the producer
/// actually handed it to the engine, each in ns since the run's origin.
const STAMP_BYTES: usize = 16;

/// Most appends a producer keeps in flight before it waits for the oldest (its waiting then
/// shows as latency: messages are late against their schedule).
const IN_FLIGHT_MAX: usize = 4096;

/// Let the open-loop producer sleep precisely (the default 50 µs timer slack would add up to
/// 50 µs to every sleep).
fn precise_sleeps() {
    let _ = nix::sys::prctl::set_timerslack(1);
}

/// Sleep until `deadline`. No spinning: on two cores a spinning producer takes the CPU a
/// shard needs, and the shard then waits for the scheduler (milliseconds). With the timer
/// slack at 1 ns a sleep ends within a few microseconds of its deadline; any lateness is
/// measured anyway, since latency counts from the scheduled time.
fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        std::thread::sleep(deadline - now);
    }
}

/// The outcome of one open-loop run.
#[derive(Debug)]
pub struct EndToEnd {
    /// Throughput and end-to-end latency.
    pub end_to_end: Measurement,
    /// Publish latency (scheduled send to acknowledgement).
    pub publish: Latency,
    /// How late the producer handed each message to the engine (scheduled send to the
    /// append call): the producer's own share of the end-to-end latency.
    pub send_lateness: Latency,
    /// From the append call to consumption: the end-to-end latency less the producer's
    /// lateness.
    pub from_send: Latency,
}

/// Produce `message_bytes` messages at `rate` per second for `duration` to a topic with one
/// partition per shard, consume them with `delivery`, and measure.
pub fn open_loop(
    engine_config: &EngineConfig,
    dir: &Path,
    rate: u64,
    message_bytes: usize,
    durability: Durability,
    delivery: Delivery,
    duration: Duration,
) -> Result<EndToEnd> {
    precise_sleeps();
    let engine = Engine::open(dir, engine_config.clone()).context("open the engine")?;
    let partitions = engine.shard_count() as u32;
    engine.create_topic("e2e", TopicConfig::default().partitions(partitions).retention_ms(None))?;
    let origin = Instant::now() + Duration::from_millis(20);
    let total = (rate as f64 * duration.as_secs_f64()) as u64;
    let consumed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let consumer = {
        let engine = engine.clone();
        let (consumed, stop) = (consumed.clone(), stop.clone());
        std::thread::spawn(move || -> Result<(Latency, Latency)> {
            precise_sleeps();
            let assignments: Vec<(u32, u64)> = (0..partitions).map(|p| (p, 0)).collect();
            let config = ConsumerConfig { delivery, ..ConsumerConfig::default() };
            let mut consumer = Consumer::new(&engine, "e2e", &assignments, config)?;
            let (mut latency, mut from_send) = (Latency::default(), Latency::default());
            while consumed.load(Ordering::Relaxed) < total && !stop.load(Ordering::Relaxed) {
                for fetch in consumer.poll(Duration::from_millis(50))? {
                    let now = Instant::now();
                    for record in fetch.records() {
                        let value = record?.value().unwrap_or_default();
                        let stamp: [u8; STAMP_BYTES] = value
                            .get(..STAMP_BYTES)
                            .and_then(|s| s.try_into().ok())
                            .context("short message")?;
                        let at = |bytes: &[u8]| -> Instant {
                            let ns = u64::from_le_bytes(bytes.try_into().unwrap_or([0; 8]));
                            origin + Duration::from_nanos(ns)
                        };
                        latency.record(now.saturating_duration_since(at(&stamp[..8])));
                        from_send.record(now.saturating_duration_since(at(&stamp[8..])));
                        consumed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok((latency, from_send))
        })
    };
    // The producer: message i is due at origin + i / rate.
    let interval_ns = 1e9 / rate as f64;
    let mut value = vec![0x42u8; message_bytes.max(STAMP_BYTES)];
    let mut in_flight: VecDeque<(Instant, Pending<AppendResult>)> = VecDeque::new();
    let mut publish = Latency::default();
    let mut send_lateness = Latency::default();
    let reap = |in_flight: &mut VecDeque<(Instant, Pending<AppendResult>)>,
                publish: &mut Latency,
                wait: bool|
     -> Result<()> {
        while let Some((scheduled, pending)) = in_flight.pop_front() {
            match pending.try_take() {
                Ok(result) => {
                    result?;
                    publish.record(Instant::now().saturating_duration_since(scheduled));
                }
                Err(pending) if wait => {
                    pending.wait()?;
                    publish.record(Instant::now().saturating_duration_since(scheduled));
                }
                Err(pending) => {
                    in_flight.push_front((scheduled, pending));
                    break;
                }
            }
        }
        Ok(())
    };
    for i in 0..total {
        let due_ns = (i as f64 * interval_ns) as u64;
        let scheduled = origin + Duration::from_nanos(due_ns);
        sleep_until(scheduled);
        value[..8].copy_from_slice(&due_ns.to_le_bytes());
        let sent = Instant::now();
        send_lateness.record(sent.saturating_duration_since(scheduled));
        let sent_ns = u64::try_from(sent.saturating_duration_since(origin).as_nanos()).unwrap_or(0);
        value[8..STAMP_BYTES].copy_from_slice(&sent_ns.to_le_bytes());
        let partition = (i % u64::from(partitions)) as u32;
        in_flight.push_back((
            scheduled,
            engine.append_async("e2e", partition, &[Record::new(&value)], durability),
        ));
        reap(&mut in_flight, &mut publish, false)?;
        if in_flight.len() >= IN_FLIGHT_MAX {
            // Waiting makes later messages late against their schedule: that lateness is
            // measured, not hidden.
            if let Some((scheduled, pending)) = in_flight.pop_front() {
                match pending.wait_timeout(Duration::from_secs(30)) {
                    Ok(result) => {
                        result?;
                        publish.record(Instant::now().saturating_duration_since(scheduled));
                    }
                    Err(_) => {
                        let states: Vec<String> = (0..partitions)
                            .map(|p| {
                                format!(
                                    "{:?}",
                                    engine.partition_info("e2e", p).map(|i| i.pending_io)
                                )
                            })
                            .collect();
                        bail!(
                            "an append was not acknowledged within 30 s; partitions: {}",
                            states.join("; ")
                        );
                    }
                }
            }
        }
    }
    reap(&mut in_flight, &mut publish, true)?;
    let produced_in = origin.elapsed();
    // Give the consumer a bounded time to catch up.
    let deadline = Instant::now() + Duration::from_secs(10);
    while consumed.load(Ordering::Relaxed) < total && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    let (latency, from_send) =
        consumer.join().map_err(|_| anyhow::anyhow!("consumer panicked"))??;
    engine.close()?;
    let got = consumed.load(Ordering::Relaxed);
    if got != total {
        bail!("consumed {got} of {total} messages");
    }
    let mut end_to_end = Measurement::throughput(total, total * message_bytes as u64, produced_in);
    end_to_end.notes.push(("rate_msgs_per_s".into(), rate as f64));
    end_to_end.latency = Some(latency);
    Ok(EndToEnd { end_to_end, publish, send_lateness, from_send })
}

/// A producer on a shard: appends batches of small records as fast as the shard takes them.
struct CpuBoundProducer {
    target: LocalTarget,
    records_per_batch: usize,
    value: Vec<u8>,
    in_flight: VecDeque<Pending<AppendResult>>,
    appended: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl ShardTask for CpuBoundProducer {
    fn poll(&mut self, ctx: &mut ShardContext<'_>) -> TaskPoll {
        if self.stop.load(Ordering::Relaxed) {
            return TaskPoll::Done;
        }
        while let Some(front) = self.in_flight.pop_front() {
            match front.try_take() {
                Ok(Ok(result)) => {
                    self.appended.fetch_add(result.record_count(), Ordering::Relaxed);
                }
                Ok(Err(_)) => return TaskPoll::Done,
                Err(front) => {
                    self.in_flight.push_front(front);
                    break;
                }
            }
        }
        // A few batches per round, so the shard's own work (writes, completions) interleaves.
        for _ in 0..4 {
            if self.in_flight.len() >= 64 {
                break;
            }
            let records: Vec<Record<'_>> =
                (0..self.records_per_batch).map(|_| Record::new(&self.value)).collect();
            self.in_flight.push_back(ctx.append(&self.target, &records, Durability::None));
        }
        TaskPoll::Ready
    }
}

/// CPU-bound appends (100-byte records, batches of 100, `None`) by producers running on the
/// shards, one partition per shard: records per second with `shards` shards.
pub fn cpu_bound(
    engine_config: &EngineConfig,
    dir: &Path,
    shards: usize,
    duration: Duration,
) -> Result<Measurement> {
    let engine =
        Engine::open(dir, engine_config.clone().shards(shards)).context("open the engine")?;
    engine.create_topic(
        "cpu",
        TopicConfig::default().partitions(shards as u32).retention_bytes(Some(256 << 20)),
    )?;
    let appended = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    for partition in 0..shards as u32 {
        let target = engine.local_target("cpu", partition)?;
        let task = CpuBoundProducer {
            target: target.clone(),
            records_per_batch: 100,
            value: vec![7u8; 100],
            in_flight: VecDeque::new(),
            appended: appended.clone(),
            stop: stop.clone(),
        };
        engine.spawn_on_shard(target.shard(), Box::new(task))?;
    }
    let started = Instant::now();
    std::thread::sleep(duration);
    let records = appended.load(Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    engine.close()?;
    let mut measurement = Measurement::throughput(records, records * 100, elapsed);
    measurement.notes.push(("shards".into(), shards as f64));
    Ok(measurement)
}
