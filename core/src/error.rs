//! The engine's errors: one typed enum with structured fields (STYLE §5).

use std::io;
use std::path::PathBuf;

use crate::record::DecodeError;

/// Result with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine, each with what a caller needs to act on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The topic does not exist.
    #[error("topic {topic:?} does not exist")]
    UnknownTopic { topic: String },

    /// A topic of that name exists already.
    #[error("topic {topic:?} already exists")]
    TopicExists { topic: String },

    /// The topic name breaks the naming rules.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName { name: String, reason: &'static str },

    /// A configuration value is out of range or inconsistent.
    #[error("invalid configuration: {field} {reason}")]
    InvalidConfig { field: &'static str, reason: String },

    /// The partition number is not below the topic's partition count.
    #[error("partition {partition} out of range: topic {topic:?} has {partitions} partition(s)")]
    PartitionOutOfRange { topic: String, partition: u32, partitions: u32 },

    /// One record is larger than the topic allows.
    #[error("record of {size} bytes exceeds the limit of {max} bytes for topic {topic:?}")]
    RecordTooLarge { topic: String, size: usize, max: usize },

    /// A batch is larger than any single append may be.
    #[error("batch of {size} bytes exceeds the limit of {max} bytes")]
    BatchTooLarge { size: usize, max: usize },

    /// An append carried no records.
    #[error("an append needs at least one record")]
    EmptyBatch,

    /// A batch handed to the engine failed validation.
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[source] DecodeError),

    /// A read asked for an offset the partition does not hold.
    #[error(
        "offset {offset} is out of range for {topic}/{partition}: the log holds [{log_start_offset}, {high_watermark})"
    )]
    OffsetOutOfRange {
        topic: String,
        partition: u32,
        offset: u64,
        log_start_offset: u64,
        high_watermark: u64,
    },

    /// An operating-system or device error, with the operation and path it hit.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The device is full. Nothing acknowledged was lost; the partition refuses writes until
    /// the engine is reopened with space available.
    #[error("no space left on device writing {}", path.display())]
    NoSpace { path: PathBuf },

    /// Stored bytes failed verification.
    #[error("corrupt data in {} at byte {position}: {reason}", path.display())]
    Corrupt { path: PathBuf, position: u64, reason: String },

    /// Another engine (in this or another process) has the data directory open.
    #[error("data directory {} is in use by another process (lock held on {}/LOCK)", path.display(), path.display())]
    DirectoryInUse { path: PathBuf },

    /// A write or sync failed earlier; the partition refuses writes until the engine is
    /// reopened (retrying a failed fsync is not safe).
    #[error("partition {topic}/{partition} stopped accepting writes after an I/O error: {cause}")]
    PartitionFailed { topic: String, partition: u32, cause: String },

    /// A process resource limit is too low for what was asked — for `RLIMIT_NOFILE`, the
    /// descriptors the partitions of a topic being created or opened would need. Nothing was
    /// opened or created; raise the limit (`ulimit -n`, systemd's `LimitNOFILE=`) or ask for
    /// fewer partitions.
    #[error("{what} is too low: {needed} needed, the limit is {limit} ({detail})")]
    ResourceLimit { what: &'static str, needed: u64, limit: u64, detail: String },

    /// The engine was closed, or is closing.
    #[error("the engine is closed")]
    Closed,

    /// A shard thread stopped unexpectedly.
    #[error("shard {shard} stopped: {reason}")]
    ShardStopped { shard: usize, reason: String },
}

impl Error {
    /// Wrap an I/O error with its operation and path; `ENOSPC` becomes [`Error::NoSpace`].
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        if source.raw_os_error() == Some(libc_enospc())
            || source.kind() == io::ErrorKind::StorageFull
        {
            return Error::NoSpace { path };
        }
        Error::Io { op, path, source }
    }

    /// A [`Error::Corrupt`] from a decode failure.
    pub fn corrupt(path: impl Into<PathBuf>, position: u64, reason: impl ToString) -> Self {
        Error::Corrupt { path: path.into(), position, reason: reason.to_string() }
    }

    /// A [`Error::InvalidConfig`].
    pub fn config(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidConfig { field, reason: reason.into() }
    }
}

/// `ENOSPC` without a libc dependency in core.
const fn libc_enospc() -> i32 {
    28
}
