//! The simulated file system's name space: directories, their entries (current and durable),
//! the unsynced entry changes between the two, and the crash rule for them.
//!
//! Nodes are inodes: an open file keeps its inode when it is renamed or removed, as on a real
//! file system. A node is kept while anything could still reach it — a current entry, a
//! durable entry, an unsynced entry change (which a crash may keep), or an open handle — and
//! collected once nothing can.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Component, Path, PathBuf};

use super::CrashReport;
use super::file::FileData;
use super::rng::SimRng;
use crate::storage::{DirEntry, Metadata};

/// Inode number.
pub(crate) type Ino = u64;

/// The root directory's inode; it always exists and is always durable.
pub(crate) const ROOT: Ino = 0;

/// An error with a raw errno, so `kind()` and `raw_os_error()` match a real file system.
pub(crate) fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// The names along `path`, normalised lexically: `.` dropped, `..` pops (there are no
/// symbolic links to make that wrong), relative paths taken from the root.
pub(crate) fn components(path: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for component in path.components() {
        match component {
            Component::Prefix(_) | Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                names.pop();
            }
            Component::Normal(name) => {
                let name = name.to_str().ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("non-UTF-8 name in {}", path.display()),
                    )
                })?;
                names.push(name.to_owned());
            }
        }
    }
    Ok(names)
}

/// The absolute path of normalised `names`.
pub(crate) fn path_of(names: &[String]) -> PathBuf {
    let mut path = PathBuf::from("/");
    path.extend(names);
    path
}

/// One unsynced change to a directory's entries, applied atomically at a crash or not at all.
#[derive(Clone, Debug)]
struct EntryChange {
    /// `(name, Some(inode))` sets an entry, `(name, None)` removes it. A rename within one
    /// directory is one change with two effects, so it is atomic.
    effects: Vec<(String, Option<Ino>)>,
    /// Shared by the two halves of a rename between directories.
    rename: Option<u64>,
}

/// A directory.
#[derive(Clone, Debug, Default)]
pub(crate) struct DirData {
    /// What lookups see now.
    entries: BTreeMap<String, Ino>,
    /// What a crash starts from.
    durable: BTreeMap<String, Ino>,
    /// Changes since the last `sync_dir`, in order: replaying them over `durable` gives
    /// `entries`.
    pending: Vec<EntryChange>,
}

impl DirData {
    fn push(&mut self, effects: Vec<(String, Option<Ino>)>, rename: Option<u64>) {
        for (name, target) in &effects {
            match target {
                Some(ino) => self.entries.insert(name.clone(), *ino),
                None => self.entries.remove(name),
            };
        }
        self.pending.push(EntryChange { effects, rename });
    }

    fn referenced(&self) -> impl Iterator<Item = Ino> + '_ {
        let pending = self.pending.iter().flat_map(|change| change.effects.iter());
        self.entries
            .values()
            .chain(self.durable.values())
            .copied()
            .chain(pending.filter_map(|(_, target)| *target))
    }
}

/// A file or a directory.
#[derive(Clone, Debug)]
pub(crate) enum Node {
    File(FileData),
    Dir(DirData),
}

/// The whole simulated file system.
#[derive(Clone, Debug)]
pub(crate) struct Namespace {
    nodes: BTreeMap<Ino, Node>,
    next_ino: Ino,
    next_rename: u64,
    /// Sum of the lengths of live files (linked or open): what the capacity limit checks.
    used_bytes: u64,
}

impl Default for Namespace {
    fn default() -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert(ROOT, Node::Dir(DirData::default()));
        Self { nodes, next_ino: ROOT + 1, next_rename: 0, used_bytes: 0 }
    }
}

fn missing_node(ino: Ino) -> io::Error {
    // Every inode reachable from a live entry or handle is kept (see `collect_garbage`), so this
    // would be a bug in the simulator, reported as an error rather than a panic in a test.
    io::Error::other(format!("simulator bug: inode {ino} is gone"))
}

impl Namespace {
    pub(crate) fn used_bytes(&self) -> u64 {
        self.used_bytes
    }

    fn node(&self, ino: Ino) -> io::Result<&Node> {
        self.nodes.get(&ino).ok_or_else(|| missing_node(ino))
    }

    fn dir(&self, ino: Ino) -> io::Result<&DirData> {
        match self.node(ino)? {
            Node::Dir(dir) => Ok(dir),
            Node::File(_) => Err(errno(libc::ENOTDIR)),
        }
    }

    fn dir_mut(&mut self, ino: Ino) -> io::Result<&mut DirData> {
        match self.nodes.get_mut(&ino).ok_or_else(|| missing_node(ino))? {
            Node::Dir(dir) => Ok(dir),
            Node::File(_) => Err(errno(libc::ENOTDIR)),
        }
    }

    /// The file at inode `ino`.
    pub(crate) fn file(&self, ino: Ino) -> io::Result<&FileData> {
        match self.node(ino)? {
            Node::File(file) => Ok(file),
            Node::Dir(_) => Err(errno(libc::EISDIR)),
        }
    }

    fn file_mut(&mut self, ino: Ino) -> io::Result<&mut FileData> {
        match self.nodes.get_mut(&ino).ok_or_else(|| missing_node(ino))? {
            Node::File(file) => Ok(file),
            Node::Dir(_) => Err(errno(libc::EISDIR)),
        }
    }

    fn is_dir(&self, ino: Ino) -> bool {
        matches!(self.nodes.get(&ino), Some(Node::Dir(_)))
    }

    /// Change a file's contents, keeping the space accounting right.
    pub(crate) fn modify_file<R>(
        &mut self,
        ino: Ino,
        change: impl FnOnce(&mut FileData) -> R,
    ) -> io::Result<R> {
        let file = self.file_mut(ino)?;
        let (before, live) = (file.len(), file.is_live());
        let result = change(file);
        let after = file.len();
        if live {
            self.used_bytes = self.used_bytes - before + after;
        }
        Ok(result)
    }

    /// Adjust a file's link or handle count, charging or releasing its space when it becomes
    /// live or dead. Returns true if the file just became dead (a garbage candidate).
    fn adjust_file(&mut self, ino: Ino, adjust: impl FnOnce(&mut FileData)) -> bool {
        let Some(Node::File(file)) = self.nodes.get_mut(&ino) else { return false };
        let before = file.is_live();
        adjust(file);
        let after = file.is_live();
        match (before, after) {
            (true, false) => {
                self.used_bytes -= file.len();
                true
            }
            (false, true) => {
                self.used_bytes += file.len();
                false
            }
            _ => false,
        }
    }

    fn new_ino(&mut self) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        ino
    }

    /// Resolve `names` in the current name space.
    pub(crate) fn resolve(&self, names: &[String]) -> io::Result<Ino> {
        let mut at = ROOT;
        for name in names {
            at = *self.dir(at)?.entries.get(name).ok_or_else(|| errno(libc::ENOENT))?;
        }
        Ok(at)
    }

    /// Resolve the parent directory of `names` and return it with the last name.
    fn resolve_parent<'a>(&self, names: &'a [String]) -> io::Result<(Ino, &'a str)> {
        let Some((last, parents)) = names.split_last() else {
            // The root has no parent: it cannot be created, removed or renamed.
            return Err(errno(libc::EBUSY));
        };
        let parent = self.resolve(parents)?;
        self.dir(parent)?;
        Ok((parent, last))
    }

    fn lookup_in(&self, dir: Ino, name: &str) -> io::Result<Option<Ino>> {
        Ok(self.dir(dir)?.entries.get(name).copied())
    }

    /// Link `name` in `dir` to `ino` (an unsynced entry change); returns the inode it replaced.
    fn link(&mut self, dir: Ino, name: &str, ino: Ino) -> io::Result<Option<Ino>> {
        let replaced = self.lookup_in(dir, name)?;
        self.dir_mut(dir)?.push(vec![(name.to_owned(), Some(ino))], None);
        self.adjust_file(ino, |file| file.links += 1);
        Ok(replaced)
    }

    /// Remove `name` from `dir` (an unsynced entry change).
    fn unlink(&mut self, dir: Ino, name: &str) -> io::Result<()> {
        if let Some(ino) = self.lookup_in(dir, name)? {
            self.dir_mut(dir)?.push(vec![(name.to_owned(), None)], None);
            self.adjust_file(ino, |file| file.links = file.links.saturating_sub(1));
        }
        Ok(())
    }

    /// Open the file at `names`, creating it if asked. Returns its inode with one more open
    /// handle.
    pub(crate) fn open(
        &mut self,
        names: &[String],
        create: bool,
        create_new: bool,
    ) -> io::Result<Ino> {
        if names.is_empty() {
            return Err(errno(libc::EISDIR));
        }
        let (dir, name) = self.resolve_parent(names)?;
        let ino = match self.lookup_in(dir, name)? {
            Some(_) if create_new => return Err(errno(libc::EEXIST)),
            Some(ino) if self.is_dir(ino) => return Err(errno(libc::EISDIR)),
            Some(ino) => ino,
            None if !(create || create_new) => return Err(errno(libc::ENOENT)),
            None => {
                let ino = self.new_ino();
                self.nodes.insert(ino, Node::File(FileData::default()));
                self.link(dir, name, ino)?;
                ino
            }
        };
        self.adjust_file(ino, |file| file.open_handles += 1);
        Ok(ino)
    }

    /// Create `name` in `dir` as an empty file if nothing has that name.
    pub(crate) fn ensure_file(&mut self, dir: Ino, name: &str) -> io::Result<()> {
        match self.lookup_in(dir, name)? {
            Some(ino) if self.is_dir(ino) => Err(errno(libc::EISDIR)),
            Some(_) => Ok(()),
            None => {
                let ino = self.new_ino();
                self.nodes.insert(ino, Node::File(FileData::default()));
                self.link(dir, name, ino).map(|_| ())
            }
        }
    }

    /// One handle on `ino` closed.
    pub(crate) fn close(&mut self, ino: Ino) {
        if self.adjust_file(ino, |file| file.open_handles = file.open_handles.saturating_sub(1)) {
            self.collect_garbage();
        }
    }

    /// `mkdir -p`.
    pub(crate) fn create_dir_all(&mut self, names: &[String]) -> io::Result<()> {
        let mut at = ROOT;
        for (index, name) in names.iter().enumerate() {
            at = match self.lookup_in(at, name)? {
                Some(child) if self.is_dir(child) => child,
                Some(_) if index + 1 == names.len() => return Err(errno(libc::EEXIST)),
                Some(_) => return Err(errno(libc::ENOTDIR)),
                None => {
                    let child = self.new_ino();
                    self.nodes.insert(child, Node::Dir(DirData::default()));
                    self.link(at, name, child)?;
                    child
                }
            };
        }
        Ok(())
    }

    /// `unlink`.
    pub(crate) fn remove_file(&mut self, names: &[String]) -> io::Result<()> {
        let (dir, name) = self.resolve_parent(names)?;
        match self.lookup_in(dir, name)? {
            None => Err(errno(libc::ENOENT)),
            Some(ino) if self.is_dir(ino) => Err(errno(libc::EISDIR)),
            Some(_) => self.unlink(dir, name),
        }
    }

    /// `rm -r`: children first (each removal an unsynced change of its directory), then the
    /// directory's own entry.
    pub(crate) fn remove_dir_all(&mut self, names: &[String]) -> io::Result<()> {
        let (parent, name) = self.resolve_parent(names)?;
        let ino = self.lookup_in(parent, name)?.ok_or_else(|| errno(libc::ENOENT))?;
        if !self.is_dir(ino) {
            return Err(errno(libc::ENOTDIR));
        }
        self.empty_dir(ino)?;
        self.unlink(parent, name)
    }

    fn empty_dir(&mut self, dir: Ino) -> io::Result<()> {
        let children: Vec<(String, Ino)> =
            self.dir(dir)?.entries.iter().map(|(name, ino)| (name.clone(), *ino)).collect();
        for (name, child) in children {
            if self.is_dir(child) {
                self.empty_dir(child)?;
            }
            self.unlink(dir, &name)?;
        }
        Ok(())
    }

    /// `rename`, replacing the target. Within one directory it is one atomic entry change;
    /// between two it is two halves, one per directory, tied together for the crash rule.
    pub(crate) fn rename(&mut self, from: &[String], to: &[String]) -> io::Result<()> {
        let (src_dir, src_name) = self.resolve_parent(from)?;
        let ino = self.lookup_in(src_dir, src_name)?.ok_or_else(|| errno(libc::ENOENT))?;
        let (dst_dir, dst_name) = self.resolve_parent(to)?;
        let moving_dir = self.is_dir(ino);
        if let Some(existing) = self.lookup_in(dst_dir, dst_name)? {
            if existing == ino {
                return Ok(()); // POSIX: renaming a file onto itself does nothing.
            }
            match (moving_dir, self.is_dir(existing)) {
                (false, true) => return Err(errno(libc::EISDIR)),
                (true, false) => return Err(errno(libc::ENOTDIR)),
                (true, true) if !self.dir(existing)?.entries.is_empty() => {
                    return Err(errno(libc::ENOTEMPTY));
                }
                _ => {}
            }
        }
        if moving_dir && to.starts_with(from) {
            return Err(errno(libc::EINVAL)); // into its own subtree
        }
        let replaced = self.lookup_in(dst_dir, dst_name)?;
        if src_dir == dst_dir {
            let effects = vec![(src_name.to_owned(), None), (dst_name.to_owned(), Some(ino))];
            self.dir_mut(src_dir)?.push(effects, None);
        } else {
            let id = self.next_rename;
            self.next_rename += 1;
            self.dir_mut(src_dir)?.push(vec![(src_name.to_owned(), None)], Some(id));
            self.dir_mut(dst_dir)?.push(vec![(dst_name.to_owned(), Some(ino))], Some(id));
        }
        if let Some(old) = replaced {
            self.adjust_file(old, |file| file.links = file.links.saturating_sub(1));
        }
        Ok(())
    }

    /// Sorted listing of a directory.
    pub(crate) fn list(&self, names: &[String]) -> io::Result<Vec<DirEntry>> {
        let dir = self.dir(self.resolve(names)?)?;
        Ok(dir
            .entries
            .iter()
            .map(|(name, ino)| DirEntry { name: name.clone(), is_dir: self.is_dir(*ino) })
            .collect())
    }

    /// Size and type.
    pub(crate) fn metadata(&self, names: &[String]) -> io::Result<Metadata> {
        Ok(match self.node(self.resolve(names)?)? {
            Node::File(file) => Metadata { len: file.len(), is_dir: false },
            Node::Dir(_) => Metadata { len: 0, is_dir: true },
        })
    }

    /// The directory at `names` (which must be one).
    pub(crate) fn resolve_dir(&self, names: &[String]) -> io::Result<Ino> {
        let ino = self.resolve(names)?;
        self.dir(ino)?;
        Ok(ino)
    }

    /// `fsync` of a directory: its entry changes become durable.
    pub(crate) fn sync_dir(&mut self, names: &[String]) -> io::Result<()> {
        let ino = self.resolve_dir(names)?;
        let dir = self.dir_mut(ino)?;
        if dir.pending.is_empty() {
            return Ok(());
        }
        dir.durable.clone_from(&dir.entries);
        dir.pending.clear();
        self.collect_garbage();
        Ok(())
    }

    /// Every path of the current name space (or of the durable one), sorted, root excluded.
    pub(crate) fn paths(&self, durable: bool) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![(ROOT, PathBuf::from("/"))];
        while let Some((ino, path)) = stack.pop() {
            let Some(Node::Dir(dir)) = self.nodes.get(&ino) else { continue };
            let entries = if durable { &dir.durable } else { &dir.entries };
            for (name, child) in entries {
                let child_path = path.join(name);
                out.push(child_path.clone());
                stack.push((*child, child_path));
            }
        }
        out.sort();
        out
    }

    /// Drop every node nothing can reach any more (see the module documentation).
    fn collect_garbage(&mut self) {
        let mut reached = BTreeSet::new();
        let mut stack = vec![ROOT];
        for (ino, node) in &self.nodes {
            if let Node::File(file) = node
                && file.open_handles > 0
            {
                stack.push(*ino);
            }
        }
        while let Some(ino) = stack.pop() {
            if !reached.insert(ino) {
                continue;
            }
            if let Some(Node::Dir(dir)) = self.nodes.get(&ino) {
                stack.extend(dir.referenced().filter(|child| !reached.contains(child)));
            }
        }
        self.nodes.retain(|ino, _| reached.contains(ino));
    }

    /// Flip a bit of the file at `names` (see `FileData::flip_bit`).
    pub(crate) fn flip_bit(&mut self, names: &[String], offset: u64, bit: u8) -> io::Result<()> {
        let ino = self.resolve(names)?;
        if self.file_mut(ino)?.flip_bit(offset, bit) {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("offset {offset} is beyond the end of {}", path_of(names).display()),
            ))
        }
    }

    /// Power loss. Every handle is gone; each directory keeps its durable entries plus a
    /// random prefix of its unsynced changes (halves of one rename between two directories
    /// survive together while both are unsynced); nodes no longer reachable vanish; every
    /// surviving file gets its crash image.
    pub(crate) fn crash(&mut self, rng: &mut SimRng, report: &mut CrashReport) {
        let linked_before: BTreeSet<Ino> = self
            .nodes
            .iter()
            .filter(|(_, node)| matches!(node, Node::File(file) if file.links > 0))
            .map(|(ino, _)| *ino)
            .collect();

        // A random cut per directory with unsynced changes.
        let mut cuts: BTreeMap<Ino, usize> = BTreeMap::new();
        let mut halves: BTreeMap<u64, Vec<(Ino, usize)>> = BTreeMap::new();
        for (ino, node) in &self.nodes {
            let Node::Dir(dir) = node else { continue };
            if dir.pending.is_empty() {
                continue;
            }
            cuts.insert(*ino, rng.index(dir.pending.len() + 1));
            for (index, change) in dir.pending.iter().enumerate() {
                if let Some(id) = change.rename {
                    halves.entry(id).or_default().push((*ino, index));
                }
            }
        }
        // A rename between two unsynced directories is one journal transaction: if either
        // half survives, the other does too (with everything before it in its directory).
        // Cuts only grow, so this ends.
        loop {
            let mut grown = false;
            for pair in halves.values() {
                // One half means the other's directory was synced: nothing to couple.
                let [(dir_a, at_a), (dir_b, at_b)] = pair.as_slice() else { continue };
                // Indexing cannot fail: halves are only collected from directories with
                // unsynced changes, and each of those got a cut above.
                let kept_a = *at_a < cuts[dir_a];
                let kept_b = *at_b < cuts[dir_b];
                if kept_a && !kept_b {
                    cuts.insert(*dir_b, at_b + 1);
                    grown = true;
                } else if kept_b && !kept_a {
                    cuts.insert(*dir_a, at_a + 1);
                    grown = true;
                }
            }
            if !grown {
                break;
            }
        }
        for (ino, node) in &mut self.nodes {
            let Node::Dir(dir) = node else { continue };
            let cut = cuts.get(ino).copied().unwrap_or(0);
            for change in &dir.pending[..cut] {
                for (name, target) in &change.effects {
                    match target {
                        Some(child) => dir.durable.insert(name.clone(), *child),
                        None => dir.durable.remove(name),
                    };
                }
            }
            report.entries_lost += (dir.pending.len() - cut) as u64;
            dir.pending.clear();
            dir.entries.clone_from(&dir.durable);
        }

        // No handles survive; links are recounted from the surviving entries.
        for node in self.nodes.values_mut() {
            if let Node::File(file) = node {
                file.open_handles = 0;
                file.links = 0;
            }
        }
        self.collect_garbage();
        let mut links: BTreeMap<Ino, u32> = BTreeMap::new();
        for node in self.nodes.values() {
            if let Node::Dir(dir) = node {
                for child in dir.entries.values() {
                    *links.entry(*child).or_default() += 1;
                }
            }
        }
        report.files_vanished +=
            linked_before.iter().filter(|ino| !self.nodes.contains_key(ino)).count() as u64;

        self.used_bytes = 0;
        for (ino, node) in &mut self.nodes {
            if let Node::File(file) = node {
                file.links = links.get(ino).copied().unwrap_or(0);
                file.crash(rng, report);
                if file.is_live() {
                    self.used_bytes += file.len();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(path: &str) -> Vec<String> {
        components(Path::new(path)).unwrap()
    }

    #[test]
    fn components_normalise() {
        assert_eq!(names("/a/./b/../c"), ["a", "c"]);
        assert_eq!(names("a/b"), ["a", "b"]);
        assert!(names("/").is_empty());
        assert_eq!(path_of(&names("/x/y")), Path::new("/x/y"));
    }

    #[test]
    fn errors_match_a_real_file_system() {
        let mut ns = Namespace::default();
        ns.create_dir_all(&names("/d/e")).unwrap();
        let ino = ns.open(&names("/d/f"), true, false).unwrap();
        ns.close(ino);
        let kind = |r: io::Result<()>| r.unwrap_err().kind();
        assert_eq!(
            kind(ns.open(&names("/d/x"), false, false).map(|_| ())),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            kind(ns.open(&names("/d/f"), true, true).map(|_| ())),
            io::ErrorKind::AlreadyExists
        );
        assert_eq!(
            kind(ns.open(&names("/d"), true, false).map(|_| ())),
            io::ErrorKind::IsADirectory
        );
        assert_eq!(
            kind(ns.open(&names("/d/f/g"), true, false).map(|_| ())),
            io::ErrorKind::NotADirectory
        );
        assert_eq!(kind(ns.remove_file(&names("/d/e"))), io::ErrorKind::IsADirectory);
        assert_eq!(kind(ns.remove_dir_all(&names("/d/f"))), io::ErrorKind::NotADirectory);
        assert_eq!(kind(ns.create_dir_all(&names("/d/f"))), io::ErrorKind::AlreadyExists);
        assert_eq!(kind(ns.create_dir_all(&names("/d/f/g"))), io::ErrorKind::NotADirectory);
        assert_eq!(kind(ns.rename(&names("/d/f"), &names("/d/e"))), io::ErrorKind::IsADirectory);
        assert_eq!(kind(ns.rename(&names("/d/e"), &names("/d/f"))), io::ErrorKind::NotADirectory);
        assert_eq!(kind(ns.rename(&names("/d"), &names("/d/e/z"))), io::ErrorKind::InvalidInput);
        ns.create_dir_all(&names("/q/r")).unwrap();
        assert_eq!(kind(ns.rename(&names("/d/e"), &names("/q"))), io::ErrorKind::DirectoryNotEmpty);
        ns.rename(&names("/d/e"), &names("/q/r")).unwrap();
        assert_eq!(
            ns.paths(false),
            [Path::new("/d"), Path::new("/d/f"), Path::new("/q"), Path::new("/q/r")]
        );
    }

    #[test]
    fn removed_nodes_are_collected_once_synced_and_closed() {
        let mut ns = Namespace::default();
        ns.create_dir_all(&names("/d")).unwrap();
        let ino = ns.open(&names("/d/f"), true, false).unwrap();
        ns.modify_file(ino, |file| file.write(0, &[1; 100])).unwrap();
        assert_eq!(ns.used_bytes(), 100);
        ns.sync_dir(&names("/")).unwrap();
        ns.sync_dir(&names("/d")).unwrap();
        ns.remove_file(&names("/d/f")).unwrap();
        assert_eq!(ns.used_bytes(), 100, "still open");
        ns.sync_dir(&names("/d")).unwrap();
        assert!(ns.nodes.contains_key(&ino), "open handles keep the inode");
        ns.close(ino);
        assert_eq!(ns.used_bytes(), 0);
        assert!(!ns.nodes.contains_key(&ino));
    }
}
