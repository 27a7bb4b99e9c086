//! Model check of the shard wake-up protocol (`core/src/shard/wakeup.rs`) with loom: every
//! interleaving of a sender enqueueing and a shard going to sleep, with every memory ordering
//! the model allows. Run with:
//! `RUSTFLAGS="--cfg loom" cargo test -p tidelog-core --test loom_wakeup --release`
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use tidelog_core::shard::wakeup::SleepGate;

/// The queue as the protocol sees it: an item count published with release and read with
/// acquire, as `crossbeam_queue::ArrayQueue`'s push and `is_empty` do (a mutex here would
/// order the two sides by itself and hide a missing fence).
#[derive(Default)]
struct Queue {
    items: AtomicUsize,
}

impl Queue {
    fn push(&self) {
        self.items.fetch_add(1, Ordering::Release);
    }
    fn is_empty(&self) -> bool {
        self.items.load(Ordering::Acquire) == 0
    }
    fn len(&self) -> usize {
        self.items.load(Ordering::Acquire)
    }
}

/// One sender, one shard: the shard either sees the item or is woken.
#[test]
fn no_lost_wake_up() {
    loom::model(|| {
        let gate = Arc::new(SleepGate::new());
        let queue = Arc::new(Queue::default());
        let wakes = Arc::new(AtomicUsize::new(0));
        let sender = {
            let (gate, queue, wakes) = (gate.clone(), queue.clone(), wakes.clone());
            loom::thread::spawn(move || {
                queue.push();
                if gate.must_wake() {
                    wakes.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        let slept = gate.going_to_sleep(|| queue.is_empty());
        sender.join().unwrap();
        if slept {
            // The shard slept: the sender must have woken it (the item is queued).
            assert_eq!(wakes.load(Ordering::SeqCst), 1, "lost wake-up");
        } else {
            // The shard saw the item and stayed awake.
            assert_eq!(queue.len(), 1);
        }
        gate.awake();
    });
}

/// Two senders racing each other and the shard.
#[test]
fn no_lost_wake_up_with_two_senders() {
    loom::model(|| {
        let gate = Arc::new(SleepGate::new());
        let queue = Arc::new(Queue::default());
        let wakes = Arc::new(AtomicUsize::new(0));
        let senders: Vec<_> = (0..2u32)
            .map(|_| {
                let (gate, queue, wakes) = (gate.clone(), queue.clone(), wakes.clone());
                loom::thread::spawn(move || {
                    queue.push();
                    if gate.must_wake() {
                        wakes.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        let slept = gate.going_to_sleep(|| queue.is_empty());
        for sender in senders {
            sender.join().unwrap();
        }
        if slept {
            assert!(wakes.load(Ordering::SeqCst) >= 1, "lost wake-up");
        }
    });
}
