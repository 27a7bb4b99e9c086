//! tidelog's I/O layer.
//!
//! Aligned buffers, the storage seam ([`Storage`]) and its backends, and clocks. This crate
//! knows nothing of logs, records or partitions: `tidelog-core` is written against it.
//!
//! [`sim`] is the deterministic, fault-injecting simulated disk the engine's crash tests run
//! on.
//!
//! [`uring`] is the io_uring backend: one ring per shard thread, registered files and
//! buffers, linked `fdatasync`, an eventfd waker.
//!
//! Unsafe code lives only in the buffer and backend modules, each block argued in a
//! `// SAFETY:` comment; `docs/SAFETY.md` lists them.

pub mod buffer;
pub mod clock;
pub mod cpu;
pub mod open_files;
pub mod portable;
pub mod sim;
pub mod storage;
pub mod uring;

pub use buffer::{AlignedBuf, BLOCK_SIZE, BufferPool, HeapBytes, PoolUsage};
pub use clock::{Clock, ManualClock, SystemClock};
pub use open_files::OpenFilesLimit;
pub use portable::{PortableFactory, PortableStorage};
pub use sim::{
    CrashReport, FaultError, FaultId, FaultKind, FaultRule, OpKind, SimConfig, SimDisk, SimFactory,
    SimRng, SimStats, SimStorage,
};
pub use storage::{
    BackendKind, Completion, DirEntry, DirLock, FileId, Metadata, Op, OpenOptions, Storage,
    StorageFactory, Submission, Wait,
};
pub use uring::{
    PoolStats, ProbeReport, UringConfig, UringFactory, UringStats, UringStorage, probe,
};
