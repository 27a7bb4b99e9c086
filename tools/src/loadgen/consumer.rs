//! Consumer threads: each reads its share of the partitions from offset 0 with a
//! [`tidelog_core::Consumer`] (streaming or micro-batch delivery), verifies every record, and
//! measures end-to-end latency (send → consumed; in open loop, *scheduled* send → consumed).
//!
//! Consumer `c` of `C` reads partitions `c, c + C, c + 2C, …`, so every partition has exactly
//! one consumer, and each checks offsets, order and content of its partitions on its own;
//! [`merge`] puts their findings together at the end. "Consumed" is the moment `poll` returns
//! the fetch, one timestamp for all its records: the time spent verifying the records before a
//! given one is the consumer's own work, not the engine's delivery delay. It includes the
//! consumer thread's wake-up — a real consumer sees a record only once its thread runs.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tidelog_core::{Consumer, ConsumerConfig, Delivery, Engine, Fetch, limits};

use super::message;
use super::verify::{Seen, SequenceTracker, Violations};
use super::{LoadgenConfig, Shared, TOPIC, latency_histogram, precise_sleeps};

/// Longest one `poll` waits: how soon a consumer with nothing to read notices that the run is
/// over.
const POLL_TIMEOUT: Duration = Duration::from_millis(20);

/// After the producers are done: give up when no record arrives for this long, and report the
/// acknowledged messages not consumed as lost.
pub const CATCH_UP_STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What a consumer found.
#[derive(Debug)]
pub struct ConsumerOutcome {
    /// Records that verified (duplicates not counted).
    pub verified: u64,
    /// Everything but `lost`, which needs the producers' acknowledgements.
    pub violations: Violations,
    /// Per (producer, partition), at `producer * partitions + partition`; only the consumer's
    /// own partitions are filled in.
    pub sequences: Vec<SequenceTracker>,
    pub end_to_end_latency: Histogram<u64>,
    /// The first few violations, described.
    pub samples: Vec<String>,
    pub error: Option<String>,
}

/// Violations described in detail, at most (per consumer, and in the merged outcome).
const SAMPLES_MAX: usize = 5;

/// The partitions consumer `id` of `consumers` reads: `id, id + consumers, …`.
pub fn partitions_of(id: u32, consumers: u32, partitions: u32) -> Vec<u32> {
    (id..partitions).step_by(consumers as usize).collect()
}

/// The consumer settings for `delivery`. A micro-batch reads each partition once per
/// trigger, so its fetch may be as large as the engine allows: at the default 1 MiB a
/// 100 ms trigger could not keep up with 10 MB/s on one partition, and the backlog would pass
/// for latency. A streaming consumer reads again as soon as a fetch is handled: the default.
pub fn consumer_config(delivery: Delivery) -> ConsumerConfig {
    let max_bytes = match delivery {
        Delivery::Streaming => ConsumerConfig::default().max_bytes,
        Delivery::MicroBatch(_) => limits::FETCH_BYTES_MAX,
    };
    ConsumerConfig { delivery, max_bytes, ..ConsumerConfig::default() }
}

/// Put the consumers' findings together: each partition's sequences come from the consumer
/// that read it.
pub fn merge(
    outcomes: Vec<(Vec<u32>, ConsumerOutcome)>,
    producers: u32,
    partitions: u32,
) -> ConsumerOutcome {
    let mut merged = ConsumerOutcome {
        verified: 0,
        violations: Violations::default(),
        sequences: vec![SequenceTracker::default(); producers as usize * partitions as usize],
        end_to_end_latency: latency_histogram(),
        samples: Vec::new(),
        error: None,
    };
    for (read, outcome) in outcomes {
        merged.verified += outcome.verified;
        merged.violations.add(&outcome.violations);
        for &partition in &read {
            for producer in 0..producers as usize {
                let at = producer * partitions as usize + partition as usize;
                merged.sequences[at] = outcome.sequences[at].clone();
            }
        }
        // Both histograms have the same bounds, so adding cannot fail.
        merged.end_to_end_latency.add(&outcome.end_to_end_latency).expect("same histogram bounds");
        let room = SAMPLES_MAX - merged.samples.len();
        merged.samples.extend(outcome.samples.into_iter().take(room));
        if merged.error.is_none() {
            merged.error = outcome.error;
        }
    }
    merged
}

/// One consumer thread's state.
pub struct Verifier<'a> {
    id: u32,
    producers: u32,
    partitions: u32,
    message_size_bytes: usize,
    shared: &'a Shared,
    /// The partitions it reads.
    read: Vec<u32>,
    /// Per partition, the offset expected next (offsets are dense from 0).
    next_offsets: Vec<u64>,
    outcome: ConsumerOutcome,
}

/// Run consumer `id` on this thread: read `read` until every one reaches the target offset
/// the producers leave (see [`Shared::targets`]), the run aborts, or no record arrives for
/// [`CATCH_UP_STALL_TIMEOUT`] after the producers finished.
pub fn run(
    engine: &Engine,
    config: &LoadgenConfig,
    id: u32,
    read: Vec<u32>,
    shared: &Shared,
) -> ConsumerOutcome {
    precise_sleeps();
    let mut verifier = Verifier {
        id,
        producers: config.producers,
        partitions: config.partitions,
        message_size_bytes: config.message_size_bytes,
        shared,
        next_offsets: vec![0; config.partitions as usize],
        outcome: ConsumerOutcome {
            verified: 0,
            violations: Violations::default(),
            sequences: vec![
                SequenceTracker::default();
                config.producers as usize * config.partitions as usize
            ],
            end_to_end_latency: latency_histogram(),
            samples: Vec::new(),
            error: None,
        },
        read,
    };
    let assignments: Vec<(u32, u64)> = verifier.read.iter().map(|&p| (p, 0)).collect();
    let mut consumer =
        match Consumer::new(engine, TOPIC, &assignments, consumer_config(config.delivery)) {
            Ok(consumer) => consumer,
            Err(err) => {
                verifier.fail(format!("consumer {id}: could not start: {err}"));
                return verifier.outcome;
            }
        };
    verifier.consume(&mut consumer);
    verifier.outcome
}

impl Verifier<'_> {
    fn consume(&mut self, consumer: &mut Consumer) {
        let mut last_progress = Instant::now();
        let mut targets_seen = false;
        loop {
            let targets = self.shared.targets.get();
            if targets.is_some() && !targets_seen {
                targets_seen = true;
                last_progress = Instant::now();
            }
            let behind: Vec<u32> = self
                .read
                .iter()
                .copied()
                .filter(|&p| targets.is_none_or(|t| self.next_offsets[p as usize] < t[p as usize]))
                .collect();
            if self.shared.aborted() || behind.is_empty() {
                break;
            }
            let fetches = match consumer.poll(POLL_TIMEOUT) {
                Ok(fetches) => fetches,
                Err(err) => {
                    self.fail(format!("consumer {}: reading {TOPIC} failed: {err}", self.id));
                    break;
                }
            };
            let received_ns = self.shared.now_ns();
            let mut progressed = false;
            for fetch in &fetches {
                progressed |= self.handle(fetch, received_ns);
            }
            if progressed {
                last_progress = Instant::now();
            } else if targets_seen && last_progress.elapsed() >= CATCH_UP_STALL_TIMEOUT {
                let behind: Vec<String> = behind
                    .iter()
                    .map(|&p| {
                        let target = targets.map_or(0, |t| t[p as usize]);
                        format!("{p} at offset {} of {target}", self.next_offsets[p as usize])
                    })
                    .collect();
                self.fail(format!(
                    "consumer {} received nothing for {} s after the producers finished; partitions behind: {}",
                    self.id,
                    CATCH_UP_STALL_TIMEOUT.as_secs(),
                    behind.join(", ")
                ));
                break;
            }
        }
    }

    /// Verify a fetch. True if it held records.
    fn handle(&mut self, fetch: &Fetch, received_ns: u64) -> bool {
        if fetch.is_empty() {
            return false;
        }
        let partition = fetch.partition() as usize;
        if !self.read.contains(&fetch.partition()) {
            self.fail(format!(
                "consumer {} was handed partition {partition}, which it does not read",
                self.id
            ));
            return false;
        }
        let partitions = self.partitions as usize;
        let mut verified = 0u64;
        for record in fetch.records() {
            let record = match record {
                Ok(record) => record,
                Err(err) => {
                    self.outcome.violations.corrupt += 1;
                    self.fail(format!(
                        "a fetch from {}/{partition} holds an undecodable record: {err}",
                        TOPIC
                    ));
                    break;
                }
            };
            let offset = record.offset() as u64;
            let expected = self.next_offsets[partition];
            if offset != expected {
                self.outcome.violations.offset_violations += 1;
                self.sample(format!(
                    "partition {partition}: record at offset {offset}, expected offset {expected}"
                ));
            }
            self.next_offsets[partition] = offset + 1;
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
        let next = &mut self.next_offsets[partition];
        *next = (*next).max(fetch.next_offset());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_partition_has_one_consumer() {
        assert_eq!(partitions_of(0, 2, 5), vec![0, 2, 4]);
        assert_eq!(partitions_of(1, 2, 5), vec![1, 3]);
        assert_eq!(partitions_of(0, 1, 3), vec![0, 1, 2]);
        assert_eq!(partitions_of(2, 3, 3), vec![2]);
    }
}
