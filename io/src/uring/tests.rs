//! Tests that need system calls (and so unsafe code, which lives only in this module): the
//! memlock fallback and the soft-limit raise on a thread without `CAP_IPC_LOCK` (which exempts
//! root from memlock accounting), and short writes made by `RLIMIT_FSIZE`.

use std::io;
use std::sync::Mutex;

use super::{UringConfig, UringStorage};
use crate::storage::{
    Completion, OpenOptions, Storage, Submission, Wait, read_at, run, write_all_at,
};
use crate::{AlignedBuf, Op, PortableStorage};

/// Tests that change process-wide limits take turns.
static LIMITS: Mutex<()> = Mutex::new(());

const CAP_IPC_LOCK: u32 = 14;
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Drop `CAP_IPC_LOCK` from the calling thread's effective set (capabilities are per thread:
/// other tests keep theirs). Returns whether the thread now lacks it.
fn drop_ipc_lock_capability() -> bool {
    let mut header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let mut data = [CapData::default(); 2];
    // SAFETY: `header` and `data` are live, writable locals of the layouts `capget` takes for
    // version 3 (a header and two data words); the kernel fills `data` and keeps no pointer.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) };
    if rc != 0 {
        return false;
    }
    data[0].effective &= !(1 << CAP_IPC_LOCK);
    // SAFETY: as above; `capset` only reads `header` and `data`, and with pid 0 changes only
    // the calling thread's credentials.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) };
    rc == 0
}

fn set_rlimit(resource: libc::__rlimit_resource_t, soft: u64, hard: u64) -> io::Result<()> {
    let limit = libc::rlimit { rlim_cur: soft, rlim_max: hard };
    // SAFETY: `limit` is a live, initialised local; the kernel only reads it.
    let rc = unsafe { libc::setrlimit(resource, &limit) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

fn get_rlimit(resource: libc::__rlimit_resource_t) -> (u64, u64) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a live, writable local; the kernel fills it and keeps no pointer.
    let rc = unsafe { libc::getrlimit(resource, &mut limit) };
    assert_eq!(rc, 0, "getrlimit: {}", io::Error::last_os_error());
    (limit.rlim_cur, limit.rlim_max)
}

#[test]
fn a_pool_above_rlimit_memlock_stays_unregistered_and_still_works() {
    let _limits = LIMITS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // On its own thread: the capability change must not leak into other tests.
    let outcome = std::thread::spawn(|| {
        if !drop_ipc_lock_capability() {
            return Err("cannot drop CAP_IPC_LOCK here".to_owned());
        }
        let Some((soft, hard)) = super::registration::memlock_limit() else {
            return Err("no RLIMIT_MEMLOCK".to_owned());
        };
        if hard == libc::RLIM_INFINITY || hard > 1 << 30 {
            return Err(format!("RLIMIT_MEMLOCK hard limit {hard} is too high to exceed"));
        }
        // Twice the hard limit, in 256 KiB slots.
        let slot_bytes = 256 * 1024;
        let slots = ((2 * hard) as usize).div_ceil(slot_bytes).max(1);
        let config = UringConfig {
            buffer_pool_slots: slots,
            buffer_pool_slot_bytes: slot_bytes,
            ..UringConfig::default()
        };
        let mut storage = UringStorage::new(config).expect("a storage");
        let stats = storage.pool_stats().expect("a pool");
        assert!(
            !stats.registered,
            "a {} B pool registered under a {soft}/{hard} B limit",
            slots * slot_bytes
        );
        let reason = stats.unregistered_reason.expect("a reason");
        assert!(reason.contains("RLIMIT_MEMLOCK"), "{reason}");
        // Pooled buffers still work, as plain writes and reads.
        let dir = tempfile::tempdir().unwrap();
        let file = storage.open(&dir.path().join("f"), OpenOptions::create()).unwrap();
        let mut buf = storage.alloc_buf(4096);
        assert!(buf.is_pooled());
        buf.extend_from_slice(&[7u8; 4096]);
        let (result, _) =
            crate::storage::run(&mut storage, crate::Op::Write { file, offset: 0, buf });
        assert_eq!(result.unwrap(), 4096);
        assert_eq!(read_at(&mut storage, file, 0, 4096).unwrap(), vec![7u8; 4096]);
        write_all_at(&mut storage, file, 4096, b"tail").unwrap();
        let stats = storage.stats();
        assert_eq!((stats.writes_fixed, stats.reads_fixed), (0, 0));
        assert!(stats.writes >= 2);
        Ok(reason)
    })
    .join()
    .expect("the test thread");
    match outcome {
        Ok(reason) => eprintln!("unregistered as expected: {reason}"),
        Err(why) => eprintln!("skipped: {why}"),
    }
}

#[test]
fn a_refused_registration_raises_the_soft_memlock_limit_to_the_hard_one() {
    let _limits = LIMITS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (soft, hard) = get_rlimit(libc::RLIMIT_MEMLOCK);
    if hard == libc::RLIM_INFINITY || hard < 2 << 20 {
        eprintln!("skipped: RLIMIT_MEMLOCK hard limit {hard} does not suit this test");
        return;
    }
    let outcome = std::thread::spawn(move || {
        if !drop_ipc_lock_capability() {
            return Err("cannot drop CAP_IPC_LOCK here".to_owned());
        }
        // A pool that fits the hard limit but not a lowered soft one.
        let pool_bytes = (hard / 2) as usize;
        set_rlimit(libc::RLIMIT_MEMLOCK, 256 << 10, hard).map_err(|e| e.to_string())?;
        let config = UringConfig {
            buffer_pool_slots: pool_bytes / (64 << 10),
            buffer_pool_slot_bytes: 64 << 10,
            ..UringConfig::default()
        };
        let storage = UringStorage::new(config);
        let raised = get_rlimit(libc::RLIMIT_MEMLOCK).0;
        let registered = storage.map(|s| s.pool_stats().is_some_and(|p| p.registered));
        Ok((registered.map_err(|e| e.to_string())?, raised))
    })
    .join()
    .expect("the test thread");
    set_rlimit(libc::RLIMIT_MEMLOCK, soft, hard).unwrap();
    match outcome {
        Ok((registered, raised)) => {
            assert_eq!(raised, hard, "the soft limit was raised to the hard one");
            assert!(registered, "registration succeeded after the raise");
        }
        Err(why) => eprintln!("skipped: {why}"),
    }
}

/// Run a linked short write (`RLIMIT_FSIZE` cuts it at 1 TiB) followed by an fdatasync, on
/// `storage`; returns (write result, sync result).
fn short_write_then_sync(
    storage: &mut dyn Storage,
    path: &std::path::Path,
    pooled: bool,
) -> (io::Result<usize>, io::Result<usize>) {
    const LIMIT: u64 = 1 << 40;
    let file = storage.open(path, OpenOptions::create()).unwrap();
    let mut buf = if pooled { storage.alloc_buf(8192) } else { AlignedBuf::with_capacity(8192) };
    buf.extend_from_slice(&[5u8; 8192]);
    let write = Op::Write { file, offset: LIMIT - 4096, buf };
    storage.submit(Submission::linked(1, write)).unwrap();
    storage.submit(Submission::new(2, Op::SyncData { file })).unwrap();
    let mut out: Vec<Completion> = Vec::new();
    while storage.in_flight() > 0 {
        storage.complete(&mut out, Wait::One).unwrap();
    }
    out.sort_by_key(|done| done.token);
    let mut out = out.into_iter().map(|done| done.result);
    let (Some(write), Some(sync)) = (out.next(), out.next()) else { panic!("two completions") };
    storage.close(file).unwrap();
    (write, sync)
}

#[test]
fn a_short_linked_write_cancels_the_next_as_the_other_backends_do() {
    let _limits = LIMITS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    const LIMIT: u64 = 1 << 40;
    let (soft, hard) = get_rlimit(libc::RLIMIT_FSIZE);
    if hard < LIMIT {
        eprintln!("skipped: RLIMIT_FSIZE hard limit {hard} below 1 TiB");
        return;
    }
    // SAFETY: ignoring SIGXFSZ installs no handler (no code runs on the signal); a write past
    // the limit then fails or comes back short instead of killing the process.
    let previous = unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    assert_ne!(previous, libc::SIG_ERR);
    set_rlimit(libc::RLIMIT_FSIZE, LIMIT, hard).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut results = Vec::new();
    for pooled in [false, true] {
        let mut uring = UringStorage::with_queue_depth(8).unwrap();
        let path = dir.path().join(format!("uring-{pooled}"));
        results.push(("uring", pooled, short_write_then_sync(&mut uring, &path, pooled)));
        if pooled {
            assert_eq!(uring.stats().writes_fixed, 1, "the pooled write went out fixed");
        }
        let mut portable = PortableStorage::with_queue_depth(8);
        let path = dir.path().join(format!("portable-{pooled}"));
        results.push(("portable", pooled, short_write_then_sync(&mut portable, &path, pooled)));
    }
    set_rlimit(libc::RLIMIT_FSIZE, soft, hard).unwrap();
    for (backend, pooled, (write, sync)) in results {
        assert_eq!(write.unwrap(), 4096, "{backend} (pooled {pooled}): the write is short");
        assert_eq!(
            sync.unwrap_err().raw_os_error(),
            Some(libc::ECANCELED),
            "{backend} (pooled {pooled}): a short linked write cancels the next"
        );
    }
}

#[test]
fn a_short_linked_read_cancels_the_next_for_fixed_reads_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = UringStorage::with_queue_depth(8).unwrap();
    let file = storage.open(&dir.path().join("f"), OpenOptions::create()).unwrap();
    write_all_at(&mut storage, file, 0, &[1u8; 100]).unwrap();
    let buf = storage.alloc_buf(4096);
    assert!(buf.is_pooled());
    storage.submit(Submission::linked(1, Op::Read { file, offset: 0, len: 4096, buf })).unwrap();
    storage.submit(Submission::new(2, Op::SyncData { file })).unwrap();
    let mut out = Vec::new();
    while storage.in_flight() > 0 {
        storage.complete(&mut out, Wait::One).unwrap();
    }
    out.sort_by_key(|done| done.token);
    assert_eq!(*out[0].result.as_ref().unwrap(), 100);
    assert_eq!(out[0].buf.as_ref().unwrap().as_slice(), [1u8; 100]);
    assert_eq!(out[1].result.as_ref().unwrap_err().raw_os_error(), Some(libc::ECANCELED));
    assert_eq!(storage.stats().reads_fixed, 1);
    let _ = run(&mut storage, Op::SyncData { file });
}

/// `submit_staged` starts a submitted write without any `complete`: the bytes reach the file
/// while nobody collects completions (then `complete` hands the completion over as usual).
#[test]
fn submit_staged_starts_queued_operations_without_a_complete() {
    if super::probe().is_err() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let mut storage = UringStorage::with_queue_depth(8).unwrap();
    let file = storage.open(&path, OpenOptions::create()).unwrap();
    let buf = AlignedBuf::from_slice(b"staged");
    assert!(storage.submit(Submission::new(7, Op::Write { file, offset: 0, buf })).is_ok());
    // Staged only: nothing reaches the file until the ring is entered.
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(std::fs::read(&path).unwrap(), b"");
    storage.submit_staged().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read(&path).unwrap() != b"staged" {
        assert!(std::time::Instant::now() < deadline, "the write never ran");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let mut out: Vec<Completion> = Vec::new();
    while out.is_empty() {
        storage.complete(&mut out, Wait::One).unwrap();
    }
    assert_eq!((out[0].token, out[0].result.as_ref().ok().copied()), (7, Some(6)));
    // Nothing staged: no work, no error.
    storage.submit_staged().unwrap();
    storage.close(file).unwrap();
}
