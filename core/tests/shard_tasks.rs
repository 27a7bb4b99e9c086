//! Tasks that run on a shard and append through the local path.

use std::sync::mpsc;

use tidelog_core::{
    AppendResult, Durability, Engine, EngineConfig, LocalTarget, Pending, ReadRequest, Record,
    ShardContext, ShardTask, TaskPoll, TopicConfig,
};

struct Producer {
    target: LocalTarget,
    sent: u32,
    total: u32,
    in_flight: Vec<Pending<AppendResult>>,
    acks: Vec<AppendResult>,
    done: Option<mpsc::Sender<Vec<AppendResult>>>,
}

impl ShardTask for Producer {
    fn poll(&mut self, ctx: &mut ShardContext<'_>) -> TaskPoll {
        // Keep up to 8 appends in flight.
        while self.sent < self.total && self.in_flight.len() < 8 {
            let value = format!("local {}", self.sent);
            self.in_flight.push(ctx.append(
                &self.target,
                &[Record::new(value.as_bytes())],
                Durability::Durable,
            ));
            self.sent += 1;
        }
        let mut still = Vec::new();
        for pending in self.in_flight.drain(..) {
            match pending.try_take() {
                Ok(result) => self.acks.push(result.expect("local append")),
                Err(pending) => still.push(pending),
            }
        }
        self.in_flight = still;
        if self.sent == self.total && self.in_flight.is_empty() {
            if let Some(done) = self.done.take() {
                let _ = done.send(std::mem::take(&mut self.acks));
            }
            return TaskPoll::Done;
        }
        TaskPoll::Ready
    }
}

#[test]
fn a_task_on_the_owning_shard_appends_through_the_local_path() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), EngineConfig::default().shards(2)).unwrap();
    engine.create_topic("t", TopicConfig::default().partitions(2)).unwrap();
    let mut receivers = Vec::new();
    for partition in 0..2 {
        let target = engine.local_target("t", partition).unwrap();
        let (tx, rx) = mpsc::channel();
        let task = Producer {
            target: target.clone(),
            sent: 0,
            total: 500,
            in_flight: Vec::new(),
            acks: Vec::new(),
            done: Some(tx),
        };
        engine.spawn_on_shard(target.shard(), Box::new(task)).unwrap();
        receivers.push(rx);
    }
    for (partition, rx) in receivers.into_iter().enumerate() {
        let acks = rx.recv_timeout(std::time::Duration::from_secs(30)).unwrap();
        assert_eq!(acks.len(), 500);
        let offsets: Vec<u64> = acks.iter().map(|a| a.base_offset).collect();
        assert_eq!(offsets, (0..500).collect::<Vec<_>>());
        let info = engine.partition_info("t", partition as u32).unwrap();
        assert_eq!(info.durable_offset, 500);
        let fetch = engine.read("t", partition as u32, ReadRequest::new(499)).unwrap();
        assert_eq!(fetch.records().next().unwrap().unwrap().value(), Some(&b"local 499"[..]));
    }
    engine.close().unwrap();
}

#[test]
fn a_task_on_the_wrong_shard_gets_an_error() {
    struct Wrong(LocalTarget, Option<mpsc::Sender<String>>);
    impl ShardTask for Wrong {
        fn poll(&mut self, ctx: &mut ShardContext<'_>) -> TaskPoll {
            let result = ctx.append(&self.0, &[Record::new(b"x")], Durability::None).wait();
            if let Some(tx) = self.1.take() {
                let _ = tx.send(format!("{:?}", result.err()));
            }
            TaskPoll::Done
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), EngineConfig::default().shards(2)).unwrap();
    engine.create_topic("t", TopicConfig::default()).unwrap();
    let target = engine.local_target("t", 0).unwrap();
    let other = 1 - target.shard();
    let (tx, rx) = mpsc::channel();
    engine.spawn_on_shard(other, Box::new(Wrong(target, Some(tx)))).unwrap();
    let error = rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
    assert!(error.contains("belongs to shard"), "{error}");
    assert!(
        engine
            .spawn_on_shard(7, Box::new(Wrong(engine.local_target("t", 0).unwrap(), None)))
            .is_err()
    );
}

#[test]
fn an_idle_shard_wakes_for_a_sleeping_task() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    struct Sleeper(Arc<AtomicU64>);
    impl ShardTask for Sleeper {
        fn poll(&mut self, _ctx: &mut ShardContext<'_>) -> TaskPoll {
            self.0.fetch_add(1, Ordering::Relaxed);
            TaskPoll::Sleep(std::time::Duration::from_millis(1))
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), EngineConfig::default().shards(1)).unwrap();
    let polls = Arc::new(AtomicU64::new(0));
    engine.spawn_on_shard(0, Box::new(Sleeper(polls.clone()))).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    // About 300 expected; an idle shard that ignored task deadlines polled it once a second.
    let polled = polls.load(Ordering::Relaxed);
    assert!(polled > 30, "a task sleeping 1 ms was polled {polled} times in 300 ms");
    engine.close().unwrap();
}

/// Reports the scheduler slice of the thread it runs on.
struct SliceProbe(Option<mpsc::Sender<Option<std::time::Duration>>>);

impl ShardTask for SliceProbe {
    fn poll(&mut self, _ctx: &mut ShardContext<'_>) -> TaskPoll {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(tidelog_io::cpu::scheduler_slice().unwrap());
        }
        TaskPoll::Done
    }
}

fn shard_slice(config: EngineConfig) -> Option<std::time::Duration> {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), config.shards(1)).unwrap();
    let (tx, rx) = mpsc::channel();
    engine.spawn_on_shard(0, Box::new(SliceProbe(Some(tx)))).unwrap();
    let slice = rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
    engine.close().unwrap();
    slice
}

#[test]
fn shard_threads_run_with_the_configured_scheduler_slice() {
    use std::time::Duration;
    let kernel_reports_slices = tidelog_io::cpu::scheduler_slice().unwrap().is_some();
    let asked =
        shard_slice(EngineConfig::default().shard_scheduler_slice(Some(Duration::from_millis(7))));
    let default = shard_slice(EngineConfig::default());
    let untouched = shard_slice(EngineConfig::default().shard_scheduler_slice(None));
    if kernel_reports_slices {
        assert_eq!(asked, Some(Duration::from_millis(7)));
        assert_eq!(default, Some(tidelog_core::limits::SHARD_SCHEDULER_SLICE_DEFAULT));
        assert_eq!(untouched, tidelog_io::cpu::scheduler_slice().unwrap(), "a thread's default");
    }
    for bad in [Duration::from_micros(99), Duration::from_millis(101)] {
        let dir = tempfile::tempdir().unwrap();
        let err =
            Engine::open(dir.path(), EngineConfig::default().shard_scheduler_slice(Some(bad)))
                .expect_err("a slice out of range is refused");
        assert!(err.to_string().contains("shard_scheduler_slice"), "{err}");
    }
}

/// Reports the CPU time of the thread it runs on.
struct CpuProbe(Option<mpsc::Sender<std::time::Duration>>);

impl ShardTask for CpuProbe {
    fn poll(&mut self, _ctx: &mut ShardContext<'_>) -> TaskPoll {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(tidelog_io::cpu::thread_cpu_time().unwrap());
        }
        TaskPoll::Done
    }
}

/// Idle polling happens after work, not instead of sleeping: an idle shard with the longest
/// poll allowed still uses almost no CPU.
#[test]
fn an_idle_shard_polls_briefly_then_sleeps() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig::default().shards(1).idle_poll(tidelog_core::limits::IDLE_POLL_MAX);
    let engine = Engine::open(dir.path(), config).unwrap();
    let cpu_now = || {
        let (tx, rx) = mpsc::channel();
        engine.spawn_on_shard(0, Box::new(CpuProbe(Some(tx)))).unwrap();
        rx.recv_timeout(Duration::from_secs(10)).unwrap()
    };
    let before = cpu_now();
    std::thread::sleep(Duration::from_millis(400));
    let used = cpu_now() - before;
    // Spinning all along would be ~400 ms; a poll after each wake-up (the probe, the
    // maintenance tick) is a few milliseconds.
    assert!(used < Duration::from_millis(100), "an idle shard used {used:?} of CPU in 400 ms");
    // Requests are served as before.
    engine.create_topic("t", TopicConfig::default()).unwrap();
    engine.append("t", 0, &[Record::new(b"x")], Durability::Durable).unwrap();
    assert!(
        EngineConfig::default().idle_poll(Duration::from_millis(2)).validate().is_err(),
        "a poll above the limit is refused"
    );
    engine.close().unwrap();
}
