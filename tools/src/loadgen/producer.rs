//! A producer thread: appends verifiable messages to its partitions, keeping up to
//! `in_flight` appends outstanding, and measures publish latency (send → ack).

use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tidelog_core::{AppendResult, Engine, Pending, Record};

use super::message::{self, HEADER_BYTES, MessageId};
use super::signal::Signal;
use super::{LoadgenConfig, Shared, latency_histogram};

/// What one producer does.
#[derive(Clone, Debug)]
pub struct ProducerPlan {
    pub id: u32,
    /// Partitions it appends to, in turn.
    pub partitions: Vec<u32>,
    /// Messages to send before measuring (see [`LoadgenConfig::warmup_messages`]).
    pub warmup_messages: u64,
    /// Messages to send once measuring (`None`: for `duration`).
    pub messages: Option<u64>,
    /// How long to send once measuring.
    pub duration: Option<Duration>,
}

/// The partitions producer `id` of `producers` appends to: `id, id + producers, …` — every
/// partition has exactly one producer when there are at least as many partitions as
/// producers; otherwise producer `id` shares partition `id % partitions` with others.
pub fn partitions_of(id: u32, producers: u32, partitions: u32) -> Vec<u32> {
    if partitions >= producers {
        (id..partitions).step_by(producers as usize).collect()
    } else {
        vec![id % partitions]
    }
}

/// Acknowledgements of one partition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartitionAcks {
    pub partition: u32,
    /// Messages acknowledged (their sequence numbers are `0..acked`).
    pub acked: u64,
    /// One past the highest offset acknowledged.
    pub end_offset: u64,
}

/// What a producer did.
#[derive(Debug)]
pub struct ProducerOutcome {
    pub sent: u64,
    pub acked: u64,
    pub partitions: Vec<PartitionAcks>,
    pub publish_latency: Histogram<u64>,
    pub error: Option<String>,
}

/// An append made.
#[derive(Clone, Copy, Debug)]
struct Sent {
    send_ns: u64,
    /// Index into the plan's partitions.
    slot: usize,
    count: u64,
}

struct InFlight {
    pending: Pending<AppendResult>,
    signal: Arc<Signal>,
    sent: Sent,
}

/// Where a producer is in its stream of messages, across warm-up and measured phases.
struct Cursor {
    /// Message values, reused batch after batch.
    values: Vec<Vec<u8>>,
    /// Next sequence number per partition slot.
    sequences: Vec<u64>,
    /// The partition slot appended to next.
    turn: usize,
}

struct Producer<'a> {
    engine: &'a Engine,
    topic: &'a str,
    config: &'a LoadgenConfig,
    shared: &'a Shared,
    plan: ProducerPlan,
    in_flight: Vec<InFlight>,
    spare_signals: Vec<Arc<Signal>>,
    /// Record publish latencies (false while warming up).
    measuring: bool,
    outcome: ProducerOutcome,
}

pub fn run(
    engine: &Engine,
    topic: &str,
    config: &LoadgenConfig,
    plan: ProducerPlan,
    shared: &Shared,
) -> ProducerOutcome {
    let partitions =
        plan.partitions.iter().map(|&partition| PartitionAcks { partition, ..Default::default() });
    let outcome = ProducerOutcome {
        sent: 0,
        acked: 0,
        partitions: partitions.collect(),
        publish_latency: latency_histogram(),
        error: None,
    };
    let mut producer = Producer {
        engine,
        topic,
        config,
        shared,
        plan,
        in_flight: Vec::with_capacity(config.in_flight),
        spare_signals: Vec::new(),
        measuring: false,
        outcome,
    };
    producer.send_all();
    producer.outcome
}

impl Producer<'_> {
    fn send_all(&mut self) {
        let batch = self.config.batch_records as usize;
        let mut cursor = Cursor {
            values: vec![vec![0u8; self.config.message_size_bytes]; batch],
            sequences: vec![0u64; self.plan.partitions.len()],
            turn: 0,
        };
        if self.config.warmup_messages > 0 {
            // Every producer takes part, also one whose share is zero: measuring starts when
            // all of them are done.
            self.send(&mut cursor, Some(self.plan.warmup_messages), None);
            self.shared.finish_warmup();
        }
        self.measuring = true;
        // Every producer stops at the same moment: `duration` after measuring started (the
        // start of the run without warm-up; now, if the run aborted while warming up).
        let measure_from_ns = self.shared.measure_from_ns().min(self.shared.now_ns());
        let measure_from = self.shared.start + Duration::from_nanos(measure_from_ns);
        let deadline = self.plan.duration.map(|d| measure_from + d);
        self.send(&mut cursor, self.plan.messages, deadline);
    }

    /// Send `messages` (or until `deadline`) and wait for every acknowledgement.
    fn send(&mut self, cursor: &mut Cursor, messages: Option<u64>, deadline: Option<Instant>) {
        let batch = self.config.batch_records as usize;
        let Cursor { values, sequences, turn } = cursor;
        let mut remaining = messages;
        loop {
            self.reap(false);
            if self.shared.aborted() || remaining == Some(0) {
                break;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            if self.in_flight.len() >= self.config.in_flight {
                self.reap(true);
                continue;
            }
            let slot = *turn;
            *turn = (*turn + 1) % self.plan.partitions.len();
            let partition = self.plan.partitions[slot];
            let count = remaining.map_or(batch as u64, |r| r.min(batch as u64));
            let first = sequences[slot];
            let ids = (0..count).map(|k| MessageId {
                producer: self.plan.id,
                partition,
                sequence: first + k,
            });
            for (id, value) in ids.clone().zip(values.iter_mut()) {
                message::write_filler(id, &mut value[HEADER_BYTES..]);
            }
            let send_ns = self.shared.now_ns();
            for (id, value) in ids.zip(values.iter_mut()) {
                message::seal(value, id, send_ns);
            }
            let records: Vec<Record<'_>> =
                values[..count as usize].iter().map(|v| Record::new(v)).collect();
            let pending =
                self.engine.append_async(self.topic, partition, &records, self.config.durability);
            sequences[slot] += count;
            remaining = remaining.map(|r| r - count);
            self.outcome.sent += count;
            self.shared.sent.fetch_add(count, std::sync::atomic::Ordering::Relaxed);
            let signal = self.signal();
            self.track(InFlight { pending, signal, sent: Sent { send_ns, slot, count } });
        }
        while !self.in_flight.is_empty() {
            self.reap(true);
        }
    }

    fn signal(&mut self) -> Arc<Signal> {
        self.spare_signals.pop().unwrap_or_else(|| Signal::for_current_thread(self.shared.start))
    }

    /// Poll a new append once; keep it if it is not already complete.
    fn track(&mut self, mut append: InFlight) {
        match append.signal.poll(&mut append.pending) {
            Poll::Ready(result) => {
                // Complete already (durability `none` can be this fast, or the append was
                // refused): its waker was never stored, so the signal is free again.
                let now = self.shared.now_ns();
                self.spare_signals.push(append.signal.clone());
                self.complete(append.sent, now, result);
            }
            Poll::Pending => self.in_flight.push(append),
        }
    }

    /// Handle the appends whose signals fired; with `block`, wait for at least one.
    fn reap(&mut self, block: bool) {
        loop {
            let mut reaped = false;
            let mut i = 0;
            while i < self.in_flight.len() {
                let Some(acked_ns) = self.in_flight[i].signal.fired_ns() else {
                    i += 1;
                    continue;
                };
                let append = self.in_flight.swap_remove(i);
                // The shard stores the result before it wakes the signal.
                match append.pending.try_take() {
                    Ok(result) => {
                        append.signal.reset();
                        self.spare_signals.push(append.signal.clone());
                        self.complete(append.sent, acked_ns, result);
                    }
                    Err(pending) => {
                        // Not possible by the order above; keep waiting rather than guess.
                        self.in_flight.push(InFlight { pending, ..append });
                        i += 1;
                    }
                }
                reaped = true;
            }
            if reaped || !block || self.in_flight.is_empty() {
                return;
            }
            // Woken by a signal; the timeout only bounds a missed wake-up.
            std::thread::park_timeout(Duration::from_millis(100));
        }
    }

    fn complete(
        &mut self,
        append: Sent,
        acked_ns: u64,
        result: tidelog_core::Result<AppendResult>,
    ) {
        match result {
            Ok(appended) => {
                if self.measuring {
                    let latency = acked_ns.saturating_sub(append.send_ns).max(1);
                    self.outcome.publish_latency.saturating_record_n(latency, append.count);
                }
                let acks = &mut self.outcome.partitions[append.slot];
                acks.acked += append.count;
                acks.end_offset = acks.end_offset.max(appended.last_offset + 1);
                self.outcome.acked += append.count;
                self.shared.acked.fetch_add(append.count, std::sync::atomic::Ordering::Relaxed);
            }
            Err(err) => {
                let partition = self.plan.partitions[append.slot];
                if self.outcome.error.is_none() {
                    self.outcome.error = Some(format!(
                        "producer {}: append to {}/{partition} failed: {err}",
                        self.plan.id, self.topic
                    ));
                }
                self.shared.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_partition_has_one_producer_when_there_are_enough() {
        assert_eq!(partitions_of(0, 2, 5), vec![0, 2, 4]);
        assert_eq!(partitions_of(1, 2, 5), vec![1, 3]);
        assert_eq!(partitions_of(0, 1, 3), vec![0, 1, 2]);
        assert_eq!(partitions_of(3, 4, 2), vec![1]);
        assert_eq!(partitions_of(2, 4, 4), vec![2]);
    }
}
