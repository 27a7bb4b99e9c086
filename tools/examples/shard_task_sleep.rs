//! Reproducer for an engine limitation the load generator works around: a shard that has
//! nothing else to do does not wake up for a [`ShardTask`] that returned
//! `TaskPoll::Sleep(..)`. Its idle wait is bounded only by the next maintenance tick and the
//! next parked read's deadline (`Shard::round` in `core/src/shard/mod.rs`), so a task asking
//! to sleep 1 ms is polled about once a second (`limits::MAINTENANCE_INTERVAL_MS`).
//!
//! ```sh
//! cargo run --release -p tidelog-tools --example shard_task_sleep
//! ```
//!
//! Prints how many times a task that asks for 1 ms sleeps was polled in one second on an idle
//! engine: about 1000 expected; with the limitation, 1 or 2.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tidelog_core::{Engine, EngineConfig, ShardContext, ShardTask, TaskPoll};

struct Sleeper {
    polls: Arc<AtomicU64>,
}

impl ShardTask for Sleeper {
    fn poll(&mut self, _ctx: &mut ShardContext<'_>) -> TaskPoll {
        self.polls.fetch_add(1, Ordering::Relaxed);
        TaskPoll::Sleep(Duration::from_millis(1))
    }
}

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let engine = Engine::open(dir.path(), EngineConfig::default().shards(1))?;
    let polls = Arc::new(AtomicU64::new(0));
    engine.spawn_on_shard(0, Box::new(Sleeper { polls: polls.clone() }))?;
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let polled = polls.load(Ordering::Relaxed);
    println!(
        "a task sleeping 1 ms at a time was polled {polled} times in {:.2} s on an idle shard (about 1000 expected)",
        started.elapsed().as_secs_f64()
    );
    engine.close()?;
    Ok(())
}
