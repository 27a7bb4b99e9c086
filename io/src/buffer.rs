//! Owned, block-aligned, zero-initialised byte buffers.
//!
//! An [`AlignedBuf`] is what the storage backends take and give back: a write or read
//! operation owns its buffer until the completion arrives (STYLE §7), so nothing the kernel
//! may still touch is ever borrowed. Alignment to [`BLOCK_SIZE`] lets the same buffer be used
//! for `O_DIRECT` and registered (`WRITE_FIXED`/`READ_FIXED`) I/O.
//!
//! The memory is allocated zeroed, so every byte up to the capacity is always initialised:
//! that is what makes [`AlignedBuf::set_len`] safe.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::fmt;
use std::ptr::NonNull;

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

/// A heap buffer aligned to [`BLOCK_SIZE`] whose capacity is a whole number of blocks.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    capacity: usize,
    len: usize,
}

// SAFETY: `AlignedBuf` uniquely owns its allocation (no aliasing pointer escapes except through
// `&self`/`&mut self` borrows), so moving it to another thread moves sole ownership with it.
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
        Self { ptr, capacity, len: 0 }
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
        // SAFETY: `ptr` points to an allocation of `capacity` bytes owned by `self`, every byte
        // of which is initialised (allocated zeroed, only ever overwritten with initialised
        // bytes); `&mut self` guarantees no other reference into it exists for the returned
        // lifetime.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.capacity) }
    }

    /// The whole capacity as an initialised slice (ignores the length).
    pub fn full(&self) -> &[u8] {
        // SAFETY: as in `full_mut`, all `capacity` bytes are initialised and owned by `self`;
        // the shared borrow of `self` prevents mutation for the returned lifetime.
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
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: `ptr` was returned by `alloc_zeroed` with exactly this layout (capacity never
        // changes after allocation) and is freed only here, once.
        unsafe { dealloc(self.ptr.as_ptr(), Self::layout(self.capacity)) }
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
    fn rounding() {
        assert_eq!(round_up_to_block(0), 0);
        assert_eq!(round_up_to_block(1), BLOCK_SIZE);
        assert_eq!(round_down_to_block(4097), 4096);
    }
}
