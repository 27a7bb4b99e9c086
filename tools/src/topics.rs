//! `tidelog topics list|create|describe|delete --dir DIR`: thin wrappers over the `Engine`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::{Context, bail};
use tidelog_core::{Engine, EngineConfig, IoChoice, TopicConfig, TopicDescription};

/// `tidelog topics`: the command line.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Each command opens the directory with an embedded engine (recovering it), so no other \
engine may have it open.")]
pub struct TopicsArgs {
    /// The data directory
    #[arg(long, value_name = "DIR", global = true)]
    pub dir: Option<PathBuf>,

    /// I/O backend: auto, uring or portable
    #[arg(long, value_name = "auto|uring|portable", default_value = "auto", global = true)]
    pub io: IoChoice,

    #[command(subcommand)]
    pub command: TopicsCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum TopicsCommand {
    /// List the topics with their partition counts
    List,
    /// Create a topic (creates the directory if needed)
    Create(CreateArgs),
    /// Show a topic's configuration and every partition's offsets, shard and segments
    Describe {
        /// Topic name
        name: String,
    },
    /// Delete a topic and all its records
    Delete {
        /// Topic name
        name: String,
    },
}

/// A limit that may be switched off: a number or `none`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit(pub Option<u64>);

impl FromStr for Limit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "none" {
            return Ok(Limit(None));
        }
        s.parse()
            .map(|v| Limit(Some(v)))
            .map_err(|_| format!("{s:?} is neither a number nor `none`"))
    }
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Topic name: 1–249 characters of a-z, A-Z, 0-9, '.', '_', '-'
    pub name: String,

    /// Number of partitions
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub partitions: u32,

    /// A segment rolls when an append would take it past this many bytes (16384 to 2^30)
    /// [default: 268435456]
    #[arg(long, value_name = "BYTES")]
    pub segment_size_bytes: Option<u64>,

    /// A segment rolls when its first record is this many milliseconds old [default: 7 days]
    #[arg(long, value_name = "MS")]
    pub segment_age_ms: Option<u64>,

    /// Delete closed segments whose newest record is older than this many milliseconds, or
    /// `none` to keep them forever [default: 604800000, 7 days]
    #[arg(long, value_name = "MS|none")]
    pub retention_ms: Option<Limit>,

    /// Delete the oldest closed segments while a partition holds more than this many bytes,
    /// or `none` for no limit [default: none]
    #[arg(long, value_name = "BYTES|none")]
    pub retention_bytes: Option<Limit>,

    /// Largest record batch one append may carry, in encoded bytes [default: 1048588, or the
    /// segment size if smaller]
    #[arg(long, value_name = "BYTES")]
    pub record_size_bytes_max: Option<u32>,
}

impl CreateArgs {
    fn config(&self) -> TopicConfig {
        let mut config = TopicConfig::default().partitions(self.partitions);
        if let Some(bytes) = self.segment_size_bytes {
            config = config.segment_size_bytes(bytes);
            let fits = u32::try_from(bytes).unwrap_or(u32::MAX);
            config.record_size_bytes_max = config.record_size_bytes_max.min(fits);
        }
        if let Some(ms) = self.segment_age_ms {
            config = config.segment_age_ms(ms);
        }
        if let Some(Limit(ms)) = self.retention_ms {
            config = config.retention_ms(ms);
        }
        if let Some(Limit(bytes)) = self.retention_bytes {
            config = config.retention_bytes(bytes);
        }
        if let Some(bytes) = self.record_size_bytes_max {
            config = config.record_size_bytes_max(bytes);
        }
        config
    }
}

fn open(dir: &Path, io: IoChoice, create: bool) -> anyhow::Result<Engine> {
    if !create && !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    Engine::open(dir, EngineConfig::default().io(io))
        .with_context(|| format!("opening {}", dir.display()))
}

pub fn command(args: &TopicsArgs) -> anyhow::Result<ExitCode> {
    let Some(dir) = &args.dir else {
        bail!("--dir DIR is required: the data directory to operate on");
    };
    let create = matches!(args.command, TopicsCommand::Create(_));
    let engine = open(dir, args.io, create)?;
    let result = run(&engine, &args.command);
    let closed = engine.close().context("closing the engine");
    let output = result?;
    closed?;
    print!("{output}");
    Ok(ExitCode::SUCCESS)
}

fn run(engine: &Engine, command: &TopicsCommand) -> anyhow::Result<String> {
    let mut out = String::new();
    match command {
        TopicsCommand::List => {
            for name in engine.topics() {
                let config = engine.topic_config(&name)?;
                writeln!(out, "{name}\t{} partition(s)", config.partitions)?;
            }
        }
        TopicsCommand::Create(create) => {
            let config = create.config();
            engine
                .create_topic(&create.name, config.clone())
                .with_context(|| format!("creating topic {:?}", create.name))?;
            writeln!(out, "created topic {} with {} partition(s)", create.name, config.partitions)?;
        }
        TopicsCommand::Describe { name } => {
            let description = engine
                .describe_topic(name)
                .with_context(|| format!("describing topic {name:?}"))?;
            describe(&mut out, &description)?;
        }
        TopicsCommand::Delete { name } => {
            engine.delete_topic(name).with_context(|| format!("deleting topic {name:?}"))?;
            writeln!(out, "deleted topic {name}")?;
        }
    }
    Ok(out)
}

fn describe(out: &mut String, topic: &TopicDescription) -> std::fmt::Result {
    let c = &topic.config;
    let limit = |v: Option<u64>| v.map_or("none".to_string(), |v| v.to_string());
    writeln!(out, "topic {}", topic.name)?;
    writeln!(out, "  created-ms             {}", topic.created_ms)?;
    writeln!(out, "  partitions             {}", c.partitions)?;
    writeln!(out, "  segment-size-bytes     {}", c.segment_size_bytes)?;
    writeln!(out, "  segment-age-ms         {}", c.segment_age_ms)?;
    writeln!(out, "  retention-ms           {}", limit(c.retention_ms))?;
    writeln!(out, "  retention-bytes        {}", limit(c.retention_bytes))?;
    writeln!(out, "  record-size-bytes-max  {}", c.record_size_bytes_max)?;
    for p in &topic.partitions {
        writeln!(
            out,
            "\n  partition {}  shard {}  log-start {}  high-watermark {}  durable {}  next {}  {} bytes{}",
            p.partition,
            p.shard,
            p.log_start_offset,
            p.high_watermark,
            p.durable_offset,
            p.next_offset,
            p.size_bytes(),
            p.failed.as_ref().map_or(String::new(), |f| format!("  FAILED: {f}"))
        )?;
        writeln!(
            out,
            "    {:>20} {:>20} {:>12} {:>15}  state",
            "base offset", "next offset", "bytes", "max timestamp"
        )?;
        for s in &p.segments {
            writeln!(
                out,
                "    {:>20} {:>20} {:>12} {:>15}  {}",
                s.base_offset,
                s.next_offset,
                s.size_bytes,
                s.max_timestamp,
                if s.active { "active" } else { "closed" }
            )?;
        }
    }
    Ok(())
}
