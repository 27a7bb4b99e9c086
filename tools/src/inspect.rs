//! `tidelog inspect DIR`: print what `tidelog_core::inspect` finds.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::{Value, json};
use tidelog_core::inspect::{
    InspectOptions, InspectReport, PartitionReport, SegmentReport, TopicReport, inspect,
};

/// `tidelog inspect`: the command line.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Works offline and refuses a directory an engine has open. \
Exits 0 when no defect was found (warnings allowed), 1 on a defect, 2 when it could not run.")]
pub struct InspectArgs {
    /// The data directory (the one given to Engine::open or --dir)
    pub dir: PathBuf,

    /// Read every segment in full: batch checksums and records, offset continuity within and
    /// across segments, every index entry, each closed segment's close entry. Stops at the
    /// first defect, naming the file, byte position and what is wrong
    #[arg(long)]
    pub verify: bool,

    /// I/O backend to read with: auto, uring or portable
    #[arg(long, value_name = "auto|uring|portable", default_value = "auto")]
    pub io: tidelog_core::IoChoice,

    /// Treat warnings as defects: states a crash leaves and the next open repairs (a torn
    /// tail on the active segment, an interrupted segment close, unsynced index tails,
    /// leftover files)
    #[arg(long)]
    pub strict: bool,

    /// Print the report as JSON on stdout instead of tables
    #[arg(long)]
    pub json: bool,
}

pub fn command(args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let options = InspectOptions { verify: args.verify, strict: args.strict, io: args.io };
    let report = inspect(&args.dir, options)
        .with_context(|| format!("inspecting {}", args.dir.display()))?;
    if args.json {
        let text =
            serde_json::to_string_pretty(&report_json(&report)).context("encoding the JSON")?;
        println!("{text}");
    } else {
        print!("{}", report_text(&report));
    }
    if let Some(defect) = &report.defect {
        eprintln!("DEFECT: {defect}");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn segment_json(segment: &SegmentReport) -> Value {
    json!({
        "path": segment.path.display().to_string(),
        "base_offset": segment.base_offset,
        "next_offset": segment.next_offset,
        "record_count": segment.record_count(),
        "size_bytes": segment.size_bytes,
        "file_len_bytes": segment.file_len_bytes,
        "max_timestamp_ms": segment.max_timestamp,
        "active": segment.active,
        "closed_cleanly": segment.closed_cleanly,
        "batch_count": segment.batch_count,
        "offset_index_entries": segment.offset_index_entries,
        "time_index_entries": segment.time_index_entries,
    })
}

fn partition_json(partition: &PartitionReport) -> Value {
    json!({
        "partition": partition.partition,
        "path": partition.path.display().to_string(),
        "log_start_offset": partition.log_start_offset,
        "next_offset": partition.next_offset,
        "record_count": partition.record_count(),
        "size_bytes": partition.size_bytes(),
        "segments": partition.segments.iter().map(segment_json).collect::<Vec<_>>(),
    })
}

fn topic_json(topic: &TopicReport) -> Value {
    json!({
        "name": topic.name,
        "id": topic.id,
        "created_ms": topic.created_ms,
        "partitions": topic.config.partitions,
        "segment_size_bytes": topic.config.segment_size_bytes,
        "segment_age_ms": topic.config.segment_age_ms,
        "retention_bytes": topic.config.retention_bytes,
        "retention_ms": topic.config.retention_ms,
        "record_size_bytes_max": topic.config.record_size_bytes_max,
        "partition_reports": topic.partitions.iter().map(partition_json).collect::<Vec<_>>(),
    })
}

pub fn report_json(report: &InspectReport) -> Value {
    json!({
        "dir": report.dir.display().to_string(),
        "verified": report.options.verify,
        "strict": report.options.strict,
        "clean": report.is_clean(),
        "topics": report.topics.iter().map(topic_json).collect::<Vec<_>>(),
        "warnings": report.warnings.iter().map(|w| json!({
            "path": w.path.display().to_string(),
            "position": w.position,
            "reason": w.reason,
        })).collect::<Vec<_>>(),
        "defect": report.defect.as_ref().map(|d| json!({
            "path": d.path.display().to_string(),
            "position": d.position,
            "reason": d.reason,
        })),
    })
}

fn report_text(report: &InspectReport) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_report(&mut out, report);
    out
}

fn write_report(out: &mut String, report: &InspectReport) -> std::fmt::Result {
    let mode = match (report.options.verify, report.options.strict) {
        (true, true) => "verify, strict",
        (true, false) => "verify",
        (false, true) => "list, strict",
        (false, false) => "list",
    };
    writeln!(out, "{} ({mode}): {} topic(s)", report.dir.display(), report.topics.len())?;
    for topic in &report.topics {
        let c = &topic.config;
        let limit = |v: Option<u64>| v.map_or("none".to_string(), |v| v.to_string());
        writeln!(
            out,
            "\ntopic {}  id {}  partitions {}  segment-size-bytes {}  retention-ms {}  retention-bytes {}",
            topic.name,
            topic.id,
            c.partitions,
            c.segment_size_bytes,
            limit(c.retention_ms),
            limit(c.retention_bytes)
        )?;
        for partition in &topic.partitions {
            writeln!(
                out,
                "  partition {}  offsets [{}, {})  {} record(s)  {} bytes  {} segment(s)",
                partition.partition,
                partition.log_start_offset,
                partition.next_offset,
                partition.record_count(),
                partition.size_bytes(),
                partition.segments.len()
            )?;
            writeln!(
                out,
                "    {:>20} {:>20} {:>10} {:>12} {:>15} {:>8}  state",
                "base offset", "next offset", "records", "bytes", "max timestamp", "batches"
            )?;
            for s in &partition.segments {
                let state = match (s.active, s.closed_cleanly) {
                    (true, _) => "active",
                    (false, true) => "closed",
                    (false, false) => "closed, not cleanly",
                };
                let batches = s.batch_count.map_or("-".to_string(), |n| n.to_string());
                writeln!(
                    out,
                    "    {:>20} {:>20} {:>10} {:>12} {:>15} {:>8}  {state}",
                    s.base_offset,
                    s.next_offset,
                    s.record_count(),
                    s.size_bytes,
                    s.max_timestamp,
                    batches
                )?;
            }
        }
    }
    if !report.warnings.is_empty() {
        writeln!(out, "\n{} warning(s) (repaired by the next open):", report.warnings.len())?;
        for warning in &report.warnings {
            writeln!(out, "  {warning}")?;
        }
    }
    match &report.defect {
        Some(defect) => writeln!(out, "\nDEFECT (inspection stopped here): {defect}")?,
        None if report.options.verify => writeln!(out, "\nverified: no defects")?,
        None => writeln!(out, "\nno defects seen (use --verify to check every byte)")?,
    }
    Ok(())
}
