//! A shard's inbound queue: bounded and lock-free (`crossbeam_queue::ArrayQueue`), with a
//! wake-up that costs nothing while the shard is busy.
//!
//! Senders push and then look at the shard's `sleeping` flag; only a sleeping shard is woken
//! (through its storage's waker: the shard sleeps inside `Storage::complete(Wait::Idle)`, so
//! one wait covers both new requests and I/O completions). The shard sets the flag,
//! re-checks the queue, and only then sleeps. A `SeqCst`
//! fence on each side between the write of one location and the read of the other makes sure
//! at least one of them sees the other's write, so a request can never sit in the queue of a
//! parked shard. A full queue pushes back on the sender.

use std::sync::atomic::{Ordering, fence};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tidelog_io::storage::Wake;

use crossbeam_queue::ArrayQueue;

use super::Request;
use super::wakeup::SleepGate;

/// Why a send failed.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The shard has stopped: its reason.
    Stopped(String),
}

#[derive(Debug)]
pub(crate) struct Mailbox {
    shard: usize,
    queue: ArrayQueue<Request>,
    gate: SleepGate,
    waker: OnceLock<Arc<dyn Wake>>,
    stopped: OnceLock<String>,
}

impl Mailbox {
    pub fn new(shard: usize, capacity: usize) -> Self {
        Self {
            shard,
            queue: ArrayQueue::new(capacity),
            gate: SleepGate::new(),
            waker: OnceLock::new(),
            stopped: OnceLock::new(),
        }
    }

    /// Register what wakes the shard from its idle wait (once, from the shard itself).
    pub fn bind(&self, waker: Arc<dyn Wake>) {
        let _ = self.waker.set(waker);
    }

    /// Send a request, waiting while the queue is full (backpressure).
    pub fn send(&self, mut request: Request) -> Result<(), (SendError, Request)> {
        let mut spins = 0u32;
        loop {
            if let Some(reason) = self.stopped.get() {
                return Err((SendError::Stopped(reason.clone()), request));
            }
            match self.queue.push(request) {
                Ok(()) => {
                    self.wake();
                    // The shard may have stopped (and drained the queue) between the check
                    // above and the push: then nobody else will answer what is queued.
                    fence(Ordering::SeqCst);
                    if self.stopped.get().is_some() {
                        self.fail_queued();
                    }
                    return Ok(());
                }
                Err(back) => {
                    request = back;
                    self.wake();
                    spins += 1;
                    if spins < 64 {
                        std::hint::spin_loop();
                    } else if spins < 128 {
                        std::thread::yield_now();
                    } else {
                        std::thread::sleep(Duration::from_micros(50));
                    }
                }
            }
        }
    }

    fn wake(&self) {
        if self.gate.must_wake()
            && let Some(waker) = self.waker.get()
        {
            waker.wake();
        }
    }

    /// True if a request is queued.
    pub fn has_requests(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Take the next request.
    pub fn pop(&self) -> Option<Request> {
        self.queue.pop()
    }

    /// Declare the shard about to sleep. Returns false (and stays awake) if a request
    /// arrived meanwhile; otherwise the shard must sleep in a wait that its waker ends, then
    /// call [`Mailbox::awake`].
    pub fn going_to_sleep(&self) -> bool {
        self.gate.going_to_sleep(|| self.queue.is_empty())
    }

    /// The shard is awake again.
    pub fn awake(&self) {
        self.gate.awake();
    }

    /// Mark the shard stopped and answer everything queued: later sends fail at once.
    pub fn stop(&self, reason: String) {
        let _ = self.stopped.set(reason);
        fence(Ordering::SeqCst);
        self.fail_queued();
    }

    /// Answer every queued request with the reason the shard stopped.
    fn fail_queued(&self) {
        let reason = self.stopped.get().cloned().unwrap_or_default();
        while let Some(request) = self.queue.pop() {
            request.fail(|| crate::error::Error::ShardStopped {
                shard: self.shard,
                reason: reason.clone(),
            });
        }
    }

    /// Why the shard stopped, if it did.
    pub fn stopped(&self) -> Option<&str> {
        self.stopped.get().map(String::as_str)
    }
}
