//! Code that runs *on* a shard, next to its partitions: the lowest-latency way to produce,
//! since an append from a task takes the local path (no mailbox, no hand-off, no wake-up).
//!
//! A [`ShardTask`] is polled once per round of the shard's loop (while it says
//! [`TaskPoll::Ready`]) or when the time it asked to sleep until has come. It must not block:
//! everything it does runs on the shard's thread, between the shard's own work.

use std::time::Duration;

use crate::completion::{self, Pending};
use crate::config::Durability;
use crate::error::Error;
use crate::partition::AppendResult;
use crate::record::{BatchOptions, Record, encode_batch};
use crate::shard::{Shard, Target, unknown};

/// What a task wants after a poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskPoll {
    /// Poll again next round (the shard does not sleep meanwhile).
    Ready,
    /// Poll again once this much time has passed (on the engine's clock); an idle shard wakes
    /// for it. `Sleep(Duration::ZERO)` means "after the shard's next event" — a completion or
    /// a request — which is how a task waits for its own appends' acknowledgements without
    /// keeping the shard spinning.
    Sleep(Duration),
    /// The task is finished; drop it.
    Done,
}

/// Wake time of a task waiting for the shard's next event.
pub(crate) const NEXT_EVENT: u64 = u64::MAX;

/// A task that runs on a shard. See the module documentation.
pub trait ShardTask: Send + 'static {
    /// Do a bounded amount of work.
    fn poll(&mut self, ctx: &mut ShardContext<'_>) -> TaskPoll;
}

/// A partition a task may append to: obtained from [`crate::Engine::local_target`], valid on
/// the shard that owns the partition.
#[derive(Clone, Debug)]
pub struct LocalTarget {
    pub(crate) target: Target,
    pub(crate) shard: usize,
    pub(crate) record_size_bytes_max: usize,
}

impl LocalTarget {
    /// The shard that owns the partition (where a task using this target must run).
    pub fn shard(&self) -> usize {
        self.shard
    }
}

/// What a task can do on its shard.
pub struct ShardContext<'a> {
    pub(crate) shard: &'a mut Shard,
}

impl std::fmt::Debug for ShardContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardContext").field("shard", &self.shard.index).finish()
    }
}

impl ShardContext<'_> {
    /// The shard this task runs on.
    pub fn shard(&self) -> usize {
        self.shard.index
    }

    /// Nanoseconds on the engine clock's monotonic time.
    pub fn monotonic_ns(&self) -> u64 {
        self.shard.clock.monotonic_ns()
    }

    /// Append records to a partition of this shard: encoded here, appended at once (the
    /// local path). The result completes when `durability` is reached, as for
    /// [`crate::Engine::append_async`].
    pub fn append(
        &mut self,
        target: &LocalTarget,
        records: &[Record<'_>],
        durability: Durability,
    ) -> Pending<AppendResult> {
        if target.shard != self.shard.index {
            return Pending::ready(Err(Error::config(
                "target",
                format!(
                    "partition belongs to shard {}, the task runs on shard {}",
                    target.shard, self.shard.index
                ),
            )));
        }
        if records.is_empty() {
            return Pending::ready(Err(Error::EmptyBatch));
        }
        let batch = encode_batch(records, self.shard.clock.now_ms(), BatchOptions::default());
        if batch.len() > target.record_size_bytes_max {
            return Pending::ready(Err(Error::RecordTooLarge {
                topic: target.target.topic.to_string(),
                size: batch.len(),
                max: target.record_size_bytes_max,
            }));
        }
        let (reply, pending) = completion::channel();
        match self.shard.slot(&target.target) {
            Some(slot) => self.shard.append_local(slot, batch, durability, reply),
            None => reply.send(Err(unknown(&target.target))),
        }
        pending
    }
}

impl std::fmt::Debug for dyn ShardTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShardTask")
    }
}
