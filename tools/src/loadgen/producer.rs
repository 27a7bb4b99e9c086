//! Producers: append verifiable messages to their partitions, keep up to `in_flight` appends
//! outstanding, and measure publish latency (send → ack; in open loop, *scheduled* send → ack).
//!
//! [`run`] is a producer on its own thread (the end-to-end scenario): its appends go through
//! the shards' mailboxes. [`super::pinned`] runs producers on the shards instead. Both send
//! the appends of a [`Phase`] through a [`Stream`], which prepares the messages, tracks the
//! appends in flight and counts the acknowledgements.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use hdrhistogram::Histogram;
use tidelog_core::{AppendResult, Durability, Engine, Pending, Record};

use super::message::{self, HEADER_BYTES, MessageId};
use super::schedule::{Append, Phase};
use super::signal::{Signal, Waiter};
use super::{LoadgenConfig, Shared, latency_histogram, precise_sleeps};

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
    /// Open loop: nanoseconds from each append's scheduled time to when the producer began
    /// it (waking late, or behind). Empty in closed loop.
    pub send_lateness: Histogram<u64>,
    pub error: Option<String>,
}

impl ProducerOutcome {
    /// Nothing sent yet, to `partitions`.
    pub fn new(partitions: Vec<PartitionAcks>) -> Self {
        ProducerOutcome {
            sent: 0,
            acked: 0,
            partitions,
            publish_latency: latency_histogram(),
            send_lateness: latency_histogram(),
            error: None,
        }
    }

    /// Add what another sender of the same producer did.
    pub fn merge(&mut self, other: ProducerOutcome) {
        self.sent += other.sent;
        self.acked += other.acked;
        self.partitions.extend(other.partitions);
        // All histograms have the same bounds, so adding cannot fail.
        self.publish_latency.add(&other.publish_latency).expect("same histogram bounds");
        self.send_lateness.add(&other.send_lateness).expect("same histogram bounds");
        if self.error.is_none() {
            self.error = other.error;
        }
    }
}

/// An append made.
#[derive(Clone, Copy, Debug)]
struct Sent {
    /// When it was sent — in open loop, when it was scheduled.
    send_ns: u64,
    /// Index into the producer's partitions.
    slot: usize,
    count: u64,
}

struct InFlight {
    pending: Pending<AppendResult>,
    signal: Arc<Signal>,
    sent: Sent,
}

/// One producer's messages and appends, whoever sends them (a thread, or a task on a shard
/// sending to some of the producer's partitions).
pub struct Stream {
    pub shared: Arc<Shared>,
    producer: u32,
    /// The producer's partitions, by slot.
    partitions: Vec<u32>,
    pub durability: Durability,
    in_flight_max: usize,
    /// Message values of the append being prepared, reused append after append.
    values: Vec<Vec<u8>>,
    /// The phase append whose messages `values` holds.
    prepared: Option<u64>,
    /// Next sequence number per slot.
    sequences: Vec<u64>,
    /// Per slot, its index in `outcome.partitions`: `None` for slots another sender has.
    acks_at: Vec<Option<usize>>,
    in_flight: Vec<InFlight>,
    spare_signals: Vec<Arc<Signal>>,
    /// Woken by acknowledgements while it waits for them; `None`: signals only record (a
    /// producer on a shard).
    waiter: Option<Arc<Waiter>>,
    /// Record publish latencies (false while warming up).
    pub measuring: bool,
    pub outcome: ProducerOutcome,
}

impl Stream {
    /// The stream of producer `producer` to `partitions`, acknowledging only `acked_slots`
    /// (the slots this sender appends to). Acknowledgements wake `waiter` while it waits for
    /// them (`None`: nobody to wake).
    pub fn new(
        config: &LoadgenConfig,
        shared: Arc<Shared>,
        producer: u32,
        partitions: Vec<u32>,
        acked_slots: &[bool],
        waiter: Option<Arc<Waiter>>,
    ) -> Stream {
        let mut acks = Vec::new();
        let mut acks_at = Vec::with_capacity(partitions.len());
        for (&partition, &acked) in partitions.iter().zip(acked_slots) {
            acks_at.push(acked.then_some(acks.len()));
            if acked {
                acks.push(PartitionAcks { partition, ..Default::default() });
            }
        }
        Stream {
            shared,
            producer,
            durability: config.durability,
            in_flight_max: config.in_flight,
            values: vec![vec![0u8; config.message_size_bytes]; config.batch_records as usize],
            prepared: None,
            sequences: vec![0; partitions.len()],
            partitions,
            acks_at,
            in_flight: Vec::with_capacity(config.in_flight),
            spare_signals: Vec::new(),
            waiter,
            measuring: false,
            outcome: ProducerOutcome::new(acks),
        }
    }

    /// The partition of `append`.
    pub fn partition(&self, append: &Append) -> u32 {
        self.partitions[append.slot]
    }

    /// True when no more appends may be made until one is acknowledged.
    pub fn is_full(&self) -> bool {
        self.in_flight.len() >= self.in_flight_max
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// A new phase starts: its appends are numbered from 0 again.
    pub fn start_phase(&mut self) {
        self.prepared = None;
    }

    /// Write the messages of `append`, stamped `send_ns`, unless they are written already.
    pub fn prepare(&mut self, append: &Append, send_ns: u64) {
        if self.prepared == Some(append.index) {
            return;
        }
        let partition = self.partitions[append.slot];
        let first = self.sequences[append.slot];
        for (k, value) in self.values[..append.count as usize].iter_mut().enumerate() {
            let id = MessageId { producer: self.producer, partition, sequence: first + k as u64 };
            message::write_filler(id, &mut value[HEADER_BYTES..]);
            message::seal(value, id, send_ns);
        }
        self.prepared = Some(append.index);
    }

    /// The prepared messages of `append`, as records.
    pub fn records(&self, append: &Append) -> Vec<Record<'_>> {
        debug_assert_eq!(self.prepared, Some(append.index));
        self.values[..append.count as usize].iter().map(|v| Record::new(v)).collect()
    }

    /// The prepared `append`, stamped `send_ns`, was made, begun at `begun_ns`: count it,
    /// and keep it until it is acknowledged.
    pub fn sent(
        &mut self,
        append: &Append,
        send_ns: u64,
        begun_ns: u64,
        mut pending: Pending<AppendResult>,
    ) {
        debug_assert_eq!(self.prepared, Some(append.index));
        if self.measuring && append.due_ns.is_some() {
            let lateness = begun_ns.saturating_sub(send_ns).max(1);
            self.outcome.send_lateness.saturating_record_n(lateness, append.count);
        }
        assert!(self.acks_at[append.slot].is_some(), "an append to a slot of another sender");
        self.prepared = None;
        self.sequences[append.slot] += append.count;
        self.outcome.sent += append.count;
        self.shared.sent.fetch_add(append.count, Ordering::Relaxed);
        let sent = Sent { send_ns, slot: append.slot, count: append.count };
        let signal = self.spare_signals.pop().unwrap_or_else(|| match &self.waiter {
            Some(waiter) => Signal::waking(self.shared.start, waiter.clone()),
            None => Signal::recorder(self.shared.start),
        });
        match signal.poll(&mut pending) {
            Poll::Ready(result) => {
                // Complete already (durability `none` can be this fast, or the append was
                // refused): its waker was never stored, so the signal is free again.
                let now = self.shared.now_ns();
                self.spare_signals.push(signal);
                self.complete(sent, now, result);
            }
            Poll::Pending => self.in_flight.push(InFlight { pending, signal, sent }),
        }
    }

    /// Handle the appends whose signals fired. True if there were any.
    pub fn reap(&mut self) -> bool {
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
        reaped
    }

    /// Block until at least one append in flight is acknowledged (a producer thread).
    pub fn wait_for_an_ack(&mut self) {
        // Only a thread's stream blocks, and it has a waiter.
        let waiter = self.waiter.clone().expect("a producer thread's stream has a waiter");
        loop {
            waiter.waiting(true);
            if self.reap() || self.in_flight() == 0 {
                break;
            }
            // Woken by a signal; the timeout only bounds a missed wake-up.
            std::thread::park_timeout(Duration::from_millis(100));
        }
        waiter.waiting(false);
    }

    fn complete(
        &mut self,
        append: Sent,
        acked_ns: u64,
        result: tidelog_core::Result<AppendResult>,
    ) {
        let partition = self.partitions[append.slot];
        match result {
            Ok(appended) => {
                if self.measuring {
                    let latency = acked_ns.saturating_sub(append.send_ns).max(1);
                    self.outcome.publish_latency.saturating_record_n(latency, append.count);
                }
                // `sent` admits only slots this sender acknowledges.
                let at = self.acks_at[append.slot].expect("a slot of this sender");
                let acks = &mut self.outcome.partitions[at];
                acks.acked += append.count;
                acks.end_offset = acks.end_offset.max(appended.last_offset + 1);
                self.outcome.acked += append.count;
                self.shared.acked.fetch_add(append.count, Ordering::Relaxed);
            }
            Err(err) => {
                self.fail(format!(
                    "producer {}: append to {}/{partition} failed: {err}",
                    self.producer,
                    super::TOPIC
                ));
            }
        }
    }

    /// Record the first error and stop the run.
    pub fn fail(&mut self, error: String) {
        if self.outcome.error.is_none() {
            self.outcome.error = Some(error);
        }
        self.shared.abort();
    }
}

/// A producer thread: send the plan's warm-up and measured messages, through the engine.
pub fn run(
    engine: &Engine,
    config: &LoadgenConfig,
    plan: ProducerPlan,
    shared: Arc<Shared>,
) -> ProducerOutcome {
    precise_sleeps();
    let slots = plan.partitions.len();
    let mut stream = Stream::new(
        config,
        shared.clone(),
        plan.id,
        plan.partitions.clone(),
        &vec![true; slots],
        Some(Waiter::current()),
    );
    let rate = config.pace.producer_msgs_per_s(config.producers);
    if config.warmup_messages > 0 {
        // Every producer takes part, also one whose share is zero: measuring starts when
        // all of them are done.
        let warmup = Phase::new(
            slots,
            config.batch_records,
            Some(plan.warmup_messages),
            None,
            shared.warmup_origin_ns(),
            rate,
        );
        send(engine, &mut stream, warmup);
        shared.warmup_done();
        while !shared.measuring_scheduled() && !shared.aborted() {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    stream.measuring = true;
    // Every producer stops at the same moment: `duration` after measuring started (now, if
    // the run aborted while warming up).
    let measure_from_ns = shared.measure_origin_ns();
    let deadline_ns = plan.duration.map(|d| measure_from_ns.saturating_add(d.as_nanos() as u64));
    let measured =
        Phase::new(slots, config.batch_records, plan.messages, deadline_ns, measure_from_ns, rate);
    send(engine, &mut stream, measured);
    stream.outcome
}

/// Send the appends of `phase`, and wait for every acknowledgement.
fn send(engine: &Engine, stream: &mut Stream, mut phase: Phase) {
    stream.start_phase();
    loop {
        stream.reap();
        if stream.shared.aborted() {
            break;
        }
        let now = stream.shared.now_ns();
        let Some(append) = phase.peek(now) else { break };
        if stream.is_full() {
            // In open loop the wait makes later messages late: measured, not hidden.
            stream.wait_for_an_ack();
            continue;
        }
        let send_ns = match append.due_ns {
            Some(due) => {
                // Ready before it is due: its lateness is the engine's and the wake-up's.
                stream.prepare(&append, due);
                if due > now {
                    // Acknowledgements do not wake it: they are handled when it wakes.
                    std::thread::park_timeout(Duration::from_nanos(due - now));
                    continue;
                }
                due
            }
            None => {
                stream.prepare(&append, now);
                now
            }
        };
        let pending = engine.append_async(
            super::TOPIC,
            stream.partition(&append),
            &stream.records(&append),
            stream.durability,
        );
        stream.sent(&append, send_ns, now, pending);
        phase.advance();
    }
    while stream.in_flight() > 0 {
        stream.wait_for_an_ack();
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
