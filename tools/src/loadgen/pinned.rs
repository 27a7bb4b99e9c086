//! The pinned-producer scenario: producers run *on* the shards that own their partitions, as
//! [`ShardTask`]s appending through [`ShardContext::append`] — the local path, with no
//! mailbox, no hand-off to another thread and no wake-up between the producer and the
//! partition.
//!
//! A producer's partitions may live on several shards, so a producer is one task per shard it
//! appends to, each sending its partitions' share of the producer's [`Phase`] (same messages,
//! same schedule as a producer thread would send). A task never blocks the shard: each poll
//! sends at most [`APPENDS_PER_POLL_MAX`] appends, then returns `Ready` if more are due now,
//! `Sleep` until the next is scheduled (open loop), or `Sleep(0)` — "after the shard's next
//! event" — while it waits for acknowledgements, which arrive as completions on the same
//! shard. Acknowledgements are timed on the shard by recording wakers (`Signal::recorder`): publish
//! latency is scheduled send → ack observed on the shard. A finished task sends its counts
//! over a channel. An idle shard wakes for a task's `Sleep` deadline, so an open-loop pinned
//! producer sends on schedule with no thread of its own.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use tidelog_core::{Engine, LocalTarget, ShardContext, ShardTask, TaskPoll};

use super::producer::{ProducerOutcome, ProducerPlan, Stream};
use super::schedule::Phase;
use super::{LoadgenConfig, Shared, TOPIC};

/// Most appends one poll of a producer task makes: bounds how long it holds the shard.
pub const APPENDS_PER_POLL_MAX: usize = 16;

/// How often a task that finished warming up looks whether measuring started.
const MEASURE_WAIT: Duration = Duration::from_micros(100);

/// Where a task is in its run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    WarmingUp,
    /// Its warm-up is acknowledged; measuring starts when every producer's is.
    WaitingToMeasure,
    Measuring,
}

/// One producer's appends to its partitions on one shard.
struct ProducerTask {
    stream: Stream,
    plan: ProducerPlan,
    /// Per slot of the producer: the target, for the slots on this shard.
    targets: Vec<Option<LocalTarget>>,
    owned: Vec<bool>,
    batch_records: u32,
    producer_msgs_per_s: Option<f64>,
    stage: Stage,
    phase: Phase,
    report: mpsc::Sender<(u32, ProducerOutcome)>,
}

impl ProducerTask {
    fn step(&mut self, ctx: &mut ShardContext<'_>) -> TaskPoll {
        self.stream.reap();
        if self.stream.shared.aborted() {
            return TaskPoll::Done;
        }
        let mut appended = 0;
        loop {
            let shared = self.stream.shared.clone();
            let now = shared.now_ns();
            if self.stage == Stage::WaitingToMeasure {
                if !shared.measuring_scheduled() {
                    return TaskPoll::Sleep(MEASURE_WAIT);
                }
                self.start_measuring();
            }
            let Some(append) = self.phase.peek_owned(now, &self.owned) else {
                if self.stream.in_flight() > 0 {
                    // Acknowledgements come as completions on this shard: poll again after
                    // its next event.
                    return TaskPoll::Sleep(Duration::ZERO);
                }
                match self.stage {
                    Stage::WarmingUp => {
                        shared.warmup_done();
                        self.stage = Stage::WaitingToMeasure;
                        continue;
                    }
                    Stage::WaitingToMeasure | Stage::Measuring => return TaskPoll::Done,
                }
            };
            if self.stream.is_full() {
                return TaskPoll::Sleep(Duration::ZERO);
            }
            if appended == APPENDS_PER_POLL_MAX {
                return TaskPoll::Ready;
            }
            let send_ns = match append.due_ns {
                Some(due) => {
                    self.stream.prepare(&append, due);
                    if due > now {
                        return TaskPoll::Sleep(Duration::from_nanos(due - now));
                    }
                    due
                }
                None => {
                    self.stream.prepare(&append, now);
                    now
                }
            };
            // peek_owned returns only the slots on this shard, and those have a target.
            let target = self.targets[append.slot].as_ref().expect("a target on this shard");
            let pending = ctx.append(target, &self.stream.records(&append), self.stream.durability);
            self.stream.sent(&append, send_ns, now, pending);
            self.phase.advance();
            appended += 1;
        }
    }

    fn start_measuring(&mut self) {
        let shared = &self.stream.shared;
        let measure_from_ns = shared.measure_origin_ns();
        let deadline_ns =
            self.plan.duration.map(|d| measure_from_ns.saturating_add(d.as_nanos() as u64));
        self.phase = Phase::new(
            self.owned.len(),
            self.batch_records,
            self.plan.messages,
            deadline_ns,
            measure_from_ns,
            self.producer_msgs_per_s,
        );
        self.stream.start_phase();
        self.stream.measuring = true;
        self.stage = Stage::Measuring;
    }

    fn finish(&mut self) {
        let outcome = std::mem::replace(&mut self.stream.outcome, ProducerOutcome::new(Vec::new()));
        // The receiver is gone only if the run ended without waiting: nobody to tell.
        let _ = self.report.send((self.plan.id, outcome));
    }
}

impl ShardTask for ProducerTask {
    fn poll(&mut self, ctx: &mut ShardContext<'_>) -> TaskPoll {
        let poll = self.step(ctx);
        if poll == TaskPoll::Done {
            self.finish();
        }
        poll
    }
}

/// A producer's partitions on one shard.
#[derive(Clone, Debug)]
struct Group {
    plan: ProducerPlan,
    shard: usize,
    owned: Vec<bool>,
}

/// Split the producers into one group per (producer, shard it appends to).
fn groups(engine: &Engine, plans: &[ProducerPlan]) -> Vec<Group> {
    let mut groups = Vec::new();
    for plan in plans {
        let shards: Vec<usize> =
            plan.partitions.iter().map(|&p| engine.shard_of(TOPIC, p)).collect();
        let mut seen: Vec<usize> = shards.clone();
        seen.sort_unstable();
        seen.dedup();
        for shard in seen {
            let owned = shards.iter().map(|&s| s == shard).collect();
            groups.push(Group { plan: plan.clone(), shard, owned });
        }
    }
    groups
}

/// How many tasks the producers of `plans` become (each takes part in the warm-up barrier).
pub fn task_count(engine: &Engine, plans: &[ProducerPlan]) -> usize {
    groups(engine, plans).len()
}

/// Run the producers of `plans` on the shards and wait until every task reports; `wait`
/// is called between looks at the channel (it shows progress). Returns one outcome per plan.
pub fn run(
    engine: &Engine,
    config: &LoadgenConfig,
    plans: &[ProducerPlan],
    shared: &Arc<Shared>,
    mut wait: impl FnMut(),
) -> anyhow::Result<Vec<ProducerOutcome>> {
    let tasks = groups(engine, plans);
    let (report, reports) = mpsc::channel();
    let rate = config.pace.producer_msgs_per_s(config.producers);
    let expected = tasks.len();
    for group in tasks {
        let targets: anyhow::Result<Vec<Option<LocalTarget>>> = group
            .plan
            .partitions
            .iter()
            .zip(&group.owned)
            .map(|(&partition, &owned)| {
                owned.then(|| engine.local_target(TOPIC, partition)).transpose().map_err(Into::into)
            })
            .collect();
        let stream = Stream::new(
            config,
            shared.clone(),
            group.plan.id,
            group.plan.partitions.clone(),
            &group.owned,
            None,
        );
        let warming_up = config.warmup_messages > 0;
        let phase = Phase::new(
            group.owned.len(),
            config.batch_records,
            Some(if warming_up { group.plan.warmup_messages } else { 0 }),
            None,
            shared.warmup_origin_ns(),
            rate,
        );
        let spawned = targets.and_then(|targets| {
            let task = ProducerTask {
                stream,
                targets,
                owned: group.owned.clone(),
                batch_records: config.batch_records,
                producer_msgs_per_s: rate,
                // Without warm-up: an empty warm-up phase, then straight to measuring.
                stage: if warming_up { Stage::WarmingUp } else { Stage::WaitingToMeasure },
                phase,
                plan: group.plan.clone(),
                report: report.clone(),
            };
            engine.spawn_on_shard(group.shard, Box::new(task)).map_err(Into::into)
        });
        if let Err(err) = spawned {
            shared.abort();
            return Err(err
                .context(format!("starting producer {} on shard {}", group.plan.id, group.shard)));
        }
    }
    drop(report);
    let mut outcomes: Vec<ProducerOutcome> =
        plans.iter().map(|_| ProducerOutcome::new(Vec::new())).collect();
    let mut received = 0;
    while received < expected {
        match reports.recv_timeout(Duration::from_millis(20)) {
            Ok((id, outcome)) => {
                received += 1;
                outcomes[id as usize].merge(outcome);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => wait(),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Tasks are dropped unpolled only when their shard stopped.
                let error = format!(
                    "{} producer task(s) ended without reporting: their shard stopped",
                    expected - received
                );
                outcomes[0].error.get_or_insert(error);
                shared.abort();
                break;
            }
        }
    }
    Ok(outcomes)
}
