//! Segments: one log file of back-to-back Kafka v2 record batches, named by the 20-digit base
//! offset of its first record, with a sparse offset index and a time index beside it.
//!
//! ```text
//! 00000000000000000000.log        batches with offsets [0, 1234)
//! 00000000000000000000.index      offset index (every INDEX_INTERVAL_BYTES of log)
//! 00000000000000000000.timeindex  time index
//! 00000000000000001234.log        the next segment, base offset 1234
//! ```
//!
//! A *closed* segment is immutable and its log file is exactly as long as its data; its time
//! index ends with a *close entry* `(max timestamp, end offset, end position)` whose presence
//! (with the end offset equal to the next segment's base) proves the close completed. The last
//! segment is the *active* one, the only one written to.

pub mod index;
pub mod scan;

use std::path::{Path, PathBuf};

use tidelog_io::FileId;

use crate::limits::INDEX_INTERVAL_BYTES;
use index::{IndexEntry, OffsetEntry, OffsetIndex, TimeEntry, TimeIndex};

/// Timestamp value of "no timestamp" (Kafka's `NO_TIMESTAMP`).
pub const NO_TIMESTAMP: i64 = -1;

/// File name of the log of the segment starting at `base_offset`.
pub fn log_name(base_offset: u64) -> String {
    format!("{base_offset:020}.log")
}

/// Path of a segment's log file.
pub fn log_path(dir: &Path, base_offset: u64) -> PathBuf {
    dir.join(log_name(base_offset))
}

/// Path of a segment's offset index.
pub fn offset_index_path(dir: &Path, base_offset: u64) -> PathBuf {
    dir.join(format!("{base_offset:020}.index"))
}

/// Path of a segment's time index.
pub fn time_index_path(dir: &Path, base_offset: u64) -> PathBuf {
    dir.join(format!("{base_offset:020}.timeindex"))
}

/// The kinds of file a partition directory holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentFile {
    /// `<base>.log`
    Log(u64),
    /// `<base>.index`
    OffsetIndex(u64),
    /// `<base>.timeindex`
    TimeIndex(u64),
}

/// Recognise a segment file name (20 digits and a known extension).
pub fn parse_file_name(name: &str) -> Option<SegmentFile> {
    let (stem, ext) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let base = stem.parse().ok()?;
    match ext {
        "log" => Some(SegmentFile::Log(base)),
        "index" => Some(SegmentFile::OffsetIndex(base)),
        "timeindex" => Some(SegmentFile::TimeIndex(base)),
        _ => None,
    }
}

/// One segment's state in memory.
#[derive(Debug)]
pub struct Segment {
    /// Offset of the first record.
    pub base_offset: u64,
    /// One past the offset of the last record (== `base_offset` when empty).
    pub next_offset: u64,
    /// Bytes of batch data (the end position of the last batch).
    pub size_bytes: u64,
    /// Largest record timestamp, or [`NO_TIMESTAMP`].
    pub max_timestamp: i64,
    /// Wall-clock time (ms) from which the segment's age is counted.
    pub rolling_base_ms: Option<i64>,
    /// Open log file, if any.
    pub log: Option<FileId>,
    /// Offset index, when loaded.
    pub offset_index: Option<OffsetIndex>,
    /// Time index, when loaded.
    pub time_index: Option<TimeIndex>,
    /// Open index files (active segment only).
    pub index_files: Option<(FileId, FileId)>,
    /// Log bytes appended since the last index entry.
    pub bytes_since_index: u64,
    /// Bytes whose writes have completed (readable); `size_bytes` for a closed segment.
    pub written_bytes: u64,
    /// Bytes covered by a completed `fdatasync`: index entries pointing below this may be
    /// written (see [`index::Index::take_unwritten`]).
    pub synced_bytes: u64,
    /// Operations in flight on this segment's files: they must complete before it closes.
    pub ops_in_flight: u32,
    /// Fetch reads in flight on this segment's log. Retention waits for them (the file must
    /// stay); a close does not (it syncs the file and trims it to `size_bytes`, past anything
    /// a read reaches), so a reader never holds up a roll's close — nor, through it, the
    /// durable offset.
    pub reads_in_flight: u32,
}

impl Segment {
    /// An empty segment.
    pub fn new(base_offset: u64) -> Self {
        Self {
            base_offset,
            next_offset: base_offset,
            size_bytes: 0,
            max_timestamp: NO_TIMESTAMP,
            rolling_base_ms: None,
            log: None,
            offset_index: None,
            time_index: None,
            index_files: None,
            bytes_since_index: 0,
            written_bytes: 0,
            synced_bytes: 0,
            ops_in_flight: 0,
            reads_in_flight: 0,
        }
    }

    /// True when the segment holds no records.
    pub fn is_empty(&self) -> bool {
        self.next_offset == self.base_offset
    }

    /// Record a batch appended at `position` (which must be the current end): move the end,
    /// and add index entries every [`INDEX_INTERVAL_BYTES`]. Used by appends and by recovery,
    /// so both build identical indexes.
    pub fn note_batch(
        &mut self,
        position: u64,
        base_offset: u64,
        next_offset: u64,
        len: u64,
        max_timestamp: i64,
    ) {
        assert_eq!(position, self.size_bytes, "batch not at the end of the segment");
        assert_eq!(base_offset, self.next_offset, "batch offsets not contiguous");
        assert!(next_offset > base_offset, "empty batch");
        if self.size_bytes > 0 && self.bytes_since_index >= u64::from(INDEX_INTERVAL_BYTES) {
            let relative_offset = self.relative(base_offset);
            let position = self.position32(position);
            if let Some(index) = self.offset_index.as_mut() {
                index.push(OffsetEntry { relative_offset, position });
            }
            let max_before = self.max_timestamp;
            if let Some(index) = self.time_index.as_mut()
                && max_before != NO_TIMESTAMP
                && index.max_timestamp().is_none_or(|last| max_before > last)
            {
                index.push(TimeEntry { max_timestamp: max_before, relative_offset, position });
            }
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += len;
        self.size_bytes += len;
        self.next_offset = next_offset;
        self.max_timestamp = self.max_timestamp.max(max_timestamp);
    }

    /// Add the close entry to the time index: `(max timestamp, end offset, end position)`.
    pub fn push_close_entry(&mut self) {
        let entry = TimeEntry {
            max_timestamp: self.max_timestamp,
            relative_offset: self.relative(self.next_offset),
            position: self.position32(self.size_bytes),
        };
        if let Some(index) = self.time_index.as_mut() {
            let follows = index.last().is_none_or(|last| entry.may_follow(last));
            if follows {
                index.push(entry);
            }
        }
    }

    /// Offset relative to the base, as stored in indexes.
    pub fn relative(&self, offset: u64) -> u32 {
        u32::try_from(offset - self.base_offset).unwrap_or_else(|_| {
            panic!("offset {offset} is more than 2^32 past segment base {}", self.base_offset)
        })
    }

    fn position32(&self, position: u64) -> u32 {
        // Segments are at most SEGMENT_SIZE_BYTES_MAX (< 2^32) long: checked by config
        // validation and a const assertion in `limits`.
        u32::try_from(position)
            .unwrap_or_else(|_| panic!("position {position} beyond 4 GiB segment limit"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(log_name(0), "00000000000000000000.log");
        assert_eq!(log_name(u64::MAX), "18446744073709551615.log");
        assert_eq!(parse_file_name(&log_name(1234)), Some(SegmentFile::Log(1234)));
        assert_eq!(
            parse_file_name("00000000000000001234.index"),
            Some(SegmentFile::OffsetIndex(1234))
        );
        assert_eq!(
            parse_file_name("00000000000000001234.timeindex"),
            Some(SegmentFile::TimeIndex(1234))
        );
        for bad in [
            "1234.log",
            "0000000000000000123a.log",
            "00000000000000001234.txt",
            "x",
            "",
            "99999999999999999999.log",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn note_batch_indexes_every_interval() {
        let mut segment = Segment::new(100);
        segment.offset_index = Some(OffsetIndex::new(100));
        segment.time_index = Some(TimeIndex::new(100));
        let mut offset = 100;
        let mut position = 0;
        for i in 0..100u64 {
            segment.note_batch(position, offset, offset + 10, 1000, 5000 + i as i64);
            offset += 10;
            position += 1000;
        }
        assert_eq!(segment.next_offset, 1100);
        assert_eq!(segment.size_bytes, 100_000);
        assert_eq!(segment.max_timestamp, 5099);
        let entries = segment.offset_index.as_ref().unwrap().entries().to_vec();
        // An entry once 4096 bytes have gone by since the last: every 5 batches of 1000
        // bytes, at batches 5, 10, ..., 95.
        assert_eq!(entries.len(), 19);
        assert_eq!(entries[0], OffsetEntry { relative_offset: 50, position: 5000 });
        let times = segment.time_index.as_ref().unwrap().entries().to_vec();
        assert_eq!(times.len(), 19);
        assert_eq!(
            times[0],
            TimeEntry { max_timestamp: 5004, relative_offset: 50, position: 5000 }
        );
        segment.push_close_entry();
        let last = *segment.time_index.as_ref().unwrap().last().unwrap();
        assert_eq!(
            last,
            TimeEntry { max_timestamp: 5099, relative_offset: 1000, position: 100_000 }
        );
    }
}
