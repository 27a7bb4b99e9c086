//! Reads: fetches by offset (zero-copy views of the bytes read), long-poll waits for new
//! records, and lookups by timestamp.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tidelog_io::FileId;

use crate::completion::{self, Pending, Reply};
use crate::error::{Error, Result};
use crate::limits::{self, BATCH_SIZE_BYTES_MAX, INDEX_INTERVAL_BYTES};
use crate::partition::io::{ReadShape, ShardIo};
use crate::partition::{Partition, recovery};
use crate::record::{BatchIter, BatchView, DecodeError, LOG_OVERHEAD, RecordIter, RecordView};
use crate::segment;

/// Which records a read may see.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Isolation {
    /// Records whose writes have completed (up to the high watermark). They survive a process
    /// crash; a power loss may still take the ones not yet synced.
    #[default]
    Written,
    /// Only records covered by a completed `fdatasync` (up to the durable offset): never a
    /// record that a power loss could take back.
    Durable,
}

/// A read by offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadRequest {
    /// First offset wanted.
    pub offset: u64,
    /// Most bytes to return; at least one whole batch is returned however large it is.
    pub max_bytes: usize,
    /// How long to wait for records when none are available at `offset` yet (0: return an
    /// empty fetch at once).
    pub max_wait: Duration,
    /// Which records are visible.
    pub isolation: Isolation,
}

impl ReadRequest {
    /// Read from `offset` with the default size, no waiting, `Written` isolation.
    pub fn new(offset: u64) -> Self {
        Self {
            offset,
            max_bytes: crate::limits::FETCH_BYTES_DEFAULT,
            max_wait: Duration::ZERO,
            isolation: Isolation::Written,
        }
    }
    /// Set the byte budget.
    pub fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }
    /// Set how long to wait for records.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }
    /// Set the isolation.
    pub fn isolation(mut self, isolation: Isolation) -> Self {
        self.isolation = isolation;
        self
    }
}

/// The result of a read: whole record batches exactly as stored (Kafka v2 format), shared,
/// never copied record by record. The bytes come in one or more chunks (views of the buffers
/// they were read or written from), each holding whole batches.
#[derive(Clone, Debug)]
pub struct Fetch {
    topic: Arc<str>,
    partition: u32,
    offset: u64,
    data: Vec<Bytes>,
    high_watermark: u64,
    log_start_offset: u64,
    durable_offset: u64,
}

impl Fetch {
    /// The topic read.
    pub fn topic(&self) -> &str {
        &self.topic
    }
    /// The partition read.
    pub fn partition(&self) -> u32 {
        self.partition
    }
    /// The offset asked for.
    pub fn requested_offset(&self) -> u64 {
        self.offset
    }
    /// The stored batches as chunks of bytes, in order, ready to be sent to a Kafka client
    /// unchanged (with a vectored write). The first batch may start before the requested
    /// offset.
    pub fn chunks(&self) -> &[Bytes] {
        &self.data
    }
    /// The stored batches as one `Bytes`: a view when they came in one chunk, a copy
    /// otherwise.
    pub fn to_bytes(&self) -> Bytes {
        match self.data.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => Bytes::from(many.concat()),
        }
    }
    /// Total bytes returned.
    pub fn len_bytes(&self) -> usize {
        self.data.iter().map(Bytes::len).sum()
    }
    /// True when no records were returned.
    pub fn is_empty(&self) -> bool {
        self.data.iter().all(Bytes::is_empty)
    }
    /// The batches, as borrowed views.
    pub fn batches(&self) -> FetchBatches<'_> {
        FetchBatches { chunks: self.data.iter(), current: None }
    }
    /// The records at or after the requested offset, as borrowed views.
    pub fn records(&self) -> FetchRecords<'_> {
        FetchRecords { batches: self.batches(), records: None, from: self.offset, failed: false }
    }
    /// The offset to read next: one past the last record returned (the requested offset when
    /// nothing was returned).
    pub fn next_offset(&self) -> u64 {
        self.batches()
            .filter_map(|b| b.ok())
            .last()
            .map_or(self.offset, |b| (b.last_offset() as u64 + 1).max(self.offset))
    }
    /// One past the last written offset when the read was served.
    pub fn high_watermark(&self) -> u64 {
        self.high_watermark
    }
    /// The first retained offset when the read was served.
    pub fn log_start_offset(&self) -> u64 {
        self.log_start_offset
    }
    /// One past the last durable offset when the read was served.
    pub fn durable_offset(&self) -> u64 {
        self.durable_offset
    }
}

/// The batches of a [`Fetch`], across its chunks.
#[derive(Debug)]
pub struct FetchBatches<'a> {
    chunks: std::slice::Iter<'a, Bytes>,
    current: Option<BatchIter<'a>>,
}

impl<'a> Iterator for FetchBatches<'a> {
    type Item = std::result::Result<BatchView<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(batch) = self.current.as_mut().and_then(Iterator::next) {
                return Some(batch);
            }
            self.current = Some(BatchIter::new(self.chunks.next()?));
        }
    }
}

/// Records of a [`Fetch`] at or after the requested offset.
#[derive(Debug)]
pub struct FetchRecords<'a> {
    batches: FetchBatches<'a>,
    records: Option<RecordIter<'a>>,
    from: u64,
    failed: bool,
}

impl<'a> Iterator for FetchRecords<'a> {
    type Item = std::result::Result<RecordView<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            if let Some(records) = self.records.as_mut() {
                match records.next() {
                    Some(Ok(record)) if (record.offset() as u64) < self.from => continue,
                    Some(Ok(record)) => return Some(Ok(record)),
                    Some(Err(err)) => {
                        self.failed = true;
                        return Some(Err(err));
                    }
                    None => self.records = None,
                }
            }
            let batch = match self.batches.next()? {
                Ok(batch) => batch,
                Err(err) => {
                    self.failed = true;
                    return Some(Err(err));
                }
            };
            if (batch.last_offset() as u64) < self.from {
                continue;
            }
            match batch.records() {
                Ok(records) => self.records = Some(records),
                Err(err) => {
                    self.failed = true;
                    return Some(Err(err));
                }
            }
        }
    }
}

/// A read waiting for records to arrive.
#[derive(Debug)]
pub(crate) struct ParkedRead {
    request: ReadRequest,
    reply: Reply<Fetch>,
    deadline_ns: u64,
    subscription: Option<Arc<Subscription>>,
}

/// A streaming consumer's standing read of one partition. When the shard answers one of its
/// reads with records, it parks the next read itself — from where that fetch ends, with the
/// subscription's wait — and queues that read's `Pending` here before sending the fetch, so
/// the consumer picks its next read up instead of sending one (a mailbox push and, for an
/// idle shard, a wake-up per fetch saved). At most [`limits::SUBSCRIPTION_FETCHES_AHEAD`]
/// fetches answered but not yet taken: past that the chain stops, and the consumer, finding
/// nothing queued, asks again — so a slow or vanished consumer pins a bounded number of
/// fetches, never a growing chain.
#[derive(Debug)]
pub(crate) struct Subscription {
    /// How long each parked read waits for records.
    wait: Duration,
    /// Reads the shard parked for the consumer, oldest first.
    next: Mutex<VecDeque<Pending<Fetch>>>,
    /// Fetches with records answered on this subscription and not yet taken.
    unread: AtomicUsize,
}

impl Subscription {
    pub(crate) fn new(wait: Duration) -> Arc<Self> {
        Arc::new(Self { wait, next: Mutex::new(VecDeque::new()), unread: AtomicUsize::new(0) })
    }

    /// The consumer took a fetch with records that a read of this subscription returned: the
    /// read the shard parked after it, if it did.
    pub(crate) fn took(&self) -> Option<Pending<Fetch>> {
        // Never below zero, even if a caller miscounts.
        let _ = self.unread.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        self.next.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop_front()
    }

    /// Fetches answered with records and not yet taken.
    #[cfg(test)]
    pub(crate) fn unread(&self) -> usize {
        self.unread.load(Ordering::Acquire)
    }

    /// Reads parked for the consumer and not yet picked up.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.next.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }
}

/// Smallest read issued: covers the gap between an index entry and the wanted batch.
const READ_BYTES_MIN: usize = 2 * INDEX_INTERVAL_BYTES as usize;

/// Where a read starts.
enum Start {
    /// Served from the tail cache.
    Fetch(Fetch),
    /// Nothing visible at the offset yet.
    NotVisible,
    /// From a segment file.
    Walk(Walk),
}

/// A read's walk through a segment file, from the index entry at or before its offset to the
/// batches it returns, one read at a time.
#[derive(Debug)]
pub(crate) struct Walk {
    request: ReadRequest,
    /// The visible end when the read started.
    visible: u64,
    /// Base offset of the segment, and its log.
    segment: u64,
    log: FileId,
    path: PathBuf,
    /// Where the next read starts, and the end of the written log.
    position: u64,
    limit: u64,
    /// Bytes the next read asks for (at most to `limit`).
    want: usize,
    /// The last batch walked past in the previous buffer, when the next buffer starts right
    /// after it: its length led there, so it is blamed if the walk goes wrong at once.
    carried: Option<u64>,
    /// The offset the batch at `position` must start with.
    next_base: u64,
}

impl Walk {
    /// Most bytes of batches the fetch returns (beyond its first batch).
    fn max_bytes(&self) -> usize {
        self.request.max_bytes.max(1)
    }

    /// What a read asks for when no batch is known to need more: the fetch's size, and at
    /// least the gap an index entry leaves.
    fn default_want(&self) -> usize {
        self.max_bytes().max(READ_BYTES_MIN)
    }

    /// Length of the next read, or why there is none: the written log ends before the offset
    /// the read wants (a damaged batch walked past).
    fn next_len(&self, io: &mut ShardIo<'_>) -> Result<usize> {
        if self.position >= self.limit {
            return Err(self.ends_early(io));
        }
        Ok(self.want.min((self.limit - self.position) as usize))
    }

    /// The written log ends (or holds less than a batch header) at `position`, before the
    /// offset the read wants.
    fn ends_early(&self, io: &mut ShardIo<'_>) -> Error {
        let at = (self.next_base, self.request.offset);
        ends_early(io, self.log, &self.path, self.carried, self.position, at)
    }
}

/// A walk's read in flight, with whom to answer when the walk ends.
#[derive(Debug)]
pub(crate) struct FetchRead {
    walk: Walk,
    shape: ReadShape,
    reply: Reply<Fetch>,
    subscription: Option<Arc<Subscription>>,
}

impl FetchRead {
    /// Base offset of the segment read.
    pub(super) fn segment(&self) -> u64 {
        self.walk.segment
    }
}

impl Partition {
    /// Serve a read, or park it until records arrive or its wait runs out. A read of a
    /// `subscription` answered with records parks the subscription's next read.
    ///
    /// A read the tail cache cannot serve walks the segment file: each of its reads goes out
    /// through the ring and the walk goes on when it completes (`on_fetch_read`), so the shard
    /// keeps working meanwhile; only with the queue full does the walk read while it waits.
    pub fn read(
        &mut self,
        io: &mut ShardIo<'_>,
        request: ReadRequest,
        reply: Reply<Fetch>,
        subscription: Option<Arc<Subscription>>,
    ) {
        match self.start_read(io, &request) {
            Ok(Start::Fetch(fetch)) => self.answer(io, &request, fetch, reply, subscription),
            Ok(Start::NotVisible) if request.max_wait.is_zero() => {
                reply.send(Ok(self.empty_fetch(request.offset)))
            }
            Ok(Start::NotVisible) => {
                let wait = u64::try_from(request.max_wait.as_nanos()).unwrap_or(u64::MAX);
                let deadline_ns = io.clock.monotonic_ns().saturating_add(wait);
                self.parked.push(ParkedRead { request, reply, deadline_ns, subscription });
            }
            Ok(Start::Walk(walk)) => self.read_on(io, walk, reply, subscription),
            Err(err) => reply.send(Err(err)),
        }
    }

    /// Send `fetch`, first parking the subscription's next read if it has records (not
    /// while the partition drains: a consumer reading on would keep it busy for ever).
    fn answer(
        &mut self,
        io: &mut ShardIo<'_>,
        request: &ReadRequest,
        fetch: Fetch,
        reply: Reply<Fetch>,
        subscription: Option<Arc<Subscription>>,
    ) {
        if let Some(subscription) = subscription
            && !fetch.is_empty()
            && !self.draining
        {
            self.continue_subscription(io, request, &fetch, subscription);
        }
        reply.send(Ok(fetch))
    }

    /// Submit the walk's next read; with no room in the queue, or while the partition drains
    /// (shutdown, topic close: nothing new may keep it busy), walk to the end now.
    fn read_on(
        &mut self,
        io: &mut ShardIo<'_>,
        walk: Walk,
        reply: Reply<Fetch>,
        subscription: Option<Arc<Subscription>>,
    ) {
        let len = match walk.next_len(io) {
            Ok(len) => len,
            Err(err) => return reply.send(Err(err)),
        };
        let seq = self.next_seq();
        let token = super::io::token(self.slot, seq);
        let submitted = if self.draining {
            None
        } else {
            io.submit_fetch_read(token, walk.log, walk.position, len)
        };
        match submitted {
            Some(shape) => {
                if let Some(s) = self.segment_mut(walk.segment) {
                    s.reads_in_flight += 1;
                }
                let read = FetchRead { walk, shape, reply, subscription };
                self.ops.insert(seq, super::OpKind::FetchRead(Box::new(read)));
            }
            None => {
                let request = walk.request;
                match self.walk_now(io, walk) {
                    Ok(fetch) => self.answer(io, &request, fetch, reply, subscription),
                    Err(err) => reply.send(Err(err)),
                }
            }
        }
    }

    /// A read of a walk completed: walk on through its bytes.
    pub(super) fn on_fetch_read(
        &mut self,
        io: &mut ShardIo<'_>,
        read: FetchRead,
        completion: tidelog_io::Completion,
    ) {
        let FetchRead { mut walk, shape, reply, subscription } = read;
        let buf = match io.finish_fetch_read(&shape, completion) {
            Ok(buf) => buf,
            Err(err) => return reply.send(Err(Error::io("read", &walk.path, err))),
        };
        match self.walk_step(io, &mut walk, buf) {
            Ok(Some(fetch)) => {
                let request = walk.request;
                self.answer(io, &request, fetch, reply, subscription)
            }
            Ok(None) => self.read_on(io, walk, reply, subscription),
            Err(err) => reply.send(Err(err)),
        }
    }

    /// `fetch` answers a read of `subscription`: unless the consumer already has its fill of
    /// unread fetches, read on from where it ends (now, if records are visible there; else
    /// parked) and queue that read for the consumer — before `fetch` is sent, so the consumer
    /// finds it when it takes `fetch`.
    fn continue_subscription(
        &mut self,
        io: &mut ShardIo<'_>,
        request: &ReadRequest,
        fetch: &Fetch,
        subscription: Arc<Subscription>,
    ) {
        // `fetch` itself is now answered and not yet taken.
        let unread = subscription.unread.fetch_add(1, Ordering::AcqRel) + 1;
        if unread >= limits::SUBSCRIPTION_FETCHES_AHEAD {
            return;
        }
        let (reply, pending) = completion::channel();
        subscription
            .next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push_back(pending);
        let next =
            ReadRequest { offset: fetch.next_offset(), max_wait: subscription.wait, ..*request };
        self.read(io, next, reply, Some(subscription));
    }

    /// Earliest deadline of a parked read, in monotonic nanoseconds.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        self.parked.iter().map(|p| p.deadline_ns).min()
    }

    /// Answer parked reads that can be served now or whose wait ran out.
    pub fn serve_parked(&mut self, io: &mut ShardIo<'_>) {
        if self.parked.is_empty() {
            return;
        }
        let now = io.clock.monotonic_ns();
        let parked = std::mem::take(&mut self.parked);
        for waiting in parked {
            let visible = self.visible_offset(waiting.request.isolation);
            if waiting.request.offset < visible || self.log_start_offset > waiting.request.offset {
                self.read(
                    io,
                    ReadRequest { max_wait: Duration::ZERO, ..waiting.request },
                    waiting.reply,
                    waiting.subscription,
                );
            } else if now >= waiting.deadline_ns {
                waiting.reply.send(Ok(self.empty_fetch(waiting.request.offset)));
            } else {
                self.parked.push(waiting);
            }
        }
    }

    fn visible_offset(&self, isolation: Isolation) -> u64 {
        match isolation {
            Isolation::Written => self.written_offset,
            Isolation::Durable => self.durable_offset,
        }
    }

    fn empty_fetch(&self, offset: u64) -> Fetch {
        self.fetch_of(offset, Vec::new())
    }

    fn fetch_of(&self, offset: u64, data: Vec<Bytes>) -> Fetch {
        Fetch {
            topic: self.topic.clone(),
            partition: self.id,
            offset,
            data,
            high_watermark: self.written_offset,
            log_start_offset: self.log_start_offset,
            durable_offset: self.durable_offset,
        }
    }

    fn out_of_range(&self, offset: u64) -> Error {
        Error::OffsetOutOfRange {
            topic: self.topic.to_string(),
            partition: self.id,
            offset,
            log_start_offset: self.log_start_offset,
            high_watermark: self.written_offset,
        }
    }

    /// Where a read starts: served from the tail cache, nothing visible yet, or a walk of a
    /// segment file.
    fn start_read(&mut self, io: &mut ShardIo<'_>, request: &ReadRequest) -> Result<Start> {
        let offset = request.offset;
        if offset < self.log_start_offset || offset > self.written_offset {
            return Err(self.out_of_range(offset));
        }
        let visible = self.visible_offset(request.isolation);
        if offset >= visible {
            return Ok(Start::NotVisible);
        }
        let index = self.segments.partition_point(|s| s.base_offset <= offset) - 1;
        if let Some(fetch) =
            self.read_from_cache(self.segments[index].base_offset, request, visible)?
        {
            return Ok(Start::Fetch(fetch));
        }
        let dir = self.dir.clone();
        let segment = &mut self.segments[index];
        if segment.offset_index.is_none() {
            recovery::load_closed_indexes(io, &dir, segment)?;
        }
        let log = recovery::ensure_log_open(io, &dir, segment)?;
        let base = segment.base_offset;
        // Where to start, and the offset the batch there must start with.
        let (position, next_base) =
            segment.offset_index.as_ref().and_then(|i| i.lookup(offset)).map_or((0, base), |e| {
                (u64::from(e.position), base + u64::from(e.relative_offset))
            });
        let mut walk = Walk {
            request: *request,
            visible,
            segment: base,
            log,
            path: segment::log_path(&dir, base),
            position,
            limit: segment.written_bytes,
            want: 0,
            carried: None,
            next_base,
        };
        walk.want = walk.default_want();
        Ok(Start::Walk(walk))
    }

    /// Walk to the end, reading while the shard waits.
    fn walk_now(&self, io: &mut ShardIo<'_>, mut walk: Walk) -> Result<Fetch> {
        loop {
            let len = walk.next_len(io)?;
            let buf = io
                .read_for_fetch(walk.log, walk.position, len)
                .map_err(|e| Error::io("read", &walk.path, e))?;
            if let Some(fetch) = self.walk_step(io, &mut walk, buf)? {
                return Ok(fetch);
            }
        }
    }

    /// Walk the bytes read at `walk.position`: the fetch, if they hold its batches; else
    /// `None`, and the walk says where to read next.
    fn walk_step(
        &self,
        io: &mut ShardIo<'_>,
        walk: &mut Walk,
        buf: Bytes,
    ) -> Result<Option<Fetch>> {
        let (log, position, limit, offset) =
            (walk.log, walk.position, walk.limit, walk.request.offset);
        let path = &walk.path;
        let carried = walk.carried;
        let blame_carried = |io: &mut ShardIo<'_>, at: usize, reason: String| -> Error {
            if at == 0
                && let Some(previous) = carried
                && let Some(error) = damaged_batch_at(io, log, previous)
            {
                return Error::corrupt(path, previous, error);
            }
            Error::corrupt(path, position + at as u64, reason)
        };
        let max_bytes = walk.max_bytes();
        match collect_batches(&buf, offset, walk.visible, max_bytes, true, &mut walk.next_base) {
            Collected::Batches { start, end } => {
                let end = start + verified_len(&buf[start..end], path, position + start as u64)?;
                let data = buf.slice(start..end);
                Ok(Some(self.fetch_of(offset, vec![data])))
            }
            Collected::Skipped { consumed, last } if consumed > 0 => {
                walk.carried = last.map(|last| position + last as u64);
                walk.position += consumed as u64;
                walk.want = walk.default_want();
                Ok(None)
            }
            // Less than a batch header left before the end of the written log.
            Collected::Skipped { .. } => Err(walk.ends_early(io)),
            Collected::NeedMore { at, total, previous } => {
                let end = position + at as u64 + total as u64;
                if total > BATCH_SIZE_BYTES_MAX as usize || end > limit {
                    // A damaged length, here or in the batch before (whose length led
                    // here): not a batch still to be read whole.
                    let (at, reason) = blame(&buf, previous, at, || {
                        format!(
                            "batch of {total} bytes runs past the end of the written log \
                             ({limit} bytes)"
                        )
                    });
                    return Err(blame_carried(io, at, reason));
                }
                walk.carried = match previous {
                    Some(previous) => Some(position + previous as u64),
                    None if at == 0 => carried,
                    None => None,
                };
                walk.position += at as u64;
                walk.want = total;
                Ok(None)
            }
            Collected::Invalid { at, reason } => Err(blame_carried(io, at, reason)),
        }
    }

    /// Serve a read from the tail cache if it holds the batch with `request.offset`,
    /// continuing through the following chunks while they are contiguous and the byte budget
    /// lasts.
    fn read_from_cache(
        &self,
        segment: u64,
        request: &ReadRequest,
        visible: u64,
    ) -> Result<Option<Fetch>> {
        let offset = request.offset;
        let mut at = self.tail_cache.partition_point(|c| c.end_offset <= offset);
        let mut budget = request.max_bytes.max(1);
        let mut next = offset;
        let mut chunks: Vec<Bytes> = Vec::new();
        let path = segment::log_path(&self.dir, segment);
        while let Some(chunk) = self.tail_cache.get(at) {
            if chunk.segment != segment || chunk.base_offset > next || next >= visible {
                break;
            }
            // Only the fetch's first batch may exceed the budget, not a later chunk's first.
            let first = chunks.is_empty();
            let mut chunk_base = chunk.base_offset;
            match collect_batches(&chunk.data, next, visible, budget, first, &mut chunk_base) {
                Collected::Batches { start, end } => {
                    let end = start + verified_len(&chunk.data[start..end], &path, 0)?;
                    let data = chunk.data.slice(start..end);
                    let Some(Ok(last)) = BatchIter::new(&data).last() else { break };
                    next = last.last_offset() as u64 + 1;
                    budget = budget.saturating_sub(data.len());
                    chunks.push(data);
                    // Only whole chunks let the read continue into the next.
                    if end < chunk.data.len() || budget == 0 || next != chunk.end_offset {
                        break;
                    }
                }
                _ => break,
            }
            at += 1;
        }
        Ok((!chunks.is_empty()).then(|| self.fetch_of(offset, chunks)))
    }

    /// The first offset whose record timestamp is at or after `target` (Kafka's
    /// `ListOffsets` by time), or `None` if every retained record is older.
    pub fn offset_for_timestamp(
        &mut self,
        io: &mut ShardIo<'_>,
        target: i64,
    ) -> Result<Option<u64>> {
        let dir = self.dir.clone();
        for index in 0..self.segments.len() {
            let segment = &mut self.segments[index];
            if segment.max_timestamp < target || segment.is_empty() {
                continue;
            }
            if segment.time_index.is_none() {
                recovery::load_closed_indexes(io, &dir, segment)?;
            }
            let log = recovery::ensure_log_open(io, &dir, segment)?;
            let base = segment.base_offset;
            let (start, first_offset) =
                segment.time_index.as_ref().and_then(|i| i.lookup(target)).map_or((0, base), |e| {
                    (u64::from(e.position), base + u64::from(e.relative_offset))
                });
            let limit = segment.written_bytes;
            let path = segment::log_path(&dir, base);
            let found = walk_batches(io, log, &path, (start, first_offset), limit, |batch| {
                if batch.max_timestamp() < target {
                    return Ok(ControlFlow::Continue(()));
                }
                for record in batch.records().map_err(|e| e.to_string())? {
                    let record = record.map_err(|e| e.to_string())?;
                    if record.timestamp() >= target {
                        return Ok(ControlFlow::Break(record.offset() as u64));
                    }
                }
                Ok(ControlFlow::Continue(()))
            })?;
            if let Some(offset) = found {
                return Ok((offset >= self.log_start_offset && offset < self.written_offset)
                    .then_some(offset));
            }
        }
        Ok(None)
    }
}

/// What a read buffer holds for a fetch.
enum Collected {
    /// Whole batches `[start, end)` of the buffer to return.
    Batches { start: usize, end: usize },
    /// Every whole batch in the buffer is before the wanted offset.
    Skipped { consumed: usize, last: Option<usize> },
    /// The batch at `at` is `total` bytes and does not fit in the buffer; `previous` is the
    /// batch walked (not checked) just before it, if in the buffer.
    NeedMore { at: usize, total: usize, previous: Option<usize> },
    /// The bytes at `at` are not a valid batch, or not the one that continues the offsets.
    Invalid { at: usize, reason: String },
}

/// Find the whole batches of `buf` to return for a read at `offset`: from the one holding it,
/// below `visible`, at most `max_bytes` together — except that the first may be larger alone
/// if `first_may_exceed`.
///
/// `next_base` is the offset the first batch of `buf` must start with (from the index entry
/// the read starts at); every batch walked must continue the offsets of the one before it.
/// `baseOffset` and the batch length are outside the CRC, so this is what catches damage to
/// them — before a batch is returned under wrong offsets, or skipped by a wrong length.
/// Batches walked past are not CRC-checked, but when the walk goes wrong right after one,
/// that one is checked and blamed if it is damaged.
fn collect_batches(
    buf: &[u8],
    offset: u64,
    visible: u64,
    max_bytes: usize,
    first_may_exceed: bool,
    next_base: &mut u64,
) -> Collected {
    let mut at = 0usize;
    let mut start = None;
    let mut previous = None;
    while at < buf.len() {
        let rest = &buf[at..];
        if rest.len() < LOG_OVERHEAD {
            break;
        }
        let length = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
        let total = LOG_OVERHEAD.saturating_add(usize::try_from(length).unwrap_or(0));
        if total > rest.len() {
            if start.is_none() {
                return match BatchView::parse(rest) {
                    Err(DecodeError::Truncated { .. }) | Ok(_) => {
                        Collected::NeedMore { at, total, previous }
                    }
                    Err(error) => invalid(buf, previous, at, || error.to_string()),
                };
            }
            break;
        }
        let batch = match BatchView::parse(rest) {
            Ok(batch) => batch,
            Err(error) => {
                return match start {
                    Some(start) => Collected::Batches { start, end: at },
                    None => invalid(buf, previous, at, || error.to_string()),
                };
            }
        };
        let expected = *next_base;
        if batch.base_offset() != expected as i64 || batch.last_offset_delta() < 0 {
            return match start {
                // Return what came before; a read from here fails on it.
                Some(start) => Collected::Batches { start, end: at },
                None => invalid(buf, previous, at, || {
                    format!(
                        "batch has base offset {} and last offset delta {}, expected base \
                         offset {expected}",
                        batch.base_offset(),
                        batch.last_offset_delta()
                    )
                }),
            };
        }
        let last = batch.last_offset() as u64;
        if last < offset {
            *next_base = last + 1;
            previous = Some(at);
            at += total;
            continue;
        }
        if last >= visible {
            // Visible ends are batch boundaries: the batch holding the offset asked for
            // (which is visible) cannot end past one, unless its offsets are damaged.
            if start.is_none()
                && let Err(error) = batch.verify_crc()
            {
                return Collected::Invalid { at, reason: error.to_string() };
            }
            break;
        }
        match start {
            None if !first_may_exceed && total > max_bytes => break,
            None => start = Some(at),
            Some(s) if at + total - s > max_bytes => break,
            Some(_) => {}
        }
        *next_base = last + 1;
        at += total;
    }
    match start {
        Some(start) => Collected::Batches { start, end: at },
        None => Collected::Skipped { consumed: at, last: previous },
    }
}

/// The walk went wrong at `at`, right after the batch at `previous` (walked, not checked):
/// blame that one if its CRC fails, else what is at `at`.
fn blame(
    buf: &[u8],
    previous: Option<usize>,
    at: usize,
    reason: impl FnOnce() -> String,
) -> (usize, String) {
    if let Some(previous) = previous
        && let Err(error) = BatchView::parse(&buf[previous..]).and_then(|b| b.verify_crc())
    {
        return (previous, error.to_string());
    }
    (at, reason())
}

/// Read the batch at `position` of `log` again and return why it is damaged, if it is (a
/// failed read blames nothing: the caller reports what it found).
fn damaged_batch_at(io: &mut ShardIo<'_>, log: FileId, position: u64) -> Option<String> {
    let header = io.read_now(log, position, LOG_OVERHEAD).ok()?;
    if header.len() < LOG_OVERHEAD {
        return None;
    }
    let length = i32::from_be_bytes([header[8], header[9], header[10], header[11]]);
    let total = LOG_OVERHEAD + usize::try_from(length).ok()?;
    if total > BATCH_SIZE_BYTES_MAX as usize {
        return Some(format!("batch length {length} exceeds the batch size limit"));
    }
    let bytes = io.read_now(log, position, total).ok()?;
    match BatchView::parse(&bytes).and_then(|b| b.verify_crc()) {
        Ok(()) => None,
        Err(error) => Some(error.to_string()),
    }
}

/// A read walked (from the batch that starts at offset `next_base`) to the end of the
/// written log, or to less than a batch header before it, without reaching `offset` — which
/// is visible and in this segment, so some batch walked past is damaged: the one walked last
/// (at `carried`) claims fewer offsets (a damaged last offset delta, inside the CRC) or bytes
/// (a damaged length, outside it) than it holds. Blame it if its CRC fails. Not an empty
/// fetch: a reader at that offset would wait for it forever.
fn ends_early(
    io: &mut ShardIo<'_>,
    log: FileId,
    path: &Path,
    carried: Option<u64>,
    position: u64,
    (next_base, offset): (u64, u64),
) -> Error {
    if let Some(previous) = carried
        && let Some(error) = damaged_batch_at(io, log, previous)
    {
        return Error::corrupt(path, previous, error);
    }
    Error::corrupt(
        path,
        position,
        format!(
            "the written log ends at byte {position}, offset {next_base}, before offset {offset}"
        ),
    )
}

fn invalid(
    buf: &[u8],
    previous: Option<usize>,
    at: usize,
    reason: impl FnOnce() -> String,
) -> Collected {
    let (at, reason) = blame(buf, previous, at, reason);
    Collected::Invalid { at, reason }
}

/// Verify the CRC of every batch in `data` (whole batches at byte `position` of `path`: the
/// read-side half of the paired checks) and return the length of the intact batches it
/// starts with. A damaged first batch is [`Error::Corrupt`]; a damaged later one ends the
/// fetch before it, so that the batches before it stay readable (a read of the damaged one
/// then fails).
fn verified_len(data: &[u8], path: &Path, position: u64) -> Result<usize> {
    let mut at = 0usize;
    for batch in BatchIter::new(data) {
        match batch.and_then(|b| b.verify_crc().map(|()| b.total_len())) {
            Ok(len) => at += len,
            Err(error) if at == 0 => return Err(Error::corrupt(path, position, error)),
            Err(_) => break,
        }
    }
    Ok(at)
}

/// Read batches from `position` (where the batch starting at offset `next_base` is) to
/// `limit`, calling `visit` on each until it breaks; every batch is verified (CRC, and
/// offsets continuing the batch before it).
fn walk_batches<T>(
    io: &mut ShardIo<'_>,
    log: FileId,
    path: &Path,
    (mut position, mut next_base): (u64, u64),
    limit: u64,
    mut visit: impl FnMut(&BatchView<'_>) -> std::result::Result<ControlFlow<T>, String>,
) -> Result<Option<T>> {
    let mut want = crate::segment::scan::SCAN_CHUNK_BYTES;
    while position < limit {
        let len = want.min((limit - position) as usize);
        let buf = io.read_now(log, position, len).map_err(|e| Error::io("read", path, e))?;
        let mut at = 0usize;
        while at < buf.len() {
            let rest = &buf[at..];
            if rest.len() < LOG_OVERHEAD {
                break;
            }
            let length = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
            let total = LOG_OVERHEAD.saturating_add(usize::try_from(length).unwrap_or(0));
            if total > rest.len() {
                break;
            }
            let batch = BatchView::parse(rest)
                .map_err(|e| Error::corrupt(path, position + at as u64, e))?;
            batch.verify_crc().map_err(|e| Error::corrupt(path, position + at as u64, e))?;
            if batch.base_offset() != next_base as i64 {
                let reason =
                    format!("batch has base offset {}, expected {next_base}", batch.base_offset());
                return Err(Error::corrupt(path, position + at as u64, reason));
            }
            next_base = batch.last_offset() as u64 + 1;
            match visit(&batch)
                .map_err(|reason| Error::corrupt(path, position + at as u64, reason))?
            {
                ControlFlow::Break(found) => return Ok(Some(found)),
                ControlFlow::Continue(()) => at += total,
            }
        }
        if at == 0 {
            // One batch larger than the chunk: read it whole.
            let rest = &buf[..];
            if rest.len() < LOG_OVERHEAD {
                return Err(Error::corrupt(path, position, "log ends inside a batch header"));
            }
            let length = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
            let total = LOG_OVERHEAD.saturating_add(usize::try_from(length).unwrap_or(0));
            if total <= want || total > BATCH_SIZE_BYTES_MAX as usize {
                return Err(Error::corrupt(
                    path,
                    position,
                    format!("invalid batch length {length}"),
                ));
            }
            want = total;
            continue;
        }
        position += at as u64;
        want = crate::segment::scan::SCAN_CHUNK_BYTES;
    }
    Ok(None)
}
