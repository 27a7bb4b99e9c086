//! What the consumer checks, with memory bounded by producers × partitions (not by messages).

use std::ops::Range;

/// Most gaps remembered per (producer, partition), so that a message arriving late can be told
/// apart from a duplicate. Past it, the oldest gap is forgotten: its messages stay counted as
/// lost, and should they still arrive they count as duplicates.
pub const GAPS_REMEMBERED_MAX: usize = 1024;

/// Violation counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Violations {
    /// Acknowledged messages never consumed (gaps in a sequence, or missing at the end).
    pub lost: u64,
    /// Messages consumed more than once.
    pub duplicated: u64,
    /// Messages consumed after a later one of the same (producer, partition).
    pub reordered: u64,
    /// Messages whose bytes did not verify.
    pub corrupt: u64,
    /// Records whose offset was not the next one of their partition (offsets must be dense
    /// and increasing).
    pub offset_violations: u64,
}

impl Violations {
    /// Add another consumer's counts.
    pub fn add(&mut self, other: &Violations) {
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.reordered += other.reordered;
        self.corrupt += other.corrupt;
        self.offset_violations += other.offset_violations;
    }
}

/// What one observation of a sequence number meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// The next one expected.
    InOrder,
    /// Later than expected: the ones in between are (so far) missing.
    Gap { missing: u64 },
    /// One that was missing arrived after later ones.
    Reordered,
    /// Seen before.
    Duplicate,
}

/// The sequence numbers of one (producer, partition): which came, in what order.
#[derive(Clone, Debug, Default)]
pub struct SequenceTracker {
    /// The sequence number expected next: every one below it came or is in `gaps`.
    expected: u64,
    /// Missing ranges below `expected`, oldest first.
    gaps: Vec<Range<u64>>,
    /// Messages in `gaps` or forgotten gaps: not (yet) received.
    missing: u64,
}

impl SequenceTracker {
    pub fn observe(&mut self, sequence: u64) -> Seen {
        if sequence == self.expected {
            self.expected += 1;
            return Seen::InOrder;
        }
        if sequence > self.expected {
            let missing = sequence - self.expected;
            if self.gaps.len() == GAPS_REMEMBERED_MAX {
                self.gaps.remove(0);
            }
            self.gaps.push(self.expected..sequence);
            self.missing += missing;
            self.expected = sequence + 1;
            return Seen::Gap { missing };
        }
        let Some(index) = self.gaps.iter().position(|gap| gap.contains(&sequence)) else {
            return Seen::Duplicate;
        };
        let gap = self.gaps.remove(index);
        let (before, after) = (gap.start..sequence, sequence + 1..gap.end);
        for part in [after, before] {
            if !part.is_empty() {
                self.gaps.insert(index, part);
            }
        }
        self.missing -= 1;
        Seen::Reordered
    }

    /// Distinct sequence numbers received.
    pub fn received(&self) -> u64 {
        self.expected - self.missing
    }

    /// Sequence numbers below `expected` that have not arrived.
    #[cfg(test)]
    pub fn missing(&self) -> u64 {
        self.missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_gap_reorder_duplicate() {
        let mut t = SequenceTracker::default();
        assert_eq!(t.observe(0), Seen::InOrder);
        assert_eq!(t.observe(1), Seen::InOrder);
        assert_eq!(t.observe(5), Seen::Gap { missing: 3 });
        assert_eq!((t.received(), t.missing()), (3, 3));
        assert_eq!(t.observe(3), Seen::Reordered);
        assert_eq!(t.observe(3), Seen::Duplicate);
        assert_eq!(t.observe(1), Seen::Duplicate);
        assert_eq!(t.observe(2), Seen::Reordered);
        assert_eq!(t.observe(4), Seen::Reordered);
        assert_eq!((t.received(), t.missing()), (6, 0));
        assert_eq!(t.observe(6), Seen::InOrder);
        assert_eq!(t.observe(5), Seen::Duplicate);
    }

    #[test]
    fn forgotten_gaps_stay_lost() {
        let mut t = SequenceTracker::default();
        for i in 0..=GAPS_REMEMBERED_MAX as u64 {
            assert_eq!(t.observe(2 * i + 1), Seen::Gap { missing: 1 });
        }
        assert_eq!(t.missing(), GAPS_REMEMBERED_MAX as u64 + 1);
        assert_eq!(t.observe(0), Seen::Duplicate, "the oldest gap was forgotten");
        assert_eq!(t.observe(2), Seen::Reordered);
        assert_eq!(t.missing(), GAPS_REMEMBERED_MAX as u64);
    }
}
