//! tidelog's engine: a Kafka-style event log you embed as a library.
//!
//! Open a data directory, create topics, append records with the durability you need, and
//! read them back by offset or by time — from any number of threads.
//!
//! ```
//! use tidelog_core::{Durability, Engine, EngineConfig, ReadRequest, Record, TopicConfig};
//!
//! # let dir = tempfile::tempdir().unwrap();
//! let engine = Engine::open(dir.path(), EngineConfig::default())?;
//! engine.create_topic("orders", TopicConfig::default().partitions(3))?;
//!
//! // Keyed records go where Kafka's default partitioner would put them.
//! let partition = engine.partition_for("orders", Some(b"customer-7"))?;
//! let record = Record::new(b"{\"total\": 42}").with_key(b"customer-7");
//! let appended = engine.append("orders", partition, &[record], Durability::Durable)?;
//!
//! // Reads return the stored Kafka v2 batches; records are views into them.
//! let fetch = engine.read("orders", partition, ReadRequest::new(appended.base_offset))?;
//! for record in fetch.records() {
//!     let record = record?;
//!     assert_eq!(record.key(), Some(&b"customer-7"[..]));
//! }
//! engine.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `docs/ARCHITECTURE.md` explains the design; `docs/FORMAT.md` the bytes on disk.

#![forbid(unsafe_code)]

pub mod completion;
pub mod config;
pub mod consumer;
pub mod engine;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod inspect;
pub mod limits;
pub mod partition;
pub mod partitioner;
pub mod record;
pub mod segment;
pub mod shard;
pub mod topic;

pub use completion::Pending;
pub use config::{Durability, EngineConfig, IoChoice, SegmentPreparation, TopicConfig};
pub use consumer::{Consumer, ConsumerConfig, Delivery};
pub use engine::{Engine, TopicDescription};
pub use error::{Error, Result};
pub use partition::{
    AppendResult, Fetch, FetchRecords, Isolation, PartitionInfo, PartitionStats, PendingIo,
    ReadRequest, SegmentInfo,
};
pub use record::{Header, Record};
pub use shard::task::{LocalTarget, ShardContext, ShardTask, TaskPoll};
pub use tidelog_io::BackendKind;
