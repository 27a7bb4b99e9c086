//! The storage conformance suite: the same behaviour tests run against every backend
//! (STYLE §9). A new backend is one more `conformance_suite!` line at the bottom.
//!
//! Each case takes a `Make`: a function giving a fresh environment (a storage and an existing,
//! empty directory to work in) with the asked-for queue depth.

use std::any::Any;
use std::io;
use std::path::{Path, PathBuf};

use tidelog_io::storage::{read_at, read_file, run, write_all_at, write_file_atomic};
use tidelog_io::{
    AlignedBuf, BLOCK_SIZE, Completion, DirEntry, FileId, Op, OpenOptions, PortableStorage,
    SimDisk, Storage, Submission, UringStorage, Wait,
};

/// A storage and a directory to use, plus whatever must live as long as they do.
struct Env {
    storage: Box<dyn Storage>,
    root: PathBuf,
    _keep: Box<dyn Any>,
}

type Make<'a> = &'a dyn Fn(usize) -> Env;

/// Queue depth for cases that do not test the bound.
const DEPTH: usize = 64;

fn portable_env(queue_depth: usize) -> Env {
    let dir = tempfile::tempdir().expect("temporary directory");
    Env {
        storage: Box::new(PortableStorage::with_queue_depth(queue_depth)),
        root: dir.path().to_path_buf(),
        _keep: Box::new(dir),
    }
}

/// io_uring on a temporary directory under /tmp (ext4 here, so direct I/O really runs).
fn uring_env(queue_depth: usize) -> Env {
    let dir = tempfile::tempdir().expect("temporary directory");
    let storage = UringStorage::with_queue_depth(queue_depth).expect("an io_uring storage");
    Env { storage: Box::new(storage), root: dir.path().to_path_buf(), _keep: Box::new(dir) }
}

fn simulated_env(queue_depth: usize) -> Env {
    let disk = SimDisk::new(0x5EED);
    let mut storage = disk.storage_with_queue_depth(queue_depth);
    let root = PathBuf::from("/sim/conformance");
    storage.create_dir_all(&root).expect("create the root");
    Env { storage: Box::new(storage), root, _keep: Box::new(disk) }
}

/// Reap completions until nothing is in flight; returned sorted by token.
fn complete_all(storage: &mut dyn Storage) -> Vec<Completion> {
    let mut out = Vec::new();
    while storage.in_flight() > 0 {
        storage.complete(&mut out, Wait::One).expect("complete");
    }
    out.sort_by_key(|done| done.token);
    out
}

fn errno(result: &io::Result<usize>) -> Option<i32> {
    result.as_ref().err().and_then(io::Error::raw_os_error)
}

fn create(storage: &mut dyn Storage, path: &Path, bytes: &[u8]) -> FileId {
    let file = storage.open(path, OpenOptions::create()).expect("open");
    write_all_at(storage, file, 0, bytes).expect("write");
    file
}

mod cases {
    use super::*;

    pub fn write_read_round_trip_at_offsets(make: Make<'_>) {
        let Env { storage, root, .. } = &mut make(DEPTH);
        let s = storage.as_mut();
        let file = s.open(&root.join("data"), OpenOptions::create()).unwrap();
        write_all_at(s, file, 0, b"hello").unwrap();
        write_all_at(s, file, 10_000, b"world").unwrap();
        assert_eq!(s.file_len(file).unwrap(), 10_005);
        assert_eq!(read_at(s, file, 0, 5).unwrap(), b"hello");
        assert_eq!(read_at(s, file, 10_000, 5).unwrap(), b"world");
        let hole = read_at(s, file, 5, 9_995).unwrap();
        assert_eq!(hole.len(), 9_995);
        assert!(hole.iter().all(|&b| b == 0), "the hole reads as zeros");
        write_all_at(s, file, 2, b"LL").unwrap();
        assert_eq!(read_at(s, file, 0, 5).unwrap(), b"heLLo");
        s.close(file).unwrap();
    }

    pub fn sparse_file_reads_zeros(make: Make<'_>) {
        let Env { storage, root, .. } = &mut make(DEPTH);
        let s = storage.as_mut();
        let file = s.open(&root.join("sparse"), OpenOptions::create()).unwrap();
        write_all_at(s, file, 1 << 20, &[9u8; 10]).unwrap();
        assert_eq!(s.file_len(file).unwrap(), (1 << 20) + 10);
        assert_eq!(read_at(s, file, 0, 4096).unwrap(), vec![0u8; 4096]);
        assert_eq!(
            read_at(s, file, (1 << 20) - 2, 12).unwrap(),
            [0, 0, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9]
        );
    }

    pub fn short_read_at_end_of_file(make: Make<'_>) {
        let Env { storage, root, .. } = &mut make(DEPTH);
        let s = storage.as_mut();
        let bytes: Vec<u8> = (0..100).collect();
        let file = create(s, &root.join("f"), &bytes);
        let buf = AlignedBuf::with_capacity(4096);
        let (result, buf) = run(s, Op::Read { file, offset: 0, len: 4096, buf });
        assert_eq!(result.unwrap(), 100);
        assert_eq!(buf.unwrap().as_slice(), &bytes[..]);
        let buf = AlignedBuf::with_capacity(100);
        let (result, buf) = run(s, Op::Read { file, offset: 50, len: 100, buf });
        assert_eq!(result.unwrap(), 50);
        assert_eq!(buf.unwrap().as_slice(), &bytes[50..]);
    }

    pub fn read_past_end_of_file_returns_nothing(make: Make<'_>) {
        let Env { storage, root, .. } = &mut make(DEPTH);
        let s = storage.as_mut();
        let file = create(s, &root.join("f"), b"abc");
        let buf = AlignedBuf::with_capacity(10);
        let (result, buf) = run(s, Op::Read { file, offset: 1000, len: 10, buf });
        assert_eq!(result.unwrap(), 0);
        assert!(buf.unwrap().is_empty());
        assert_eq!(read_at(s, file, 3, 10).unwrap(), b"");
    }

    pub fn buffers_come_back_in_completions(make: Make<'_>) {
        let Env { storage, root, .. } = &mut make(DEPTH);
        let s = storage.as_mut();
        let file = s.open(&root.join("f"), OpenOptions::create()).unwrap();
        let content = |token: u64| vec![token as u8; 100];
        for token in 1..=4u64 {
            let buf = AlignedBuf::from_slice(&content(token));
            let op = Op::Write { file, offset: token * 100, buf };
            s.submit(Submission::new(token, op)).unwrap();
        }
        assert_eq!(s.in_flight(), 4);
        let done = complete_all(s);
        assert_eq!(s.in_flight(), 0);
        assert_eq!(done.len(), 4);
        for (done, token) in done.iter().zip(1..=4u64) {
            assert_eq!(done.token, token);
            assert_eq!(*done.result.as_ref().unwrap(), 100);
            assert_eq!(done.buf.as_ref().unwrap().as_slice(), &content(token)[..]);
        }
        for token in 1..=4u64 {
            let op = Op::Read {
                file,
                offset: token * 100,
                len: 100,
                buf: AlignedBuf::with_capacity(100),
            };
            s.submit(Submission::new(10 + token, op)).unwrap();
        }
        for (done, token) in complete_all(s).iter().zip(1..=4u64) {
            assert_eq!(done.token, 10 + token);
            assert_eq!(*done.result.as_ref().unwrap(), 100);
            assert_eq!(done.buf.as_ref().unwrap().as_slice(), &content(token)[..]);
        }
    }

    pub fn linked_write_and_fdatasync_complete_both(make: Make<'_>) {
        let Env { storage, root, .. } = &mut make(DEPTH);
        let s = storage.as_mut();
        let file = s.open(&root.join("f"), OpenOptions::create()).unwrap();
        let buf = AlignedBuf::from_slice(b"durable");
        s.submit(Submission::linked(1, Op::Write { file, offset: 0, buf })).unwrap();
        s.submit(Submission::new(2, Op::SyncData { file })).unwrap();
        let done = complete_all(s);
        assert_eq!(done.len(), 2);
        assert_eq!(done[0].result.as_ref().unwrap(), &7);
        assert_eq!(done[1].result.as_ref().unwrap(), &0);
        assert!(done[1].buf.is_none());
        assert_eq!(read_at(s, file, 0, 7).unwrap(), b"durable");
    }

    pub fn failed_link_cancels_the_rest_of_the_chain(make: Make<'_>) {
        let Env { storage, root, .. } = &mut make(DEPTH);
        let s = storage.as_mut();
        let file = s.open(&root.join("f"), OpenOptions::create()).unwrap();
        let bogus = FileId(9_999);
        let write =
            |file, byte: u8| Op::Write { file, offset: 0, buf: AlignedBuf::from_slice(&[byte]) };
        s.submit(Submission::linked(1, write(bogus, 1))).unwrap();
        s.submit(Submission::linked(2, Op::SyncData { file })).unwrap();
        s.submit(Submission::new(3, write(file, 3))).unwrap();
        s.submit(Submission::new(4, write(file, 4))).unwrap();
        let done = complete_all(s);
        assert_eq!(done[0].result.as_ref().unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(errno(&done[1].result), Some(libc::ECANCELED));
        assert_eq!(
            errno(&done[2].result),
            Some(libc::ECANCELED),
            "cancellation runs down the chain"
        );
        assert_eq!(
            done[2].buf.as_ref().unwrap().as_slice(),
            [3],
            "a cancelled op returns its buffer"
        );
        assert_eq!(*done[3].result.as_ref().unwrap(), 1, "the next chain is unaffected");
        assert_eq!(read_at(s, file, 0, 10).unwrap(), [4]);
    }

    pub fn short_linked_read_breaks_the_chain(make: Make<'_>) {
        let Env { storage, root, .. } = &mut make(DEPTH);
        let s = storage.as_mut();
        let file = create(s, &root.join("f"), &[5u8; 100]);
        let read = Op::Read { file, offset: 0, len: 4096, buf: AlignedBuf::with_capacity(4096) };
        s.submit(Submission::linked(1, read)).unwrap();
        s.submit(Submission::new(2, Op::SyncData { file })).unwrap();
        let done = complete_all(s);
        assert_eq!(*done[0].result.as_ref().unwrap(), 100);
        assert_eq!(errno(&done[1].result), Some(libc::ECANCELED));
    }

    pub fn set_len_truncates_and_extends(make: Make<'_>) {
        let Env { storage, root, .. } = &mut make(DEPTH);
        let s = storage.as_mut();
        let file = create(s, &root.join("f"), &[7u8; 100]);
        s.set_len(file, 10).unwrap();
        assert_eq!(s.file_len(file).unwrap(), 10);
        s.set_len(file, 50).unwrap();
        assert_eq!(s.file_len(file).unwrap(), 50);
        let bytes = read_at(s, file, 0, 100).unwrap();
        assert_eq!(bytes.len(), 50);
        assert!(bytes[..10].iter().all(|&b| b == 7));
        assert!(bytes[10..].iter().all(|&b| b == 0), "truncated bytes do not come back");
    }

    pub fn allocate_extends_the_file(make: Make<'_>) {
        let Env { storage, root, .. } = &mut make(DEPTH);
        let s = storage.as_mut();
        let file = create(s, &root.join("f"), b"abc");
        let (result, buf) = run(s, Op::Allocate { file, offset: 0, len: 8192 });
        if errno(&result) == Some(libc::EOPNOTSUPP) {
            eprintln!("skipped: this file system does not do fallocate");
            return;
        }
        assert_eq!(result.unwrap(), 0);
        assert!(buf.is_none());
        assert_eq!(s.file_len(file).unwrap(), 8192);
        run(s, Op::Allocate { file, offset: 0, len: 100 }).0.unwrap();
        assert_eq!(s.file_len(file).unwrap(), 8192, "allocating inside the file keeps its size");
        assert_eq!(read_at(s, file, 0, 4).unwrap(), b"abc\0");
    }

    pub fn file_len_follows_writes(make: Make<'_>) {
        let Env { storage, root, .. } = &mut make(DEPTH);
        let s = storage.as_mut();
        let file = s.open(&root.join("f"), OpenOptions::create()).unwrap();
        assert_eq!(s.file_len(file).unwrap(), 0);
        write_all_at(s, file, 0, &[1; 10]).unwrap();
        assert_eq!(s.file_len(file).unwrap(), 10);
        write_all_at(s, file, 5, &[1; 3]).unwrap();
        assert_eq!(s.file_len(file).unwrap(), 10);
        write_all_at(s, file, 20, &[1; 1]).unwrap();
        assert_eq!(s.file_len(file).unwrap(), 21);
    }

    pub fn open_missing_without_create_is_not_found(make: Make<'_>) {
        let Env { storage, root, .. } = &mut make(DEPTH);
        let s = storage.as_mut();
        let err = s.open(&root.join("missing"), OpenOptions::read_write()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let err = s.open(&root.join("missing"), OpenOptions::read_only()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let err = s.open(&root.join("no/such/dir/f"), OpenOptions::create()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "a missing parent is not created");
    }

    pub fn create_new_on_existing_is_already_exists(make: Make<'_>) {
        let Env { storage, root, .. } = &mut make(DEPTH);
        let s = storage.as_mut();
        let path = root.join("f");
        let file = s.open(&path, OpenOptions::create_new()).unwrap();
        s.close(file).unwrap();
        let err = s.open(&path, OpenOptions::create_new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        let file = s.open(&path, OpenOptions::create()).unwrap();
        s.close(file).unwrap();
    }

    pub fn close_and_reopen_sees_the_data(make: Make<'_>) {
        let Env { storage, root, .. } = &mut make(DEPTH);
        let s = storage.as_mut();
        let path = root.join("f");
        let file = create(s, &path, b"kept");
        assert!(!s.is_direct(file));
        s.close(file).unwrap();
        assert!(s.file_len(file).is_err(), "a closed handle is invalid");
        let file = s.open(&path, OpenOptions::read_only()).unwrap();
        assert_eq!(read_at(s, file, 0, 10).unwrap(), b"kept");
        s.close(file).unwrap();
    }

    pub fn read_only_handles_refuse_writes(make: Make<'_>) {
        let Env { storage, root, .. } = &mut make(DEPTH);
        let s = storage.as_mut();
        let path = root.join("f");
        let file = create(s, &path, b"ro");
        s.close(file).unwrap();
        let file = s.open(&path, OpenOptions::read_only()).unwrap();
        let (result, _) = run(s, Op::Write { file, offset: 0, buf: AlignedBuf::from_slice(b"x") });
        assert_eq!(errno(&result), Some(libc::EBADF));
        assert!(s.set_len(file, 0).is_err());
        assert_eq!(read_file(s, &path).unwrap(), b"ro");
    }

    pub fn rename_replaces(make: Make<'_>) {
        let Env { storage, root, .. } = &mut make(DEPTH);
        let s = storage.as_mut();
        let (a, b) = (root.join("a"), root.join("b"));
        let file = create(s, &a, b"AAA");
        s.close(file).unwrap();
        let file = create(s, &b, b"B");
        s.close(file).unwrap();
        s.rename(&a, &b).unwrap();
        assert_eq!(read_file(s, &b).unwrap(), b"AAA");
        assert_eq!(s.metadata(&a).unwrap_err().kind(), io::ErrorKind::NotFound);
        let err = s.rename(&a, &root.join("c")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        s.create_dir_all(&root.join("sub")).unwrap();
        s.rename(&b, &root.join("sub/moved")).unwrap();
        assert_eq!(read_file(s, &root.join("sub/moved")).unwrap(), b"AAA");
    }

    pub fn read_dir_is_sorted(make: Make<'_>) {
        let Env { storage, root, .. } = &mut make(DEPTH);
        let s = storage.as_mut();
        for name in ["b", "a", "c"] {
            let file = create(s, &root.join(name), b"x");
            s.close(file).unwrap();
        }
        s.create_dir_all(&root.join("d")).unwrap();
        s.create_dir_all(&root.join("B")).unwrap();
        let entry = |name: &str, is_dir| DirEntry { name: name.to_owned(), is_dir };
        assert_eq!(
            s.read_dir(root).unwrap(),
            [
                entry("B", true),
                entry("a", false),
                entry("b", false),
                entry("c", false),
                entry("d", true),
            ]
        );
        assert_eq!(s.read_dir(&root.join("missing")).unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    pub fn remove_dir_all_is_recursive(make: Make<'_>) {
        let Env { storage, root, .. } = &mut make(DEPTH);
        let s = storage.as_mut();
        s.create_dir_all(&root.join("d/e")).unwrap();
        s.create_dir_all(&root.join("d/e")).unwrap(); // idempotent
        for path in ["d/f", "d/e/g"] {
            let file = create(s, &root.join(path), b"x");
            s.close(file).unwrap();
        }
        s.remove_dir_all(&root.join("d")).unwrap();
        assert_eq!(s.metadata(&root.join("d")).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(s.read_dir(root).unwrap(), []);
        assert_eq!(s.remove_dir_all(&root.join("d")).unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    pub fn remove_file_then_not_found(make: Make<'_>) {
        let Env { storage, root, .. } = &mut make(DEPTH);
        let s = storage.as_mut();
        let path = root.join("f");
        let file = create(s, &path, b"x");
        s.close(file).unwrap();
        s.remove_file(&path).unwrap();
        assert_eq!(s.metadata(&path).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(s.remove_file(&path).unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    pub fn create_dir_all_rejects_a_file(make: Make<'_>) {
        let Env { storage, root, .. } = &mut make(DEPTH);
        let s = storage.as_mut();
        let file = create(s, &root.join("f"), b"x");
        s.close(file).unwrap();
        let err = s.create_dir_all(&root.join("f")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        let err = s.create_dir_all(&root.join("f/g")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotADirectory);
    }

    pub fn metadata_reports_size_and_type(make: Make<'_>) {
        let Env { storage, root, .. } = &mut make(DEPTH);
        let s = storage.as_mut();
        let file = create(s, &root.join("f"), &[0u8; 123]);
        s.close(file).unwrap();
        let meta = s.metadata(&root.join("f")).unwrap();
        assert_eq!((meta.len, meta.is_dir), (123, false));
        assert!(s.metadata(root).unwrap().is_dir);
    }

    pub fn lock_dir_is_exclusive(make: Make<'_>) {
        let Env { storage, root, .. } = &mut make(DEPTH);
        let s = storage.as_mut();
        let first = s.lock_dir(root).unwrap();
        assert_eq!(first.path(), root.as_path());
        let err = s.lock_dir(root).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        drop(first);
        let again = s.lock_dir(root).unwrap();
        drop(again);
        let err = s.lock_dir(&root.join("missing")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        // Both backends leave a LOCK file behind: recovery must skip it when listing.
        let names: Vec<String> = s.read_dir(root).unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["LOCK"]);
    }

    pub fn full_queue_hands_the_submission_back(make: Make<'_>) {
        let Env { storage, root, .. } = &mut make(2);
        let s = storage.as_mut();
        assert_eq!(s.queue_depth(), 2);
        let file = s.open(&root.join("f"), OpenOptions::create()).unwrap();
        let write = |token: u64| {
            let buf = AlignedBuf::from_slice(&[token as u8; 10]);
            Submission::new(token, Op::Write { file, offset: token * 10, buf })
        };
        s.submit(write(1)).unwrap();
        s.submit(write(2)).unwrap();
        let rejected = s.submit(write(3)).unwrap_err();
        assert_eq!(s.in_flight(), 2);
        assert_eq!(rejected.token, 3);
        assert!(!rejected.link_next);
        match &rejected.op {
            Op::Write { file: f, offset, buf } => {
                assert_eq!((*f, *offset), (file, 30));
                assert_eq!(buf.as_slice(), [3u8; 10]);
            }
            other => panic!("the op changed: {other:?}"),
        }
        // `Wait::One` promises at least one completion, not all: a completion-based backend
        // may hand back the first before the second has finished.
        let mut out = Vec::new();
        assert!(s.complete(&mut out, Wait::One).unwrap() >= 1);
        assert_eq!(s.in_flight(), 2 - out.len());
        s.submit(rejected).unwrap();
        out.extend(complete_all(s));
        let mut tokens: Vec<u64> = out.iter().map(|done| done.token).collect();
        tokens.sort_unstable();
        assert_eq!(tokens, [1, 2, 3]);
        assert_eq!(read_at(s, file, 30, 10).unwrap(), [3u8; 10]);
    }

    pub fn wait_one_with_nothing_in_flight_returns_at_once(make: Make<'_>) {
        let Env { storage, .. } = &mut make(DEPTH);
        let mut out = Vec::new();
        assert_eq!(storage.complete(&mut out, Wait::One).unwrap(), 0);
        assert_eq!(storage.complete(&mut out, Wait::No).unwrap(), 0);
        assert!(out.is_empty());
    }

    pub fn direct_io_alignment_is_enforced(make: Make<'_>) {
        let Env { storage, root, .. } = &mut make(DEPTH);
        let s = storage.as_mut();
        let file = s.open(&root.join("direct"), OpenOptions::create().direct(true)).unwrap();
        if !s.is_direct(file) {
            eprintln!("skipped: the file system refused O_DIRECT (tmpfs?)");
            return;
        }
        let block = AlignedBuf::from_slice(&[1u8; BLOCK_SIZE]);
        let (result, _) = run(s, Op::Write { file, offset: 100, buf: block.clone() });
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::InvalidInput, "unaligned offset");
        let (result, _) =
            run(s, Op::Write { file, offset: 0, buf: AlignedBuf::from_slice(&[1; 100]) });
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::InvalidInput, "unaligned length");
        let (result, _) = run(s, Op::Write { file, offset: 0, buf: block });
        assert_eq!(result.unwrap(), BLOCK_SIZE);
        let read =
            Op::Read { file, offset: 0, len: 100, buf: AlignedBuf::with_capacity(BLOCK_SIZE) };
        assert_eq!(run(s, read).0.unwrap_err().kind(), io::ErrorKind::InvalidInput);
        let read = Op::Read {
            file,
            offset: 0,
            len: BLOCK_SIZE,
            buf: AlignedBuf::with_capacity(BLOCK_SIZE),
        };
        let (result, buf) = run(s, read);
        assert_eq!(result.unwrap(), BLOCK_SIZE);
        assert_eq!(buf.unwrap().as_slice(), [1u8; BLOCK_SIZE]);
    }

    pub fn write_file_atomic_and_read_file(make: Make<'_>) {
        let Env { storage, root, .. } = &mut make(DEPTH);
        let s = storage.as_mut();
        let path = root.join("meta");
        write_file_atomic(s, &path, b"one").unwrap();
        assert_eq!(read_file(s, &path).unwrap(), b"one");
        write_file_atomic(s, &path, b"second").unwrap();
        assert_eq!(read_file(s, &path).unwrap(), b"second");
        write_file_atomic(s, &path, b"3").unwrap();
        assert_eq!(read_file(s, &path).unwrap(), b"3", "no stale tail from a longer version");
        let names: Vec<String> = s.read_dir(root).unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["meta"], "the temporary file is gone");
        assert_eq!(
            read_file(s, &root.join("missing")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    pub fn idle_wait_ends_on_wake_or_timeout(make: Make<'_>) {
        use std::time::{Duration, Instant};
        let Env { storage, .. } = &mut make(DEPTH);
        let s = storage.as_mut();
        let mut out = Vec::new();
        // Times out with nothing to do.
        let started = Instant::now();
        s.complete(&mut out, Wait::Idle(Some(Duration::from_millis(20)))).unwrap();
        assert!(started.elapsed() >= Duration::from_millis(15));
        // A wake from another thread ends an idle wait with no timeout.
        let waker = s.waker();
        let wake = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            waker.wake();
        });
        s.complete(&mut out, Wait::Idle(None)).unwrap();
        wake.join().unwrap();
        // A wake before the wait is not lost.
        s.waker().wake();
        let started = Instant::now();
        s.complete(&mut out, Wait::Idle(Some(Duration::from_secs(10)))).unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(out.is_empty());
    }

    pub fn sync_dir_of_a_directory_succeeds(make: Make<'_>) {
        let Env { storage, root, .. } = &mut make(DEPTH);
        let s = storage.as_mut();
        s.create_dir_all(&root.join("d")).unwrap();
        s.sync_dir(root).unwrap();
        s.sync_dir(&root.join("d")).unwrap();
        assert_eq!(s.sync_dir(&root.join("missing")).unwrap_err().kind(), io::ErrorKind::NotFound);
    }
}

/// Instantiate every case for one backend: `conformance_suite!(name => make_function);`.
macro_rules! conformance_suite {
    ($backend:ident => $make:path) => {
        mod $backend {
            conformance_suite!(@cases $make;
                write_read_round_trip_at_offsets,
                sparse_file_reads_zeros,
                short_read_at_end_of_file,
                read_past_end_of_file_returns_nothing,
                buffers_come_back_in_completions,
                linked_write_and_fdatasync_complete_both,
                failed_link_cancels_the_rest_of_the_chain,
                short_linked_read_breaks_the_chain,
                set_len_truncates_and_extends,
                allocate_extends_the_file,
                file_len_follows_writes,
                open_missing_without_create_is_not_found,
                create_new_on_existing_is_already_exists,
                close_and_reopen_sees_the_data,
                read_only_handles_refuse_writes,
                rename_replaces,
                read_dir_is_sorted,
                remove_dir_all_is_recursive,
                remove_file_then_not_found,
                create_dir_all_rejects_a_file,
                metadata_reports_size_and_type,
                lock_dir_is_exclusive,
                full_queue_hands_the_submission_back,
                wait_one_with_nothing_in_flight_returns_at_once,
                direct_io_alignment_is_enforced,
                write_file_atomic_and_read_file,
                sync_dir_of_a_directory_succeeds,
                idle_wait_ends_on_wake_or_timeout,
            );
        }
    };
    (@cases $make:path; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                super::cases::$case(&$make);
            }
        )*
    };
}

conformance_suite!(portable => super::portable_env);
conformance_suite!(simulated => super::simulated_env);
conformance_suite!(uring => super::uring_env);
