//! tidelog's I/O layer.
//!
//! Aligned buffers, the storage seam ([`Storage`]) and its backends, and clocks. This crate
//! knows nothing of logs, records or partitions: `tidelog-core` is written against it.
//!
//! Unsafe code lives only in the buffer and backend modules, each block argued in a
//! `// SAFETY:` comment; `docs/SAFETY.md` lists them.

pub mod buffer;
pub mod clock;
pub mod portable;
pub mod storage;

pub use buffer::{AlignedBuf, BLOCK_SIZE};
pub use clock::{Clock, ManualClock, SystemClock};
pub use portable::{PortableFactory, PortableStorage};
pub use storage::{
    BackendKind, Completion, DirEntry, DirLock, FileId, Metadata, Op, OpenOptions, Storage,
    StorageFactory, Submission, Wait,
};
