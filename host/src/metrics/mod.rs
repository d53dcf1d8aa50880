//! Process-wide counters, shared by the pipeline stages and read by the status line, the
//! summary and the Prometheus export (`crate::observe`).

mod alert_log;
mod history;
mod plugin;
mod sink;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

pub use alert_log::{AlertLine, AlertLog, EntityCount, MinuteCount};
pub use history::{Change, History, Reload};
pub use plugin::{PluginMeter, PluginMeters};
pub use sink::{SinkMeter, SinkMeters};

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
    /// Of those, hot swaps (a new version replacing a live one).
    pub plugin_swaps: AtomicU64,
    /// Plugin files refused.
    pub plugin_rejections: AtomicU64,
    /// Plugin files waiting for another file with the same plugin name to be removed.
    pub plugins_parked: AtomicU64,
    /// Checkpoints of partitioned processing stored and committed.
    pub checkpoints: AtomicU64,
    /// Checkpoints that could not be stored or committed (the next owner resumes earlier).
    pub checkpoint_failures: AtomicU64,
    /// Units of output lost for good: a write failed that cannot succeed on a retry, and the
    /// pipeline keeps no checkpoints to read the input again from.
    pub output_lost: AtomicU64,
    /// Partition assignments received (a rebalance gives one per partition).
    pub partitions_assigned: AtomicU64,
    /// Alerts per detector.
    pub alerts_by_detector: Mutex<BTreeMap<String, u64>>,
    /// Dead letters written, by reason.
    pub dead_letters_by_reason: Mutex<BTreeMap<String, u64>>,
    /// Each plugin version's meters.
    pub plugins: std::sync::Arc<PluginMeters>,
    /// Each sink's meters.
    pub sinks: SinkMeters,
    /// Units of work queued for the sink stage (the backlog in front of the sinks).
    pub sink_backlog: AtomicU64,
    /// Unix time in ms of the last checkpoint stored (0: none yet).
    pub last_checkpoint_ms: AtomicI64,
    /// Watermark of each task (event time in ms), by task name.
    pub watermarks: Mutex<BTreeMap<String, i64>>,
    /// Records on the broker not yet read, by (topic, partition) of the Kafka consumer's
    /// assignment (the input and the internal topics), as of its last statistics.
    pub consumer_lag: Mutex<BTreeMap<(String, i32), i64>>,
    /// Source connected, sinks open and plugins loaded: the host is doing its job.
    pub ready: AtomicBool,
    /// The alerts delivered, as the dashboard shows them (bounded).
    pub alert_log: Mutex<AlertLog>,
    /// Plugin loads, swaps, refusals and unloads (bounded).
    pub plugin_history: Mutex<History>,
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

    /// Notes delivered alerts for the dashboard.
    pub fn log_alerts(&self, alerts: &[crate::alert::Alert]) {
        self.alert_log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(alerts);
    }

    /// Notes a plugin lifecycle event.
    pub fn plugin_event(&self, event: Reload) {
        self.plugin_history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event);
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

    /// Counts dead letters by reason.
    pub fn count_dead_letters<'a>(&self, reasons: impl Iterator<Item = &'a str>) {
        let mut map = self
            .dead_letters_by_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for r in reasons {
            match map.get_mut(r) {
                Some(n) => *n += 1,
                None => {
                    map.insert(r.to_owned(), 1);
                }
            }
        }
    }

    /// Dead letters by reason so far.
    pub fn dead_letters_by_reason(&self) -> BTreeMap<String, u64> {
        self.dead_letters_by_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records task `task`'s watermark.
    pub fn set_watermark(&self, task: &str, watermark_ms: i64) {
        let mut map = self.watermarks.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(task) {
            Some(w) => *w = watermark_ms,
            None => {
                map.insert(task.to_owned(), watermark_ms);
            }
        }
    }

    /// Forgets task `task` (its partition was revoked).
    pub fn drop_watermark(&self, task: &str) {
        let mut map = self.watermarks.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(task);
    }

    /// Replaces the consumer lag with the latest statistics' figures.
    pub fn set_consumer_lag(&self, lag: BTreeMap<(String, i32), i64>) {
        *self.consumer_lag.lock().unwrap_or_else(|p| p.into_inner()) = lag;
    }

    /// The consumer lag per (topic, partition).
    pub fn consumer_lag(&self) -> BTreeMap<(String, i32), i64> {
        self.consumer_lag
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every task's watermark.
    pub fn watermarks(&self) -> BTreeMap<String, i64> {
        self.watermarks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Alerts per detector so far.
    pub fn alerts_by_detector(&self) -> BTreeMap<String, u64> {
        self.alerts_by_detector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
