//! Shards: one thread each, owning a storage (its own ring, later), the partitions placed on
//! it, and everything they hold. Other threads reach a shard only through its mailbox.
//!
//! The loop, each round: take requests from the mailbox (appends are buffered, reads served),
//! flush the partitions touched (submitting writes and syncs as the group-commit policy says),
//! reap completions (acknowledging appends, serving waiting reads), run periodic maintenance;
//! park when there is nothing to do.

pub(crate) mod mailbox;
pub mod task;
#[doc(hidden)]
pub mod wakeup;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tidelog_io::{Clock, Completion, Storage, StorageFactory, Wait};

use crate::completion::Reply;
use crate::config::{Durability, TopicConfig};
use crate::error::{Error, Result};
use crate::partition::{
    AppendResult, Fetch, Partition, PartitionInfo, RUN_NOW_TOKEN, ReadRequest, ShardIo,
    ShardMemory, ShardSettings, Subscription, split_token,
};
use mailbox::Mailbox;

/// Requests a shard takes per round before flushing: bounds the latency one round adds.
const REQUESTS_PER_ROUND: usize = 1024;

/// Identifies a partition across the engine: a topic (by its unique id) and a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PartitionKey {
    pub topic_id: u64,
    pub partition: u32,
}

/// A partition as requests name it: the key, and the topic name for error messages.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub topic: Arc<str>,
    pub key: PartitionKey,
}

/// What other threads ask of a shard.
#[derive(Debug)]
pub(crate) enum Request {
    Append {
        target: Target,
        batch: Vec<u8>,
        durability: Durability,
        reply: Reply<AppendResult>,
    },
    Read {
        target: Target,
        request: ReadRequest,
        reply: Reply<Fetch>,
        /// A streaming consumer's subscription, whose next read the shard parks itself.
        subscription: Option<Arc<Subscription>>,
    },
    OffsetForTimestamp {
        target: Target,
        timestamp: i64,
        reply: Reply<Option<u64>>,
    },
    Info {
        target: Target,
        reply: Reply<PartitionInfo>,
    },
    OpenTopic {
        topic: Arc<str>,
        topic_id: u64,
        config: Arc<TopicConfig>,
        dir: PathBuf,
        partitions: Vec<u32>,
        reply: Reply<()>,
    },
    CloseTopic {
        topic_id: u64,
        reply: Reply<()>,
    },
    Maintain {
        reply: Reply<()>,
    },
    Shutdown {
        reply: Reply<()>,
    },
    Spawn {
        task: Box<dyn task::ShardTask>,
        reply: Reply<()>,
    },
}

impl Request {
    /// Answer the request with an error (used when it cannot be delivered).
    pub fn fail(self, err: impl Fn() -> Error) {
        match self {
            Request::Append { reply, .. } => reply.send(Err(err())),
            Request::Read { reply, .. } => reply.send(Err(err())),
            Request::OffsetForTimestamp { reply, .. } => reply.send(Err(err())),
            Request::Info { reply, .. } => reply.send(Err(err())),
            Request::OpenTopic { reply, .. }
            | Request::CloseTopic { reply, .. }
            | Request::Maintain { reply }
            | Request::Shutdown { reply }
            | Request::Spawn { reply, .. } => reply.send(Err(err())),
        }
    }
}

/// The engine's handle on a shard.
#[derive(Debug)]
pub(crate) struct ShardHandle {
    pub mailbox: Arc<Mailbox>,
    pub runner: Runner,
}

/// Who runs a shard's loop.
pub(crate) enum Runner {
    /// Its own thread.
    Thread(std::sync::Mutex<Option<std::thread::JoinHandle<()>>>),
    /// The caller, one round at a time ([`ShardHandle::step`]): deterministic simulation.
    Manual(std::sync::Mutex<Option<Shard>>),
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Runner::Thread(_) => f.write_str("Thread"),
            Runner::Manual(_) => f.write_str("Manual"),
        }
    }
}

impl ShardHandle {
    /// Run one round of a manually run shard; true if it did anything. (A threaded shard
    /// runs by itself: false.)
    pub fn step(&self) -> bool {
        let Runner::Manual(shard) = &self.runner else { return false };
        let mut guard = shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(shard) = guard.as_mut() else { return false };
        match shard.round(false) {
            Round::Ran { progressed } => progressed,
            Round::Stopped(outcome) => {
                let reason = outcome.err().unwrap_or_else(|| "shut down".to_string());
                *guard = None;
                self.mailbox.stop(reason);
                true
            }
        }
    }

    /// Wait for a threaded shard's thread to end.
    pub fn join(&self) {
        if let Runner::Thread(thread) = &self.runner
            && let Some(thread) =
                thread.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
        {
            let _ = thread.join();
        }
    }

    /// True for a manually run shard.
    pub fn is_manual(&self) -> bool {
        matches!(self.runner, Runner::Manual(_))
    }
}

/// A shard run by the caller ([`Runner::Manual`]): its storage is made on the calling thread.
pub(crate) fn manual(
    index: usize,
    factory: Arc<dyn StorageFactory>,
    clock: Arc<dyn Clock>,
    settings: ShardSettings,
    maintenance_interval_ms: u64,
) -> Result<ShardHandle> {
    let mailbox = Arc::new(Mailbox::new(index, crate::limits::SHARD_QUEUE_DEPTH));
    let storage = factory.create().map_err(|e| Error::io("create storage", PathBuf::new(), e))?;
    mailbox.bind(storage.waker());
    let shard =
        Shard::new(index, mailbox.clone(), storage, clock, settings, maintenance_interval_ms);
    Ok(ShardHandle { mailbox, runner: Runner::Manual(std::sync::Mutex::new(Some(shard))) })
}

/// How a shard's thread is set up before it starts.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ShardThread {
    /// The CPU to pin it to.
    pub pin_to: Option<usize>,
    /// The scheduler slice it asks for ([`crate::EngineConfig::shard_scheduler_slice`]).
    pub scheduler_slice: Option<std::time::Duration>,
    /// How long it polls its mailbox before sleeping ([`crate::EngineConfig::idle_poll`]).
    pub idle_poll: Duration,
}

/// Start a shard thread. Its storage is created on the thread itself (an io_uring ring
/// belongs to the thread that submits to it).
pub(crate) fn spawn(
    index: usize,
    factory: Arc<dyn StorageFactory>,
    clock: Arc<dyn Clock>,
    settings: ShardSettings,
    maintenance_interval_ms: u64,
    setup: ShardThread,
) -> Result<ShardHandle> {
    let mailbox = Arc::new(Mailbox::new(index, crate::limits::SHARD_QUEUE_DEPTH));
    let shard_mailbox = mailbox.clone();
    let (started_tx, started_rx) = std::sync::mpsc::sync_channel::<std::io::Result<()>>(1);
    let thread = std::thread::Builder::new()
        .name(format!("tidelog-shard-{index}"))
        .spawn(move || {
            if let Some(cpu) = setup.pin_to {
                match tidelog_io::cpu::pin_current_thread(cpu) {
                    Ok(()) => tracing::debug!(shard = index, cpu, "pinned shard"),
                    Err(err) => tracing::warn!(shard = index, cpu, error = %err, "cannot pin shard; it will float"),
                }
            }
            if let Some(slice) = setup.scheduler_slice {
                // Only latency depends on it: a kernel that refuses leaves the default slice.
                if let Err(err) = tidelog_io::cpu::request_scheduler_slice(slice) {
                    tracing::debug!(shard = index, ?slice, error = %err, "scheduler slice refused");
                }
            }
            let storage = match factory.create() {
                Ok(storage) => {
                    let _ = started_tx.send(Ok(()));
                    storage
                }
                Err(err) => {
                    let _ = started_tx.send(Err(err));
                    return;
                }
            };
            shard_mailbox.bind(storage.waker());
            let mut shard =
                Shard::new(index, shard_mailbox.clone(), storage, clock, settings, maintenance_interval_ms);
            shard.idle_poll = setup.idle_poll;
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| shard.run()));
            let reason = match outcome {
                Ok(Ok(())) => "shut down".to_string(),
                Ok(Err(reason)) => reason,
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "panic".to_string());
                    tracing::error!(shard = index, %message, "shard thread panicked");
                    format!("panicked: {message}")
                }
            };
            // Answers whatever is still queued, so no caller waits forever.
            shard_mailbox.stop(reason);
        })
        .map_err(|e| Error::io("spawn shard thread", PathBuf::new(), e))?;
    match started_rx.recv() {
        Ok(Ok(())) => {
            Ok(ShardHandle { mailbox, runner: Runner::Thread(std::sync::Mutex::new(Some(thread))) })
        }
        Ok(Err(err)) => {
            let _ = thread.join();
            Err(Error::io("create storage", PathBuf::new(), err))
        }
        Err(_) => {
            let _ = thread.join();
            Err(Error::ShardStopped { shard: index, reason: "failed to start".to_string() })
        }
    }
}

/// The error for a request naming a partition this shard does not hold (its topic was just
/// deleted).
pub(crate) fn unknown(target: &Target) -> Error {
    Error::UnknownTopic { topic: target.topic.to_string() }
}

/// Stop shards that hold no partitions yet (an engine that failed to open) and join them.
pub(crate) fn stop_all(shards: &[ShardHandle]) {
    for shard in shards {
        let (reply, pending) = crate::completion::channel();
        if let Err((_, request)) = shard.mailbox.send(Request::Shutdown { reply }) {
            request.fail(|| Error::Closed);
        }
        // A manual shard shuts down only when stepped, possibly over several rounds.
        while shard.is_manual() && !pending.is_ready() {
            if !shard.step() && !pending.is_ready() {
                std::thread::yield_now();
            }
        }
        let _ = pending.wait();
        shard.join();
    }
}

/// What one round of a shard's loop did.
enum Round {
    /// Keep going; `progressed` if it did anything.
    Ran { progressed: bool },
    /// The shard stopped: shut down, or the reason its storage failed.
    Stopped(std::result::Result<(), String>),
}

pub(crate) struct Shard {
    index: usize,
    mailbox: Arc<Mailbox>,
    storage: Box<dyn Storage>,
    clock: Arc<dyn Clock>,
    settings: ShardSettings,
    /// Spare write buffers and the tail-cache account, shared by the partitions.
    memory: ShardMemory,
    /// Partitions by slot (the high half of operation tokens).
    partitions: Vec<Option<Partition>>,
    free_slots: Vec<u32>,
    by_key: HashMap<PartitionKey, u32>,
    stash: Vec<Completion>,
    completions: Vec<Completion>,
    touched: Vec<u32>,
    /// Topics being closed: their partitions are draining.
    closing_topics: Vec<(u64, Reply<()>)>,
    shutdown: Option<Reply<()>>,
    /// Set when the storage failed: the loop stops with this reason.
    dead: Option<String>,
    /// Tasks running on this shard, with the monotonic time they next want to run.
    tasks: Vec<(Box<dyn task::ShardTask>, u64)>,
    maintenance_interval_ns: u64,
    /// How long an idle shard polls its mailbox before sleeping
    /// ([`crate::EngineConfig::idle_poll`]); zero for manual shards, which never sleep.
    idle_poll: Duration,
    next_maintenance_ns: u64,
}

/// Run `$body` with `$partition` (a `&mut Partition` in slot `$slot`) and `$io` (its
/// `ShardIo`) borrowed from the shard's disjoint fields.
macro_rules! with_partition {
    ($shard:expr, $slot:expr, |$partition:ident, $io:ident| $body:expr) => {{
        let shard = &mut *$shard;
        let mut $io = ShardIo {
            storage: &mut *shard.storage,
            clock: &*shard.clock,
            stash: &mut shard.stash,
            settings: &shard.settings,
            memory: &mut shard.memory,
        };
        match shard.partitions.get_mut($slot as usize).and_then(Option::as_mut) {
            Some($partition) => Some($body),
            None => None,
        }
    }};
}

impl Shard {
    fn new(
        index: usize,
        mailbox: Arc<Mailbox>,
        storage: Box<dyn Storage>,
        clock: Arc<dyn Clock>,
        settings: ShardSettings,
        maintenance_interval_ms: u64,
    ) -> Shard {
        let maintenance_interval_ns = maintenance_interval_ms.saturating_mul(1_000_000);
        let next_maintenance_ns = clock.monotonic_ns() + maintenance_interval_ns;
        let memory =
            ShardMemory::new(settings.write_buffer_bytes, settings.tail_cache_bytes_per_shard);
        Shard {
            index,
            mailbox,
            storage,
            clock,
            settings,
            memory,
            partitions: Vec::new(),
            free_slots: Vec::new(),
            by_key: HashMap::new(),
            stash: Vec::new(),
            completions: Vec::new(),
            touched: Vec::new(),
            closing_topics: Vec::new(),
            shutdown: None,
            dead: None,
            tasks: Vec::new(),
            maintenance_interval_ns,
            idle_poll: Duration::ZERO,
            next_maintenance_ns,
        }
    }

    /// The shard loop on its own thread. Returns when shut down, or with the reason the
    /// storage failed.
    fn run(&mut self) -> std::result::Result<(), String> {
        loop {
            if let Round::Stopped(outcome) = self.round(true) {
                return outcome;
            }
        }
    }

    /// One round: take requests, flush, reap completions, run what is due; if `may_sleep`
    /// and there was nothing to do, sleep until a completion, a request or the next deadline.
    fn round(&mut self, may_sleep: bool) -> Round {
        if let Some(reason) = self.dead.take() {
            return Round::Stopped(Err(reason));
        }
        let mut progressed = self.dispatch_stash();
        for _ in 0..REQUESTS_PER_ROUND {
            let Some(request) = self.mailbox.pop() else { break };
            progressed = true;
            self.handle(request);
        }
        progressed |= self.run_tasks();
        if self.shutdown.is_some() || !self.closing_topics.is_empty() {
            // A draining partition may owe a sync that found the queue full: try again.
            for (slot, partition) in self.partitions.iter().enumerate() {
                if partition.as_ref().is_some_and(Partition::is_draining) {
                    self.touched.push(slot as u32);
                }
            }
        }
        self.flush_touched();
        progressed |= self.reap(Wait::No);
        let now = self.clock.monotonic_ns();
        if now >= self.next_maintenance_ns {
            self.maintain();
            self.next_maintenance_ns = now + self.maintenance_interval_ns;
        } else if self.next_read_deadline().is_some_and(|d| d <= now) {
            self.serve_parked();
        }
        self.finish_closing_topics();
        if self.shutdown.is_some() && self.partitions.iter().flatten().all(|p| !p.is_busy()) {
            self.finish_shutdown();
            return Round::Stopped(Ok(()));
        }
        if let Some(reason) = self.dead.take() {
            return Round::Stopped(Err(reason));
        }
        if progressed || !self.stash.is_empty() || !may_sleep {
            return Round::Ran { progressed: progressed || !self.stash.is_empty() };
        }
        // Nothing to do. With nothing in flight, poll the mailbox a little first: a producer
        // waiting for the acknowledgement just sent usually answers within tens of
        // microseconds, and finding its request awake saves it the wake-up write and the
        // shard its sleep and wake (docs/ARCHITECTURE.md, "Idle polling"). Not with
        // operations in flight: the kernel workers that run them share this shard's CPU.
        if !self.idle_poll.is_zero() && self.storage.in_flight() == 0 {
            let until = std::time::Instant::now() + self.idle_poll;
            while !self.mailbox.has_requests() && std::time::Instant::now() < until {
                std::hint::spin_loop();
            }
            if self.mailbox.has_requests() {
                return Round::Ran { progressed: false };
            }
        }
        // Sleep until a completion, a request or the next deadline.
        if self.mailbox.going_to_sleep() {
            let next_task =
                self.tasks.iter().map(|(_, at)| *at).filter(|&at| at != task::NEXT_EVENT).min();
            let deadline = [Some(self.next_maintenance_ns), self.next_read_deadline(), next_task]
                .into_iter()
                .flatten()
                .min();
            let timeout = deadline.map(|d| Duration::from_nanos(d.saturating_sub(now)));
            self.reap(Wait::Idle(timeout));
            self.mailbox.awake();
        }
        Round::Ran { progressed: false }
    }

    fn next_read_deadline(&self) -> Option<u64> {
        self.partitions.iter().flatten().filter_map(Partition::next_deadline_ns).min()
    }

    fn handle(&mut self, request: Request) {
        if self.shutdown.is_some() {
            return request.fail(|| Error::Closed);
        }
        match request {
            Request::Append { target, batch, durability, reply } => {
                let Some(slot) = self.slot(&target) else {
                    return reply.send(Err(unknown(&target)));
                };
                self.append_local(slot, batch, durability, reply);
            }
            Request::Spawn { task, reply } => {
                let now = self.clock.monotonic_ns();
                self.tasks.push((task, now));
                reply.send(Ok(()));
            }
            Request::Read { target, request, reply, subscription } => {
                let Some(slot) = self.slot(&target) else {
                    return reply.send(Err(unknown(&target)));
                };
                with_partition!(self, slot, |p, io| p.read(&mut io, request, reply, subscription));
            }
            Request::OffsetForTimestamp { target, timestamp, reply } => {
                let Some(slot) = self.slot(&target) else {
                    return reply.send(Err(unknown(&target)));
                };
                let result =
                    with_partition!(self, slot, |p, io| p.offset_for_timestamp(&mut io, timestamp));
                reply.send(result.unwrap_or(Err(Error::Closed)));
            }
            Request::Info { target, reply } => {
                let Some(slot) = self.slot(&target) else {
                    return reply.send(Err(unknown(&target)));
                };
                let info = with_partition!(self, slot, |p, _io| p.info());
                reply.send(info.ok_or(Error::Closed));
            }
            Request::OpenTopic { topic, topic_id, config, dir, partitions, reply } => {
                reply.send(self.open_topic(topic, topic_id, config, dir, partitions));
            }
            Request::CloseTopic { topic_id, reply } => {
                for slot in self.slots_of(topic_id) {
                    with_partition!(self, slot, |p, io| p.start_drain(&mut io));
                }
                self.closing_topics.push((topic_id, reply));
            }
            Request::Maintain { reply } => {
                self.maintain();
                reply.send(Ok(()));
            }
            Request::Shutdown { reply } => {
                for slot in 0..self.partitions.len() as u32 {
                    with_partition!(self, slot, |p, io| p.start_drain(&mut io));
                }
                self.shutdown = Some(reply);
            }
        }
    }

    /// Append to the partition in `slot` (from a request or a task on this shard).
    pub(crate) fn append_local(
        &mut self,
        slot: u32,
        batch: Vec<u8>,
        durability: Durability,
        reply: Reply<AppendResult>,
    ) {
        with_partition!(self, slot, |p, io| p.append(&mut io, batch, durability, reply));
        self.touched.push(slot);
        let write_buffer_bytes = self.settings.write_buffer_bytes;
        if with_partition!(self, slot, |p, _io| p.is_backlogged(write_buffer_bytes))
            .unwrap_or(false)
        {
            // Backpressure: let the device catch up before taking more.
            self.flush_touched();
            self.reap(Wait::One);
        }
    }

    /// Poll the tasks that are due; true if any asked to run again at once.
    fn run_tasks(&mut self) -> bool {
        if self.tasks.is_empty() {
            return false;
        }
        let now = self.clock.monotonic_ns();
        let mut tasks = std::mem::take(&mut self.tasks);
        let mut ready = false;
        tasks.retain_mut(|(task, wake_at)| {
            if *wake_at > now && *wake_at != task::NEXT_EVENT {
                return true;
            }
            match task.poll(&mut task::ShardContext { shard: self }) {
                task::TaskPoll::Ready => {
                    ready = true;
                    true
                }
                task::TaskPoll::Sleep(after) => {
                    *wake_at =
                        now.saturating_add(u64::try_from(after.as_nanos()).unwrap_or(u64::MAX));
                    true
                }
                task::TaskPoll::Done => false,
            }
        });
        // Tasks spawned by tasks (none today) would be in `self.tasks` now: keep both.
        tasks.append(&mut self.tasks);
        self.tasks = tasks;
        ready
    }

    pub(crate) fn slot(&self, target: &Target) -> Option<u32> {
        self.by_key.get(&target.key).copied()
    }

    fn slots_of(&self, topic_id: u64) -> Vec<u32> {
        self.by_key.iter().filter(|(k, _)| k.topic_id == topic_id).map(|(_, &slot)| slot).collect()
    }

    fn open_topic(
        &mut self,
        topic: Arc<str>,
        topic_id: u64,
        config: Arc<TopicConfig>,
        dir: PathBuf,
        partitions: Vec<u32>,
    ) -> Result<()> {
        for partition in partitions {
            let key = PartitionKey { topic_id, partition };
            if self.by_key.contains_key(&key) {
                continue;
            }
            let slot = match self.free_slots.pop() {
                Some(slot) => slot,
                None => {
                    self.partitions.push(None);
                    u32::try_from(self.partitions.len() - 1)
                        .map_err(|_| Error::config("partitions", "too many on one shard"))?
                }
            };
            let mut io = ShardIo {
                storage: &mut *self.storage,
                clock: &*self.clock,
                stash: &mut self.stash,
                settings: &self.settings,
                memory: &mut self.memory,
            };
            let opened = Partition::open(
                &mut io,
                topic.clone(),
                partition,
                self.index,
                dir.join(partition.to_string()),
                config.clone(),
                slot,
            );
            match opened {
                Ok(p) => {
                    self.partitions[slot as usize] = Some(p);
                    self.by_key.insert(key, slot);
                }
                Err(err) => {
                    self.free_slots.push(slot);
                    return Err(err);
                }
            }
        }
        Ok(())
    }

    fn flush_touched(&mut self) {
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        touched.dedup();
        for &slot in &touched {
            with_partition!(self, slot, |p, io| p.flush(&mut io));
        }
        touched.clear();
        self.touched = touched;
    }

    /// Reap completions and hand them to their partitions. True if there were any.
    fn reap(&mut self, wait: Wait) -> bool {
        // Completions stashed while a partition waited for an operation of its own
        // (`ShardIo::run_now`) were reaped before any reaped now: handle them first, or a
        // linked chain's completions would be handled out of order (an fdatasync before the
        // write it follows, covering records not yet written). Handling them may stash more.
        let mut stashed = false;
        while self.dispatch_stash() {
            stashed = true;
        }
        let mut completions = std::mem::take(&mut self.completions);
        if let Err(err) = self.storage.complete(&mut completions, wait) {
            // The storage itself failed (not one operation): nothing can be written safely.
            self.storage_failed(&err);
            return true;
        }
        let any = stashed || !completions.is_empty();
        for completion in completions.drain(..) {
            self.dispatch(completion);
        }
        self.completions = completions;
        if any && let Err(err) = self.storage.submit_staged() {
            // What the completions submitted (a group commit's next sync) goes out now, not
            // after the next round's requests.
            self.storage_failed(&err);
        }
        any
    }

    /// The storage failed as a whole: every partition fails stop, operations in flight are
    /// forgotten (they will never complete), and the shard stops.
    fn storage_failed(&mut self, err: &std::io::Error) {
        let reason = format!("storage failed on shard {}: {err}", self.index);
        tracing::error!(shard = self.index, error = %err, "storage failed; stopping the shard");
        for partition in self.partitions.iter_mut().flatten() {
            partition.abandon_io(&reason);
        }
        if let Some(reply) = self.shutdown.take() {
            reply.send(Err(Error::ShardStopped { shard: self.index, reason: reason.clone() }));
        }
        for (_, reply) in self.closing_topics.drain(..) {
            reply.send(Err(Error::ShardStopped { shard: self.index, reason: reason.clone() }));
        }
        self.dead = Some(reason);
    }

    fn dispatch_stash(&mut self) -> bool {
        if self.stash.is_empty() {
            return false;
        }
        let stash = std::mem::take(&mut self.stash);
        for completion in stash {
            self.dispatch(completion);
        }
        true
    }

    fn dispatch(&mut self, completion: Completion) {
        if completion.token == RUN_NOW_TOKEN {
            tracing::error!(shard = self.index, "stray completion of a synchronous operation");
            return;
        }
        let (slot, seq) = split_token(completion.token);
        if with_partition!(self, slot, |p, io| p.on_completion(&mut io, seq, completion)).is_none()
        {
            tracing::debug!(shard = self.index, slot, "completion for a removed partition");
        }
        // A completed write may have been cached: keep the tail caches within the budget.
        self.trim_tail_caches();
    }

    /// Evict the oldest cached chunks, of any partition, while the shard's tail caches hold
    /// more than their budget.
    fn trim_tail_caches(&mut self) {
        while let Some((slot, base_offset)) = self.memory.tail_cache.next_to_evict() {
            with_partition!(self, slot, |p, io| p.evict_cached(&mut io, base_offset));
        }
    }

    fn maintain(&mut self) {
        for slot in 0..self.partitions.len() as u32 {
            with_partition!(self, slot, |p, io| p.tick(&mut io));
        }
    }

    fn serve_parked(&mut self) {
        for slot in 0..self.partitions.len() as u32 {
            with_partition!(self, slot, |p, io| p.serve_parked(&mut io));
        }
    }

    fn finish_closing_topics(&mut self) {
        if self.closing_topics.is_empty() {
            return;
        }
        let closing = std::mem::take(&mut self.closing_topics);
        for (topic_id, reply) in closing {
            let slots = self.slots_of(topic_id);
            let idle = slots
                .iter()
                .all(|&slot| with_partition!(self, slot, |p, _io| !p.is_busy()).unwrap_or(true));
            if !idle {
                self.closing_topics.push((topic_id, reply));
                continue;
            }
            let mut result = Ok(());
            for slot in slots {
                if let Some(Err(err)) = with_partition!(self, slot, |p, io| p.close_files(&mut io))
                {
                    result = Err(err);
                }
                with_partition!(self, slot, |p, io| p.drop_tail_cache(&mut io));
                if let Some(partition) = self.partitions[slot as usize].take() {
                    self.by_key.remove(&PartitionKey { topic_id, partition: partition.id() });
                    drop(partition);
                }
                self.free_slots.push(slot);
            }
            reply.send(result);
        }
    }

    fn finish_shutdown(&mut self) {
        let mut result = Ok(());
        for slot in 0..self.partitions.len() as u32 {
            if let Some(Err(err)) = with_partition!(self, slot, |p, io| p.close_files(&mut io)) {
                result = Err(err);
            }
        }
        self.partitions.clear();
        self.tasks.clear();
        if let Some(reply) = self.shutdown.take() {
            reply.send(result);
        }
    }
}
