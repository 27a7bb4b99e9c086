//! The consumer thread: reads every partition from offset 0, verifies every record, and
//! measures end-to-end latency (send → consumed).
//!
//! Design: one long-poll read is outstanding on *every* partition at once
//! (`Engine::read_async` with `max_wait`), each polled once with a [`Signal`] that wakes this
//! thread when its shard answers. The thread sleeps until any read completes, handles all that
//! have, and re-issues them. A shard answers a parked read as soon as records become visible,
//! so the consumer learns of new records when they arrive on any partition — not after a
//! round-robin over other partitions' timeouts, which would add up to
//! `partitions × max_wait` to the measured latency. "Consumed" is the moment the fetch is
//! taken, one timestamp for all its records: the time spent verifying the records before a
//! given one is the consumer's own work, not the engine's delivery delay.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tidelog_core::{Engine, Fetch, Pending, ReadRequest};

use super::message;
use super::signal::Signal;
use super::verify::{Seen, SequenceTracker, Violations};
use super::{Shared, latency_histogram};

/// How long one read waits in the shard for records to arrive.
const READ_WAIT: Duration = Duration::from_millis(500);

/// After the producers are done: give up when no record arrives for this long, and report the
/// acknowledged messages not consumed as lost.
pub const CATCH_UP_STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What the consumer found.
#[derive(Debug)]
pub struct ConsumerOutcome {
    /// Records that verified (duplicates not counted).
    pub verified: u64,
    /// Everything but `lost`, which needs the producers' acknowledgements.
    pub violations: Violations,
    /// Per (producer, partition), at `producer * partitions + partition`.
    pub sequences: Vec<SequenceTracker>,
    pub end_to_end_latency: Histogram<u64>,
    /// The first few violations, described.
    pub samples: Vec<String>,
    pub error: Option<String>,
}

/// Violations described in detail, at most.
const SAMPLES_MAX: usize = 5;

struct PartitionRead {
    /// The offset expected next (offsets are dense from 0).
    next_offset: u64,
    pending: Option<Pending<Fetch>>,
    signal: Arc<Signal>,
}

pub struct Consumer<'a> {
    engine: &'a Engine,
    topic: &'a str,
    producers: u32,
    message_size_bytes: usize,
    shared: &'a Shared,
    reads: Vec<PartitionRead>,
    outcome: ConsumerOutcome,
}

impl<'a> Consumer<'a> {
    pub fn new(
        engine: &'a Engine,
        topic: &'a str,
        producers: u32,
        partitions: u32,
        message_size_bytes: usize,
        shared: &'a Shared,
    ) -> Self {
        let reads = (0..partitions)
            .map(|_| PartitionRead {
                next_offset: 0,
                pending: None,
                signal: Signal::for_current_thread(shared.start),
            })
            .collect();
        Consumer {
            engine,
            topic,
            producers,
            message_size_bytes,
            shared,
            reads,
            outcome: ConsumerOutcome {
                verified: 0,
                violations: Violations::default(),
                sequences: vec![
                    SequenceTracker::default();
                    producers as usize * partitions as usize
                ],
                end_to_end_latency: latency_histogram(),
                samples: Vec::new(),
                error: None,
            },
        }
    }

    /// Consume until every partition reaches the target offset the producers leave (see
    /// [`Shared::targets`]), the run aborts, or no record arrives for
    /// [`CATCH_UP_STALL_TIMEOUT`] after the producers finished.
    pub fn run(mut self) -> ConsumerOutcome {
        let mut last_progress = Instant::now();
        let mut targets_seen = false;
        loop {
            let targets = self.shared.targets.get();
            if targets.is_some() && !targets_seen {
                targets_seen = true;
                last_progress = Instant::now();
            }
            let caught_up = |read: &PartitionRead, partition: usize| {
                targets.is_some_and(|t| read.next_offset >= t[partition])
            };
            if self.shared.aborted()
                || self.reads.iter().enumerate().all(|(p, read)| caught_up(read, p))
            {
                break;
            }
            let mut progressed = false;
            for partition in 0..self.reads.len() {
                if self.reads[partition].pending.is_none()
                    && !caught_up(&self.reads[partition], partition)
                {
                    progressed |= self.issue(partition);
                }
            }
            for partition in 0..self.reads.len() {
                let read = &mut self.reads[partition];
                if read.signal.fired_ns().is_none() {
                    continue;
                }
                let Some(pending) = read.pending.take() else { continue };
                match pending.try_take() {
                    Ok(result) => progressed |= self.handle(partition, result),
                    // The shard stores the result before it wakes the signal.
                    Err(pending) => self.reads[partition].pending = Some(pending),
                }
            }
            if progressed {
                last_progress = Instant::now();
            } else if targets_seen && last_progress.elapsed() >= CATCH_UP_STALL_TIMEOUT {
                let behind: Vec<String> = self
                    .reads
                    .iter()
                    .enumerate()
                    .filter(|&(p, read)| !caught_up(read, p))
                    .map(|(p, read)| {
                        let target = targets.map_or(0, |t| t[p]);
                        format!("{p} at offset {} of {target}", read.next_offset)
                    })
                    .collect();
                self.fail(format!(
                    "the consumer received nothing for {} s after the producers finished; partitions behind: {}",
                    CATCH_UP_STALL_TIMEOUT.as_secs(),
                    behind.join(", ")
                ));
                break;
            } else {
                // Woken by any read's signal; the timeout only bounds a missed wake-up.
                std::thread::park_timeout(READ_WAIT);
            }
        }
        self.outcome
    }

    /// Start a long-poll read on `partition`. True if it completed at once with records.
    fn issue(&mut self, partition: usize) -> bool {
        let read = &mut self.reads[partition];
        read.signal.reset();
        let request = ReadRequest::new(read.next_offset).max_wait(READ_WAIT);
        let mut pending = self.engine.read_async(self.topic, partition as u32, request);
        match read.signal.poll(&mut pending) {
            Poll::Ready(result) => self.handle(partition, result),
            Poll::Pending => {
                read.pending = Some(pending);
                false
            }
        }
    }

    /// Verify a fetch. True if it held records.
    fn handle(&mut self, partition: usize, result: tidelog_core::Result<Fetch>) -> bool {
        let received_ns = self.shared.now_ns();
        let fetch = match result {
            Ok(fetch) => fetch,
            Err(err) => {
                let at = self.reads[partition].next_offset;
                self.fail(format!("read {}/{partition} at offset {at} failed: {err}", self.topic));
                return false;
            }
        };
        if fetch.is_empty() {
            return false;
        }
        let partitions = self.reads.len();
        let mut verified = 0u64;
        for record in fetch.records() {
            let record = match record {
                Ok(record) => record,
                Err(err) => {
                    self.outcome.violations.corrupt += 1;
                    self.fail(format!(
                        "a fetch from {}/{partition} holds an undecodable record: {err}",
                        self.topic
                    ));
                    break;
                }
            };
            let offset = record.offset() as u64;
            let expected = self.reads[partition].next_offset;
            if offset != expected {
                self.outcome.violations.offset_violations += 1;
                self.sample(format!(
                    "partition {partition}: record at offset {offset}, expected offset {expected}"
                ));
            }
            self.reads[partition].next_offset = offset + 1;
            let message = match message::verify(record.value(), self.message_size_bytes) {
                Ok(message) => message,
                Err(corruption) => {
                    self.outcome.violations.corrupt += 1;
                    self.sample(format!("partition {partition} offset {offset}: {corruption}"));
                    continue;
                }
            };
            let id = message.id;
            if id.partition as usize != partition || id.producer >= self.producers {
                self.outcome.violations.corrupt += 1;
                self.sample(format!(
                    "partition {partition} offset {offset}: message of producer {} for partition {} found here",
                    id.producer, id.partition
                ));
                continue;
            }
            let tracker =
                &mut self.outcome.sequences[id.producer as usize * partitions + partition];
            match tracker.observe(id.sequence) {
                Seen::InOrder => {}
                Seen::Gap { missing } => self.sample(format!(
                    "partition {partition} offset {offset}: producer {} sequence {} follows a gap of {missing}",
                    id.producer, id.sequence
                )),
                Seen::Reordered => {
                    self.outcome.violations.reordered += 1;
                    self.sample(format!(
                        "partition {partition} offset {offset}: producer {} sequence {} arrived after later ones",
                        id.producer, id.sequence
                    ));
                }
                Seen::Duplicate => {
                    self.outcome.violations.duplicated += 1;
                    self.sample(format!(
                        "partition {partition} offset {offset}: producer {} sequence {} seen before",
                        id.producer, id.sequence
                    ));
                    continue;
                }
            }
            if message.send_ns >= self.shared.measure_from_ns() {
                let latency = received_ns.saturating_sub(message.send_ns).max(1);
                self.outcome.end_to_end_latency.saturating_record(latency);
            }
            verified += 1;
        }
        // Continue after the last record returned, whatever happened to it.
        let read = &mut self.reads[partition];
        read.next_offset = read.next_offset.max(fetch.next_offset());
        self.outcome.verified += verified;
        self.shared.verified.fetch_add(verified, Ordering::Relaxed);
        true
    }

    fn sample(&mut self, description: String) {
        if self.outcome.samples.len() < SAMPLES_MAX {
            self.outcome.samples.push(description);
        }
    }

    fn fail(&mut self, error: String) {
        if self.outcome.error.is_none() {
            self.outcome.error = Some(error);
        }
        self.shared.abort();
    }
}
