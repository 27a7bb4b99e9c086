//! One simulated file's bytes: the durable image, the current (volatile) view, and the
//! ordered unsynced changes between them. The crash rule for file data lives here.

use super::CrashReport;
use super::rng::SimRng;

/// Granularity at which a torn write lands: the disk's atomic write unit.
pub const SECTOR_SIZE: usize = 512;

/// An unsynced change to a file, in execution order.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Change {
    /// Bytes written at an offset.
    Write { offset: u64, bytes: Vec<u8> },
    /// The length set by `set_len` or grown by `fallocate`.
    SetLen { len: u64 },
}

/// What became of one unsynced write at a crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Kept,
    Lost,
    Torn,
}

/// The contents of one file.
///
/// Invariant (until a failed `fdatasync` breaks it on purpose, see [`FileData::drop_unsynced`]):
/// replaying `pending` over `durable` gives `current`.
#[derive(Clone, Debug, Default)]
pub(crate) struct FileData {
    current: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Change>,
    /// Entries of the current name space naming this file (normally 0 or 1; a crash can leave
    /// two, when one half of a rename between directories was synced and the other not).
    pub(crate) links: u32,
    /// Open handles on live storages.
    pub(crate) open_handles: u32,
}

fn to_usize(value: u64) -> usize {
    // Offsets and lengths are bounded by the disk's `file_size_bytes_max`, checked before any
    // change is made, and that bound is a `usize` on every supported (64-bit) target.
    usize::try_from(value).unwrap_or(usize::MAX)
}

fn apply_write(bytes: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = to_usize(offset);
    let end = start + data.len();
    if bytes.len() < end {
        bytes.resize(end, 0);
    }
    bytes[start..end].copy_from_slice(data);
}

fn apply_change(bytes: &mut Vec<u8>, change: &Change) {
    match change {
        Change::Write { offset, bytes: data } => apply_write(bytes, *offset, data),
        Change::SetLen { len } => bytes.resize(to_usize(*len), 0),
    }
}

impl FileData {
    /// Current length.
    pub(crate) fn len(&self) -> u64 {
        self.current.len() as u64
    }

    /// Whether the file is live: it holds space on the disk.
    pub(crate) fn is_live(&self) -> bool {
        self.links > 0 || self.open_handles > 0
    }

    /// Whether any change is waiting for `fdatasync`.
    pub(crate) fn has_unsynced(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The current contents.
    pub(crate) fn current(&self) -> &[u8] {
        &self.current
    }

    /// The durable contents.
    pub(crate) fn durable(&self) -> &[u8] {
        &self.durable
    }

    /// Write `data` at `offset` (visible at once, durable after `sync`).
    pub(crate) fn write(&mut self, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        apply_write(&mut self.current, offset, data);
        self.pending.push(Change::Write { offset, bytes: data.to_vec() });
    }

    /// Truncate or extend to `len` (extension reads as zeros).
    pub(crate) fn set_len(&mut self, len: u64) {
        let change = Change::SetLen { len };
        apply_change(&mut self.current, &change);
        self.pending.push(change);
    }

    /// Copy the bytes at `offset` into `out`; returns how many there were (short at end of
    /// file, 0 past it).
    pub(crate) fn read(&self, offset: u64, out: &mut [u8]) -> usize {
        let start = to_usize(offset);
        if start >= self.current.len() {
            return 0;
        }
        let n = out.len().min(self.current.len() - start);
        out[..n].copy_from_slice(&self.current[start..start + n]);
        n
    }

    /// `fdatasync`: every change so far becomes durable.
    pub(crate) fn sync(&mut self) {
        for change in self.pending.drain(..) {
            apply_change(&mut self.durable, &change);
        }
    }

    /// A failed `fdatasync`: the unsynced changes stay visible in the current view but will
    /// never be made durable (Linux marks the pages clean after reporting a writeback error).
    pub(crate) fn drop_unsynced(&mut self) {
        self.pending.clear();
    }

    /// Flip one bit in every version of the byte at `offset` the disk holds: the current
    /// view, the durable image and each unsynced write covering it. Returns false if the
    /// offset is beyond both images.
    pub(crate) fn flip_bit(&mut self, offset: u64, bit: u8) -> bool {
        let mask = 1u8 << (bit & 7);
        let at = to_usize(offset);
        let mut flipped = false;
        if let Some(byte) = self.current.get_mut(at) {
            *byte ^= mask;
            flipped = true;
        }
        if let Some(byte) = self.durable.get_mut(at) {
            *byte ^= mask;
            flipped = true;
        }
        for change in &mut self.pending {
            if let Change::Write { offset: start, bytes } = change
                && offset >= *start
                && let Some(byte) = bytes.get_mut(to_usize(offset - *start))
            {
                *byte ^= mask;
            }
        }
        flipped
    }

    /// Power loss: replace both views with a crash image built from the durable image and
    /// the unsynced changes (see the module documentation of `sim` for the rule), and forget
    /// the unsynced changes.
    pub(crate) fn crash(&mut self, rng: &mut SimRng, report: &mut CrashReport) {
        if self.pending.is_empty() {
            self.current.clone_from(&self.durable);
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        let durable_len = self.durable.len() as u64;

        // Length changes are metadata, journaled in order: count them, keep a random prefix.
        let mut length_changes = 0u64;
        let mut exec_len = durable_len;
        for change in &pending {
            match change {
                Change::SetLen { len } => {
                    length_changes += 1;
                    exec_len = *len;
                }
                Change::Write { offset, bytes } => {
                    let end = offset + bytes.len() as u64;
                    if end > exec_len {
                        length_changes += 1;
                        exec_len = end;
                    }
                }
            }
        }
        let kept_length_changes = rng.below(length_changes + 1);
        report.length_changes_lost += length_changes - kept_length_changes;

        let mut image = std::mem::take(&mut self.durable);
        let mut len = durable_len;
        let mut exec_len = durable_len;
        let mut length_index = 0u64;
        for change in &pending {
            match change {
                Change::SetLen { len: new_len } => {
                    if length_index < kept_length_changes {
                        image.resize(to_usize(*new_len), 0);
                        len = *new_len;
                    }
                    length_index += 1;
                    exec_len = *new_len;
                }
                Change::Write { offset, bytes } => {
                    land_write(rng, &mut image, *offset, bytes, report);
                    let end = offset + bytes.len() as u64;
                    if end > exec_len {
                        if length_index < kept_length_changes {
                            len = len.max(end);
                        }
                        length_index += 1;
                        exec_len = end;
                    }
                }
            }
        }
        image.resize(to_usize(len), 0);
        self.current.clone_from(&image);
        self.durable = image;
    }
}

/// Decide the fate of one unsynced write and copy the sectors that land into `image`.
fn land_write(
    rng: &mut SimRng,
    image: &mut Vec<u8>,
    offset: u64,
    bytes: &[u8],
    report: &mut CrashReport,
) {
    let sector = SECTOR_SIZE as u64;
    let end = offset + bytes.len() as u64;
    let first = offset / sector;
    let sectors = to_usize((end - 1) / sector - first + 1);
    let fate = match (sectors >= 2, rng.below(3)) {
        (_, 0) => Fate::Kept,
        (_, 1) => Fate::Lost,
        (true, _) => Fate::Torn,
        (false, _) => {
            if rng.coin() {
                Fate::Kept
            } else {
                Fate::Lost
            }
        }
    };
    let mut landed = vec![fate == Fate::Kept; sectors];
    if fate == Fate::Torn {
        // A random non-empty, strict subset of the sectors.
        for slot in &mut landed {
            *slot = rng.coin();
        }
        let count = landed.iter().filter(|&&l| l).count();
        if count == 0 {
            landed[rng.index(sectors)] = true;
        } else if count == sectors {
            landed[rng.index(sectors)] = false;
        }
    }
    match fate {
        Fate::Kept => report.writes_kept += 1,
        Fate::Lost => report.writes_lost += 1,
        Fate::Torn => report.writes_torn += 1,
    }
    for (index, &lands) in landed.iter().enumerate() {
        let piece_start = ((first + index as u64) * sector).max(offset);
        let piece_end = ((first + index as u64 + 1) * sector).min(end);
        let piece = &bytes[to_usize(piece_start - offset)..to_usize(piece_end - offset)];
        if lands {
            apply_write(image, piece_start, piece);
        } else {
            report.bytes_lost += piece.len() as u64;
            if fate == Fate::Torn {
                report.sectors_torn += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(durable: &[u8]) -> FileData {
        let mut file = FileData::default();
        file.write(0, durable);
        file.sync();
        file
    }

    #[test]
    fn sync_makes_current_durable() {
        let mut file = file_with(b"hello");
        file.write(3, b"LO world");
        file.set_len(6);
        assert_eq!(file.current(), b"helLO ");
        assert_eq!(file.durable(), b"hello");
        assert!(file.has_unsynced());
        file.sync();
        assert_eq!(file.durable(), b"helLO ");
        assert!(!file.has_unsynced());
    }

    #[test]
    fn crash_without_unsynced_changes_keeps_everything_and_draws_nothing() {
        let mut file = file_with(&[7u8; 3000]);
        let mut rng = SimRng::new(1);
        let before = rng.clone();
        let mut report = CrashReport::default();
        file.crash(&mut rng, &mut report);
        assert_eq!(file.current(), &[7u8; 3000][..]);
        assert_eq!(rng, before);
        assert_eq!(report, CrashReport::default());
    }

    #[test]
    fn torn_writes_land_whole_sectors_and_every_fate_happens() {
        let old = vec![0xAAu8; 8 * SECTOR_SIZE];
        let new = vec![0x55u8; 4 * SECTOR_SIZE];
        let mut fates = [0u32; 3];
        for seed in 0..200 {
            let mut file = file_with(&old);
            // Misaligned on purpose: pieces at both ends are partial sectors.
            let offset = SECTOR_SIZE as u64 + 100;
            file.write(offset, &new);
            let mut report = CrashReport::default();
            file.crash(&mut SimRng::new(seed), &mut report);
            let image = file.current();
            assert_eq!(image.len(), old.len());
            assert_eq!(file.durable(), image);
            // Each piece of the write within one sector lands as a unit.
            let end = offset as usize + new.len();
            let mut start = offset as usize;
            while start < end {
                let piece_end = ((start / SECTOR_SIZE + 1) * SECTOR_SIZE).min(end);
                let piece = &image[start..piece_end];
                assert!(piece.iter().all(|&b| b == piece[0]), "a sector landed in part");
                start = piece_end;
            }
            assert!(image[..offset as usize].iter().all(|&b| b == 0xAA), "outside the write");
            assert!(image[end..].iter().all(|&b| b == 0xAA), "outside the write");
            let changed = image.iter().filter(|&&b| b == 0x55).count();
            match changed {
                0 => fates[1] += 1,
                n if n == new.len() => fates[0] += 1,
                _ => fates[2] += 1,
            }
            assert_eq!(
                report.writes_kept + report.writes_lost + report.writes_torn,
                1,
                "one write, one fate"
            );
        }
        assert!(fates.iter().all(|&n| n > 0), "kept/lost/torn all occur: {fates:?}");
    }

    #[test]
    fn length_changes_survive_as_a_journal_prefix() {
        let mut outcomes = std::collections::BTreeSet::new();
        for seed in 0..100 {
            let mut file = file_with(&[1u8; 1000]);
            file.set_len(10);
            file.set_len(500);
            let mut report = CrashReport::default();
            file.crash(&mut SimRng::new(seed), &mut report);
            let len = file.len();
            // A prefix of (10, 500): 1000 (none), 10 (first), 500 (both). Never 500 with the
            // old bytes 10..500 (that would be the second without the first).
            assert!([1000, 10, 500].contains(&len), "len {len}");
            if len == 500 {
                assert!(file.current()[10..].iter().all(|&b| b == 0));
            }
            outcomes.insert(len);
        }
        assert_eq!(outcomes.len(), 3);
    }

    #[test]
    fn failed_sync_loses_changes_for_good() {
        let mut file = file_with(b"old!");
        file.write(0, b"new!");
        file.drop_unsynced();
        assert_eq!(file.current(), b"new!", "still visible");
        file.sync();
        assert_eq!(file.durable(), b"old!", "a later sync does not persist them");
        file.crash(&mut SimRng::new(3), &mut CrashReport::default());
        assert_eq!(file.current(), b"old!");
    }

    #[test]
    fn flip_bit_reaches_every_version() {
        let mut file = file_with(&[0u8; 8]);
        file.write(4, &[0u8; 4]);
        assert!(file.flip_bit(5, 1));
        assert_eq!(file.current()[5], 2);
        assert_eq!(file.durable()[5], 2);
        file.sync();
        assert_eq!(file.durable()[5], 2, "the unsynced write carried the flip");
        assert!(!file.flip_bit(100, 0));
    }
}
