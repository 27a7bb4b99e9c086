//! io_uring backend tests beyond the conformance suite: registered buffers, the pool, drop
//! with operations in flight, the waker, links across `complete` calls, backpressure and many
//! operations completing in any order. (Memlock fallback and short-write links, which need
//! system calls to set up, are unit tests in `io/src/uring/tests.rs`.)

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use tidelog_io::storage::{read_at, run, write_all_at};
use tidelog_io::uring::URING_QUEUE_DEPTH;
use tidelog_io::{
    AlignedBuf, BLOCK_SIZE, BackendKind, Completion, FileId, Op, OpenOptions, PortableStorage,
    SimDisk, Storage, StorageFactory, Submission, UringConfig, UringFactory, UringStorage, Wait,
};

fn storage(queue_depth: usize) -> UringStorage {
    UringStorage::with_queue_depth(queue_depth).expect("an io_uring storage")
}

fn complete_all(storage: &mut dyn Storage) -> Vec<Completion> {
    let mut out = Vec::new();
    while storage.in_flight() > 0 {
        storage.complete(&mut out, Wait::One).expect("complete");
    }
    out.sort_by_key(|done| done.token);
    out
}

fn errno(result: &io::Result<usize>) -> Option<i32> {
    result.as_ref().err().and_then(io::Error::raw_os_error)
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (seed as usize * 31 + i * 7) as u8).collect()
}

#[test]
fn probe_finds_everything_the_backend_needs() {
    let report = tidelog_io::probe().expect("io_uring is usable on this machine");
    assert!(report.operations.iter().all(|(_, supported)| *supported), "{report:?}");
    assert!(report.single_issuer_defer_taskrun, "{report:?}");
    eprintln!("{report}");
}

#[test]
fn factory_makes_uring_storages_with_its_config() {
    let config = UringConfig { queue_depth: 8, buffer_pool_slots: 2, ..UringConfig::default() };
    let factory = UringFactory::new(config);
    assert_eq!(factory.kind(), BackendKind::Uring);
    let storage = factory.create().unwrap();
    assert_eq!(storage.kind(), BackendKind::Uring);
    assert_eq!(storage.queue_depth(), 8);
    assert!(UringStorage::new(UringConfig { queue_depth: 0, ..UringConfig::default() }).is_err());
    let defaults = storage_defaults();
    assert_eq!(defaults.queue_depth(), URING_QUEUE_DEPTH);
    let pool = defaults.pool_stats().unwrap();
    assert_eq!((pool.slots, pool.slot_bytes, pool.free), (16, 256 * 1024, 16));
    assert!(pool.registered, "the default 4 MiB pool registers here: {pool:?}");
    assert_eq!(defaults.setup(), "single-issuer+defer-taskrun+submit-all");
}

fn storage_defaults() -> UringStorage {
    UringStorage::new(UringConfig::default()).unwrap()
}

#[test]
fn pooled_buffers_go_out_as_write_fixed_and_read_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = storage(16);
    let file = s.open(&dir.path().join("f"), OpenOptions::create().direct(true)).unwrap();
    let mut pooled = s.alloc_buf(2 * BLOCK_SIZE);
    assert!(pooled.is_pooled());
    pooled.extend_from_slice(&pattern(1, 2 * BLOCK_SIZE));
    let (result, back) = run(&mut s, Op::Write { file, offset: 0, buf: pooled });
    assert_eq!(result.unwrap(), 2 * BLOCK_SIZE);
    assert!(back.unwrap().is_pooled(), "the same pooled buffer comes back");
    let heap = AlignedBuf::from_slice(&pattern(2, BLOCK_SIZE));
    run(&mut s, Op::Write { file, offset: 2 * BLOCK_SIZE as u64, buf: heap }).0.unwrap();
    let read_buf = s.alloc_buf(3 * BLOCK_SIZE);
    let (result, back) =
        run(&mut s, Op::Read { file, offset: 0, len: 3 * BLOCK_SIZE, buf: read_buf });
    assert_eq!(result.unwrap(), 3 * BLOCK_SIZE);
    let back = back.unwrap();
    assert_eq!(back[..2 * BLOCK_SIZE], pattern(1, 2 * BLOCK_SIZE)[..]);
    assert_eq!(back[2 * BLOCK_SIZE..], pattern(2, BLOCK_SIZE)[..]);
    let stats = s.stats();
    assert_eq!((stats.writes_fixed, stats.writes), (1, 1), "{stats:?}");
    assert_eq!((stats.reads_fixed, stats.reads), (1, 0), "{stats:?}");
    assert_eq!(stats.pool_allocs, 2);
    // A slot of another storage's pool is not registered with this ring: a plain write.
    let other = storage(4);
    let mut foreign = other.buffer_pool().unwrap().alloc(BLOCK_SIZE).unwrap();
    foreign.extend_from_slice(&pattern(3, BLOCK_SIZE));
    run(&mut s, Op::Write { file, offset: 0, buf: foreign }).0.unwrap();
    assert_eq!(s.stats().writes, 2);
    assert_eq!(read_at(&mut s, file, 0, BLOCK_SIZE).unwrap(), pattern(3, BLOCK_SIZE));
}

#[test]
fn alloc_buf_falls_back_to_the_heap_when_a_slot_will_not_do() {
    let config = UringConfig {
        buffer_pool_slots: 2,
        buffer_pool_slot_bytes: 8192,
        ..UringConfig::default()
    };
    let mut s = UringStorage::new(config).unwrap();
    let big = s.alloc_buf(8193);
    assert!(!big.is_pooled(), "too big for a slot");
    let (a, b) = (s.alloc_buf(1), s.alloc_buf(8192));
    assert!(a.is_pooled() && b.is_pooled());
    assert!(!s.alloc_buf(1).is_pooled(), "pool empty");
    assert_eq!(s.pool_stats().unwrap().free, 0);
    drop(a);
    assert!(s.alloc_buf(1).is_pooled(), "a returned slot is handed out again");
    let stats = s.stats();
    assert_eq!((stats.pool_allocs, stats.heap_allocs), (3, 2));
    let mut none =
        UringStorage::new(UringConfig { buffer_pool_slots: 0, ..UringConfig::default() }).unwrap();
    assert!(none.pool_stats().is_none());
    assert!(!none.alloc_buf(10).is_pooled());
    // Portable and simulated storages keep the heap default.
    assert!(!PortableStorage::new().alloc_buf(10).is_pooled());
    assert!(!SimDisk::new(1).storage().alloc_buf(10).is_pooled());
}

#[test]
fn alloc_read_buf_leaves_half_the_pool_to_writes() {
    let dir = tempfile::tempdir().unwrap();
    let config = UringConfig {
        buffer_pool_slots: 4,
        buffer_pool_slot_bytes: 8192,
        ..UringConfig::default()
    };
    let mut s = UringStorage::new(config).unwrap();
    let file = s.open(&dir.path().join("f"), OpenOptions::create()).unwrap();
    run(&mut s, Op::Write { file, offset: 0, buf: AlignedBuf::from_slice(&pattern(4, 8192)) })
        .0
        .unwrap();
    assert!(!s.alloc_read_buf(8193).is_pooled(), "too big for a slot");
    // Reads held by readers take slots while more than half the pool is free...
    let mut held = Vec::new();
    for _ in 0..2 {
        let buf = s.alloc_read_buf(8192);
        assert!(buf.is_pooled());
        let (result, back) = run(&mut s, Op::Read { file, offset: 0, len: 8192, buf });
        assert_eq!(result.unwrap(), 8192);
        let back = back.unwrap();
        assert!(back.is_pooled() && back[..] == pattern(4, 8192)[..]);
        held.push(back);
    }
    assert_eq!(s.stats().reads_fixed, 2, "pooled reads go out as READ_FIXED");
    // ...and then the heap: the rest is for writes, which still get slots.
    assert!(!s.alloc_read_buf(1).is_pooled(), "half the pool is left for writes");
    let writes = (s.alloc_buf(1), s.alloc_buf(1));
    assert!(writes.0.is_pooled() && writes.1.is_pooled());
    drop(writes);
    drop(held.pop());
    assert!(s.alloc_read_buf(1).is_pooled(), "a slot given back is to spare again");
    // Portable and simulated storages read into the heap.
    assert!(!PortableStorage::new().alloc_read_buf(10).is_pooled());
    assert!(!SimDisk::new(1).storage().alloc_read_buf(10).is_pooled());
}

#[test]
fn pool_slots_return_when_buffers_drop_on_another_thread() {
    let config = UringConfig { buffer_pool_slots: 4, ..UringConfig::default() };
    let mut s = UringStorage::new(config).unwrap();
    let bufs: Vec<AlignedBuf> = (0..4).map(|_| s.alloc_buf(BLOCK_SIZE)).collect();
    assert!(bufs.iter().all(AlignedBuf::is_pooled));
    assert_eq!(s.pool_stats().unwrap().free, 0);
    std::thread::spawn(move || drop(bufs)).join().unwrap();
    assert_eq!(s.pool_stats().unwrap().free, 4);
    // And the region outlives the storage while a buffer lives.
    let mut kept = s.alloc_buf(BLOCK_SIZE);
    drop(s);
    kept.extend_from_slice(&[9u8; BLOCK_SIZE]);
    assert!(kept.iter().all(|&b| b == 9));
}

#[test]
fn an_unregistered_pool_still_reads_and_writes_correctly() {
    let dir = tempfile::tempdir().unwrap();
    let config = UringConfig { register_buffers: false, ..UringConfig::default() };
    let mut s = UringStorage::new(config).unwrap();
    let pool = s.pool_stats().unwrap();
    assert!(!pool.registered);
    assert!(pool.unregistered_reason.is_some());
    let file = s.open(&dir.path().join("f"), OpenOptions::create().direct(true)).unwrap();
    let mut buf = s.alloc_buf(BLOCK_SIZE);
    assert!(buf.is_pooled());
    buf.extend_from_slice(&pattern(4, BLOCK_SIZE));
    run(&mut s, Op::Write { file, offset: 0, buf }).0.unwrap();
    let buf = s.alloc_buf(BLOCK_SIZE);
    let (result, buf) = run(&mut s, Op::Read { file, offset: 0, len: BLOCK_SIZE, buf });
    assert_eq!(result.unwrap(), BLOCK_SIZE);
    assert_eq!(buf.unwrap().as_slice(), pattern(4, BLOCK_SIZE));
    let stats = s.stats();
    assert_eq!((stats.writes_fixed, stats.reads_fixed, stats.writes, stats.reads), (0, 0, 1, 1));
}

#[test]
fn dropping_with_operations_in_flight_waits_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    const CHUNK: usize = 256 * 1024;
    const CHUNKS: usize = 24; // 16 from the pool, 8 from the heap
    let config = UringConfig { queue_depth: 32, ..UringConfig::default() };
    let mut s = UringStorage::new(config).unwrap();
    let pool = s.buffer_pool().unwrap().clone();
    let file = s.open(&path, OpenOptions::create().direct(true)).unwrap();
    assert!(s.is_direct(file), "/tmp should take O_DIRECT");
    for i in 0..CHUNKS {
        let mut buf = s.alloc_buf(CHUNK);
        buf.extend_from_slice(&pattern(i as u64, CHUNK));
        let op = Op::Write { file, offset: (i * CHUNK) as u64, buf };
        s.submit(Submission::new(i as u64, op)).unwrap();
    }
    s.submit(Submission::new(99, Op::SyncData { file })).unwrap();
    // Hand them to the kernel, collect nothing, and drop: the drop must wait.
    let mut out = Vec::new();
    s.complete(&mut out, Wait::No).unwrap();
    let in_flight = s.in_flight() + out.len();
    assert_eq!(in_flight, CHUNKS + 1);
    drop(out);
    assert!(pool.free_slots() < pool.slots(), "pooled buffers are in flight");
    let started = Instant::now();
    drop(s);
    eprintln!("drop waited {:?}", started.elapsed());
    assert_eq!(pool.free_slots(), pool.slots(), "every slot came back after the kernel was done");
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), CHUNKS * CHUNK);
    for i in 0..CHUNKS {
        assert!(bytes[i * CHUNK..(i + 1) * CHUNK] == pattern(i as u64, CHUNK)[..], "chunk {i}");
    }
    // Queued but never handed to the kernel: drop submits and waits for those too.
    let mut s = storage(8);
    let file = s.open(&path, OpenOptions::read_write()).unwrap();
    s.submit(Submission::new(1, Op::Write { file, offset: 0, buf: AlignedBuf::from_slice(b"x") }))
        .unwrap();
    drop(s);
    assert_eq!(std::fs::read(&path).unwrap()[0], b'x');
}

#[test]
fn dropping_on_another_thread_leaks_instead_of_hanging() {
    // A single-issuer ring refuses io_uring_enter from any other thread: the drop cannot wait
    // for the armed eventfd read, so it leaks that buffer (logged) rather than free it.
    let s = storage(4);
    assert_eq!(s.setup(), "single-issuer+defer-taskrun+submit-all");
    let handle = std::thread::spawn(move || drop(s));
    handle.join().unwrap();
}

#[test]
fn a_wake_from_another_thread_ends_an_idle_wait() {
    let mut s = storage(8);
    let waker = s.waker();
    let started = Instant::now();
    let wake = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        waker.wake();
    });
    let mut out = Vec::new();
    assert_eq!(s.complete(&mut out, Wait::Idle(Some(Duration::from_secs(20)))).unwrap(), 0);
    let waited = started.elapsed();
    wake.join().unwrap();
    assert!(waited >= Duration::from_millis(25) && waited < Duration::from_secs(10), "{waited:?}");
    // Many wakes before a wait count as one, and none is lost.
    for _ in 0..5 {
        s.waker().wake();
    }
    let started = Instant::now();
    s.complete(&mut out, Wait::Idle(Some(Duration::from_secs(20)))).unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    let started = Instant::now();
    s.complete(&mut out, Wait::Idle(Some(Duration::from_millis(30)))).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(25), "the five wakes were one");
    assert!(s.stats().wakes >= 2);
}

#[test]
fn a_wake_taken_by_a_busy_wait_is_kept_for_the_next_idle_wait() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = storage(8);
    let file = s.open(&dir.path().join("f"), OpenOptions::create()).unwrap();
    s.waker().wake();
    // Busy waits run while the wake is pending: whichever of them takes it, the next idle
    // wait must still return at once.
    for i in 0..3 {
        let buf = AlignedBuf::from_slice(b"busy");
        s.submit(Submission::new(i, Op::Write { file, offset: i * 4, buf })).unwrap();
        complete_all(&mut s);
    }
    let started = Instant::now();
    let mut out = Vec::new();
    s.complete(&mut out, Wait::Idle(Some(Duration::from_secs(20)))).unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn an_idle_wait_ends_when_io_completes() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = storage(8);
    let file = s.open(&dir.path().join("f"), OpenOptions::create()).unwrap();
    s.submit(Submission::new(7, Op::Write { file, offset: 0, buf: AlignedBuf::from_slice(b"io") }))
        .unwrap();
    let mut out = Vec::new();
    let started = Instant::now();
    while out.is_empty() {
        s.complete(&mut out, Wait::Idle(Some(Duration::from_secs(20)))).unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(out[0].token, 7);
    assert_eq!(s.in_flight(), 0);
}

#[test]
fn a_linked_direct_write_and_fdatasync() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = storage(8);
    let file = s.open(&dir.path().join("f"), OpenOptions::create().direct(true)).unwrap();
    let mut buf = s.alloc_buf(BLOCK_SIZE);
    buf.extend_from_slice(&pattern(5, BLOCK_SIZE));
    s.submit(Submission::linked(1, Op::Write { file, offset: 0, buf })).unwrap();
    s.submit(Submission::new(2, Op::SyncData { file })).unwrap();
    let done = complete_all(&mut s);
    assert_eq!(*done[0].result.as_ref().unwrap(), BLOCK_SIZE);
    assert_eq!(*done[1].result.as_ref().unwrap(), 0);
    let stats = s.stats();
    assert_eq!((stats.writes_fixed, stats.syncs, stats.held_behind_chain), (1, 1, 0));
    assert_eq!(read_at(&mut s, file, 0, BLOCK_SIZE).unwrap(), pattern(5, BLOCK_SIZE));
}

/// The chain scenarios every backend must agree on, including chains split by a `complete`
/// call (io_uring cannot link across `io_uring_enter`; the storage holds the rest back).
fn chain_outcomes(s: &mut dyn Storage, root: &Path) -> Vec<(u64, Result<usize, i32>)> {
    let path = root.join("f");
    let file = s.open(&path, OpenOptions::create()).unwrap();
    write_all_at(s, file, 0, b"0123456789").unwrap();
    let read_only = s.open(&path, OpenOptions::read_only()).unwrap();
    let bogus = FileId(4242);
    let write = |file, token: u64| {
        let buf = AlignedBuf::from_slice(&[token as u8; 4]);
        Op::Write { file, offset: 0, buf }
    };
    let mut out = Vec::new();
    let mut step = |s: &mut dyn Storage, submissions: Vec<Submission>, reap_between: bool| {
        for submission in submissions {
            s.submit(submission).unwrap();
            if reap_between {
                s.complete(&mut out, Wait::No).unwrap();
            }
        }
        out.extend(complete_all(s));
    };
    // 1. A chain split by complete calls, succeeding: all run.
    step(
        s,
        vec![Submission::linked(10, write(file, 10)), Submission::new(11, Op::SyncData { file })],
        true,
    );
    // 2. Split, the head fails in the kernel (EBADF): the rest is cancelled.
    step(
        s,
        vec![
            Submission::linked(20, write(read_only, 20)),
            Submission::linked(21, Op::SyncData { file }),
            Submission::new(22, write(file, 22)),
            Submission::new(23, write(file, 23)),
        ],
        true,
    );
    // 3. Refused mid-chain (unknown file) after a good head: head ok, refused, rest cancelled.
    step(
        s,
        vec![
            Submission::linked(30, write(file, 30)),
            Submission::linked(31, write(bogus, 31)),
            Submission::new(32, Op::SyncData { file }),
            Submission::new(33, Op::SyncData { file }),
        ],
        false,
    );
    // 4. Refused mid-chain after a failing head: the refused one is cancelled, not refused.
    step(
        s,
        vec![
            Submission::linked(40, write(read_only, 40)),
            Submission::linked(41, write(bogus, 41)),
            Submission::new(42, Op::SyncData { file }),
        ],
        false,
    );
    // 5. A short read at the end of a chain split by complete: the next is cancelled.
    let read = Op::Read { file, offset: 8, len: 100, buf: AlignedBuf::with_capacity(100) };
    step(s, vec![Submission::linked(50, read), Submission::new(51, Op::SyncData { file })], true);
    out.sort_by_key(|done| done.token);
    out.into_iter()
        .map(|done| (done.token, done.result.map_err(|e| e.raw_os_error().unwrap_or(-1))))
        .collect()
}

#[test]
fn chains_behave_as_on_the_portable_and_simulated_backends() {
    let dir = tempfile::tempdir().unwrap();
    let uring_root = dir.path().join("uring");
    let portable_root = dir.path().join("portable");
    std::fs::create_dir_all(&uring_root).unwrap();
    std::fs::create_dir_all(&portable_root).unwrap();
    let mut uring = storage(16);
    let on_uring = chain_outcomes(&mut uring, &uring_root);
    let on_portable = chain_outcomes(&mut PortableStorage::with_queue_depth(16), &portable_root);
    let disk = SimDisk::new(7);
    let mut sim = disk.storage_with_queue_depth(16);
    let sim_root = Path::new("/sim/chains");
    sim.create_dir_all(sim_root).unwrap();
    let on_sim = chain_outcomes(&mut sim, sim_root);
    let einval = -1; // InvalidInput errors built by the storage carry no errno
    let expected: Vec<(u64, Result<usize, i32>)> = vec![
        (10, Ok(4)),
        (11, Ok(0)),
        (20, Err(libc::EBADF)),
        (21, Err(libc::ECANCELED)),
        (22, Err(libc::ECANCELED)),
        (23, Ok(4)),
        (30, Ok(4)),
        (31, Err(einval)),
        (32, Err(libc::ECANCELED)),
        (33, Ok(0)),
        (40, Err(libc::EBADF)),
        (41, Err(libc::ECANCELED)),
        (42, Err(libc::ECANCELED)),
        (50, Ok(2)),
        (51, Err(libc::ECANCELED)),
    ];
    assert_eq!(on_portable, expected, "portable");
    assert_eq!(on_sim, expected, "simulated");
    assert_eq!(on_uring, expected, "uring");
    let stats = uring.stats();
    assert!(stats.cancelled_in_software >= 4, "21, 22, 32 and 42: {stats:?}");
    assert_eq!(stats.refused, 2, "31 and 41 (whose chain had failed first): {stats:?}");
}

#[test]
fn submissions_after_a_dangling_chain_tail_wait_for_its_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = storage(8);
    let file = s.open(&dir.path().join("f"), OpenOptions::create()).unwrap();
    write_all_at(&mut s, file, 0, b"data").unwrap();
    let mut out = Vec::new();
    for round in 0..5u64 {
        // An fdatasync runs in the kernel's worker pool: it is still running when the next
        // submission arrives, which must then wait behind it rather than start unlinked.
        s.submit(Submission::linked(round * 10, Op::SyncData { file })).unwrap();
        s.complete(&mut out, Wait::No).unwrap();
        let buf = AlignedBuf::from_slice(b"next");
        s.submit(Submission::new(round * 10 + 1, Op::Write { file, offset: 4, buf })).unwrap();
        out.extend(complete_all(&mut s));
    }
    assert_eq!(out.len(), 10);
    assert!(out.iter().all(|done| done.result.is_ok()), "{out:?}");
    let held = s.stats().held_behind_chain;
    assert!(held >= 1, "no submission was held in 5 rounds: {:?}", s.stats());
    eprintln!("held behind a dangling chain tail in {held} of 5 rounds");
}

#[test]
fn a_full_queue_hands_submissions_back_until_completions_are_collected() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = storage(4);
    let file = s.open(&dir.path().join("f"), OpenOptions::create()).unwrap();
    let write = |token: u64| {
        Submission::new(token, Op::Write { file, offset: token, buf: AlignedBuf::from_slice(&[1]) })
    };
    for token in 0..4 {
        s.submit(write(token)).unwrap();
    }
    // Full even after the kernel has finished them: completions not yet collected count.
    let mut out = Vec::new();
    s.complete(&mut out, Wait::No).unwrap();
    let collected = out.len();
    let rejected = s.submit(write(4));
    if collected == 0 {
        let rejected = rejected.unwrap_err();
        assert_eq!(rejected.token, 4);
        assert_eq!(s.in_flight(), 4);
        out.extend(complete_all(&mut s));
        s.submit(rejected).unwrap();
    } else {
        rejected.unwrap();
    }
    out.extend(complete_all(&mut s));
    assert_eq!(out.len(), 5);
    assert_eq!(read_at(&mut s, file, 0, 10).unwrap(), [1u8; 5]);
    // Nothing lost under sustained backpressure.
    let mut next = 100u64;
    let mut done = 0;
    let mut rejections = 0;
    while done < 200 {
        while next < 300 {
            match s.submit(write(next % 64)) {
                Ok(()) => next += 1,
                Err(_) => {
                    rejections += 1;
                    break;
                }
            }
        }
        out.clear();
        done += s.complete(&mut out, Wait::One).unwrap();
        assert!(s.in_flight() <= 4);
    }
    assert!(rejections > 0);
    assert_eq!(s.in_flight(), 0);
}

#[test]
fn many_concurrent_operations_complete_in_any_order_with_their_own_buffers() {
    let dir = tempfile::tempdir().unwrap();
    const DEPTH: usize = 32;
    const OPS: u64 = 400;
    const LEN: usize = 8192;
    let mut s = storage(DEPTH);
    let file = s.open(&dir.path().join("f"), OpenOptions::create().direct(true)).unwrap();
    let mut out = Vec::new();
    let mut expected: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut order = Vec::new();
    // Writes: a mix of pooled and heap buffers, each with its own content.
    let mut token = 0;
    while token < OPS || s.in_flight() > 0 {
        while token < OPS && s.in_flight() < DEPTH {
            let content = pattern(token, LEN);
            let mut buf =
                if token % 3 == 0 { AlignedBuf::with_capacity(LEN) } else { s.alloc_buf(LEN) };
            buf.extend_from_slice(&content);
            let op = Op::Write { file, offset: token * LEN as u64, buf };
            s.submit(Submission::new(token, op)).unwrap();
            expected.insert(token, content);
            token += 1;
        }
        out.clear();
        s.complete(&mut out, Wait::One).unwrap();
        for done in out.drain(..) {
            assert_eq!(*done.result.as_ref().unwrap(), LEN, "write {}", done.token);
            let buf = done.buf.expect("the write's buffer");
            assert_eq!(
                buf.as_slice(),
                expected[&done.token],
                "write {} got its own buffer",
                done.token
            );
            order.push(done.token);
        }
    }
    assert_eq!(order.len(), OPS as usize);
    // Reads back, also in flight together, into pooled and heap buffers.
    let mut token = 0;
    let mut read = 0;
    while read < OPS {
        while token < OPS && s.in_flight() < DEPTH {
            let buf =
                if token % 2 == 0 { s.alloc_buf(LEN) } else { AlignedBuf::with_capacity(LEN) };
            let op = Op::Read { file, offset: token * LEN as u64, len: LEN, buf };
            s.submit(Submission::new(1000 + token, op)).unwrap();
            token += 1;
        }
        out.clear();
        s.complete(&mut out, Wait::One).unwrap();
        for done in out.drain(..) {
            let original = done.token - 1000;
            assert_eq!(*done.result.as_ref().unwrap(), LEN);
            assert_eq!(done.buf.unwrap().as_slice(), expected[&original], "read {original}");
            read += 1;
        }
    }
    let stats = s.stats();
    assert!(stats.writes_fixed > 0 && stats.writes > 0 && stats.reads_fixed > 0 && stats.reads > 0);
    let in_order = order.windows(2).all(|w| w[0] < w[1]);
    eprintln!("writes completed in submission order: {in_order}; {stats:?}");
}

#[test]
fn errors_are_completions_and_refusals_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = storage(8);
    let file = s.open(&dir.path().join("f"), OpenOptions::create().direct(true)).unwrap();
    // fallocate of length 0 is EINVAL from the kernel: a completion, not a ring failure.
    let (result, _) = run(&mut s, Op::Allocate { file, offset: 0, len: 0 });
    assert_eq!(errno(&result), Some(libc::EINVAL));
    // A read longer than its buffer is refused before the kernel sees it.
    let read = Op::Read {
        file,
        offset: 0,
        len: 2 * BLOCK_SIZE,
        buf: AlignedBuf::with_capacity(BLOCK_SIZE),
    };
    assert_eq!(run(&mut s, read).0.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    // An offset beyond off_t (io_uring would take u64::MAX as "the file position").
    let buf = AlignedBuf::from_slice(&[0u8; BLOCK_SIZE]);
    let write = Op::Write { file, offset: u64::MAX - (BLOCK_SIZE as u64 - 1), buf };
    assert_eq!(run(&mut s, write).0.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    // Close refuses a file with operations in flight.
    let buf = AlignedBuf::from_slice(&[0u8; BLOCK_SIZE]);
    s.submit(Submission::new(1, Op::Write { file, offset: 0, buf })).unwrap();
    assert_eq!(s.close(file).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    complete_all(&mut s);
    s.close(file).unwrap();
    // Slots of the registered file table are reused.
    let again = s.open(&dir.path().join("g"), OpenOptions::create()).unwrap();
    assert_eq!(again, file);
}

#[test]
fn files_beyond_the_registered_table_use_plain_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let config = UringConfig { registered_files: 2, ..UringConfig::default() };
    let mut s = UringStorage::new(config).unwrap();
    assert_eq!(s.registered_files(), 2);
    let files: Vec<FileId> = (0..4)
        .map(|i| s.open(&dir.path().join(format!("f{i}")), OpenOptions::create()).unwrap())
        .collect();
    for (i, &file) in files.iter().enumerate() {
        write_all_at(&mut s, file, 0, format!("file {i}").as_bytes()).unwrap();
        tidelog_io::storage::sync_data(&mut s, file).unwrap();
    }
    for (i, &file) in files.iter().enumerate() {
        assert_eq!(read_at(&mut s, file, 0, 6).unwrap(), format!("file {i}").as_bytes());
    }
}

#[test]
fn sqpoll_works_when_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let config = UringConfig { queue_depth: 8, sqpoll_idle_ms: Some(10), ..UringConfig::default() };
    let mut s = UringStorage::new(config).unwrap();
    eprintln!("setup: {}", s.setup());
    let file = s.open(&dir.path().join("f"), OpenOptions::create()).unwrap();
    let buf = s.alloc_buf(5);
    let mut buf = buf;
    buf.extend_from_slice(b"polls");
    s.submit(Submission::linked(1, Op::Write { file, offset: 0, buf })).unwrap();
    s.submit(Submission::new(2, Op::SyncData { file })).unwrap();
    let done = complete_all(&mut s);
    assert_eq!(*done[0].result.as_ref().unwrap(), 5);
    assert_eq!(*done[1].result.as_ref().unwrap(), 0);
    assert_eq!(read_at(&mut s, file, 0, 5).unwrap(), b"polls");
    let waker = s.waker();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        waker.wake();
    });
    let mut out = Vec::new();
    let started = Instant::now();
    s.complete(&mut out, Wait::Idle(Some(Duration::from_secs(20)))).unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn polling_with_wait_no_alone_makes_progress() {
    // With DEFER_TASKRUN, completions of device I/O wait as task work until the owner enters
    // the ring; `Wait::No` must notice (IORING_SQ_TASKRUN) and enter, or a polling shard would
    // never see them.
    let dir = tempfile::tempdir().unwrap();
    let mut s = storage(8);
    let file = s.open(&dir.path().join("f"), OpenOptions::create().direct(true)).unwrap();
    let mut out = Vec::new();
    for round in 0..20u64 {
        let mut buf = s.alloc_buf(BLOCK_SIZE);
        buf.extend_from_slice(&pattern(round, BLOCK_SIZE));
        s.submit(Submission::linked(round, Op::Write { file, offset: round * 4096, buf })).unwrap();
        s.submit(Submission::new(100 + round, Op::SyncData { file })).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while s.in_flight() > 0 {
            assert!(Instant::now() < deadline, "Wait::No never delivered: {:?}", s.stats());
            s.complete(&mut out, Wait::No).unwrap();
            std::hint::spin_loop();
        }
    }
    assert_eq!(out.len(), 40);
    assert!(out.iter().all(|done| done.result.is_ok()));
    eprintln!("{:?}", s.stats());
}
