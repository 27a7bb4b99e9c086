//! Opening a partition: find its segments, check how each was left, and recover the active
//! one so that the log is exactly its longest valid prefix.
//!
//! - A closed segment whose time index ends with a valid close entry (its end offset is the
//!   next segment's base) was closed cleanly and is trusted without a scan.
//! - Any other closed segment is scanned batch by batch. If it reaches the next segment's base
//!   it is repaired (indexes rebuilt, close entry written). If it ends early, the crash came
//!   while it was closing: the segments after it can hold nothing acknowledged as durable
//!   (the durable prefix cannot cross a segment that has not finished closing), so they are
//!   removed and this segment becomes the active one.
//! - The active segment is scanned from its last index entry that agrees with the log; every
//!   batch after it is verified; the file is cut at the end of the last valid batch (removing
//!   a torn tail, stale bytes and preparation padding) and synced, and the indexes are
//!   rebuilt to match.

use std::path::Path;

use tidelog_io::{FileId, OpenOptions};

use crate::error::{Error, Result};
use crate::partition::Partition;
use crate::partition::io::ShardIo;
use crate::record::BatchView;
use crate::segment::index::{
    HEADER_SIZE, IndexEntry, OffsetIndex, TimeEntry, TimeIndex, encode_file,
};
use crate::segment::scan::{ScanEnd, scan_log};
use crate::segment::{self, NO_TIMESTAMP, Segment, SegmentFile};

/// Names in a partition directory that recovery removes: leftovers of interrupted writes.
fn is_leftover(name: &str) -> bool {
    name.ends_with(".tmp") || name.ends_with(".deleted")
}

/// Create a new, empty active segment at `base`: log and index files created (and the
/// directory synced, so the names survive a crash), index headers pending. `log` is a
/// prepared file already renamed to the log's name, if there is one. On failure every file
/// it opened (and `log`) is closed again: a failed creation leaves no descriptor behind.
pub(crate) fn create_segment(
    io: &mut ShardIo<'_>,
    dir: &Path,
    base: u64,
    log: Option<FileId>,
) -> Result<Segment> {
    let log_path = segment::log_path(dir, base);
    let offset_path = segment::offset_index_path(dir, base);
    let time_path = segment::time_index_path(dir, base);
    let log = match log {
        Some(log) => log,
        None => {
            let direct = io.settings.direct_io;
            let file = io
                .storage
                .open(&log_path, OpenOptions::create().direct(direct))
                .map_err(|e| Error::io("create", &log_path, e))?;
            if let Err(err) = io.storage.set_len(file, 0) {
                let _ = io.storage.close(file);
                return Err(Error::io("truncate", &log_path, err));
            }
            file
        }
    };
    let mut opened = vec![log];
    let files = open_empty(io, &offset_path)
        .inspect(|&file| opened.push(file))
        .and_then(|offset_file| Ok((offset_file, open_empty(io, &time_path)?)))
        .inspect(|&(_, time_file)| opened.push(time_file))
        .and_then(|files| {
            io.storage.sync_dir(dir).map_err(|e| Error::io("sync directory", dir, e))?;
            Ok(files)
        });
    let (offset_file, time_file) = match files {
        Ok(files) => files,
        Err(err) => {
            for file in opened {
                let _ = io.storage.close(file);
            }
            return Err(err);
        }
    };
    let mut segment = Segment::new(base);
    segment.log = Some(log);
    segment.index_files = Some((offset_file, time_file));
    segment.offset_index = Some(OffsetIndex::new(base));
    segment.time_index = Some(TimeIndex::new(base));
    Ok(segment)
}

fn open_empty(io: &mut ShardIo<'_>, path: &Path) -> Result<FileId> {
    let file =
        io.storage.open(path, OpenOptions::create()).map_err(|e| Error::io("create", path, e))?;
    if let Err(err) = io.storage.set_len(file, 0) {
        let _ = io.storage.close(file);
        return Err(Error::io("truncate", path, err));
    }
    Ok(file)
}

fn open_file(io: &mut ShardIo<'_>, path: &Path, options: OpenOptions) -> Result<FileId> {
    io.storage.open(path, options).map_err(|e| Error::io("open", path, e))
}

fn file_len(io: &mut ShardIo<'_>, file: FileId, path: &Path) -> Result<u64> {
    io.storage.file_len(file).map_err(|e| Error::io("stat", path, e))
}

/// Read a whole file that may not exist (`None`).
fn read_optional(io: &mut ShardIo<'_>, path: &Path) -> Result<Option<Vec<u8>>> {
    let file = match io.storage.open(path, OpenOptions::read_only()) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(Error::io("open", path, err)),
    };
    let result = file_len(io, file, path).and_then(|len| {
        io.read_now(file, 0, len as usize)
            .map(|buf| buf.to_vec())
            .map_err(|e| Error::io("read", path, e))
    });
    let _ = io.storage.close(file);
    result.map(Some)
}

/// Load a closed segment's offset and time indexes from their files. A damaged index is
/// rebuilt by scanning the log; a log that does not verify up to `end_offset` is corrupt.
pub(crate) fn load_closed_indexes(
    io: &mut ShardIo<'_>,
    dir: &Path,
    segment: &mut Segment,
) -> Result<()> {
    let base = segment.base_offset;
    let offset_bytes =
        read_optional(io, &segment::offset_index_path(dir, base))?.unwrap_or_default();
    let time_bytes = read_optional(io, &segment::time_index_path(dir, base))?.unwrap_or_default();
    let (offset_index, offset_damage) = OffsetIndex::load(base, &offset_bytes);
    let (time_index, time_damage) = TimeIndex::load(base, &time_bytes);
    let closes = time_index.last().is_some_and(|e| {
        base + u64::from(e.relative_offset) == segment.next_offset
            && u64::from(e.position) == segment.size_bytes
    });
    if offset_damage.is_none() && time_damage.is_none() && closes {
        segment.offset_index = Some(offset_index);
        segment.time_index = Some(time_index);
        return Ok(());
    }
    tracing::warn!(segment = %segment::log_path(dir, base).display(), "index damaged; rebuilding from the log");
    let log = ensure_log_open(io, dir, segment)?;
    let mut rebuilt = Segment::new(base);
    rebuilt.offset_index = Some(OffsetIndex::new(base));
    rebuilt.time_index = Some(TimeIndex::new(base));
    let path = segment::log_path(dir, base);
    let end = scan_into(io, log, &path, &mut rebuilt, segment.size_bytes)?;
    if end.next_offset == segment.next_offset {
        rebuilt.push_close_entry();
    } else {
        // Damaged: keep the indexes of the part that verified, so its batches stay readable;
        // a read from the damage on walks into it and fails naming it.
        let reason = end.stop.map_or_else(|| "log ends early".to_string(), |s| s.to_string());
        tracing::warn!(segment = %path.display(), position = end.position, %reason, "closed segment damaged; indexed up to the damage");
    }
    segment.offset_index = rebuilt.offset_index;
    segment.time_index = rebuilt.time_index;
    Ok(())
}

/// Open a segment's log for reading if it is not open yet.
pub(crate) fn ensure_log_open(
    io: &mut ShardIo<'_>,
    dir: &Path,
    segment: &mut Segment,
) -> Result<FileId> {
    if let Some(log) = segment.log {
        return Ok(log);
    }
    let log =
        open_file(io, &segment::log_path(dir, segment.base_offset), OpenOptions::read_only())?;
    segment.log = Some(log);
    Ok(log)
}

/// Scan `segment`'s log from its current end, noting every valid batch (which rebuilds its
/// indexes) up to `limit` bytes.
fn scan_into(
    io: &mut ShardIo<'_>,
    log: FileId,
    path: &Path,
    segment: &mut Segment,
    limit: u64,
) -> Result<ScanEnd> {
    let start = segment.size_bytes;
    let offset = segment.next_offset;
    let mut batches = Vec::new();
    let end = scan_log(
        |position, len| io.read_now(log, position, len),
        path,
        start,
        offset,
        limit,
        |_: &BatchView<'_>, batch| batches.push(batch),
    )?;
    for batch in batches {
        segment.note_batch(
            batch.position,
            batch.base_offset,
            batch.next_offset,
            batch.len,
            batch.max_timestamp,
        );
    }
    Ok(end)
}

impl Partition {
    /// Open (creating if new) the partition stored in `dir` and recover it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open(
        io: &mut ShardIo<'_>,
        topic: std::sync::Arc<str>,
        id: u32,
        shard: usize,
        dir: std::path::PathBuf,
        config: std::sync::Arc<crate::config::TopicConfig>,
        slot: u32,
    ) -> Result<Partition> {
        tidelog_io::storage::create_dir_all_durable(&mut *io.storage, &dir)
            .map_err(|e| Error::io("create directory", &dir, e))?;
        let segments = open_segments(io, &dir)?;
        let config_segment_size = config.segment_size_bytes;
        let tail_block = read_tail_block(io, &dir, segments.last().expect("at least one segment"))?;
        let spare = adopt_spare(io, &dir, config_segment_size)?;
        let active = segments.last().expect("open_segments returns at least one segment");
        let next = active.next_offset;
        let log_start = segments[0].base_offset;
        Ok(Partition {
            topic,
            id,
            shard,
            dir,
            config,
            slot,
            log_start_offset: log_start,
            next_offset: next,
            written_offset: next,
            durable_offset: next,
            active_synced_offset: next,
            segments,
            buffer: None,
            sealed: Default::default(),
            buffer_class: 0,
            writes: Default::default(),
            ops: Default::default(),
            next_seq: 0,
            sync_in_flight: false,
            closing: Default::default(),
            written_waiters: Default::default(),
            durable_waiters: Default::default(),
            parked: Vec::new(),
            failed: None,
            draining: false,
            sync_due: false,
            spare,
            prepare_failed: false,
            tail_block,
            stats: Default::default(),
            tail_cache: Default::default(),
            tail_cache_held: 0,
        })
    }
}

/// On a direct active log, the bytes of the partial block at the end of the data: the next
/// write rewrites that block with them.
fn read_tail_block(io: &mut ShardIo<'_>, dir: &Path, active: &Segment) -> Result<Vec<u8>> {
    let Some(log) = active.log.filter(|&log| io.storage.is_direct(log)) else {
        return Ok(Vec::new());
    };
    let start = tidelog_io::buffer::round_down_to_block(active.size_bytes);
    let len = (active.size_bytes - start) as usize;
    if len == 0 {
        return Ok(Vec::new());
    }
    let path = segment::log_path(dir, active.base_offset);
    let bytes = io.read_now(log, start, len).map_err(|e| Error::io("read", &path, e))?;
    if bytes.len() != len {
        return Err(Error::corrupt(path, start, "log shorter than its recovered data"));
    }
    Ok(bytes.to_vec())
}

/// Adopt a ready spare segment left by the previous run, if it has the right size.
fn adopt_spare(
    io: &mut ShardIo<'_>,
    dir: &Path,
    segment_size: u64,
) -> Result<Option<super::prepare::Spare>> {
    let path = dir.join(super::prepare::SPARE_READY);
    let file = match io.storage.open(&path, OpenOptions::read_write().direct(io.settings.direct_io))
    {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(Error::io("open", path, err)),
    };
    let len = file_len(io, file, &path)?;
    if len < segment_size {
        let _ = io.storage.close(file);
        io.storage.remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
        return Ok(None);
    }
    Ok(Some(super::prepare::Spare::ready(file, len)))
}

/// Find, check and recover the segments in `dir`; the last returned is active (open, with
/// indexes loaded and files synced).
fn open_segments(io: &mut ShardIo<'_>, dir: &Path) -> Result<Vec<Segment>> {
    let entries = io.storage.read_dir(dir).map_err(|e| Error::io("list", dir, e))?;
    let mut logs = Vec::new();
    let mut indexes = Vec::new();
    for entry in &entries {
        if entry.is_dir {
            continue;
        }
        match segment::parse_file_name(&entry.name) {
            Some(SegmentFile::Log(base)) => logs.push(base),
            Some(SegmentFile::OffsetIndex(base) | SegmentFile::TimeIndex(base)) => {
                indexes.push((base, entry.name.clone()))
            }
            None if entry.name == super::prepare::SPARE_READY => {}
            None if is_leftover(&entry.name) => {
                let path = dir.join(&entry.name);
                io.storage.remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
            }
            None => {
                tracing::warn!(file = %dir.join(&entry.name).display(), "unexpected file in partition directory")
            }
        }
    }
    logs.sort_unstable();
    // Index files without their log: left by an interrupted segment deletion.
    for (base, name) in indexes {
        if logs.binary_search(&base).is_err() {
            let path = dir.join(name);
            io.storage.remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
        }
    }
    if logs.is_empty() {
        return Ok(vec![create_segment(io, dir, 0, None)?]);
    }

    let mut segments: Vec<Segment> = Vec::with_capacity(logs.len());
    let mut active_at = logs.len() - 1;
    for i in 0..logs.len() - 1 {
        let (base, next_base) = (logs[i], logs[i + 1]);
        let mut segment = Segment::new(base);
        if check_close_entry(io, dir, &mut segment, next_base)? {
            segments.push(segment);
            continue;
        }
        // Not closed cleanly: verify the whole log.
        let path = segment::log_path(dir, base);
        let log = open_file(io, &path, OpenOptions::read_write())?;
        segment.log = Some(log);
        segment.offset_index = Some(OffsetIndex::new(base));
        segment.time_index = Some(TimeIndex::new(base));
        let len = file_len(io, log, &path)?;
        let end = scan_into(io, log, &path, &mut segment, len)?;
        if end.next_offset == next_base {
            tracing::warn!(segment = %path.display(), "segment was not closed cleanly; repaired");
            close_repaired(io, dir, &mut segment, len)?;
            segments.push(segment);
            continue;
        }
        // The crash came while this segment was closing: nothing after it was durable.
        tracing::warn!(
            segment = %path.display(),
            valid_through = end.next_offset,
            next_segment = next_base,
            reason = %end.stop.map_or_else(String::new, |s| s.to_string()),
            "segment ends before the next one begins; dropping the later segments",
        );
        let _ = io.storage.close(log);
        for &later in &logs[i + 1..] {
            remove_segment_files(io, dir, later)?;
        }
        io.storage.sync_dir(dir).map_err(|e| Error::io("sync directory", dir, e))?;
        active_at = i;
        break;
    }
    for segment in &mut segments {
        segment.written_bytes = segment.size_bytes;
        segment.synced_bytes = segment.size_bytes;
    }
    let active = recover_active(io, dir, logs[active_at])?;
    segments.push(active);
    // Make the directory as recovery leaves it durable: a segment file whose entry was never
    // synced (a roll that failed half-way) is now adopted, and what is appended to it may be
    // acknowledged durable; removed leftovers and rewritten indexes settle too.
    io.storage.sync_dir(dir).map_err(|e| Error::io("sync directory", dir, e))?;
    Ok(segments)
}

/// Read the last entry of a closed segment's time index; if it is a valid close entry for a
/// segment ending at `next_base` (and the log holds that many bytes), fill in the segment's
/// summary and return true.
fn check_close_entry(
    io: &mut ShardIo<'_>,
    dir: &Path,
    segment: &mut Segment,
    next_base: u64,
) -> Result<bool> {
    let base = segment.base_offset;
    let time_path = segment::time_index_path(dir, base);
    let file = match io.storage.open(&time_path, OpenOptions::read_only()) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(err) => return Err(Error::io("open", time_path, err)),
    };
    let len = file_len(io, file, &time_path);
    let entry = len.and_then(|len| {
        if len < (HEADER_SIZE + TimeEntry::SIZE) as u64 {
            return Ok(None);
        }
        let bytes = io
            .read_now(file, len - TimeEntry::SIZE as u64, TimeEntry::SIZE)
            .map_err(|e| Error::io("read", &time_path, e))?;
        Ok((bytes.len() == TimeEntry::SIZE).then(|| TimeEntry::decode(base, &bytes)).flatten())
    });
    let _ = io.storage.close(file);
    let Some(entry) = entry? else { return Ok(false) };
    if base + u64::from(entry.relative_offset) != next_base {
        return Ok(false);
    }
    let log_path = segment::log_path(dir, base);
    let log_len = io.storage.metadata(&log_path).map_err(|e| Error::io("stat", &log_path, e))?.len;
    if log_len < u64::from(entry.position) {
        return Ok(false);
    }
    segment.next_offset = next_base;
    segment.size_bytes = u64::from(entry.position);
    segment.max_timestamp = entry.max_timestamp;
    Ok(true)
}

/// Finish closing a segment found whole but without its close entry.
fn close_repaired(
    io: &mut ShardIo<'_>,
    dir: &Path,
    segment: &mut Segment,
    file_len: u64,
) -> Result<()> {
    let base = segment.base_offset;
    let log = segment.log.expect("repaired segment has its log open");
    let log_path = segment::log_path(dir, base);
    if file_len != segment.size_bytes {
        io.storage
            .set_len(log, segment.size_bytes)
            .map_err(|e| Error::io("truncate", &log_path, e))?;
    }
    rewrite_range(io, &log_path, 0, segment.size_bytes)?;
    io.sync_now(log).map_err(|e| Error::io("fdatasync", &log_path, e))?;
    segment.push_close_entry();
    rewrite_indexes(io, dir, segment)?;
    let _ = io.storage.close(log);
    segment.log = None;
    Ok(())
}

/// Write `start..end` of a log again with the bytes it reads back, and sync it, so recovery
/// can call them durable.
///
/// Recovery reads what the page cache shows, which is not always what the disk holds: after
/// a failed `fdatasync` Linux marks the dirty pages clean ("fsyncgate"), so a later
/// `fdatasync` — this process's or a restarted one's — succeeds without writing them, and a
/// power loss takes them. The engine that saw the failure stops (fail-stop), but an engine
/// reopened without a reboot would find those bytes, sync them "successfully" and report
/// them durable. Writing them again makes the pages dirty, so the sync that follows really
/// writes them (or fails). Index entries are written only after the log bytes they cover
/// were synced successfully, so only what lies after the last one needs this.
fn rewrite_range(io: &mut ShardIo<'_>, path: &Path, start: u64, end: u64) -> Result<()> {
    const CHUNK: u64 = 1 << 20;
    if start >= end {
        return Ok(());
    }
    // A buffered handle: through the page cache, whatever mode the log was opened in.
    let file = open_file(io, path, OpenOptions::read_write())?;
    let mut result = Ok(());
    let mut at = start;
    while at < end && result.is_ok() {
        let len = (end - at).min(CHUNK) as usize;
        result = io
            .read_now(file, at, len)
            .and_then(|bytes| {
                if bytes.len() == len {
                    Ok(bytes)
                } else {
                    Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("read {} of {len} bytes at {at}", bytes.len()),
                    ))
                }
            })
            .and_then(|bytes| io.write_now(file, at, &bytes))
            .map_err(|e| Error::io("rewrite recovered tail", path, e));
        at += len as u64;
    }
    let result =
        result.and_then(|()| io.sync_now(file).map_err(|e| Error::io("fdatasync", path, e)));
    let _ = io.storage.close(file);
    result
}

/// Write a segment's in-memory indexes as fresh files, durably.
fn rewrite_indexes(io: &mut ShardIo<'_>, dir: &Path, segment: &mut Segment) -> Result<()> {
    let base = segment.base_offset;
    let offset = encode_file(base, segment.offset_index.as_ref().map_or(&[][..], |i| i.entries()));
    let time = encode_file(base, segment.time_index.as_ref().map_or(&[][..], |i| i.entries()));
    for (path, bytes) in [
        (segment::offset_index_path(dir, base), offset),
        (segment::time_index_path(dir, base), time),
    ] {
        let file = open_empty(io, &path)?;
        let result = io.write_now(file, 0, &bytes).and_then(|()| io.sync_now(file));
        let _ = io.storage.close(file);
        result.map_err(|e| Error::io("write index", &path, e))?;
    }
    // Loaded indexes now match their files exactly.
    segment.offset_index =
        segment.offset_index.take().map(|i| OffsetIndex::written(base, i.entries().to_vec()));
    segment.time_index =
        segment.time_index.take().map(|i| TimeIndex::written(base, i.entries().to_vec()));
    Ok(())
}

/// Remove a segment's files (log first, so an interrupted removal leaves only orphan indexes,
/// which the next open removes).
pub(crate) fn remove_segment_files(io: &mut ShardIo<'_>, dir: &Path, base: u64) -> Result<()> {
    for path in [
        segment::log_path(dir, base),
        segment::offset_index_path(dir, base),
        segment::time_index_path(dir, base),
    ] {
        match io.storage.remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(Error::io("remove", path, err)),
        }
    }
    Ok(())
}

/// Recover the active segment: see the module documentation.
fn recover_active(io: &mut ShardIo<'_>, dir: &Path, base: u64) -> Result<Segment> {
    let log_path = segment::log_path(dir, base);
    let offset_path = segment::offset_index_path(dir, base);
    let time_path = segment::time_index_path(dir, base);
    let log = open_file(io, &log_path, OpenOptions::read_write().direct(io.settings.direct_io))?;
    let log_len = file_len(io, log, &log_path)?;
    let offset_bytes = read_optional(io, &offset_path)?.unwrap_or_default();
    let time_bytes = read_optional(io, &time_path)?.unwrap_or_default();
    let (mut offset_index, _) = OffsetIndex::load(base, &offset_bytes);
    let (mut time_index, _) = TimeIndex::load(base, &time_bytes);

    // Start from the last offset entry whose batch is really there (entries are written
    // without sync, so a crash can leave some pointing past the surviving log), and no later
    // than the last time entry, so the maximum timestamp stays exact.
    let (segment, end, scanned_from) = loop {
        let offset_start = offset_index.last().copied();
        let keep_time = time_index
            .entries()
            .partition_point(|e| offset_start.is_some_and(|o| e.position <= o.position));
        time_index.truncate(keep_time);
        let time_start = time_index.last().copied();
        let keep_offset = offset_index
            .entries()
            .partition_point(|e| time_start.is_some_and(|t| e.position <= t.position));
        offset_index.truncate(keep_offset);
        let (start_rel, start_pos, max_before) = match time_start {
            Some(t) => (t.relative_offset, u64::from(t.position), t.max_timestamp),
            None => (0, 0, NO_TIMESTAMP),
        };
        let last_indexed = offset_index.last().map_or(0, |e| u64::from(e.position));
        let mut segment = Segment::new(base);
        segment.next_offset = base + u64::from(start_rel);
        segment.size_bytes = start_pos;
        segment.max_timestamp = max_before;
        segment.bytes_since_index = start_pos - last_indexed;
        segment.offset_index = Some(std::mem::replace(&mut offset_index, OffsetIndex::new(base)));
        segment.time_index = Some(std::mem::replace(&mut time_index, TimeIndex::new(base)));
        let end = scan_into(io, log, &log_path, &mut segment, log_len)?;
        if start_pos > 0 && end.position == start_pos && end.stop.is_some() {
            // The entry pointed at no valid batch: drop it and start earlier.
            offset_index = segment.offset_index.take().unwrap_or_else(|| OffsetIndex::new(base));
            time_index = segment.time_index.take().unwrap_or_else(|| TimeIndex::new(base));
            let keep =
                offset_index.entries().partition_point(|e| u64::from(e.position) < start_pos);
            offset_index.truncate(keep);
            let keep = time_index.entries().partition_point(|e| u64::from(e.position) < start_pos);
            time_index.truncate(keep);
            continue;
        }
        break (segment, end, start_pos);
    };
    let mut segment = segment;
    if let Some(stop) = &end.stop {
        tracing::info!(segment = %log_path.display(), position = end.position, file_len = log_len, reason = %stop, "recovered log tail");
    }
    if log_len != segment.size_bytes {
        io.storage
            .set_len(log, segment.size_bytes)
            .map_err(|e| Error::io("truncate", &log_path, e))?;
    }
    // Everything kept is now durable, whether or not the process that wrote it synced it.
    // What the scan covered may never have reached the disk (see `rewrite_range`); index
    // entries, which it started from, are written only once the bytes they cover are synced.
    rewrite_range(io, &log_path, scanned_from, segment.size_bytes)?;
    io.sync_now(log).map_err(|e| Error::io("fdatasync", &log_path, e))?;
    rewrite_indexes(io, dir, &mut segment)?;
    let offset_file = open_file(io, &offset_path, OpenOptions::read_write())?;
    let time_file = open_file(io, &time_path, OpenOptions::read_write())?;
    segment.index_files = Some((offset_file, time_file));
    segment.log = Some(log);
    segment.written_bytes = segment.size_bytes;
    segment.synced_bytes = segment.size_bytes;
    if !segment.is_empty() {
        segment.rolling_base_ms =
            Some(first_batch_time(io, log, &log_path, segment.max_timestamp)?);
    }
    Ok(segment)
}

/// The time from which a recovered segment's age counts: its first batch's max timestamp
/// (as Kafka does).
fn first_batch_time(io: &mut ShardIo<'_>, log: FileId, path: &Path, fallback: i64) -> Result<i64> {
    let header = io
        .read_now(log, 0, crate::record::BATCH_HEADER_SIZE)
        .map_err(|e| Error::io("read", path, e))?;
    let at = crate::record::layout::MAX_TIMESTAMP_OFFSET;
    let field = header.get(at..at + 8).and_then(|b| <[u8; 8]>::try_from(b).ok());
    Ok(field.map_or(fallback, i64::from_be_bytes))
}
