//! The raw floor under `tidelog loadgen --rate`: how late a thread wakes when it sleeps to a
//! fixed schedule, and how long a parked thread takes to run once another unparks it — the
//! two things every open-loop message does (a producer waking at its scheduled time; a
//! hand-off to the shard, and from the shard to a consumer). No engine involved.
//!
//! ```sh
//! cargo run --release -p tidelog-tools --example wakeup_baseline -- 20000 10
//! ```
//!
//! Arguments: the rate (wake-ups per second, default 20000) and the seconds to run (default
//! 5). Lateness is counted as loadgen counts it: from the scheduled time, so a thread held up
//! makes every wake-up scheduled meanwhile late (no coordinated omission). Run it just before
//! or after a loadgen run to see what share of loadgen's latency tail the platform accounts
//! for. It also prints the guest's halt-polling setting, which moves both figures on a VM.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

fn histogram() -> Histogram<u64> {
    // Constant, valid bounds: cannot fail.
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

fn summary(h: &Histogram<u64>) -> String {
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    format!(
        "p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1} µs ({} samples)",
        us(0.5),
        us(0.9),
        us(0.99),
        us(0.999),
        h.max() as f64 / 1000.0,
        h.len()
    )
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rate: u64 = args.next().map_or(20_000, |a| a.parse().expect("a rate in wake-ups/s"));
    let seconds: u64 = args.next().map_or(5, |a| a.parse().expect("a number of seconds"));
    let interval_ns = 1e9 / rate as f64;
    let count = rate * seconds;
    // As loadgen's producers and consumers do; failing leaves the default slack (50 µs).
    let _ = nix::sys::prctl::set_timerslack(1);
    // On a VM guest, how long an idle vCPU polls before halting: at 0 every wake-up of a
    // thread on an idle vCPU pays the halt's exit (tens of µs here; docs/BENCHMARKS.md).
    match std::fs::read_to_string("/sys/module/haltpoll/parameters/guest_halt_poll_ns") {
        Ok(ns) => println!("guest halt polling: {} ns before an idle vCPU halts", ns.trim()),
        Err(_) => println!("guest halt polling: not present (no haltpoll cpuidle driver)"),
    }

    let origin = Instant::now() + Duration::from_millis(5);
    let mut lateness = histogram();
    for i in 0..count {
        let due = origin + Duration::from_nanos((i as f64 * interval_ns) as u64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        lateness.saturating_record(Instant::now().saturating_duration_since(due).as_nanos() as u64);
    }
    println!("sleep to a {rate}/s schedule, lateness      {}", summary(&lateness));

    // The unparking thread keeps the same schedule; the parked one records how long after
    // the unpark it ran.
    let t0 = Instant::now();
    let stamp = Arc::new(AtomicU64::new(0));
    let peer = {
        let stamp = stamp.clone();
        std::thread::spawn(move || {
            let _ = nix::sys::prctl::set_timerslack(1);
            let mut delay = histogram();
            loop {
                std::thread::park();
                match stamp.swap(0, Ordering::AcqRel) {
                    0 => {}
                    u64::MAX => return delay,
                    at => {
                        let now = t0.elapsed().as_nanos() as u64;
                        delay.saturating_record(now.saturating_sub(at).max(1));
                    }
                }
            }
        })
    };
    let origin = Instant::now() + Duration::from_millis(5);
    for i in 0..count {
        let due = origin + Duration::from_nanos((i as f64 * interval_ns) as u64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        stamp.store(t0.elapsed().as_nanos() as u64, Ordering::Release);
        peer.thread().unpark();
    }
    std::thread::sleep(Duration::from_millis(10));
    stamp.store(u64::MAX, Ordering::Release);
    peer.thread().unpark();
    // The peer only records; a panic there is a bug worth seeing.
    let delay = peer.join().expect("the peer thread does not panic");
    println!("unpark → the parked thread runs            {}", summary(&delay));
}
