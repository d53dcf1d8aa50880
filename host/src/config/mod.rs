//! The host configuration: one TOML file, every field documented, unknown keys refused, and
//! any key overridable from the environment (for secrets). See `config/embedded.toml`.

mod load;
mod observability;
mod tagged;

pub use load::{ConfigError, ENV_PREFIX, load, parse, validate_pipeline};
pub use observability::ObservabilityConfig;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where events come from.
    pub source: SourceConfig,
    /// Batching, backpressure and event time.
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// The plugin folder and the sandbox.
    pub plugins: PluginsConfig,
    /// Where results go.
    pub sinks: SinksConfig,
    /// Metrics, health endpoints and the dashboard.
    #[serde(default)]
    pub observability: ObservabilityConfig,
}

/// Event sources, selected by `type`.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    /// The built-in fake clickstream, in process.
    Generator(GeneratorSource),
    /// A file of JSON lines, one event per line (malformed lines are dead-lettered).
    File(FileSource),
    /// A Kafka topic consumed in a consumer group.
    Kafka(KafkaInput),
}
tagged::tagged_enum!(SourceConfig { "generator" => Generator(GeneratorSource), "file" => File(FileSource), "kafka" => Kafka(KafkaInput) });

/// `type = "generator"`: the built-in fake clickstream, in process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorSource {
    /// Events per wall-clock second (default 2000).
    #[serde(default = "default_rate")]
    pub rate: u32,
    /// Seed; the same seed gives the same events (default 1).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Events per *simulated* second at the daily mean: with `rate` it sets how fast
    /// simulated time runs (default 50, so simulated time runs ~40x faster at 2000/s).
    #[serde(default = "default_sim_rate")]
    pub simulated_rate: f64,
    /// Share of sessions that are bots, 0..1 (default 0.01).
    #[serde(default = "default_bot_fraction")]
    pub bot_fraction: f64,
    /// Stop after this many events (default: never).
    #[serde(default)]
    pub max_events: Option<u64>,
}

/// `type = "file"`: a file of JSON lines, one event per line.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSource {
    /// The file.
    pub path: PathBuf,
}

/// `type = "kafka"`: a topic of JSON click events, consumed in a consumer group. Hosts with the
/// same `group_id` share the partitions. Each input partition's task routes its events by the
/// plugins' state keys to internal topics `<group_id>.clickwatch-by-<key>`, whose partitions
/// are tasks too, each with its own plugin instances; every task's state is checkpointed with
/// its partition's offset in `state_topic` (docs/design/keyed-state.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaInput {
    /// Bootstrap servers, `host:port[,host:port]`.
    pub brokers: String,
    /// The input topic.
    pub topic: String,
    /// Consumer group id (default `clickwatch`).
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Compacted topic for partition checkpoints (default `<group_id>.clickwatch-state`;
    /// created if missing).
    #[serde(default)]
    pub state_topic: Option<String>,
    /// Consumer group session timeout, ms: how long a silent host keeps its partitions
    /// (default 10000).
    #[serde(default = "default_session_timeout")]
    pub session_timeout_ms: u32,
    /// How often partition state and offsets are checkpointed, ms; after a crash at most this
    /// much input is processed again (default 5000).
    #[serde(default = "default_checkpoint")]
    pub checkpoint_interval_ms: u64,
    /// Partitions of each internal key-group topic the host creates (the `global` group's
    /// has one); default: as many as the input topic has. An existing topic keeps its count.
    #[serde(default)]
    pub key_partitions: Option<u32>,
}

impl KafkaInput {
    /// The state topic, defaulted from the group id.
    pub fn state_topic(&self) -> String {
        self.state_topic
            .clone()
            .unwrap_or_else(|| format!("{}.clickwatch-state", self.group_id))
    }
}

fn default_group() -> String {
    "clickwatch".to_owned()
}
fn default_session_timeout() -> u32 {
    10_000
}
fn default_checkpoint() -> u64 {
    5_000
}

fn default_rate() -> u32 {
    2_000
}
fn default_seed() -> u64 {
    1
}
fn default_sim_rate() -> f64 {
    50.0
}
fn default_bot_fraction() -> f64 {
    0.01
}

/// Batching, backpressure and event time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Most events per batch (default 1000).
    pub batch_size: usize,
    /// Longest a partial batch waits, ms (default 200).
    pub batch_linger_ms: u64,
    /// Batches queued between stages before the source is slowed down (default 4).
    pub queue_batches: usize,
    /// How far behind the newest event time the watermark trails, ms (default 5000). Events
    /// older than the watermark are late: counted and dead-lettered.
    pub allowed_lateness_ms: i64,
    /// With no input for this long, the watermark advances with the wall clock so windows still
    /// close (default 2000).
    pub idle_advance_ms: u64,
    /// The watermark moves in steps of this much event time, and the plugins are ticked at
    /// each step (default 1000): judged event by event, so results do not depend on batching.
    pub tick_interval_ms: u64,
    /// How often an embedded source with `plugins.state_dir` checkpoints its plugin state and
    /// position, ms (default 5000): a crash re-reads at most this much input. A Kafka input
    /// uses `source.checkpoint_interval_ms`.
    pub checkpoint_interval_ms: u64,
    /// On a stop (SIGINT/SIGTERM), how long output that keeps failing is still retried, ms
    /// (default 20000). Then the host stops without it and without a checkpoint after it: the
    /// next run reads that input again.
    pub shutdown_grace_ms: u64,
    /// Threads running the tasks of a Kafka input (default: the number of cores). Each
    /// partition's task runs on one of them; an embedded source has one task, so one thread.
    /// A batch of 512 events or more also shares its task's plugins out over this many
    /// threads (each plugin still runs on one thread at a time).
    pub workers: Option<usize>,
}

impl PipelineConfig {
    /// The worker threads to run: `workers`, or the number of cores.
    pub fn worker_threads(&self) -> usize {
        self.workers.unwrap_or_else(cores)
    }
}

/// The cores this process may use (1 when that cannot be told): the default of
/// `pipeline.workers`.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            batch_size: 1000,
            batch_linger_ms: 200,
            queue_batches: 4,
            allowed_lateness_ms: 5_000,
            idle_advance_ms: 2_000,
            tick_interval_ms: 1_000,
            checkpoint_interval_ms: 5_000,
            shutdown_grace_ms: 20_000,
            workers: None,
        }
    }
}

/// The plugin folder and the sandbox.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// Folder watched for `.wasm` plugins; must exist.
    pub dir: PathBuf,
    /// Hot-reload the folder while running (default true).
    #[serde(default = "yes")]
    pub watch: bool,
    /// Budget of one plugin call, ms (default 500).
    #[serde(default = "default_deadline")]
    pub deadline_ms: u64,
    /// Memory cap of one plugin instance, MiB (default 64).
    #[serde(default = "default_memory")]
    pub memory_mb: u32,
    /// Consecutive failures before a plugin is quarantined (default 3).
    #[serde(default = "default_failures")]
    pub max_failures: u32,
    /// First quarantine, ms; doubles each time up to 5 minutes (default 1000).
    #[serde(default = "default_backoff")]
    pub quarantine_ms: u64,
    /// How often plugin state is snapshotted for restarts, ms (default 5000).
    #[serde(default = "default_snapshot")]
    pub snapshot_interval_ms: u64,
    /// Folder where plugin state is kept across restarts (default: none, state is not kept).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// Per-plugin settings, by plugin name: `[plugins.settings.page-traffic]`.
    #[serde(default)]
    pub settings: BTreeMap<String, toml::Table>,
}

fn yes() -> bool {
    true
}
fn default_deadline() -> u64 {
    500
}
fn default_memory() -> u32 {
    64
}
fn default_failures() -> u32 {
    3
}
fn default_backoff() -> u64 {
    1_000
}
fn default_snapshot() -> u64 {
    5_000
}

impl PluginsConfig {
    /// A plugin's settings as the JSON object its `init` receives.
    pub fn settings_json(&self, plugin: &str) -> String {
        self.settings
            .get(plugin)
            .and_then(|t| serde_json::to_string(t).ok())
            .unwrap_or_else(|| "{}".to_owned())
    }
}

/// Where results go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinksConfig {
    /// Every valid raw event.
    pub raw: RawSinkConfig,
    /// Aggregate rows from plugins.
    pub aggregates: AggregateSinkConfig,
    /// Alerts from detectors.
    pub alerts: AlertSinkConfig,
    /// Records that could not be processed, with the reason.
    pub dead_letters: DeadLetterConfig,
}

/// Raw event sink, selected by `type`.
#[derive(Debug, Clone)]
pub enum RawSinkConfig {
    /// A SQLite database.
    Sqlite(SqliteSink),
    /// PostgreSQL (table `click_events`; run `clickwatch db migrate` first).
    Postgres(PostgresSink),
    /// Raw events are not kept: for deployments that only want aggregates and alerts (the
    /// input topic is the record of the raw events), and for benchmarks of the rest.
    None(NoRawSink),
}
tagged::tagged_enum!(RawSinkConfig { "sqlite" => Sqlite(SqliteSink), "postgres" => Postgres(PostgresSink), "none" => None(NoRawSink) });

/// `type = "none"`: raw events are not kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoRawSink {}

/// `type = "postgres"`: the raw store in PostgreSQL.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSink {
    /// Connection URL, `postgres://user@host:port/database` (keep the password out of it).
    pub url: String,
    /// Password; set it from the environment: `CLICKWATCH__SINKS__RAW__PASSWORD`.
    #[serde(default)]
    pub password: Option<String>,
    /// How long start-up waits for the server, seconds (default 60).
    #[serde(default = "default_startup_timeout")]
    pub startup_timeout_secs: u64,
}

fn default_startup_timeout() -> u64 {
    60
}

impl PostgresSink {
    /// Connection settings for the sink.
    pub fn settings(&self) -> crate::sink::postgres::PgSettings {
        crate::sink::postgres::PgSettings {
            url: self.url.clone(),
            password: self.password.clone(),
            startup_timeout: std::time::Duration::from_secs(self.startup_timeout_secs),
        }
    }
}

/// Aggregate sink, selected by `type`.
#[derive(Debug, Clone)]
pub enum AggregateSinkConfig {
    /// A SQLite database; one table per plugin-declared table.
    Sqlite(SqliteSink),
    /// Google BigQuery; one table per plugin-declared table in a dataset.
    Bigquery(BigquerySinkConfig),
}
tagged::tagged_enum!(AggregateSinkConfig { "sqlite" => Sqlite(SqliteSink), "bigquery" => Bigquery(BigquerySinkConfig) });

/// `type = "bigquery"`: aggregates streamed into BigQuery.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BigquerySinkConfig {
    /// GCP project id.
    pub project: String,
    /// Dataset; created if missing.
    pub dataset: String,
    /// Location for a dataset this sink creates ("US", "EU", ...; default: BigQuery's).
    #[serde(default)]
    pub location: Option<String>,
    /// Service-account key file; without it, Application Default Credentials are used.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// API base URL, for the emulator: `http://127.0.0.1:19050/bigquery/v2` (default: Google).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// A fixed bearer token instead of credentials (emulators accept any).
    #[serde(default)]
    pub token: Option<String>,
}

impl BigquerySinkConfig {
    /// Settings for the sink.
    pub fn settings(&self) -> crate::sink::bigquery::BigQuerySettings {
        use crate::sink::bigquery::Credentials;
        let credentials = match (&self.token, &self.credentials_file) {
            (Some(token), _) => Credentials::StaticToken(token.clone()),
            (None, Some(file)) => Credentials::ServiceAccountKey(file.clone()),
            (None, None) => Credentials::ApplicationDefault,
        };
        crate::sink::bigquery::BigQuerySettings {
            project: self.project.clone(),
            dataset: self.dataset.clone(),
            location: self.location.clone(),
            credentials,
            endpoint: self.endpoint.clone(),
        }
    }
}

/// `type = "sqlite"`: a SQLite database file, created if missing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteSink {
    /// The database file (raw and aggregate sinks may share one).
    pub path: PathBuf,
}

/// Alert sink, selected by `type`.
#[derive(Debug, Clone)]
pub enum AlertSinkConfig {
    /// A JSON-lines file.
    File(AlertFileSink),
    /// A Kafka topic (alerts as JSON keyed by entity; see docs/alert-schema.md).
    Kafka(KafkaTopicSink),
}
tagged::tagged_enum!(AlertSinkConfig { "file" => File(AlertFileSink), "kafka" => Kafka(KafkaTopicSink) });

/// `type = "kafka"`: records to a topic through an idempotent, acks=all producer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaTopicSink {
    /// Bootstrap servers, `host:port[,host:port]`.
    pub brokers: String,
    /// The topic.
    pub topic: String,
}

/// `type = "file"` for alerts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertFileSink {
    /// The file (appended to).
    pub path: PathBuf,
    /// Also print each alert on stdout (default true).
    #[serde(default = "yes")]
    pub stdout: bool,
}

/// Dead-letter sink, selected by `type`.
#[derive(Debug, Clone)]
pub enum DeadLetterConfig {
    /// A JSON-lines file.
    File(DeadLetterFileSink),
    /// A Kafka topic.
    Kafka(KafkaTopicSink),
}
tagged::tagged_enum!(DeadLetterConfig { "file" => File(DeadLetterFileSink), "kafka" => Kafka(KafkaTopicSink) });

/// `type = "file"` for dead letters.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterFileSink {
    /// The file (appended to).
    pub path: PathBuf,
}
