//! tidelog's engine: Kafka v2 record batches, partitioning, and (to come) segments and
//! indexes, partitions, topics, recovery and the embedding API.
//!
//! - [`record`]: the record-batch format — encoder and zero-copy decoder.
//! - [`partitioner`]: Kafka's key → partition mapping (murmur2) and round-robin for unkeyed
//!   records.
//!
//! No unsafe code: the I/O layer (`tidelog-io`) holds all of it.

#![forbid(unsafe_code)]

pub mod partitioner;
pub mod record;
