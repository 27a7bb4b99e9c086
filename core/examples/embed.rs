//! Embedding tidelog: open a data directory, create a topic, append with each durability,
//! read back by offset and by time, and close.
//!
//! `cargo run -p tidelog-core --example embed [DIR]` (a temporary directory by default).

use std::time::Duration;

use tidelog_core::{Durability, Engine, EngineConfig, Header, ReadRequest, Record, TopicConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let temp = tempfile::tempdir()?;
    let dir = std::env::args().nth(1).map_or_else(|| temp.path().to_path_buf(), Into::into);
    let engine = Engine::open(&dir, EngineConfig::default())?;
    if !engine.topics().contains(&"orders".to_string()) {
        engine.create_topic("orders", TopicConfig::default().partitions(3))?;
    }

    // Keyed records go where Kafka's default partitioner would put them.
    let key = b"customer-7";
    let partition = engine.partition_for("orders", Some(key))?;
    let headers = [Header { key: "source", value: Some(b"example") }];
    let first = engine.append(
        "orders",
        partition,
        &[
            Record::new(b"order 1").with_key(key).with_headers(&headers),
            Record::new(b"order 2").with_key(key),
        ],
        Durability::Durable, // acknowledged after an fdatasync covers it
    )?;
    println!(
        "appended offsets {}..={} to partition {partition}",
        first.base_offset, first.last_offset
    );

    // Appends don't have to block: `append_async` returns a `Pending` (also a `Future`).
    let pending: Vec<_> = (0..100)
        .map(|i| {
            let value = format!("event {i}");
            engine.append_async(
                "orders",
                partition,
                &[Record::new(value.as_bytes())],
                Durability::Written,
            )
        })
        .collect();
    for ack in pending {
        ack.wait()?;
    }

    // A consumer: read from an offset, waiting up to 100 ms for records to arrive.
    let mut offset = first.base_offset;
    let mut read = 0;
    loop {
        let fetch = engine.read(
            "orders",
            partition,
            ReadRequest::new(offset).max_wait(Duration::from_millis(100)),
        )?;
        if fetch.is_empty() {
            break;
        }
        for record in fetch.records() {
            let record = record?;
            read += 1;
            if read <= 3 {
                println!(
                    "offset {} value {:?}",
                    record.offset(),
                    String::from_utf8_lossy(record.value().unwrap_or_default())
                );
            }
        }
        offset = fetch.next_offset();
    }
    println!("read {read} records; next offset {offset}");

    // Offsets by time: the first record at or after a timestamp.
    let info = engine.partition_info("orders", partition)?;
    println!(
        "log start {}, high watermark {}, durable {}, {} segment(s)",
        info.log_start_offset,
        info.high_watermark,
        info.durable_offset,
        info.segments.len()
    );
    println!(
        "first offset at or after t=0: {:?}",
        engine.offset_for_timestamp("orders", partition, 0)?
    );
    engine.close()?;
    Ok(())
}
