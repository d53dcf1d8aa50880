//! The processing stage, on its own thread so wasm calls never block the async executor:
//! batches in, late events split off, plugins run, watermark advanced, work out to the sinks.
//! Plugin swaps are applied here, between batches, so no batch is lost or seen twice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::checkpoint::Barrier;
use super::clock::EventTime;
use super::partitions::Partitioned;
use super::sink_stage::SinkWork;
use super::task::{Role, Task};
use super::tasks::Tasks;
use crate::metrics::{Change, Metrics, Reload};
use crate::plugin::{Control, PluginSet, PluginStatus};
use crate::shuffle::Router;
use crate::sink::DeadLetter;
use crate::source::{BatchOrigin, PartitionState, SourceMsg, TopicPartition};

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
    pub(crate) event_time: EventTime,
    pub(crate) metrics: Arc<Metrics>,
    /// For an embedded source whose state is kept (`plugins.state_dir`): the source's
    /// identity. Its task is checkpointed every `checkpoint_interval` and at the end,
    /// through barriers in the sink queue.
    checkpointed_source: Option<String>,
    /// The tasks: one (key [`single`]) for the embedded sources, one per assigned partition
    /// of the input and of the internal topics for Kafka.
    tasks: Tasks,
    /// For a partitioned source: what its tasks are made from, where checkpoints go.
    partitioned: Option<Partitioned>,
    /// Until when the processor was blocked handing work to the sinks: time it could not
    /// read input does not count as the input being quiet.
    blocked_until: Instant,
    checkpoint_interval: Duration,
    last_checkpoint: Instant,
    /// When idle tasks were last looked for.
    last_idle_check: Instant,
    /// Plugins refused only because another file still provides their name, by name: they go
    /// live when that file is removed (a deploy that adds the new file, then deletes the old).
    parked: std::collections::HashMap<String, crate::plugin::Prepared>,
    /// False on every worker thread but the first: the same plugin change reaches each, and
    /// only one counts and reports it.
    primary: bool,
}

/// Task key of the embedded sources' only task: partition 0 of the embedded input.
fn single() -> TopicPartition {
    TopicPartition {
        topic: "embedded".into(),
        partition: 0,
    }
}

/// A hand-over to the sinks that took this long means the processor was held up by them.
const BLOCKED: Duration = Duration::from_millis(50);

impl Processor {
    /// A processor with one task over `plugins` (the embedded sources), resuming from
    /// `restored` if given. With `checkpoints` (the source's identity and how often), the
    /// task is checkpointed through barriers in the sink queue, and once more at the end.
    pub fn new(
        plugins: PluginSet,
        event_time: EventTime,
        metrics: Arc<Metrics>,
        checkpoints: Option<(String, Duration)>,
        restored: Option<&PartitionState>,
    ) -> Self {
        let mut processor = Self::empty(event_time, metrics);
        if let Some((source, interval)) = checkpoints {
            processor.checkpointed_source = Some(source);
            processor.checkpoint_interval = interval;
        }
        let task = match restored {
            Some(state) => {
                tracing::info!(
                    records = state.next_offset,
                    plugins = state.plugins.len(),
                    "resuming after the records the last run checkpointed"
                );
                Task::resumed(plugins, Role::Direct, state)
            }
            None => {
                let mut task = Task::new(plugins, Role::Direct);
                task.next_offset = Some(0);
                task
            }
        };
        processor.tasks.insert(single(), task);
        processor
    }

    /// A processor for a partitioned source: no task until a partition is assigned; input
    /// partitions route by `router`, each internal partition gets fresh instances of its key
    /// group's `template` plugins. Checkpoints (every `checkpoint_interval`, and on revoke) are
    /// barriers in the sink queue.
    pub fn partitioned(
        template: PluginSet,
        router: Router,
        event_time: EventTime,
        metrics: Arc<Metrics>,
        checkpoint_interval: Duration,
    ) -> Self {
        let mut processor = Self::empty(event_time, metrics);
        processor.partitioned = Some(Partitioned {
            template,
            router: Arc::new(router),
        });
        processor.checkpoint_interval = checkpoint_interval;
        processor
    }

    fn empty(event_time: EventTime, metrics: Arc<Metrics>) -> Self {
        Processor {
            event_time,
            metrics,
            checkpointed_source: None,
            tasks: Tasks::default(),
            partitioned: None,
            blocked_until: Instant::now(),
            checkpoint_interval: Duration::from_secs(5),
            last_checkpoint: Instant::now(),
            last_idle_check: Instant::now(),
            parked: std::collections::HashMap::new(),
            primary: true,
        }
    }

    /// This processor on another worker thread: it applies plugin changes without counting
    /// or reporting them (the primary does).
    pub fn secondary(mut self) -> Self {
        self.primary = false;
        self
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
                return (Ending::Stopped, self.status());
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
            // Wake for the idle advance or the next checkpoint, whichever is first: a quiet
            // input must not hold back the checkpoint of what was already processed.
            let idle = self.event_time.idle_advance;
            let wait = self.checkpoint_wait().map_or(idle, |due| due.min(idle));
            let next = rt.block_on(async {
                tokio::select! {
                    biased;
                    c = control.recv(), if control_open => match c {
                        Some(c) => Next::Control(c),
                        None => Next::ControlClosed,
                    },
                    m = tokio::time::timeout(wait, input.recv()) => match m {
                        Ok(m) => Next::Input(m),
                        Err(_) => Next::Idle,
                    },
                }
            });
            let mut work = match next {
                Next::Control(c) => self.apply(c),
                Next::Input(Some(SourceMsg::Batch { events, dead, from })) => {
                    self.process(events, dead, from)
                }
                Next::Input(Some(SourceMsg::Assign { at, restored })) => {
                    match &self.partitioned {
                        Some(p) => p.assign(&mut self.tasks, at, restored),
                        None => {
                            tracing::error!(partition = %at, "a partition was assigned to an unpartitioned pipeline")
                        }
                    }
                    SinkWork::default()
                }
                Next::Input(Some(SourceMsg::Revoke {
                    partitions,
                    checkpoint,
                    done,
                })) => {
                    let work = if checkpoint {
                        self.checkpoint(&partitions, true, Some(done))
                    } else {
                        Partitioned::drop_lost(&mut self.tasks, &partitions);
                        drop(done);
                        SinkWork::default()
                    };
                    for at in &partitions {
                        self.metrics.drop_watermark(&at.to_string());
                    }
                    if output.blocking_send(work).is_err() {
                        break Ending::Stopped;
                    }
                    continue;
                }
                Next::Input(Some(SourceMsg::Exhausted)) => {
                    // No event will ever arrive: close every window.
                    let mut work = SinkWork::default();
                    for task in self.tasks.map.values_mut() {
                        work.merge(task.tick(i64::MAX));
                    }
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
                Next::Idle => SinkWork::default(),
            };
            work.merge(self.idle_advance());
            if self.last_checkpoint.elapsed() >= self.checkpoint_interval {
                if self.partitioned.is_some() {
                    let partitions: Vec<TopicPartition> = self.tasks.map.keys().cloned().collect();
                    work.merge(self.checkpoint(&partitions, false, None));
                } else if self.checkpointed_source.is_some() {
                    work.barrier = self.barrier();
                }
            }
            if let Some(work) = work.nonempty() {
                let sent = Instant::now();
                if output.blocking_send(work).is_err() {
                    break Ending::Stopped;
                }
                // Idle time counts from when the processor was ready for input again, not
                // from when a task last received some (it may have waited on the sinks).
                if sent.elapsed() >= BLOCKED {
                    self.blocked_until = Instant::now();
                }
            }
        };
        // The last checkpoint goes behind everything else, so it is stored once the sinks
        // hold all of it.
        if let Some(barrier) = self.barrier() {
            let _ = output.blocking_send(SinkWork {
                barrier: Some(barrier),
                ..SinkWork::default()
            });
        }
        (ending, self.status())
    }

    /// How long until the next checkpoint is due (`None`: this pipeline keeps no checkpoints).
    fn checkpoint_wait(&self) -> Option<Duration> {
        (self.partitioned.is_some() || self.checkpointed_source.is_some()).then(|| {
            self.checkpoint_interval
                .saturating_sub(self.last_checkpoint.elapsed())
        })
    }

    /// Checkpoints the partition tasks of `partitions` (dropping them on revoke): see
    /// [`Partitioned::checkpoint`]. Without partitions there is nothing to store.
    fn checkpoint(
        &mut self,
        partitions: &[TopicPartition],
        drop: bool,
        done: Option<std::sync::mpsc::SyncSender<()>>,
    ) -> SinkWork {
        self.last_checkpoint = Instant::now();
        match &self.partitioned {
            Some(p) => p.checkpoint(&mut self.tasks, partitions, drop, done),
            None => {
                std::mem::drop(done);
                SinkWork::default()
            }
        }
    }

    /// A checkpoint of the embedded task, if state is kept and it moved since the last one.
    fn barrier(&mut self) -> Option<Barrier> {
        let source = self.checkpointed_source.clone()?;
        self.last_checkpoint = Instant::now();
        let at = single();
        let state = self.tasks.map.get_mut(&at)?.checkpoint(&at)?;
        Some(Barrier::new(source, vec![state]))
    }

    /// Counters of every plugin, summed over the tasks (including dropped ones).
    fn status(&self) -> Vec<PluginStatus> {
        let all = self.tasks.status();
        if all.is_empty()
            && let Some(p) = &self.partitioned
        {
            return p.template.status();
        }
        all.into_values().collect()
    }

    fn apply(&mut self, control: Control) -> SinkWork {
        let mut work = SinkWork::default();
        match control {
            Control::Install(prepared) => {
                work = self.install_reported(*prepared).0;
            }
            Control::Remove(path) => {
                self.parked.retain(|_, p| p.path != path);
                if let Some(next) = self.successor_of(&path) {
                    return self.promote(&path, next);
                }
                let version = self
                    .status()
                    .into_iter()
                    .find(|s| s.path == path)
                    .map(|s| s.version);
                let mut removed = None;
                if let Some(p) = &mut self.partitioned {
                    removed = p.template.remove_path(&path);
                }
                for task in self.tasks.map.values_mut() {
                    removed = task.plugins.remove_path(&path).or(removed);
                }
                if let Some(name) = removed
                    && self.primary
                {
                    tracing::info!(plugin = %name, file = %path.display(), "plugin unloaded");
                    self.metrics.plugin_event(Reload {
                        from: version,
                        ..Reload::now(Change::Unloaded, &name, &path.display().to_string())
                    });
                }
            }
        }
        let loaded = match &self.partitioned {
            Some(p) => p.template.len(),
            None => self
                .tasks
                .map
                .values()
                .next()
                .map_or(0, |t| t.plugins.len()),
        };
        if self.primary {
            self.metrics
                .plugins_loaded
                .store(loaded as u64, std::sync::atomic::Ordering::Relaxed);
        }
        work
    }

    /// Installs one prepared file into every task and reports it; returns the tables to
    /// create and whether the file went live.
    fn install_reported(&mut self, prepared: crate::plugin::Prepared) -> (SinkWork, bool) {
        let mut work = SinkWork::default();
        let file = prepared.path.display().to_string();
        let name = prepared.module.info.name.clone();
        let version = prepared.module.info.version.clone();
        let running = self.live_version(&name);
        let event = |change, reason: Option<String>| Reload {
            from: running.clone(),
            to: Some(version.clone()),
            reason,
            ..Reload::now(change, &name, &file)
        };
        match self.install(prepared) {
            Ok(done) if !self.primary => {
                work.tables = done.tables;
                return (work, true);
            }
            Ok(done) => {
                Metrics::add(&self.metrics.plugin_loads, 1);
                if done.replaced.is_some() {
                    Metrics::add(&self.metrics.plugin_swaps, 1);
                }
                self.metrics.plugin_event(match &done.replaced {
                    Some(_) => Reload {
                        restored: Some(done.restored),
                        ..event(Change::Swapped, None)
                    },
                    None => event(Change::Loaded, None),
                });
                match &done.replaced {
                    Some(old) => {
                        tracing::info!(plugin = %done.name, file, from = %old, restored = done.restored, "plugin swapped")
                    }
                    None => tracing::info!(plugin = %done.name, file, "plugin loaded"),
                }
                work.tables = done.tables;
                return (work, true);
            }
            Err(crate::plugin::InstallError::Parked {
                name,
                other,
                prepared,
            }) => {
                if self.primary {
                    tracing::warn!(file, plugin = %name, other = %other,
                        "plugin {name} is already loaded from another file; this one goes live when that file is removed");
                    Metrics::add(&self.metrics.plugins_parked, 1);
                    self.metrics.plugin_event(event(
                        Change::Parked,
                        Some(format!("{name} is live from {other}")),
                    ));
                }
                self.parked.insert(name, *prepared);
            }
            Err(error) if !self.primary => {
                tracing::debug!(file, %error, "plugin refused on a secondary worker")
            }
            Err(error) => {
                Metrics::add(&self.metrics.plugin_rejections, 1);
                self.metrics
                    .plugin_event(event(Change::Refused, Some(error.to_string())));
                match running {
                    Some(version) => {
                        tracing::error!(file, plugin = %name, running = %version, %error,
                        "plugin refused; version {version} keeps running")
                    }
                    None => tracing::error!(file, plugin = %name, %error,
                        "plugin refused; no version of it is running"),
                }
            }
        }
        (work, false)
    }

    /// The version of a plugin live now, if it is loaded.
    fn live_version(&self, name: &str) -> Option<String> {
        self.status()
            .into_iter()
            .find(|s| s.name == name)
            .map(|s| s.version)
    }

    /// The parked file waiting for the plugin loaded from `path`, taken out of the parking.
    fn successor_of(&mut self, path: &std::path::Path) -> Option<crate::plugin::Prepared> {
        let sets = self.partitioned.iter().map(|p| &p.template);
        let name = sets
            .chain(self.tasks.map.values().map(|t| &t.plugins))
            .find_map(|set| set.name_of_path(path))?;
        self.parked.remove(&name)
    }

    /// The live file of a plugin was removed while another file of the same plugin waited:
    /// the waiting file takes over as a swap (state carried, as for an overwritten file), not
    /// as an unload then a fresh load. If it is refused, the plugin is unloaded, since its
    /// file is gone.
    fn promote(&mut self, removed: &std::path::Path, next: crate::plugin::Prepared) -> SinkWork {
        let to = next.path.clone();
        if let Some(p) = &mut self.partitioned {
            p.template.repath(removed, &to);
        }
        for task in self.tasks.map.values_mut() {
            task.plugins.repath(removed, &to);
        }
        let (work, live) = self.install_reported(next);
        if live {
            return work;
        }
        let mut work = work;
        work.tables.extend(self.apply(Control::Remove(to)).tables);
        work
    }

    /// Installs a plugin into every task. The template (partitioned) or the only task decides
    /// whether it is accepted; every other task then gets its own fresh instance, swapped in
    /// with its own state carried over.
    fn install(
        &mut self,
        prepared: crate::plugin::Prepared,
    ) -> Result<crate::plugin::Installed, crate::plugin::InstallError> {
        let now = Instant::now();
        let Some(partitioned) = &mut self.partitioned else {
            return match self.tasks.map.values_mut().next() {
                Some(task) => task.plugins.install(prepared, now),
                None => Err(crate::plugin::InstallError::Unavailable(
                    "the pipeline has no plugin set to install into".into(),
                )),
            };
        };
        partitioned.install(&mut self.tasks, prepared, now)
    }

    fn process(
        &mut self,
        events: Vec<crate::event::ClickEvent>,
        dead: Vec<DeadLetter>,
        from: Option<BatchOrigin>,
    ) -> SinkWork {
        let records = (events.len() + dead.len()) as i64;
        let key = from.as_ref().map_or_else(single, BatchOrigin::task);
        let Some(task) = self.tasks.map.get_mut(&key) else {
            // The source only sends batches of partitions it announced; if that is ever
            // violated, keep the records as dead letters rather than lose them.
            tracing::error!(
                partition = %key,
                "batch for a partition without a task; its records are dead-lettered"
            );
            let mut dead = dead;
            dead.extend(events.iter().map(|e| DeadLetter {
                reason: "unassigned".into(),
                detail: format!("no task for partition {key}"),
                origin: "processor".into(),
                payload: crate::event::encode(e),
                ..DeadLetter::default()
            }));
            return SinkWork {
                dead,
                ..SinkWork::default()
            };
        };
        let work = task.process(events, dead, from.as_ref(), self.event_time, &self.metrics);
        if task.watermark() > i64::MIN {
            self.metrics
                .set_watermark(&key.to_string(), task.watermark());
        }
        if from.is_none() {
            // The embedded input's position is the records received from it.
            task.next_offset = Some(task.next_offset.unwrap_or(0) + records);
        }
        work
    }

    /// Lets the clock of every task without input for `idle_advance` follow the wall clock
    /// (looked at a few times per interval, whatever else arrives: one quiet partition must
    /// not hold back the key groups while the others are busy).
    fn idle_advance(&mut self) -> SinkWork {
        let idle = self.event_time.idle_advance;
        let mut work = SinkWork::default();
        if self.last_idle_check.elapsed() < idle / 4 {
            return work;
        }
        self.last_idle_check = Instant::now();
        for (at, task) in &mut self.tasks.map {
            let since = task.last_input.max(self.blocked_until);
            let quiet = since.elapsed();
            if quiet >= idle {
                work.merge(task.idle_advance(
                    quiet.as_millis() as i64,
                    self.event_time,
                    at.partition,
                ));
                if task.watermark() > i64::MIN {
                    self.metrics
                        .set_watermark(&at.to_string(), task.watermark());
                }
            }
        }
        work
    }
}
