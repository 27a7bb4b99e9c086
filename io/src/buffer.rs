//! Owned, block-aligned, always-initialised byte buffers, from the heap or from a pool.
//!
//! An [`AlignedBuf`] is what the storage backends take and give back: a write or read
//! operation owns its buffer until the completion arrives (STYLE §7), so nothing the kernel
//! may still touch is ever borrowed. Alignment to [`BLOCK_SIZE`] lets the same buffer be used
//! for `O_DIRECT` and registered (`WRITE_FIXED`/`READ_FIXED`) I/O.
//!
//! The memory is allocated zeroed (heap buffers and pool regions alike), so every byte up to
//! the capacity is always initialised: that is what makes [`AlignedBuf::set_len`] safe.
//!
//! A buffer is either *heap-backed* (its own allocation, [`AlignedBuf::with_capacity`]) or a
//! *slot of a [`BufferPool`]*: one large, pre-faulted region allocated once (when a shard
//! starts) and split into equal slots, which the io_uring backend registers with its ring so
//! writes and reads of pooled buffers go out as `WRITE_FIXED`/`READ_FIXED`. Both kinds behave
//! the same to their users; dropping a pooled buffer, on any thread, returns its slot to the
//! pool's free list, and the region is freed only when the pool and every buffer taken from it
//! are gone.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Alignment and granularity of direct I/O: the logical block size we assume for every
/// device (4096 covers 512e and 4Kn disks).
pub const BLOCK_SIZE: usize = 4096;

/// Round `n` up to a whole number of blocks.
pub const fn round_up_to_block(n: usize) -> usize {
    n.div_ceil(BLOCK_SIZE) * BLOCK_SIZE
}

/// Round `n` down to a whole number of blocks.
pub const fn round_down_to_block(n: u64) -> u64 {
    n / BLOCK_SIZE as u64 * BLOCK_SIZE as u64
}

/// Bytes of heap-backed [`AlignedBuf`]s alive now, process-wide.
static HEAP_BYTES: AtomicUsize = AtomicUsize::new(0);
/// The most [`HEAP_BYTES`] has been since the last [`reset_heap_bytes_peak`].
static HEAP_BYTES_PEAK: AtomicUsize = AtomicUsize::new(0);

/// Memory held by heap-backed [`AlignedBuf`]s in this process (pool slots are not counted:
/// their region is allocated once, up front).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapBytes {
    /// Bytes allocated now.
    pub live: usize,
    /// The most allocated at once since the process started or [`reset_heap_bytes_peak`].
    pub peak: usize,
}

/// How much memory heap-backed buffers hold now, and at most: what tests of memory bounds
/// check (resident memory alone hides buffers whose pages were never touched).
pub fn heap_bytes() -> HeapBytes {
    HeapBytes {
        live: HEAP_BYTES.load(Ordering::Relaxed),
        peak: HEAP_BYTES_PEAK.load(Ordering::Relaxed),
    }
}

/// Start measuring [`HeapBytes::peak`] again from the bytes allocated now.
pub fn reset_heap_bytes_peak() {
    HEAP_BYTES_PEAK.store(HEAP_BYTES.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// A buffer aligned to [`BLOCK_SIZE`] whose capacity is a whole number of blocks: its own heap
/// allocation, or a slot of a [`BufferPool`].
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    capacity: usize,
    len: usize,
    backing: Backing,
}

/// Where an [`AlignedBuf`]'s memory comes from, and so what dropping it does.
enum Backing {
    /// Its own allocation of `capacity` bytes: freed on drop.
    Heap,
    /// Slot `slot` of a pool's region: handed back to the pool's free list on drop.
    Pool { region: Arc<PoolRegion>, slot: u32 },
}

// SAFETY: `AlignedBuf` uniquely owns its memory — its own allocation, or a pool slot that the
// pool's free list hands to exactly one buffer at a time (see `PoolRegion`) — and no aliasing
// pointer escapes except through `&self`/`&mut self` borrows, so moving it to another thread
// moves sole ownership with it. A pooled buffer's `Arc<PoolRegion>` is itself `Send + Sync`.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only hands out `&[u8]` to the initialised prefix; all mutation needs
// `&mut self`, so concurrent `&AlignedBuf` readers cannot observe a data race.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// A zeroed buffer with room for at least `capacity` bytes (rounded up to whole blocks,
    /// at least one block), and length 0.
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = round_up_to_block(capacity.max(1));
        let layout = Self::layout(capacity);
        // SAFETY: `layout` has a non-zero size (at least one block) and a power-of-two
        // alignment, which is all `alloc_zeroed` requires.
        let raw = unsafe { alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else { std::alloc::handle_alloc_error(layout) };
        let live = HEAP_BYTES.fetch_add(capacity, Ordering::Relaxed) + capacity;
        HEAP_BYTES_PEAK.fetch_max(live, Ordering::Relaxed);
        Self { ptr, capacity, len: 0, backing: Backing::Heap }
    }

    /// A buffer holding a copy of `bytes`.
    pub fn from_slice(bytes: &[u8]) -> Self {
        let mut buf = Self::with_capacity(bytes.len());
        buf.extend_from_slice(bytes);
        buf
    }

    fn layout(capacity: usize) -> Layout {
        // The capacity is a non-zero multiple of BLOCK_SIZE, far below isize::MAX for any
        // allocation that can succeed, and BLOCK_SIZE is a power of two: the layout is valid.
        Layout::from_size_align(capacity, BLOCK_SIZE).unwrap_or_else(|_| {
            panic!("aligned buffer of {capacity} bytes exceeds the address space")
        })
    }

    /// Number of bytes in use.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no bytes are in use.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Total bytes available (a multiple of [`BLOCK_SIZE`]).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes that can still be appended without exceeding the capacity.
    pub fn remaining(&self) -> usize {
        self.capacity - self.len
    }

    /// Set the length. Every byte up to the capacity is initialised (the buffer was allocated
    /// zeroed and only ever written with initialised bytes), so any length up to the capacity
    /// exposes initialised memory.
    ///
    /// # Panics
    /// If `len` exceeds the capacity.
    pub fn set_len(&mut self, len: usize) {
        assert!(len <= self.capacity, "length {len} beyond capacity {}", self.capacity);
        self.len = len;
    }

    /// Set the length to 0 (contents stay in memory, they are not zeroed).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Append `bytes`.
    ///
    /// # Panics
    /// If they do not fit in the remaining capacity; callers size buffers from the limits.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        assert!(end <= self.capacity, "append of {} bytes overflows buffer", bytes.len());
        let start = self.len;
        self.full_mut()[start..end].copy_from_slice(bytes);
        self.len = end;
    }

    /// Grow the length by `n` zero bytes (writing zeros over whatever was there).
    pub fn extend_zeroed(&mut self, n: usize) {
        let end = self.len + n;
        assert!(end <= self.capacity, "zero-extend of {n} bytes overflows buffer");
        let start = self.len;
        self.full_mut()[start..end].fill(0);
        self.len = end;
    }

    /// Zero every byte from the length to the capacity.
    pub fn zero_spare(&mut self) {
        let len = self.len;
        self.full_mut()[len..].fill(0);
    }

    /// The whole capacity as an initialised mutable slice (ignores the length).
    pub fn full_mut(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` points to `capacity` bytes owned by `self` alone and alive as long as
        // `self` — its own allocation, or the start of the pool slot it holds (`capacity <=
        // slot_bytes`; the pool hands a slot to one buffer at a time; the region is kept alive
        // by the buffer's `Arc<PoolRegion>`) — every byte of which is initialised (allocated zeroed,
        // only ever overwritten with initialised bytes); `&mut self` guarantees no other
        // reference into it exists for the returned lifetime.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.capacity) }
    }

    /// The whole capacity as an initialised slice (ignores the length).
    pub fn full(&self) -> &[u8] {
        // SAFETY: as in `full_mut`, all `capacity` bytes are initialised and owned by `self`
        // (its allocation or its pool slot); the shared borrow of `self` prevents mutation for
        // the returned lifetime.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.capacity) }
    }

    /// The bytes in use.
    pub fn as_slice(&self) -> &[u8] {
        &self.full()[..self.len]
    }

    /// The bytes in use, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let len = self.len;
        &mut self.full_mut()[..len]
    }

    /// Raw pointer to the start of the allocation, for handing to the kernel. The caller must
    /// keep `self` alive and unmoved-from until the kernel is done with it.
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// Raw mutable pointer to the start of the allocation, for handing to the kernel.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// True when the buffer is a slot of a [`BufferPool`] rather than its own allocation.
    pub fn is_pooled(&self) -> bool {
        matches!(self.backing, Backing::Pool { .. })
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        match &self.backing {
            Backing::Heap => {
                // SAFETY: a heap-backed buffer's `ptr` was returned by `alloc_zeroed` with
                // exactly this layout (capacity never changes after allocation) and is freed
                // only here, once.
                unsafe { dealloc(self.ptr.as_ptr(), Self::layout(self.capacity)) }
                HEAP_BYTES.fetch_sub(self.capacity, Ordering::Relaxed);
            }
            // The memory belongs to the region (freed when its last `Arc` goes); the slot is
            // free for the next buffer from this moment, and nothing of `self` touches it again.
            Backing::Pool { region, slot } => region.release(*slot),
        }
    }
}

impl fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .finish()
    }
}

/// A clone is always heap-backed, with the same capacity and contents (in use).
impl Clone for AlignedBuf {
    fn clone(&self) -> Self {
        let mut copy = Self::with_capacity(self.capacity);
        copy.extend_from_slice(self.as_slice());
        copy
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

impl AsRef<[u8]> for AlignedBuf {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

/// One pool's memory: a single allocation of `slots × slot_bytes`, 4096-aligned, zeroed and
/// pre-faulted, plus the free list of its slots.
///
/// Ownership of the bytes: slot `i` covers `[ptr + i·slot_bytes, ptr + (i+1)·slot_bytes)`. A
/// slot index is, at any moment, either in `free` or held by exactly one live [`AlignedBuf`]
/// (taken from `free` under the lock in [`BufferPool::alloc`], pushed back under the lock by
/// that buffer's drop): so the bytes of a slot are reachable through one buffer at most, and
/// the region itself never reads or writes them after creation.
struct PoolRegion {
    ptr: NonNull<u8>,
    slot_bytes: usize,
    slots: u32,
    free: Mutex<Vec<u32>>,
}

// SAFETY: the region's only state reachable from several threads is the free list, behind a
// `Mutex`; the bytes behind `ptr` are accessed only through the one `AlignedBuf` holding each
// slot (see the type's documentation), never through `&PoolRegion`.
unsafe impl Send for PoolRegion {}
// SAFETY: as for `Send`: `&PoolRegion` gives access to the free list (synchronised by its
// `Mutex`) and to addresses (`slot_ptr`), never to the bytes themselves.
unsafe impl Sync for PoolRegion {}

impl PoolRegion {
    fn layout(slots: u32, slot_bytes: usize) -> Layout {
        let size = (slots as usize)
            .checked_mul(slot_bytes)
            .unwrap_or_else(|| panic!("buffer pool of {slots} × {slot_bytes} bytes overflows"));
        // Non-zero (both factors are at least 1, checked by `BufferPool::new`), and BLOCK_SIZE is
        // a power of two: valid unless the size exceeds isize::MAX, which no allocation can have.
        Layout::from_size_align(size, BLOCK_SIZE)
            .unwrap_or_else(|_| panic!("buffer pool of {size} bytes exceeds the address space"))
    }

    /// Start of slot `slot` (an address; the bytes belong to whoever holds the slot).
    fn slot_ptr(&self, slot: u32) -> NonNull<u8> {
        assert!(slot < self.slots, "slot {slot} of a pool of {}", self.slots);
        // SAFETY: `slot < slots`, so the offset `slot · slot_bytes` is within the allocation
        // of `slots · slot_bytes` bytes (whose size `layout` checked fits in isize); adding it
        // to the allocation's start stays in bounds and so is non-null.
        unsafe { self.ptr.add(slot as usize * self.slot_bytes) }
    }

    fn release(&self, slot: u32) {
        // A poisoned lock still holds a valid Vec: every critical section only pushes or pops.
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        debug_assert!(!free.contains(&slot), "slot {slot} released twice");
        free.push(slot);
    }
}

impl Drop for PoolRegion {
    fn drop(&mut self) {
        // SAFETY: `ptr` was returned by `alloc_zeroed` with this same layout (slots and
        // slot_bytes never change), and the region is dropped once, when the last `Arc` — the
        // pool's or a buffer's — goes: no slot is in use any more.
        unsafe { dealloc(self.ptr.as_ptr(), Self::layout(self.slots, self.slot_bytes)) }
    }
}

/// A fixed set of equal, block-aligned buffer slots in one pre-faulted region, allocated once.
///
/// [`BufferPool::alloc`] hands out a slot as an ordinary [`AlignedBuf`] (or `None` when the
/// request does not fit a slot or every slot is in use: callers fall back to the heap, so a
/// busy pool slows nothing down, it only stops saving work). Dropping that buffer, on any
/// thread, returns its slot. Cloning a `BufferPool` gives another handle to the same slots.
///
/// The io_uring backend registers each slot with its ring (buffer index = slot number); see
/// `docs/ARCHITECTURE.md`. Pooled buffers are *not* zeroed when reused: bytes past the length
/// may hold an earlier user's data (always initialised); use [`AlignedBuf::zero_spare`] where
/// that matters.
#[derive(Clone)]
pub struct BufferPool {
    region: Arc<PoolRegion>,
}

/// A snapshot of a pool's occupancy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolUsage {
    /// Number of slots.
    pub slots: usize,
    /// Bytes per slot (a multiple of [`BLOCK_SIZE`]).
    pub slot_bytes: usize,
    /// Slots not held by any buffer.
    pub free: usize,
}

impl BufferPool {
    /// A pool of `slots` slots of `slot_bytes` each (rounded up to whole blocks). The region
    /// is allocated zeroed and every page is touched, so first-touch page faults happen here,
    /// at start-up, not on the write path (`../shared/limits.md`: first touch runs at
    /// 0.5–1.4 GB/s against 5 GB/s for reuse).
    ///
    /// # Panics
    /// If `slots` or `slot_bytes` is 0 or `slots` exceeds `u32::MAX`.
    pub fn new(slots: usize, slot_bytes: usize) -> Self {
        assert!(slots > 0 && slot_bytes > 0, "a buffer pool needs at least one non-empty slot");
        let slots = u32::try_from(slots).expect("more than 2^32 pool slots");
        let slot_bytes = round_up_to_block(slot_bytes);
        let layout = PoolRegion::layout(slots, slot_bytes);
        // SAFETY: `layout` has a non-zero size and a power-of-two alignment (see
        // `PoolRegion::layout`), which is all `alloc_zeroed` requires.
        let raw = unsafe { alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else { std::alloc::handle_alloc_error(layout) };
        for page in (0..layout.size()).step_by(BLOCK_SIZE) {
            // SAFETY: `page < size`, so `ptr + page` is inside the allocation just made, which
            // nothing else can reach yet; writing the zero it already holds keeps every byte
            // initialised (and zero) while making the kernel back the page with private memory.
            // Volatile, because an ordinary store of zero into zeroed memory may be removed.
            unsafe { ptr.add(page).write_volatile(0) };
        }
        let free = Mutex::new((0..slots).rev().collect());
        Self { region: Arc::new(PoolRegion { ptr, slot_bytes, slots, free }) }
    }

    /// A buffer of at least `len` bytes (rounded up to whole blocks, at least one) from a free
    /// slot, length 0; `None` if `len` exceeds [`BufferPool::slot_bytes`] or no slot is free.
    /// The capacity is what [`AlignedBuf::with_capacity`] would give, whatever the slot size,
    /// so callers see the same buffer from the pool as from the heap.
    pub fn alloc(&self, len: usize) -> Option<AlignedBuf> {
        self.alloc_leaving(len, 0)
    }

    /// As [`BufferPool::alloc`], but only while more than `keep` slots are free: a caller
    /// that may hold its buffer for long leaves the rest of the pool to the others.
    pub fn alloc_leaving(&self, len: usize, keep: usize) -> Option<AlignedBuf> {
        let capacity = round_up_to_block(len.max(1));
        if capacity > self.region.slot_bytes {
            return None;
        }
        let slot = {
            let mut free = self.region.free.lock().unwrap_or_else(PoisonError::into_inner);
            if free.len() <= keep {
                return None;
            }
            free.pop()?
        };
        Some(AlignedBuf {
            ptr: self.region.slot_ptr(slot),
            capacity,
            len: 0,
            backing: Backing::Pool { region: self.region.clone(), slot },
        })
    }

    /// The slot `buf` occupies, if it is a slot of *this* pool.
    pub fn slot_of(&self, buf: &AlignedBuf) -> Option<u32> {
        match &buf.backing {
            Backing::Pool { region, slot } if Arc::ptr_eq(region, &self.region) => Some(*slot),
            _ => None,
        }
    }

    /// Start address and length of slot `slot`, for registering it with the kernel. The bytes
    /// belong to whichever buffer holds the slot; the address stays valid as long as this pool
    /// or any buffer from it lives.
    ///
    /// # Panics
    /// If `slot` is not below [`BufferPool::slots`].
    pub fn slot_region(&self, slot: u32) -> (*mut u8, usize) {
        (self.region.slot_ptr(slot).as_ptr(), self.region.slot_bytes)
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.region.slots as usize
    }

    /// Bytes per slot.
    pub fn slot_bytes(&self) -> usize {
        self.region.slot_bytes
    }

    /// Slots currently free.
    pub fn free_slots(&self) -> usize {
        self.region.free.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Total bytes of the region.
    pub fn region_bytes(&self) -> usize {
        self.slots() * self.slot_bytes()
    }

    /// Slots, slot size and free slots.
    pub fn usage(&self) -> PoolUsage {
        PoolUsage { slots: self.slots(), slot_bytes: self.slot_bytes(), free: self.free_slots() }
    }
}

impl fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferPool")
            .field("slots", &self.slots())
            .field("slot_bytes", &self.slot_bytes())
            .field("free", &self.free_slots())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_rounded_to_blocks_and_aligned() {
        for requested in [0, 1, 4095, 4096, 4097, 65536 + 3] {
            let buf = AlignedBuf::with_capacity(requested);
            assert_eq!(buf.capacity() % BLOCK_SIZE, 0);
            assert!(buf.capacity() >= requested.max(1));
            assert_eq!(buf.as_ptr() as usize % BLOCK_SIZE, 0);
            assert!(buf.full().iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn heap_buffers_are_counted_while_alive() {
        // Other tests allocate concurrently: only what this test holds is certain.
        let big = 64 << 20;
        let buf = AlignedBuf::with_capacity(big);
        let held = heap_bytes();
        assert!(held.live >= big && held.peak >= held.live, "{held:?}");
        drop(buf);
        reset_heap_bytes_peak();
        let after = heap_bytes();
        assert!(after.peak >= after.live, "{after:?}");
    }

    #[test]
    fn extend_and_len() {
        let mut buf = AlignedBuf::with_capacity(10);
        buf.extend_from_slice(b"hello");
        buf.extend_zeroed(3);
        assert_eq!(buf.as_slice(), b"hello\0\0\0");
        assert_eq!(buf.remaining(), BLOCK_SIZE - 8);
        buf.set_len(2);
        assert_eq!(&buf[..], b"he");
        let copy = buf.clone();
        assert_eq!(copy.as_slice(), b"he");
    }

    #[test]
    #[should_panic(expected = "overflows")]
    fn overflow_panics() {
        let mut buf = AlignedBuf::with_capacity(BLOCK_SIZE);
        buf.extend_from_slice(&[1u8; BLOCK_SIZE + 1]);
    }

    #[test]
    fn pooled_buffers_take_and_return_slots() {
        let pool = BufferPool::new(2, 10_000);
        assert_eq!(pool.slot_bytes(), 3 * BLOCK_SIZE);
        assert!(pool.alloc(pool.slot_bytes() + 1).is_none(), "too big for a slot");
        let mut a = pool.alloc(5).expect("a free slot");
        assert!(a.is_pooled());
        assert_eq!(a.capacity(), BLOCK_SIZE, "capacity as the heap would give it");
        assert_eq!(a.as_ptr() as usize % BLOCK_SIZE, 0);
        a.extend_from_slice(b"hello");
        let b = pool.alloc(3 * BLOCK_SIZE).expect("a second slot");
        assert_eq!(b.capacity(), 3 * BLOCK_SIZE);
        assert_ne!(pool.slot_of(&a), pool.slot_of(&b));
        assert!(pool.alloc(1).is_none(), "both slots taken");
        assert_eq!(pool.free_slots(), 0);
        let copy = a.clone();
        assert!(!copy.is_pooled());
        assert_eq!(copy.as_slice(), b"hello");
        assert_eq!(pool.slot_of(&copy), None);
        let other = BufferPool::new(1, BLOCK_SIZE);
        assert_eq!(other.slot_of(&a), None, "a slot of another pool");
        drop(a);
        assert_eq!(pool.free_slots(), 1);
        let again = pool.alloc(1).expect("the returned slot");
        assert_eq!(again.full()[..5], *b"hello", "reused slots are not zeroed");
        drop((again, b));
        assert_eq!(pool.usage(), PoolUsage { slots: 2, slot_bytes: 3 * BLOCK_SIZE, free: 2 });
    }

    #[test]
    fn pool_region_outlives_the_pool_while_buffers_live() {
        let pool = BufferPool::new(1, BLOCK_SIZE);
        let mut buf = pool.alloc(BLOCK_SIZE).unwrap();
        drop(pool);
        buf.extend_from_slice(&[7u8; BLOCK_SIZE]);
        assert!(buf.iter().all(|&b| b == 7));
        let handle = std::thread::spawn(move || drop(buf));
        handle.join().unwrap();
    }

    #[test]
    fn rounding() {
        assert_eq!(round_up_to_block(0), 0);
        assert_eq!(round_up_to_block(1), BLOCK_SIZE);
        assert_eq!(round_down_to_block(4097), 4096);
    }
}
