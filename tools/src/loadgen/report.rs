//! A run's results: the table printed at the end, the JSON written with `--json`, and the
//! list of problems that make the run fail.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tidelog_core::{BackendKind, Delivery, Durability, SegmentPreparation};

use super::Scenario;
use super::schedule::Pace;
use super::verify::Violations;

/// Percentiles reported, with their JSON key and table heading.
const PERCENTILES: [(f64, &str, &str); 5] = [
    (0.50, "p50", "p50"),
    (0.90, "p90", "p90"),
    (0.99, "p99", "p99"),
    (0.999, "p999", "p99.9"),
    (0.9999, "p9999", "p99.99"),
];

/// Everything a run measured.
#[derive(Debug)]
pub struct Report {
    pub scenario: Scenario,
    pub producers: u32,
    pub consumers: u32,
    pub partitions: u32,
    pub pace: Pace,
    pub delivery: Delivery,
    pub message_size_bytes: usize,
    pub batch_records: u32,
    pub in_flight: usize,
    pub segment_size_bytes: u64,
    pub segment_preparation: SegmentPreparation,
    pub durability: Durability,
    pub io_backend: BackendKind,
    pub shards: usize,
    pub messages_sent: u64,
    pub messages_acked: u64,
    pub messages_verified: u64,
    pub violations: Violations,
    /// The first violations, described.
    pub samples: Vec<String>,
    /// Engine errors and other failures.
    pub errors: Vec<String>,
    /// Messages sent before measuring started (included in the message counts above).
    pub warmup_messages: u64,
    /// From the start until measuring started (zero without warm-up).
    pub warmup: Duration,
    /// From the start of measuring until the consumer caught up (or gave up).
    pub duration: Duration,
    /// From the start of measuring until the last producer finished.
    pub produce_duration: Duration,
    /// Nanoseconds, send → acknowledged (open loop: scheduled send → acknowledged).
    pub publish_latency: Histogram<u64>,
    /// Open loop: nanoseconds from the scheduled send to when the producer began the append
    /// (the part of publish latency spent before the engine saw it). Empty in closed loop.
    pub send_lateness: Histogram<u64>,
    /// Nanoseconds, send → consumed (open loop: scheduled send → consumed).
    pub end_to_end_latency: Histogram<u64>,
    /// The data directory, when kept.
    pub dir: Option<PathBuf>,
}

fn per_second(count: f64, duration: Duration) -> f64 {
    let seconds = duration.as_secs_f64();
    if seconds > 0.0 { count / seconds } else { 0.0 }
}

/// Latency percentiles in microseconds, `None` when nothing was recorded.
fn percentiles_us(histogram: &Histogram<u64>) -> Option<Vec<(&'static str, f64)>> {
    if histogram.is_empty() {
        return None;
    }
    let us = |ns: u64| ns as f64 / 1000.0;
    let mut values: Vec<(&'static str, f64)> =
        PERCENTILES.iter().map(|&(q, key, _)| (key, us(histogram.value_at_quantile(q)))).collect();
    values.push(("max", us(histogram.max())));
    Some(values)
}

fn latency_json(histogram: &Histogram<u64>) -> Value {
    let mut object = serde_json::Map::new();
    let values = percentiles_us(histogram).unwrap_or_else(|| {
        let mut empty: Vec<(&'static str, f64)> =
            PERCENTILES.iter().map(|&(_, key, _)| (key, 0.0)).collect();
        empty.push(("max", 0.0));
        empty
    });
    for (key, value) in values {
        object.insert(key.to_string(), json!(round3(value)));
    }
    object.insert("count".to_string(), json!(histogram.len()));
    Value::Object(object)
}

/// `streaming`, `micro-batch:100ms`: as `--delivery` takes it.
pub fn delivery_name(delivery: Delivery) -> String {
    match delivery {
        Delivery::Streaming => "streaming".to_string(),
        Delivery::MicroBatch(interval) => {
            let us = interval.as_micros();
            let interval = if us % 1_000_000 == 0 {
                format!("{}s", us / 1_000_000)
            } else if us % 1000 == 0 {
                format!("{}ms", us / 1000)
            } else {
                format!("{us}us")
            };
            format!("micro-batch:{interval}")
        }
    }
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// `1234567` → `1,234,567`.
fn grouped(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Report {
    /// Messages verified per second, over the measured part of the run.
    pub fn throughput_msgs_per_s(&self) -> f64 {
        let measured = self.messages_verified.saturating_sub(self.warmup_messages);
        per_second(measured as f64, self.duration)
    }

    /// Value bytes verified per second, in MB (10^6 bytes).
    pub fn throughput_mb_per_s(&self) -> f64 {
        self.throughput_msgs_per_s() * self.message_size_bytes as f64 / 1e6
    }

    /// Why the run failed; empty when it passed.
    pub fn problems(&self) -> Vec<String> {
        let v = &self.violations;
        let mut problems = Vec::new();
        for (count, what) in [
            (v.lost, "lost (acknowledged, never consumed)"),
            (v.duplicated, "duplicated"),
            (v.reordered, "reordered"),
            (v.corrupt, "corrupt"),
            (v.offset_violations, "out of offset order (offsets must be dense and increasing)"),
        ] {
            if count > 0 {
                problems.push(format!("{} message(s) {what}", grouped(count)));
            }
        }
        problems.extend(self.samples.iter().map(|s| format!("e.g. {s}")));
        problems.extend(self.errors.iter().cloned());
        if problems.is_empty() && self.messages_acked != self.messages_sent {
            problems.push(format!(
                "{} message(s) sent but never acknowledged",
                grouped(self.messages_sent - self.messages_acked)
            ));
        }
        problems
    }

    /// The results as JSON. Keys are stable; later versions add keys, never rename them.
    pub fn json(&self) -> Value {
        json!({
            "scenario": self.scenario.name(),
            "producers": self.producers,
            "consumers": self.consumers,
            "partitions": self.partitions,
            "rate_msgs_per_s": self.pace.msgs_per_s(),
            "delivery": delivery_name(self.delivery),
            "message_size_bytes": self.message_size_bytes,
            "batch_records": self.batch_records,
            "in_flight": self.in_flight,
            "segment_size_bytes": self.segment_size_bytes,
            "segment_preparation": self.segment_preparation.name(),
            "durability": self.durability.name(),
            "io_backend": self.io_backend.name(),
            "shards": self.shards,
            "messages_sent": self.messages_sent,
            "messages_acked": self.messages_acked,
            "messages_verified": self.messages_verified,
            "lost": self.violations.lost,
            "duplicated": self.violations.duplicated,
            "reordered": self.violations.reordered,
            "corrupt": self.violations.corrupt,
            "offset_violations": self.violations.offset_violations,
            "errors": self.errors,
            "passed": self.problems().is_empty(),
            "warmup_messages": self.warmup_messages,
            "warmup_s": round3(self.warmup.as_secs_f64()),
            "duration_s": round3(self.duration.as_secs_f64()),
            "produce_duration_s": round3(self.produce_duration.as_secs_f64()),
            "throughput_msgs_per_s": round3(self.throughput_msgs_per_s()),
            "throughput_mb_per_s": round3(self.throughput_mb_per_s()),
            "publish_latency_us": latency_json(&self.publish_latency),
            "send_lateness_us": latency_json(&self.send_lateness),
            "end_to_end_latency_us": latency_json(&self.end_to_end_latency),
            "dir": self.dir.as_ref().map(|d| d.display().to_string()),
        })
    }

    /// The human-readable summary.
    pub fn table(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_table(&mut out);
        out
    }

    fn write_table(&self, out: &mut String) -> std::fmt::Result {
        writeln!(
            out,
            "tidelog loadgen: {} · {} producer(s) · {} consumer(s) · {} partition(s) · {}-byte messages",
            self.scenario.name(),
            self.producers,
            self.consumers,
            self.partitions,
            self.message_size_bytes
        )?;
        writeln!(
            out,
            "durability {} · io {} · {} shard(s) · batch {} · in-flight {} · segments {} B, {} · {:.2} s ({:.2} s producing)",
            self.durability,
            self.io_backend,
            self.shards,
            self.batch_records,
            self.in_flight,
            self.segment_size_bytes,
            self.segment_preparation,
            self.duration.as_secs_f64(),
            self.produce_duration.as_secs_f64()
        )?;
        match self.pace.msgs_per_s() {
            Some(rate) => write!(
                out,
                "open loop at {} msgs/s (latency from the scheduled send)",
                grouped(rate.round() as u64)
            )?,
            None => write!(out, "closed loop (--max)")?,
        }
        writeln!(out, " · delivery {}", delivery_name(self.delivery))?;
        if self.warmup_messages > 0 {
            writeln!(
                out,
                "warm-up        {} messages in {:.2} s, not measured",
                grouped(self.warmup_messages),
                self.warmup.as_secs_f64()
            )?;
        }
        if let Some(dir) = &self.dir {
            writeln!(out, "data kept in {}", dir.display())?;
        }
        writeln!(out)?;
        writeln!(
            out,
            "throughput     {} msgs/s   {:.1} MB/s",
            grouped(self.throughput_msgs_per_s().round() as u64),
            self.throughput_mb_per_s()
        )?;
        write!(out, "\n{:<14}", "latency (µs)")?;
        for (_, _, heading) in PERCENTILES {
            write!(out, "{heading:>10}")?;
        }
        writeln!(out, "{:>10}", "max")?;
        let mut rows =
            vec![("publish", &self.publish_latency), ("end-to-end", &self.end_to_end_latency)];
        if self.pace.msgs_per_s().is_some() {
            // Open loop: how much of publish latency passed before the append began.
            rows.insert(0, ("send lateness", &self.send_lateness));
        }
        for (name, histogram) in rows {
            write!(out, "{name:<14}")?;
            match percentiles_us(histogram) {
                Some(values) => {
                    for (_, value) in values {
                        write!(out, "{value:>10.1}")?;
                    }
                    writeln!(out)?;
                }
                None => writeln!(out, "{:>10}", "—")?,
            }
        }
        writeln!(out)?;
        writeln!(
            out,
            "messages       sent {} · acknowledged {} · verified {}",
            grouped(self.messages_sent),
            grouped(self.messages_acked),
            grouped(self.messages_verified)
        )?;
        let v = &self.violations;
        writeln!(
            out,
            "violations     lost {} · duplicated {} · reordered {} · corrupt {} · offset {}",
            v.lost, v.duplicated, v.reordered, v.corrupt, v.offset_violations
        )?;
        let problems = self.problems();
        writeln!(out, "result         {}", if problems.is_empty() { "PASSED" } else { "FAILED" })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_digits() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1234567), "1,234,567");
    }

    #[test]
    fn names_deliveries_as_the_flag_takes_them() {
        for name in ["streaming", "micro-batch:100ms", "micro-batch:2s", "micro-batch:250us"] {
            assert_eq!(delivery_name(name.parse().unwrap()), name);
        }
    }
}
