//! One-shot completions: how a shard hands a result back to the thread that asked.
//!
//! A [`Pending`] is both a [`Future`] (for async embedders) and blockable ([`Pending::wait`]).
//! The shard holds the matching [`Reply`]; if the shard drops it without answering (shutdown,
//! a crashed shard), the waiter gets [`Error::Closed`] instead of hanging.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

enum State<T> {
    Waiting(Option<Waker>),
    Ready(Result<T>),
    Taken,
}

struct Slot<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

impl<T> Slot<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // The lock is never held across user code, so poisoning can only follow a panic
        // inside this module's few lines; the state is still consistent then.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The result of an operation a shard is working on.
#[must_use = "a Pending does nothing unless waited on or polled"]
pub struct Pending<T> {
    slot: Arc<Slot<T>>,
}

/// The shard's side of a [`Pending`].
pub struct Reply<T> {
    slot: Option<Arc<Slot<T>>>,
}

/// A connected pair.
pub fn channel<T>() -> (Reply<T>, Pending<T>) {
    let slot = Arc::new(Slot { state: Mutex::new(State::Waiting(None)), ready: Condvar::new() });
    (Reply { slot: Some(slot.clone()) }, Pending { slot })
}

impl<T> Pending<T> {
    /// A `Pending` that is already complete.
    pub fn ready(result: Result<T>) -> Self {
        let (reply, pending) = channel();
        reply.send(result);
        pending
    }

    /// Block until the result is in.
    pub fn wait(self) -> Result<T> {
        let mut state = self.slot.lock();
        loop {
            match std::mem::replace(&mut *state, State::Taken) {
                State::Ready(result) => return result,
                State::Taken => return Err(Error::Closed),
                waiting @ State::Waiting(_) => {
                    *state = waiting;
                    state = self
                        .slot
                        .ready
                        .wait(state)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                }
            }
        }
    }

    /// Block until the result is in or `timeout` passes; on timeout the `Pending` comes back.
    pub fn wait_timeout(self, timeout: Duration) -> std::result::Result<Result<T>, Self> {
        let deadline = Instant::now() + timeout;
        {
            let mut state = self.slot.lock();
            loop {
                if matches!(*state, State::Ready(_)) {
                    break;
                }
                let now = Instant::now();
                if now >= deadline {
                    drop(state);
                    return Err(self);
                }
                state = self
                    .slot
                    .ready
                    .wait_timeout(state, deadline - now)
                    .map(|(guard, _)| guard)
                    .unwrap_or_else(|poisoned| poisoned.into_inner().0);
            }
        }
        Ok(self.wait())
    }

    /// Take the result if it is in; otherwise the `Pending` comes back.
    pub fn try_take(self) -> std::result::Result<Result<T>, Self> {
        if self.is_ready() { Ok(self.wait()) } else { Err(self) }
    }

    /// True once the result is in.
    pub fn is_ready(&self) -> bool {
        matches!(*self.slot.lock(), State::Ready(_))
    }
}

impl<T> Future for Pending<T> {
    type Output = Result<T>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let mut state = self.slot.lock();
        match std::mem::replace(&mut *state, State::Taken) {
            State::Ready(result) => Poll::Ready(result),
            State::Taken => Poll::Ready(Err(Error::Closed)),
            State::Waiting(_) => {
                *state = State::Waiting(Some(cx.waker().clone()));
                Poll::Pending
            }
        }
    }
}

impl<T> Reply<T> {
    /// Complete the operation.
    pub fn send(mut self, result: Result<T>) {
        if let Some(slot) = self.slot.take() {
            Self::deliver(&slot, result);
        }
    }

    fn deliver(slot: &Slot<T>, result: Result<T>) {
        let waker = {
            let mut state = slot.lock();
            match std::mem::replace(&mut *state, State::Ready(result)) {
                State::Waiting(waker) => waker,
                // Already answered or taken: keep the first answer.
                previous => {
                    *state = previous;
                    None
                }
            }
        };
        slot.ready.notify_all();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Drop for Reply<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            Self::deliver(&slot, Err(Error::Closed));
        }
    }
}

impl<T> fmt::Debug for Pending<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending").field("ready", &self.is_ready()).finish()
    }
}

impl<T> fmt::Debug for Reply<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reply").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;

    #[test]
    fn send_then_wait() {
        let (reply, pending) = channel::<u32>();
        reply.send(Ok(7));
        assert_eq!(pending.wait().unwrap(), 7);
    }

    #[test]
    fn wait_across_threads() {
        let (reply, pending) = channel::<u32>();
        let handle = std::thread::spawn(move || pending.wait());
        std::thread::sleep(Duration::from_millis(5));
        reply.send(Ok(9));
        assert_eq!(handle.join().unwrap().unwrap(), 9);
    }

    #[test]
    fn dropped_reply_means_closed() {
        let (reply, pending) = channel::<u32>();
        drop(reply);
        assert!(matches!(pending.wait(), Err(Error::Closed)));
    }

    #[test]
    fn timeout_and_try_take_give_the_pending_back() {
        let (reply, pending) = channel::<u32>();
        let pending = pending.wait_timeout(Duration::from_millis(1)).unwrap_err();
        let pending = pending.try_take().unwrap_err();
        reply.send(Ok(1));
        assert!(pending.is_ready());
        assert_eq!(pending.try_take().unwrap().unwrap(), 1);
    }

    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn future_is_woken() {
        let (reply, mut pending) = channel::<u32>();
        let flag = Arc::new(Flag(false.into()));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut pending).poll(&mut cx).is_pending());
        reply.send(Ok(3));
        assert!(flag.0.load(std::sync::atomic::Ordering::SeqCst));
        assert!(matches!(Pin::new(&mut pending).poll(&mut cx), Poll::Ready(Ok(3))));
    }
}
