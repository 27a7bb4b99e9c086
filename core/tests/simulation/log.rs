//! The log under simulation: topics and partitions, appends of every shape and durability,
//! reads, timestamp lookups, retention — and the reference model every result is checked
//! against.
//!
//! # The model
//!
//! Per partition, `log[offset]` is the record the engine was given at that offset (the whole
//! history of the topic, also below the log start). Offsets are not guessed from
//! acknowledgements: a shard applies one partition's appends in the order they were
//! submitted, and after a failure it refuses every later one, so the appends it accepted are
//! a prefix of those submitted. Every check asks the engine for `PartitionInfo`, which is
//! answered after everything submitted before it: its `next_offset` tells exactly how many of
//! the waiting appends were accepted — and so the offset of every record.
//!
//! What must survive, per partition:
//! - a power loss: everything below `durable_floor` — the end of every `Durable`
//!   acknowledgement and every durable offset the engine reported;
//! - a clean close: everything accepted (or, if a fault was injected into the partition,
//!   everything below `visible_floor`: every `Written` acknowledgement and every high
//!   watermark reported).

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tidelog_core::record::{BatchOptions, encode_batch};
use tidelog_core::{
    AppendResult, Durability, Error, Fetch, Header, Isolation, PartitionInfo, Pending, ReadRequest,
    Record, TopicConfig,
};
use tidelog_io::sim::{FaultKind, OpKind, SimDisk, SimRng};

use super::{DATA_DIR, Feature, Restart, World};

/// Most partitions across all topics (each check asks every one for its state).
const PARTITIONS_MAX: usize = 10;

/// A record as the model keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rec {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    timestamp: i64,
    /// Offset of the first record of its batch (recovery cuts only between batches).
    batch_base: u64,
}

impl Rec {
    fn as_record(&self) -> (Record<'_>, Vec<Header<'_>>) {
        let headers: Vec<Header<'_>> = self
            .headers
            .iter()
            .map(|(k, v)| Header { key: k.as_str(), value: v.as_deref() })
            .collect();
        let record = Record {
            key: self.key.as_deref(),
            value: self.value.as_deref(),
            headers: &[],
            timestamp: Some(self.timestamp),
        };
        (record, headers)
    }
}

/// Appends submitted but not yet placed (their offsets are not known yet).
#[derive(Debug)]
struct Unplaced {
    id: u64,
    records: Vec<Rec>,
}

/// What a partition looked like at the last check.
#[derive(Clone, Debug, Default)]
struct Seen {
    log_start: u64,
    high_watermark: u64,
    durable: u64,
    next: u64,
    failed: Option<String>,
    segments: Vec<tidelog_core::SegmentInfo>,
}

/// What must survive the restart in progress (computed when the engine goes down).
#[derive(Clone, Copy, Debug, Default)]
struct Keep {
    /// Without a power loss: at least this much, exactly everything accepted if `exact`.
    floor: u64,
    exact: bool,
    /// With a power loss (during recovery, or instead of the close).
    floor_power_lost: u64,
    exact_power_lost: bool,
}

#[derive(Debug)]
struct PartitionModel {
    dir: PathBuf,
    /// The record at every offset ever accepted (and not taken back by a power loss).
    log: Vec<Rec>,
    unplaced: VecDeque<Unplaced>,
    seen: Seen,
    durable_floor: u64,
    visible_floor: u64,
    keep: Keep,
}

impl PartitionModel {
    fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            log: Vec::new(),
            unplaced: VecDeque::new(),
            seen: Seen::default(),
            durable_floor: 0,
            visible_floor: 0,
            keep: Keep::default(),
        }
    }

    /// Place waiting appends: the first of them, in order, add up to `next_offset`; the rest
    /// were refused. Returns the placements (append id, base offset or `None` if refused).
    fn place(&mut self, next_offset: u64, refusals_allowed: bool) -> Vec<(u64, Option<u64>)> {
        let mut placed = Vec::new();
        while let Some(front) = self.unplaced.front() {
            let next = self.log.len() as u64;
            if next + front.records.len() as u64 > next_offset {
                break;
            }
            let Some(append) = self.unplaced.pop_front() else { break };
            self.push(append.records);
            placed.push((append.id, Some(next)));
        }
        assert_eq!(
            self.log.len() as u64,
            next_offset,
            "{}: next offset {next_offset} is not the end of a prefix of the appends submitted \
             (the model has {} records and {} appends waiting): offsets not dense, or appends \
             applied out of order",
            self.dir.display(),
            self.log.len(),
            self.unplaced.len()
        );
        if !self.unplaced.is_empty() {
            assert!(
                refusals_allowed,
                "{}: {} append(s) neither accepted nor refused by a failed partition",
                self.dir.display(),
                self.unplaced.len()
            );
            for append in self.unplaced.drain(..) {
                placed.push((append.id, None));
            }
        }
        placed
    }

    /// Place every waiting append up to and including `id` (acknowledged at `base`).
    fn place_through(&mut self, id: u64, base: u64) -> Vec<(u64, Option<u64>)> {
        let mut placed = Vec::new();
        while let Some(append) = self.unplaced.pop_front() {
            let at = self.log.len() as u64;
            let done = append.id == id;
            self.push(append.records);
            placed.push((append.id, Some(at)));
            if done {
                assert_eq!(
                    at,
                    base,
                    "{}: acknowledged at {base}, expected {at}",
                    self.dir.display()
                );
                return placed;
            }
        }
        panic!("{}: an acknowledged append was not waiting to be placed", self.dir.display());
    }

    fn push(&mut self, mut records: Vec<Rec>) {
        let base = self.log.len() as u64;
        for record in &mut records {
            record.batch_base = base;
        }
        self.log.extend(records);
    }

    /// The record at `offset`: placed, or (accepted appends being a prefix of those waiting)
    /// the one a waiting append would put there.
    fn record(&self, offset: u64) -> &Rec {
        let placed = self.log.len() as u64;
        let waiting = self.unplaced.iter().flat_map(|a| a.records.iter());
        let found = match offset.checked_sub(placed) {
            None => self.log.get(offset as usize),
            Some(k) => waiting.clone().nth(k as usize),
        };
        found.unwrap_or_else(|| {
            panic!(
                "{}: the engine returned offset {offset}, past every record submitted ({} placed, \
                 {} waiting)",
                self.dir.display(),
                placed,
                waiting.count()
            )
        })
    }

    /// Records placed or waiting to be placed.
    fn submitted(&self) -> u64 {
        self.log.len() as u64 + self.unplaced.iter().map(|a| a.records.len() as u64).sum::<u64>()
    }
}

#[derive(Debug)]
struct TopicModel {
    name: String,
    generation: u64,
    config: TopicConfig,
    partitions: Vec<PartitionModel>,
}

impl TopicModel {
    fn new(name: &str, generation: u64, config: TopicConfig) -> Self {
        let dir = Path::new(DATA_DIR).join("topics").join(name);
        let partitions =
            (0..config.partitions).map(|p| PartitionModel::new(dir.join(p.to_string()))).collect();
        Self { name: name.to_string(), generation, config, partitions }
    }

    fn dir(&self) -> PathBuf {
        Path::new(DATA_DIR).join("topics").join(&self.name)
    }
}

#[derive(Clone, Debug)]
struct AppendMeta {
    id: u64,
    topic: String,
    generation: u64,
    partition: u32,
    count: u64,
    durability: Durability,
}

struct AppendInFlight {
    meta: AppendMeta,
    pending: Pending<AppendResult>,
}

struct ReadInFlight {
    topic: String,
    generation: u64,
    partition: u32,
    request: ReadRequest,
    /// The wait counts from when the shard takes the request, which is certain only by the
    /// end of the check after it was submitted: the deadline is set then.
    deadline_ns: Option<u64>,
    pending: Pending<Fetch>,
}

/// The log feature: see the module documentation.
#[derive(Default)]
pub struct LogFeature {
    topics: BTreeMap<String, TopicModel>,
    /// Topics whose creation (`None`) or deletion (`Some`, with its model) failed on a fault:
    /// after the next restart they may exist or not.
    uncertain: BTreeMap<String, Option<TopicModel>>,
    next_generation: u64,
    next_append: u64,
    next_name: u32,
    appends: Vec<AppendInFlight>,
    reads: Vec<ReadInFlight>,
    /// Placements of appends whose acknowledgement has not been taken yet.
    placements: BTreeMap<u64, Option<u64>>,
}

/// I/O errors and full disks injected so far (short transfers are not errors).
fn hard_faults(disk: &SimDisk) -> u64 {
    let stats = disk.stats();
    OpKind::ALL
        .iter()
        .map(|&k| stats.faults(k, FaultKind::Io) + stats.faults(k, FaultKind::NoSpace))
        .sum()
}

fn random_bytes(rng: &mut SimRng, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    // Mostly compressible text-like bytes, sometimes noise.
    if rng.coin() {
        rng.fill(&mut bytes);
    } else {
        let start = rng.below(26) as u8;
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = b'a' + (start + i as u8 % 26) % 26;
        }
    }
    bytes
}

fn random_topic_config(rng: &mut SimRng, partitions_left: usize) -> TopicConfig {
    let segment_size_bytes = 4096 * [4u64, 5, 8, 16, 32][rng.index(5)];
    let record_size_bytes_max = match rng.below(5) {
        0 => 100,
        1 => 1000,
        2 => 4096,
        3 => (segment_size_bytes / 2) as u32,
        _ => segment_size_bytes as u32,
    };
    TopicConfig {
        partitions: rng.between(1, partitions_left.clamp(1, 4) as u64) as u32,
        segment_size_bytes,
        segment_age_ms: [200, 5_000, 120_000, 7 * 86_400_000][rng.index(4)],
        retention_bytes: rng.coin().then(|| 4096 * rng.between(4, 64)),
        retention_ms: match rng.below(4) {
            0 => None,
            1 => Some(1_000),
            2 => Some(60_000),
            _ => Some(3_600_000),
        },
        record_size_bytes_max,
    }
}

/// The encoded size of a batch of `records`, as the engine will encode it.
fn encoded_len(records: &[Rec]) -> usize {
    let holders: Vec<(Record<'_>, Vec<Header<'_>>)> = records.iter().map(Rec::as_record).collect();
    let views: Vec<Record<'_>> = holders.iter().map(|(r, h)| Record { headers: h, ..*r }).collect();
    encode_batch(&views, 0, BatchOptions::default()).len()
}

impl LogFeature {
    fn live_partitions(&self) -> usize {
        self.topics.values().map(|t| t.config.partitions as usize).sum()
    }

    fn new_name(&mut self, world: &mut World) -> String {
        // Sometimes reuse the name of a deleted topic (a new topic under an old name).
        if self.next_name > 0 && world.rng.below(3) == 0 {
            let name = format!("t{}", world.rng.below(u64::from(self.next_name)));
            if !self.topics.contains_key(&name) && !self.uncertain.contains_key(&name) {
                return name;
            }
        }
        self.next_name += 1;
        format!("t{}", self.next_name - 1)
    }

    fn pick_partition(&self, world: &mut World) -> Option<(String, u32)> {
        if self.topics.is_empty() {
            return None;
        }
        let names: Vec<&String> = self.topics.keys().collect();
        let name = names[world.rng.index(names.len())].clone();
        let partitions = self.topics[&name].config.partitions;
        Some((name, world.rng.below(u64::from(partitions)) as u32))
    }

    fn create_topic(&mut self, world: &mut World) {
        let left = PARTITIONS_MAX - self.live_partitions();
        let name = self.new_name(world);
        let config = random_topic_config(&mut world.rng, left);
        world.trace(format!("create topic {name} {config:?}"));
        let topics_dir = Path::new(DATA_DIR).join("topics");
        match world.engine().create_topic(&name, config.clone()) {
            Ok(()) => {
                self.next_generation += 1;
                self.uncertain.remove(&name);
                self.topics
                    .insert(name.clone(), TopicModel::new(&name, self.next_generation, config));
                world.count("topics created", 1);
            }
            Err(_) if world.crashed() => {
                self.uncertain.insert(name, None);
            }
            Err(err @ (Error::Io { .. } | Error::NoSpace { .. }))
                if world.faults.may_fail(&topics_dir.join(&name)) =>
            {
                world.trace(format!("create topic {name} failed on a fault: {err}"));
                world.count("topic operations failed on faults", 1);
                self.uncertain.insert(name, None);
            }
            Err(err) => panic!("create_topic {name} failed: {err}"),
        }
    }

    fn create_bad_topic(&mut self, world: &mut World) {
        let engine = world.engine().clone();
        let before = engine.topics();
        let cases: [(&str, TopicConfig); 4] = [
            ("bad/name", TopicConfig::default()),
            ("..", TopicConfig::default()),
            ("bad0", TopicConfig::default().partitions(0)),
            ("bad1", TopicConfig::default().segment_size_bytes(4097)),
        ];
        let (name, config) = &cases[world.rng.index(cases.len())];
        let result = engine.create_topic(name, config.clone());
        assert!(
            matches!(result, Err(Error::InvalidTopicName { .. } | Error::InvalidConfig { .. })),
            "create_topic({name:?}, {config:?}) = {result:?}"
        );
        assert_eq!(engine.topics(), before, "a refused topic changed the catalog");
        // An existing name.
        if let Some(existing) = self.topics.keys().next() {
            let result = engine.create_topic(existing, TopicConfig::default());
            assert!(matches!(result, Err(Error::TopicExists { .. })), "{result:?}");
        }
        world.count("invalid topic requests refused", 1);
    }

    fn delete_topic(&mut self, world: &mut World) {
        let names: Vec<String> = self.topics.keys().cloned().collect();
        let name = names[world.rng.index(names.len())].clone();
        world.trace(format!("delete topic {name}"));
        let result = world.engine().delete_topic(&name);
        let model = self.topics.remove(&name).expect("picked from the live topics");
        match result {
            Ok(()) => {
                let dir = model.dir();
                world.faults.damage.retain(|d| !d.path.starts_with(&dir));
                world.count("topics deleted", 1);
            }
            Err(_) if world.crashed() => {
                self.uncertain.insert(name, Some(model));
            }
            Err(err) if world.faults.may_fail(&model.dir()) => {
                world.trace(format!("delete topic {name} failed on a fault: {err}"));
                world.count("topic operations failed on faults", 1);
                self.uncertain.insert(name, Some(model));
            }
            Err(err) => panic!("delete_topic {name} failed: {err}"),
        }
    }

    /// Records for one append, within the topic's batch limit.
    fn random_records(world: &mut World, max: usize) -> Vec<Rec> {
        let rng = &mut world.rng;
        let now = tidelog_io::Clock::now_ms(&world.clock);
        let count = match rng.below(10) {
            0..=5 => 1,
            6..=8 => rng.between(2, 5),
            _ => rng.between(6, 30),
        } as usize;
        let budget = rng.between(0, max as u64 / count as u64 + 1) as usize;
        let mut records: Vec<Rec> = (0..count)
            .map(|i| {
                let key = match rng.below(10) {
                    0..=4 => None,
                    5 => Some(Vec::new()),
                    _ => Some(format!("key-{}", rng.below(50)).into_bytes()),
                };
                let value = match rng.below(20) {
                    0 => None,
                    1 | 2 => Some(Vec::new()),
                    _ => {
                        let len = match rng.below(4) {
                            0 => rng.below(16),
                            1 => rng.below(300),
                            _ => rng.below(budget as u64 + 1),
                        } as usize;
                        Some(random_bytes(rng, len))
                    }
                };
                let headers = match rng.below(6) {
                    0 => (0..rng.between(1, 3))
                        .map(|h| {
                            let value = match rng.below(3) {
                                0 => None,
                                1 => Some(Vec::new()),
                                _ => {
                                    let len = rng.below(40) as usize;
                                    Some(random_bytes(rng, len))
                                }
                            };
                            (format!("h{h}-{i}"), value)
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                let timestamp = match rng.below(12) {
                    0 => now - rng.between(1, 10 * 86_400_000) as i64,
                    1 => now + rng.between(1, 3_600_000) as i64,
                    2 => rng.below(1_000) as i64,
                    _ => now,
                };
                Rec { key, value, headers, timestamp, batch_base: 0 }
            })
            .collect();
        fit(&mut records, max);
        records
    }
}

/// Trim `records` until their batch fits in `max` bytes (values first, then whole records).
fn fit(records: &mut Vec<Rec>, max: usize) {
    {
        loop {
            let len = encoded_len(records);
            if len <= max {
                return;
            }
            let excess = len - max;
            let largest = (0..records.len())
                .max_by_key(|&i| records[i].value.as_ref().map_or(0, Vec::len))
                .expect("at least one record");
            let several = records.len() > 1;
            match records[largest].value.as_mut() {
                Some(v) if !v.is_empty() => v.truncate(v.len().saturating_sub(excess + 8)),
                _ if several => {
                    records.pop();
                }
                _ => {
                    records[0].headers.clear();
                    records[0].key = None;
                    if encoded_len(records) > max {
                        records[0].value = None;
                    }
                }
            }
        }
    }
}

impl LogFeature {
    /// One record whose batch is exactly `max` bytes (or `over` bytes more).
    fn record_of_size(world: &World, max: usize, over: usize) -> Option<Rec> {
        let now = world.now_ms();
        let mut record = Rec {
            key: None,
            value: Some(Vec::new()),
            headers: Vec::new(),
            timestamp: now,
            batch_base: 0,
        };
        let target = max + over;
        for _ in 0..8 {
            let len = encoded_len(std::slice::from_ref(&record));
            if len == target {
                return Some(record);
            }
            let value = record.value.as_mut().expect("set above");
            let new_len = (value.len() as i64 + target as i64 - len as i64).max(0) as usize;
            value.resize(new_len, b'x');
        }
        None
    }

    fn append(&mut self, world: &mut World, how: &'static str) {
        let Some((topic, partition)) = self.pick_partition(world) else { return };
        let model = &self.topics[&topic];
        let max = model.config.record_size_bytes_max as usize;
        let partitions = model.config.partitions;
        let generation = model.generation;
        let durability =
            [Durability::None, Durability::Written, Durability::Durable][world.rng.index(3)];
        let (records, over) = match how {
            "append_limit" => {
                let over = if world.rng.coin() { 0 } else { world.rng.between(1, 3) as usize };
                match Self::record_of_size(world, max, over) {
                    Some(record) => (vec![record], over > 0),
                    None => return,
                }
            }
            "send_keyed" => {
                // One record with a key, fitted with its key.
                let mut record = Self::random_records(world, max).swap_remove(0);
                record.key = Some(format!("key-{}", world.rng.below(50)).into_bytes());
                let mut records = vec![record];
                fit(&mut records, max);
                if records[0].key.is_none() {
                    return; // the limit leaves no room for a key
                }
                (records, false)
            }
            _ => (Self::random_records(world, max), false),
        };
        let len = encoded_len(&records);
        let holders: Vec<(Record<'_>, Vec<Header<'_>>)> =
            records.iter().map(Rec::as_record).collect();
        let views: Vec<Record<'_>> =
            holders.iter().map(|(r, h)| Record { headers: h, ..*r }).collect();
        let engine = world.engine().clone();
        let (partition, pending) = match how {
            "send_keyed" => {
                let key = views[0].key.expect("fitted with its key");
                let partition = tidelog_core::partitioner::partition_for_key(key, partitions);
                assert_eq!(engine.partition_for(&topic, Some(key)).unwrap(), partition);
                let pending = engine.send(&topic, &views[0], durability);
                drop(views);
                drop(holders);
                return self.submitted(
                    world, topic, generation, partition, records, durability, pending, false,
                );
            }
            _ => (partition, engine.append_async(&topic, partition, &views, durability)),
        };
        drop(views);
        drop(holders);
        if over {
            assert!(len > max);
            let result = pending.try_take().unwrap_or_else(|_| {
                panic!("an append of {len} bytes over the {max}-byte limit was not refused at once")
            });
            assert!(
                matches!(result, Err(Error::RecordTooLarge { size, max: m, .. }) if size == len && m == max),
                "an append of {len} bytes over the {max}-byte limit: {result:?}"
            );
            world.count("oversized appends refused", 1);
            return;
        }
        assert!(len <= max);
        if len == max {
            world.count("appends at the size limit", 1);
        }
        let sync = how == "append_sync";
        self.submitted(world, topic, generation, partition, records, durability, pending, sync);
    }

    #[allow(clippy::too_many_arguments)]
    fn submitted(
        &mut self,
        world: &mut World,
        topic: String,
        generation: u64,
        partition: u32,
        records: Vec<Rec>,
        durability: Durability,
        pending: Pending<AppendResult>,
        sync: bool,
    ) {
        let id = self.next_append;
        self.next_append += 1;
        let count = records.len() as u64;
        world.trace(format!(
            "append #{id} {topic}/{partition}: {count} record(s), {} bytes, {durability}{}",
            encoded_len(&records),
            if sync { ", waited for" } else { "" }
        ));
        world.count("appends", 1);
        world.count("records appended", count);
        // Manual shards run only when stepped: an answer already in came from the caller's
        // side (the shard never saw the append).
        let pending = match pending.try_take() {
            Ok(result) => {
                panic!("append #{id} to {topic}/{partition} answered at once: {result:?}")
            }
            Err(pending) => pending,
        };
        let model = self.topics.get_mut(&topic).expect("appends go to live topics");
        model.partitions[partition as usize].unplaced.push_back(Unplaced { id, records });
        let meta = AppendMeta { id, topic, generation, partition, count, durability };
        if sync {
            let result = world.engine().block_on(pending);
            let excused = world.crashed();
            self.take_ack(world, &meta, result, excused);
        } else {
            self.appends.push(AppendInFlight { meta, pending });
        }
    }

    fn append_invalid(&mut self, world: &mut World) {
        let Some((topic, partition)) = self.pick_partition(world) else { return };
        let engine = world.engine().clone();
        let empty = engine.append_async(&topic, partition, &[], Durability::Written);
        let result =
            empty.try_take().unwrap_or_else(|_| panic!("an empty append was not refused at once"));
        assert!(matches!(result, Err(Error::EmptyBatch)), "empty append: {result:?}");
        let mut garbage = vec![0u8; world.rng.between(0, 200) as usize];
        world.rng.fill(&mut garbage);
        let result =
            engine.block_on(engine.append_batch(&topic, partition, garbage, Durability::None));
        let failed = world.faults.may_fail(&self.topics[&topic].partitions[partition as usize].dir);
        assert!(
            matches!(result, Err(Error::InvalidBatch(_) | Error::RecordTooLarge { .. }))
                || (failed && matches!(result, Err(Error::PartitionFailed { .. })))
                || world.crashed(),
            "a garbage batch: {result:?}"
        );
        world.count("invalid appends refused", 1);
    }

    /// Check one acknowledgement against the model.
    fn take_ack(
        &mut self,
        world: &mut World,
        meta: &AppendMeta,
        result: Result<AppendResult, Error>,
        excused: bool,
    ) {
        let Some(model) =
            self.topics.get_mut(&meta.topic).filter(|t| t.generation == meta.generation)
        else {
            // The topic was deleted meanwhile: either outcome is right.
            self.placements.remove(&meta.id);
            return;
        };
        let partition = &mut model.partitions[meta.partition as usize];
        match result {
            Ok(result) => {
                assert_eq!(
                    result.record_count(),
                    meta.count,
                    "append #{} of {} records acknowledged as {result:?}",
                    meta.id,
                    meta.count
                );
                let base = match self.placements.remove(&meta.id) {
                    Some(Some(base)) => base,
                    Some(None) => panic!(
                        "append #{} to {} was refused (the partition's next offset says so) but \
                         acknowledged: {result:?}",
                        meta.id,
                        partition.dir.display()
                    ),
                    None => {
                        // Acknowledged before any check placed it: the acknowledgement places
                        // it, and every append submitted before it.
                        for (id, base) in partition.place_through(meta.id, result.base_offset) {
                            if id != meta.id {
                                self.placements.insert(id, base);
                            }
                        }
                        result.base_offset
                    }
                };
                assert_eq!(
                    result.base_offset,
                    base,
                    "append #{} to {} acknowledged at {}, but it was the append placed at {base}",
                    meta.id,
                    partition.dir.display(),
                    result.base_offset
                );
                let end = result.last_offset + 1;
                match meta.durability {
                    Durability::Durable => {
                        partition.durable_floor = partition.durable_floor.max(end);
                        partition.visible_floor = partition.visible_floor.max(end);
                    }
                    Durability::Written => {
                        partition.visible_floor = partition.visible_floor.max(end);
                    }
                    Durability::None => {}
                }
                world.count(&format!("acks verified ({})", meta.durability), 1);
            }
            Err(err) => {
                self.placements.remove(&meta.id);
                let allowed = match &err {
                    // The append whose roll failed gets the roll's error.
                    Error::PartitionFailed { .. } | Error::Io { .. } | Error::NoSpace { .. }
                        if world.faults.may_fail(&partition.dir) =>
                    {
                        true
                    }
                    Error::PartitionFailed { .. } => excused || world.crashed(),
                    Error::Closed | Error::ShardStopped { .. } | Error::Io { .. } => {
                        excused || world.crashed()
                    }
                    _ => false,
                };
                assert!(
                    allowed,
                    "append #{} to {} failed without a fault or power loss to explain it: {err:?}",
                    meta.id,
                    partition.dir.display()
                );
                world.count("appends failed (faults, power loss)", 1);
            }
        }
    }

    /// Take every acknowledgement and read result that is in.
    fn harvest(&mut self, world: &mut World, excused: bool, reads_excused: bool) {
        let (ready, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.appends).into_iter().partition(|a| a.pending.is_ready());
        self.appends = waiting;
        for append in ready {
            let result = append.pending.wait();
            self.take_ack(world, &append.meta, result, excused);
        }
        let (ready, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.reads).into_iter().partition(|r| r.pending.is_ready());
        self.reads = waiting;
        for read in ready {
            let result = read.pending.wait();
            // Served later, by the shard: an injected read error may have hit it.
            let faulty = self
                .topics
                .get(&read.topic)
                .is_some_and(|t| world.faults.may_fail(&t.partitions[read.partition as usize].dir));
            self.verify_read(
                world,
                &read.topic,
                read.generation,
                read.partition,
                &read.request,
                result,
                faulty,
                reads_excused,
            );
            world.count("long-poll reads verified", 1);
        }
    }

    /// The cheap invariants of one partition, from its `PartitionInfo`; places waiting
    /// appends.
    fn observe(&mut self, world: &mut World, topic: &str, partition: u32, info: &PartitionInfo) {
        if world.crashed() {
            return; // the power went during the request: the state is the dead engine's
        }
        let model = self.topics.get_mut(topic).expect("observed topics are live");
        let segment_size = model.config.segment_size_bytes;
        let retention = (model.config.retention_bytes, model.config.retention_ms);
        let pm = &mut model.partitions[partition as usize];
        let dir = pm.dir.display().to_string();
        if let Some(cause) = &info.failed {
            assert!(
                world.faults.may_fail(&pm.dir),
                "{dir}: partition failed without a fault injected into it: {cause}"
            );
            if pm.seen.failed.is_none() {
                world.trace(format!("{dir} failed: {cause}"));
                world.count("partitions failed (faults injected)", 1);
            }
        }
        let was_failed = pm.seen.failed.is_some() || info.failed.is_some();
        for (id, base) in pm.place(info.next_offset, was_failed) {
            self.placements.insert(id, base);
        }
        let seen = &pm.seen;
        assert!(
            info.durable_offset <= info.high_watermark,
            "{dir}: durable offset above the high watermark: {info:?}"
        );
        assert!(
            info.high_watermark <= info.next_offset,
            "{dir}: high watermark above the next offset: {info:?}"
        );
        assert!(
            info.log_start_offset <= info.high_watermark,
            "{dir}: log start above the high watermark: {info:?}"
        );
        assert!(
            info.high_watermark >= seen.high_watermark,
            "{dir}: high watermark went back from {} to {}",
            seen.high_watermark,
            info.high_watermark
        );
        assert!(
            info.durable_offset >= seen.durable,
            "{dir}: durable offset went back from {} to {}",
            seen.durable,
            info.durable_offset
        );
        assert!(
            info.log_start_offset >= seen.log_start,
            "{dir}: log start went back from {} to {}",
            seen.log_start,
            info.log_start_offset
        );
        assert!(
            info.high_watermark >= pm.visible_floor,
            "{dir}: high watermark {} below an acknowledged write ({})",
            info.high_watermark,
            pm.visible_floor
        );
        assert!(
            info.durable_offset >= pm.durable_floor,
            "{dir}: durable offset {} below an acknowledged durable append ({})",
            info.durable_offset,
            pm.durable_floor
        );
        if seen.failed.is_some() {
            assert_eq!(info.next_offset, seen.next, "{dir}: a failed partition accepted appends");
        }
        // Segments: contiguous from the log start to the next offset, the last active, none
        // larger than the segment size.
        let segments = &info.segments;
        assert!(!segments.is_empty(), "{dir}: no segments");
        assert_eq!(segments[0].base_offset, info.log_start_offset, "{dir}: {info:?}");
        for pair in segments.windows(2) {
            assert_eq!(pair[0].next_offset, pair[1].base_offset, "{dir}: segments not contiguous");
            assert!(!pair[0].active, "{dir}: an active segment before the last");
            assert!(pair[0].next_offset > pair[0].base_offset, "{dir}: an empty closed segment");
        }
        let last = segments.last().expect("not empty");
        assert!(last.active, "{dir}: the last segment is not active");
        assert_eq!(last.next_offset, info.next_offset, "{dir}: {info:?}");
        for segment in segments {
            assert!(
                segment.size_bytes <= segment_size,
                "{dir}: segment {} holds {} bytes, more than the segment size {segment_size}",
                segment.base_offset,
                segment.size_bytes
            );
        }
        // Retention: every segment deleted since the last check was due for deletion.
        if info.log_start_offset > seen.log_start && !seen.segments.is_empty() {
            let deleted: Vec<_> = seen
                .segments
                .iter()
                .filter(|s| s.next_offset <= info.log_start_offset && !s.active)
                .collect();
            let kept: u64 = segments.iter().map(|s| s.size_bytes).sum();
            // Segments written since the last look and deleted with these (the active one
            // then, or ones rolled since) count toward the size rule with sizes never seen:
            // the size rule cannot be checked then, only the age rule.
            let unseen_deleted =
                seen.segments.iter().any(|s| s.active && s.next_offset <= info.log_start_offset)
                    || seen.segments.last().is_some_and(|s| s.next_offset < info.log_start_offset);
            for (i, segment) in deleted.iter().enumerate() {
                let by_age = retention.1.is_some_and(|ms| {
                    segment.max_timestamp != -1
                        && world.wall_max_ms.saturating_sub(segment.max_timestamp) > ms as i64
                });
                let after: u64 = deleted[i + 1..].iter().map(|s| s.size_bytes).sum();
                let by_size =
                    retention.0.is_some_and(|limit| unseen_deleted || kept + after >= limit);
                assert!(
                    by_age || by_size,
                    "{dir}: retention deleted segment {} ({} bytes, newest record at {}) that \
                     was due neither by age nor by size ({retention:?}, {kept} bytes kept)",
                    segment.base_offset,
                    segment.size_bytes,
                    segment.max_timestamp
                );
                world.count("segments deleted by retention (checked)", 1);
            }
        }
        pm.seen = Seen {
            log_start: info.log_start_offset,
            high_watermark: info.high_watermark,
            durable: info.durable_offset,
            next: info.next_offset,
            failed: info.failed.clone(),
            segments: info.segments.clone(),
        };
        pm.visible_floor = pm.visible_floor.max(info.high_watermark);
        pm.durable_floor = pm.durable_floor.max(info.durable_offset);
    }

    /// Ask every partition for its state and check it.
    fn observe_all(&mut self, world: &mut World) -> bool {
        let targets: Vec<(String, u32)> = self
            .topics
            .values()
            .flat_map(|t| (0..t.config.partitions).map(move |p| (t.name.clone(), p)))
            .collect();
        for (topic, partition) in targets {
            let info = match world.engine().partition_info(&topic, partition) {
                Ok(info) => info,
                Err(_) if world.crashed() => return false,
                Err(err) => panic!("partition_info {topic}/{partition}: {err}"),
            };
            self.observe(world, &topic, partition, &info);
        }
        true
    }

    fn read(&mut self, world: &mut World, parked: bool) {
        let Some((topic, partition)) = self.pick_partition(world) else { return };
        let model = &self.topics[&topic];
        let generation = model.generation;
        let seen = model.partitions[partition as usize].seen.clone();
        let rng = &mut world.rng;
        let isolation = if rng.below(3) == 0 { Isolation::Durable } else { Isolation::Written };
        let offset = if parked {
            match isolation {
                Isolation::Written => seen.high_watermark,
                Isolation::Durable => seen.durable.max(seen.log_start),
            }
        } else {
            match rng.below(10) {
                0..=5 if seen.high_watermark > seen.log_start => {
                    rng.between(seen.log_start, seen.high_watermark - 1)
                }
                6 => seen.high_watermark,
                7 => seen.log_start.saturating_sub(1),
                8 => seen.high_watermark + 1,
                _ => rng.between(0, seen.next + 3),
            }
        };
        let max_bytes = match rng.below(4) {
            0 => 1,
            1 => rng.between(60, 2_000) as usize,
            2 => 16 * 1024,
            _ => 1024 * 1024,
        };
        let mut request = ReadRequest::new(offset).max_bytes(max_bytes).isolation(isolation);
        if parked {
            let wait_ms = rng.between(1, 3_000);
            request = request.max_wait(Duration::from_millis(wait_ms));
            world.trace(format!("long-poll read {topic}/{partition} {request:?}"));
            let pending = world.engine().read_async(&topic, partition, request);
            self.reads.push(ReadInFlight {
                topic,
                generation,
                partition,
                request,
                deadline_ns: None,
                pending,
            });
            return;
        }
        let before = hard_faults(&world.disk);
        let result = world.engine().read(&topic, partition, request);
        let fired = hard_faults(&world.disk) > before;
        world.trace(format!(
            "read {topic}/{partition} {request:?}: {}",
            match &result {
                Ok(fetch) => format!("{} bytes", fetch.len_bytes()),
                Err(err) => err.to_string(),
            }
        ));
        self.verify_read(world, &topic, generation, partition, &request, result, fired, false);
    }

    /// Check a read's result; returns the offset to read next (for sequential readers).
    #[allow(clippy::too_many_arguments)]
    fn verify_read(
        &mut self,
        world: &mut World,
        topic: &str,
        generation: u64,
        partition: u32,
        request: &ReadRequest,
        result: Result<Fetch, Error>,
        faults_fired: bool,
        excused: bool,
    ) -> Option<u64> {
        let model = self.topics.get(topic).filter(|t| t.generation == generation)?;
        let pm = &model.partitions[partition as usize];
        let dir = pm.dir.display().to_string();
        let damage: Vec<super::Damage> = world.faults.damage_in(&pm.dir).cloned().collect();
        let offset = request.offset;
        let fetch = match result {
            Ok(fetch) => fetch,
            Err(Error::OffsetOutOfRange {
                offset: o, log_start_offset, high_watermark, ..
            }) => {
                assert_eq!(o, offset);
                assert!(
                    offset < log_start_offset || offset > high_watermark,
                    "{dir}: offset {offset} reported out of range [{log_start_offset}, \
                     {high_watermark}]"
                );
                world.count("reads out of range verified", 1);
                return None;
            }
            Err(Error::Corrupt { path, position, reason }) => {
                let hit = damage.iter().find(|d| d.path == path && d.position == position);
                let Some(hit) = hit else {
                    panic!(
                        "{dir}: read {request:?} failed with corruption at {}:{position} \
                         ({reason}), where no damage was injected (injected: {damage:?})",
                        path.display()
                    )
                };
                assert!(
                    hit.may_fail_read_of(offset),
                    "{dir}: read {request:?} failed on the damaged batch at {} (offsets {}..={}), \
                     which neither holds the offset asked for nor lies on the way to it \
                     (intact batches must stay readable): {reason}",
                    hit.position,
                    hit.base_offset,
                    hit.last_offset
                );
                if offset > hit.last_offset {
                    world.count("reads past a damaged batch refused (Corrupt)", 1);
                    // A sequential reader cannot get past it: go on after the batch asked for.
                    let next = hit.batches.iter().find(|(_, b, l)| (*b..=*l).contains(&offset));
                    return Some(next.map_or(offset + 1, |&(_, _, last)| last + 1));
                }
                world.count("reads of damaged batches refused (Corrupt)", 1);
                return Some(hit.last_offset + 1);
            }
            Err(Error::Io { .. } | Error::NoSpace { .. }) if faults_fired => {
                world.count("reads failed on injected errors", 1);
                return None;
            }
            Err(_) if excused || world.crashed() => return None,
            Err(err) => panic!("{dir}: read {request:?} failed: {err:?}"),
        };
        let visible = match request.isolation {
            Isolation::Written => fetch.high_watermark(),
            Isolation::Durable => fetch.durable_offset(),
        };
        assert!(fetch.durable_offset() <= fetch.high_watermark(), "{dir}: {fetch:?}");
        assert!(
            offset >= fetch.log_start_offset() && offset <= fetch.high_watermark(),
            "{dir}: read at {offset} answered although outside [{}, {}]",
            fetch.log_start_offset(),
            fetch.high_watermark()
        );
        assert!(
            fetch.high_watermark() <= pm.submitted(),
            "{dir}: high watermark {} beyond every record submitted ({})",
            fetch.high_watermark(),
            pm.submitted()
        );
        if fetch.is_empty() {
            assert!(
                offset >= visible,
                "{dir}: empty fetch at {offset}, below the visible end {visible} ({request:?})"
            );
            world.count("empty reads verified", 1);
            return Some(offset);
        }
        let first = match fetch.batches().next() {
            Some(Ok(batch)) => batch.total_len(),
            other => panic!("{dir}: fetch whose first batch does not parse: {other:?}"),
        };
        assert!(
            fetch.len_bytes() <= request.max_bytes.max(first),
            "{dir}: fetch of {} bytes for max_bytes {} (first batch {first} bytes)",
            fetch.len_bytes(),
            request.max_bytes
        );
        let mut expect = offset;
        for record in fetch.records() {
            let record = record.unwrap_or_else(|e| {
                panic!("{dir}: fetch at {offset} returned an undecodable record: {e}")
            });
            assert_eq!(
                record.offset() as u64,
                expect,
                "{dir}: read {request:?} returned offset {} where {expect} was due",
                record.offset()
            );
            assert!(
                expect < visible,
                "{dir}: read {request:?} returned offset {expect}, not visible (visible end \
                 {visible})"
            );
            let rec = pm.record(expect);
            let headers: Vec<(String, Option<Vec<u8>>)> = record
                .headers()
                .map(|h| {
                    let h = h.unwrap_or_else(|e| panic!("{dir}: bad header at {expect}: {e}"));
                    (String::from_utf8_lossy(h.key).into_owned(), h.value.map(<[u8]>::to_vec))
                })
                .collect();
            let same = record.key() == rec.key.as_deref()
                && record.value() == rec.value.as_deref()
                && record.timestamp() == rec.timestamp
                && headers == rec.headers;
            assert!(
                same,
                "{dir}: record {expect} read back differs from what was appended:\n  read   \
                 {record:?}\n  model  {rec:?}"
            );
            if damage.iter().any(|d| (d.base_offset..=d.last_offset).contains(&expect)) {
                world.count("damaged batches served intact from memory", 1);
            }
            expect += 1;
        }
        assert!(expect > offset, "{dir}: non-empty fetch at {offset} without records from it");
        world.count("records verified", expect - offset);
        world.count("reads verified", 1);
        Some(expect)
    }

    fn lookup(&mut self, world: &mut World) {
        let Some((topic, partition)) = self.pick_partition(world) else { return };
        let pm = &self.topics[&topic].partitions[partition as usize];
        let seen = pm.seen.clone();
        let rng = &mut world.rng;
        let target = if seen.high_watermark > seen.log_start && rng.below(4) != 0 {
            let at = rng.between(seen.log_start, seen.high_watermark - 1);
            pm.log[at as usize].timestamp + [-1, 0, 0, 1][rng.index(4)]
        } else {
            [i64::MIN, -1, 0, world.wall_max_ms, world.wall_max_ms + 86_400_000, i64::MAX]
                [rng.index(6)]
        };
        let engine = world.engine();
        let before = engine.partition_info(&topic, partition);
        let faults = hard_faults(&world.disk);
        let result = engine.offset_for_timestamp(&topic, partition, target);
        let fired = hard_faults(&world.disk) > faults;
        let after = engine.partition_info(&topic, partition);
        let (before, after) = match (before, after) {
            (Ok(b), Ok(a)) => (b, a),
            _ if world.crashed() => return,
            (b, a) => panic!("partition_info around a lookup: {b:?} {a:?}"),
        };
        self.observe(world, &topic, partition, &before);
        self.observe(world, &topic, partition, &after);
        world.trace(format!("lookup {topic}/{partition} at {target}: {result:?}"));
        let pm = &self.topics[&topic].partitions[partition as usize];
        let dir = pm.dir.display().to_string();
        let ts = |o: u64| pm.log[o as usize].timestamp;
        match result {
            Ok(Some(found)) => {
                assert!(
                    found >= before.log_start_offset && found < after.high_watermark,
                    "{dir}: lookup of {target} found {found}, outside [{}, {})",
                    before.log_start_offset,
                    after.high_watermark
                );
                assert!(
                    ts(found) >= target,
                    "{dir}: lookup of {target} found {found} at {}",
                    ts(found)
                );
                let from = after.log_start_offset.min(found);
                if let Some(earlier) = (from..found).find(|&o| ts(o) >= target) {
                    panic!(
                        "{dir}: lookup of {target} found {found}, but {earlier} (timestamp {}) \
                         comes first",
                        ts(earlier)
                    );
                }
            }
            Ok(None) => {
                let range = after.log_start_offset..before.high_watermark;
                if let Some(missed) = range.clone().find(|&o| ts(o) >= target) {
                    panic!(
                        "{dir}: lookup of {target} found nothing, but {missed} (timestamp {}) \
                         qualifies",
                        ts(missed)
                    );
                }
            }
            Err(Error::Corrupt { path, .. }) => {
                assert!(
                    world.faults.damage_in(&pm.dir).any(|d| d.path == path),
                    "{dir}: lookup failed with corruption in {} where none was injected",
                    path.display()
                );
                world.count("lookups refused on damaged batches", 1);
                return;
            }
            Err(Error::Io { .. } | Error::NoSpace { .. }) if fired => return,
            Err(_) if world.crashed() => return,
            Err(err) => panic!("{dir}: lookup of {target}: {err:?}"),
        }
        world.count("timestamp lookups verified", 1);
    }

    /// Let everything settle, run maintenance, and check that retention deleted what was due
    /// (and only that: `observe` checks every deletion).
    fn retention(&mut self, world: &mut World) {
        world.settle();
        if world.crashed() || !self.observe_all(world) {
            return;
        }
        let active_before: BTreeMap<(String, u32), u64> = self
            .topics
            .values()
            .flat_map(|t| {
                t.partitions.iter().enumerate().map(move |(p, pm)| {
                    let active = pm.seen.segments.last().map_or(0, |s| s.base_offset);
                    ((t.name.clone(), p as u32), active)
                })
            })
            .collect();
        let now = world.now_ms();
        world.trace("maintenance (retention check)");
        // Twice, settling in between: a segment rolled or still closing during the first
        // pass (its close's fdatasync in flight) is rightly kept by it, and must go by the
        // second.
        for _ in 0..2 {
            if world.engine().run_maintenance().is_err() {
                assert!(world.crashed(), "run_maintenance failed");
                return;
            }
            world.settle();
            if world.crashed() || !self.observe_all(world) {
                return;
            }
        }
        for topic in self.topics.values() {
            let (retention_bytes, retention_ms) =
                (topic.config.retention_bytes, topic.config.retention_ms);
            for (p, pm) in topic.partitions.iter().enumerate() {
                if pm.seen.failed.is_some() || world.faults.may_fail(&pm.dir) {
                    continue; // a failed partition's closes never finish
                }
                let segments = &pm.seen.segments;
                let total: u64 = segments.iter().map(|s| s.size_bytes).sum();
                let oldest = &segments[0];
                if oldest.active
                    || oldest.base_offset == active_before[&(topic.name.clone(), p as u32)]
                {
                    continue;
                }
                let by_age = retention_ms.is_some_and(|ms| {
                    oldest.max_timestamp != -1
                        && now.saturating_sub(oldest.max_timestamp) > ms as i64
                });
                let by_size = retention_bytes.is_some_and(|b| total - oldest.size_bytes >= b);
                assert!(
                    !by_age && !by_size,
                    "{}: retention kept segment {} (newest record {}, {} of {total} bytes) \
                     that is due (now {now}, retention {retention_ms:?} ms / \
                     {retention_bytes:?} bytes)",
                    pm.dir.display(),
                    oldest.base_offset,
                    oldest.max_timestamp,
                    oldest.size_bytes
                );
            }
        }
        world.count("retention checks", 1);
    }

    /// After a restart: the partition holds what it must, and exactly the model's records.
    fn verify_recovered(
        &mut self,
        world: &mut World,
        topic: &str,
        partition: u32,
        restart: Restart,
    ) {
        let info = world
            .engine()
            .partition_info(topic, partition)
            .unwrap_or_else(|e| panic!("partition_info {topic}/{partition} after a restart: {e}"));
        let model = self.topics.get_mut(topic).expect("verified topics are live");
        let pm = &mut model.partitions[partition as usize];
        let dir = pm.dir.display().to_string();
        assert_eq!(info.failed, None, "{dir}: failed right after opening");
        assert_eq!(info.high_watermark, info.next_offset, "{dir}: after recovery {info:?}");
        assert_eq!(info.durable_offset, info.high_watermark, "{dir}: recovery syncs what it keeps");
        let hw = info.high_watermark;
        let accepted = pm.log.len() as u64;
        while (pm.log.len() as u64) < hw {
            let Some(append) = pm.unplaced.pop_front() else {
                panic!(
                    "{dir}: {hw} records after recovery, but only {} were ever accepted",
                    pm.log.len()
                )
            };
            let at = pm.log.len() as u64;
            assert!(
                at + append.records.len() as u64 <= hw,
                "{dir}: recovery kept part of a batch (offsets {at}..{} up to {hw})",
                at + append.records.len() as u64
            );
            pm.push(append.records);
        }
        pm.unplaced.clear();
        let keep = pm.keep;
        let (floor, exact) = if restart.power_lost {
            (keep.floor_power_lost, keep.exact_power_lost)
        } else {
            (keep.floor, keep.exact)
        };
        assert!(
            hw >= floor,
            "{dir}: acknowledged records lost: recovered up to {hw}, but everything below \
             {floor} had to survive ({restart:?}; durable floor {}, visible floor {})",
            pm.durable_floor,
            pm.visible_floor
        );
        if exact {
            assert_eq!(
                hw, accepted,
                "{dir}: after a clean close, {hw} of {accepted} accepted records came back"
            );
        }
        assert!(
            hw == pm.log.len() as u64 || pm.log[hw as usize].batch_base == hw,
            "{dir}: recovery cut the log inside a batch, at {hw}"
        );
        world.count(
            "records taken back by power loss (never acknowledged durable)",
            pm.log.len() as u64 - hw,
        );
        pm.log.truncate(hw as usize);
        let log_start = info.log_start_offset;
        if log_start < pm.seen.log_start {
            assert!(
                restart.power_lost,
                "{dir}: log start went back from {} to {log_start} over a clean restart",
                pm.seen.log_start
            );
            world.count("retention deletions undone by power loss", 1);
        }
        pm.seen = Seen::default();
        pm.durable_floor = 0;
        pm.visible_floor = 0;
        pm.keep = Keep::default();
        self.observe(world, topic, partition, &info);
        // Read everything back.
        let generation = self.topics[topic].generation;
        let mut offset = log_start;
        let mut reads = 0;
        while offset < hw {
            let max_bytes = [1, 700, 64 * 1024, 1024 * 1024][world.rng.index(4)];
            let request = ReadRequest::new(offset).max_bytes(max_bytes);
            let result = world.engine().read(topic, partition, request);
            let next = self
                .verify_read(world, topic, generation, partition, &request, result, false, false)
                .unwrap_or_else(|| panic!("{dir}: reading back at {offset} failed"));
            assert!(next > offset, "{dir}: reading back made no progress at {offset}");
            offset = next;
            reads += 1;
            assert!(reads < 1_000_000, "{dir}: reading back does not end");
        }
        world.count("records verified after restarts", hw - log_start);
    }
}

impl Feature for LogFeature {
    fn name(&self) -> &'static str {
        "log"
    }

    fn start(&mut self, world: &mut World) {
        for _ in 0..world.rng.between(1, 3) {
            self.create_topic(world);
        }
    }

    fn operations(&self, _world: &World) -> Vec<(&'static str, u32)> {
        let mut ops = vec![("create_bad_topic", 1)];
        if self.live_partitions() < PARTITIONS_MAX {
            ops.push(("create_topic", if self.topics.is_empty() { 50 } else { 2 }));
        }
        if !self.topics.is_empty() {
            ops.extend([
                ("append", 40),
                ("append_sync", 4),
                ("send_keyed", 4),
                ("append_limit", 2),
                ("append_invalid", 1),
                ("read", 16),
                ("read_parked", 4),
                ("lookup", 6),
                ("retention", 3),
                ("maintenance", 3),
            ]);
        }
        if self.topics.len() > 1 {
            ops.push(("delete_topic", 1));
        }
        ops
    }

    fn run(&mut self, operation: &'static str, world: &mut World) {
        match operation {
            "create_topic" => self.create_topic(world),
            "create_bad_topic" => self.create_bad_topic(world),
            "delete_topic" => self.delete_topic(world),
            "append" => {
                for _ in 0..world.rng.between(1, 4) {
                    self.append(world, "append");
                }
            }
            "append_sync" | "send_keyed" | "append_limit" => self.append(world, operation),
            "append_invalid" => self.append_invalid(world),
            "read" => self.read(world, false),
            "read_parked" => self.read(world, true),
            "lookup" => self.lookup(world),
            "retention" => self.retention(world),
            "maintenance" => {
                if world.engine().run_maintenance().is_err() {
                    assert!(world.crashed(), "run_maintenance failed");
                }
            }
            other => unreachable!("unknown log operation {other}"),
        }
    }

    fn check(&mut self, world: &mut World) {
        let mut names: Vec<String> = self.topics.keys().cloned().collect();
        names.sort();
        assert_eq!(world.engine().topics(), names, "the engine's topics differ from the model's");
        if !self.observe_all(world) {
            return;
        }
        self.harvest(world, false, false);
        let now = tidelog_io::Clock::monotonic_ns(&world.clock);
        let mut overdue = false;
        for read in &mut self.reads {
            let live =
                self.topics.get(&read.topic).is_some_and(|t| t.generation == read.generation);
            let wait = u64::try_from(read.request.max_wait.as_nanos()).unwrap_or(u64::MAX);
            let deadline = *read.deadline_ns.get_or_insert(now + wait);
            overdue |= live && now >= deadline;
        }
        if overdue {
            // Past its deadline a read is answered — at once if the tail cache serves it, else
            // when its segment read completes, which the interposer may hold back: let the
            // shards run until their completions are back.
            world.settle();
            self.harvest(world, false, false);
        }
        for read in &self.reads {
            let live =
                self.topics.get(&read.topic).is_some_and(|t| t.generation == read.generation);
            let deadline = read.deadline_ns.unwrap_or(u64::MAX);
            assert!(
                !live || now < deadline,
                "a long-poll read of {}/{} ({:?}) is unanswered past its deadline",
                read.topic,
                read.partition,
                read.request
            );
        }
    }

    fn before_shutdown(&mut self, world: &mut World, clean_close: bool) {
        if clean_close && self.observe_all(world) {
            self.harvest(world, false, false);
        }
    }

    fn on_shutdown(&mut self, world: &mut World, restart: Restart) {
        // The engine is gone: every request has its answer.
        self.harvest(world, restart.power_lost, true);
        assert!(self.appends.is_empty(), "appends unanswered after the engine closed");
        assert!(self.reads.is_empty(), "reads unanswered after the engine closed");
        self.placements.clear();
        let uncertain = self.uncertain.values_mut().flatten();
        for topic in self.topics.values_mut().chain(uncertain) {
            for pm in &mut topic.partitions {
                let may_fail = world.faults.may_fail(&pm.dir) || pm.seen.failed.is_some();
                let all = pm.log.len() as u64;
                let strict = restart.clean_close && !may_fail;
                if strict {
                    assert!(
                        pm.unplaced.is_empty(),
                        "{}: appends left unplaced at a clean close",
                        pm.dir.display()
                    );
                }
                pm.keep = Keep {
                    floor: if strict {
                        all
                    } else if restart.clean_close {
                        pm.visible_floor
                    } else {
                        pm.durable_floor
                    },
                    exact: strict,
                    floor_power_lost: if strict { all } else { pm.durable_floor },
                    exact_power_lost: strict,
                };
            }
        }
    }

    fn after_restart(&mut self, world: &mut World, restart: Restart) {
        let present = world.engine().topics();
        for name in &present {
            if self.topics.contains_key(name) {
                continue;
            }
            match self.uncertain.remove(name) {
                Some(Some(mut model)) => {
                    world.trace(format!("topic {name}, whose deletion failed, is back"));
                    for pm in &mut model.partitions {
                        pm.keep.exact = false;
                        pm.keep.exact_power_lost = false;
                    }
                    self.topics.insert(name.clone(), model);
                }
                Some(None) => {
                    world.trace(format!("topic {name}, whose creation failed, exists"));
                    let config = world.engine().topic_config(name).expect("listed topic");
                    self.next_generation += 1;
                    self.topics
                        .insert(name.clone(), TopicModel::new(name, self.next_generation, config));
                }
                None => panic!("topic {name} appeared after a restart; it was never created"),
            }
        }
        for name in self.topics.keys() {
            assert!(
                present.contains(name),
                "topic {name} is gone after a restart ({restart:?}), though its creation was \
                 acknowledged"
            );
        }
        self.uncertain.clear();
        let targets: Vec<(String, u32)> = self
            .topics
            .values()
            .flat_map(|t| (0..t.config.partitions).map(move |p| (t.name.clone(), p)))
            .collect();
        for (topic, partition) in targets {
            self.verify_recovered(world, &topic, partition, restart);
        }
    }
}
