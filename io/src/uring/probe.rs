//! Can io_uring be used here? For `--io auto`, which falls back to the portable backend
//! (logging the reason once) when it cannot.

use std::fmt;
use std::io;

use io_uring::{IoUring, Probe, opcode};

/// What [`probe`] found: the kernel and the io_uring features the backend relies on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeReport {
    /// `uname -r`.
    pub kernel_release: String,
    /// `kernel.io_uring_disabled` (0 = enabled, 1 = only for `kernel.io_uring_group`,
    /// 2 = disabled), when the kernel has the knob.
    pub io_uring_disabled: Option<u32>,
    /// Whether a ring with `SINGLE_ISSUER | DEFER_TASKRUN` could be set up.
    pub single_issuer_defer_taskrun: bool,
    /// Every operation the backend uses, and whether the kernel supports it (all `true` in a
    /// report that [`probe`] returns as `Ok`).
    pub operations: Vec<(&'static str, bool)>,
}

impl fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "io_uring usable on kernel {}", self.kernel_release)?;
        if self.single_issuer_defer_taskrun {
            write!(f, " (single issuer, deferred task work)")?;
        } else {
            write!(f, " (without single-issuer/deferred task work)")?;
        }
        Ok(())
    }
}

/// The operations the backend submits (the eventfd waker is a `READ`).
const OPERATIONS: [(&str, u8); 8] = [
    ("WRITE", opcode::Write::CODE),
    ("READ", opcode::Read::CODE),
    ("WRITE_FIXED", opcode::WriteFixed::CODE),
    ("READ_FIXED", opcode::ReadFixed::CODE),
    ("FSYNC", opcode::Fsync::CODE),
    ("FALLOCATE", opcode::Fallocate::CODE),
    ("NOP", opcode::Nop::CODE),
    ("READ (eventfd waker)", opcode::Read::CODE),
];

/// Check that a ring can be created here and supports every operation and feature the
/// backend needs. `Err` says why not, in words fit for a log line: io_uring disabled by
/// `kernel.io_uring_disabled`, refused by a seccomp filter (containers: `EPERM`/`ENOSYS`), an
/// old kernel lacking an operation, a sparse file table or `EXT_ARG` waits.
pub fn probe() -> Result<ProbeReport, String> {
    let kernel_release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    let io_uring_disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let ring: IoUring = IoUring::new(4).map_err(|err| why_no_ring(&err, io_uring_disabled))?;
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|err| format!("io_uring probe failed on kernel {kernel_release}: {err}"))?;
    let operations: Vec<(&'static str, bool)> =
        OPERATIONS.iter().map(|&(name, code)| (name, probe.is_supported(code))).collect();
    let missing: Vec<&str> =
        operations.iter().filter(|(_, supported)| !supported).map(|(name, _)| *name).collect();
    if !missing.is_empty() {
        return Err(format!("io_uring on kernel {kernel_release} lacks {}", missing.join(", ")));
    }
    if !ring.params().is_feature_ext_arg() {
        return Err(format!(
            "io_uring on kernel {kernel_release} lacks IORING_FEAT_EXT_ARG (timed waits, 5.11)"
        ));
    }
    ring.submitter().register_files_sparse(1).map_err(|err| {
        format!("io_uring on kernel {kernel_release} cannot register a sparse file table: {err}")
    })?;
    let single_issuer_defer_taskrun = IoUring::<io_uring::squeue::Entry>::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(4)
        .is_ok();
    Ok(ProbeReport { kernel_release, io_uring_disabled, single_issuer_defer_taskrun, operations })
}

fn why_no_ring(err: &io::Error, disabled: Option<u32>) -> String {
    match (err.raw_os_error(), disabled) {
        (Some(libc::EPERM), Some(level @ 1..)) => format!(
            "io_uring is disabled on this machine (kernel.io_uring_disabled = {level}): {err}"
        ),
        (Some(libc::EPERM), _) => format!(
            "creating an io_uring was not permitted (a seccomp filter, as container runtimes \
             install, or kernel.io_uring_group): {err}"
        ),
        (Some(libc::ENOSYS), _) => {
            format!("this kernel has no io_uring, or a seccomp filter hides it (ENOSYS): {err}")
        }
        _ => format!("creating an io_uring failed: {err}"),
    }
}
