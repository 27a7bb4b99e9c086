//! The `tidelog` binary, run as a user would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn tidelog(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidelog"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .expect("the tidelog binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Run and require success; returns stdout.
fn ok(args: &[&str]) -> String {
    let output = tidelog(args);
    assert!(
        output.status.success(),
        "tidelog {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

fn loadgen_json(extra: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("result.json");
    let mut args = vec!["loadgen", "--quiet", "--json", path_str(&json)];
    args.extend_from_slice(extra);
    ok(&args);
    serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
}

fn assert_clean_run(result: &Value, messages: u64) {
    for key in ["lost", "duplicated", "reordered", "corrupt", "offset_violations"] {
        assert_eq!(result[key], 0, "{key}: {result:#}");
    }
    assert_eq!(result["messages_sent"], messages, "{result:#}");
    assert_eq!(result["messages_verified"], messages, "{result:#}");
    assert_eq!(result["passed"], true);
    assert!(result["throughput_msgs_per_s"].as_f64().unwrap() > 0.0);
    assert!(result["throughput_mb_per_s"].as_f64().unwrap() > 0.0);
    assert!(result["duration_s"].as_f64().unwrap() > 0.0);
    for histogram in ["publish_latency_us", "end_to_end_latency_us"] {
        let h = &result[histogram];
        let values: Vec<f64> = ["p50", "p90", "p99", "p999", "p9999", "max"]
            .iter()
            .map(|k| h[k].as_f64().unwrap_or_else(|| panic!("{histogram}.{k}: {result:#}")))
            .collect();
        assert!(values[0] > 0.0, "{histogram}: {h}");
        assert!(values.windows(2).all(|w| w[0] <= w[1]), "{histogram} not monotonic: {h}");
    }
}

#[test]
fn loadgen_verifies_every_message_under_each_durability() {
    for durability in ["none", "written", "durable"] {
        let result = loadgen_json(&[
            "--count",
            "3000",
            "--producers",
            "2",
            "--partitions",
            "3",
            "--message-size",
            "200",
            "--shards",
            "2",
            "--durability",
            durability,
        ]);
        assert_clean_run(&result, 3000);
        assert_eq!(result["scenario"], "end-to-end");
        assert_eq!(result["durability"], durability);
        // `auto` picks io_uring where it works (it does on the CI machines), else portable.
        let expected = if tidelog_io::uring::probe().is_ok() { "uring" } else { "portable" };
        assert_eq!(result["io_backend"], expected);
        assert_eq!(result["shards"], 2);
        assert_eq!(result["producers"], 2);
        assert_eq!(result["partitions"], 3);
        assert_eq!(result["message_size_bytes"], 200);
    }
}

#[test]
fn loadgen_with_batches_and_a_duration() {
    let result = loadgen_json(&[
        "--duration",
        "300ms",
        "--batch",
        "16",
        "--in-flight",
        "4",
        "--message-size",
        "64",
        "--producers",
        "3",
        "--partitions",
        "2",
    ]);
    let sent = result["messages_sent"].as_u64().unwrap();
    assert!(sent > 0);
    assert_clean_run(&result, sent);
    assert_eq!(result["partitions"], 2);
}

#[test]
fn loadgen_prints_a_table_and_keeps_the_directory_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = ok(&[
        "loadgen",
        "--count",
        "3000",
        "--message-size",
        "100",
        "--producers",
        "2",
        "--segment-size-bytes",
        "65536",
        "--dir",
        path_str(&data),
    ]);
    for heading in ["throughput", "msgs/s", "MB/s", "p99.99", "publish", "end-to-end", "PASSED"] {
        assert!(out.contains(heading), "no {heading:?} in:\n{out}");
    }
    let listed = ok(&["topics", "list", "--dir", path_str(&data)]);
    assert!(listed.contains("loadgen\t2 partition(s)"), "{listed}");
    // Small segments: rolls and closes happened under load, and all of it verifies.
    let inspected = ok(&["inspect", path_str(&data), "--verify", "--strict"]);
    assert!(inspected.contains("verified: no defects"), "{inspected}");
    assert!(inspected.matches("  closed\n").count() >= 4, "{inspected}");

    // The topic exists now: a second run there must refuse rather than mix runs.
    let again = tidelog(&["loadgen", "--count", "10", "--dir", path_str(&data)]);
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again.stderr).contains("already holds a topic"), "{}", text(&again.stderr));
}

#[test]
fn loadgen_runs_under_each_segment_preparation() {
    let default = loadgen_json(&["--count", "200", "--message-size", "100"]);
    assert_eq!(default["segment_preparation"], "grow", "the engine's default is reported");
    for preparation in ["grow", "fallocate", "zero-fill"] {
        // Small segments: several roll, so prepared spares are taken into use.
        let result = loadgen_json(&[
            "--count",
            "3000",
            "--message-size",
            "1000",
            "--segment-size-bytes",
            "262144",
            "--durability",
            "durable",
            "--segment-preparation",
            preparation,
        ]);
        assert_clean_run(&result, 3000);
        assert_eq!(result["segment_preparation"], preparation);
        assert_eq!(result["segment_size_bytes"], 262144);
    }
}

#[test]
fn loadgen_warms_up_before_measuring() {
    // Three producers share 2 warm-up messages: one has none, and must still take part.
    for (warmup, producers) in [("1000", "1"), ("2", "3")] {
        let result = loadgen_json(&[
            "--count",
            "2000",
            "--warmup-messages",
            warmup,
            "--producers",
            producers,
            "--message-size",
            "100",
        ]);
        let total = 2000 + warmup.parse::<u64>().unwrap();
        assert_clean_run(&result, total);
        assert_eq!(result["warmup_messages"], warmup.parse::<u64>().unwrap());
        assert!(result["warmup_s"].as_f64().unwrap() > 0.0, "{result:#}");
        // Only the measured messages have publish latencies.
        assert_eq!(result["publish_latency_us"]["count"], 2000, "{result:#}");
    }
}

#[test]
fn loadgen_rejects_bad_arguments_with_a_reason() {
    for (args, says) in [
        (&["--message-size", "8"][..], "at least 32"),
        (&["--duration", "10"][..], "no unit"),
        (&["--durability", "sometimes"][..], "unknown durability"),
        (&["--count", "5", "--duration", "1s"][..], "cannot be used with"),
        (&["--io", "io-uring", "--count", "5"][..], "unknown I/O backend"),
        (&["--segment-preparation", "zero"][..], "unknown preparation"),
        (&["--delivery", "batch"][..], "unknown delivery \"batch\""),
        (&["--delivery", "micro-batch:0ms"][..], "must be positive"),
        (&["--delivery", "micro-batch:5"][..], "use us, ms or s"),
        (&["--rate", "0"][..], "positive number of messages per second"),
        (&["--rate=-5"][..], "positive number of messages per second"),
        (&["--rate", "fast"][..], "not a number of messages per second"),
        (&["--rate", "1000", "--max"][..], "cannot be used with"),
        (
            &["--consumers", "3", "--partitions", "2", "--count", "5"][..],
            "--consumers must be 1..=2",
        ),
        (&["--consumers", "0", "--count", "5"][..], "--consumers must be"),
        (&["--scenario", "balanced-consumer-group"][..], "invalid value"),
    ] {
        let mut full = vec!["loadgen", "--quiet"];
        full.extend_from_slice(args);
        let output = tidelog(&full);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn loadgen_pinned_producer_verifies_every_message_under_each_durability() {
    for durability in ["none", "written", "durable"] {
        // Two shards, three partitions, two producers: producer 0 appends to partitions 0 and
        // 2, which may live on different shards, so it runs as one task on each.
        let result = loadgen_json(&[
            "--scenario",
            "pinned-producer",
            "--count",
            "3000",
            "--producers",
            "2",
            "--partitions",
            "3",
            "--message-size",
            "200",
            "--shards",
            "2",
            "--durability",
            durability,
        ]);
        assert_clean_run(&result, 3000);
        assert_eq!(result["scenario"], "pinned-producer");
        assert_eq!(result["durability"], durability);
        assert_eq!(result["rate_msgs_per_s"], Value::Null, "closed loop by default");
        assert_eq!(result["delivery"], "streaming");
        assert_eq!(result["consumers"], 1);
        assert_eq!(result["publish_latency_us"]["count"], 3000);
    }
}

#[test]
fn loadgen_open_loop_runs_at_the_rate() {
    for scenario in ["end-to-end", "pinned-producer"] {
        // 2 producers at 2000 msgs/s each for 1 s: exactly 4000 messages are scheduled.
        let result = loadgen_json(&[
            "--scenario",
            scenario,
            "--rate",
            "4000",
            "--duration",
            "1s",
            "--producers",
            "2",
            "--message-size",
            "200",
        ]);
        assert_clean_run(&result, 4000);
        assert_eq!(result["rate_msgs_per_s"], 4000.0);
        assert_eq!(result["publish_latency_us"]["count"], 4000);
        assert_eq!(result["send_lateness_us"]["count"], 4000, "{result:#}");
        let lateness = result["send_lateness_us"]["p50"].as_f64().unwrap();
        let publish = result["publish_latency_us"]["p50"].as_f64().unwrap();
        assert!(lateness <= publish, "{scenario}: lateness is part of publish latency");
        // Open loop sends on schedule however fast the engine is, so throughput is the rate —
        // a little under: the measured time also covers the consumer's catch-up and its last
        // 20 ms poll. The band is loose for slow, shared CI machines: a producer stalled for
        // a while still sends every scheduled message, late, and the run gets longer.
        let throughput = result["throughput_msgs_per_s"].as_f64().unwrap();
        assert!((2800.0..=4200.0).contains(&throughput), "{scenario}: {throughput} msgs/s");
        let producing = result["produce_duration_s"].as_f64().unwrap();
        assert!(producing >= 0.99, "{scenario}: {producing} s producing: sent ahead of schedule");
    }
    let explicit = loadgen_json(&["--max", "--count", "100", "--message-size", "100"]);
    assert_clean_run(&explicit, 100);
    assert_eq!(explicit["rate_msgs_per_s"], Value::Null);
    assert_eq!(explicit["send_lateness_us"]["count"], 0, "closed loop has no schedule");
}

#[test]
fn loadgen_consumers_split_the_partitions() {
    for scenario in ["end-to-end", "pinned-producer"] {
        let result = loadgen_json(&[
            "--scenario",
            scenario,
            "--consumers",
            "2",
            "--partitions",
            "4",
            "--producers",
            "2",
            "--count",
            "4000",
            "--message-size",
            "100",
        ]);
        assert_clean_run(&result, 4000);
        assert_eq!(result["consumers"], 2);
        assert_eq!(result["partitions"], 4);
    }
}

#[test]
fn loadgen_micro_batches_wait_for_their_trigger_and_streaming_does_not() {
    let run = |delivery: &str| {
        let result = loadgen_json(&[
            "--rate",
            "2000",
            "--duration",
            "1s",
            "--message-size",
            "100",
            "--delivery",
            delivery,
        ]);
        assert_clean_run(&result, 2000);
        assert_eq!(result["delivery"], delivery);
        result["end_to_end_latency_us"]["p50"].as_f64().unwrap()
    };
    let micro_batch_us = run("micro-batch:50ms");
    let streaming_us = run("streaming");
    // A record waits for the next trigger of the 50 ms grid: uniformly 0-50 ms, so the
    // median is about 25 ms by design. Streaming hands each record over once its write
    // completes: about 0.1-0.3 ms on the development VM. The bounds are loose so a loaded
    // machine passes: only a stall of tens of milliseconds at the median could break them.
    assert!(micro_batch_us >= 10_000.0, "micro-batch:50ms p50 {micro_batch_us} µs");
    assert!(
        streaming_us < micro_batch_us / 2.0,
        "streaming p50 {streaming_us} µs, micro-batch:50ms p50 {micro_batch_us} µs"
    );
}

/// A data directory written by loadgen (one partition, one active segment).
fn loadgen_dir(parent: &Path) -> PathBuf {
    let data = parent.join("data");
    ok(&[
        "loadgen",
        "--quiet",
        "--count",
        "400",
        "--message-size",
        "300",
        "--dir",
        path_str(&data),
    ]);
    data
}

#[test]
fn inspect_lists_and_verifies_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let data = loadgen_dir(dir.path());
    let out = ok(&["inspect", path_str(&data), "--verify", "--json"]);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["clean"], true);
    assert_eq!(report["verified"], true);
    let topic = &report["topics"][0];
    assert_eq!(topic["name"], "loadgen");
    let partition = &topic["partition_reports"][0];
    assert_eq!(partition["next_offset"], 400);
    assert_eq!(partition["record_count"], 400);
    assert_eq!(partition["segments"][0]["batch_count"], 400);
    assert_eq!(partition["segments"][0]["active"], true);

    let listing = ok(&["inspect", path_str(&data)]);
    assert!(listing.contains("topic loadgen"), "{listing}");
    assert!(listing.contains("offsets [0, 400)"), "{listing}");
}

#[test]
fn inspect_names_the_damaged_file_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let data = loadgen_dir(dir.path());
    let log = data.join("topics/loadgen/0/00000000000000000000.log");
    let mut bytes = std::fs::read(&log).unwrap();
    let middle = bytes.len() / 2 + 100; // inside a batch's records, past its header
    bytes[middle] ^= 0xff;
    std::fs::write(&log, bytes).unwrap();

    let output = tidelog(&["inspect", path_str(&data), "--verify"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("DEFECT"), "{stderr}");
    assert!(stderr.contains(path_str(&log)), "{stderr}");
    assert!(stderr.contains("checksum mismatch"), "{stderr}");

    let meta = data.join("topics/loadgen/topic.meta");
    let mut bytes = std::fs::read(&meta).unwrap();
    bytes[30] ^= 1;
    std::fs::write(&meta, bytes).unwrap();
    let output = tidelog(&["inspect", path_str(&data), "--json"]);
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_str(&text(&output.stdout)).unwrap();
    assert_eq!(report["clean"], false);
    assert_eq!(report["defect"]["path"], path_str(&meta));
    assert_eq!(report["defect"]["position"], 24);
}

#[test]
fn inspect_of_a_missing_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = tidelog(&["inspect", path_str(&dir.path().join("nope"))]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("nope"));
}

#[test]
fn topics_create_list_describe_delete() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = path_str(&data);
    let out = ok(&[
        "topics",
        "create",
        "orders",
        "--dir",
        d,
        "--partitions",
        "3",
        "--segment-size-bytes",
        "65536",
        "--retention-ms",
        "none",
        "--retention-bytes",
        "1000000",
    ]);
    assert!(out.contains("created topic orders with 3 partition(s)"), "{out}");
    ok(&["topics", "create", "audit", "--dir", d]);
    assert_eq!(
        ok(&["topics", "list", "--dir", d]),
        "audit\t1 partition(s)\norders\t3 partition(s)\n"
    );

    let described = ok(&["topics", "describe", "orders", "--dir", d]);
    for line in [
        "topic orders",
        "partitions             3",
        "segment-size-bytes     65536",
        "retention-ms           none",
        "retention-bytes        1000000",
        "record-size-bytes-max  65536",
        "partition 2  shard",
        "log-start 0  high-watermark 0  durable 0  next 0",
        "active",
    ] {
        assert!(described.contains(line), "no {line:?} in:\n{described}");
    }

    let duplicate = tidelog(&["topics", "create", "orders", "--dir", d]);
    assert_eq!(duplicate.status.code(), Some(2));
    assert!(text(&duplicate.stderr).contains("already exists"));

    ok(&["topics", "delete", "orders", "--dir", d]);
    assert_eq!(ok(&["topics", "list", "--dir", d]), "audit\t1 partition(s)\n");
    let gone = tidelog(&["topics", "describe", "orders", "--dir", d]);
    assert_eq!(gone.status.code(), Some(2));
    assert!(text(&gone.stderr).contains("does not exist"));

    let nowhere = tidelog(&["topics", "list", "--dir", path_str(&dir.path().join("nope"))]);
    assert_eq!(nowhere.status.code(), Some(2));
}

#[test]
fn bench_reports_each_case_beside_its_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = ok(&[
        "bench",
        "--duration",
        "300ms",
        "--case",
        "durable-append-qd1-4k",
        "--case",
        "append-throughput-1k",
        "--dir",
        path_str(dir.path()),
        "--json",
        path_str(&json),
    ]);
    assert!(out.contains("durable-append-qd1-4k"), "{out}");
    assert!(out.contains("ratio"), "{out}");
    let result: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let cases = result["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    for case in cases {
        for side in ["engine", "baseline"] {
            assert!(case[side]["msgs_per_s"].as_f64().unwrap() > 0.0, "{case}");
            assert!(case[side]["mb_per_s"].as_f64().unwrap() > 0.0, "{case}");
        }
        assert!(case["ratio"]["mb_per_s"].as_f64().unwrap() > 0.0);
    }
    let qd1 = &cases[0];
    assert_eq!(qd1["name"], "durable-append-qd1-4k");
    for key in ["p50", "p90", "p99", "p999", "p9999", "max"] {
        assert!(qd1["engine"]["latency_us"][key].as_f64().is_some(), "{key}");
        assert!(qd1["baseline"]["latency_us"][key].as_f64().is_some(), "{key}");
    }
    // The temporary data directory is gone.
    let left: Vec<_> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("bench.json")]);
    assert!(tidelog(&["bench", "--case", "nope"]).status.code() == Some(2));
}
