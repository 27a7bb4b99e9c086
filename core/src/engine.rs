//! The embedding API: [`Engine`].
//!
//! An `Engine` is a cheap, cloneable handle usable from any number of threads. Requests go
//! to the shard that owns the partition (a pure function of topic, partition and shard
//! count); records are encoded into a Kafka v2 batch on the calling thread, so producers
//! spend their own CPU on encoding and checksums, not the shard's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tidelog_io::{BackendKind, DirLock, Storage};

use crate::completion::{self, Pending};
use crate::config::{Durability, EngineConfig, SegmentPreparation, TopicConfig};
use crate::error::{Error, Result};
use crate::limits;
use crate::partition::{
    AppendResult, Fetch, PartitionInfo, ReadRequest, ShardSettings, Subscription,
};
use crate::partitioner::{RoundRobin, partition_for_key};
use crate::record::{BatchOptions, Record, encode_batch};
use crate::shard::task::{LocalTarget, ShardTask};
use crate::shard::{self, PartitionKey, Request, ShardHandle, Target};
use crate::topic::{self, TOPIC_META_FILE, TopicMeta};

/// Directory under the data directory holding one directory per topic.
const TOPICS_DIR: &str = "topics";
/// Directory where deleted topics go before their files are removed.
const TRASH_DIR: &str = "trash";

/// A topic as the engine knows it.
#[derive(Debug)]
struct TopicEntry {
    name: Arc<str>,
    meta: TopicMeta,
    config: Arc<TopicConfig>,
    round_robin: RoundRobin,
}

/// A topic's configuration and partitions, as [`Engine::describe_topic`] reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicDescription {
    /// Topic name.
    pub name: String,
    /// Configuration.
    pub config: TopicConfig,
    /// Creation time (Unix ms).
    pub created_ms: i64,
    /// Every partition's state.
    pub partitions: Vec<PartitionInfo>,
}

struct Inner {
    dir: PathBuf,
    config: EngineConfig,
    backend: BackendKind,
    shards: Vec<ShardHandle>,
    topics: RwLock<HashMap<String, Arc<TopicEntry>>>,
    /// The highest topic id used by this engine or found on disk: ids are never reused, also
    /// not those of topics deleted or whose creation failed (their files may be left behind).
    last_topic_id: AtomicU64,
    /// Storage for catalog operations on the caller's thread (topic create/delete).
    control: Mutex<Box<dyn Storage>>,
    closed: AtomicBool,
    /// Held until closed.
    lock: Mutex<Option<DirLock>>,
}

/// An open data directory. See the crate documentation for an example.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("dir", &self.inner.dir)
            .field("backend", &self.inner.backend)
            .field("shards", &self.inner.shards.len())
            .finish()
    }
}

fn lock_poisoned<T>(poisoned: std::sync::PoisonError<T>) -> T {
    // Every critical section here leaves the data consistent before anything that could
    // panic, so a poisoned lock's contents are still valid.
    poisoned.into_inner()
}

impl Engine {
    /// Open the data directory `dir` (created if missing), recovering every partition.
    ///
    /// Raises the process's soft `RLIMIT_NOFILE` to its hard limit (each partition keeps
    /// [`limits::FILE_DESCRIPTORS_PER_PARTITION`] files open), and fails with
    /// [`Error::ResourceLimit`] if the partitions of the existing topics would still not fit
    /// under it; with [`Error::DirectoryInUse`] if another engine has the directory open.
    pub fn open(dir: impl AsRef<Path>, config: EngineConfig) -> Result<Engine> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let factory = config.storage_factory()?;
        if factory.kind() != BackendKind::Simulated {
            raise_open_files_limit();
        }
        let mut control = factory.create().map_err(|e| Error::io("create storage", &dir, e))?;
        tidelog_io::storage::create_dir_all_durable(&mut *control, &dir)
            .map_err(|e| Error::io("create directory", &dir, e))?;
        let lock = control.lock_dir(&dir).map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock => Error::DirectoryInUse { path: dir.clone() },
            _ => Error::io("lock", dir.join("LOCK"), e),
        })?;
        let topics = load_catalog(&mut *control, &dir)?;
        if factory.kind() != BackendKind::Simulated {
            let partitions = topics.iter().map(|t| u64::from(t.config().partitions)).sum();
            check_open_files(partitions, config.segment_preparation, || {
                format!("the {} partitions of the {} existing topic(s)", partitions, topics.len())
            })?;
        }

        let settings = ShardSettings {
            preparation: config.segment_preparation,
            write_buffer_bytes: config.write_buffer_bytes,
            tail_cache_bytes_per_shard: config.tail_cache_bytes_per_shard,
            direct_io: config.direct_io,
            inline_sync: config.inline_sync,
        };
        let cpus = if config.pin_shards {
            tidelog_io::cpu::allowed_cpus().unwrap_or_default()
        } else {
            Vec::new()
        };
        let mut shards = Vec::with_capacity(config.shards);
        for index in 0..config.shards {
            let pin_to = (!cpus.is_empty()).then(|| cpus[index % cpus.len()]);
            let started = if config.manual_shards {
                shard::manual(
                    index,
                    factory.clone(),
                    config.clock.clone(),
                    settings.clone(),
                    config.maintenance_interval_ms,
                )
            } else {
                shard::spawn(
                    index,
                    factory.clone(),
                    config.clock.clone(),
                    settings.clone(),
                    config.maintenance_interval_ms,
                    shard::ShardThread {
                        pin_to,
                        scheduler_slice: config.shard_scheduler_slice,
                        idle_poll: config.idle_poll,
                    },
                )
            };
            match started {
                Ok(shard) => shards.push(shard),
                Err(err) => {
                    shard::stop_all(&shards);
                    return Err(err);
                }
            }
        }
        let engine = Engine {
            inner: Arc::new(Inner {
                dir,
                backend: factory.kind(),
                config,
                shards,
                topics: RwLock::new(HashMap::new()),
                last_topic_id: AtomicU64::new(topics.iter().map(|t| t.id).max().unwrap_or(0)),
                control: Mutex::new(control),
                closed: AtomicBool::new(false),
                lock: Mutex::new(Some(lock)),
            }),
        };
        for meta in topics {
            let entry = engine.open_topic_on_shards(meta)?;
            engine
                .inner
                .topics
                .write()
                .unwrap_or_else(lock_poisoned)
                .insert(entry.name.to_string(), entry);
        }
        tracing::info!(dir = %engine.inner.dir.display(), backend = %engine.inner.backend, shards = engine.inner.shards.len(), "engine open");
        Ok(engine)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The I/O backend in use.
    pub fn backend(&self) -> BackendKind {
        self.inner.backend
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.inner.shards.len()
    }

    /// The shard that owns a partition (a pure function: see [`topic::shard_for`]).
    pub fn shard_of(&self, topic: &str, partition: u32) -> usize {
        topic::shard_for(topic, partition, self.inner.shards.len())
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) { Err(Error::Closed) } else { Ok(()) }
    }

    fn topic(&self, name: &str) -> Result<Arc<TopicEntry>> {
        self.check_open()?;
        self.inner
            .topics
            .read()
            .unwrap_or_else(lock_poisoned)
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownTopic { topic: name.to_string() })
    }

    fn target(&self, entry: &TopicEntry, partition: u32) -> Result<(Target, usize)> {
        if partition >= entry.config.partitions {
            return Err(Error::PartitionOutOfRange {
                topic: entry.name.to_string(),
                partition,
                partitions: entry.config.partitions,
            });
        }
        let target = Target {
            topic: entry.name.clone(),
            key: PartitionKey { topic_id: entry.meta.id, partition },
        };
        Ok((target, self.shard_of(&entry.name, partition)))
    }

    fn submit<T>(&self, shard: usize, request: Request, pending: Pending<T>) -> Pending<T> {
        if let Err((shard::mailbox::SendError::Stopped(reason), request)) =
            self.inner.shards[shard].mailbox.send(request)
        {
            request.fail(|| {
                if self.inner.closed.load(Ordering::Acquire) {
                    Error::Closed
                } else {
                    Error::ShardStopped { shard, reason: reason.clone() }
                }
            });
        }
        pending
    }

    // ------------------------------------------------------------------------------------
    // Topics
    // ------------------------------------------------------------------------------------

    /// Create a topic.
    pub fn create_topic(&self, name: &str, config: TopicConfig) -> Result<()> {
        self.check_open()?;
        topic::validate_name(name)?;
        config.validate()?;
        let mut topics = self.inner.topics.write().unwrap_or_else(lock_poisoned);
        if topics.contains_key(name) {
            return Err(Error::TopicExists { topic: name.to_string() });
        }
        if topics.len() >= limits::TOPICS_MAX {
            return Err(Error::config(
                "topics",
                format!("an engine holds at most {}", limits::TOPICS_MAX),
            ));
        }
        let now = self.inner.config.clock.now_ms();
        // Under the topics lock: no other creation runs meanwhile.
        let last = self.inner.last_topic_id.load(Ordering::Acquire);
        let id = (last + 1).max((now.max(0) as u64) << 10);
        self.inner.last_topic_id.store(id, Ordering::Release);
        if self.inner.backend != BackendKind::Simulated {
            check_open_files(
                u64::from(config.partitions),
                self.inner.config.segment_preparation,
                || format!("the {} partitions of new topic {name:?}", config.partitions),
            )?;
        }
        let meta = TopicMeta::new(name, id, now, &config);
        let topics_dir = self.inner.dir.join(TOPICS_DIR);
        let topic_dir = topics_dir.join(name);
        let created = {
            let mut control = self.inner.control.lock().unwrap_or_else(lock_poisoned);
            create_topic_dir(&mut **control, &topics_dir, &topic_dir, &meta)
        };
        match created.and_then(|()| self.open_topic_on_shards(meta)) {
            Ok(entry) => {
                topics.insert(name.to_string(), entry);
                tracing::info!(topic = name, partitions = config.partitions, "created topic");
                Ok(())
            }
            Err(err) => {
                // The partitions that did open were closed: remove everything created, so
                // the next open does not bring back a topic that never was.
                let mut control = self.inner.control.lock().unwrap_or_else(lock_poisoned);
                if let Err(cleanup) = discard_topic_dir(&mut **control, &self.inner.dir, name, id)
                    && !matches!(&cleanup, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
                {
                    // The next open removes a topic whose metadata is missing, but not one
                    // whose metadata was written: say so.
                    tracing::error!(topic = name, error = %cleanup, "cannot remove a topic whose creation failed");
                }
                tracing::debug!(topic = name, error = %err, "topic creation failed; removed what it created");
                Err(err)
            }
        }
    }

    fn open_topic_on_shards(&self, meta: TopicMeta) -> Result<Arc<TopicEntry>> {
        let name: Arc<str> = Arc::from(meta.name.as_str());
        let config = Arc::new(meta.config());
        let dir = self.inner.dir.join(TOPICS_DIR).join(&meta.name);
        let mut by_shard: Vec<Vec<u32>> = vec![Vec::new(); self.inner.shards.len()];
        for partition in 0..config.partitions {
            by_shard[self.shard_of(&name, partition)].push(partition);
        }
        let mut waits = Vec::new();
        for (shard, partitions) in by_shard.into_iter().enumerate() {
            if partitions.is_empty() {
                continue;
            }
            let (reply, pending) = completion::channel();
            let request = Request::OpenTopic {
                topic: name.clone(),
                topic_id: meta.id,
                config: config.clone(),
                dir: dir.clone(),
                partitions,
                reply,
            };
            waits.push(self.submit(shard, request, pending));
        }
        let mut first_error = None;
        for wait in waits {
            if let Err(err) = self.block_on(wait) {
                first_error.get_or_insert(err);
            }
        }
        if let Some(err) = first_error {
            // Best effort: release what did open; the open error is what the caller needs.
            let _ = self.close_topic_on_shards(meta.id);
            return Err(err);
        }
        Ok(Arc::new(TopicEntry { name, meta, config, round_robin: RoundRobin::default() }))
    }

    fn close_topic_on_shards(&self, topic_id: u64) -> Result<()> {
        let waits: Vec<_> = (0..self.inner.shards.len())
            .map(|shard| {
                let (reply, pending) = completion::channel();
                self.submit(shard, Request::CloseTopic { topic_id, reply }, pending)
            })
            .collect();
        let mut result = Ok(());
        for wait in waits {
            if let Err(err) = self.block_on(wait) {
                result = result.and(Err(err));
            }
        }
        result
    }

    /// Delete a topic and all its records. Appends and reads in flight on it fail with
    /// [`Error::UnknownTopic`].
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        self.check_open()?;
        let mut topics = self.inner.topics.write().unwrap_or_else(lock_poisoned);
        let entry =
            topics.remove(name).ok_or_else(|| Error::UnknownTopic { topic: name.to_string() })?;
        drop(topics);
        let closed = self.close_topic_on_shards(entry.meta.id);
        let mut control = self.inner.control.lock().unwrap_or_else(lock_poisoned);
        discard_topic_dir(&mut **control, &self.inner.dir, name, entry.meta.id)?;
        tracing::info!(topic = name, "deleted topic");
        closed
    }

    /// Names of all topics, sorted.
    pub fn topics(&self) -> Vec<String> {
        let mut names: Vec<String> =
            self.inner.topics.read().unwrap_or_else(lock_poisoned).keys().cloned().collect();
        names.sort();
        names
    }

    /// A topic's configuration.
    pub fn topic_config(&self, name: &str) -> Result<TopicConfig> {
        Ok((*self.topic(name)?.config).clone())
    }

    /// A topic's configuration and the state of every partition.
    pub fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        let entry = self.topic(name)?;
        let partitions = (0..entry.config.partitions)
            .map(|p| self.partition_info(name, p))
            .collect::<Result<Vec<_>>>()?;
        Ok(TopicDescription {
            name: name.to_string(),
            config: (*entry.config).clone(),
            created_ms: entry.meta.created_ms,
            partitions,
        })
    }

    /// One partition's offsets and segments.
    pub fn partition_info(&self, topic: &str, partition: u32) -> Result<PartitionInfo> {
        let entry = self.topic(topic)?;
        let (target, shard) = self.target(&entry, partition)?;
        let (reply, pending) = completion::channel();
        self.block_on(self.submit(shard, Request::Info { target, reply }, pending))
    }

    // ------------------------------------------------------------------------------------
    // Appends
    // ------------------------------------------------------------------------------------

    /// The partition a record with `key` goes to: Kafka's default partitioner (murmur2 of
    /// the key) for keyed records, round-robin for unkeyed ones.
    pub fn partition_for(&self, topic: &str, key: Option<&[u8]>) -> Result<u32> {
        let entry = self.topic(topic)?;
        Ok(match key {
            Some(key) => partition_for_key(key, entry.config.partitions),
            None => entry.round_robin.next(entry.config.partitions),
        })
    }

    /// Append records to one partition and wait until `durability` is reached. Returns the
    /// offsets assigned.
    ///
    /// ```
    /// # use tidelog_core::{Engine, EngineConfig, TopicConfig, Durability, Record};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let engine = Engine::open(dir.path(), EngineConfig::default())?;
    /// engine.create_topic("events", TopicConfig::default())?;
    /// let appended = engine.append("events", 0, &[Record::new(b"hello")], Durability::Durable)?;
    /// assert_eq!(appended.base_offset, 0);
    /// # engine.close()?;
    /// # Ok::<(), tidelog_core::Error>(())
    /// ```
    pub fn append(
        &self,
        topic: &str,
        partition: u32,
        records: &[Record<'_>],
        durability: Durability,
    ) -> Result<AppendResult> {
        self.block_on(self.append_async(topic, partition, records, durability))
    }

    /// Append records to one partition without waiting: the returned [`Pending`] completes
    /// when `durability` is reached. Appends from one thread to one partition are applied in
    /// the order they are made.
    pub fn append_async(
        &self,
        topic: &str,
        partition: u32,
        records: &[Record<'_>],
        durability: Durability,
    ) -> Pending<AppendResult> {
        let prepared = self.topic(topic).and_then(|entry| {
            if records.is_empty() {
                return Err(Error::EmptyBatch);
            }
            if records.len() > limits::BATCH_RECORDS_MAX {
                return Err(Error::BatchTooLarge {
                    size: records.len(),
                    max: limits::BATCH_RECORDS_MAX,
                });
            }
            let batch =
                encode_batch(records, self.inner.config.clock.now_ms(), BatchOptions::default());
            Ok((entry, batch))
        });
        match prepared {
            Ok((entry, batch)) => self.append_encoded(&entry, partition, batch, durability),
            Err(err) => Pending::ready(Err(err)),
        }
    }

    /// Append one record to the partition the partitioner picks (see
    /// [`Engine::partition_for`]).
    pub fn send(
        &self,
        topic: &str,
        record: &Record<'_>,
        durability: Durability,
    ) -> Pending<AppendResult> {
        match self.partition_for(topic, record.key) {
            Ok(partition) => {
                self.append_async(topic, partition, std::slice::from_ref(record), durability)
            }
            Err(err) => Pending::ready(Err(err)),
        }
    }

    /// Append a batch already encoded in Kafka's v2 format (for example one received from a
    /// Kafka client). Its base offset is replaced; it is validated in full.
    pub fn append_batch(
        &self,
        topic: &str,
        partition: u32,
        batch: Vec<u8>,
        durability: Durability,
    ) -> Pending<AppendResult> {
        match self.topic(topic) {
            Ok(entry) => self.append_encoded(&entry, partition, batch, durability),
            Err(err) => Pending::ready(Err(err)),
        }
    }

    fn append_encoded(
        &self,
        entry: &TopicEntry,
        partition: u32,
        batch: Vec<u8>,
        durability: Durability,
    ) -> Pending<AppendResult> {
        let max = entry.config.record_size_bytes_max as usize;
        if batch.len() > max {
            return Pending::ready(Err(Error::RecordTooLarge {
                topic: entry.name.to_string(),
                size: batch.len(),
                max,
            }));
        }
        let (target, shard) = match self.target(entry, partition) {
            Ok(found) => found,
            Err(err) => return Pending::ready(Err(err)),
        };
        let (reply, pending) = completion::channel();
        self.submit(shard, Request::Append { target, batch, durability, reply }, pending)
    }

    // ------------------------------------------------------------------------------------
    // Reads
    // ------------------------------------------------------------------------------------

    /// Read whole batches from a partition, starting with the one holding `request.offset`.
    ///
    /// ```
    /// # use tidelog_core::{Engine, EngineConfig, TopicConfig, Durability, Record, ReadRequest};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let engine = Engine::open(dir.path(), EngineConfig::default())?;
    /// # engine.create_topic("events", TopicConfig::default())?;
    /// engine.append("events", 0, &[Record::new(b"a"), Record::new(b"b")], Durability::Written)?;
    /// let fetch = engine.read("events", 0, ReadRequest::new(1))?;
    /// let values: Vec<&[u8]> = fetch.records().map(|r| r.unwrap().value().unwrap()).collect();
    /// assert_eq!(values, [b"b"]);
    /// assert_eq!(fetch.next_offset(), 2);
    /// # Ok::<(), tidelog_core::Error>(())
    /// ```
    pub fn read(&self, topic: &str, partition: u32, request: ReadRequest) -> Result<Fetch> {
        self.block_on(self.read_async(topic, partition, request))
    }

    /// Read without blocking the caller: see [`Engine::read`].
    pub fn read_async(&self, topic: &str, partition: u32, request: ReadRequest) -> Pending<Fetch> {
        self.read_with(topic, partition, request, None)
    }

    /// A read of a streaming consumer's `subscription`: answered with records, it leaves the
    /// next read parked and queued in the subscription.
    pub(crate) fn subscription_read(
        &self,
        topic: &str,
        partition: u32,
        request: ReadRequest,
        subscription: Arc<Subscription>,
    ) -> Pending<Fetch> {
        self.read_with(topic, partition, request, Some(subscription))
    }

    fn read_with(
        &self,
        topic: &str,
        partition: u32,
        request: ReadRequest,
        subscription: Option<Arc<Subscription>>,
    ) -> Pending<Fetch> {
        let checked = self.topic(topic).and_then(|entry| {
            if request.max_bytes > limits::FETCH_BYTES_MAX {
                return Err(Error::config(
                    "max_bytes",
                    format!("must be at most {}", limits::FETCH_BYTES_MAX),
                ));
            }
            if request.max_wait.as_millis() > u128::from(limits::FETCH_WAIT_MS_MAX) {
                return Err(Error::config(
                    "max_wait",
                    format!("must be at most {} ms", limits::FETCH_WAIT_MS_MAX),
                ));
            }
            self.target(&entry, partition)
        });
        match checked {
            Ok((target, shard)) => {
                let (reply, pending) = completion::channel();
                self.submit(shard, Request::Read { target, request, reply, subscription }, pending)
            }
            Err(err) => Pending::ready(Err(err)),
        }
    }

    /// The first offset whose record timestamp is at or after `timestamp_ms`, or `None` if
    /// all retained records are older.
    pub fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: u32,
        timestamp_ms: i64,
    ) -> Result<Option<u64>> {
        let entry = self.topic(topic)?;
        let (target, shard) = self.target(&entry, partition)?;
        let (reply, pending) = completion::channel();
        self.block_on(self.submit(
            shard,
            Request::OffsetForTimestamp { target, timestamp: timestamp_ms, reply },
            pending,
        ))
    }

    // ------------------------------------------------------------------------------------
    // Tasks on shards
    // ------------------------------------------------------------------------------------

    /// A handle for appending to a partition from a task on its shard.
    pub fn local_target(&self, topic: &str, partition: u32) -> Result<LocalTarget> {
        let entry = self.topic(topic)?;
        let (target, shard) = self.target(&entry, partition)?;
        Ok(LocalTarget {
            target,
            shard,
            record_size_bytes_max: entry.config.record_size_bytes_max as usize,
        })
    }

    /// Run `task` on shard `shard` (see [`ShardTask`]): it is polled by the shard's own loop,
    /// and its appends take the local path.
    pub fn spawn_on_shard(&self, shard: usize, task: Box<dyn ShardTask>) -> Result<()> {
        self.check_open()?;
        if shard >= self.inner.shards.len() {
            return Err(Error::config(
                "shard",
                format!("this engine has {} shard(s)", self.inner.shards.len()),
            ));
        }
        let (reply, pending) = completion::channel();
        self.block_on(self.submit(shard, Request::Spawn { task, reply }, pending))
    }

    // ------------------------------------------------------------------------------------
    // Maintenance and shutdown
    // ------------------------------------------------------------------------------------

    /// Run segment-age rolls and retention on every shard now (they also run every
    /// `maintenance_interval_ms`).
    pub fn run_maintenance(&self) -> Result<()> {
        self.check_open()?;
        let waits: Vec<_> = (0..self.inner.shards.len())
            .map(|shard| {
                let (reply, pending) = completion::channel();
                self.submit(shard, Request::Maintain { reply }, pending)
            })
            .collect();
        waits.into_iter().try_for_each(|w| self.block_on(w))
    }

    /// Wait for a result. With threaded shards (the default) this is [`Pending::wait`]; with
    /// manually run shards ([`EngineConfig::manual_shards`]) it runs shard rounds, in order,
    /// until the result is in.
    pub fn block_on<T>(&self, pending: Pending<T>) -> Result<T> {
        if self.inner.shards.iter().any(ShardHandle::is_manual) {
            while !pending.is_ready() {
                if !self.inner.step_all() && !pending.is_ready() {
                    // Nothing moved: only time (a long-poll deadline, the clock) can help.
                    std::thread::yield_now();
                }
            }
        }
        pending.wait()
    }

    /// True when the shards run only when stepped ([`EngineConfig::manual_shards`]).
    pub fn runs_manually(&self) -> bool {
        self.inner.shards.iter().any(ShardHandle::is_manual)
    }

    /// Run one round of every shard, in order (manually run shards only); true if any did
    /// anything.
    pub fn step_all(&self) -> bool {
        self.inner.step_all()
    }

    /// Run one round of shard `shard`'s loop (manually run shards only; see
    /// [`EngineConfig::manual_shards`]). Returns true if the shard did anything.
    pub fn step(&self, shard: usize) -> bool {
        self.inner.shards.get(shard).is_some_and(ShardHandle::step)
    }

    /// Write and sync everything buffered, close all files and stop the shards. Every clone
    /// of this engine is closed. Calling it again does nothing.
    pub fn close(&self) -> Result<()> {
        self.inner.close()
    }
}

impl Inner {
    /// One round of every manually run shard, in order; true if any did anything.
    fn step_all(&self) -> bool {
        let mut progressed = false;
        for shard in &self.shards {
            progressed |= shard.step();
        }
        progressed
    }

    fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let waits: Vec<_> = self
            .shards
            .iter()
            .map(|shard| {
                let (reply, pending) = completion::channel();
                if let Err((_, request)) = shard.mailbox.send(Request::Shutdown { reply }) {
                    request.fail(|| Error::Closed);
                }
                pending
            })
            .collect();
        let mut result = Ok(());
        let manual = self.shards.iter().any(ShardHandle::is_manual);
        for (index, wait) in waits.into_iter().enumerate() {
            // A manual shard runs only when stepped: keep stepping until it has shut down. A
            // round without progress does not mean it is done — operations may still be in
            // flight, their completions yet to come.
            while manual && !wait.is_ready() {
                if !self.step_all() && !wait.is_ready() {
                    std::thread::yield_now();
                }
            }
            match wait.wait() {
                Ok(()) | Err(Error::Closed) => {}
                Err(err) => {
                    tracing::error!(shard = index, error = %err, "shard shutdown failed");
                    result = result.and(Err(err));
                }
            }
        }
        for (index, shard) in self.shards.iter().enumerate() {
            shard.join();
            if let Some(reason) = shard.mailbox.stopped().filter(|r| *r != "shut down") {
                result = result
                    .and(Err(Error::ShardStopped { shard: index, reason: reason.to_string() }));
            }
        }
        // Every file is closed: another engine may open the directory now.
        self.lock.lock().unwrap_or_else(lock_poisoned).take();
        result
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Err(err) = self.close() {
            tracing::error!(error = %err, "closing the engine on drop failed");
        }
    }
}

/// Create a new topic's directory (durably) and write its metadata.
fn create_topic_dir(
    control: &mut dyn Storage,
    topics_dir: &Path,
    topic_dir: &Path,
    meta: &TopicMeta,
) -> Result<()> {
    control.create_dir_all(topic_dir).map_err(|e| Error::io("create directory", topic_dir, e))?;
    control.sync_dir(topics_dir).map_err(|e| Error::io("sync directory", topics_dir, e))?;
    let meta_path = topic_dir.join(TOPIC_META_FILE);
    tidelog_io::storage::write_file_atomic(control, &meta_path, &meta.encode())
        .map_err(|e| Error::io("write", &meta_path, e))
}

/// Remove topic `name`'s directory, durably: it is renamed into the trash — gone from the
/// catalog once the topics directory is synced — and then removed. An interrupted removal
/// is finished by the next open ([`load_catalog`]).
fn discard_topic_dir(control: &mut dyn Storage, dir: &Path, name: &str, id: u64) -> Result<()> {
    let topics_dir = dir.join(TOPICS_DIR);
    let from = topics_dir.join(name);
    let to = dir.join(TRASH_DIR).join(format!("{name}-{id}"));
    control.rename(&from, &to).map_err(|e| Error::io("rename", &from, e))?;
    control.sync_dir(&topics_dir).map_err(|e| Error::io("sync directory", &topics_dir, e))?;
    control.remove_dir_all(&to).map_err(|e| Error::io("remove", &to, e))
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit: every partition keeps files open.
fn raise_open_files_limit() {
    match tidelog_io::open_files::raise_to_hard_limit() {
        Ok((before, after)) => tracing::debug!(
            soft_before = before.soft,
            soft = after.soft,
            hard = after.hard,
            "RLIMIT_NOFILE"
        ),
        Err(err) => tracing::debug!(error = %err, "cannot raise RLIMIT_NOFILE"),
    }
}

/// Refuse to open `partitions` more partitions if the descriptors they need, with those open
/// now and [`limits::FILE_DESCRIPTORS_HEADROOM`], exceed the soft `RLIMIT_NOFILE`: a clear
/// error before anything is opened rather than `EMFILE` half-way. `what` names the
/// partitions for the message.
fn check_open_files(
    partitions: u64,
    preparation: SegmentPreparation,
    what: impl FnOnce() -> String,
) -> Result<()> {
    let Ok(limit) = tidelog_io::open_files::limit() else {
        return Ok(()); // No limit known: nothing to check against.
    };
    // A prepared spare segment keeps one more file open.
    let per_partition =
        limits::FILE_DESCRIPTORS_PER_PARTITION + u64::from(preparation != SegmentPreparation::Grow);
    let in_use = tidelog_io::open_files::in_use().unwrap_or(0);
    let wanted = partitions.saturating_mul(per_partition);
    let needed = in_use.saturating_add(wanted).saturating_add(limits::FILE_DESCRIPTORS_HEADROOM);
    if needed <= limit.soft {
        return Ok(());
    }
    Err(Error::ResourceLimit {
        what: "RLIMIT_NOFILE (open file descriptors)",
        needed,
        limit: limit.soft,
        detail: format!(
            "{wanted} for {} at {per_partition} each, {in_use} open now, {} headroom; the hard \
             limit is {}: raise it (ulimit -n, systemd LimitNOFILE=) or use fewer partitions",
            what(),
            limits::FILE_DESCRIPTORS_HEADROOM,
            limit.hard,
        ),
    })
}

/// Read the catalog: every topic with its metadata; remove leftovers of interrupted creations
/// and deletions.
fn load_catalog(control: &mut dyn Storage, dir: &Path) -> Result<Vec<TopicMeta>> {
    let topics_dir = dir.join(TOPICS_DIR);
    let trash_dir = dir.join(TRASH_DIR);
    for path in [&topics_dir, &trash_dir] {
        tidelog_io::storage::create_dir_all_durable(control, path)
            .map_err(|e| Error::io("create directory", path, e))?;
    }
    // A deletion interrupted after its rename into the trash: make the rename durable
    // (both directories) before removing anything, or a crash could undo the rename and keep
    // the removals — bringing the topic back without its records.
    for path in [&topics_dir, &trash_dir] {
        control.sync_dir(path).map_err(|e| Error::io("sync directory", path, e))?;
    }
    for entry in control.read_dir(&trash_dir).map_err(|e| Error::io("list", &trash_dir, e))? {
        let path = trash_dir.join(&entry.name);
        let removed =
            if entry.is_dir { control.remove_dir_all(&path) } else { control.remove_file(&path) };
        removed.map_err(|e| Error::io("remove", &path, e))?;
    }
    let mut topics = Vec::new();
    for entry in control.read_dir(&topics_dir).map_err(|e| Error::io("list", &topics_dir, e))? {
        let path = topics_dir.join(&entry.name);
        if !entry.is_dir {
            tracing::warn!(file = %path.display(), "unexpected file in the topics directory");
            continue;
        }
        let meta_path = path.join(TOPIC_META_FILE);
        let bytes = match tidelog_io::storage::read_file(control, &meta_path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(topic = %entry.name, "removing a topic whose creation was interrupted");
                control.remove_dir_all(&path).map_err(|e| Error::io("remove", &path, e))?;
                continue;
            }
            Err(err) => return Err(Error::io("read", &meta_path, err)),
        };
        let meta =
            TopicMeta::decode(&bytes).map_err(|reason| Error::corrupt(&meta_path, 0, reason))?;
        if meta.name != entry.name {
            return Err(Error::corrupt(
                &meta_path,
                0,
                format!("names topic {:?}, but lives in directory {:?}", meta.name, entry.name),
            ));
        }
        meta.config().validate()?;
        if let Some(other) = topics.iter().find(|t: &&TopicMeta| t.id == meta.id) {
            return Err(Error::corrupt(
                &meta_path,
                0,
                format!("topic id {} is also topic {:?}'s", meta.id, other.name),
            ));
        }
        // The partition directories' entries: one may exist only in the page cache (a
        // creation that failed half-way, then a restart without a reboot); a partition's
        // open makes its own directory durable, not the entry naming it.
        control.sync_dir(&path).map_err(|e| Error::io("sync directory", &path, e))?;
        topics.push(meta);
    }
    Ok(topics)
}
