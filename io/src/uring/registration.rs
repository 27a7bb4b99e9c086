//! Registering a buffer pool with a ring, and what happens when `RLIMIT_MEMLOCK` says no.
//!
//! Registered buffers are pinned and, for a process without `CAP_IPC_LOCK`, counted against
//! `RLIMIT_MEMLOCK` (8 MiB on this machine; the default pool is 4 MiB per storage). When the
//! kernel refuses (`ENOMEM`, or `EPERM` from older kernels), we raise the soft limit to the hard
//! limit and try once more; if that fails too, the pool stays unregistered — its buffers still
//! work, as plain `WRITE`/`READ` — and one warning per process says why and what the limit is.

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

use io_uring::Submitter;

use crate::buffer::BufferPool;

/// Register every slot of `pool` as one fixed buffer (index = slot). `Err` is the reason it
/// stays unregistered, already logged (once per process).
///
/// The caller must keep `pool` alive for as long as the ring can use the registration (it holds
/// a clone until after the ring is drained and the buffers unregistered).
pub(crate) fn register_pool(submitter: &Submitter<'_>, pool: &BufferPool) -> Result<(), String> {
    let iovecs: Vec<libc::iovec> = (0..pool.slots())
        .map(|slot| {
            let (base, len) = pool.slot_region(slot as u32);
            libc::iovec { iov_base: base.cast(), iov_len: len }
        })
        .collect();
    let register = || {
        // SAFETY: each iovec covers one slot of `pool`'s region, which is allocated, aligned
        // and initialised, and lives as long as any `BufferPool` clone or buffer of it; the
        // caller keeps a clone until the registration is gone (see above). The kernel only pins
        // the pages here; it reads or writes them only for WRITE_FIXED/READ_FIXED operations,
        // each of which owns the slot's `AlignedBuf` until its completion.
        unsafe { submitter.register_buffers(&iovecs) }
    };
    let first = match register() {
        Ok(()) => return Ok(()),
        Err(err) => err,
    };
    let memlock_refused = matches!(first.raw_os_error(), Some(libc::ENOMEM | libc::EPERM));
    let (err, raised) = if memlock_refused && raise_memlock_to_hard_limit() {
        match register() {
            Ok(()) => {
                tracing::info!(
                    limit = ?memlock_limit(),
                    "raised RLIMIT_MEMLOCK to its hard limit to register the buffer pool"
                );
                return Ok(());
            }
            Err(err) => (err, true),
        }
    } else {
        (first, false)
    };
    let reason = describe(&err, pool, memlock_refused, raised);
    warn_once(&reason);
    Err(reason)
}

fn describe(err: &io::Error, pool: &BufferPool, memlock: bool, raised: bool) -> String {
    let bytes = pool.region_bytes();
    if !memlock {
        return format!("registering the {bytes}-byte buffer pool failed: {err}");
    }
    let limit = match memlock_limit() {
        Some((soft, hard)) => format!("RLIMIT_MEMLOCK soft {} / hard {}", show(soft), show(hard)),
        None => "RLIMIT_MEMLOCK unknown".to_owned(),
    };
    let raised = if raised { " even after raising the soft limit to the hard one" } else { "" };
    format!(
        "registering the {bytes}-byte buffer pool failed{raised}: {err} ({limit}, shared by every \
         ring of this user); using it unregistered (plain WRITE/READ). Raise the limit \
         (ulimit -l, LimitMEMLOCK=) or shrink the pool"
    )
}

fn show(limit: u64) -> String {
    if limit == libc::RLIM_INFINITY { "unlimited".to_owned() } else { format!("{limit} B") }
}

static WARNED: AtomicBool = AtomicBool::new(false);

fn warn_once(reason: &str) {
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!("io_uring buffer pool unregistered: {reason} (said once per process)");
    } else {
        tracing::debug!("io_uring buffer pool unregistered: {reason}");
    }
}

/// `(soft, hard)` of `RLIMIT_MEMLOCK`, in bytes.
pub(crate) fn memlock_limit() -> Option<(u64, u64)> {
    getrlimit(Resource::RLIMIT_MEMLOCK).ok()
}

/// Raise the soft `RLIMIT_MEMLOCK` to the hard limit. True if it went up.
fn raise_memlock_to_hard_limit() -> bool {
    let Some((soft, hard)) = memlock_limit() else { return false };
    soft < hard && setrlimit(Resource::RLIMIT_MEMLOCK, hard, hard).is_ok()
}
