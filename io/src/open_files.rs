//! Open file descriptors: the process's `RLIMIT_NOFILE`, raising its soft limit to the hard
//! one, and how many descriptors are in use now.
//!
//! The engine keeps three files open per partition (the active log and its two indexes), so
//! `RLIMIT_NOFILE` is what bounds how many partitions a process may hold. The soft limit is
//! often far below the hard one (1,024 against 524,288 on many distributions, for `select`'s
//! sake, which the engine does not use): [`raise_to_hard_limit`] lifts it, and the engine
//! checks what new partitions need against the result before opening them, so running out
//! is a clear refusal instead of `EMFILE` half-way through a topic.

use std::io;

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// `RLIMIT_NOFILE`: the soft limit is what `open` is held to; the hard limit is the most the
/// soft one may be raised to without privilege.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFilesLimit {
    /// The limit in force.
    pub soft: u64,
    /// The ceiling for the soft limit.
    pub hard: u64,
}

/// The process's `RLIMIT_NOFILE`.
pub fn limit() -> io::Result<OpenFilesLimit> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    Ok(OpenFilesLimit { soft, hard })
}

/// Set `RLIMIT_NOFILE`. Lowering the hard limit cannot be undone without privilege
/// (`CAP_SYS_RESOURCE`); tests use it in a child process to provoke the engine's refusal.
pub fn set_limit(limit: OpenFilesLimit) -> io::Result<()> {
    setrlimit(Resource::RLIMIT_NOFILE, limit.soft, limit.hard).map_err(io::Error::from)
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit, if it is below it. Returns the limit
/// before and after (equal when there was nothing to do).
pub fn raise_to_hard_limit() -> io::Result<(OpenFilesLimit, OpenFilesLimit)> {
    let before = limit()?;
    if before.soft >= before.hard {
        return Ok((before, before));
    }
    let raised = OpenFilesLimit { soft: before.hard, hard: before.hard };
    set_limit(raised)?;
    Ok((before, limit()?))
}

/// Descriptors this process has open now, from `/proc/self/fd` (not counting the one used
/// to list it).
pub fn in_use() -> io::Result<u64> {
    let mut count = 0u64;
    for entry in std::fs::read_dir("/proc/self/fd")? {
        entry?;
        count += 1;
    }
    // The listing includes the descriptor of the directory being listed.
    Ok(count.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_in_use_count_the_files_open() {
        // Other tests of this binary open and close files on other threads, so only a lower
        // bound holds: the standard streams and the 8 files opened here.
        let files: Vec<std::fs::File> =
            (0..8).map(|_| std::fs::File::open("/dev/null").unwrap()).collect();
        assert!(in_use().unwrap() >= 3 + 8, "{} in use", in_use().unwrap());
        drop(files);
    }

    #[test]
    fn the_soft_limit_can_be_raised_to_the_hard_limit() {
        let (before, after) = raise_to_hard_limit().unwrap();
        assert_eq!(after.hard, before.hard);
        assert_eq!(after.soft, before.hard);
        assert_eq!(limit().unwrap(), after);
    }
}
