//! The processing stage, on its own thread so wasm calls never block the async executor:
//! batches in, late events split off, plugins run, watermark advanced, work out to the sinks.
//! Plugin swaps are applied here, between batches, so no batch is lost or seen twice.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::sink_stage::SinkWork;
use crate::metrics::Metrics;
use crate::plugin::{Control, PluginSet, PluginStatus, batch::encode_batch};
use crate::sink::DeadLetter;
use crate::source::SourceMsg;

/// Event-time settings of the processor.
#[derive(Debug, Clone, Copy)]
pub struct EventTime {
    /// Watermark lag behind the newest event.
    pub allowed_lateness_ms: i64,
    /// Wall time without input after which the watermark follows the wall clock.
    pub idle_advance: Duration,
}

/// How the processor ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The source ran out: every window was closed.
    Exhausted,
    /// Stopped early: open windows stay in plugin state.
    Stopped,
}

/// The processor's state.
pub struct Processor {
    pub(crate) plugins: PluginSet,
    pub(crate) event_time: EventTime,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) state_dir: Option<PathBuf>,
    watermark: i64,
    max_event_ms: i64,
    last_input: Instant,
    /// Records (valid and invalid) received from the source since its start: the position
    /// saved with plugin state, so a restart resumes instead of counting records twice.
    records: u64,
    /// Identifies the source the position belongs to.
    source_id: String,
    /// Plugins refused only because another file still provides their name, by name: they go
    /// live when that file is removed (a deploy that adds the new file, then deletes the old).
    parked: std::collections::HashMap<String, crate::plugin::Prepared>,
}

/// The source position saved beside plugin state.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct SourcePosition {
    /// Which source (kind and identity).
    pub source: String,
    /// Records received from it.
    pub records: u64,
}

/// File name of the saved source position in the state folder.
pub const POSITION_FILE: &str = "source.position";

impl Processor {
    /// A processor over `plugins`.
    pub fn new(
        plugins: PluginSet,
        event_time: EventTime,
        metrics: Arc<Metrics>,
        state_dir: Option<PathBuf>,
        position: SourcePosition,
    ) -> Self {
        Processor {
            plugins,
            event_time,
            metrics,
            state_dir,
            watermark: i64::MIN,
            max_event_ms: i64::MIN,
            last_input: Instant::now(),
            records: position.records,
            source_id: position.source,
            parked: std::collections::HashMap::new(),
        }
    }

    /// Runs until the input channel closes or the source says it is exhausted.
    pub fn run(
        mut self,
        mut input: mpsc::Receiver<SourceMsg>,
        mut control: mpsc::Receiver<Control>,
        output: mpsc::Sender<SinkWork>,
    ) -> (Ending, Vec<PluginStatus>) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => rt,
            Err(error) => {
                tracing::error!(%error, "processor cannot start its receive loop");
                return (Ending::Stopped, self.plugins.status());
            }
        };
        enum Next {
            Input(Option<SourceMsg>),
            Control(Control),
            ControlClosed,
            Idle,
        }
        let mut control_open = true;
        let ending = loop {
            let idle = self.event_time.idle_advance;
            let next = rt.block_on(async {
                tokio::select! {
                    biased;
                    c = control.recv(), if control_open => match c {
                        Some(c) => Next::Control(c),
                        None => Next::ControlClosed,
                    },
                    m = tokio::time::timeout(idle, input.recv()) => match m {
                        Ok(m) => Next::Input(m),
                        Err(_) => Next::Idle,
                    },
                }
            });
            let work = match next {
                Next::Control(c) => self.apply(c),
                Next::Input(Some(SourceMsg::Batch { events, dead })) => self.process(events, dead),
                Next::Input(Some(SourceMsg::Exhausted)) => {
                    // No event will ever arrive: close every window.
                    let work = self.tick(i64::MAX);
                    if output.blocking_send(work).is_err() {
                        break Ending::Stopped;
                    }
                    break Ending::Exhausted;
                }
                Next::Input(None) => break Ending::Stopped,
                Next::ControlClosed => {
                    control_open = false;
                    continue;
                }
                Next::Idle => self.idle_advance(),
            };
            if let Some(work) = work.nonempty()
                && output.blocking_send(work).is_err()
            {
                break Ending::Stopped;
            }
            // Idle time counts from when the processor was ready for input again, not from
            // when it last received some (it may have waited on the sinks meanwhile).
            self.last_input = Instant::now();
        };
        self.persist_state();
        (ending, self.plugins.status())
    }

    fn apply(&mut self, control: Control) -> SinkWork {
        let mut work = SinkWork::default();
        match control {
            Control::Install(prepared) => {
                let file = prepared.path.display().to_string();
                match self.plugins.install(*prepared, Instant::now()) {
                    Ok(done) => {
                        Metrics::add(&self.metrics.plugin_loads, 1);
                        match &done.replaced {
                            Some(old) => {
                                tracing::info!(plugin = %done.name, file, from = %old, restored = done.restored, "plugin swapped")
                            }
                            None => tracing::info!(plugin = %done.name, file, "plugin loaded"),
                        }
                        work.tables = done.tables;
                    }
                    Err(crate::plugin::InstallError::Parked {
                        name,
                        other,
                        prepared,
                    }) => {
                        tracing::warn!(file, plugin = %name, other = %other,
                            "plugin {name} is already loaded from another file; this one goes live when that file is removed");
                        self.parked.insert(name, *prepared);
                        Metrics::add(&self.metrics.plugins_parked, 1);
                    }
                    Err(error) => {
                        Metrics::add(&self.metrics.plugin_rejections, 1);
                        tracing::error!(file, %error, "plugin refused; the previous version (if any) keeps running");
                    }
                }
            }
            Control::Remove(path) => {
                self.parked.retain(|_, p| p.path != path);
                if let Some(name) = self.plugins.remove_path(&path) {
                    tracing::info!(plugin = %name, file = %path.display(), "plugin unloaded");
                    if let Some(next) = self.parked.remove(&name) {
                        return self.apply(Control::Install(Box::new(next)));
                    }
                }
            }
        }
        self.metrics.plugins_loaded.store(
            self.plugins.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        work
    }

    fn process(
        &mut self,
        events: Vec<crate::event::ClickEvent>,
        mut dead: Vec<DeadLetter>,
    ) -> SinkWork {
        self.records += (events.len() + dead.len()) as u64;
        // Events behind the watermark arrive after their windows closed: dead-letter them.
        let watermark = self.watermark;
        let (on_time, late): (Vec<_>, Vec<_>) =
            events.into_iter().partition(|e| e.time_ms >= watermark);
        Metrics::add(&self.metrics.events_late, late.len() as u64);
        dead.extend(late.into_iter().map(|e| DeadLetter {
            reason: "late".into(),
            detail: format!(
                "event time {} is behind the watermark {}",
                e.time_ms, watermark
            ),
            origin: "processor".into(),
            payload: crate::event::encode(&e),
        }));
        let mut work = SinkWork {
            dead,
            ..SinkWork::default()
        };
        if !on_time.is_empty() {
            let batch = encode_batch(&on_time);
            let out = self.plugins.process(&batch, Instant::now());
            Metrics::add(&self.metrics.events_processed, on_time.len() as u64);
            work.alerts = out.alerts;
            work.rows = out.rows;
            self.max_event_ms = on_time
                .iter()
                .map(|e| e.time_ms)
                .fold(self.max_event_ms, i64::max);
            work.events = on_time;
            let next = self
                .max_event_ms
                .saturating_sub(self.event_time.allowed_lateness_ms);
            if next > self.watermark {
                work.merge(self.tick(next));
            }
        }
        work
    }

    fn idle_advance(&mut self) -> SinkWork {
        if self.max_event_ms == i64::MIN {
            return SinkWork::default();
        }
        // No input for a while: let event time follow the wall clock so windows still close.
        let idle_ms = self.last_input.elapsed().as_millis() as i64;
        let next = self
            .max_event_ms
            .saturating_add(idle_ms)
            .saturating_sub(self.event_time.allowed_lateness_ms);
        if next > self.watermark {
            self.tick(next)
        } else {
            SinkWork::default()
        }
    }

    fn tick(&mut self, watermark: i64) -> SinkWork {
        self.watermark = watermark;
        let out = self.plugins.tick(watermark, Instant::now());
        SinkWork {
            alerts: out.alerts,
            rows: out.rows,
            ..SinkWork::default()
        }
    }

    fn persist_state(&mut self) {
        let Some(dir) = &self.state_dir else { return };
        if let Err(error) = std::fs::create_dir_all(dir) {
            tracing::error!(dir = %dir.display(), %error, "cannot create the plugin state folder; state is not kept");
            return;
        }
        let position = SourcePosition {
            source: self.source_id.clone(),
            records: self.records,
        };
        let path = dir.join(POSITION_FILE);
        let tmp = dir.join(format!(".{POSITION_FILE}.tmp"));
        let json = serde_json::to_vec(&position).unwrap_or_default();
        match std::fs::write(&tmp, json).and_then(|()| std::fs::rename(&tmp, &path)) {
            Ok(()) => {
                tracing::info!(source = %position.source, records = position.records, "source position saved")
            }
            Err(error) => tracing::error!(%error, "cannot save the source position"),
        }
        for (name, state) in self.plugins.snapshots(Instant::now()) {
            let path = dir.join(format!("{name}.state"));
            let tmp = dir.join(format!(".{name}.state.tmp"));
            // Write then rename, so a crash never leaves a torn snapshot.
            match std::fs::write(&tmp, &state).and_then(|()| std::fs::rename(&tmp, &path)) {
                Ok(()) => {
                    tracing::info!(plugin = %name, bytes = state.len(), file = %path.display(), "plugin state saved")
                }
                Err(error) => tracing::error!(plugin = %name, %error, "cannot save plugin state"),
            }
        }
    }
}
