//! Consumers: read a set of partitions from chosen offsets, in one of two delivery modes.
//!
//! - [`Delivery::Streaming`] (the default): every partition has a long-poll read parked in its
//!   shard; the shard answers it as soon as records become visible (their writes completed —
//!   or, with [`Isolation::Durable`], their `fdatasync` did), and [`Consumer::poll`] returns as
//!   soon as any partition has records. Latency is one write completion plus a wake-up.
//! - [`Delivery::MicroBatch`]: records are handed over on a fixed interval, as Spark
//!   Structured Streaming's micro-batches are: at each trigger every partition is read up to
//!   what is visible then, and `poll` returns all of it together. Latency is up to one interval
//!   by design; throughput per call is higher.
//!
//! A consumer is used from one thread; make one per thread. The fetches it returns are views
//! of the stored bytes (no copy per record).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use crate::completion::Pending;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::limits;
use crate::partition::{Fetch, Isolation, ReadRequest, Subscription};

/// How a consumer hands records over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Delivery {
    /// As soon as records are visible.
    #[default]
    Streaming,
    /// Everything visible, once per interval.
    MicroBatch(Duration),
}

impl std::str::FromStr for Delivery {
    type Err = String;
    /// `streaming` or `micro-batch:<interval>` with the interval as `100ms`, `1s`, …
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s == "streaming" {
            return Ok(Delivery::Streaming);
        }
        let Some(interval) = s.strip_prefix("micro-batch:") else {
            return Err(format!(
                "unknown delivery {s:?}: expected streaming or micro-batch:<interval>"
            ));
        };
        let (number, unit) = interval
            .split_at(interval.find(|c: char| !c.is_ascii_digit()).unwrap_or(interval.len()));
        let n: u64 =
            number.parse().map_err(|_| format!("bad micro-batch interval {interval:?}"))?;
        let duration = match unit {
            "us" => Duration::from_micros(n),
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            _ => return Err(format!("bad micro-batch interval {interval:?}: use us, ms or s")),
        };
        if duration.is_zero() {
            return Err("the micro-batch interval must be positive".to_string());
        }
        Ok(Delivery::MicroBatch(duration))
    }
}

/// Consumer settings.
#[derive(Clone, Copy, Debug)]
pub struct ConsumerConfig {
    /// Delivery mode.
    pub delivery: Delivery,
    /// Most bytes per partition per read.
    pub max_bytes: usize,
    /// Which records are visible.
    pub isolation: Isolation,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            delivery: Delivery::Streaming,
            max_bytes: limits::FETCH_BYTES_DEFAULT,
            isolation: Isolation::Written,
        }
    }
}

/// How long a streaming consumer's parked reads wait before being renewed.
const PARK_WAIT: Duration = Duration::from_millis(500);

struct Assignment {
    next_offset: u64,
    read: Option<Pending<Fetch>>,
    /// Streaming: the standing read whose next reads the shard parks itself.
    subscription: Arc<Subscription>,
}

impl Assignment {
    fn new(next_offset: u64) -> Self {
        Self { next_offset, read: None, subscription: Subscription::new(PARK_WAIT) }
    }
}

/// Wakes the consumer's thread when a read completes.
struct ThreadWake(std::thread::Thread);

impl Wake for ThreadWake {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Reads a set of partitions of one topic. See the module documentation.
pub struct Consumer {
    engine: Engine,
    topic: String,
    config: ConsumerConfig,
    assignments: BTreeMap<u32, Assignment>,
    waker: Waker,
    next_trigger: Option<Instant>,
    /// A read that failed while other partitions had records: returned by the next `poll`,
    /// after those records.
    deferred_error: Option<Error>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("topic", &self.topic)
            .field("config", &self.config)
            .field("positions", &self.positions())
            .finish()
    }
}

impl Consumer {
    /// A consumer of `topic`'s partitions, each from its given offset.
    pub fn new(
        engine: &Engine,
        topic: &str,
        partitions: &[(u32, u64)],
        config: ConsumerConfig,
    ) -> Result<Consumer> {
        let topic_config = engine.topic_config(topic)?;
        if config.max_bytes == 0 || config.max_bytes > limits::FETCH_BYTES_MAX {
            return Err(Error::config(
                "max_bytes",
                format!("must be 1..={}", limits::FETCH_BYTES_MAX),
            ));
        }
        let mut assignments = BTreeMap::new();
        for &(partition, offset) in partitions {
            if partition >= topic_config.partitions {
                return Err(Error::PartitionOutOfRange {
                    topic: topic.to_string(),
                    partition,
                    partitions: topic_config.partitions,
                });
            }
            assignments.insert(partition, Assignment::new(offset));
        }
        Ok(Consumer {
            engine: engine.clone(),
            topic: topic.to_string(),
            config,
            assignments,
            waker: Waker::from(Arc::new(ThreadWake(std::thread::current()))),
            next_trigger: None,
            deferred_error: None,
        })
    }

    /// The next offset to be read, by partition.
    pub fn positions(&self) -> Vec<(u32, u64)> {
        self.assignments.iter().map(|(&p, a)| (p, a.next_offset)).collect()
    }

    /// Move a partition's position (the read in flight, if any, is discarded).
    pub fn seek(&mut self, partition: u32, offset: u64) -> Result<()> {
        let assignment = self.assignments.get_mut(&partition).ok_or_else(|| {
            Error::PartitionOutOfRange { topic: self.topic.clone(), partition, partitions: 0 }
        })?;
        // A new subscription: reads the shard parked for the old position go nowhere.
        *assignment = Assignment::new(offset);
        Ok(())
    }

    /// Wait up to `timeout` for records and return them, one fetch per partition that had
    /// any. An empty result means the timeout passed (streaming) or nothing arrived in the
    /// interval (micro-batch).
    pub fn poll(&mut self, timeout: Duration) -> Result<Vec<Fetch>> {
        if let Some(err) = self.deferred_error.take() {
            return Err(err);
        }
        match self.config.delivery {
            Delivery::Streaming => self.poll_streaming(timeout),
            Delivery::MicroBatch(interval) => self.poll_micro_batch(interval, timeout),
        }
    }

    fn request(&self, offset: u64, wait: Duration) -> ReadRequest {
        ReadRequest::new(offset)
            .max_bytes(self.config.max_bytes)
            .max_wait(wait)
            .isolation(self.config.isolation)
    }

    fn poll_streaming(&mut self, timeout: Duration) -> Result<Vec<Fetch>> {
        let deadline = Instant::now() + timeout;
        // The waker must wake *this* thread (a consumer may move between threads).
        self.waker = Waker::from(Arc::new(ThreadWake(std::thread::current())));
        loop {
            let mut out = Vec::new();
            let mut failed = None;
            let Consumer { engine, topic, config, assignments, waker, .. } = self;
            for (&partition, assignment) in assignments.iter_mut() {
                let read = assignment.read.get_or_insert_with(|| {
                    let request = ReadRequest::new(assignment.next_offset)
                        .max_bytes(config.max_bytes)
                        .max_wait(PARK_WAIT)
                        .isolation(config.isolation);
                    engine.subscription_read(
                        topic,
                        partition,
                        request,
                        assignment.subscription.clone(),
                    )
                });
                if let Poll::Ready(result) =
                    std::pin::Pin::new(read).poll(&mut Context::from_waker(waker))
                {
                    assignment.read = None;
                    let fetch = match result {
                        Ok(fetch) => fetch,
                        Err(err) => {
                            // The records other partitions returned are not dropped: they
                            // come first, the error with the next poll.
                            failed.get_or_insert(err);
                            continue;
                        }
                    };
                    if !fetch.is_empty() {
                        assignment.next_offset = fetch.next_offset();
                        // The shard parked the next read already (unless this consumer is
                        // too far behind): no request to send.
                        assignment.read = assignment.subscription.took();
                        out.push(fetch);
                    }
                }
            }
            if failed.is_some() || !out.is_empty() {
                return self.hand_over(out, failed);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(out);
            }
            // Only re-poll reads that completed empty (renewed above) or wake-ups.
            if self.assignments.values().all(|a| a.read.is_some()) {
                if self.engine.runs_manually() {
                    // Nobody else runs the shards: run them.
                    if !self.engine.step_all() {
                        std::thread::yield_now();
                    }
                } else {
                    std::thread::park_timeout(deadline - now);
                }
            }
        }
    }

    fn poll_micro_batch(&mut self, interval: Duration, timeout: Duration) -> Result<Vec<Fetch>> {
        let now = Instant::now();
        let trigger = *self.next_trigger.get_or_insert(now + interval);
        if trigger > now + timeout {
            std::thread::sleep(timeout);
            return Ok(Vec::new());
        }
        if trigger > now {
            std::thread::sleep(trigger - now);
        }
        // Next trigger on the fixed grid, skipping any missed while the caller was busy.
        let mut next = trigger + interval;
        let after = Instant::now();
        while next <= after {
            next += interval;
        }
        self.next_trigger = Some(next);
        // Read every partition up to what is visible now, all at once.
        let reads: Vec<(u32, Pending<Fetch>)> = self
            .assignments
            .iter()
            .map(|(&partition, a)| {
                (
                    partition,
                    self.engine.read_async(
                        &self.topic,
                        partition,
                        self.request(a.next_offset, Duration::ZERO),
                    ),
                )
            })
            .collect();
        let mut out = Vec::new();
        let mut failed = None;
        for (partition, read) in reads {
            let fetch = match read.wait() {
                Ok(fetch) => fetch,
                Err(err) => {
                    failed.get_or_insert(err);
                    continue;
                }
            };
            if !fetch.is_empty() {
                if let Some(assignment) = self.assignments.get_mut(&partition) {
                    assignment.next_offset = fetch.next_offset();
                }
                out.push(fetch);
            }
        }
        self.hand_over(out, failed)
    }

    /// The records read, or the read error if there are none: an error that came with
    /// records is kept for the next `poll`, so the records (whose positions have moved past
    /// them) are not dropped.
    fn hand_over(&mut self, out: Vec<Fetch>, failed: Option<Error>) -> Result<Vec<Fetch>> {
        match failed {
            Some(err) if out.is_empty() => Err(err),
            Some(err) => {
                self.deferred_error = Some(err);
                Ok(out)
            }
            None => Ok(out),
        }
    }
}

use std::future::Future as _;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_parses() {
        assert_eq!("streaming".parse::<Delivery>().unwrap(), Delivery::Streaming);
        assert_eq!(
            "micro-batch:100ms".parse::<Delivery>().unwrap(),
            Delivery::MicroBatch(Duration::from_millis(100))
        );
        assert_eq!(
            "micro-batch:2s".parse::<Delivery>().unwrap(),
            Delivery::MicroBatch(Duration::from_secs(2))
        );
        for bad in
            ["", "batch", "micro-batch:", "micro-batch:0ms", "micro-batch:5h", "micro-batch:x"]
        {
            assert!(bad.parse::<Delivery>().is_err(), "{bad}");
        }
    }

    fn written(engine: &Engine, value: String) -> u64 {
        let record = crate::Record::new(value.as_bytes());
        engine.append("t", 0, &[record], crate::Durability::Written).unwrap().base_offset
    }

    /// Takes records until `count` are in, checking they are `v0`, `v1`, … from `from`.
    fn take(consumer: &mut Consumer, from: usize, count: usize) {
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(20);
        while seen < count {
            assert!(Instant::now() < deadline, "only {seen} of {count} records arrived");
            for fetch in consumer.poll(Duration::from_millis(200)).unwrap() {
                for record in fetch.records() {
                    let value = record.unwrap().value().unwrap().to_vec();
                    assert_eq!(value, format!("v{}", from + seen).into_bytes());
                    seen += 1;
                }
            }
        }
        assert_eq!(seen, count, "more records than appended");
    }

    #[test]
    fn a_subscription_reads_ahead_a_bounded_number_of_fetches_and_loses_none() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path(), crate::EngineConfig::default().shards(1)).unwrap();
        engine.create_topic("t", crate::TopicConfig::default()).unwrap();
        // Small fetches, so a backlog spans many of them.
        let config = ConsumerConfig { max_bytes: 1, ..ConsumerConfig::default() };
        let mut consumer = Consumer::new(&engine, "t", &[(0, 0)], config).unwrap();
        written(&engine, "v0".into());
        take(&mut consumer, 0, 1);
        let subscription = consumer.assignments[&0].subscription.clone();
        // The shard parked the next read itself: the consumer holds it, nothing more queued.
        assert!(consumer.assignments[&0].read.is_some());
        assert_eq!((subscription.unread(), subscription.queued()), (0, 0));

        // A backlog the consumer does not read: the shard reads ahead only so far.
        for i in 1..200 {
            written(&engine, format!("v{i}"));
        }
        let _ = engine.partition_info("t", 0).unwrap(); // the shard has handled them all
        assert_eq!(subscription.unread(), limits::SUBSCRIPTION_FETCHES_AHEAD);
        assert!(subscription.queued() < limits::SUBSCRIPTION_FETCHES_AHEAD);
        // All of it arrives, in order, once the consumer reads.
        take(&mut consumer, 1, 199);
        assert_eq!(consumer.positions(), vec![(0, 200)]);

        // New records after the backlog still wake it (the chain restarted).
        written(&engine, "v200".into());
        take(&mut consumer, 200, 1);
        engine.close().unwrap();
    }

    /// One partition's read fails (its position is past its end) while another has records:
    /// the records are handed over — none skipped — and the error is reported too.
    #[test]
    fn a_failing_partition_does_not_swallow_another_partitions_records() {
        for delivery in [Delivery::Streaming, Delivery::MicroBatch(Duration::from_millis(20))] {
            let dir = tempfile::tempdir().unwrap();
            let engine =
                Engine::open(dir.path(), crate::EngineConfig::default().shards(2)).unwrap();
            engine.create_topic("t", crate::TopicConfig::default().partitions(2)).unwrap();
            for i in 0..5 {
                written(&engine, format!("v{i}"));
            }
            let config = ConsumerConfig { delivery, ..ConsumerConfig::default() };
            let mut consumer = Consumer::new(&engine, "t", &[(0, 0), (1, 100)], config).unwrap();
            let (mut values, mut errors) = (Vec::new(), 0);
            let deadline = Instant::now() + Duration::from_secs(20);
            while values.len() < 5 || errors == 0 {
                assert!(Instant::now() < deadline, "{delivery:?}: {values:?}, {errors} errors");
                match consumer.poll(Duration::from_millis(100)) {
                    Ok(fetches) => {
                        for fetch in fetches {
                            assert_eq!(fetch.partition(), 0);
                            for record in fetch.records() {
                                values.push(record.unwrap().value().unwrap().to_vec());
                            }
                        }
                    }
                    Err(Error::OffsetOutOfRange { partition: 1, .. }) => errors += 1,
                    Err(other) => panic!("{delivery:?}: {other}"),
                }
            }
            let expected: Vec<Vec<u8>> = (0..5).map(|i| format!("v{i}").into_bytes()).collect();
            assert_eq!(values, expected, "{delivery:?}");
            engine.close().unwrap();
        }
    }

    #[test]
    fn a_seek_drops_the_old_subscription() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path(), crate::EngineConfig::default().shards(1)).unwrap();
        engine.create_topic("t", crate::TopicConfig::default()).unwrap();
        let mut consumer =
            Consumer::new(&engine, "t", &[(0, 0)], ConsumerConfig::default()).unwrap();
        for i in 0..3 {
            written(&engine, format!("v{i}"));
        }
        take(&mut consumer, 0, 3);
        written(&engine, "v3".into());
        consumer.seek(0, 1).unwrap();
        take(&mut consumer, 1, 3);
        engine.close().unwrap();
    }
}
