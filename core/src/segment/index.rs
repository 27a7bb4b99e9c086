//! Sparse indexes beside each segment: the offset index and the time index.
//!
//! Both files are a 32-byte header followed by fixed-size entries, little-endian, each entry
//! with its own CRC-32C (seeded by the segment's base offset, so an entry can never be taken
//! for one of another segment's). Index writes are not synced on the append path: after a
//! crash an index may be short, torn or (for a recycled file) hold stale bytes; loading stops
//! at the first entry that fails its checksum or breaks monotonicity, and recovery checks the
//! last survivors against the log itself. `docs/FORMAT.md` has the byte diagrams.
//!
//! ```text
//! header (32 bytes)
//!   0  magic        [u8; 8]  "TLOFFIDX" or "TLTIMIDX"
//!   8  version      u16      1
//!  10  entry_size   u16      12 (offset) or 24 (time)
//!  12  reserved     u32      0
//!  16  base_offset  u64
//!  24  reserved     u32      0
//!  28  crc          u32      CRC-32C of bytes 0..28
//!
//! offset entry (12 bytes): the batch at `position` has base offset `base_offset + relative_offset`
//!   0  relative_offset u32
//!   4  position        u32
//!   8  crc             u32   CRC-32C of (base_offset as u64 LE ++ bytes 0..8)
//!
//! time entry (24 bytes): every record below `base_offset + relative_offset` (all of which
//! lie before byte `position`) has a timestamp <= `max_timestamp`
//!   0  max_timestamp   i64
//!   8  relative_offset u32
//!  12  position        u32
//!  16  reserved        u32   0
//!  20  crc             u32   CRC-32C of (base_offset as u64 LE ++ bytes 0..20)
//! ```

use std::marker::PhantomData;

/// Size of an index file header.
pub const HEADER_SIZE: usize = 32;
/// Index format version written and understood.
pub const INDEX_VERSION: u16 = 1;

const HEADER_CRC_AT: usize = 28;
const _: () = assert!(HEADER_CRC_AT + 4 == HEADER_SIZE);

/// One kind of index entry.
pub trait IndexEntry: Copy + std::fmt::Debug + PartialEq {
    /// Magic at the start of the file.
    const MAGIC: [u8; 8];
    /// Encoded size.
    const SIZE: usize;
    /// Offset relative to the segment base.
    fn relative_offset(&self) -> u32;
    /// Byte position in the log.
    fn position(&self) -> u32;
    /// Encode into exactly `SIZE` bytes.
    fn encode(&self, base_offset: u64, out: &mut [u8]);
    /// Decode `SIZE` bytes; `None` if the checksum or a reserved field is wrong.
    fn decode(base_offset: u64, bytes: &[u8]) -> Option<Self>;
    /// Whether `self` may follow `previous` in a file.
    fn may_follow(&self, previous: &Self) -> bool;
}

/// Offset index entry: the batch at `position` starts at `base + relative_offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetEntry {
    /// Offset relative to the segment base.
    pub relative_offset: u32,
    /// Byte position of the batch in the log file.
    pub position: u32,
}

/// Time index entry: all records before `base + relative_offset` (bytes before `position`)
/// have timestamps no greater than `max_timestamp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeEntry {
    /// Largest timestamp of any record before this point.
    pub max_timestamp: i64,
    /// Offset relative to the segment base.
    pub relative_offset: u32,
    /// Byte position of the batch at that offset (or the end of the data).
    pub position: u32,
}

const OFFSET_ENTRY_SIZE: usize = 12;
const TIME_ENTRY_SIZE: usize = 24;
const _: () = assert!(OFFSET_ENTRY_SIZE == 4 + 4 + 4);
const _: () = assert!(TIME_ENTRY_SIZE == 8 + 4 + 4 + 4 + 4);

fn entry_crc(base_offset: u64, body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&base_offset.to_le_bytes()), body)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(raw)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(raw)
}

impl IndexEntry for OffsetEntry {
    const MAGIC: [u8; 8] = *b"TLOFFIDX";
    const SIZE: usize = OFFSET_ENTRY_SIZE;

    fn relative_offset(&self) -> u32 {
        self.relative_offset
    }
    fn position(&self) -> u32 {
        self.position
    }
    fn encode(&self, base_offset: u64, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.relative_offset.to_le_bytes());
        out[4..8].copy_from_slice(&self.position.to_le_bytes());
        let crc = entry_crc(base_offset, &out[0..8]);
        out[8..12].copy_from_slice(&crc.to_le_bytes());
    }
    fn decode(base_offset: u64, bytes: &[u8]) -> Option<Self> {
        (u32_at(bytes, 8) == entry_crc(base_offset, &bytes[0..8]))
            .then(|| OffsetEntry { relative_offset: u32_at(bytes, 0), position: u32_at(bytes, 4) })
    }
    fn may_follow(&self, previous: &Self) -> bool {
        self.relative_offset > previous.relative_offset && self.position > previous.position
    }
}

impl IndexEntry for TimeEntry {
    const MAGIC: [u8; 8] = *b"TLTIMIDX";
    const SIZE: usize = TIME_ENTRY_SIZE;

    fn relative_offset(&self) -> u32 {
        self.relative_offset
    }
    fn position(&self) -> u32 {
        self.position
    }
    fn encode(&self, base_offset: u64, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.max_timestamp.to_le_bytes());
        out[8..12].copy_from_slice(&self.relative_offset.to_le_bytes());
        out[12..16].copy_from_slice(&self.position.to_le_bytes());
        out[16..20].fill(0);
        let crc = entry_crc(base_offset, &out[0..20]);
        out[20..24].copy_from_slice(&crc.to_le_bytes());
    }
    fn decode(base_offset: u64, bytes: &[u8]) -> Option<Self> {
        let valid =
            u32_at(bytes, 16) == 0 && u32_at(bytes, 20) == entry_crc(base_offset, &bytes[0..20]);
        valid.then(|| TimeEntry {
            max_timestamp: u64_at(bytes, 0) as i64,
            relative_offset: u32_at(bytes, 8),
            position: u32_at(bytes, 12),
        })
    }
    fn may_follow(&self, previous: &Self) -> bool {
        self.relative_offset > previous.relative_offset
            && self.position > previous.position
            && self.max_timestamp >= previous.max_timestamp
    }
}

/// Why loading an index stopped before the end of its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexDamage {
    /// The header is missing, has the wrong magic/version/base, or fails its checksum.
    BadHeader,
    /// An entry failed its checksum or broke monotonicity at this byte position.
    BadEntry { position: u64 },
    /// The file ends inside an entry.
    PartialEntry { position: u64 },
}

/// An index held in memory, remembering how much of it has been handed to storage.
///
/// Entries are handed to storage only once the log bytes they point at are known to be
/// durable ([`Index::take_unwritten`] takes a position limit): an entry on disk then always
/// points into a synced prefix of the log, which is what lets recovery start its scan at the
/// last entry instead of at the beginning of the segment.
#[derive(Debug)]
pub struct Index<E: IndexEntry> {
    base_offset: u64,
    entries: Vec<E>,
    /// Entries already handed to storage (the file holds the header and these).
    written_entries: usize,
    /// The header is not yet handed to storage (a new file).
    header_pending: bool,
    _kind: PhantomData<E>,
}

/// The offset index of one segment.
pub type OffsetIndex = Index<OffsetEntry>;
/// The time index of one segment.
pub type TimeIndex = Index<TimeEntry>;

/// Encode an index file header.
pub fn encode_header<E: IndexEntry>(base_offset: u64) -> [u8; HEADER_SIZE] {
    let mut header = [0u8; HEADER_SIZE];
    header[0..8].copy_from_slice(&E::MAGIC);
    header[8..10].copy_from_slice(&INDEX_VERSION.to_le_bytes());
    header[10..12].copy_from_slice(&(E::SIZE as u16).to_le_bytes());
    header[16..24].copy_from_slice(&base_offset.to_le_bytes());
    let crc = crc32c::crc32c(&header[..HEADER_CRC_AT]);
    header[HEADER_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Encode a whole index file: header and entries.
pub fn encode_file<E: IndexEntry>(base_offset: u64, entries: &[E]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER_SIZE + entries.len() * E::SIZE);
    bytes.extend_from_slice(&encode_header::<E>(base_offset));
    for entry in entries {
        let at = bytes.len();
        bytes.resize(at + E::SIZE, 0);
        entry.encode(base_offset, &mut bytes[at..]);
    }
    bytes
}

fn header_is_valid<E: IndexEntry>(bytes: &[u8], base_offset: u64) -> bool {
    bytes.len() >= HEADER_SIZE && bytes[..HEADER_SIZE] == encode_header::<E>(base_offset)
}

impl<E: IndexEntry> Index<E> {
    /// An empty index for a new file: the header is pending.
    pub fn new(base_offset: u64) -> Self {
        Self {
            base_offset,
            entries: Vec::new(),
            written_entries: 0,
            header_pending: true,
            _kind: PhantomData,
        }
    }

    /// Load from a file's bytes, keeping the longest valid prefix of entries. Returns the
    /// index and the damage found, if any (the caller rewrites or cuts a damaged file).
    pub fn load(base_offset: u64, bytes: &[u8]) -> (Self, Option<IndexDamage>) {
        if !header_is_valid::<E>(bytes, base_offset) {
            return (Self::new(base_offset), Some(IndexDamage::BadHeader));
        }
        let mut entries: Vec<E> = Vec::with_capacity((bytes.len() - HEADER_SIZE) / E::SIZE);
        let mut damage = None;
        let mut at = HEADER_SIZE;
        while at < bytes.len() {
            if bytes.len() - at < E::SIZE {
                damage = Some(IndexDamage::PartialEntry { position: at as u64 });
                break;
            }
            let entry = E::decode(base_offset, &bytes[at..at + E::SIZE]);
            match entry {
                Some(entry) if entries.last().is_none_or(|previous| entry.may_follow(previous)) => {
                    entries.push(entry);
                }
                _ => {
                    damage = Some(IndexDamage::BadEntry { position: at as u64 });
                    break;
                }
            }
            at += E::SIZE;
        }
        let written_entries = entries.len();
        (
            Self {
                base_offset,
                entries,
                written_entries,
                header_pending: false,
                _kind: PhantomData,
            },
            damage,
        )
    }

    /// An index whose entries are all already in its file (as written by [`encode_file`]).
    pub fn written(base_offset: u64, entries: Vec<E>) -> Self {
        let written_entries = entries.len();
        Self { base_offset, entries, written_entries, header_pending: false, _kind: PhantomData }
    }

    /// The segment base offset.
    pub fn base_offset(&self) -> u64 {
        self.base_offset
    }

    /// All entries, in order.
    pub fn entries(&self) -> &[E] {
        &self.entries
    }

    /// The last entry.
    pub fn last(&self) -> Option<&E> {
        self.entries.last()
    }

    /// Append an entry (it must follow the last one).
    pub fn push(&mut self, entry: E) {
        if let Some(previous) = self.entries.last() {
            assert!(
                entry.may_follow(previous),
                "index entry {entry:?} does not follow {previous:?}"
            );
        }
        self.entries.push(entry);
    }

    /// Drop every entry after the first `keep`. Returns true when entries already handed to
    /// storage were dropped: the caller must then cut the file to [`Index::file_len`], or a
    /// later load would find the stale entries.
    pub fn truncate(&mut self, keep: usize) -> bool {
        if keep >= self.entries.len() {
            return false;
        }
        self.entries.truncate(keep);
        if keep < self.written_entries {
            self.written_entries = keep;
            true
        } else {
            false
        }
    }

    /// Length of the file once everything taken so far is written.
    pub fn file_len(&self) -> u64 {
        if self.header_pending && self.written_entries == 0 {
            return 0;
        }
        (HEADER_SIZE + self.written_entries * E::SIZE) as u64
    }

    /// Take the encoded bytes of the entries not yet handed to storage whose log position is
    /// at most `durable_position` (plus the header of a new file), and the file position they
    /// go to.
    pub fn take_unwritten(&mut self, durable_position: u64) -> Option<(u64, Vec<u8>)> {
        let ready = self.entries[self.written_entries..]
            .partition_point(|e| u64::from(e.position()) <= durable_position);
        if ready == 0 && !self.header_pending {
            return None;
        }
        let mut bytes = Vec::with_capacity(HEADER_SIZE + ready * E::SIZE);
        let at = if self.header_pending {
            bytes.extend_from_slice(&encode_header::<E>(self.base_offset));
            0
        } else {
            (HEADER_SIZE + self.written_entries * E::SIZE) as u64
        };
        for entry in &self.entries[self.written_entries..self.written_entries + ready] {
            let offset = bytes.len();
            bytes.resize(offset + E::SIZE, 0);
            entry.encode(self.base_offset, &mut bytes[offset..]);
        }
        self.header_pending = false;
        self.written_entries += ready;
        Some((at, bytes))
    }

    /// Position of the last entry whose key is at or below the target, by `key`.
    fn last_at_or_below(&self, below: impl Fn(&E) -> bool) -> Option<&E> {
        let n = self.entries.partition_point(below);
        n.checked_sub(1).map(|i| &self.entries[i])
    }
}

impl OffsetIndex {
    /// The entry to start a scan for `offset` from: the last entry at or below it.
    pub fn lookup(&self, offset: u64) -> Option<OffsetEntry> {
        let rel = offset.checked_sub(self.base_offset)?;
        self.last_at_or_below(|e| u64::from(e.relative_offset) <= rel).copied()
    }
}

impl TimeIndex {
    /// The entry to start a scan for the first record with timestamp >= `target` from: the
    /// last entry whose `max_timestamp` is below `target` (every record before it is too
    /// old, so the answer lies after it).
    pub fn lookup(&self, target: i64) -> Option<TimeEntry> {
        self.last_at_or_below(|e| e.max_timestamp < target).copied()
    }

    /// Largest timestamp recorded by any entry.
    pub fn max_timestamp(&self) -> Option<i64> {
        self.entries.last().map(|e| e.max_timestamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_of<E: IndexEntry>(index: &mut Index<E>) -> Vec<u8> {
        let (at, bytes) = index.take_unwritten(u64::MAX).unwrap();
        assert_eq!(at, 0);
        bytes
    }

    fn offset_index(base: u64, n: u32) -> (OffsetIndex, Vec<u8>) {
        let mut index = OffsetIndex::new(base);
        for i in 0..n {
            index.push(OffsetEntry { relative_offset: i * 10, position: i * 4096 });
        }
        let bytes = file_of(&mut index);
        (index, bytes)
    }

    #[test]
    fn round_trip_offset_index() {
        let (index, bytes) = offset_index(1000, 50);
        assert_eq!(bytes.len(), HEADER_SIZE + 50 * OffsetEntry::SIZE);
        let (loaded, damage) = OffsetIndex::load(1000, &bytes);
        assert_eq!(damage, None);
        assert_eq!(loaded.entries(), index.entries());
        assert_eq!(loaded.file_len(), bytes.len() as u64);
        assert_eq!(loaded.lookup(999), None);
        assert_eq!(loaded.lookup(1000), Some(OffsetEntry { relative_offset: 0, position: 0 }));
        assert_eq!(loaded.lookup(1015), Some(OffsetEntry { relative_offset: 10, position: 4096 }));
        assert_eq!(loaded.lookup(u64::MAX).unwrap().relative_offset, 490);
    }

    #[test]
    fn round_trip_time_index() {
        let mut index = TimeIndex::new(7);
        for i in 0..20u32 {
            index.push(TimeEntry {
                max_timestamp: 100 + i64::from(i) * 5,
                relative_offset: i + 1,
                position: (i + 1) * 100,
            });
        }
        let bytes = file_of(&mut index);
        let (loaded, damage) = TimeIndex::load(7, &bytes);
        assert_eq!(damage, None);
        assert_eq!(loaded.entries(), index.entries());
        assert_eq!(loaded.lookup(100), None);
        assert_eq!(loaded.lookup(101).unwrap().max_timestamp, 100);
        assert_eq!(loaded.lookup(111).unwrap().max_timestamp, 110);
        assert_eq!(loaded.max_timestamp(), Some(195));
    }

    #[test]
    fn every_single_bit_flip_is_caught_and_loading_keeps_the_prefix() {
        let (index, bytes) = offset_index(42, 8);
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            let (loaded, damage) = OffsetIndex::load(42, &damaged);
            let byte = bit / 8;
            if byte < HEADER_SIZE {
                assert_eq!(damage, Some(IndexDamage::BadHeader));
                assert!(loaded.entries().is_empty());
            } else {
                let bad_entry = (byte - HEADER_SIZE) / OffsetEntry::SIZE;
                assert!(matches!(damage, Some(IndexDamage::BadEntry { .. })), "bit {bit}");
                assert_eq!(loaded.entries(), &index.entries()[..bad_entry]);
            }
        }
    }

    #[test]
    fn truncated_and_zeroed_tails_load_the_valid_prefix() {
        let (index, bytes) = offset_index(0, 10);
        for len in 0..bytes.len() {
            let (loaded, damage) = OffsetIndex::load(0, &bytes[..len]);
            if len < HEADER_SIZE {
                assert_eq!(damage, Some(IndexDamage::BadHeader));
                continue;
            }
            let whole = (len - HEADER_SIZE) / OffsetEntry::SIZE;
            assert_eq!(loaded.entries(), &index.entries()[..whole]);
            assert_eq!(damage.is_some(), !(len - HEADER_SIZE).is_multiple_of(OffsetEntry::SIZE));
        }
        let mut zero_tail = bytes.clone();
        zero_tail.extend_from_slice(&[0u8; 4096]);
        let (loaded, damage) = OffsetIndex::load(0, &zero_tail);
        assert_eq!(loaded.entries(), index.entries());
        assert!(
            matches!(damage, Some(IndexDamage::BadEntry { position }) if position == bytes.len() as u64)
        );
    }

    #[test]
    fn entries_of_another_segment_are_rejected() {
        let (_, bytes) = offset_index(100, 3);
        let (_, damage) = OffsetIndex::load(200, &bytes);
        assert_eq!(damage, Some(IndexDamage::BadHeader));
        // Same header base, but entries copied from another segment's file.
        let (_, other) = offset_index(300, 3);
        let mut mixed = bytes[..HEADER_SIZE].to_vec();
        mixed.extend_from_slice(&other[HEADER_SIZE..]);
        let (loaded, damage) = OffsetIndex::load(100, &mixed);
        assert!(loaded.entries().is_empty());
        assert!(matches!(damage, Some(IndexDamage::BadEntry { .. })));
    }

    #[test]
    fn non_monotonic_entries_stop_loading() {
        let mut index = OffsetIndex::new(0);
        index.push(OffsetEntry { relative_offset: 5, position: 100 });
        let mut bytes = file_of(&mut index);
        let mut entry = [0u8; 12];
        OffsetEntry { relative_offset: 4, position: 200 }.encode(0, &mut entry);
        bytes.extend_from_slice(&entry);
        let (loaded, damage) = OffsetIndex::load(0, &bytes);
        assert_eq!(loaded.entries().len(), 1);
        assert!(matches!(damage, Some(IndexDamage::BadEntry { .. })));
    }

    #[test]
    fn truncate_and_durable_limits() {
        let (mut index, bytes) = offset_index(0, 10);
        assert_eq!(index.file_len(), bytes.len() as u64);
        assert!(index.truncate(4), "a cut inside written entries needs the file cut");
        assert_eq!(index.entries().len(), 4);
        assert_eq!(index.take_unwritten(u64::MAX), None);
        assert_eq!(index.file_len(), (HEADER_SIZE + 4 * 12) as u64);
        index.push(OffsetEntry { relative_offset: 100, position: 100_000 });
        index.push(OffsetEntry { relative_offset: 200, position: 200_000 });
        assert_eq!(
            index.take_unwritten(99_999),
            None,
            "entries wait for their log bytes to be durable"
        );
        let (at, pending) = index.take_unwritten(150_000).unwrap();
        assert_eq!(at, (HEADER_SIZE + 4 * 12) as u64);
        assert_eq!(pending.len(), 12);
        let (at, pending) = index.take_unwritten(u64::MAX).unwrap();
        assert_eq!(at, (HEADER_SIZE + 5 * 12) as u64);
        assert_eq!(pending.len(), 12);
        let mut fresh = OffsetIndex::new(0);
        fresh.push(OffsetEntry { relative_offset: 1, position: 1 });
        assert!(!fresh.truncate(0), "nothing was written yet");
        assert_eq!(
            fresh.take_unwritten(0).unwrap().1.len(),
            HEADER_SIZE,
            "a new file gets its header at once"
        );
        assert_eq!(encode_file(0, index.entries()).len(), HEADER_SIZE + 6 * 12);
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x1234_5678_9abc_def0u64;
        for len in 0..600 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let _ = OffsetIndex::load(0, &bytes);
            let _ = TimeIndex::load(0, &bytes);
        }
    }
}
