//! Topics: names, the metadata snapshot stored with each topic, and partition placement.
//!
//! A topic's configuration is fixed at creation and stored in `topics/<name>/topic.meta`: a
//! 24-byte little-endian header (magic, version, payload length and CRC-32C, header CRC-32C)
//! followed by an rkyv archive of [`TopicMeta`], validated on load. The file is written to a
//! temporary name, synced and renamed into place, so it is either absent or whole; a topic
//! directory without it is an interrupted creation and is removed on open.

use crate::config::TopicConfig;
use crate::error::{Error, Result};
use crate::limits::TOPIC_NAME_LEN_MAX;

/// File name of a topic's metadata snapshot.
pub const TOPIC_META_FILE: &str = "topic.meta";

const META_MAGIC: [u8; 8] = *b"TLTOPIC1";
const META_VERSION: u16 = 1;
const META_HEADER_SIZE: usize = 24;
const _: () = assert!(META_HEADER_SIZE == 8 + 2 + 2 + 4 + 4 + 4);

/// Check a topic name against Kafka's rules: 1–249 characters of `[a-zA-Z0-9._-]`, not `.`
/// or `..`.
pub fn validate_name(name: &str) -> Result<()> {
    let invalid = |reason| Err(Error::InvalidTopicName { name: name.to_string(), reason });
    if name.is_empty() {
        return invalid("it is empty");
    }
    if name.len() > TOPIC_NAME_LEN_MAX {
        return invalid("it is longer than 249 characters");
    }
    if name == "." || name == ".." {
        return invalid("'.' and '..' are not allowed");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        return invalid("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// What is stored about a topic.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct TopicMeta {
    /// Topic name.
    pub name: String,
    /// Unique id, so a topic deleted and created again under the same name is a new topic.
    pub id: u64,
    /// When it was created (Unix ms).
    pub created_ms: i64,
    /// Partition count.
    pub partitions: u32,
    /// Segment roll size.
    pub segment_size_bytes: u64,
    /// Segment roll age.
    pub segment_age_ms: u64,
    /// Size retention.
    pub retention_bytes: Option<u64>,
    /// Age retention.
    pub retention_ms: Option<u64>,
    /// Largest batch.
    pub record_size_bytes_max: u32,
}

impl TopicMeta {
    /// Metadata for a new topic.
    pub fn new(name: &str, id: u64, created_ms: i64, config: &TopicConfig) -> Self {
        Self {
            name: name.to_string(),
            id,
            created_ms,
            partitions: config.partitions,
            segment_size_bytes: config.segment_size_bytes,
            segment_age_ms: config.segment_age_ms,
            retention_bytes: config.retention_bytes,
            retention_ms: config.retention_ms,
            record_size_bytes_max: config.record_size_bytes_max,
        }
    }

    /// The configuration part.
    pub fn config(&self) -> TopicConfig {
        TopicConfig {
            partitions: self.partitions,
            segment_size_bytes: self.segment_size_bytes,
            segment_age_ms: self.segment_age_ms,
            retention_bytes: self.retention_bytes,
            retention_ms: self.retention_ms,
            record_size_bytes_max: self.record_size_bytes_max,
        }
    }

    /// Encode as a metadata file.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising a plain struct of integers and a string into memory cannot fail.
        let payload =
            rkyv::to_bytes::<rkyv::rancor::Error>(self).expect("rkyv serialises a TopicMeta");
        let mut bytes = Vec::with_capacity(META_HEADER_SIZE + payload.len());
        bytes.extend_from_slice(&META_MAGIC);
        bytes.extend_from_slice(&META_VERSION.to_le_bytes());
        bytes.extend_from_slice(&0u16.to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        let header_crc = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&header_crc.to_le_bytes());
        bytes.extend_from_slice(&payload);
        bytes
    }

    /// Decode a metadata file, verifying both checksums and the archive. The error says what
    /// is wrong.
    pub fn decode(bytes: &[u8]) -> std::result::Result<Self, String> {
        if bytes.len() < META_HEADER_SIZE {
            return Err(format!(
                "{} bytes is shorter than the {META_HEADER_SIZE}-byte header",
                bytes.len()
            ));
        }
        let u32_at = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        if bytes[0..8] != META_MAGIC {
            return Err("bad magic".to_string());
        }
        let header_crc = crc32c::crc32c(&bytes[0..20]);
        if u32_at(20) != header_crc {
            return Err(format!(
                "header checksum mismatch: stored {:#010x}, computed {header_crc:#010x}",
                u32_at(20)
            ));
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version != META_VERSION {
            return Err(format!("unsupported version {version}"));
        }
        let len = u32_at(12) as usize;
        let payload = &bytes[META_HEADER_SIZE..];
        if payload.len() != len {
            return Err(format!("payload is {} bytes, header says {len}", payload.len()));
        }
        let crc = crc32c::crc32c(payload);
        if u32_at(16) != crc {
            return Err(format!(
                "payload checksum mismatch: stored {:#010x}, computed {crc:#010x}",
                u32_at(16)
            ));
        }
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(len);
        aligned.extend_from_slice(payload);
        rkyv::from_bytes::<TopicMeta, rkyv::rancor::Error>(&aligned)
            .map_err(|e| format!("invalid archive: {e}"))
    }
}

/// The shard that owns a partition: a pure function of the topic name, the partition number
/// and the shard count, so placement is the same on every run with the same shard count.
/// Consecutive partitions of a topic go to consecutive shards; the topic name's FNV-1a hash
/// picks the first, so many single-partition topics spread too.
pub fn shard_for(topic: &str, partition: u32, shards: usize) -> usize {
    assert!(shards > 0, "an engine has at least one shard");
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in topic.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash.wrapping_add(u64::from(partition)) % shards as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kafka_rules() {
        for good in ["a", "orders", "orders.v2", "a_b-c", &"x".repeat(249)] {
            validate_name(good).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "a b", "ü", &"x".repeat(250), "a\0"] {
            assert!(matches!(validate_name(bad), Err(Error::InvalidTopicName { .. })), "{bad:?}");
        }
    }

    fn meta() -> TopicMeta {
        TopicMeta::new(
            "orders",
            42,
            1_700_000_000_000,
            &TopicConfig::default().partitions(3).retention_bytes(Some(1 << 30)),
        )
    }

    #[test]
    fn meta_round_trips() {
        let meta = meta();
        let bytes = meta.encode();
        assert_eq!(TopicMeta::decode(&bytes).unwrap(), meta);
        assert_eq!(meta.config().partitions, 3);
    }

    #[test]
    fn every_bit_flip_and_truncation_is_detected() {
        let bytes = meta().encode();
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            // Reserved header bytes 10..12 are not covered by meaning but are by the CRC.
            assert!(TopicMeta::decode(&damaged).is_err(), "bit {bit}");
        }
        for len in 0..bytes.len() {
            assert!(TopicMeta::decode(&bytes[..len]).is_err(), "length {len}");
        }
    }

    #[test]
    fn placement_is_stable_and_spreads() {
        assert_eq!(shard_for("orders", 0, 4), shard_for("orders", 0, 4));
        let shards: std::collections::BTreeSet<_> =
            (0..8).map(|p| shard_for("orders", p, 4)).collect();
        assert_eq!(shards.len(), 4);
        assert_eq!(shard_for("anything", 7, 1), 0);
    }
}
