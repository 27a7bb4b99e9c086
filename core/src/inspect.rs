//! Offline inspection of a data directory: its topics, partitions and segments as stored, and
//! optionally a verification of every byte the engine relies on. `tidelog inspect` is a thin
//! printer over [`inspect`]; tests use the same structured [`InspectReport`].
//!
//! It runs without an engine: no shard threads, a storage of its own (the backend
//! `InspectOptions::io` picks), reads only.
//! It takes the directory lock first, so it refuses ([`Error::DirectoryInUse`]) a directory an
//! engine has open rather than read files that are being written. (Taking the lock creates the
//! `LOCK` file if it is missing; nothing else is written.)
//!
//! # What is checked
//!
//! Listing ([`InspectOptions::verify`] off) reads only what it needs: each topic's
//! `topic.meta`, the close entry of each closed segment, and the tail of each active segment
//! (scanned from its last time-index entry, as recovery does). `verify` adds, per partition,
//! oldest segment first:
//!
//! - every batch of every log: header, length, CRC-32C, every record, and offset continuity
//!   within the segment ([`scan_log`], the scan recovery uses);
//! - continuity across segments: each segment begins at the offset where the one before it
//!   ends;
//! - every offset-index entry points at a batch boundary whose batch starts at the entry's
//!   offset;
//! - every time-index entry points at a batch boundary with the entry's offset (or, for a close
//!   entry, at the end of the data) and its timestamp bounds every record before it;
//! - index headers and entry checksums (a loaded index stops at the first bad entry);
//! - the close entry of every closed segment: it ends at the next segment's base offset, at the
//!   end of the log file, with the segment's largest timestamp;
//! - each topic's `topic.meta`: both checksums, the archive, its name and its configuration.
//!
//! # Defects and warnings
//!
//! A [`Defect`] is damage no crash explains: bytes the engine synced (or trusts without a
//! scan) that do not verify. Inspection stops at the first one and reports it in
//! [`InspectReport::defect`], with the file, the byte position and what is wrong.
//!
//! A [`Warning`] is a state a crash legitimately leaves and the next open repairs
//! (`partition/recovery.rs`): a torn or zero-filled tail on the active segment, index entries
//! the crash left pointing past the surviving log, a closed segment whose close did not finish,
//! unsynced index tails of the active segment, leftover temporary files. With
//! [`InspectOptions::strict`] every warning is a defect instead.
//!
//! One heuristic: an invalid batch (or one with the wrong base offset, which the CRC does not
//! cover) in the active segment is a torn tail only if nothing valid follows it. If a batch
//! that validates, with a later offset, starts right after it, the bytes were damaged in place
//! — recovery would still cut there, losing the records after it — and that is a defect.
//! (Stale batches in a recycled file have *earlier* offsets, so they remain a tail.)

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use tidelog_io::{FileId, OpenOptions, Storage};

use crate::config::{IoChoice, TopicConfig};
use crate::error::{Error, Result};
use crate::partition::{SPARE_FILLING, SPARE_READY};
use crate::record::{BATCH_HEADER_SIZE, BatchView, LOG_OVERHEAD};
use crate::segment::index::{HEADER_SIZE, Index, IndexDamage, IndexEntry, OffsetEntry, TimeEntry};
use crate::segment::scan::{ScanEnd, ScanStop, ScannedBatch, scan_log};
use crate::segment::{self, NO_TIMESTAMP, SegmentFile};
use crate::topic::{TOPIC_META_FILE, TopicMeta};

/// Directory under the data directory holding one directory per topic (as in `engine.rs`).
const TOPICS_DIR: &str = "topics";
/// Directory where deleted topics wait to be removed (as in `engine.rs`).
const TRASH_DIR: &str = "trash";

/// `topic.meta` layout (`topic.rs`): a 24-byte header — magic (8 bytes), version (2),
/// reserved (2), payload length (4), payload CRC (4), header CRC of bytes 0..20 (4) — then the
/// payload. Used only to say *where* a decode failure lies.
const META_HEADER_SIZE: usize = 24;
const META_VERSION_AT: u64 = 8;
const META_HEADER_CRC_AT: usize = 20;

/// What to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InspectOptions {
    /// Read and check every batch and index entry (see the module documentation).
    pub verify: bool,
    /// Treat every warning as a defect.
    pub strict: bool,
    /// The I/O backend to read with.
    pub io: IoChoice,
}

/// Damage found: the file, the byte position in it, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Defect {
    /// The damaged file (or directory).
    pub path: PathBuf,
    /// Byte position of the damage in the file (0 when it concerns the file as a whole).
    pub position: u64,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for Defect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}: {}", self.path.display(), self.position, self.reason)
    }
}

/// A state a crash legitimately leaves, which the next open repairs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// The file (or directory) concerned.
    pub path: PathBuf,
    /// Byte position, when the warning is about a place in the file.
    pub position: Option<u64>,
    /// What was found and what the next open does about it.
    pub reason: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(position) => {
                write!(f, "{} at byte {position}: {}", self.path.display(), self.reason)
            }
            None => write!(f, "{}: {}", self.path.display(), self.reason),
        }
    }
}

/// One segment as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentReport {
    /// The log file.
    pub path: PathBuf,
    /// Offset of the first record.
    pub base_offset: u64,
    /// One past the offset of the last valid record.
    pub next_offset: u64,
    /// Bytes of valid batch data (the end of the last valid batch).
    pub size_bytes: u64,
    /// Length of the log file (larger than `size_bytes` by a torn tail or padding).
    pub file_len_bytes: u64,
    /// Largest record timestamp (Unix ms), or -1 if none.
    pub max_timestamp: i64,
    /// True for the last segment, the one an engine writes to.
    pub active: bool,
    /// For a closed segment: its time index ends with a valid close entry.
    pub closed_cleanly: bool,
    /// Batches read, when every batch was scanned (`verify`).
    pub batch_count: Option<u64>,
    /// Valid entries in the offset index.
    pub offset_index_entries: usize,
    /// Valid entries in the time index (with the close entry).
    pub time_index_entries: usize,
}

impl SegmentReport {
    /// Records in the segment (offsets are dense).
    pub fn record_count(&self) -> u64 {
        self.next_offset - self.base_offset
    }
}

/// One partition as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionReport {
    /// Partition number.
    pub partition: u32,
    /// The partition directory.
    pub path: PathBuf,
    /// First retained offset (the oldest segment's base).
    pub log_start_offset: u64,
    /// One past the last valid offset.
    pub next_offset: u64,
    /// Segments, oldest first; the last is active.
    pub segments: Vec<SegmentReport>,
}

impl PartitionReport {
    /// Bytes of valid batch data.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size_bytes).sum()
    }
    /// Records retained.
    pub fn record_count(&self) -> u64 {
        self.segments.iter().map(SegmentReport::record_count).sum()
    }
}

/// One topic as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicReport {
    /// Topic name.
    pub name: String,
    /// The topic directory.
    pub path: PathBuf,
    /// Unique topic id.
    pub id: u64,
    /// Creation time (Unix ms).
    pub created_ms: i64,
    /// Configuration from `topic.meta`.
    pub config: TopicConfig,
    /// Partitions inspected, in order (missing directories are warnings).
    pub partitions: Vec<PartitionReport>,
}

/// Everything [`inspect`] found. When it stopped at a defect, the reports hold what was
/// inspected up to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InspectReport {
    /// The data directory.
    pub dir: PathBuf,
    /// The options it ran with.
    pub options: InspectOptions,
    /// Topics, by name.
    pub topics: Vec<TopicReport>,
    /// Repairable states found, in the order found.
    pub warnings: Vec<Warning>,
    /// The first defect; inspection stopped there.
    pub defect: Option<Defect>,
}

impl InspectReport {
    /// True when no defect was found.
    pub fn is_clean(&self) -> bool {
        self.defect.is_none()
    }
}

/// Inspect the data directory `dir` offline. Returns `Err` only when inspection itself could
/// not proceed — the directory is missing, in use ([`Error::DirectoryInUse`]) or unreadable;
/// damage is reported in the [`InspectReport`].
pub fn inspect(dir: &Path, options: InspectOptions) -> Result<InspectReport> {
    let mut storage = crate::config::EngineConfig::default()
        .io(options.io)
        .storage_factory()?
        .create()
        .map_err(|e| Error::io("create storage", dir, e))?;
    let meta = storage.metadata(dir).map_err(|e| Error::io("open", dir, e))?;
    if !meta.is_dir {
        return Err(Error::io("open", dir, io::Error::from(io::ErrorKind::NotADirectory)));
    }
    let _lock = storage.lock_dir(dir).map_err(|e| match e.kind() {
        io::ErrorKind::WouldBlock => Error::DirectoryInUse { path: dir.to_path_buf() },
        _ => Error::io("lock", dir.join("LOCK"), e),
    })?;
    let mut inspector = Inspector { storage, options, warnings: Vec::new() };
    let mut report = InspectReport {
        dir: dir.to_path_buf(),
        options,
        topics: Vec::new(),
        warnings: Vec::new(),
        defect: None,
    };
    let outcome = inspector.run(dir, &mut report.topics);
    report.warnings = inspector.warnings;
    match outcome {
        Ok(()) => Ok(report),
        Err(Stop::Defect(defect)) => {
            report.defect = Some(defect);
            Ok(report)
        }
        Err(Stop::Failed(err)) => Err(err),
    }
}

/// Why inspection stopped early.
enum Stop {
    Defect(Defect),
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(err: Error) -> Self {
        Stop::Failed(err)
    }
}

type Step<T> = std::result::Result<T, Stop>;

fn defect(path: impl Into<PathBuf>, position: u64, reason: impl Into<String>) -> Stop {
    Stop::Defect(Defect { path: path.into(), position, reason: reason.into() })
}

/// Names in a partition directory that recovery removes: leftovers of interrupted writes (as
/// in `partition/recovery.rs`).
fn is_leftover(name: &str) -> bool {
    name.ends_with(".tmp") || name.ends_with(".deleted")
}

/// Where in a `topic.meta` file the damage that [`TopicMeta::decode`] reported lies.
fn meta_damage_position(bytes: &[u8]) -> u64 {
    if bytes.len() < META_HEADER_SIZE {
        return 0;
    }
    let stored = u32::from_le_bytes([
        bytes[META_HEADER_CRC_AT],
        bytes[META_HEADER_CRC_AT + 1],
        bytes[META_HEADER_CRC_AT + 2],
        bytes[META_HEADER_CRC_AT + 3],
    ]);
    if stored != crc32c::crc32c(&bytes[..META_HEADER_CRC_AT]) {
        return 0;
    }
    // The header is intact: the version or the payload is what decode rejected.
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version != 1 { META_VERSION_AT } else { META_HEADER_SIZE as u64 }
}

/// An index file as loaded: its valid entries and the first problem, if any.
struct LoadedIndex<E: IndexEntry> {
    index: Index<E>,
    /// `(position, reason)` of the first problem.
    problem: Option<(u64, String)>,
}

impl<E: IndexEntry> LoadedIndex<E> {
    fn load(base: u64, bytes: Option<&[u8]>) -> Self {
        let Some(bytes) = bytes else {
            return Self { index: Index::new(base), problem: Some((0, "file missing".into())) };
        };
        let (index, damage) = Index::<E>::load(base, bytes);
        let problem = damage.map(|damage| match damage {
            IndexDamage::BadHeader => (
                0,
                format!(
                    "bad header: wrong magic, version, entry size or base offset {base}, or checksum mismatch"
                ),
            ),
            IndexDamage::BadEntry { position } => (
                position,
                "entry fails its checksum or does not follow the entry before it".to_string(),
            ),
            IndexDamage::PartialEntry { position } => (
                position,
                format!(
                    "file ends inside an entry ({} of {} bytes)",
                    bytes.len() as u64 - position,
                    E::SIZE
                ),
            ),
        });
        Self { index, problem }
    }
}

/// Byte position of entry `i` in an index file.
fn entry_position<E: IndexEntry>(i: usize) -> u64 {
    (HEADER_SIZE + i * E::SIZE) as u64
}

/// Checks index entries against the batches a scan finds, in one pass (entries are sorted by
/// position: loading guarantees it).
struct EntryCheck<'a> {
    base: u64,
    offset_path: &'a Path,
    time_path: &'a Path,
    offsets: &'a [OffsetEntry],
    times: &'a [TimeEntry],
    next_offset_entry: usize,
    next_time_entry: usize,
    /// Largest timestamp of the batches before the current one.
    max_before: i64,
    batches: u64,
    first: Option<Defect>,
}

impl<'a> EntryCheck<'a> {
    fn new(
        base: u64,
        offset_path: &'a Path,
        time_path: &'a Path,
        offsets: &'a [OffsetEntry],
        times: &'a [TimeEntry],
    ) -> Self {
        Self {
            base,
            offset_path,
            time_path,
            offsets,
            times,
            next_offset_entry: 0,
            next_time_entry: 0,
            max_before: NO_TIMESTAMP,
            batches: 0,
            first: None,
        }
    }

    fn note(&mut self, path: &Path, position: u64, reason: String) {
        if self.first.is_none() {
            self.first = Some(Defect { path: path.to_path_buf(), position, reason });
        }
    }

    /// Check the entries at or before the batch at `batch.position`.
    fn on_batch(&mut self, batch: &ScannedBatch) {
        self.entries_up_to(batch.position, Some(batch.base_offset));
        self.max_before = self.max_before.max(batch.max_timestamp);
        self.batches += 1;
    }

    /// Check entries at positions up to `position`; the batch there (if any) starts at
    /// `offset`.
    fn entries_up_to(&mut self, position: u64, offset: Option<u64>) {
        while let Some(&entry) = self.offsets.get(self.next_offset_entry) {
            let at = u64::from(entry.position);
            if at > position || (at == position && offset.is_none()) {
                break;
            }
            let file_at = entry_position::<OffsetEntry>(self.next_offset_entry);
            let wanted = self.base + u64::from(entry.relative_offset);
            if at != position {
                self.note(
                    self.offset_path,
                    file_at,
                    format!(
                        "entry for offset {wanted} points at byte {at} of the log, which is not a batch boundary"
                    ),
                );
            } else if offset != Some(wanted) {
                self.note(
                    self.offset_path,
                    file_at,
                    format!(
                        "entry says offset {wanted} is at byte {at}, but the batch there starts at offset {}",
                        offset.unwrap_or_default()
                    ),
                );
            }
            self.next_offset_entry += 1;
        }
        while let Some(&entry) = self.times.get(self.next_time_entry) {
            let at = u64::from(entry.position);
            if at > position || (at == position && offset.is_none()) {
                break;
            }
            let file_at = entry_position::<TimeEntry>(self.next_time_entry);
            self.check_time_entry(entry, file_at, at == position, offset);
            self.next_time_entry += 1;
        }
    }

    fn check_time_entry(
        &mut self,
        entry: TimeEntry,
        file_at: u64,
        at_boundary: bool,
        offset: Option<u64>,
    ) {
        let at = u64::from(entry.position);
        let wanted = self.base + u64::from(entry.relative_offset);
        if !at_boundary {
            self.note(
                self.time_path,
                file_at,
                format!(
                    "entry for offset {wanted} points at byte {at} of the log, which is not a batch boundary"
                ),
            );
        } else if offset != Some(wanted) {
            self.note(
                self.time_path,
                file_at,
                format!(
                    "entry says offset {wanted} is at byte {at}, but the batch there starts at offset {}",
                    offset.unwrap_or_default()
                ),
            );
        } else if entry.max_timestamp < self.max_before {
            self.note(
                self.time_path,
                file_at,
                format!(
                    "entry's timestamp {} is below {}, the largest timestamp of the records before it",
                    entry.max_timestamp, self.max_before
                ),
            );
        }
    }

    /// After the scan ended at `end`: entries inside the data must have matched a batch; time
    /// entries at the end of the data are close entries. Returns the entries past the end
    /// of the data as `(path, file position, reason)`: the caller decides what they mean.
    fn finish(&mut self, end: &ScanEnd) -> Vec<(PathBuf, u64, String)> {
        // Entries strictly inside the data that no batch matched.
        self.entries_up_to(end.position, None);
        while let Some(&entry) = self.times.get(self.next_time_entry) {
            if u64::from(entry.position) != end.position {
                break;
            }
            let file_at = entry_position::<TimeEntry>(self.next_time_entry);
            self.check_time_entry(entry, file_at, true, Some(end.next_offset));
            self.next_time_entry += 1;
        }
        let mut beyond = Vec::new();
        if self.next_offset_entry < self.offsets.len() {
            beyond.push((
                self.offset_path.to_path_buf(),
                entry_position::<OffsetEntry>(self.next_offset_entry),
                format!(
                    "{} entr(ies) point at or past byte {}, the end of the valid log data",
                    self.offsets.len() - self.next_offset_entry,
                    end.position
                ),
            ));
        }
        if self.next_time_entry < self.times.len() {
            beyond.push((
                self.time_path.to_path_buf(),
                entry_position::<TimeEntry>(self.next_time_entry),
                format!(
                    "{} entr(ies) point past byte {}, the end of the valid log data",
                    self.times.len() - self.next_time_entry,
                    end.position
                ),
            ));
        }
        beyond
    }
}

struct Inspector {
    storage: Box<dyn Storage>,
    options: InspectOptions,
    warnings: Vec<Warning>,
}

/// What inspecting one segment tells the partition.
struct SegmentOutcome {
    report: SegmentReport,
    /// The segment ends before the next one begins (an interrupted close): recovery drops the
    /// later segments, so continuity into the next is not a defect.
    ends_early: bool,
}

impl Inspector {
    fn warn(&mut self, path: &Path, position: Option<u64>, reason: impl Into<String>) -> Step<()> {
        let reason = reason.into();
        if self.options.strict {
            return Err(defect(path, position.unwrap_or(0), format!("{reason} (--strict)")));
        }
        self.warnings.push(Warning { path: path.to_path_buf(), position, reason });
        Ok(())
    }

    fn list(&mut self, dir: &Path) -> Step<Vec<tidelog_io::DirEntry>> {
        Ok(self.storage.read_dir(dir).map_err(|e| Error::io("list", dir, e))?)
    }

    fn read_optional(&mut self, path: &Path) -> Step<Option<Vec<u8>>> {
        match tidelog_io::storage::read_file(&mut *self.storage, path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(Error::io("read", path, err).into()),
        }
    }

    fn read_at(&mut self, file: FileId, path: &Path, position: u64, len: usize) -> Step<Vec<u8>> {
        Ok(tidelog_io::storage::read_at(&mut *self.storage, file, position, len)
            .map_err(|e| Error::io("read", path, e))?)
    }

    fn run(&mut self, dir: &Path, topics: &mut Vec<TopicReport>) -> Step<()> {
        let topics_dir = dir.join(TOPICS_DIR);
        match self.storage.metadata(&topics_dir) {
            Ok(meta) if meta.is_dir => {}
            Ok(_) => return Err(defect(&topics_dir, 0, "is not a directory")),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return self.warn(
                    dir,
                    None,
                    "no topics directory: not a tidelog data directory, or one no engine has opened yet",
                );
            }
            Err(err) => return Err(Error::io("stat", &topics_dir, err).into()),
        }
        let trash_dir = dir.join(TRASH_DIR);
        if self.storage.metadata(&trash_dir).is_ok_and(|m| m.is_dir)
            && !self.list(&trash_dir)?.is_empty()
        {
            self.warn(
                &trash_dir,
                None,
                "deleted topics not yet removed; the next open removes them",
            )?;
        }
        for entry in self.list(&topics_dir)? {
            let path = topics_dir.join(&entry.name);
            if !entry.is_dir {
                self.warn(&path, None, "unexpected file in the topics directory")?;
                continue;
            }
            self.inspect_topic(&path, &entry.name, topics)?;
        }
        Ok(())
    }

    fn inspect_topic(&mut self, dir: &Path, name: &str, topics: &mut Vec<TopicReport>) -> Step<()> {
        let meta_path = dir.join(TOPIC_META_FILE);
        let Some(bytes) = self.read_optional(&meta_path)? else {
            return self.warn(
                dir,
                None,
                "no topic.meta: the topic's creation was interrupted; the next open removes this directory",
            );
        };
        let meta = TopicMeta::decode(&bytes)
            .map_err(|reason| defect(&meta_path, meta_damage_position(&bytes), reason))?;
        if meta.name != name {
            return Err(defect(
                &meta_path,
                META_HEADER_SIZE as u64,
                format!("names topic {:?}, but lives in directory {name:?}", meta.name),
            ));
        }
        let config = meta.config();
        config
            .validate()
            .map_err(|err| defect(&meta_path, META_HEADER_SIZE as u64, err.to_string()))?;
        let mut present = BTreeSet::new();
        for entry in self.list(dir)? {
            let path = dir.join(&entry.name);
            if entry.is_dir {
                match entry.name.parse::<u32>() {
                    Ok(n) if n < config.partitions && n.to_string() == entry.name => {
                        present.insert(n);
                    }
                    _ => self.warn(&path, None, "unexpected directory in a topic directory")?,
                }
            } else if entry.name == TOPIC_META_FILE {
            } else if is_leftover(&entry.name) {
                self.warn(&path, None, "leftover of an interrupted metadata write")?;
            } else {
                self.warn(&path, None, "unexpected file in a topic directory")?;
            }
        }
        topics.push(TopicReport {
            name: name.to_string(),
            path: dir.to_path_buf(),
            id: meta.id,
            created_ms: meta.created_ms,
            config: config.clone(),
            partitions: Vec::new(),
        });
        let Some(report) = topics.last_mut() else { unreachable!("a topic was just pushed") };
        for partition in 0..config.partitions {
            let path = dir.join(partition.to_string());
            if present.contains(&partition) {
                self.inspect_partition(&path, partition, &mut report.partitions)?;
            } else {
                self.warn(
                    &path,
                    None,
                    "partition directory missing; the next open creates it empty",
                )?;
            }
        }
        Ok(())
    }

    fn inspect_partition(
        &mut self,
        dir: &Path,
        partition: u32,
        out: &mut Vec<PartitionReport>,
    ) -> Step<()> {
        let mut logs = Vec::new();
        let mut indexes = Vec::new();
        for entry in self.list(dir)? {
            let path = dir.join(&entry.name);
            if entry.is_dir {
                self.warn(&path, None, "unexpected directory in a partition directory")?;
                continue;
            }
            match segment::parse_file_name(&entry.name) {
                Some(SegmentFile::Log(base)) => logs.push(base),
                Some(SegmentFile::OffsetIndex(base) | SegmentFile::TimeIndex(base)) => {
                    indexes.push((base, path))
                }
                // The next segment, prepared ahead of the writer (or being prepared): part of
                // a partition's normal state, holding no records yet.
                None if entry.name == SPARE_READY || entry.name == SPARE_FILLING => {}
                None if is_leftover(&entry.name) => self.warn(
                    &path,
                    None,
                    "leftover of an interrupted write; the next open removes it",
                )?,
                None => self.warn(&path, None, "unexpected file in a partition directory")?,
            }
        }
        logs.sort_unstable();
        for (base, path) in indexes {
            if logs.binary_search(&base).is_err() {
                self.warn(
                    &path,
                    None,
                    "index without its log (an interrupted segment deletion); the next open removes it",
                )?;
            }
        }
        let start = logs.first().copied().unwrap_or(0);
        out.push(PartitionReport {
            partition,
            path: dir.to_path_buf(),
            log_start_offset: start,
            next_offset: start,
            segments: Vec::new(),
        });
        let Some(report) = out.last_mut() else { unreachable!("a partition was just pushed") };
        let mut expected_base: Option<u64> = None;
        for (i, &base) in logs.iter().enumerate() {
            if let Some(expected) = expected_base
                && expected != base
            {
                return Err(defect(
                    segment::log_path(dir, base),
                    0,
                    format!(
                        "segment begins at offset {base}, but the segment before it ends at offset {expected}"
                    ),
                ));
            }
            let outcome = self.inspect_segment(dir, base, logs.get(i + 1).copied())?;
            expected_base = (!outcome.ends_early).then_some(outcome.report.next_offset);
            report.next_offset = outcome.report.next_offset;
            report.segments.push(outcome.report);
        }
        Ok(())
    }

    fn inspect_segment(
        &mut self,
        dir: &Path,
        base: u64,
        next_base: Option<u64>,
    ) -> Step<SegmentOutcome> {
        let log_path = segment::log_path(dir, base);
        let log = self
            .storage
            .open(&log_path, OpenOptions::read_only())
            .map_err(|e| Error::io("open", &log_path, e))?;
        let outcome = self.inspect_open_segment(dir, base, next_base, log, &log_path);
        let _ = self.storage.close(log);
        outcome
    }

    fn inspect_open_segment(
        &mut self,
        dir: &Path,
        base: u64,
        next_base: Option<u64>,
        log: FileId,
        log_path: &Path,
    ) -> Step<SegmentOutcome> {
        let offset_path = segment::offset_index_path(dir, base);
        let time_path = segment::time_index_path(dir, base);
        let log_len = self.storage.file_len(log).map_err(|e| Error::io("stat", log_path, e))?;
        let offset_bytes = self.read_optional(&offset_path)?;
        let time_bytes = self.read_optional(&time_path)?;
        let offsets = LoadedIndex::<OffsetEntry>::load(base, offset_bytes.as_deref());
        let times = LoadedIndex::<TimeEntry>::load(base, time_bytes.as_deref());
        let mut report = SegmentReport {
            path: log_path.to_path_buf(),
            base_offset: base,
            next_offset: base,
            size_bytes: 0,
            file_len_bytes: log_len,
            max_timestamp: NO_TIMESTAMP,
            active: next_base.is_none(),
            closed_cleanly: false,
            batch_count: None,
            offset_index_entries: offsets.index.entries().len(),
            time_index_entries: times.index.entries().len(),
        };
        let files =
            SegmentFiles { log, log_path, offset_path: &offset_path, time_path: &time_path };
        let Some(next_base) = next_base else {
            self.inspect_active(&files, &offsets, &times, &mut report)?;
            return Ok(SegmentOutcome { report, ends_early: false });
        };
        // The close entry as recovery reads it (`check_close_entry`): the last whole entry of
        // the time index file, valid, ending at the next segment's base, within the log.
        let last_entry = time_bytes.as_deref().and_then(|bytes| {
            let len = bytes.len();
            (len >= HEADER_SIZE + TimeEntry::SIZE)
                .then(|| TimeEntry::decode(base, &bytes[len - TimeEntry::SIZE..]))
                .flatten()
        });
        let close = last_entry
            .filter(|e| base + u64::from(e.relative_offset) == next_base)
            .filter(|e| log_len >= u64::from(e.position));
        if let Some(entry) = last_entry
            && close.is_none()
            && u64::from(entry.position) == log_len
            && entry.relative_offset > 0
        {
            // A close entry (it ends exactly at the end of the log) for a segment that ends
            // somewhere other than where the next begins: a segment is missing or overlaps.
            // Recovery would take it for an interrupted close and drop the later segments.
            let end = base + u64::from(entry.relative_offset);
            return Err(defect(
                segment::log_path(dir, next_base),
                0,
                format!(
                    "segment begins at offset {next_base}, but the segment before it ends at offset {end} (its close entry)"
                ),
            ));
        }
        match close {
            Some(close) => {
                let close_at = time_bytes.as_deref().map_or(0, |b| b.len() - TimeEntry::SIZE);
                self.inspect_closed(&files, &offsets, &times, close, close_at as u64, &mut report)?;
                Ok(SegmentOutcome { report, ends_early: false })
            }
            None => {
                let ends_early =
                    self.inspect_unclosed(&files, &offsets, &times, next_base, &mut report)?;
                Ok(SegmentOutcome { report, ends_early })
            }
        }
    }

    /// Report index damage: a defect where the index was synced, else a warning.
    fn index_problems(
        &mut self,
        files: &SegmentFiles<'_>,
        offsets: &LoadedIndex<OffsetEntry>,
        times: &LoadedIndex<TimeEntry>,
        synced: bool,
    ) -> Step<()> {
        for (path, problem) in
            [(files.offset_path, &offsets.problem), (files.time_path, &times.problem)]
        {
            let Some((position, reason)) = problem else { continue };
            if synced {
                return Err(defect(path, *position, reason.clone()));
            }
            self.warn(
                path,
                Some(*position),
                format!("{reason}; index writes of an unclosed segment are not synced, and the next open rebuilds it"),
            )?;
        }
        Ok(())
    }

    /// Scan a log from `start` (a batch boundary and the offset of the batch there) to
    /// `limit`, feeding `check` (when scanning from the start, to check index entries).
    /// Returns where the scan ended and the largest batch timestamp it saw.
    fn scan(
        &mut self,
        files: &SegmentFiles<'_>,
        start: (u64, u64),
        limit: u64,
        mut check: Option<&mut EntryCheck<'_>>,
    ) -> Step<(ScanEnd, i64)> {
        let (position, offset) = start;
        let storage = &mut *self.storage;
        let log = files.log;
        let mut max_timestamp = NO_TIMESTAMP;
        let end = scan_log(
            |at, len| tidelog_io::storage::read_at(storage, log, at, len),
            files.log_path,
            position,
            offset,
            limit,
            |_: &BatchView<'_>, batch| {
                max_timestamp = max_timestamp.max(batch.max_timestamp);
                if let Some(check) = check.as_deref_mut() {
                    check.on_batch(&batch);
                }
            },
        )?;
        Ok((end, max_timestamp))
    }

    fn inspect_closed(
        &mut self,
        files: &SegmentFiles<'_>,
        offsets: &LoadedIndex<OffsetEntry>,
        times: &LoadedIndex<TimeEntry>,
        close: TimeEntry,
        close_at: u64,
        report: &mut SegmentReport,
    ) -> Step<()> {
        let base = report.base_offset;
        let data_end = u64::from(close.position);
        let next = base + u64::from(close.relative_offset);
        // Closing synced the log and both indexes: damage in them is not a crash's doing.
        self.index_problems(files, offsets, times, true)?;
        if report.file_len_bytes > data_end {
            return Err(defect(
                files.log_path,
                data_end,
                format!(
                    "{} bytes follow the end of the data ({data_end} bytes, per the close entry) in a closed segment",
                    report.file_len_bytes - data_end
                ),
            ));
        }
        report.next_offset = next;
        report.size_bytes = data_end;
        report.max_timestamp = close.max_timestamp;
        report.closed_cleanly = true;
        if !self.options.verify {
            return Ok(());
        }
        let mut check = EntryCheck::new(
            base,
            files.offset_path,
            files.time_path,
            offsets.index.entries(),
            times.index.entries(),
        );
        let (end, _) = self.scan(files, (0, base), data_end, Some(&mut check))?;
        if let Some(stop) = &end.stop {
            return Err(defect(files.log_path, end.position, stop.to_string()));
        }
        if end.next_offset != next {
            return Err(defect(
                files.log_path,
                end.position,
                format!(
                    "the data ends at offset {}, but the close entry says {next}",
                    end.next_offset
                ),
            ));
        }
        let beyond = check.finish(&end);
        if let Some(first) = check.first.take() {
            return Err(Stop::Defect(first));
        }
        if let Some((path, position, reason)) = beyond.into_iter().next() {
            return Err(defect(path, position, reason));
        }
        if check.max_before != close.max_timestamp {
            return Err(defect(
                files.time_path,
                close_at,
                format!(
                    "close entry records largest timestamp {}, but the batches' largest is {}",
                    close.max_timestamp, check.max_before
                ),
            ));
        }
        report.batch_count = Some(check.batches);
        Ok(())
    }

    /// A closed segment without a valid close entry: scanned whole, as recovery does. Returns
    /// true when it ends before the next segment begins.
    fn inspect_unclosed(
        &mut self,
        files: &SegmentFiles<'_>,
        offsets: &LoadedIndex<OffsetEntry>,
        times: &LoadedIndex<TimeEntry>,
        next_base: u64,
        report: &mut SegmentReport,
    ) -> Step<bool> {
        let base = report.base_offset;
        self.warn(
            files.time_path,
            None,
            "segment was not closed cleanly (its time index has no valid close entry); the next open verifies and repairs it",
        )?;
        self.index_problems(files, offsets, times, false)?;
        let mut check = EntryCheck::new(
            base,
            files.offset_path,
            files.time_path,
            offsets.index.entries(),
            times.index.entries(),
        );
        let verify = self.options.verify;
        let (end, max_timestamp) =
            self.scan(files, (0, base), report.file_len_bytes, verify.then_some(&mut check))?;
        report.next_offset = end.next_offset;
        report.size_bytes = end.position;
        report.max_timestamp = max_timestamp;
        if end.next_offset > next_base {
            return Err(defect(
                files.log_path,
                end.position,
                format!(
                    "segment holds offsets up to {}, overlapping the next segment, which begins at {next_base}",
                    end.next_offset - 1
                ),
            ));
        }
        let mut ends_early = false;
        if end.next_offset < next_base {
            let why =
                end.stop.as_ref().map_or_else(|| "end of file".to_string(), ScanStop::to_string);
            self.warn(
                files.log_path,
                Some(end.position),
                format!(
                    "{why}: the segment ends at offset {}, before the next segment's base {next_base}; the next open drops the segments from offset {next_base} on",
                    end.next_offset
                ),
            )?;
            ends_early = true;
        } else if end.position < report.file_len_bytes {
            self.warn(
                files.log_path,
                Some(end.position),
                format!(
                    "{} bytes follow the last batch; the next open cuts them",
                    report.file_len_bytes - end.position
                ),
            )?;
        }
        if verify {
            let beyond = check.finish(&end);
            if let Some(first) = check.first.take() {
                return Err(Stop::Defect(first));
            }
            for (path, position, reason) in beyond {
                self.warn(&path, Some(position), format!("{reason}; the next open drops them"))?;
            }
            report.batch_count = Some(check.batches);
        }
        Ok(ends_early)
    }

    fn inspect_active(
        &mut self,
        files: &SegmentFiles<'_>,
        offsets: &LoadedIndex<OffsetEntry>,
        times: &LoadedIndex<TimeEntry>,
        report: &mut SegmentReport,
    ) -> Step<()> {
        let base = report.base_offset;
        let file_len = report.file_len_bytes;
        self.index_problems(files, offsets, times, false)?;
        let mut beyond = Vec::new();
        let end = if self.options.verify {
            let mut check = EntryCheck::new(
                base,
                files.offset_path,
                files.time_path,
                offsets.index.entries(),
                times.index.entries(),
            );
            let (end, max_timestamp) = self.scan(files, (0, base), file_len, Some(&mut check))?;
            beyond = check.finish(&end);
            if let Some(first) = check.first.take() {
                return Err(Stop::Defect(first));
            }
            report.batch_count = Some(check.batches);
            report.max_timestamp = max_timestamp;
            end
        } else {
            // As recovery does: start from the last time-index entry, whose timestamp bounds
            // everything before it; if it points at no valid batch, start over from 0.
            let mut found = None;
            if let Some(entry) = times.index.last().filter(|e| u64::from(e.position) <= file_len) {
                let start = (u64::from(entry.position), base + u64::from(entry.relative_offset));
                let (end, max_timestamp) = self.scan(files, start, file_len, None)?;
                let pointed_at_nothing =
                    start.0 > 0 && end.position == start.0 && end.stop.is_some();
                if !pointed_at_nothing {
                    found = Some((end, max_timestamp.max(entry.max_timestamp)));
                }
            }
            let (end, max_timestamp) = match found {
                Some(found) => found,
                None => self.scan(files, (0, base), file_len, None)?,
            };
            report.max_timestamp = max_timestamp;
            end
        };
        report.next_offset = end.next_offset;
        report.size_bytes = end.position;
        if end.position < file_len {
            self.tail(files, &end, file_len)?;
        }
        for (path, position, reason) in beyond {
            self.warn(
                &path,
                Some(position),
                format!("{reason} (left by a crash); the next open drops them"),
            )?;
        }
        Ok(())
    }

    /// Classify what follows the last valid batch of the active segment.
    fn tail(&mut self, files: &SegmentFiles<'_>, end: &ScanEnd, file_len: u64) -> Step<()> {
        let tail_len = file_len - end.position;
        let why = end.stop.as_ref().map_or_else(String::new, ScanStop::to_string);
        if self.all_zero(files, end.position, file_len)? {
            return self.warn(
                files.log_path,
                Some(end.position),
                format!(
                    "{tail_len} zero bytes follow the last batch (preparation padding or an unwritten tail); the next open cuts them"
                ),
            );
        }
        if let Some(ScanStop::Invalid(_) | ScanStop::OffsetGap { .. }) = &end.stop
            && let Some(next_at) = self.valid_batch_after(files, end, file_len)?
        {
            return Err(defect(
                files.log_path,
                end.position,
                format!(
                    "{why}; a valid batch follows at byte {next_at}, so this is damage, not a torn tail (recovery would cut the log here)"
                ),
            ));
        }
        self.warn(
            files.log_path,
            Some(end.position),
            format!(
                "torn tail: {why}; the next open cuts the log to {} bytes, discarding {tail_len}",
                end.position
            ),
        )
    }

    fn all_zero(&mut self, files: &SegmentFiles<'_>, from: u64, to: u64) -> Step<bool> {
        let chunk = crate::segment::scan::SCAN_CHUNK_BYTES as u64;
        let mut at = from;
        while at < to {
            let len = chunk.min(to - at) as usize;
            let bytes = self.read_at(files.log, files.log_path, at, len)?;
            if bytes.is_empty() {
                break;
            }
            if bytes.iter().any(|&b| b != 0) {
                return Ok(false);
            }
            at += bytes.len() as u64;
        }
        Ok(true)
    }

    /// If the batch that stopped the scan at `end.position` declares a plausible length and a
    /// batch that validates, with an offset later than the one expected there, starts right
    /// after it, its position.
    fn valid_batch_after(
        &mut self,
        files: &SegmentFiles<'_>,
        end: &ScanEnd,
        file_len: u64,
    ) -> Step<Option<u64>> {
        let header = self.read_at(files.log, files.log_path, end.position, LOG_OVERHEAD)?;
        let Some(length) = header
            .get(8..12)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(i32::from_be_bytes)
            .and_then(|l| u64::try_from(l).ok())
        else {
            return Ok(None);
        };
        let next_at = end.position + LOG_OVERHEAD as u64 + length;
        if length < (BATCH_HEADER_SIZE - LOG_OVERHEAD) as u64
            || next_at + BATCH_HEADER_SIZE as u64 > file_len
        {
            return Ok(None);
        }
        let prefix = self.read_at(files.log, files.log_path, next_at, LOG_OVERHEAD)?;
        let Some(next_length) = prefix
            .get(8..12)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(i32::from_be_bytes)
            .and_then(|l| u64::try_from(l).ok())
        else {
            return Ok(None);
        };
        let total = LOG_OVERHEAD as u64 + next_length;
        if next_at + total > file_len || total > u64::from(crate::limits::BATCH_SIZE_BYTES_MAX) {
            return Ok(None);
        }
        let bytes = self.read_at(files.log, files.log_path, next_at, total as usize)?;
        let follows = BatchView::parse(&bytes).is_ok_and(|batch| {
            batch.validate().is_ok() && batch.base_offset() > end.next_offset as i64
        });
        Ok(follows.then_some(next_at))
    }
}

/// The files of the segment being inspected.
struct SegmentFiles<'a> {
    log: FileId,
    log_path: &'a Path,
    offset_path: &'a Path,
    time_path: &'a Path,
}
