//! CPUs: which ones this process may run on, and pinning a thread to one (shards run one per
//! core, each pinned, so a shard's caches and its ring stay on one CPU).

use std::io;

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;

/// The CPUs the calling thread may run on (its affinity mask), in ascending order.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    let set = sched_getaffinity(Pid::from_raw(0)).map_err(io::Error::from)?;
    Ok((0..CpuSet::count()).filter(|&cpu| set.is_set(cpu).unwrap_or(false)).collect())
}

/// Pin the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    let mut set = CpuSet::new();
    set.set(cpu).map_err(io::Error::from)?;
    sched_setaffinity(Pid::from_raw(0), &set).map_err(io::Error::from)
}

/// Ask the scheduler for a time slice of `slice` for the calling thread (Linux ≥ 6.12, EEVDF:
/// `sched_attr::sched_runtime` of a `SCHED_OTHER` thread is its requested slice, 0.1–100 ms).
///
/// A shorter slice gives the thread an earlier virtual deadline when it wakes, so it preempts a
/// thread that is using up its default slice (1.4 ms on this 2-CPU machine) instead of
/// queueing behind it; it does not give the thread more CPU. Unprivileged. The thread's policy and nice
/// value are kept; a real-time or deadline thread is left as it is. Returns the kernel's error
/// where the request is not understood (older kernels ignore `sched_runtime` for `SCHED_OTHER`
/// and succeed: there the call is harmless and without effect).
pub fn request_scheduler_slice(slice: std::time::Duration) -> io::Result<()> {
    let mut attr = current_sched_attr()?;
    if attr.sched_policy != libc::SCHED_OTHER as u32
        && attr.sched_policy != libc::SCHED_BATCH as u32
    {
        return Ok(());
    }
    attr.size = std::mem::size_of::<libc::sched_attr>() as u32;
    // Keep reset-on-fork if the thread has it: an unprivileged thread may not clear it.
    attr.sched_flags &= libc::SCHED_FLAG_RESET_ON_FORK as u64;
    attr.sched_runtime = u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX);
    // SAFETY: `attr` is a valid, initialised `sched_attr` whose `size` field is its own size;
    // the kernel only reads it. Thread id 0 is the calling thread.
    let rc =
        unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const libc::sched_attr, 0) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// The calling thread's scheduler slice as the kernel reports it (the default, 1.4 ms on a
/// 2-CPU 6.18 guest, or the one asked for); `None` on a kernel that reports none (before
/// 6.12) or for a thread that is not `SCHED_OTHER`/`SCHED_BATCH`.
pub fn scheduler_slice() -> io::Result<Option<std::time::Duration>> {
    let attr = current_sched_attr()?;
    let fair = attr.sched_policy == libc::SCHED_OTHER as u32
        || attr.sched_policy == libc::SCHED_BATCH as u32;
    Ok((fair && attr.sched_runtime > 0)
        .then(|| std::time::Duration::from_nanos(attr.sched_runtime)))
}

/// CPU time (user and system) the calling thread has used so far.
pub fn thread_cpu_time() -> io::Result<std::time::Duration> {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_THREAD).map_err(io::Error::from)?;
    let micros = |t: nix::sys::time::TimeVal| {
        u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_usec()).unwrap_or(0)
    };
    Ok(std::time::Duration::from_micros(micros(usage.user_time()) + micros(usage.system_time())))
}

/// The calling thread's scheduling attributes.
fn current_sched_attr() -> io::Result<libc::sched_attr> {
    // SAFETY: `sched_attr` is plain integers, for which all-zero is a valid value.
    let mut attr: libc::sched_attr = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::sched_attr>() as u32;
    // SAFETY: the kernel writes at most `size` bytes into `attr`, which is that large and
    // exclusively borrowed for the call. Thread id 0 is the calling thread; flags must be 0.
    let rc = unsafe {
        libc::syscall(libc::SYS_sched_getattr, 0, &mut attr as *mut libc::sched_attr, size, 0)
    };
    if rc == 0 { Ok(attr) } else { Err(io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinning_to_an_allowed_cpu_works_and_restricts_the_mask() {
        let cpus = allowed_cpus().unwrap();
        assert!(!cpus.is_empty());
        let cpu = *cpus.last().unwrap();
        std::thread::spawn(move || {
            pin_current_thread(cpu).unwrap();
            assert_eq!(allowed_cpus().unwrap(), vec![cpu]);
        })
        .join()
        .unwrap();
        assert!(pin_current_thread(CpuSet::count() + 1).is_err());
    }

    #[test]
    fn a_requested_slice_is_what_the_kernel_reports_where_it_reports_one() {
        std::thread::spawn(|| {
            let before = scheduler_slice().unwrap();
            request_scheduler_slice(std::time::Duration::from_millis(3)).unwrap();
            let after = scheduler_slice().unwrap();
            // Kernels before 6.12 report no slice: nothing to read back.
            if before.is_some() {
                assert_eq!(after, Some(std::time::Duration::from_millis(3)));
            }
            // Out of range is clamped by the kernel, not refused.
            request_scheduler_slice(std::time::Duration::from_nanos(1)).unwrap();
            if let Some(slice) = scheduler_slice().unwrap() {
                assert_eq!(slice, std::time::Duration::from_micros(100));
            }
        })
        .join()
        .unwrap();
    }
}
