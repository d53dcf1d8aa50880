//! The pipeline: source → processor (plugins, on its own thread) → sink stage, joined by
//! bounded channels so a slow sink slows the source instead of growing memory or dropping data.
//! The plugin folder watcher feeds swaps to the processor, which applies them between batches.

mod checkpoint;
mod clock;
mod give_up;
mod partitions;
mod processor;
mod sink_stage;
mod status;
mod task;
mod tasks;
mod workers;

pub use checkpoint::{Barrier, CHECKPOINT_FILE, CheckpointError, Checkpointer, LocalCheckpoints};
pub use clock::EventTime;
pub use processor::{Ending, Processor};
pub use sink_stage::{GiveUp, SinkWork, Sinks, run_sinks};
pub use status::{Outputs, Summary, outputs, status_line};
pub use task::{Role, Task};
pub use workers::Workers;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::config::{
    AggregateSinkConfig, AlertSinkConfig, Config, DeadLetterConfig, RawSinkConfig, SourceConfig,
};
use crate::generator::{Generator, GeneratorSettings};
use crate::metrics::Metrics;
use crate::plugin::{self, Limits, PluginSet, Policy, Runtime};
use crate::sink::postgres::PostgresRawSink;
use crate::sink::{JsonLinesAlertSink, JsonLinesDeadLetterSink, SinkError, SqliteStore};
use crate::source::kafka::{KafkaSettings, KafkaSource};
use crate::source::{Pacing, SourceMsg, run_file, run_generator};

/// The pipeline could not start or broke down.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The wasm runtime.
    #[error(transparent)]
    Runtime(#[from] plugin::RuntimeError),
    /// A sink could not be opened.
    #[error("cannot open sink: {0}")]
    Sink(#[from] SinkError),
    /// The plugin folder cannot be read or watched.
    #[error("plugin folder {}: {message}", dir.display())]
    Plugins {
        /// The folder.
        dir: PathBuf,
        /// Why.
        message: String,
    },
    /// The Kafka source could not start.
    #[error(transparent)]
    Kafka(#[from] crate::source::kafka::KafkaSourceError),
    /// A stage died.
    #[error("pipeline stage failed: {0}")]
    Stage(String),
}

async fn open_sinks(config: &Config) -> Result<Sinks, SinkError> {
    let alerts: Box<dyn crate::sink::AlertSink> = match &config.sinks.alerts {
        AlertSinkConfig::File(f) => Box::new(JsonLinesAlertSink::open(&f.path, f.stdout).await?),
        AlertSinkConfig::Kafka(k) => {
            Box::new(crate::sink::KafkaTopicSink::new(&k.brokers, &k.topic)?)
        }
    };
    let dead_letters: Box<dyn crate::sink::DeadLetterSink> = match &config.sinks.dead_letters {
        DeadLetterConfig::File(f) => Box::new(JsonLinesDeadLetterSink::open(&f.path).await?),
        DeadLetterConfig::Kafka(k) => {
            Box::new(crate::sink::KafkaTopicSink::new(&k.brokers, &k.topic)?)
        }
    };
    let aggregates: Box<dyn crate::sink::AggregateSink> = match &config.sinks.aggregates {
        AggregateSinkConfig::Sqlite(s) => Box::new(SqliteStore::open(&s.path).await?),
        AggregateSinkConfig::Bigquery(b) => {
            Box::new(crate::sink::bigquery::BigQuerySink::open(b.settings()).await?)
        }
    };
    let raw: Box<dyn crate::sink::RawSink> = match &config.sinks.raw {
        RawSinkConfig::Sqlite(s) => Box::new(SqliteStore::open(&s.path).await?),
        RawSinkConfig::Postgres(p) => Box::new(PostgresRawSink::open(&p.settings()).await?),
        RawSinkConfig::None(_) => Box::new(crate::sink::DiscardRaw),
    };
    // A Kafka input is re-partitioned by state key through internal topics on its brokers.
    let routed: Option<Box<dyn crate::shuffle::RoutedSink>> = match &config.source {
        SourceConfig::Kafka(k) => Some(Box::new(crate::shuffle::KafkaRouted::new(&k.brokers)?)),
        _ => None,
    };
    let checkpoints = local_checkpoints(config).map(|c| Box::new(c) as Box<dyn Checkpointer>);
    Ok(Sinks {
        raw,
        aggregates,
        alerts,
        dead_letters,
        routed,
        checkpoints,
    })
}

/// Where an embedded source with a state folder checkpoints (a Kafka input's checkpoints go
/// to its state topic instead).
fn local_checkpoints(config: &Config) -> Option<LocalCheckpoints> {
    match (&config.source, &config.plugins.state_dir) {
        (SourceConfig::Kafka(_), _) | (_, None) => None,
        (_, Some(dir)) => Some(LocalCheckpoints::new(dir)),
    }
}

/// Loads every plugin in the folder (a bad file is logged and skipped) and restores saved state.
async fn load_plugins(
    config: &Config,
    runtime: &Runtime,
    policy: Policy,
    metrics: &Metrics,
) -> Result<(PluginSet, HashMap<PathBuf, u64>), PipelineError> {
    let dir = config.plugins.dir.clone();
    let files = plugin::plugin_files(&dir).map_err(|e| PipelineError::Plugins {
        dir: dir.clone(),
        message: e.to_string(),
    })?;
    let mut set = PluginSet::new(policy)
        .with_threads(config.pipeline.worker_threads())
        .with_meters(std::sync::Arc::clone(&metrics.plugins));
    let mut known = HashMap::new();
    for path in files {
        let (rt, p, plugins) = (runtime.clone(), path.clone(), config.plugins.clone());
        // Compile and init on a blocking thread: wasm never runs on a tokio worker. Saved
        // state is restored by the task that runs the plugin.
        let loaded = tokio::task::spawn_blocking(move || {
            plugin::prepare(&rt, &p, &|name| plugins.settings_json(name))
        })
        .await
        .map_err(|e| PipelineError::Stage(e.to_string()))?;
        let prepared = match loaded {
            Ok(p) => p,
            Err(error) => {
                Metrics::add(&metrics.plugin_rejections, 1);
                let file = path.display().to_string();
                metrics.plugin_event(crate::metrics::Reload::refused(&file, error.to_string()));
                tracing::error!(%error, "plugin refused at start-up");
                continue;
            }
        };
        let (name, version) = (
            prepared.module.info.name.clone(),
            prepared.module.info.version.clone(),
        );
        if let Ok(bytes) = std::fs::read(&path) {
            known.insert(path.clone(), plugin::content_hash(&bytes));
        }
        match set.install(prepared, Instant::now()) {
            Ok(_) => {
                Metrics::add(&metrics.plugin_loads, 1);
                metrics.plugin_event(crate::metrics::Reload {
                    to: Some(version.clone()),
                    ..crate::metrics::Reload::now(
                        crate::metrics::Change::Loaded,
                        &name,
                        &path.display().to_string(),
                    )
                });
                tracing::info!(plugin = %name, version = %version, file = %path.display(), "plugin loaded");
            }
            Err(error) => {
                Metrics::add(&metrics.plugin_rejections, 1);
                metrics.plugin_event(crate::metrics::Reload {
                    to: Some(version.clone()),
                    reason: Some(error.to_string()),
                    ..crate::metrics::Reload::now(
                        crate::metrics::Change::Refused,
                        &name,
                        &path.display().to_string(),
                    )
                });
                tracing::error!(file = %path.display(), %error, "plugin refused at start-up");
            }
        }
    }
    metrics
        .plugins_loaded
        .store(set.len() as u64, std::sync::atomic::Ordering::Relaxed);
    Ok((set, known))
}

/// Identifies the configured source, so a checkpoint is only applied to the same one.
pub fn source_id(config: &Config) -> String {
    match &config.source {
        SourceConfig::Generator(g) => {
            format!(
                "generator seed={} simulated_rate={} bot_fraction={}",
                g.seed, g.simulated_rate, g.bot_fraction
            )
        }
        SourceConfig::File(f) => format!("file {}", f.path.display()),
        SourceConfig::Kafka(k) => format!("kafka {} {} group={}", k.brokers, k.topic, k.group_id),
    }
}

/// The parts of a pipeline that are built from its config before it starts: tests and
/// embedders may replace any of them (e.g. a fault-injecting sink) before
/// [`run_with`].
pub struct Parts {
    /// The sinks the sink stage writes to.
    pub sinks: Sinks,
    /// The plugins loaded from the folder.
    pub plugins: PluginSet,
    /// The wasm runtime the plugins were compiled with (the watcher compiles with it too).
    pub runtime: Runtime,
    /// Content hashes of the plugin files loaded, so the watcher does not reload them.
    pub known: HashMap<PathBuf, u64>,
}

/// Builds the parts of `config`'s pipeline: the runtime under the sandbox limits, the sinks
/// (opened), the plugins (loaded; a bad file is logged and skipped).
pub async fn parts(config: &Config, metrics: &Metrics) -> Result<Parts, PipelineError> {
    let memory_bytes = config.plugins.memory_mb as usize * (1 << 20);
    let limits = Limits {
        deadline: Duration::from_millis(config.plugins.deadline_ms),
        memory_bytes,
        // The host copies out at most as much as the guest may hold.
        output_bytes: memory_bytes,
    };
    let policy = Policy {
        max_failures: config.plugins.max_failures.max(1),
        backoff: Duration::from_millis(config.plugins.quarantine_ms),
        snapshot_interval: Duration::from_millis(config.plugins.snapshot_interval_ms),
        ..Policy::default()
    };
    let runtime = Runtime::new(limits)?;
    let sinks = open_sinks(config).await?;
    let (plugins, known) = load_plugins(config, &runtime, policy, metrics).await?;
    Ok(Parts {
        sinks,
        plugins,
        runtime,
        known,
    })
}

/// Runs the pipeline of `config` until the source is exhausted or `shutdown` resolves. The
/// value `shutdown` resolves to says how to end: [`Ending::Exhausted`] treats it as the end of
/// the input (every window closes); [`Ending::Stopped`] keeps open windows in plugin state.
pub async fn run(
    config: Config,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = Ending>,
) -> Result<Summary, PipelineError> {
    let parts = parts(&config, &metrics).await?;
    run_with(config, parts, metrics, shutdown).await
}

/// [`run`] with parts built (and perhaps replaced) by the caller; the source comes from
/// `config`.
pub async fn run_with(
    config: Config,
    parts: Parts,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = Ending>,
) -> Result<Summary, PipelineError> {
    let started = Instant::now();
    let p = &config.pipeline;
    let Parts {
        mut sinks,
        plugins,
        runtime,
        known,
    } = parts;

    let (source_tx, source_rx) = mpsc::channel::<SourceMsg>(p.queue_batches);
    let (sink_tx, sink_rx) = mpsc::channel::<SinkWork>(p.queue_batches);
    let (control_tx, control_rx) = mpsc::channel(4);
    let (stop_tx, stop_rx) = watch::channel(false);

    // Tables of the plugins loaded at start-up exist before any row arrives.
    let tables = plugins.tables();
    if !tables.is_empty() {
        let _ = sink_tx
            .send(SinkWork {
                tables,
                ..SinkWork::default()
            })
            .await;
    }

    let event_time = EventTime::of(p);
    let mut kafka = None;
    let (processors, skip) = match &config.source {
        SourceConfig::Kafka(k) => {
            if config.plugins.state_dir.is_some() {
                tracing::warn!(
                    "plugins.state_dir is not used with a kafka source: plugin state is kept per partition in the state topic"
                );
            }
            let settings = KafkaSettings {
                brokers: k.brokers.clone(),
                topic: k.topic.clone(),
                group_id: k.group_id.clone(),
                state_topic: k.state_topic(),
                session_timeout_ms: k.session_timeout_ms,
                batch_size: p.batch_size,
                linger: Duration::from_millis(p.batch_linger_ms),
                keys: plugins.keys(),
                key_partitions: k.key_partitions,
            };
            let started = KafkaSource::start(
                settings,
                source_tx.clone(),
                stop_rx.clone(),
                metrics.clone(),
            )
            .await?;
            // The partitions' checkpoints are barriers the sink stage stores.
            sinks.checkpoints = Some(Box::new(started.checkpointer()));
            let router = crate::shuffle::Router {
                input: k.topic.as_str().into(),
                input_partitions: started.input_partitions,
                groups: started.groups.clone(),
            };
            tracing::info!(
                input_partitions = router.input_partitions,
                groups = ?router.groups.iter().map(|g| format!("{} ({} partitions)", g.key, g.partitions)).collect::<Vec<_>>(),
                "input re-partitioned by state key"
            );
            kafka = Some(started);
            // One processor per worker thread, each with its own template of the plugins
            // (fresh instances of the same modules).
            let every = Duration::from_millis(k.checkpoint_interval_ms);
            let now = Instant::now();
            let mut processors = Vec::new();
            for _ in 1..p.worker_threads() {
                let (template, failed) = plugins.fork(now);
                for (plugin, error) in failed {
                    tracing::error!(%plugin, %error, "plugin could not start on a worker thread; that worker's partitions miss it");
                }
                let processor = Processor::partitioned(
                    template,
                    router.clone(),
                    event_time,
                    metrics.clone(),
                    every,
                );
                processors.push(processor.secondary());
            }
            processors.insert(
                0,
                Processor::partitioned(plugins, router, event_time, metrics.clone(), every),
            );
            (processors, 0)
        }
        _ => {
            // Resume after what the last run of the same source checkpointed.
            let id = source_id(&config);
            let local = local_checkpoints(&config);
            let restored = local.as_ref().and_then(|c| c.load(&id));
            let skip = restored.as_ref().map_or(0, |s| s.next_offset.max(0) as u64);
            let every = Duration::from_millis(p.checkpoint_interval_ms);
            // One task, so one worker.
            let processor = Processor::new(
                plugins,
                event_time,
                metrics.clone(),
                local.map(|_| (id, every)),
                restored.as_ref(),
            );
            (vec![processor], skip)
        }
    };
    // A stop the user asked for waits this long for outputs that keep failing.
    let (give_up_tx, give_up_rx) = watch::channel(false);
    let give_up = GiveUp::after(give_up_rx, Duration::from_millis(p.shutdown_grace_ms));
    let sink_task = tokio::spawn(run_sinks(sinks, sink_rx, metrics.clone(), give_up));
    let workers = Workers::start(
        processors,
        source_rx,
        control_rx,
        sink_tx,
        p.queue_batches,
        metrics.clone(),
    )
    .map_err(|e| PipelineError::Stage(e.to_string()))?;

    let watcher = if config.plugins.watch {
        let plugins = config.plugins.clone();
        let settings: Arc<dyn Fn(&str) -> String + Send + Sync> =
            Arc::new(move |name: &str| plugins.settings_json(name));
        Some(tokio::spawn(plugin::watch_folder(
            config.plugins.dir.clone(),
            runtime.clone(),
            settings,
            known,
            control_tx,
            stop_rx.clone(),
            metrics.clone(),
        )))
    } else {
        drop(control_tx);
        None
    };

    let source = {
        let (tx, stop, metrics, batch, linger) = (
            source_tx.clone(),
            stop_rx.clone(),
            metrics.clone(),
            p.batch_size,
            Duration::from_millis(p.batch_linger_ms),
        );
        let source = config.source.clone();
        tokio::spawn(async move {
            match source {
                SourceConfig::Kafka(_) => {
                    // Ends after `stop`, once every partition's last checkpoint is settled.
                    if let Some(kafka) = kafka {
                        let _ = tokio::task::spawn_blocking(move || kafka.join()).await;
                    }
                }
                SourceConfig::Generator(g) => {
                    let mut generator = Generator::new(GeneratorSettings {
                        seed: g.seed,
                        mean_rate: g.simulated_rate,
                        bot_fraction: g.bot_fraction,
                        ..GeneratorSettings::default()
                    });
                    // Resume after what the last run already processed (deterministic per seed).
                    for _ in 0..skip {
                        generator.next_event();
                    }
                    let pacing = Pacing {
                        rate: g.rate,
                        max_events: g.max_events.map(|m| m.saturating_sub(skip)),
                        batch_size: batch,
                        linger,
                    };
                    run_generator(generator, pacing, tx, stop, &metrics).await;
                }
                SourceConfig::File(f) => {
                    if let Err(error) = run_file(&f.path, skip, batch, tx, stop, &metrics).await {
                        tracing::error!(file = %f.path.display(), %error, "cannot read the event file");
                    }
                }
            }
        })
    };

    // Sinks opened, plugins loaded (in `parts`), the source connected and the stages
    // running: `/readyz` says so until the run starts to end.
    metrics
        .ready
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let mut source = source;
    let ending = tokio::select! {
        _ = &mut source => None,
        ending = shutdown => Some(ending),
    };
    metrics
        .ready
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let _ = stop_tx.send(true);
    if ending == Some(Ending::Stopped) {
        let _ = give_up_tx.send(true);
    }
    if let Some(ending) = ending {
        let _ = (&mut source).await;
        if ending == Ending::Exhausted {
            let _ = source_tx.send(SourceMsg::Exhausted).await;
        }
    }
    drop(source_tx);
    let (ending, plugins) = tokio::task::spawn_blocking(move || workers.join())
        .await
        .map_err(|e| PipelineError::Stage(e.to_string()))?
        .map_err(PipelineError::Stage)?;
    let sinks = sink_task
        .await
        .map_err(|e| PipelineError::Stage(e.to_string()))?;
    // Closing the sinks may block: a Kafka input's checkpointer holds the consumer, which
    // leaves the group then, so other hosts take the partitions over at once.
    let _ = tokio::task::spawn_blocking(move || drop(sinks)).await;
    if let Some(watcher) = watcher {
        match watcher.await {
            Ok(Err(error)) => tracing::warn!(%error, "plugin watcher stopped"),
            Err(error) => tracing::warn!(%error, "plugin watcher crashed"),
            Ok(Ok(())) => {}
        }
    }
    Ok(Summary::new(
        &metrics,
        plugins,
        ending,
        started.elapsed(),
        outputs(&config),
    ))
}
