//! One host's run of a suite: its config (Kafka in, PostgreSQL raw store, aggregates to SQLite
//! or BigQuery, alerts and dead letters to Kafka), starting it, and waiting on its progress by
//! what it stored and committed, never by time.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::host::Host;
use crate::input::Input;
use crate::kafka::caught_up;
use crate::postgres::{fresh_database, raw_count};
use crate::services::{bigquery, brokers, plugins_into, unique};

/// The project id runs use on the BigQuery emulator.
pub const BIGQUERY_PROJECT: &str = "test-project";

/// Where a run's aggregates go.
pub enum Aggregates {
    /// `aggregates.db` in the run's folder.
    Sqlite,
    /// A dataset of the BigQuery emulator (`BIGQUERY_EMULATOR`).
    BigQuery { dataset: String },
}

/// One host's run: its config, outputs and database. Raw events go to a fresh PostgreSQL
/// database, alerts and dead letters to topics of their own.
pub struct Run {
    pub name: &'static str,
    pub dir: PathBuf,
    pub config: PathBuf,
    /// The input topic.
    pub topic: String,
    pub group: String,
    /// The raw store's URL.
    pub db: String,
    pub alerts_topic: String,
    pub dead_topic: String,
}

impl Run {
    /// A config in `root/name` reading `topic` with the `plugins` named (from the wasm
    /// folder), `extra` appended to its `[plugins]` section.
    pub async fn new(
        name: &'static str,
        root: &Path,
        topic: &str,
        plugins: &[&str],
        extra: &str,
        aggregates: &Aggregates,
    ) -> Run {
        let dir = root.join(name);
        plugins_into(&dir.join("plugins"), plugins);
        let (group, alerts_topic, dead_topic) = (unique(name), unique("alerts"), unique("dead"));
        let db = fresh_database(&unique(name)).await;
        let text = format!(
            "[source]\ntype = \"kafka\"\nbrokers = \"{b}\"\ntopic = \"{topic}\"\ngroup_id = \"{group}\"\n\
             session_timeout_ms = 6000\ncheckpoint_interval_ms = 500\n\
             [pipeline]\nbatch_size = 500\nbatch_linger_ms = 20\nallowed_lateness_ms = 5000\n\
             idle_advance_ms = 600000\nshutdown_grace_ms = 10000\n\
             [plugins]\ndir = \"{p}\"\nwatch = false\n{extra}\n\
             [sinks.raw]\ntype = \"postgres\"\nurl = \"{db}\"\n\
             [sinks.aggregates]\n{aggregates}\n\
             [sinks.alerts]\ntype = \"kafka\"\nbrokers = \"{b}\"\ntopic = \"{alerts_topic}\"\n\
             [sinks.dead_letters]\ntype = \"kafka\"\nbrokers = \"{b}\"\ntopic = \"{dead_topic}\"\n",
            b = brokers(),
            p = dir.join("plugins").display(),
            aggregates = match aggregates {
                Aggregates::Sqlite => format!(
                    "type = \"sqlite\"\npath = \"{}/aggregates.db\"",
                    dir.display()
                ),
                Aggregates::BigQuery { dataset } => format!(
                    "type = \"bigquery\"\nproject = \"{BIGQUERY_PROJECT}\"\ndataset = \"{dataset}\"\nendpoint = \"{}/bigquery/v2\"\ntoken = \"test\"",
                    bigquery().trim_end_matches('/')
                ),
            },
        );
        let config = dir.join("clickwatch.toml");
        std::fs::write(&config, text).expect("config");
        Run {
            name,
            dir,
            config,
            topic: topic.to_owned(),
            group,
            db,
            alerts_topic,
            dead_topic,
        }
    }

    /// Starts the host on this config, its output appended to `host.log`.
    pub fn start(&self) -> Host {
        Host::start(&self.config, &self.dir.join("host.log"))
    }

    /// Fails with the log if the host exited (during `what`).
    fn alive(&self, host: &mut Host, what: &str) {
        assert!(
            host.running(),
            "{}: the host exited during {what} (log: {})",
            self.name,
            host.log().display()
        );
    }

    /// Waits until the raw store holds more than `above` rows (polling, bounded); returns
    /// how long it took. Fails with the log if the host exits.
    pub async fn rows_above(
        &self,
        host: &mut Host,
        above: i64,
        bound: Duration,
        what: &str,
    ) -> Duration {
        let started = Instant::now();
        loop {
            if raw_count(&self.db).await.is_some_and(|n| n > above) {
                return started.elapsed();
            }
            self.alive(host, what);
            assert!(
                started.elapsed() < bound,
                "{}: no new rows within {bound:?} of {what} (log: {})",
                self.name,
                host.log().display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (bounded) until every valid event is stored and the group has committed all of
    /// its input and internal topics, twice in a row (nothing in flight).
    pub async fn finish(&self, host: &mut Host, input: &Input) {
        let expected = input.stored_ids.len() as i64;
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut settled = 0;
        while settled < 2 {
            let stored = raw_count(&self.db).await.unwrap_or(0);
            let (group, topic) = (self.group.clone(), self.topic.clone());
            let done = stored >= expected
                && tokio::task::spawn_blocking(move || caught_up(&group, &topic))
                    .await
                    .expect("join");
            settled = if done { settled + 1 } else { 0 };
            self.alive(host, "the finish");
            assert!(
                Instant::now() < deadline,
                "{}: not caught up within 300 s ({stored} of {expected} rows stored; log: {})",
                self.name,
                host.log().display()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
