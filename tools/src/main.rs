//! `tidelog`: the command-line front end of the tidelog engine.
//!
//! - `tidelog loadgen` drives an embedded engine with producers and consumers, verifies every
//!   record and reports throughput and latency percentiles;
//! - `tidelog inspect DIR` lists (and with `--verify`, checks) a data directory offline;
//! - `tidelog topics list|create|describe|delete --dir DIR` manages topics;
//! - `tidelog bench` runs the benchmark suite, each case beside its raw baseline.
//!
//! Exit codes: 0 success; 1 the command ran and found a problem (a load-test violation, a
//! defect); 2 the command could not run (bad arguments, unreadable directory, engine error).
//! Logs go to stderr, filtered by `RUST_LOG` (default `warn`).

mod bench;
mod duration;
mod inspect;
mod loadgen;
mod topics;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// tidelog, a Kafka-style event log engine: load generator, offline inspector and topic tools.
#[derive(Debug, Parser)]
#[command(name = "tidelog", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Drive an embedded engine with producers and consumers; verify every record; report
    /// throughput and publish/end-to-end latency percentiles
    Loadgen(loadgen::LoadgenArgs),
    /// List the topics, partitions and segments of a data directory offline; with --verify,
    /// check every checksum, offset and index entry
    Inspect(inspect::InspectArgs),
    /// Create, list, describe and delete topics in a data directory
    Topics(topics::TopicsArgs),
    /// Run the benchmark suite: each case beside its raw baseline (the same storage
    /// operations with no engine), printing absolute figures and ratios
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    let outcome = match &cli.command {
        Command::Loadgen(args) => loadgen::command(args),
        Command::Inspect(args) => inspect::command(args),
        Command::Topics(args) => topics::command(args),
        Command::Bench(args) => bench::command(args),
    };
    match outcome {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
