//! Faults the simulation injects (beyond the power losses the simulation itself schedules):
//!
//! - `EIO` or `ENOSPC` from a [`FaultRule`] on a chosen kind of operation under one
//!   partition's directory (the n-th next one, once or from then on), or under the topics
//!   directory (topic creation and deletion);
//! - a full disk (a capacity just above what is used), later freed;
//! - bit flips in the durable bytes of closed segments: in a batch of the log (reads of that
//!   batch must fail with `Error::Corrupt` naming file and position; every other batch reads
//!   back intact), or in an index file (no visible effect: indexes are rebuilt);
//! - short reads and writes at seeded probabilities, changed during the run;
//! - latency profiles changed during the run ([`Interposer`](super::Interposer)).
//!
//! Every injection is recorded in [`World::faults`], which is what makes a partition's
//! failure legitimate.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use tidelog_core::record::BatchIter;
use tidelog_core::segment::index::TimeIndex;
use tidelog_core::segment::{self, SegmentFile};
use tidelog_io::sim::{FaultRule, OpKind};

use super::{DATA_DIR, Damage, Feature, Latency, Restart, World};

/// Bytes 12..16 of a batch, its partition leader epoch, are outside the CRC (Kafka's layout)
/// and mean nothing to the engine yet: a flip there cannot be detected, so none is injected.
const LEADER_EPOCH: std::ops::Range<u64> = 12..16;

#[derive(Debug, Default)]
pub struct FaultFeature {
    /// Segment logs damaged (log or index), so each segment gets at most one flip: two (one
    /// in the close entry, one in the log) would make recovery rescan a damaged log.
    flipped: BTreeSet<PathBuf>,
    /// The disk's capacity is limited now.
    disk_full: bool,
}

/// Every partition directory on the disk now.
fn partition_dirs(world: &World) -> Vec<PathBuf> {
    let topics = Path::new(DATA_DIR).join("topics");
    let mut dirs = Vec::new();
    for topic in world.disk.list(&topics).unwrap_or_default() {
        if !topic.is_dir {
            continue;
        }
        let topic_dir = topics.join(&topic.name);
        for partition in world.disk.list(&topic_dir).unwrap_or_default() {
            if partition.is_dir && partition.name.parse::<u32>().is_ok() {
                dirs.push(topic_dir.join(&partition.name));
            }
        }
    }
    dirs
}

/// A closed segment whose close is durable: (log path, index paths, bytes of data).
struct ClosedSegment {
    log: PathBuf,
    indexes: [PathBuf; 2],
    end: u64,
}

/// Closed segments of `dir` whose close entry is durable and whose log is fully synced:
/// recovery trusts them without a scan, so damage in them stays put.
fn closed_segments(world: &World, dir: &Path) -> Vec<ClosedSegment> {
    let durable: BTreeSet<PathBuf> = world.disk.durable_paths().into_iter().collect();
    let mut bases: Vec<u64> = world
        .disk
        .list(dir)
        .unwrap_or_default()
        .iter()
        .filter_map(|e| match segment::parse_file_name(&e.name) {
            Some(SegmentFile::Log(base)) => Some(base),
            _ => None,
        })
        .collect();
    bases.sort_unstable();
    let mut closed = Vec::new();
    for pair in bases.windows(2) {
        let (base, next) = (pair[0], pair[1]);
        let log = segment::log_path(dir, base);
        let time = segment::time_index_path(dir, base);
        let offset = segment::offset_index_path(dir, base);
        if ![&log, &time, &offset, &segment::log_path(dir, next)]
            .iter()
            .all(|p| durable.contains(*p))
            || world.disk.has_unsynced_data(&log).unwrap_or(true)
        {
            continue;
        }
        let Ok(bytes) = world.disk.read_durable(&time) else { continue };
        let (index, damage) = TimeIndex::load(base, &bytes);
        let Some(entry) = index.last().filter(|_| damage.is_none()) else { continue };
        let end = u64::from(entry.position);
        let log_len = world.disk.read_durable(&log).map_or(0, |b| b.len() as u64);
        if base + u64::from(entry.relative_offset) == next && log_len >= end && end > 0 {
            closed.push(ClosedSegment { log, indexes: [offset, time], end });
        }
    }
    closed
}

impl FaultFeature {
    fn inject_error(&mut self, world: &mut World) {
        let dirs = partition_dirs(world);
        if dirs.is_empty() {
            return;
        }
        let dir = dirs[world.rng.index(dirs.len())].clone();
        let kinds = [
            OpKind::Write,
            OpKind::Write,
            OpKind::SyncData,
            OpKind::SyncData,
            OpKind::Read,
            OpKind::Open,
            OpKind::SyncDir,
            OpKind::SetLen,
            OpKind::Allocate,
            OpKind::Rename,
            OpKind::Remove,
        ];
        let kind = kinds[world.rng.index(kinds.len())];
        let mut rule =
            if world.rng.below(5) == 0 { FaultRule::no_space(kind) } else { FaultRule::io(kind) };
        rule = rule.under(&dir).after(world.rng.below(6));
        if world.rng.coin() {
            rule = rule.persistent();
        }
        world.trace(format!("fault rule {rule:?}"));
        world.disk.inject_fault(rule);
        world.faults.targets.push(dir);
        world.count("fault rules injected", 1);
    }

    fn inject_catalog_error(&mut self, world: &mut World) {
        let topics = Path::new(DATA_DIR).join("topics");
        let kinds =
            [OpKind::CreateDir, OpKind::Rename, OpKind::SyncDir, OpKind::Remove, OpKind::Write];
        let kind = kinds[world.rng.index(kinds.len())];
        let rule = FaultRule::io(kind).under(&topics).after(world.rng.below(3));
        world.trace(format!("fault rule {rule:?}"));
        world.disk.inject_fault(rule);
        world.faults.targets.push(topics);
        world.count("fault rules injected", 1);
    }

    fn fill_disk(&mut self, world: &mut World) {
        let room = world.rng.below(192 * 1024);
        let capacity = world.disk.used_bytes() + room;
        world.trace(format!("disk capacity {capacity} bytes ({room} free)"));
        world.disk.set_capacity_bytes(Some(capacity));
        world.faults.capacity_limited = true;
        self.disk_full = true;
        world.count("disk filled", 1);
    }

    fn flip_bit(&mut self, world: &mut World, in_index: bool) {
        let mut candidates: Vec<ClosedSegment> = Vec::new();
        for dir in partition_dirs(world) {
            candidates.extend(
                closed_segments(world, &dir).into_iter().filter(|s| !self.flipped.contains(&s.log)),
            );
        }
        if candidates.is_empty() {
            return;
        }
        let segment = candidates.swap_remove(world.rng.index(candidates.len()));
        if in_index {
            let path = &segment.indexes[world.rng.index(2)];
            let len = world.disk.read_durable(path).map_or(0, |b| b.len() as u64);
            if len == 0 {
                return;
            }
            let at = world.rng.below(len);
            let bit = world.rng.below(8) as u8;
            world.trace(format!("flip bit {bit} of byte {at} of {}", path.display()));
            world.disk.flip_bit(path, at, bit).expect("the index exists");
            self.flipped.insert(segment.log);
            world.count("bit flips in indexes", 1);
            return;
        }
        let bytes = world.disk.read(&segment.log).expect("the log exists");
        let data = &bytes[..segment.end as usize];
        let mut batches = Vec::new();
        let mut iter = BatchIter::new(data);
        loop {
            let position = iter.position() as u64;
            match iter.next() {
                Some(Ok(batch)) => batches.push((
                    position,
                    batch.total_len() as u64,
                    batch.base_offset() as u64,
                    batch.last_offset() as u64,
                )),
                Some(Err(err)) => {
                    panic!("{}: a closed segment does not parse: {err}", segment.log.display())
                }
                None => break,
            }
        }
        let (position, len, base_offset, last_offset) = batches[world.rng.index(batches.len())];
        let within = loop {
            let at = if world.rng.coin() {
                world.rng.below(tidelog_core::record::BATCH_HEADER_SIZE as u64)
            } else {
                world.rng.below(len)
            };
            if !LEADER_EPOCH.contains(&at) {
                break at;
            }
        };
        let at = position + within;
        let bit = world.rng.below(8) as u8;
        world.trace(format!(
            "flip bit {bit} of byte {at} of {} (batch at {position}, offsets {base_offset}..={last_offset}, byte {within} of it)",
            segment.log.display()
        ));
        world.disk.flip_bit(&segment.log, at, bit).expect("the log exists");
        world.faults.damage.push(Damage {
            path: segment.log.clone(),
            position,
            base_offset,
            last_offset,
            flipped_at: at,
            batches: batches.iter().map(|&(p, _, b, l)| (p, b, l)).collect(),
        });
        self.flipped.insert(segment.log);
        world.count("bit flips in logs", 1);
    }

    fn short_io(&mut self, world: &mut World) {
        let p = [0.0, 0.0, 0.05, 0.3];
        let write = p[world.rng.index(4)];
        let read = p[world.rng.index(4)];
        world.trace(format!("short writes {write}, short reads {read}"));
        world.disk.set_short_write_probability(write);
        world.disk.set_short_read_probability(read);
    }

    fn latency(&mut self, world: &mut World) {
        let latency = match world.rng.below(3) {
            0 => world.scenario.latency,
            1 => Latency { hold_probability: 0.6, hold_reaps_max: 60, defer_probability: 0.6 },
            _ => Latency::default(),
        };
        world.trace(format!("latency {latency:?}"));
        world.interposer.set_latency(latency);
    }

    /// Forget damage that no longer exists: its file gone now and from the durable name
    /// space (a deletion a power loss can still undo brings the damaged file back).
    fn prune(&mut self, world: &mut World) {
        let disk = world.disk.clone();
        let durable: BTreeSet<PathBuf> = disk.durable_paths().into_iter().collect();
        let exists = |path: &PathBuf| disk.exists(path) || durable.contains(path);
        world.faults.damage.retain(|d| exists(&d.path));
        self.flipped.retain(|p| exists(p));
    }
}

impl Feature for FaultFeature {
    fn name(&self) -> &'static str {
        "faults"
    }

    fn start(&mut self, _world: &mut World) {}

    fn operations(&self, world: &World) -> Vec<(&'static str, u32)> {
        let mut ops = vec![("short_io", 1), ("latency", 1)];
        if world.scenario.faults {
            ops.extend([
                ("inject_error", 3),
                ("inject_catalog_error", 1),
                ("flip_bit", 4),
                ("flip_index_bit", 1),
            ]);
            if self.disk_full {
                ops.push(("free_disk", 4));
            } else {
                ops.push(("fill_disk", 1));
            }
        }
        ops
    }

    fn run(&mut self, operation: &'static str, world: &mut World) {
        match operation {
            "inject_error" => self.inject_error(world),
            "inject_catalog_error" => self.inject_catalog_error(world),
            "fill_disk" => self.fill_disk(world),
            "free_disk" => {
                world.trace("disk capacity unlimited");
                world.disk.set_capacity_bytes(None);
                self.disk_full = false;
            }
            "flip_bit" => self.flip_bit(world, false),
            "flip_index_bit" => self.flip_bit(world, true),
            "short_io" => self.short_io(world),
            "latency" => self.latency(world),
            other => unreachable!("unknown fault operation {other}"),
        }
    }

    fn check(&mut self, world: &mut World) {
        self.prune(world);
    }

    fn before_shutdown(&mut self, _world: &mut World, _clean_close: bool) {}

    fn on_shutdown(&mut self, _world: &mut World, _restart: Restart) {}

    fn after_restart(&mut self, world: &mut World, _restart: Restart) {
        self.prune(world);
        self.disk_full = false;
        world.interposer.set_latency(world.scenario.latency);
    }
}
