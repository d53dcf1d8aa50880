//! Replaying recorded events through plugins in event time, as fast as the machine allows,
//! and scoring the detectors' alerts against ground-truth labels (`clickwatch replay`).
//!
//! Replay runs the live pipeline's task code ([`Task`]) on a virtual clock: the same watermark
//! (newest event time less the allowed lateness, in steps), the same ticks, late events split
//! off, a final tick at `i64::MAX` closing every window. There are no sinks: alerts are
//! collected in memory for [`score`]. So a backtest shows what production would have raised.

pub mod score;
mod table;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use score::{
    DEFAULT_GRACE_MS, DetectorScore, KIND_ALIASES, KindScore, Report, kind_matches, score,
};

use crate::alert::Alert;
use crate::event::{ClickEvent, decode};
use crate::metrics::Metrics;
use crate::pipeline::{EventTime, Role, Task};
use crate::plugin::{
    InstallError, Limits, PluginKind, PluginSet, PluginStatus, Policy, PrepareError, Runtime,
    RuntimeError, plugin_files, prepare,
};

/// Why a replay could not run, naming the file or folder at fault.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The plugin folder cannot be listed.
    #[error("cannot read plugin folder {}: {source}", path.display())]
    PluginDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The folder holds no `.wasm` file.
    #[error("no plugins (*.wasm) in {}", .0.display())]
    NoPlugins(PathBuf),
    /// A plugin file was refused.
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    /// A plugin could not join the set (name or table clash).
    #[error("plugin file {}: {source}", path.display())]
    Install {
        /// The file.
        path: PathBuf,
        /// Why.
        source: InstallError,
    },
    /// The wasm runtime could not start.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The settings file is unreadable or not TOML.
    #[error("settings file {}: {message}", path.display())]
    Settings {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The events file cannot be read.
    #[error("events file {}: {source}", path.display())]
    Events {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Plugin settings by plugin name, as JSON strings.
#[derive(Debug, Clone, Default)]
pub struct PluginSettings(BTreeMap<String, String>);

impl PluginSettings {
    /// Reads a TOML file whose `[plugins.settings.<name>]` tables (the host config's layout, so
    /// a pipeline config works as is) or `[settings.<name>]` tables are the plugins' settings.
    pub fn from_file(path: &Path) -> Result<Self, ReplayError> {
        Self::from_table(path, &read_table(path)?)
    }

    fn from_table(path: &Path, table: &toml::Table) -> Result<Self, ReplayError> {
        let fail = |message: String| ReplayError::Settings {
            path: path.to_owned(),
            message,
        };
        let settings = table
            .get("plugins")
            .and_then(|p| p.get("settings"))
            .or_else(|| table.get("settings"));
        let mut out = BTreeMap::new();
        if let Some(settings) = settings {
            let Some(settings) = settings.as_table() else {
                return Err(fail("`settings` must be a table of tables".into()));
            };
            for (name, value) in settings {
                let json = serde_json::to_string(value).map_err(|e| fail(e.to_string()))?;
                out.insert(name.clone(), json);
            }
        }
        Ok(PluginSettings(out))
    }

    /// Settings JSON for `plugin` (`{}` when none given).
    pub fn json(&self, plugin: &str) -> String {
        self.0.get(plugin).cloned().unwrap_or_else(|| "{}".into())
    }

    /// Sets the settings of `plugin`.
    pub fn set(&mut self, plugin: &str, json: impl Into<String>) {
        self.0.insert(plugin.to_owned(), json.into());
    }
}

fn read_table(path: &Path) -> Result<toml::Table, ReplayError> {
    let fail = |message: String| ReplayError::Settings {
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    toml::from_str(&text).map_err(|e| fail(e.to_string()))
}

/// What a replay takes from a TOML file (a pipeline config, or a settings file), read once:
/// the plugin settings, and the event time of its `[pipeline]` table, so a replay judges
/// lateness and ticks as that pipeline does (the defaults when it has none).
pub fn read_config(path: &Path) -> Result<(PluginSettings, EventTime), ReplayError> {
    let table = read_table(path)?;
    let settings = PluginSettings::from_table(path, &table)?;
    let Some(pipeline) = table.get("pipeline") else {
        return Ok((settings, EventTime::default()));
    };
    let fail = |message: String| ReplayError::Settings {
        path: path.to_owned(),
        message,
    };
    let p: crate::config::PipelineConfig = pipeline
        .clone()
        .try_into()
        .map_err(|e| fail(format!("[pipeline]: {e}")))?;
    crate::config::validate_pipeline(&p)
        .map_err(|(key, message)| fail(format!("{key}: {message}")))?;
    Ok((settings, EventTime::of(&p)))
}

/// Limits for replay: the live defaults, but a more generous call deadline, because a replay
/// is offline and its result must not depend on how busy the machine happens to be.
pub fn replay_limits() -> Limits {
    Limits {
        deadline: Duration::from_secs(2),
        ..Limits::default()
    }
}

/// Loads every plugin file in `dir` into a new set. Returns the set and the names of the
/// detectors in it.
pub fn load_plugins(
    runtime: &Runtime,
    dir: &Path,
    settings: &PluginSettings,
) -> Result<(PluginSet, Vec<String>), ReplayError> {
    let files = plugin_files(dir).map_err(|source| ReplayError::PluginDir {
        path: dir.to_owned(),
        source,
    })?;
    if files.is_empty() {
        return Err(ReplayError::NoPlugins(dir.to_owned()));
    }
    // The plugins of a large batch run on every core, as in a pipeline with default workers
    // (the output does not depend on it).
    let mut set = PluginSet::new(Policy::default()).with_threads(crate::config::cores());
    let mut detectors = Vec::new();
    for file in files {
        let prepared = prepare(runtime, &file, &|name| settings.json(name))?;
        let info = prepared.module.info.clone();
        set.install(prepared, Instant::now())
            .map_err(|source| ReplayError::Install {
                path: file.clone(),
                source,
            })?;
        tracing::info!(plugin = %info.name, version = %info.version, file = %file.display(), "replay plugin loaded");
        if info.kind == PluginKind::Detector {
            detectors.push(info.name.clone());
        }
    }
    Ok((set, detectors))
}

/// How events are grouped into batches. Only the size: the plugins are ticked at the same
/// event times whatever the batches (see [`EventTime`]), as in the live pipeline.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Most events in one batch.
    pub max_events: usize,
}

impl Default for Batching {
    fn default() -> Self {
        Batching { max_events: 2_000 }
    }
}

/// What a replay saw and produced.
#[derive(Debug)]
pub struct Outcome {
    /// Every alert, in the order raised.
    pub alerts: Vec<Alert>,
    /// Events fed to the plugins.
    pub events: u64,
    /// Events behind the watermark when they came: not fed to the plugins, as the live
    /// pipeline dead-letters them.
    pub late: u64,
    /// Event time of the first and newest events, ms.
    pub first_ms: Option<i64>,
    /// See `first_ms`.
    pub last_ms: Option<i64>,
    /// Per-plugin counters (failures show up here).
    pub plugins: Vec<PluginStatus>,
}

impl Outcome {
    /// Simulated hours between the first and last events.
    pub fn hours(&self) -> f64 {
        match (self.first_ms, self.last_ms) {
            (Some(a), Some(b)) => (b - a).max(0) as f64 / 3_600_000.0,
            _ => 0.0,
        }
    }
}

/// Drives a plugin set over events pushed in input order, through the live pipeline's task
/// code on a virtual clock: the same watermark (newest event time less the allowed
/// lateness, in steps), the same ticks, late events split off. Only the wall clock is
/// missing, so nothing advances for want of input: the input's end closes every window.
pub struct Replayer {
    task: Task,
    event_time: EventTime,
    metrics: Metrics,
    batching: Batching,
    buffer: Vec<ClickEvent>,
    alerts: Vec<Alert>,
    pushed: u64,
    first_ms: Option<i64>,
    last_ms: Option<i64>,
}

impl std::fmt::Debug for Replayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replayer")
            .field("event_time", &self.event_time)
            .field("pushed", &self.pushed)
            .finish_non_exhaustive()
    }
}

impl Replayer {
    /// A replayer over `plugins` with the pipeline's default event-time settings.
    pub fn new(plugins: PluginSet, batching: Batching) -> Self {
        Self::with_event_time(plugins, batching, EventTime::default())
    }

    /// A replayer over `plugins` with the event-time settings of a pipeline.
    pub fn with_event_time(plugins: PluginSet, batching: Batching, event_time: EventTime) -> Self {
        Replayer {
            task: Task::new(plugins, Role::Direct),
            event_time,
            metrics: Metrics::default(),
            batching: Batching {
                max_events: batching.max_events.max(1),
            },
            buffer: Vec::new(),
            alerts: Vec::new(),
            pushed: 0,
            first_ms: None,
            last_ms: None,
        }
    }

    /// Feeds one event; a batch goes to the plugins when it is full.
    pub fn push(&mut self, event: ClickEvent) {
        self.first_ms = Some(
            self.first_ms
                .map_or(event.time_ms, |f| f.min(event.time_ms)),
        );
        self.last_ms = Some(self.last_ms.map_or(event.time_ms, |l| l.max(event.time_ms)));
        self.pushed += 1;
        self.buffer.push(event);
        if self.buffer.len() >= self.batching.max_events {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let events = std::mem::take(&mut self.buffer);
        let work = self
            .task
            .process(events, Vec::new(), None, self.event_time, &self.metrics);
        self.alerts.extend(work.alerts);
    }

    /// Events pushed so far (including the pending batch).
    pub fn events(&self) -> u64 {
        self.pushed
    }

    /// Flushes the last batch, closes every window and returns what happened.
    pub fn finish(mut self) -> Outcome {
        self.flush();
        let work = self.task.tick(i64::MAX);
        self.alerts.extend(work.alerts);
        let plugins = self.task.plugins.status();
        for p in &plugins {
            if p.stats.failures > 0 {
                tracing::warn!(plugin = %p.name, failures = p.stats.failures, "plugin calls failed during replay; its score is not trustworthy");
            }
        }
        let late = self
            .metrics
            .events_late
            .load(std::sync::atomic::Ordering::Relaxed);
        Outcome {
            alerts: self.alerts,
            events: self.pushed - late,
            late,
            first_ms: self.first_ms,
            last_ms: self.last_ms,
            plugins,
        }
    }
}

/// Counters of reading an events file.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReadStats {
    /// Lines that were not valid events (skipped).
    pub invalid: u64,
    /// Bytes read so far.
    pub bytes: u64,
}

/// Feeds every valid event of a JSON-lines file to `replayer`, calling `progress` with the
/// bytes read every 64 Ki events. Invalid lines are skipped and counted.
pub fn feed_file(
    path: &Path,
    replayer: &mut Replayer,
    mut progress: impl FnMut(ReadStats),
) -> Result<ReadStats, ReplayError> {
    let io = |source| ReplayError::Events {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::new();
    let mut stats = ReadStats::default();
    let mut n: u64 = 0;
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line).map_err(io)?;
        if read == 0 {
            break;
        }
        stats.bytes += read as u64;
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        match decode(text) {
            Ok(event) => replayer.push(event),
            Err(error) => {
                stats.invalid += 1;
                tracing::debug!(error = error.label(), "invalid event line skipped");
            }
        }
        n += 1;
        if n.is_multiple_of(65_536) {
            progress(stats);
        }
    }
    progress(stats);
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipeline_config_gives_replay_its_event_time_and_bad_values_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pipeline.toml");
        std::fs::write(
            &path,
            "[pipeline]\nallowed_lateness_ms = 2000\ntick_interval_ms = 500\n[plugins.settings.bot-detector]\nmax_events = 10\n",
        )
        .unwrap();
        let (settings, time) = read_config(&path).unwrap();
        assert_eq!(settings.json("bot-detector"), r#"{"max_events":10}"#);
        assert_eq!(
            (time.allowed_lateness_ms, time.tick_interval_ms),
            (2_000, 500)
        );
        std::fs::write(&path, "[pipeline]\ntick_interval_ms = 0\n").unwrap();
        let err = read_config(&path).unwrap_err().to_string();
        assert!(
            err.contains("pipeline.toml") && err.contains("pipeline.tick_interval_ms"),
            "{err}"
        );
    }

    #[test]
    fn settings_come_from_a_pipeline_config_or_a_settings_file() {
        let dir = tempfile::tempdir().unwrap();
        let pipeline = dir.path().join("pipeline.toml");
        std::fs::write(
            &pipeline,
            "[source]\ntype = \"file\"\n[plugins.settings.bot-detector]\nmax_events = 10\n",
        )
        .unwrap();
        let s = PluginSettings::from_file(&pipeline).unwrap();
        assert_eq!(s.json("bot-detector"), r#"{"max_events":10}"#);
        assert_eq!(s.json("other"), "{}");
        let plain = dir.path().join("settings.toml");
        std::fs::write(&plain, "[settings.funnel-drop]\nwindow_secs = 600\n").unwrap();
        let s = PluginSettings::from_file(&plain).unwrap();
        assert_eq!(s.json("funnel-drop"), r#"{"window_secs":600}"#);
        std::fs::write(&plain, "settings = 3\n").unwrap();
        let err = PluginSettings::from_file(&plain).unwrap_err().to_string();
        assert!(
            err.contains("settings.toml") && err.contains("table"),
            "{err}"
        );
    }
}
