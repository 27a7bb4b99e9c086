//! The wake-up protocol between a shard and the threads that send it work, on its own so it
//! can be model-checked with loom (`core/tests/loom_wakeup.rs`, run with
//! `RUSTFLAGS="--cfg loom" cargo test -p tidelog-core --test loom_wakeup --release`).
//!
//! The hazard is the lost wake-up: a sender enqueues just as the shard decides to sleep, the
//! shard does not see the item and the sender does not see that the shard sleeps. Each side
//! writes its own location, issues a `SeqCst` fence, then reads the other's:
//! - the shard: `sleeping = true`; fence; is the queue empty? (if not, `sleeping = false` and
//!   stay awake);
//! - a sender: push; fence; is `sleeping` set? (if so, wake the shard).
//!
//! Fences order the two pairs globally, so at least one side sees the other's write: either
//! the shard finds the item, or the sender finds the flag and wakes the shard. A busy shard
//! (flag clear) costs a sender nothing but the fence and a load — no futex, no system call.

#[cfg(loom)]
use loom::sync::atomic::{AtomicBool, Ordering, fence};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicBool, Ordering, fence};

/// The shard's "I am going to sleep" flag.
#[derive(Debug, Default)]
pub struct SleepGate {
    sleeping: AtomicBool,
}

impl SleepGate {
    /// A gate with the shard awake.
    pub fn new() -> Self {
        Self { sleeping: AtomicBool::new(false) }
    }

    /// Shard side: declare the intent to sleep, then check the queue with `is_empty`. Returns
    /// true if the shard may sleep (a sender that enqueues from now on will wake it); false if
    /// work arrived, in which case the shard stays awake.
    pub fn going_to_sleep(&self, is_empty: impl FnOnce() -> bool) -> bool {
        self.sleeping.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if is_empty() {
            return true;
        }
        self.sleeping.store(false, Ordering::Relaxed);
        false
    }

    /// Shard side: awake again.
    pub fn awake(&self) {
        self.sleeping.store(false, Ordering::Relaxed);
    }

    /// Sender side, after enqueueing: true if the shard may be asleep and must be woken.
    pub fn must_wake(&self) -> bool {
        fence(Ordering::SeqCst);
        self.sleeping.load(Ordering::Relaxed)
    }
}
