//! Fault rules and the per-disk operation and fault counters.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::storage::{io_failure, no_space};

/// The kinds of operation the simulated disk counts and can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    /// `Op::Write`.
    Write,
    /// `Op::Read`.
    Read,
    /// `Op::SyncData` (`fdatasync`).
    SyncData,
    /// `Op::Allocate` (`fallocate`).
    Allocate,
    /// [`Storage::open`](crate::Storage::open).
    Open,
    /// [`Storage::close`](crate::Storage::close). Counted, never failed.
    Close,
    /// [`Storage::file_len`](crate::Storage::file_len).
    FileLen,
    /// [`Storage::set_len`](crate::Storage::set_len).
    SetLen,
    /// [`Storage::create_dir_all`](crate::Storage::create_dir_all).
    CreateDir,
    /// [`Storage::remove_file`](crate::Storage::remove_file) and
    /// [`Storage::remove_dir_all`](crate::Storage::remove_dir_all).
    Remove,
    /// [`Storage::rename`](crate::Storage::rename).
    Rename,
    /// [`Storage::read_dir`](crate::Storage::read_dir).
    ReadDir,
    /// [`Storage::sync_dir`](crate::Storage::sync_dir).
    SyncDir,
    /// [`Storage::metadata`](crate::Storage::metadata).
    Metadata,
    /// [`Storage::lock_dir`](crate::Storage::lock_dir).
    LockDir,
}

impl OpKind {
    /// Every kind, in declaration order (the index of a kind here is its counter slot).
    pub const ALL: [OpKind; 15] = [
        OpKind::Write,
        OpKind::Read,
        OpKind::SyncData,
        OpKind::Allocate,
        OpKind::Open,
        OpKind::Close,
        OpKind::FileLen,
        OpKind::SetLen,
        OpKind::CreateDir,
        OpKind::Remove,
        OpKind::Rename,
        OpKind::ReadDir,
        OpKind::SyncDir,
        OpKind::Metadata,
        OpKind::LockDir,
    ];

    /// Short lower-case name, for reports.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Write => "write",
            OpKind::Read => "read",
            OpKind::SyncData => "fdatasync",
            OpKind::Allocate => "fallocate",
            OpKind::Open => "open",
            OpKind::Close => "close",
            OpKind::FileLen => "file_len",
            OpKind::SetLen => "set_len",
            OpKind::CreateDir => "create_dir",
            OpKind::Remove => "remove",
            OpKind::Rename => "rename",
            OpKind::ReadDir => "read_dir",
            OpKind::SyncDir => "sync_dir",
            OpKind::Metadata => "metadata",
            OpKind::LockDir => "lock_dir",
        }
    }

    fn slot(self) -> usize {
        // The discriminants are 0..ALL.len() in declaration order.
        self as usize
    }
}

const _: () = assert!(OpKind::ALL.len() == OpKind::LockDir as usize + 1);

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error an injected fault returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultError {
    /// `EIO` ([`io_failure`]).
    Io,
    /// `ENOSPC` ([`no_space`]).
    NoSpace,
}

impl FaultError {
    /// The `io::Error` this fault produces.
    pub fn to_error(self) -> io::Error {
        match self {
            FaultError::Io => io_failure(),
            FaultError::NoSpace => no_space(),
        }
    }
}

/// What a fault counter counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// `EIO` from a [`FaultRule`].
    Io,
    /// `ENOSPC`, from a [`FaultRule`] or from the capacity limit.
    NoSpace,
    /// A short write or read from the configured probabilities.
    Short,
}

impl FaultKind {
    const ALL: [FaultKind; 3] = [FaultKind::Io, FaultKind::NoSpace, FaultKind::Short];
}

/// A rule that fails chosen operations: "the (n+1)-th next `write` under `/sim/data` fails
/// with `EIO`", once or from then on.
///
/// Rules are checked when an operation reaches the simulated device (after argument checks
/// such as direct-I/O alignment, before it has any effect). The operation is offered to the
/// rules in the order they were added: a matching rule that still has operations to let
/// through counts this one and passes it on; the first matching rule with none left fires,
/// and the search stops. A failed operation changes nothing, except `fdatasync`: see the
/// module documentation ("fsyncgate").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultRule {
    op: OpKind,
    error: FaultError,
    skip: u64,
    under: Option<PathBuf>,
    persistent: bool,
}

impl FaultRule {
    /// Fail the next operation of kind `op` with `error`, once.
    pub fn new(op: OpKind, error: FaultError) -> Self {
        Self { op, error, skip: 0, under: None, persistent: false }
    }

    /// Fail the next `op` with `EIO`, once.
    pub fn io(op: OpKind) -> Self {
        Self::new(op, FaultError::Io)
    }

    /// Fail the next `op` with `ENOSPC`, once.
    pub fn no_space(op: OpKind) -> Self {
        Self::new(op, FaultError::NoSpace)
    }

    /// Let `skip` matching operations through first: the `(skip + 1)`-th fails.
    pub fn after(mut self, skip: u64) -> Self {
        self.skip = skip;
        self
    }

    /// Match only operations on paths under `prefix` (component-wise, as
    /// [`Path::starts_with`]). A data operation's path is the one its file was opened by; a
    /// rename matches if either path is under the prefix.
    pub fn under(mut self, prefix: impl Into<PathBuf>) -> Self {
        self.under = Some(prefix.into());
        self
    }

    /// Once it starts firing, fail every matching operation until the rule is cleared.
    pub fn persistent(mut self) -> Self {
        self.persistent = true;
        self
    }

    fn matches(&self, op: OpKind, paths: &[&Path]) -> bool {
        self.op == op
            && self.under.as_ref().is_none_or(|prefix| paths.iter().any(|p| p.starts_with(prefix)))
    }
}

/// Identifies an injected [`FaultRule`], to clear it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FaultId(pub u64);

/// The active fault rules of a disk.
#[derive(Debug, Default)]
pub(crate) struct FaultRules {
    rules: Vec<(FaultId, FaultRule)>,
    next_id: u64,
}

impl FaultRules {
    pub(crate) fn add(&mut self, rule: FaultRule) -> FaultId {
        let id = FaultId(self.next_id);
        self.next_id += 1;
        self.rules.push((id, rule));
        id
    }

    pub(crate) fn remove(&mut self, id: FaultId) -> bool {
        let before = self.rules.len();
        self.rules.retain(|(rule_id, _)| *rule_id != id);
        self.rules.len() != before
    }

    pub(crate) fn clear(&mut self) {
        self.rules.clear();
    }

    /// Offer an operation to the rules; returns the error of the rule that fires, if any.
    pub(crate) fn check(&mut self, op: OpKind, paths: &[&Path]) -> Option<FaultError> {
        let mut fired = None;
        for (index, (_, rule)) in self.rules.iter_mut().enumerate() {
            if !rule.matches(op, paths) {
                continue;
            }
            if rule.skip > 0 {
                rule.skip -= 1;
                continue;
            }
            fired = Some((index, rule.error, rule.persistent));
            break;
        }
        let (index, error, persistent) = fired?;
        if !persistent {
            self.rules.remove(index);
        }
        Some(error)
    }
}

/// Operation and fault counters of one simulated disk (all its storages together), for tests
/// and reports. A snapshot: [`SimDisk::stats`](super::SimDisk::stats) copies it out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    ops: [u64; OpKind::ALL.len()],
    faults: [[u64; FaultKind::ALL.len()]; OpKind::ALL.len()],
    /// Simulated power losses.
    pub crashes: u64,
    /// Bits flipped by [`SimDisk::flip_bit`](super::SimDisk::flip_bit).
    pub bit_flips: u64,
    /// Linked operations completed with `ECANCELED` because an earlier link failed.
    pub cancelled: u64,
}

impl SimStats {
    /// Operations of `kind` that reached the device (including those that then failed).
    pub fn ops(&self, kind: OpKind) -> u64 {
        self.ops[kind.slot()]
    }

    /// Faults of `fault` injected into operations of `kind`.
    pub fn faults(&self, kind: OpKind, fault: FaultKind) -> u64 {
        self.faults[kind.slot()][fault as usize]
    }

    /// All faults injected into operations of `kind`.
    pub fn faults_of(&self, kind: OpKind) -> u64 {
        self.faults[kind.slot()].iter().sum()
    }

    /// All operations of every kind.
    pub fn total_ops(&self) -> u64 {
        self.ops.iter().sum()
    }

    /// All faults of every kind.
    pub fn total_faults(&self) -> u64 {
        self.faults.iter().flatten().sum()
    }

    pub(crate) fn count_op(&mut self, kind: OpKind) {
        self.ops[kind.slot()] += 1;
    }

    pub(crate) fn count_fault(&mut self, kind: OpKind, fault: FaultKind) {
        self.faults[kind.slot()][fault as usize] += 1;
    }
}

impl From<FaultError> for FaultKind {
    fn from(error: FaultError) -> Self {
        match error {
            FaultError::Io => FaultKind::Io,
            FaultError::NoSpace => FaultKind::NoSpace,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_skip_then_fire_once_or_persistently() {
        let mut rules = FaultRules::default();
        let data = Path::new("/sim/data/a");
        let meta = Path::new("/sim/meta/b");
        rules.add(FaultRule::io(OpKind::Write).after(1).under("/sim/data"));
        assert_eq!(rules.check(OpKind::Write, &[meta]), None, "other prefix");
        assert_eq!(rules.check(OpKind::Read, &[data]), None, "other kind");
        assert_eq!(rules.check(OpKind::Write, &[data]), None, "skipped");
        assert_eq!(rules.check(OpKind::Write, &[data]), Some(FaultError::Io));
        assert_eq!(rules.check(OpKind::Write, &[data]), None, "once only");

        let id = rules.add(FaultRule::no_space(OpKind::SyncData).persistent());
        for _ in 0..3 {
            assert_eq!(rules.check(OpKind::SyncData, &[data]), Some(FaultError::NoSpace));
        }
        assert!(rules.remove(id));
        assert_eq!(rules.check(OpKind::SyncData, &[data]), None);
    }

    #[test]
    fn first_firing_rule_wins_and_earlier_rules_count() {
        let mut rules = FaultRules::default();
        let path = Path::new("/x");
        rules.add(FaultRule::io(OpKind::Write).after(1));
        rules.add(FaultRule::no_space(OpKind::Write));
        // The first rule counts this write and passes it on; the second fires.
        assert_eq!(rules.check(OpKind::Write, &[path]), Some(FaultError::NoSpace));
        assert_eq!(rules.check(OpKind::Write, &[path]), Some(FaultError::Io));
        assert_eq!(rules.check(OpKind::Write, &[path]), None);
    }
}
