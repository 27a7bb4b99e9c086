//! `tidelog bench`: the reproducible suite, each case beside its raw baseline in the same run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tidelog_bench::suite::{self, Case, SuiteConfig};
use tidelog_core::{EngineConfig, IoChoice, SegmentPreparation};

/// Arguments of `tidelog bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Cases to run (repeat the flag; default: all): durable-append-qd1-4k,
    /// durable-append-concurrent-1k, append-throughput-1k, end-to-end-latency-1k,
    /// end-to-end-latency-1k-durable, micro-batch-vs-streaming, shard-scaling
    #[arg(long = "case", value_name = "NAME")]
    cases: Vec<Case>,
    /// How long each side (engine, baseline) of each case runs: 500ms, 10s, 1m
    #[arg(long, default_value = "5s", value_parser = crate::duration::parse_duration)]
    duration: Duration,
    /// I/O backend for the engine and its baselines: auto, uring, portable
    #[arg(long, default_value = "auto", value_name = "auto|uring|portable")]
    io: IoChoice,
    /// Write segment logs with O_DIRECT (the baselines use the same): true or false
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, value_name = "BOOL")]
    direct_io: bool,
    /// Run an idle shard's fdatasync as a system call instead of through the ring: true or
    /// false (see EngineConfig::inline_sync)
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, value_name = "BOOL")]
    inline_sync: bool,
    /// Scheduler slice shard threads ask for, or `off` to leave them at the kernel's default
    /// (see EngineConfig::shard_scheduler_slice)
    #[arg(long, default_value = "100us", value_name = "DURATION|off", value_parser = parse_slice)]
    shard_slice: SliceArg,
    /// How long an idle shard polls its mailbox before sleeping, e.g. 50us; 0us turns it off
    /// (see EngineConfig::idle_poll)
    #[arg(long, default_value = "50us", value_name = "DURATION", value_parser = crate::duration::parse_duration)]
    idle_poll: Duration,
    /// How segments are prepared: grow, fallocate, zero-fill (baselines prepare their file the
    /// same way)
    #[arg(long, default_value = "grow", value_name = "POLICY")]
    segment_preparation: SegmentPreparation,
    /// Shard threads [default: the CPUs this process may use]
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
    /// Directory for data files (a temporary directory is made inside it and removed);
    /// default: the system's temporary directory
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Messages per second of the open-loop (end-to-end) cases
    #[arg(long, default_value_t = 20_000, value_name = "MSGS_PER_S")]
    rate: u64,
    /// Also write the results as JSON to FILE
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// `--shard-slice`: a duration or `off`.
#[derive(Debug, Clone, Copy)]
struct SliceArg(Option<Duration>);

fn parse_slice(text: &str) -> Result<SliceArg, String> {
    if text == "off" {
        return Ok(SliceArg(None));
    }
    crate::duration::parse_duration(text).map(|d| SliceArg(Some(d)))
}

/// Run `tidelog bench`.
pub fn command(args: &BenchArgs) -> Result<ExitCode> {
    let mut engine = EngineConfig::default()
        .io(args.io)
        .segment_preparation(args.segment_preparation)
        .direct_io(args.direct_io)
        .inline_sync(args.inline_sync)
        .shard_scheduler_slice(args.shard_slice.0)
        .idle_poll(args.idle_poll);
    if let Some(shards) = args.shards {
        engine = engine.shards(shards);
    }
    engine.validate()?;
    let backend = engine.storage_factory()?.kind();
    let config = SuiteConfig {
        engine,
        dir: args.dir.clone(),
        duration: args.duration,
        cases: if args.cases.is_empty() { Case::ALL.to_vec() } else { args.cases.clone() },
        rate: args.rate,
    };
    eprintln!(
        "tidelog bench: backend {backend}, direct I/O {}, inline sync {}, shard slice {:?}, idle poll {:?}, preparation {:?}, {} shard(s), {:?} per side",
        config.engine.direct_io,
        config.engine.inline_sync,
        config.engine.shard_scheduler_slice,
        config.engine.idle_poll,
        config.engine.segment_preparation,
        config.engine.shards,
        config.duration
    );
    let results = suite::run(&config, |step| eprintln!("  running {step}"))?;
    print!("{}", suite::table(&results));
    if let Some(path) = &args.json {
        let json = suite::to_json(&config, &results, backend.name());
        std::fs::write(path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
