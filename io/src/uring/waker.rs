//! The eventfd that wakes a shard sleeping in its ring.
//!
//! The storage keeps one 8-byte `READ` of the eventfd armed in its ring at all times. A
//! [`Wake::wake`] from any thread adds 1 to the eventfd's counter; the armed read then
//! completes (draining the counter: any number of wakes before it count as one), the waiting
//! `io_uring_enter` returns, and the storage re-arms the read. A wake that comes before the
//! owner starts waiting is not lost: the counter stays non-zero until the armed read takes it,
//! and that read's completion ends the next wait at once.
//!
//! The eventfd is blocking (no `EFD_NONBLOCK`): io_uring answers a read of a non-blocking file
//! with `EAGAIN` instead of waiting for it to become readable.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::storage::Wake;

/// An eventfd owned for as long as any storage or waker handle holds it.
pub(crate) struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: `eventfd` takes no pointers; it returns a new descriptor or -1.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor just returned by `eventfd`, open, and owned by nothing
        // else: `OwnedFd` becomes its only owner and closes it once.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Self { fd })
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Wake for EventFd {
    fn wake(&self) {
        let one: u64 = 1;
        loop {
            // SAFETY: the source is the 8 bytes of `one`, a live, initialised local; the
            // descriptor is owned by `self` and open for the call. The kernel only reads.
            let written = unsafe {
                libc::write(self.fd.as_raw_fd(), (&raw const one).cast(), size_of::<u64>())
            };
            if written == size_of::<u64>() as isize {
                return;
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                // Nothing but EINTR is expected: the descriptor is ours and open, and the
                // write could only block (never fail) at a counter of 2^64 - 2 unread wakes.
                tracing::warn!(%err, "waking a shard's eventfd failed");
                return;
            }
        }
    }
}

impl fmt::Debug for EventFd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventFd").field("fd", &self.fd.as_raw_fd()).finish()
    }
}
