//! Tests of what only the simulated backend does: its durability and crash model, fault
//! injection, determinism. The behaviour it shares with real backends is in `conformance.rs`.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use tidelog_io::sim::SECTOR_SIZE;
use tidelog_io::storage::{read_at, read_file, run, sync_data, write_all_at, write_file_atomic};
use tidelog_io::{
    AlignedBuf, BLOCK_SIZE, BackendKind, Completion, CrashReport, FaultKind, FaultRule, FileId, Op,
    OpKind, OpenOptions, SimConfig, SimDisk, SimRng, SimStorage, Storage, StorageFactory,
    Submission, Wait,
};

const DATA: &str = "/sim/data";

fn data(name: &str) -> PathBuf {
    Path::new(DATA).join(name)
}

/// A disk with `/sim/data` created and durable, and a storage on it.
fn setup(seed: u64) -> (SimDisk, SimStorage) {
    let disk = SimDisk::new(seed);
    let mut storage = disk.storage();
    storage.create_dir_all(Path::new(DATA)).unwrap();
    for dir in ["/", "/sim", DATA] {
        storage.sync_dir(Path::new(dir)).unwrap();
    }
    (disk, storage)
}

/// Create `name` in `/sim/data` with `bytes`, data and entry durable.
fn durable_file(storage: &mut SimStorage, name: &str, bytes: &[u8]) -> FileId {
    let file = storage.open(&data(name), OpenOptions::create()).unwrap();
    write_all_at(storage, file, 0, bytes).unwrap();
    sync_data(storage, file).unwrap();
    storage.sync_dir(Path::new(DATA)).unwrap();
    file
}

fn complete_all(storage: &mut dyn Storage) -> Vec<Completion> {
    let mut out = Vec::new();
    while storage.in_flight() > 0 {
        storage.complete(&mut out, Wait::One).unwrap();
    }
    out
}

fn errno(result: &io::Result<usize>) -> Option<i32> {
    result.as_ref().err().and_then(io::Error::raw_os_error)
}

#[test]
fn synced_data_survives_any_crash_byte_for_byte() {
    for seed in 0..200 {
        let (disk, mut storage) = setup(seed);
        let mut rng = SimRng::new(seed);
        let mut synced = vec![0u8; rng.between(1, 20_000) as usize];
        rng.fill(&mut synced);
        let file = durable_file(&mut storage, "synced", &synced);
        // Unsynced noise after it: appends to the same file, a whole other file, a rename.
        let mut noise = vec![0u8; 5_000];
        rng.fill(&mut noise);
        write_all_at(&mut storage, file, synced.len() as u64, &noise).unwrap();
        let other = storage.open(&data("other"), OpenOptions::create()).unwrap();
        write_all_at(&mut storage, other, 0, &noise).unwrap();
        storage.rename(&data("other"), &data("renamed")).unwrap();

        disk.crash();
        let image = disk.read(&data("synced")).unwrap();
        assert_eq!(&image[..synced.len()], &synced[..], "seed {seed}");
        assert!(disk.durable_paths().contains(&data("synced")));
    }
}

#[test]
fn unsynced_bytes_are_old_or_new_and_kept_lost_torn_all_occur() {
    const OLD: u8 = 0x11;
    const SLOT_BYTES: u64 = 10_000;
    const WRITES: u64 = 6;
    let mut seen = [0u64; 3]; // kept, lost, torn
    for seed in 0..300 {
        let (disk, mut storage) = setup(seed);
        let mut rng = SimRng::new(!seed);
        let file = durable_file(&mut storage, "f", &vec![OLD; (SLOT_BYTES * WRITES) as usize]);
        let mut writes = Vec::new();
        for slot in 0..WRITES {
            let len = rng.between(1, 3_000);
            let offset = slot * SLOT_BYTES + rng.below(SLOT_BYTES - len);
            let value = 0x20 + slot as u8;
            write_all_at(&mut storage, file, offset, &vec![value; len as usize]).unwrap();
            writes.push((offset as usize, len as usize, value));
        }
        let report = disk.crash();
        let image = disk.read(&data("f")).unwrap();
        assert_eq!(image.len() as u64, SLOT_BYTES * WRITES, "no length change happened");
        let mut covered = vec![false; image.len()];
        let mut observed = [0u64; 3];
        for &(offset, len, value) in &writes {
            let range = &image[offset..offset + len];
            assert!(range.iter().all(|&b| b == OLD || b == value), "seed {seed}: foreign byte");
            // Each piece of the write inside one sector landed whole or not at all.
            let mut start = offset;
            while start < offset + len {
                let end = ((start / SECTOR_SIZE + 1) * SECTOR_SIZE).min(offset + len);
                assert!(image[start..end].iter().all(|&b| b == image[start]), "seed {seed}");
                start = end;
            }
            let new = range.iter().filter(|&&b| b == value).count();
            observed[match new {
                n if n == len => 0,
                0 => 1,
                _ => 2,
            }] += 1;
            covered[offset..offset + len].iter_mut().for_each(|c| *c = true);
        }
        assert!(image.iter().zip(&covered).all(|(&b, &c)| c || b == OLD), "seed {seed}");
        assert_eq!(
            observed,
            [report.writes_kept, report.writes_lost, report.writes_torn],
            "seed {seed}: the report matches the image"
        );
        for (total, n) in seen.iter_mut().zip(observed) {
            *total += n;
        }
    }
    assert!(seen.iter().all(|&n| n > 0), "kept/lost/torn: {seen:?}");
}

#[test]
fn unsynced_appends_are_new_or_zero_and_the_length_varies() {
    let mut lengths = BTreeSet::new();
    for seed in 0..200 {
        let (disk, mut storage) = setup(seed);
        let file = durable_file(&mut storage, "log", &[1u8; 1000]);
        for k in 0..4u8 {
            write_all_at(&mut storage, file, 1000 + u64::from(k) * 1000, &[10 + k; 1000]).unwrap();
        }
        disk.crash();
        let image = disk.read(&data("log")).unwrap();
        assert!((1000..=5000).contains(&image.len()), "seed {seed}: len {}", image.len());
        assert!(image[..1000].iter().all(|&b| b == 1));
        for (at, &b) in image.iter().enumerate().skip(1000) {
            let value = 10 + ((at - 1000) / 1000) as u8;
            assert!(b == value || b == 0, "seed {seed}: byte {at} is {b}");
        }
        lengths.insert(image.len());
    }
    assert!(lengths.len() > 2, "lengths seen: {lengths:?}");
}

#[test]
fn set_len_survives_or_not_as_a_unit() {
    let mut outcomes = BTreeSet::new();
    for seed in 0..100 {
        let (disk, mut storage) = setup(seed);
        let file = durable_file(&mut storage, "f", &[3u8; 10_000]);
        storage.set_len(file, 100).unwrap();
        disk.crash();
        let image = disk.read(&data("f")).unwrap();
        assert!(image.len() == 100 || image.len() == 10_000, "seed {seed}");
        assert!(image.iter().all(|&b| b == 3));
        outcomes.insert(image.len());
    }
    assert_eq!(outcomes.len(), 2);
}

#[test]
fn injected_eio_cancels_the_linked_chain() {
    let (disk, mut storage) = setup(1);
    let file = durable_file(&mut storage, "f", b"before");
    disk.inject_fault(FaultRule::io(OpKind::Write));
    let write = |byte: u8| Op::Write { file, offset: 0, buf: AlignedBuf::from_slice(&[byte; 6]) };
    storage.submit(Submission::linked(1, write(b'A'))).unwrap();
    storage.submit(Submission::linked(2, Op::SyncData { file })).unwrap();
    storage.submit(Submission::new(3, write(b'C'))).unwrap();
    let mut done = complete_all(&mut storage);
    done.sort_by_key(|d| d.token);
    assert_eq!(errno(&done[0].result), Some(libc::EIO));
    assert_eq!(errno(&done[1].result), Some(libc::ECANCELED));
    assert_eq!(errno(&done[2].result), Some(libc::ECANCELED));
    assert_eq!(disk.read(&data("f")).unwrap(), b"before", "the failed write changed nothing");
    // The rule fired once; the next write goes through.
    assert_eq!(run(&mut storage, write(b'D')).0.unwrap(), 6);
    let stats = disk.stats();
    assert_eq!(stats.faults(OpKind::Write, FaultKind::Io), 1);
    assert_eq!(stats.cancelled, 2);
}

#[test]
fn capacity_limit_gives_enospc_and_changes_nothing() {
    let (disk, mut storage) = setup(2);
    disk.set_capacity_bytes(Some(10_000));
    let file = storage.open(&data("f"), OpenOptions::create()).unwrap();
    write_all_at(&mut storage, file, 0, &[7u8; 8_000]).unwrap();
    assert_eq!(disk.used_bytes(), 8_000);

    let err = write_all_at(&mut storage, file, 8_000, &[8u8; 3_000]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
    assert_eq!(storage.set_len(file, 20_000).unwrap_err().raw_os_error(), Some(libc::ENOSPC));
    let (result, _) = run(&mut storage, Op::Allocate { file, offset: 0, len: 20_000 });
    assert_eq!(errno(&result), Some(libc::ENOSPC));
    assert_eq!(disk.read(&data("f")).unwrap(), vec![7u8; 8_000], "nothing changed");

    // Overwrites need no new space; shrinking frees some.
    write_all_at(&mut storage, file, 0, &[9u8; 8_000]).unwrap();
    storage.set_len(file, 1_000).unwrap();
    write_all_at(&mut storage, file, 1_000, &[9u8; 9_000]).unwrap();
    assert_eq!(disk.used_bytes(), 10_000);
    // Removing a file frees its space once its last handle closes.
    storage.remove_file(&data("f")).unwrap();
    assert_eq!(disk.used_bytes(), 10_000);
    storage.close(file).unwrap();
    assert_eq!(disk.used_bytes(), 0);
    assert_eq!(disk.stats().faults(OpKind::Write, FaultKind::NoSpace), 1);
    assert_eq!(disk.stats().faults_of(OpKind::SetLen), 1);
}

/// Every path after a crash with the file contents (`None` for a directory).
type Image = Vec<(PathBuf, Option<Vec<u8>>)>;

/// A scripted workload whose randomness all comes from `seed`; returns the crash image, the
/// crash report and the completion order.
fn scenario(seed: u64) -> (Image, CrashReport, Vec<u64>) {
    let (disk, mut storage) = setup(seed);
    let mut rng = SimRng::new(seed ^ 0xABCD);
    let mut order = Vec::new();
    let files: Vec<FileId> = (0..3)
        .map(|k| storage.open(&data(&format!("f{k}")), OpenOptions::create()).unwrap())
        .collect();
    for round in 0..20u64 {
        let mut token = round * 100;
        for _ in 0..rng.between(1, 6) {
            let file = files[rng.index(files.len())];
            let mut bytes = vec![0u8; rng.between(1, 5_000) as usize];
            rng.fill(&mut bytes);
            let op =
                Op::Write { file, offset: rng.below(20_000), buf: AlignedBuf::from_slice(&bytes) };
            token += 1;
            let linked = rng.coin();
            storage.submit(Submission { token, op, link_next: linked }).unwrap();
            if linked {
                token += 1;
                storage.submit(Submission::new(token, Op::SyncData { file })).unwrap();
            }
        }
        order.extend(complete_all(&mut storage).iter().map(|d| d.token));
        if rng.below(5) == 0 {
            storage.sync_dir(Path::new(DATA)).unwrap();
        }
        if rng.below(7) == 0 {
            storage.rename(&data("f2"), &data(&format!("r{round}"))).ok();
        }
    }
    let report = disk.crash();
    let image =
        disk.paths().into_iter().map(|path| (path.clone(), disk.read(&path).ok())).collect();
    (image, report, order)
}

#[test]
fn same_seed_same_operations_same_outcome() {
    let mut distinct = BTreeSet::new();
    for seed in 0..10 {
        let first = scenario(seed);
        let second = scenario(seed);
        assert!(first == second, "seed {seed} did not replay");
        distinct.insert(format!("{:?}", first.0));
    }
    assert!(distinct.len() > 1, "different seeds should give different images");
}

#[test]
fn completions_are_shuffled_but_chains_keep_their_order() {
    let (_disk, mut storage) = setup(3);
    let file = storage.open(&data("f"), OpenOptions::create()).unwrap();
    let mut shuffled = false;
    for round in 0..10 {
        let base = round * 100;
        for k in 0..8 {
            let op = Op::Write { file, offset: k * 10, buf: AlignedBuf::from_slice(&[1; 10]) };
            storage.submit(Submission::new(base + k, op)).unwrap();
        }
        let op = Op::Write { file, offset: 0, buf: AlignedBuf::from_slice(&[2; 10]) };
        storage.submit(Submission::linked(base + 50, op)).unwrap();
        storage.submit(Submission::linked(base + 51, Op::SyncData { file })).unwrap();
        storage.submit(Submission::new(base + 52, Op::SyncData { file })).unwrap();
        let order: Vec<u64> = complete_all(&mut storage).iter().map(|d| d.token).collect();
        assert_eq!(order.len(), 11);
        let chain: Vec<u64> = order.iter().copied().filter(|t| t % 100 >= 50).collect();
        assert_eq!(chain, [base + 50, base + 51, base + 52], "a chain completes in order");
        shuffled |= !order.is_sorted();
    }
    assert!(shuffled, "completions never came back out of order");
}

#[test]
fn unsynced_directory_entries_vanish_at_crash() {
    let mut vanished = 0;
    for seed in 0..100 {
        let (disk, mut storage) = setup(seed);
        let file = storage.open(&data("new"), OpenOptions::create()).unwrap();
        write_all_at(&mut storage, file, 0, b"synced data, unsynced name").unwrap();
        sync_data(&mut storage, file).unwrap();
        storage.create_dir_all(&data("sub/deeper")).unwrap();
        assert!(!disk.durable_paths().contains(&data("new")));
        let report = disk.crash();
        if disk.exists(&data("new")) {
            assert_eq!(disk.read(&data("new")).unwrap(), b"synced data, unsynced name");
        } else {
            vanished += 1;
            assert!(report.files_vanished >= 1 && report.entries_lost >= 1, "seed {seed}");
        }
        // `new` was created before `sub`, in the same directory: a surviving prefix of its
        // changes never keeps the later one without the earlier.
        assert!(!disk.exists(&data("sub")) || disk.exists(&data("new")), "seed {seed}");
    }
    assert!(vanished > 0 && vanished < 100, "vanished {vanished} of 100");

    // With the directory synced the name always survives.
    for seed in 0..50 {
        let (disk, mut storage) = setup(seed);
        durable_file(&mut storage, "new", b"x");
        disk.crash();
        assert!(disk.exists(&data("new")), "seed {seed}");
    }
}

#[test]
fn removed_files_can_come_back_until_the_directory_is_synced() {
    let mut back = 0;
    for seed in 0..100 {
        let (disk, mut storage) = setup(seed);
        let file = durable_file(&mut storage, "old", b"old");
        storage.close(file).unwrap();
        storage.remove_file(&data("old")).unwrap();
        disk.crash();
        if disk.exists(&data("old")) {
            back += 1;
            assert_eq!(disk.read(&data("old")).unwrap(), b"old");
        }
    }
    assert!(back > 0 && back < 100, "came back {back} of 100");

    let (disk, mut storage) = setup(0);
    let file = durable_file(&mut storage, "old", b"old");
    storage.close(file).unwrap();
    storage.remove_file(&data("old")).unwrap();
    storage.sync_dir(Path::new(DATA)).unwrap();
    disk.crash();
    assert!(!disk.exists(&data("old")));
}

#[test]
fn renames_are_atomic_until_one_parent_is_synced() {
    let (mut old_name, mut new_name, mut both) = (0, 0, 0);
    for seed in 0..200 {
        for cross_directory in [false, true] {
            let (disk, mut storage) = setup(seed);
            storage.create_dir_all(&data("x")).unwrap();
            storage.create_dir_all(&data("y")).unwrap();
            storage.sync_dir(Path::new(DATA)).unwrap();
            let from = data("x/a");
            let to = if cross_directory { data("y/b") } else { data("x/b") };
            write_file_atomic(&mut storage, &from, b"payload").unwrap();
            storage.rename(&from, &to).unwrap();
            disk.crash();
            match (disk.exists(&from), disk.exists(&to)) {
                (true, false) => old_name += 1,
                (false, true) => new_name += 1,
                other => panic!("seed {seed}: rename not atomic: {other:?}"),
            }
            let survivor = if disk.exists(&to) { &to } else { &from };
            assert_eq!(disk.read(survivor).unwrap(), b"payload");
        }

        // Only the target directory synced: the new name is durable, the old may linger.
        let (disk, mut storage) = setup(seed);
        storage.create_dir_all(&data("x")).unwrap();
        storage.create_dir_all(&data("y")).unwrap();
        storage.sync_dir(Path::new(DATA)).unwrap();
        write_file_atomic(&mut storage, &data("x/a"), b"payload").unwrap();
        storage.rename(&data("x/a"), &data("y/b")).unwrap();
        storage.sync_dir(&data("y")).unwrap();
        disk.crash();
        assert!(disk.exists(&data("y/b")), "seed {seed}");
        if disk.exists(&data("x/a")) {
            both += 1;
        }
    }
    assert!(old_name > 0 && new_name > 0, "old {old_name}, new {new_name}");
    assert!(both > 0, "a half-synced rename never left both names");
}

#[test]
fn dead_storage_errors_after_crash_and_a_fresh_one_works() {
    let (disk, mut storage) = setup(4);
    let file = durable_file(&mut storage, "f", b"safe");
    let lock = storage.lock_dir(Path::new(DATA)).unwrap();
    let op = Op::Write { file, offset: 0, buf: AlignedBuf::from_slice(b"lost") };
    storage.submit(Submission::new(1, op)).unwrap();
    disk.crash();

    let mut out = Vec::new();
    let err = storage.complete(&mut out, Wait::One).unwrap_err();
    assert!(err.to_string().contains("crashed"), "{err}");
    assert!(out.is_empty());
    assert_eq!(storage.in_flight(), 0, "in-flight operations were dropped");
    assert!(
        storage
            .open(&data("f"), OpenOptions::read_only())
            .unwrap_err()
            .to_string()
            .contains("crashed")
    );
    assert!(storage.file_len(file).is_err());
    assert!(storage.sync_dir(Path::new(DATA)).is_err());

    let mut fresh = disk.storage();
    assert_eq!(read_file(&mut fresh, &data("f")).unwrap(), b"safe", "the queued write never ran");
    let relock = fresh.lock_dir(Path::new(DATA)).expect("the crash released the lock");
    drop(lock); // the dead holder's guard must not release the new lock
    assert_eq!(fresh.lock_dir(Path::new(DATA)).unwrap_err().kind(), io::ErrorKind::WouldBlock);
    drop(relock);
    fresh.lock_dir(Path::new(DATA)).unwrap();
}

#[test]
fn failed_fdatasync_never_makes_those_writes_durable() {
    let (disk, mut storage) = setup(5);
    let file = durable_file(&mut storage, "f", &[0u8; 4]);
    write_all_at(&mut storage, file, 0, b"gone").unwrap();
    disk.inject_fault(FaultRule::io(OpKind::SyncData));
    assert_eq!(sync_data(&mut storage, file).unwrap_err().raw_os_error(), Some(libc::EIO));
    assert_eq!(read_at(&mut storage, file, 0, 4).unwrap(), b"gone", "still visible");
    sync_data(&mut storage, file).unwrap(); // the retry "succeeds"...
    assert_eq!(disk.read_durable(&data("f")).unwrap(), [0u8; 4], "...but persists nothing");
    for _ in 0..3 {
        disk.crash();
        assert_eq!(disk.read(&data("f")).unwrap(), [0u8; 4]);
    }
}

#[test]
fn flip_bit_corrupts_every_copy() {
    let (disk, mut storage) = setup(6);
    let file = durable_file(&mut storage, "f", &[0u8; 100]);
    disk.flip_bit(&data("f"), 42, 3).unwrap();
    assert_eq!(read_at(&mut storage, file, 42, 1).unwrap(), [8]);
    assert_eq!(disk.read_durable(&data("f")).unwrap()[42], 8);
    disk.crash();
    assert_eq!(disk.read(&data("f")).unwrap()[42], 8, "a crash does not repair it");
    assert!(disk.flip_bit(&data("f"), 100, 0).is_err());
    assert!(disk.flip_bit(&data("missing"), 0, 0).is_err());
    assert_eq!(disk.stats().bit_flips, 1);
}

#[test]
fn short_writes_and_reads_when_asked_for() {
    let disk = SimDisk::with_config(
        7,
        SimConfig {
            short_write_probability: 1.0,
            short_read_probability: 1.0,
            ..SimConfig::default()
        },
    );
    let mut storage = disk.storage();
    storage.create_dir_all(Path::new(DATA)).unwrap();
    let file = storage.open(&data("f"), OpenOptions::create()).unwrap();
    let bytes: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
    let (result, _) =
        run(&mut storage, Op::Write { file, offset: 0, buf: AlignedBuf::from_slice(&bytes) });
    let n = result.unwrap();
    assert!(0 < n && n < bytes.len(), "short write of {n}");
    assert_eq!(disk.read(&data("f")).unwrap(), &bytes[..n], "a prefix was written");
    write_all_at(&mut storage, file, 0, &bytes).unwrap();
    assert_eq!(read_at(&mut storage, file, 0, bytes.len()).unwrap(), bytes, "helpers resubmit");

    // A short write breaks its link.
    let op = Op::Write { file, offset: 0, buf: AlignedBuf::from_slice(&bytes) };
    storage.submit(Submission::linked(1, op)).unwrap();
    storage.submit(Submission::new(2, Op::SyncData { file })).unwrap();
    let mut done = complete_all(&mut storage);
    done.sort_by_key(|d| d.token);
    assert!(*done[0].result.as_ref().unwrap() < bytes.len());
    assert_eq!(errno(&done[1].result), Some(libc::ECANCELED));

    // Direct I/O stays aligned: shortened to whole blocks, and one block is never shortened.
    let direct = storage.open(&data("d"), OpenOptions::create().direct(true)).unwrap();
    let buf = AlignedBuf::from_slice(&[1u8; 4 * BLOCK_SIZE]);
    let n = run(&mut storage, Op::Write { file: direct, offset: 0, buf }).0.unwrap();
    assert!(n.is_multiple_of(BLOCK_SIZE) && n < 4 * BLOCK_SIZE, "{n}");
    let buf = AlignedBuf::from_slice(&[1u8; BLOCK_SIZE]);
    assert_eq!(
        run(&mut storage, Op::Write { file: direct, offset: 0, buf }).0.unwrap(),
        BLOCK_SIZE
    );
    let stats = disk.stats();
    assert!(stats.faults(OpKind::Write, FaultKind::Short) >= 3);
    assert!(stats.faults(OpKind::Read, FaultKind::Short) >= 1);
}

#[test]
fn fault_rules_pick_the_nth_operation_under_a_prefix() {
    let (disk, mut storage) = setup(8);
    let a = storage.open(&data("a"), OpenOptions::create()).unwrap();
    let b = storage.open(&data("b"), OpenOptions::create()).unwrap();
    disk.inject_fault(FaultRule::no_space(OpKind::Write).after(2).under(data("a")));
    for _ in 0..5 {
        write_all_at(&mut storage, b, 0, b"b").unwrap(); // other path: never fails
    }
    write_all_at(&mut storage, a, 0, b"1").unwrap();
    write_all_at(&mut storage, a, 0, b"2").unwrap();
    let err = write_all_at(&mut storage, a, 0, b"3").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
    write_all_at(&mut storage, a, 0, b"4").unwrap();
    assert_eq!(disk.read(&data("a")).unwrap(), b"4");

    let id = disk.inject_fault(FaultRule::io(OpKind::SyncDir).persistent());
    for _ in 0..3 {
        assert_eq!(storage.sync_dir(Path::new(DATA)).unwrap_err().raw_os_error(), Some(libc::EIO));
    }
    assert!(disk.clear_fault(id));
    storage.sync_dir(Path::new(DATA)).unwrap();

    disk.inject_fault(FaultRule::io(OpKind::Rename).under(data("c")));
    assert!(storage.rename(&data("a"), &data("c")).is_err(), "matches the target path");
    assert!(disk.exists(&data("a")) && !disk.exists(&data("c")));
    disk.inject_fault(FaultRule::no_space(OpKind::Open));
    assert_eq!(
        storage.open(&data("new"), OpenOptions::create()).unwrap_err().raw_os_error(),
        Some(libc::ENOSPC)
    );
    assert!(!disk.exists(&data("new")));
    let stats = disk.stats();
    assert_eq!(stats.faults(OpKind::SyncDir, FaultKind::Io), 3);
    assert_eq!(stats.total_faults(), 6);
}

#[test]
fn stats_count_operations_by_kind() {
    let (disk, mut storage) = setup(9);
    let before = disk.stats();
    let file = storage.open(&data("f"), OpenOptions::create()).unwrap();
    write_all_at(&mut storage, file, 0, b"x").unwrap();
    read_at(&mut storage, file, 0, 1).unwrap();
    sync_data(&mut storage, file).unwrap();
    let stats = disk.stats();
    for kind in [OpKind::Open, OpKind::Write, OpKind::Read, OpKind::SyncData] {
        assert_eq!(stats.ops(kind) - before.ops(kind), 1, "{kind}");
    }
    assert_eq!(stats.ops(OpKind::SyncDir), 3, "from setup");
    assert_eq!(stats.total_faults(), 0);
}

#[test]
fn close_with_an_operation_in_flight_is_refused() {
    let (_disk, mut storage) = setup(10);
    let file = storage.open(&data("f"), OpenOptions::create()).unwrap();
    storage.submit(Submission::new(1, Op::SyncData { file })).unwrap();
    assert_eq!(storage.close(file).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    complete_all(&mut storage);
    storage.close(file).unwrap();
}

#[test]
fn storages_on_one_disk_share_files_and_durability() {
    let (disk, mut first) = setup(11);
    let factory = disk.factory();
    assert_eq!(factory.kind(), BackendKind::Simulated);
    let mut second = factory.create().unwrap();
    assert_eq!(second.kind(), BackendKind::Simulated);
    let a = first.open(&data("shared"), OpenOptions::create()).unwrap();
    first.sync_dir(Path::new(DATA)).unwrap();
    write_all_at(&mut first, a, 0, b"from the first").unwrap();
    let b = second.open(&data("shared"), OpenOptions::read_write()).unwrap();
    assert_eq!(read_at(second.as_mut(), b, 0, 100).unwrap(), b"from the first");
    sync_data(second.as_mut(), b).unwrap(); // fdatasync on any handle syncs the file
    assert!(!disk.has_unsynced_data(&data("shared")).unwrap());
    disk.crash();
    assert_eq!(disk.read(&data("shared")).unwrap(), b"from the first");
}

#[test]
fn open_but_removed_files_vanish_at_crash() {
    let (disk, mut storage) = setup(12);
    let file = durable_file(&mut storage, "f", b"x");
    storage.remove_file(&data("f")).unwrap();
    storage.sync_dir(Path::new(DATA)).unwrap();
    assert_eq!(read_at(&mut storage, file, 0, 1).unwrap(), b"x", "still readable while open");
    disk.crash();
    assert!(disk.paths().iter().all(|p| p != &data("f")));
    assert_eq!(disk.used_bytes(), 0);
}

proptest! {
    /// Over random writes and syncs on one preallocated file, every byte after a crash is its
    /// last durable value or the value of an unsynced write that covered it.
    #[test]
    fn every_byte_after_a_crash_is_durable_or_unsynced(
        seed in any::<u64>(),
        ops in prop::collection::vec((0u64..16_384, 1usize..3_000, any::<u8>(), 0u8..6), 1..30),
    ) {
        let (disk, mut storage) = setup(seed);
        let file = durable_file(&mut storage, "f", &vec![0u8; 20_000]);
        let mut durable = vec![0u8; 20_000];
        let mut current = durable.clone();
        let mut possible: Vec<BTreeSet<u8>> = vec![BTreeSet::new(); 20_000];
        for (offset, len, value, sync) in ops {
            let len = len.min(20_000 - offset as usize);
            write_all_at(&mut storage, file, offset, &vec![value; len]).unwrap();
            for at in offset as usize..offset as usize + len {
                current[at] = value;
                possible[at].insert(value);
            }
            if sync == 0 {
                sync_data(&mut storage, file).unwrap();
                durable.clone_from(&current);
                possible.iter_mut().for_each(BTreeSet::clear);
            }
        }
        disk.crash();
        let image = disk.read(&data("f")).unwrap();
        prop_assert_eq!(image.len(), 20_000);
        for (at, &b) in image.iter().enumerate() {
            prop_assert!(b == durable[at] || possible[at].contains(&b), "byte {} is {}", at, b);
        }
    }
}
