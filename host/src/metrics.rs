//! Process-wide counters, shared by the pipeline stages and read by the status line and the
//! summary. Names here are the names metrics will be exported under.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters. All monotonic except `plugins_loaded`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Valid events read from the source.
    pub events_in: AtomicU64,
    /// Records rejected as invalid (dead-lettered).
    pub events_invalid: AtomicU64,
    /// Events behind the watermark (dead-lettered).
    pub events_late: AtomicU64,
    /// Events run through the plugins. With a Kafka source an event is counted once per key
    /// group it went through (each group's plugins see it once).
    pub events_processed: AtomicU64,
    /// Routed events that a key group had applied already (written again after a restart of
    /// the task that routed them) and so dropped.
    pub events_duplicate: AtomicU64,
    /// Records written to the internal topics (routed events and watermark markers).
    pub routed_records: AtomicU64,
    /// Their payload bytes (before compression): what the re-partitioning adds per event.
    pub routed_bytes: AtomicU64,
    /// New rows in the raw store.
    pub raw_rows: AtomicU64,
    /// Aggregate rows written.
    pub aggregate_rows: AtomicU64,
    /// Alerts published.
    pub alerts: AtomicU64,
    /// Dead letters written.
    pub dead_letters: AtomicU64,
    /// Sink writes retried.
    pub sink_retries: AtomicU64,
    /// Plugins loaded right now.
    pub plugins_loaded: AtomicU64,
    /// Successful hot swaps and loads.
    pub plugin_loads: AtomicU64,
    /// Plugin files refused.
    pub plugin_rejections: AtomicU64,
    /// Plugin files waiting for another file with the same plugin name to be removed.
    pub plugins_parked: AtomicU64,
    /// Checkpoints of partitioned processing stored and committed.
    pub checkpoints: AtomicU64,
    /// Checkpoints that could not be stored or committed (the next owner resumes earlier).
    pub checkpoint_failures: AtomicU64,
    /// Partition assignments received (a rebalance gives one per partition).
    pub partitions_assigned: AtomicU64,
    /// Alerts per detector.
    pub alerts_by_detector: Mutex<BTreeMap<String, u64>>,
}

impl Metrics {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Counts alerts per detector.
    pub fn count_alerts<'a>(&self, detectors: impl Iterator<Item = &'a str>) {
        let mut map = self
            .alerts_by_detector
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for d in detectors {
            *map.entry(d.to_owned()).or_default() += 1;
        }
    }

    /// Alerts per detector so far.
    pub fn alerts_by_detector(&self) -> BTreeMap<String, u64> {
        self.alerts_by_detector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
