//! Per-sink meters: rows written, write latency, retries and refusals of each destination
//! (`raw`, `aggregates`, `alerts`, `dead_letters`, `routed`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// One sink's meters.
#[derive(Debug)]
pub struct SinkMeter {
    /// Records it accepted.
    pub written: AtomicU64,
    /// Wall time of each successful write (retries included), seconds.
    pub write_seconds: Histogram,
    /// Writes retried after a transient failure.
    pub retries: AtomicU64,
    /// Records it refused for good (they became dead letters).
    pub rejected: AtomicU64,
}

impl Default for SinkMeter {
    fn default() -> Self {
        SinkMeter {
            written: AtomicU64::new(0),
            // 100 µs .. ~100 s: an in-process file write to a long outage.
            write_seconds: Histogram::new(exponential_buckets(1e-4, 2.0, 21)),
            retries: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        }
    }
}

impl SinkMeter {
    /// A write of `records` that took `took`.
    pub fn wrote(&self, records: u64, took: Duration) {
        self.written.fetch_add(records, Ordering::Relaxed);
        self.write_seconds.observe(took.as_secs_f64());
    }
}

/// Every sink's meters, by sink name.
#[derive(Debug, Default)]
pub struct SinkMeters {
    meters: Mutex<BTreeMap<&'static str, Arc<SinkMeter>>>,
}

impl SinkMeters {
    /// The meter of sink `name`, created on first use.
    pub fn meter(&self, name: &'static str) -> Arc<SinkMeter> {
        let mut map = self.meters.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(map.entry(name).or_default())
    }

    /// Every sink's meter, by name.
    pub fn all(&self) -> Vec<(&'static str, Arc<SinkMeter>)> {
        let map = self.meters.lock().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(n, m)| (*n, Arc::clone(m))).collect()
    }
}
