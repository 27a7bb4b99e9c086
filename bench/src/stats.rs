//! Latency distributions and throughput, in the key names the load generator uses.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// A latency histogram in microseconds (1 µs to 60 s, 3 significant digits).
#[derive(Debug, Clone)]
pub struct Latency {
    histogram: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        // Bounds and precision are constants within hdrhistogram's limits.
        let histogram =
            Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds");
        Self { histogram }
    }
}

impl Latency {
    /// Record one latency.
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).clamp(1, 60_000_000);
        // In bounds by the clamp.
        let _ = self.histogram.record(micros);
    }

    /// Merge another histogram into this one.
    pub fn merge(&mut self, other: &Latency) {
        let _ = self.histogram.add(&other.histogram);
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The value at a quantile, in µs.
    pub fn quantile_us(&self, quantile: f64) -> f64 {
        self.histogram.value_at_quantile(quantile) as f64
    }

    /// `{p50, p90, p99, p999, p9999, max}` in µs.
    pub fn to_json(&self) -> Value {
        json!({
            "p50": self.quantile_us(0.5),
            "p90": self.quantile_us(0.9),
            "p99": self.quantile_us(0.99),
            "p999": self.quantile_us(0.999),
            "p9999": self.quantile_us(0.9999),
            "max": self.histogram.max() as f64,
        })
    }
}

/// What one side of a case measured.
#[derive(Debug, Clone, Default)]
pub struct Measurement {
    /// Operations (appends, or raw writes) per second.
    pub msgs_per_s: f64,
    /// Payload megabytes (10^6 bytes) per second.
    pub mb_per_s: f64,
    /// Latency of each operation, when measured.
    pub latency: Option<Latency>,
    /// Other figures worth reporting (e.g. the engine's bytes per fdatasync).
    pub notes: Vec<(String, f64)>,
}

impl Measurement {
    /// Throughput from a count, payload bytes and elapsed time.
    pub fn throughput(ops: u64, bytes: u64, elapsed: Duration) -> Self {
        let secs = elapsed.as_secs_f64().max(1e-9);
        Self {
            msgs_per_s: ops as f64 / secs,
            mb_per_s: bytes as f64 / secs / 1e6,
            latency: None,
            notes: Vec::new(),
        }
    }

    /// As JSON: `msgs_per_s`, `mb_per_s`, `latency_us` (if any) and the notes.
    pub fn to_json(&self) -> Value {
        let mut object = serde_json::Map::new();
        object.insert("msgs_per_s".into(), json!(self.msgs_per_s));
        object.insert("mb_per_s".into(), json!(self.mb_per_s));
        if let Some(latency) = &self.latency {
            object.insert("latency_us".into(), latency.to_json());
        }
        for (name, value) in &self.notes {
            object.insert(name.clone(), json!(value));
        }
        Value::Object(object)
    }
}
