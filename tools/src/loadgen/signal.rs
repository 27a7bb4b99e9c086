//! Wakers that record *when* an operation completed and wake the thread waiting on it.
//!
//! A [`Pending`](tidelog_core::Pending) polled once with one of these stores the waker; the
//! shard wakes it the moment it answers, on the shard's thread. So the completion time is taken
//! there, not whenever the waiting thread gets round to looking — an honest ack time even with
//! dozens of appends outstanding and a thread busy sending the next ones.
//!
//! A producer running *on* a shard uses a [`Signal::recorder`]: it only records the time (the
//! shard's thread is the one completing it, and the shard polls its tasks itself).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::Instant;

/// A one-shot completion signal.
#[derive(Debug)]
pub struct Signal {
    /// Nanoseconds since `start` when woken; 0 until then.
    fired_ns: AtomicU64,
    start: Instant,
    /// Woken when it fires; `None`: only record the time.
    thread: Option<Thread>,
}

impl Signal {
    /// A signal that wakes the calling thread.
    pub fn for_current_thread(start: Instant) -> Arc<Signal> {
        Arc::new(Signal {
            fired_ns: AtomicU64::new(0),
            start,
            thread: Some(std::thread::current()),
        })
    }

    /// A signal that only records when it fired.
    pub fn recorder(start: Instant) -> Arc<Signal> {
        Arc::new(Signal { fired_ns: AtomicU64::new(0), start, thread: None })
    }

    /// When it was woken (nanoseconds since the start), if it was.
    pub fn fired_ns(&self) -> Option<u64> {
        match self.fired_ns.load(Ordering::Acquire) {
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
        self.fired_ns.store(ns, Ordering::Release);
        if let Some(thread) = &self.thread {
            thread.unpark();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_on_completion_with_a_time() {
        let start = Instant::now();
        let signal = Signal::for_current_thread(start);
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
