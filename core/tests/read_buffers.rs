//! Where a fetch's bytes live when they come from a segment file (not the tail cache): the
//! read goes into a buffer from `Storage::alloc_read_buf` — on io_uring a registered pool
//! slot while more than half the pool is free (`READ_FIXED`), else the heap — and nothing
//! else asks for one (recovery's and index loading's reads are not handed to readers).

mod common;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tidelog_core::{Durability, Engine, EngineConfig, IoChoice, ReadRequest, Record, TopicConfig};
use tidelog_io::{AlignedBuf, BackendKind, Storage, StorageFactory};

#[derive(Debug, Default)]
struct Counts {
    /// `alloc_read_buf` calls.
    read_bufs: AtomicUsize,
    /// Of those, answered with a pool slot.
    pooled: AtomicUsize,
}

struct CountingReads {
    inner: Box<dyn Storage>,
    counts: Arc<Counts>,
}

impl Storage for CountingReads {
    common::storage_pass_through!(open, close, submit, in_flight, queue_depth, complete);
    fn alloc_read_buf(&mut self, len: usize) -> AlignedBuf {
        let buf = self.inner.alloc_read_buf(len);
        self.counts.read_bufs.fetch_add(1, Ordering::SeqCst);
        if buf.is_pooled() {
            self.counts.pooled.fetch_add(1, Ordering::SeqCst);
        }
        buf
    }
}

#[derive(Debug)]
struct CountingFactory {
    inner: Arc<dyn StorageFactory>,
    counts: Arc<Counts>,
}

impl StorageFactory for CountingFactory {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }
    fn create(&self) -> io::Result<Box<dyn Storage>> {
        Ok(Box::new(CountingReads { inner: self.inner.create()?, counts: self.counts.clone() }))
    }
}

fn config(choice: IoChoice, counts: &Arc<Counts>) -> EngineConfig {
    let base = EngineConfig::default().shards(1).io(choice).pin_shards(false);
    let real = base.clone().storage_factory().unwrap();
    base.storage(Arc::new(CountingFactory { inner: real, counts: counts.clone() }))
}

#[test]
fn segment_reads_go_into_read_buffers_pooled_on_io_uring() {
    let mut choices = vec![IoChoice::Portable];
    match tidelog_io::uring::probe() {
        Ok(_) => choices.push(IoChoice::Uring),
        Err(reason) => println!("skipped io_uring: {reason}"),
    }
    for choice in choices {
        let dir = tempfile::tempdir().unwrap();
        let counts = Arc::new(Counts::default());
        let values: Vec<Vec<u8>> = (0..400u32).map(|i| vec![i as u8; 1000]).collect();
        {
            let engine = Engine::open(dir.path(), config(choice, &counts)).unwrap();
            engine.create_topic("t", TopicConfig::default().partitions(1)).unwrap();
            for value in &values {
                engine.append("t", 0, &[Record::new(value)], Durability::Written).unwrap();
            }
            engine.close().unwrap();
        }
        assert_eq!(counts.read_bufs.load(Ordering::SeqCst), 0, "{choice:?}: writes only");
        // Reopened, the tail cache is empty: reads come from the segment file.
        let engine = Engine::open(dir.path(), config(choice, &counts)).unwrap();
        assert_eq!(
            counts.read_bufs.load(Ordering::SeqCst),
            0,
            "{choice:?}: recovery's reads are not fetches"
        );
        let mut offset = 0u64;
        let mut fetches = Vec::new();
        while offset < values.len() as u64 {
            let fetch = engine.read("t", 0, ReadRequest::new(offset).max_bytes(16 * 1024)).unwrap();
            for record in fetch.records() {
                let record = record.unwrap();
                assert_eq!(record.offset() as u64, offset);
                assert_eq!(record.value().unwrap(), &values[offset as usize][..]);
                offset += 1;
            }
            // Held, as a consumer holds what it has not processed yet.
            fetches.push(fetch);
        }
        let (read_bufs, pooled) =
            (counts.read_bufs.load(Ordering::SeqCst), counts.pooled.load(Ordering::SeqCst));
        let slots = tidelog_io::uring::BUFFER_POOL_SLOTS;
        assert!(read_bufs > slots, "{choice:?}: ~400 KB in fetches of 16 KiB: {read_bufs}");
        if choice == IoChoice::Uring {
            // Held fetches keep their slots: reads take them until half the pool is left.
            assert_eq!(pooled, slots / 2, "{choice:?}: slots taken by {read_bufs} held reads");
        } else {
            assert_eq!(pooled, 0, "{choice:?}: no pool");
        }
        drop(fetches);
        engine.close().unwrap();
    }
}
