//! What a shard's partitions hold in memory, bounded per shard rather than per partition, so
//! that a shard with 10,000 mostly idle partitions holds about what one with ten does.
//!
//! - **Write buffers** come in size classes: [`limits::WRITE_BUFFER_BYTES_MIN`] doubling up to
//!   `write_buffer_bytes`. Each partition has a class (its next buffer's size) that grows
//!   while its appends overflow its buffers and shrinks while a flush fills less than a
//!   quarter of one. A partition holds a buffer only while bytes wait in it to be written;
//!   buffers that come back from the kernel go to the shard's [`SpareBuffers`], shared by
//!   all its partitions and bounded per size class (so the small buffers of idle partitions
//!   never crowd out a busy partition's full-size ones). Full-size buffers come from the storage's
//!   registered pool when a slot is free (their writes go out as `WRITE_FIXED`); smaller
//!   ones, for partitions that write little, come from the heap and leave the pool to the
//!   busy partitions.
//! - **Tail caches** (recently written batches kept for readers at the tail) are bounded per
//!   partition and, together, per shard by [`TailCacheLedger`]: when the shard's caches
//!   exceed the budget, the oldest chunks go first, whichever partition holds them.

use std::collections::VecDeque;

use tidelog_io::{AlignedBuf, Storage};

use crate::limits;

/// A shard's memory accounts, lent to its partitions with the rest of [`super::ShardIo`].
#[derive(Debug)]
pub(crate) struct ShardMemory {
    pub buffers: SpareBuffers,
    pub tail_cache: TailCacheLedger,
}

impl ShardMemory {
    pub fn new(write_buffer_bytes: usize, tail_cache_bytes: usize) -> Self {
        ShardMemory {
            buffers: SpareBuffers::new(write_buffer_bytes),
            tail_cache: TailCacheLedger::new(tail_cache_bytes),
        }
    }
}

/// Sizes of write buffers: [`limits::WRITE_BUFFER_BYTES_MIN`] doubling up to the largest,
/// `write_buffer_bytes` rounded up to whole blocks (the last step may be less than double).
#[derive(Clone, Debug)]
pub(crate) struct BufferClasses {
    sizes: Vec<usize>,
}

impl BufferClasses {
    pub fn new(write_buffer_bytes: usize) -> Self {
        let largest = tidelog_io::buffer::round_up_to_block(write_buffer_bytes);
        let mut sizes = vec![limits::WRITE_BUFFER_BYTES_MIN.min(largest)];
        while let Some(&last) = sizes.last()
            && last < largest
        {
            sizes.push((last * 2).min(largest));
        }
        debug_assert!(sizes.iter().all(|s| s.is_multiple_of(tidelog_io::BLOCK_SIZE)));
        BufferClasses { sizes }
    }

    /// Bytes of a buffer of class `class`.
    pub fn size(&self, class: usize) -> usize {
        self.sizes[class.min(self.sizes.len() - 1)]
    }

    /// The class one up from `class` (the largest stays).
    pub fn grow(&self, class: usize) -> usize {
        (class + 1).min(self.sizes.len() - 1)
    }

    /// The class one down from `class` (the smallest stays).
    pub fn shrink(&self, class: usize) -> usize {
        class.saturating_sub(1).min(self.sizes.len() - 1)
    }

    /// The largest class.
    pub fn largest(&self) -> usize {
        self.sizes.len() - 1
    }

    /// The class whose size is exactly `bytes`, if any.
    fn of(&self, bytes: usize) -> Option<usize> {
        self.sizes.binary_search(&bytes).ok()
    }
}

/// Heap write buffers returned by the kernel, kept for reuse by any partition of the shard:
/// at most [`limits::WRITE_BUFFERS_SPARE_PER_CLASS_MAX`] of each size class — less than twice
/// that many full-size buffers' worth of bytes in all, since the classes double.
#[derive(Debug)]
pub(crate) struct SpareBuffers {
    classes: BufferClasses,
    /// Spare buffers by class.
    spare: Vec<Vec<AlignedBuf>>,
    held_bytes: usize,
}

impl SpareBuffers {
    pub fn new(write_buffer_bytes: usize) -> Self {
        let classes = BufferClasses::new(write_buffer_bytes);
        SpareBuffers {
            spare: (0..=classes.largest()).map(|_| Vec::new()).collect(),
            classes,
            held_bytes: 0,
        }
    }

    pub fn classes(&self) -> &BufferClasses {
        &self.classes
    }

    /// An empty buffer of at least `capacity` bytes: a spare of that exact size if one is
    /// kept; else a full-size one from the storage (its registered pool when a slot is
    /// free); else the heap.
    pub fn take(&mut self, storage: &mut dyn Storage, capacity: usize) -> AlignedBuf {
        let capacity = tidelog_io::buffer::round_up_to_block(capacity.max(1));
        if let Some(class) = self.classes.of(capacity)
            && let Some(mut buf) = self.spare[class].pop()
        {
            self.held_bytes -= buf.capacity();
            buf.clear();
            return buf;
        }
        if capacity >= self.classes.size(self.classes.largest()) {
            storage.alloc_buf(capacity)
        } else {
            AlignedBuf::with_capacity(capacity)
        }
    }

    /// Keep `buf` for reuse if it is a heap buffer of a class size and its class has room;
    /// otherwise drop it (a pooled buffer's slot goes back to its pool).
    pub fn give_back(&mut self, mut buf: AlignedBuf) {
        if buf.is_pooled() {
            return;
        }
        if let Some(class) = self.classes.of(buf.capacity())
            && self.spare[class].len() < limits::WRITE_BUFFERS_SPARE_PER_CLASS_MAX
        {
            buf.clear();
            self.held_bytes += buf.capacity();
            self.spare[class].push(buf);
        }
    }

    /// Bytes the reserve holds.
    #[cfg(test)]
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }
}

/// The shard-wide account of its partitions' tail caches: how much they hold together, and
/// which chunk was cached first. Partitions report every chunk they cache and every one they
/// drop; the shard evicts the oldest while the total exceeds the budget
/// ([`TailCacheLedger::next_to_evict`]).
#[derive(Debug)]
pub(crate) struct TailCacheLedger {
    /// Chunks in the order they were cached, oldest first, as (partition slot, base offset).
    /// Entries of chunks a partition has dropped since stay until they reach the front.
    order: VecDeque<(u32, u64)>,
    /// Chunks cached now, across the shard's partitions.
    chunks: usize,
    /// Bytes those chunks hold.
    held_bytes: usize,
    budget_bytes: usize,
}

/// Entries of dropped chunks `order` may carry beyond twice the live ones before the oldest
/// are dropped (and their chunks, if still cached, evicted): bounds its length.
const ORDER_SLACK: usize = 1024;

impl TailCacheLedger {
    pub fn new(budget_bytes: usize) -> Self {
        TailCacheLedger { order: VecDeque::new(), chunks: 0, held_bytes: 0, budget_bytes }
    }

    /// The most one partition's cache may hold: its own limit, within the shard's budget.
    pub fn partition_budget_bytes(&self, write_buffer_bytes: usize) -> usize {
        limits::TAIL_CACHE_BYTES_PER_PARTITION.max(2 * write_buffer_bytes).min(self.budget_bytes)
    }

    /// A partition cached a chunk of `held` bytes starting at `base_offset`.
    pub fn cached(&mut self, slot: u32, base_offset: u64, held: usize) {
        self.order.push_back((slot, base_offset));
        self.chunks += 1;
        self.held_bytes += held;
    }

    /// A partition dropped a chunk of `held` bytes (evicted by it or by the shard).
    pub fn dropped(&mut self, held: usize) {
        debug_assert!(self.chunks > 0 && self.held_bytes >= held);
        self.chunks = self.chunks.saturating_sub(1);
        self.held_bytes = self.held_bytes.saturating_sub(held);
    }

    /// The chunk to evict now, if the caches exceed the budget (or the order carries too many
    /// entries of chunks already dropped): the oldest cached. The entry may name a chunk its
    /// partition has dropped already; evicting it then frees nothing.
    pub fn next_to_evict(&mut self) -> Option<(u32, u64)> {
        let over =
            self.held_bytes > self.budget_bytes || self.order.len() > 2 * self.chunks + ORDER_SLACK;
        if over { self.order.pop_front() } else { None }
    }

    /// Bytes the shard's tail caches hold.
    #[cfg(test)]
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_double_from_the_smallest_to_the_write_buffer_size() {
        let classes = BufferClasses::new(1024 * 1024);
        let sizes: Vec<usize> = (0..=classes.largest()).map(|c| classes.size(c)).collect();
        assert_eq!(sizes, [16, 32, 64, 128, 256, 512, 1024].map(|k| k * 1024));
        assert_eq!(classes.grow(classes.largest()), classes.largest());
        assert_eq!(classes.shrink(0), 0);
        // A write buffer size that is not a power-of-two multiple: the last step is smaller.
        let classes = BufferClasses::new(100 * 1024);
        let sizes: Vec<usize> = (0..=classes.largest()).map(|c| classes.size(c)).collect();
        assert_eq!(sizes, [16, 32, 64, 100].map(|k| k * 1024));
        // Below the smallest class: one class, the write buffer size in whole blocks.
        let classes = BufferClasses::new(5000);
        assert_eq!((classes.largest(), classes.size(0)), (0, 8192));
    }

    #[test]
    fn spare_buffers_are_bounded_per_class_and_reused_by_size() {
        let mut storage = tidelog_io::sim::SimDisk::new(1).storage();
        let mut spare = SpareBuffers::new(64 * 1024);
        let (full, small) = (64 * 1024, 16 * 1024);
        let max = limits::WRITE_BUFFERS_SPARE_PER_CLASS_MAX;
        for _ in 0..3 * max {
            spare.give_back(AlignedBuf::with_capacity(small));
        }
        assert_eq!(spare.held_bytes(), max * small);
        // Small buffers do not crowd out full-size ones.
        let buffers: Vec<AlignedBuf> =
            (0..max + 3).map(|_| spare.take(&mut storage, full)).collect();
        for buf in buffers {
            spare.give_back(buf);
        }
        assert_eq!(spare.held_bytes(), max * (small + full));
        // A buffer of no class size is never kept.
        let mut spare = SpareBuffers::new(64 * 1024);
        spare.give_back(AlignedBuf::with_capacity(12 * 1024));
        assert_eq!(spare.held_bytes(), 0);
        // Taken back by size: a 16 KiB spare serves a 16 KiB request, not a 32 KiB one.
        spare.give_back(AlignedBuf::with_capacity(16 * 1024));
        assert_eq!(spare.take(&mut storage, 32 * 1024).capacity(), 32 * 1024);
        assert_eq!(spare.held_bytes(), 16 * 1024);
        assert_eq!(spare.take(&mut storage, 10_000).capacity(), 12 * 1024);
        assert_eq!(spare.take(&mut storage, 16 * 1024).capacity(), 16 * 1024);
        assert_eq!(spare.held_bytes(), 0);
    }

    #[test]
    fn the_ledger_evicts_the_oldest_chunks_beyond_the_budget() {
        let mut ledger = TailCacheLedger::new(1000);
        ledger.cached(1, 0, 600);
        ledger.cached(2, 0, 300);
        assert_eq!(ledger.next_to_evict(), None);
        ledger.cached(1, 5, 300);
        assert_eq!(ledger.next_to_evict(), Some((1, 0)), "the oldest, of any partition");
        ledger.dropped(600);
        assert_eq!(ledger.next_to_evict(), None);
        assert_eq!(ledger.held_bytes(), 600);
        // Entries of chunks dropped by their partitions do not pile up.
        for i in 0..10 * ORDER_SLACK as u64 {
            ledger.cached(3, 100 + i, 1);
            ledger.dropped(1);
            while ledger.next_to_evict().is_some() {}
        }
        assert!(ledger.order.len() <= 2 * ledger.chunks + ORDER_SLACK + 1);
    }
}
