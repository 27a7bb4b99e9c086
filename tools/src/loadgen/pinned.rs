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
//! over a channel.
//!
//! **Alarms.** An idle shard does not wake up for a task's `Sleep` deadline: its idle wait is
//! bounded only by completions, requests, parked reads' deadlines and the maintenance tick
//! (`cargo run --release -p tidelog-tools --example shard_task_sleep` shows a task that sleeps
//! 1 ms polled twice a second). Until the engine honours task deadlines, one alarm thread per
//! shard sleeps until the earliest time a task on it asked to be polled and, if the shard has
//! not polled it by then, sends the shard a cheap request (`partition_info`): the shard wakes,
//! answers, and polls its due tasks in the same round. The alarm costs one thread wake-up and
//! one mailbox hand-off per poke — what a producer thread pays per append in the end-to-end
//! scenario — so until the engine is fixed, open-loop pinned latencies include it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use tidelog_core::{Engine, LocalTarget, ShardContext, ShardTask, TaskPoll};

use super::producer::{ProducerOutcome, ProducerPlan, Stream};
use super::schedule::Phase;
use super::{LoadgenConfig, Shared, TOPIC, precise_sleeps};

/// Most appends one poll of a producer task makes: bounds how long it holds the shard.
pub const APPENDS_PER_POLL_MAX: usize = 16;

/// How often a task that finished warming up looks whether measuring started.
const MEASURE_WAIT: Duration = Duration::from_micros(100);

/// Longest an alarm sleeps without looking at its tasks (a bound, not a tick: tasks wake it
/// when they want to be polled earlier than it would wake).
const ALARM_SLEEP_MAX: Duration = Duration::from_millis(10);

/// What a task tells its shard's alarm.
#[derive(Debug)]
pub struct TaskClock {
    /// When the task wants to be polled (ns since the run's start); `u64::MAX`: not at a
    /// time (it is ready, waits for a completion on its shard, or is done).
    wake_at_ns: AtomicU64,
    /// When it was last polled.
    polled_ns: AtomicU64,
    done: AtomicBool,
    /// The shard's alarm thread.
    alarm: OnceLock<Thread>,
    /// When the alarm sleeps until (0: it is awake).
    alarm_sleeps_until_ns: Arc<AtomicU64>,
}

impl TaskClock {
    fn new(alarm_sleeps_until_ns: Arc<AtomicU64>) -> Self {
        TaskClock {
            wake_at_ns: AtomicU64::new(u64::MAX),
            polled_ns: AtomicU64::new(0),
            done: AtomicBool::new(false),
            alarm: OnceLock::new(),
            alarm_sleeps_until_ns,
        }
    }

    /// Ask to be polled at `at_ns` (`u64::MAX`: not at a time). Wakes the alarm if it sleeps
    /// past that.
    fn wake_at(&self, at_ns: u64) {
        // With the alarm's store-then-load of the same two locations (both SeqCst), either
        // the alarm sees this time when it looks again, or this sees the alarm asleep.
        self.wake_at_ns.store(at_ns, Ordering::SeqCst);
        if at_ns < self.alarm_sleeps_until_ns.load(Ordering::SeqCst) {
            self.wake_alarm();
        }
    }

    fn wake_alarm(&self) {
        if let Some(alarm) = self.alarm.get() {
            alarm.unpark();
        }
    }
}

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
    clock: Arc<TaskClock>,
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
        self.clock.done.store(true, Ordering::SeqCst);
        self.clock.wake_alarm();
    }
}

impl ShardTask for ProducerTask {
    fn poll(&mut self, ctx: &mut ShardContext<'_>) -> TaskPoll {
        let now = self.stream.shared.now_ns();
        self.clock.polled_ns.store(now, Ordering::SeqCst);
        let poll = self.step(ctx);
        match poll {
            TaskPoll::Sleep(after) if !after.is_zero() => {
                self.clock.wake_at(now.saturating_add(after.as_nanos() as u64));
            }
            TaskPoll::Ready | TaskPoll::Sleep(_) => self.clock.wake_at(u64::MAX),
            TaskPoll::Done => self.finish(),
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
pub fn run<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    engine: &'scope Engine,
    config: &LoadgenConfig,
    plans: &[ProducerPlan],
    shared: &'scope Arc<Shared>,
    mut wait: impl FnMut(),
) -> anyhow::Result<Vec<ProducerOutcome>> {
    let groups = groups(engine, plans);
    let (report, reports) = mpsc::channel();
    let mut alarms = Vec::new();
    let mut tasks = Vec::new();
    let shards: Vec<usize> = {
        let mut shards: Vec<usize> = groups.iter().map(|g| g.shard).collect();
        shards.sort_unstable();
        shards.dedup();
        shards
    };
    let stop_alarms = Arc::new(AtomicBool::new(false));
    for shard in shards {
        let sleeps_until = Arc::new(AtomicU64::new(0));
        let mut clocks = Vec::new();
        for group in groups.iter().filter(|g| g.shard == shard) {
            let clock = Arc::new(TaskClock::new(sleeps_until.clone()));
            clocks.push(clock.clone());
            tasks.push((group.clone(), clock));
        }
        // Any partition of the shard will do for the alarm's request.
        let group = groups.iter().find(|g| g.shard == shard).expect("a group on this shard");
        let slot = group.owned.iter().position(|&o| o).expect("a group owns a slot");
        let partition = group.plan.partitions[slot];
        let (alarm_shared, stop) = (shared.clone(), stop_alarms.clone());
        let handle = std::thread::Builder::new()
            .name(format!("loadgen-alarm-{shard}"))
            .spawn_scoped(scope, move || {
                alarm(engine, partition, &clocks, &sleeps_until, &alarm_shared, &stop);
            });
        let handle = match handle {
            Ok(handle) => handle,
            Err(err) => {
                stop_alarms.store(true, Ordering::SeqCst);
                shared.abort();
                return Err(anyhow::Error::new(err).context("starting an alarm thread"));
            }
        };
        for (_, clock) in tasks.iter().filter(|(g, _)| g.shard == shard) {
            let _ = clock.alarm.set(handle.thread().clone());
        }
        alarms.push(handle);
    }
    let rate = config.pace.producer_msgs_per_s(config.producers);
    let expected = tasks.len();
    for (group, clock) in tasks {
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
                clock,
                report: report.clone(),
            };
            engine.spawn_on_shard(group.shard, Box::new(task)).map_err(Into::into)
        });
        if let Err(err) = spawned {
            stop_alarms.store(true, Ordering::SeqCst);
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
    stop_alarms.store(true, Ordering::SeqCst);
    for alarm in &alarms {
        alarm.thread().unpark();
    }
    Ok(outcomes)
}

/// A shard's alarm: poke the shard when a task on it is due and has not been polled (see the
/// module documentation).
fn alarm(
    engine: &Engine,
    partition: u32,
    clocks: &[Arc<TaskClock>],
    sleeps_until_ns: &AtomicU64,
    shared: &Shared,
    stop: &AtomicBool,
) {
    precise_sleeps();
    // The due time last poked for: poking it again at once would only repeat the request.
    let mut poked_for = None;
    loop {
        if stop.load(Ordering::SeqCst)
            || shared.aborted()
            || clocks.iter().all(|c| c.done.load(Ordering::SeqCst))
        {
            return;
        }
        let now = shared.now_ns();
        let (overdue, next) = look(clocks, now);
        if let Some(due) = overdue {
            if poked_for == Some(due) {
                std::thread::park_timeout(Duration::from_micros(20));
            }
            poked_for = Some(due);
            // Any request wakes the shard; it polls its due tasks in the same round. An
            // error means the engine is closing: the run is ending anyway.
            let _ = engine.partition_info(TOPIC, partition);
            continue;
        }
        let until = next.min(now.saturating_add(ALARM_SLEEP_MAX.as_nanos() as u64));
        sleeps_until_ns.store(until, Ordering::SeqCst);
        // Look again after saying when it sleeps until: a task that moved its time earlier
        // in between either is seen now or saw the alarm's time and woke it.
        let (overdue, next) = look(clocks, shared.now_ns());
        if overdue.is_none() && next >= until {
            std::thread::park_timeout(Duration::from_nanos(until.saturating_sub(now)));
        }
        sleeps_until_ns.store(0, Ordering::SeqCst);
    }
}

/// At `now`: the due time of a task that is due and has not been polled since, if any; and
/// the earliest time a task wants to be polled in the future (`u64::MAX`: none).
fn look(clocks: &[Arc<TaskClock>], now: u64) -> (Option<u64>, u64) {
    let mut next = u64::MAX;
    for clock in clocks {
        if clock.done.load(Ordering::SeqCst) {
            continue;
        }
        let wake_at = clock.wake_at_ns.load(Ordering::SeqCst);
        if wake_at > now {
            next = next.min(wake_at);
        } else if clock.polled_ns.load(Ordering::SeqCst) < wake_at {
            return (Some(wake_at), next);
        }
    }
    (None, next)
}
