//! When a producer sends what: the appends of one phase (warm-up or measured), each with its
//! partition slot, its message count and — in open loop — the time it is *scheduled* for.
//!
//! Producer threads and producers running on shards share this, so both scenarios send the
//! same messages on the same schedule. In open loop a message's latencies (publish and end to
//! end) are measured from its scheduled time, not from when it actually went out: a producer
//! held up by a stall sends late, and the lateness counts (no coordinated omission). A
//! producer that falls behind sends at once until it has caught up.

/// How fast producers send.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Pace {
    /// Closed loop: as fast as each producer's in-flight limit allows.
    #[default]
    Max,
    /// Open loop: this many messages per second in total, split evenly across producers,
    /// each message scheduled at a fixed interval.
    Rate { msgs_per_s: f64 },
}

impl Pace {
    /// Messages per second of one producer of `producers`; `None` in closed loop.
    pub fn producer_msgs_per_s(self, producers: u32) -> Option<f64> {
        match self {
            Pace::Max => None,
            Pace::Rate { msgs_per_s } => Some(msgs_per_s / f64::from(producers)),
        }
    }

    /// The total rate asked for; `None` in closed loop.
    pub fn msgs_per_s(self) -> Option<f64> {
        match self {
            Pace::Max => None,
            Pace::Rate { msgs_per_s } => Some(msgs_per_s),
        }
    }
}

/// One append of a phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Append {
    /// Position in the phase: 0, 1, 2, …
    pub index: u64,
    /// Index into the producer's partitions (appends take them in turn).
    pub slot: usize,
    /// Messages in it: the batch size, less for the last one of a counted phase.
    pub count: u64,
    /// Open loop: when it is scheduled (ns since the run's start). Closed loop: `None`, it is
    /// due as soon as the in-flight limit allows.
    pub due_ns: Option<u64>,
}

/// The appends of one phase of one producer, in order.
#[derive(Clone, Debug)]
pub struct Phase {
    slots: usize,
    batch_records: u64,
    /// Messages in the phase; `None`: until `deadline_ns`.
    messages: Option<u64>,
    /// No append goes out after it (closed loop), or none is scheduled at or after it (open
    /// loop: every append scheduled before it is sent, however late).
    deadline_ns: Option<u64>,
    /// When append 0 is scheduled (open loop).
    origin_ns: u64,
    /// Open loop: nanoseconds between consecutive appends.
    append_interval_ns: Option<f64>,
    next: u64,
}

impl Phase {
    /// The phase of a producer with `slots` partitions sending `batch_records` messages per
    /// append at `producer_msgs_per_s` (`None`: closed loop) from `origin_ns`.
    pub fn new(
        slots: usize,
        batch_records: u32,
        messages: Option<u64>,
        deadline_ns: Option<u64>,
        origin_ns: u64,
        producer_msgs_per_s: Option<f64>,
    ) -> Phase {
        assert!(slots >= 1, "a producer has at least one partition");
        assert!(batch_records >= 1, "an append carries at least one message");
        Phase {
            slots,
            batch_records: u64::from(batch_records),
            messages,
            deadline_ns,
            origin_ns,
            append_interval_ns: producer_msgs_per_s.map(|r| f64::from(batch_records) * 1e9 / r),
            next: 0,
        }
    }

    /// The next append at time `now_ns`, or `None` when the phase is over.
    pub fn peek(&self, now_ns: u64) -> Option<Append> {
        let index = self.next;
        let count = match self.messages {
            Some(messages) => {
                let before = index.saturating_mul(self.batch_records);
                if before >= messages {
                    return None;
                }
                (messages - before).min(self.batch_records)
            }
            None => self.batch_records,
        };
        let due_ns = self.append_interval_ns.map(|i| self.origin_ns + (index as f64 * i) as u64);
        if self.deadline_ns.is_some_and(|deadline| due_ns.unwrap_or(now_ns) >= deadline) {
            return None;
        }
        Some(Append { index, slot: (index % self.slots as u64) as usize, count, due_ns })
    }

    /// The next append to one of the `owned` slots (skipping the others' appends, which
    /// another producer task sends), or `None` when the phase has no more for them.
    pub fn peek_owned(&mut self, now_ns: u64, owned: &[bool]) -> Option<Append> {
        loop {
            let append = self.peek(now_ns)?;
            if owned[append.slot] {
                return Some(append);
            }
            self.advance();
        }
    }

    /// The append from [`Phase::peek`] was sent.
    pub fn advance(&mut self) {
        self.next += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(mut phase: Phase, now_ns: u64) -> Vec<Append> {
        let mut out = Vec::new();
        while let Some(append) = phase.peek(now_ns) {
            out.push(append);
            phase.advance();
        }
        out
    }

    #[test]
    fn a_counted_phase_takes_the_slots_in_turn_and_ends_with_a_partial_batch() {
        let appends = drain(Phase::new(2, 4, Some(10), None, 0, None), 0);
        let shape: Vec<(usize, u64)> = appends.iter().map(|a| (a.slot, a.count)).collect();
        assert_eq!(shape, [(0, 4), (1, 4), (0, 2)]);
        assert!(appends.iter().all(|a| a.due_ns.is_none()));
    }

    #[test]
    fn open_loop_appends_are_scheduled_at_a_fixed_interval_until_the_deadline() {
        // 1000 msgs/s, batches of 2: an append every 2 ms from 5 ms; the deadline at 11 ms
        // admits those due at 5, 7 and 9 ms, whatever the time is now.
        let phase = Phase::new(1, 2, None, Some(11_000_000), 5_000_000, Some(1000.0));
        let due: Vec<u64> = drain(phase.clone(), 0).iter().filter_map(|a| a.due_ns).collect();
        assert_eq!(due, [5_000_000, 7_000_000, 9_000_000]);
        assert_eq!(drain(phase, 60_000_000).len(), 3, "a late producer still sends them all");
    }

    #[test]
    fn closed_loop_stops_at_the_deadline() {
        let mut phase = Phase::new(3, 1, None, Some(100), 0, None);
        assert!(phase.peek(99).is_some());
        phase.advance();
        assert_eq!(phase.peek(100), None);
    }

    #[test]
    fn owners_of_disjoint_slots_together_send_the_whole_phase() {
        let all = drain(Phase::new(3, 5, Some(52), None, 0, Some(100.0)), 0);
        let mut split = Vec::new();
        for owned in [[true, false, true], [false, true, false]] {
            let mut phase = Phase::new(3, 5, Some(52), None, 0, Some(100.0));
            while let Some(append) = phase.peek_owned(0, &owned) {
                split.push(append);
                phase.advance();
            }
        }
        split.sort_by_key(|a| a.index);
        assert_eq!(split, all);
        assert_eq!(all.iter().map(|a| a.count).sum::<u64>(), 52);
    }

    #[test]
    fn the_rate_is_split_across_producers() {
        assert_eq!(Pace::Rate { msgs_per_s: 900.0 }.producer_msgs_per_s(3), Some(300.0));
        assert_eq!(Pace::Max.producer_msgs_per_s(3), None);
    }
}
