//! Choosing a partition for a record, the way Kafka's producer does.
//!
//! Keyed records go to `to_positive(murmur2(key)) % partitions` — Kafka's default (and, since
//! Kafka 3.3, built-in) partitioner for keyed records — so a key lands on the same partition
//! here as it would from any Kafka client using the default partitioner. Changing this
//! function moves keys between partitions and breaks per-key ordering for existing data: it is
//! pinned by Kafka's own test vectors below.
//!
//! Unkeyed records are spread with [`RoundRobin`].

use std::sync::atomic::{AtomicU32, Ordering};

/// Seed of Kafka's murmur2 (`Utils.murmur2`).
pub const MURMUR2_SEED: u32 = 0x9747_b28c;
/// Multiplier of 32-bit MurmurHash2.
const MURMUR2_M: u32 = 0x5bd1_e995;
/// Shift of 32-bit MurmurHash2's block mix.
const MURMUR2_R: u32 = 24;

/// 32-bit MurmurHash2 of `data` with Kafka's seed, bit for bit Kafka's `Utils.murmur2`
/// (little-endian 4-byte blocks, the tail folded in from its highest byte down).
///
/// The result is a Java `int`; use [`to_positive`] before taking a modulus. Kafka hashes
/// arrays whose length fits an `int`; for longer input (> 2 GiB keys) the length is truncated
/// to 32 bits in the seed, as a Java port would have to.
pub fn murmur2(data: &[u8]) -> i32 {
    let mut hash = MURMUR2_SEED ^ (data.len() as u32);
    let (blocks, tail) = data.as_chunks::<4>();
    for block in blocks {
        let mut k = u32::from_le_bytes(*block);
        k = k.wrapping_mul(MURMUR2_M);
        k ^= k >> MURMUR2_R;
        k = k.wrapping_mul(MURMUR2_M);
        hash = hash.wrapping_mul(MURMUR2_M);
        hash ^= k;
    }
    // Kafka's `switch (length % 4)` falls through from case 3 to case 1.
    if let Some(&byte) = tail.get(2) {
        hash ^= u32::from(byte) << 16;
    }
    if let Some(&byte) = tail.get(1) {
        hash ^= u32::from(byte) << 8;
    }
    if let Some(&byte) = tail.first() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(MURMUR2_M);
    }
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(MURMUR2_M);
    hash ^= hash >> 15;
    hash as i32
}

/// Kafka's `Utils.toPositive`: clears the sign bit (`n & 0x7fffffff`). Not the absolute
/// value: `to_positive(-1) == i32::MAX`, and `i32::MIN` maps to 0.
pub const fn to_positive(n: i32) -> i32 {
    n & 0x7fff_ffff
}

/// The partition Kafka's default partitioner picks for a record with this (serialized) key:
/// `to_positive(murmur2(key)) % partitions`. An empty key is a key like any other; a record
/// with a *null* key should use [`RoundRobin`] instead.
///
/// # Panics
///
/// If `partitions` is 0: a topic always has at least one partition, so this is a caller bug,
/// not a data error.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    assert!(partitions > 0, "partition_for_key: a topic has at least one partition, got 0");
    // `to_positive` leaves a value in 0..=i32::MAX, so the cast is lossless.
    (to_positive(murmur2(key)) as u32) % partitions
}

/// Spreads unkeyed records over partitions in turn, like Kafka's `RoundRobinPartitioner`.
/// Shared between threads by reference; one relaxed atomic increment per call.
///
/// The counter wraps at 2³², so when `partitions` does not divide 2³² one partition is chosen
/// twice in a row once every 4 billion calls.
#[derive(Debug, Default)]
pub struct RoundRobin {
    counter: AtomicU32,
}

impl RoundRobin {
    /// A partitioner starting at partition 0.
    pub const fn new() -> RoundRobin {
        RoundRobin { counter: AtomicU32::new(0) }
    }

    /// A partitioner whose first pick is `start % partitions` — start producers at different
    /// points so that they do not all begin on partition 0.
    pub const fn starting_at(start: u32) -> RoundRobin {
        RoundRobin { counter: AtomicU32::new(start) }
    }

    /// The next partition in turn, in `0..partitions`.
    ///
    /// # Panics
    ///
    /// If `partitions` is 0, as [`partition_for_key`].
    pub fn next(&self, partitions: u32) -> u32 {
        assert!(partitions > 0, "RoundRobin::next: a topic has at least one partition, got 0");
        // Relaxed: the counter only needs to hand out distinct values, it orders nothing.
        self.counter.fetch_add(1, Ordering::Relaxed) % partitions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's `UtilsTest.testMurmur2` vectors (clients/src/test/java/org/apache/kafka/common/
    /// utils/UtilsTest.java), as the Java `int`s it asserts.
    const KAFKA_VECTORS: [(&[u8], i32); 6] = [
        (b"21", -973_932_308),
        (b"foobar", -790_332_482),
        (b"a-little-bit-long-string", -985_981_536),
        (b"a-little-bit-longer-string", -1_486_304_829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
        (b"abc", 479_470_107),
    ];

    #[test]
    fn murmur2_matches_kafka_test_vectors() {
        for (key, expected) in KAFKA_VECTORS {
            assert_eq!(murmur2(key), expected, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn murmur2_covers_every_tail_length_and_high_bytes() {
        // Cross-checked with an independent Python port that reproduces the Kafka vectors
        // above; these pin the tail handling (0–3 bytes) and unsigned treatment of bytes ≥ 0x80
        // (Java's `data[i] & 0xff`).
        let cases: [(&[u8], i32); 5] = [
            (b"", 275_646_681),
            (b"a", -1_563_381_124),
            (b"ab", 316_155_434),
            (b"abcd", -1_323_649_548),
            (&[0xff, 0xfe, 0xfd], 998_637_092),
        ];
        for (key, expected) in cases {
            assert_eq!(murmur2(key), expected, "{key:02x?}");
        }
    }

    #[test]
    fn keys_land_on_the_partitions_kafka_would_choose() {
        // Derived from the Kafka vectors: to_positive(hash) % partitions.
        let expected: [(&[u8], [u32; 4]); 6] = [
            (b"21", [0, 0, 0, 40]),
            (b"foobar", [0, 0, 6, 66]),
            (b"a-little-bit-long-string", [0, 2, 8, 12]),
            (b"a-little-bit-longer-string", [0, 2, 11, 19]),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", [0, 2, 5, 77]),
            (b"abc", [0, 0, 3, 7]),
        ];
        for (key, partitions) in expected {
            for (count, partition) in [1, 3, 12, 100].into_iter().zip(partitions) {
                assert_eq!(
                    partition_for_key(key, count),
                    partition,
                    "{} over {count}",
                    String::from_utf8_lossy(key)
                );
            }
        }
    }

    #[test]
    fn to_positive_clears_the_sign_bit_only() {
        assert_eq!(to_positive(0), 0);
        assert_eq!(to_positive(5), 5);
        assert_eq!(to_positive(-1), i32::MAX);
        assert_eq!(to_positive(i32::MIN), 0);
        assert_eq!(to_positive(-973_932_308), 1_173_551_340);
    }

    #[test]
    fn empty_key_is_hashed_like_any_other() {
        assert_eq!(partition_for_key(b"", 12), 275_646_681 % 12);
        for partitions in 1..50 {
            assert!(partition_for_key(b"", partitions) < partitions);
        }
    }

    #[test]
    #[should_panic(expected = "at least one partition")]
    fn zero_partitions_is_a_caller_bug() {
        partition_for_key(b"key", 0);
    }

    #[test]
    fn round_robin_cycles_through_every_partition() {
        let partitioner = RoundRobin::new();
        let picks: Vec<u32> = (0..7).map(|_| partitioner.next(3)).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0]);
        let started = RoundRobin::starting_at(5);
        assert_eq!(started.next(4), 1);
        assert_eq!(started.next(4), 2);
    }

    #[test]
    fn round_robin_is_even_across_threads() {
        let partitioner = RoundRobin::new();
        let counts: Vec<[u32; 4]> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        let mut counts = [0u32; 4];
                        for _ in 0..1000 {
                            counts[partitioner.next(4) as usize] += 1;
                        }
                        counts
                    })
                })
                .collect();
            workers.into_iter().map(|worker| worker.join().unwrap()).collect()
        });
        let totals: Vec<u32> = (0..4).map(|p| counts.iter().map(|c| c[p]).sum()).collect();
        assert_eq!(totals, [1000, 1000, 1000, 1000]);
    }

    #[test]
    fn round_robin_wraps_without_panicking() {
        let partitioner = RoundRobin::starting_at(u32::MAX);
        assert_eq!(partitioner.next(10), u32::MAX % 10);
        assert_eq!(partitioner.next(10), 0);
    }
}
