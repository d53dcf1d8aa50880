//! Supervision of one plugin: restart after a trap from the last snapshot plus a replay of the
//! calls made since (so the restarted state is exactly the state before the failed call),
//! quarantine with exponential backoff after repeated failures, periodic snapshots. Failures
//! here never reach the other plugins.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::bindings::{ClickBatch, Output};
use super::component::PluginModule;
use super::instance::{CallError, Instance};
use crate::metrics::PluginMeter;

/// How a plugin is supervised.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Consecutive failures before quarantine.
    pub max_failures: u32,
    /// First quarantine length; doubles with each further quarantine.
    pub backoff: Duration,
    /// Longest quarantine.
    pub max_backoff: Duration,
    /// How often state is snapshotted for restarts.
    pub snapshot_interval: Duration,
    /// Most events kept for replay since the last snapshot; past it a snapshot is taken early.
    pub max_journal_events: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_failures: 3,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            snapshot_interval: Duration::from_secs(5),
            max_journal_events: 1 << 18,
        }
    }
}

/// Counters for one plugin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotStats {
    /// Events the plugin processed successfully.
    pub events: u64,
    /// Calls that failed (errors and traps).
    pub failures: u64,
    /// Instances restarted after a trap.
    pub restarts: u64,
    /// Times it was quarantined.
    pub quarantines: u64,
    /// Events it missed while failing or quarantined.
    pub skipped_events: u64,
    /// Restarts whose replay since the snapshot could not be completed (the state then lacks
    /// the calls after the snapshot; logged as such).
    pub incomplete_replays: u64,
}

/// What happened to one call.
#[derive(Debug)]
pub enum Outcome {
    /// It worked.
    Done(Output),
    /// The plugin is quarantined; it did not see the input.
    Skipped,
    /// The call failed; the error was logged and counted.
    Failed(CallError),
}

/// One supervised plugin.
pub struct Slot {
    module: PluginModule,
    settings: String,
    instance: Option<Instance>,
    snapshot: Option<Vec<u8>>,
    last_snapshot: Instant,
    /// The successful calls since `snapshot` was taken (since the instance started when there
    /// is none), replayed into a restarted instance. `None` once a call could not be kept.
    journal: Option<Vec<Journaled>>,
    /// Events in `journal`.
    journal_events: u64,
    consecutive_failures: u32,
    /// Which kind of call failed last: only a success of that kind ends a run of failures (a
    /// plugin whose every `process` fails is not made healthy by its `tick`s succeeding).
    failing: Option<CallKind>,
    quarantined_until: Option<Instant>,
    policy: Policy,
    stats: SlotStats,
    /// Where its calls, latencies and failures are exported (shared by every instance of the
    /// same version), and the memory this slot last added to it.
    meter: Option<Arc<PluginMeter>>,
    memory_reported: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(meter) = &self.meter {
            meter
                .memory_bytes
                .fetch_sub(self.memory_reported, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("plugin", &self.module.info.name)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Slot {
    /// Supervises `instance` (already initialised) of `module`.
    pub fn new(module: PluginModule, settings: String, instance: Instance, policy: Policy) -> Self {
        Slot {
            module,
            settings,
            instance: Some(instance),
            snapshot: None,
            last_snapshot: Instant::now(),
            journal: Some(Vec::new()),
            journal_events: 0,
            consecutive_failures: 0,
            failing: None,
            quarantined_until: None,
            policy,
            stats: SlotStats::default(),
            meter: None,
            memory_reported: 0,
        }
    }

    /// Exports this slot's calls into `meter`.
    pub fn set_meter(&mut self, meter: Arc<PluginMeter>) {
        meter.memory_cap_bytes.store(
            self.module.memory_cap_bytes(),
            std::sync::atomic::Ordering::Relaxed,
        );
        self.meter = Some(meter);
        self.report_memory();
    }

    /// Brings the memory gauge up to date with the live instance.
    fn report_memory(&mut self) {
        let Some(meter) = &self.meter else {
            return;
        };
        let now = self.instance.as_ref().map_or(0, Instance::memory_bytes);
        if now != self.memory_reported {
            use std::sync::atomic::Ordering::Relaxed;
            meter.memory_bytes.fetch_add(now, Relaxed);
            meter.memory_bytes.fetch_sub(self.memory_reported, Relaxed);
            self.memory_reported = now;
        }
    }

    /// Counts alerts and rows of its output the host refused.
    pub fn count_refused(&self, n: u64) {
        if let Some(meter) = &self.meter {
            PluginMeter::add(&meter.refused, n);
        }
    }

    /// The plugin's module (info, version).
    pub fn module(&self) -> &PluginModule {
        &self.module
    }

    /// The settings JSON it was initialised with.
    pub fn settings(&self) -> &str {
        &self.settings
    }

    /// Its counters.
    pub fn stats(&self) -> SlotStats {
        self.stats
    }

    /// Whether it is quarantined right now.
    pub fn is_quarantined(&self, now: Instant) -> bool {
        self.quarantined_until.is_some_and(|until| now < until)
    }

    /// Restores state into the live instance (used at load and after a swap). If the restore
    /// traps, the instance is replaced by a fresh one so the plugin starts empty, as logged.
    pub fn restore(&mut self, state: &[u8]) -> Result<(), CallError> {
        let instance = self.instance.as_mut().ok_or(CallError::Dead)?;
        match instance.restore(state) {
            Ok(()) => {
                self.snapshot = Some(state.to_vec());
                self.clear_journal();
                Ok(())
            }
            Err(error) => {
                if error.is_trap() {
                    self.instance = self.module.instantiate(&self.settings).ok();
                }
                Err(error)
            }
        }
    }

    /// Records `state` as the last good snapshot without calling the plugin.
    /// The caller took `state` from this instance (a checkpoint), so it is the last good
    /// snapshot and nothing before it needs replaying.
    pub fn remember_snapshot(&mut self, state: Vec<u8>) {
        self.snapshot = Some(state);
        self.clear_journal();
    }

    /// Processes a batch of `events` events.
    pub fn process(&mut self, batch: &Arc<ClickBatch>, now: Instant) -> Outcome {
        let started = Instant::now();
        let outcome = self.call(now, CallKind::Process, |i| i.process(batch));
        if let (Some(meter), Outcome::Done(output)) = (&self.meter, &outcome) {
            meter.batch_seconds.observe(started.elapsed().as_secs_f64());
            PluginMeter::add(&meter.events, u64::from(batch.len));
            PluginMeter::add(&meter.alerts, output.alerts.len() as u64);
            PluginMeter::add(&meter.rows, output.rows.len() as u64);
        }
        match &outcome {
            Outcome::Done(_) => {
                self.stats.events += u64::from(batch.len);
                self.journal_events += u64::from(batch.len);
                self.record(Journaled::Process(Arc::clone(batch)));
                if self.journal_events > self.policy.max_journal_events {
                    self.take_snapshot(now);
                }
            }
            _ => self.stats.skipped_events += u64::from(batch.len),
        }
        outcome
    }

    /// Advances the watermark.
    pub fn tick(&mut self, watermark_ms: i64, now: Instant) -> Outcome {
        let outcome = self.call(now, CallKind::Tick, |i| i.tick(watermark_ms));
        if let (Some(meter), Outcome::Done(output)) = (&self.meter, &outcome) {
            PluginMeter::add(&meter.alerts, output.alerts.len() as u64);
            PluginMeter::add(&meter.rows, output.rows.len() as u64);
        }
        if matches!(outcome, Outcome::Done(_)) {
            self.record(Journaled::Tick(watermark_ms));
            // Snapshots cost in proportion to the state, so they are taken on a clock, not
            // after every tick that emitted: the journal makes a restart exact in between (a
            // restart from the snapshot alone would re-open windows already emitted and emit
            // them again with stale counts).
            if now.duration_since(self.last_snapshot) >= self.policy.snapshot_interval {
                self.take_snapshot(now);
            }
        }
        outcome
    }

    fn record(&mut self, call: Journaled) {
        if let Some(journal) = self.journal.as_mut() {
            journal.push(call);
        }
    }

    fn clear_journal(&mut self) {
        self.journal = Some(Vec::new());
        self.journal_events = 0;
    }

    /// Takes a fresh snapshot now (before a swap or at shutdown) and returns it. Falls back to
    /// the last good snapshot if the plugin cannot produce one.
    pub fn take_snapshot(&mut self, now: Instant) -> Option<Vec<u8>> {
        if let Some(instance) = self.instance.as_mut() {
            if let Some(meter) = &self.meter {
                PluginMeter::add(&meter.calls, 1);
            }
            match instance.snapshot() {
                Ok(bytes) => {
                    if let Some(meter) = &self.meter {
                        meter
                            .snapshot_bytes
                            .store(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                    self.snapshot = Some(bytes);
                    self.last_snapshot = now;
                    self.clear_journal();
                }
                Err(error) => {
                    tracing::warn!(plugin = %self.module.info.name, %error, "snapshot failed; keeping the previous one");
                    self.last_snapshot = now;
                    if error.is_trap() {
                        self.instance = None;
                    }
                    if self.journal_events > self.policy.max_journal_events {
                        // The journal cannot grow without bound: a restart from here on lacks
                        // the calls since the last good snapshot.
                        tracing::warn!(plugin = %self.module.info.name, events = self.journal_events, "replay journal over its cap with no fresh snapshot; dropped");
                        self.journal = None;
                        self.journal_events = 0;
                    }
                }
            }
        }
        self.snapshot.clone()
    }

    fn call(
        &mut self,
        now: Instant,
        kind: CallKind,
        f: impl FnOnce(&mut Instance) -> Result<Output, CallError>,
    ) -> Outcome {
        if self.is_quarantined(now) {
            return Outcome::Skipped;
        }
        if self.instance.is_none()
            && let Err(error) = self.restart()
        {
            self.fail(error.clone(), now);
            return Outcome::Failed(error);
        }
        let Some(instance) = self.instance.as_mut() else {
            return Outcome::Skipped;
        };
        if let Some(meter) = &self.meter {
            PluginMeter::add(&meter.calls, 1);
        }
        let result = f(instance);
        self.report_memory();
        match result {
            Ok(output) => {
                if self.failing.is_none_or(|k| k == kind) {
                    self.consecutive_failures = 0;
                    self.failing = None;
                }
                self.quarantined_until = None;
                Outcome::Done(output)
            }
            Err(error) => {
                if error.is_trap() {
                    self.instance = None;
                }
                self.failing = Some(kind);
                self.fail(error.clone(), now);
                Outcome::Failed(error)
            }
        }
    }

    /// A new instance from the same module and settings, with the last snapshot restored and
    /// the calls since replayed (their output was already delivered, so it is dropped).
    fn restart(&mut self) -> Result<(), CallError> {
        let plugin = &*self.module.info.name;
        let mut instance = self.module.instantiate(&self.settings)?;
        if let Some(state) = &self.snapshot
            && let Err(error) = instance.restore(state)
        {
            tracing::warn!(plugin, %error, "restore after restart failed; starting fresh");
            if error.is_trap() {
                instance = self.module.instantiate(&self.settings)?;
            }
            self.journal = None;
        }
        let replayed = match self.journal.as_deref() {
            Some(journal) => replay(&mut instance, journal),
            None => Err("no complete journal since the last snapshot".to_owned()),
        };
        if let Err(reason) = &replayed {
            self.stats.incomplete_replays += 1;
            tracing::warn!(
                plugin,
                reason,
                "restarted without replaying the calls since its last snapshot: windows emitted since may be emitted again with partial counts"
            );
            if instance.is_dead() {
                instance = self.module.instantiate(&self.settings)?;
                if let Some(state) = &self.snapshot {
                    let _ = instance.restore(state);
                }
            }
            // What the instance holds now is the snapshot (or nothing): start a new journal.
            self.journal = Some(Vec::new());
            self.journal_events = 0;
        }
        self.stats.restarts += 1;
        if let Some(meter) = &self.meter {
            PluginMeter::add(&meter.restarts, 1);
        }
        tracing::info!(
            plugin,
            restarts = self.stats.restarts,
            replayed = replayed.unwrap_or(0),
            "plugin instance restarted from its last snapshot"
        );
        self.instance = Some(instance);
        self.report_memory();
        Ok(())
    }

    fn fail(&mut self, error: CallError, now: Instant) {
        self.stats.failures += 1;
        if let Some(meter) = &self.meter {
            meter.failed(error.label());
        }
        self.consecutive_failures += 1;
        let plugin = &*self.module.info.name;
        if self.consecutive_failures < self.policy.max_failures {
            tracing::warn!(plugin, %error, kind = error.label(), consecutive = self.consecutive_failures, "plugin call failed; the batch is skipped for this plugin");
            self.report_memory();
            return;
        }
        let exponent = self.stats.quarantines.min(20) as u32;
        let backoff = self
            .policy
            .backoff
            .saturating_mul(1 << exponent)
            .min(self.policy.max_backoff);
        self.stats.quarantines += 1;
        if let Some(meter) = &self.meter {
            PluginMeter::add(&meter.quarantines, 1);
            let until = chrono::Utc::now().timestamp_millis() + backoff.as_millis() as i64;
            meter
                .quarantined_until_ms
                .fetch_max(until, std::sync::atomic::Ordering::Relaxed);
        }
        self.quarantined_until = Some(now + backoff);
        self.instance = None;
        tracing::error!(plugin, %error, kind = error.label(), backoff_ms = backoff.as_millis() as u64, "plugin quarantined after repeated failures; other plugins continue");
        self.report_memory();
    }
}

/// A successful call kept for replay. Batches are shared with the other plugins of the set.
#[derive(Debug, Clone)]
enum Journaled {
    Process(Arc<ClickBatch>),
    Tick(i64),
}

/// Replays `journal` into `instance`: the number of calls replayed, or why it stopped.
fn replay(instance: &mut Instance, journal: &[Journaled]) -> Result<usize, String> {
    for call in journal {
        let result = match call {
            Journaled::Process(batch) => instance.process(batch),
            Journaled::Tick(watermark_ms) => instance.tick(*watermark_ms),
        };
        result.map_err(|error| format!("replay failed: {error}"))?;
    }
    Ok(journal.len())
}

/// The calls that make up a plugin's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallKind {
    Process,
    Tick,
}
