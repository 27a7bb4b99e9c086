//! Wakers that record *when* an operation completed and wake the thread waiting on it.
//!
//! A [`Pending`](tidelog_core::Pending) polled once with one of these stores the waker; the
//! shard wakes it the moment it answers, on the shard's thread. So the completion time is taken
//! there, not whenever the waiting thread gets round to looking — an honest ack time even with
//! dozens of appends outstanding and a thread busy sending the next ones.
//!
//!
//! A signal wakes its thread only while the thread says it is [`Waiter::waiting`] for one: a
//! producer waiting for its next scheduled send does not need waking for every ack (it looks
//! at them when it wakes, and their times are recorded anyway), and each wake-up costs the
//! shard a `futex` system call on its own thread — the load generator's cost, charged to the
//! engine being measured. A producer running *on* a shard uses a [`Signal::recorder`], which
//! never wakes anyone (the shard's thread is the one completing it, and the shard polls its
//! tasks itself).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::Instant;

/// A thread that signals wake while it waits for them.
#[derive(Debug)]
pub struct Waiter {
    thread: Thread,
    waiting: AtomicBool,
}

impl Waiter {
    /// The calling thread, not waiting.
    pub fn current() -> Arc<Waiter> {
        Arc::new(Waiter { thread: std::thread::current(), waiting: AtomicBool::new(false) })
    }

    /// Whether signals should wake the thread. Set it *before* looking at the signals and
    /// parking: with the signal's store of its time and load of this flag (all `SeqCst`),
    /// either the thread sees the signal fired or the signal sees the thread waiting.
    pub fn waiting(&self, waiting: bool) {
        self.waiting.store(waiting, Ordering::SeqCst);
    }
}

/// A one-shot completion signal.
#[derive(Debug)]
pub struct Signal {
    /// Nanoseconds since `start` when woken; 0 until then.
    fired_ns: AtomicU64,
    start: Instant,
    /// Woken when it fires, if waiting; `None`: only record the time.
    waiter: Option<Arc<Waiter>>,
}

impl Signal {
    /// A signal that wakes `waiter` when it fires while the waiter is waiting.
    pub fn waking(start: Instant, waiter: Arc<Waiter>) -> Arc<Signal> {
        Arc::new(Signal { fired_ns: AtomicU64::new(0), start, waiter: Some(waiter) })
    }

    /// A signal that only records when it fired.
    pub fn recorder(start: Instant) -> Arc<Signal> {
        Arc::new(Signal { fired_ns: AtomicU64::new(0), start, waiter: None })
    }

    /// When it was woken (nanoseconds since the start), if it was.
    pub fn fired_ns(&self) -> Option<u64> {
        match self.fired_ns.load(Ordering::SeqCst) {
            0 => None,
            ns => Some(ns),
        }
    }

    /// Make it ready for another operation. Only once the last one's waker has fired (or was
    /// never stored): a stale waker would fire it early.
    pub fn reset(&self) {
        self.fired_ns.store(0, Ordering::Release);
    }

    /// Poll `future` once with this signal as its waker: `Ready` if it is already complete,
    /// otherwise the signal fires when it completes.
    pub fn poll<F: Future + Unpin>(self: &Arc<Self>, future: &mut F) -> Poll<F::Output> {
        let waker = Waker::from(self.clone());
        let mut cx = Context::from_waker(&waker);
        Pin::new(future).poll(&mut cx)
    }
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // 0 means "not fired": a completion in the very first nanosecond reads as 1.
        let ns = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX).max(1);
        self.fired_ns.store(ns, Ordering::SeqCst);
        if let Some(waiter) = &self.waiter
            && waiter.waiting.load(Ordering::SeqCst)
        {
            waiter.thread.unpark();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_on_completion_with_a_time() {
        let start = Instant::now();
        let signal = Signal::waking(start, Waiter::current());
        let (reply, mut pending) = tidelog_core::completion::channel::<u32>();
        assert!(signal.poll(&mut pending).is_pending());
        assert_eq!(signal.fired_ns(), None);
        reply.send(Ok(5));
        assert!(signal.fired_ns().is_some());
        assert_eq!(pending.try_take().unwrap().unwrap(), 5);
        signal.reset();
        assert_eq!(signal.fired_ns(), None);
        let mut ready = tidelog_core::Pending::ready(Ok(1u32));
        assert!(matches!(signal.poll(&mut ready), Poll::Ready(Ok(1))));
    }
}
