//! Per-plugin meters: what each plugin (by name and version) costs and produces, summed over
//! every instance of it (one per task), so the labels stay few whatever the partition count.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// One plugin version's meters.
#[derive(Debug)]
pub struct PluginMeter {
    /// Calls into the plugin (process, tick, snapshot, restore), successful or not.
    pub calls: AtomicU64,
    /// Wall time of each `process` call, seconds.
    pub batch_seconds: Histogram,
    /// Events it processed.
    pub events: AtomicU64,
    /// Alerts it emitted (before the host's checks).
    pub alerts: AtomicU64,
    /// Rows it emitted (before the host's checks).
    pub rows: AtomicU64,
    /// Alerts and rows the host refused (not fitting their table, over the output caps).
    pub refused: AtomicU64,
    /// Failed calls by kind (`error`, `deadline`, `memory`, `panic`, `trap`).
    failures: Mutex<BTreeMap<&'static str, u64>>,
    /// Instances restarted after a trap.
    pub restarts: AtomicU64,
    /// Times it was quarantined.
    pub quarantines: AtomicU64,
    /// Wall clock (ms since the epoch) its latest quarantine ends at (0: never quarantined).
    pub quarantined_until_ms: AtomicI64,
    /// Size of the latest snapshot any of its instances took, bytes.
    pub snapshot_bytes: AtomicU64,
    /// Linear memory its instances hold, bytes (summed over instances).
    pub memory_bytes: AtomicU64,
    /// The memory cap of one instance, bytes.
    pub memory_cap_bytes: AtomicU64,
}

impl Default for PluginMeter {
    fn default() -> Self {
        PluginMeter {
            calls: AtomicU64::new(0),
            // 10 µs .. ~5 s: a batch call is tens of microseconds to the deadline (500 ms).
            batch_seconds: Histogram::new(exponential_buckets(1e-5, 2.0, 20)),
            events: AtomicU64::new(0),
            alerts: AtomicU64::new(0),
            rows: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            failures: Mutex::new(BTreeMap::new()),
            restarts: AtomicU64::new(0),
            quarantines: AtomicU64::new(0),
            quarantined_until_ms: AtomicI64::new(0),
            snapshot_bytes: AtomicU64::new(0),
            memory_bytes: AtomicU64::new(0),
            memory_cap_bytes: AtomicU64::new(0),
        }
    }
}

impl PluginMeter {
    /// Counts a failed call of `kind`.
    pub fn failed(&self, kind: &'static str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(kind).or_default() += 1;
    }

    /// Failed calls by kind so far.
    pub fn failures(&self) -> BTreeMap<&'static str, u64> {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Every plugin version's meters, by (name, version). A version that is swapped out keeps
/// its meters, so its counts do not vanish from the export at a swap.
#[derive(Debug, Default)]
pub struct PluginMeters {
    meters: Mutex<BTreeMap<(String, String), Arc<PluginMeter>>>,
    /// The live version of each plugin name (absent once unloaded).
    live: Mutex<BTreeMap<String, String>>,
}

impl PluginMeters {
    /// The meter of `name` at `version`, created on first use.
    pub fn meter(&self, name: &str, version: &str) -> Arc<PluginMeter> {
        let mut map = self.meters.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            map.entry((name.to_owned(), version.to_owned()))
                .or_default(),
        )
    }

    /// Records that `version` of `name` is the one running now.
    pub fn set_live(&self, name: &str, version: &str) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.insert(name.to_owned(), version.to_owned());
    }

    /// Records that `name` is no longer loaded.
    pub fn unload(&self, name: &str) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.remove(name);
    }

    /// Every meter with whether its version is the live one, by (name, version).
    pub fn all(&self) -> Vec<((String, String), Arc<PluginMeter>, bool)> {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let map = self.meters.lock().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .map(|((name, version), meter)| {
                let is_live = live.get(name) == Some(version);
                ((name.clone(), version.clone()), Arc::clone(meter), is_live)
            })
            .collect()
    }
}
