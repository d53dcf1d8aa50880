//! The live status line and the end-of-run summary.

use std::time::Duration;

use super::processor::Ending;
use crate::config::{
    AggregateSinkConfig, AlertSinkConfig, Config, DeadLetterConfig, RawSinkConfig,
};
use crate::metrics::Metrics;
use crate::plugin::PluginStatus;

/// One line: throughput and totals.
pub fn status_line(metrics: &Metrics, events_per_sec: f64) -> String {
    format!(
        "events {} ({:.0}/s) | raw rows {} | aggregate rows {} | alerts {} | dead letters {} | plugins {}",
        Metrics::get(&metrics.events_processed),
        events_per_sec,
        Metrics::get(&metrics.raw_rows),
        Metrics::get(&metrics.aggregate_rows),
        Metrics::get(&metrics.alerts),
        Metrics::get(&metrics.dead_letters),
        Metrics::get(&metrics.plugins_loaded),
    )
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Valid events read.
    pub events_in: u64,
    /// Events run through the plugins.
    pub events_processed: u64,
    /// Invalid records.
    pub events_invalid: u64,
    /// Late events.
    pub events_late: u64,
    /// New raw rows.
    pub raw_rows: u64,
    /// Aggregate rows written.
    pub aggregate_rows: u64,
    /// Alerts per detector.
    pub alerts_by_detector: Vec<(String, u64)>,
    /// Total alerts.
    pub alerts: u64,
    /// Dead letters written.
    pub dead_letters: u64,
    /// Plugins at the end.
    pub plugins: Vec<PluginStatus>,
    /// How it ended.
    pub ending: Ending,
    /// Wall time.
    pub elapsed: Duration,
    /// Output locations.
    pub outputs: Outputs,
}

impl Summary {
    pub(crate) fn new(
        metrics: &Metrics,
        plugins: Vec<PluginStatus>,
        ending: Ending,
        elapsed: Duration,
        outputs: Outputs,
    ) -> Self {
        Summary {
            events_in: Metrics::get(&metrics.events_in),
            events_processed: Metrics::get(&metrics.events_processed),
            events_invalid: Metrics::get(&metrics.events_invalid),
            events_late: Metrics::get(&metrics.events_late),
            raw_rows: Metrics::get(&metrics.raw_rows),
            aggregate_rows: Metrics::get(&metrics.aggregate_rows),
            alerts_by_detector: metrics.alerts_by_detector().into_iter().collect(),
            alerts: Metrics::get(&metrics.alerts),
            dead_letters: Metrics::get(&metrics.dead_letters),
            plugins,
            ending,
            elapsed,
            outputs,
        }
    }
}

fn show_text(text: &Option<String>) -> &str {
    text.as_deref().unwrap_or("-")
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "Clickwatch run summary ({:.1} s, {:?})",
            secs, self.ending
        )?;
        writeln!(
            f,
            "  events processed   {:>10}  ({:.0}/s)",
            self.events_processed,
            self.events_processed as f64 / secs
        )?;
        writeln!(
            f,
            "  invalid / late     {:>10} / {}",
            self.events_invalid, self.events_late
        )?;
        writeln!(f, "  raw rows stored    {:>10}", self.raw_rows)?;
        writeln!(f, "  aggregate rows     {:>10}", self.aggregate_rows)?;
        writeln!(f, "  alerts             {:>10}", self.alerts)?;
        for (detector, n) in &self.alerts_by_detector {
            writeln!(f, "    {detector:<20} {n:>8}")?;
        }
        writeln!(f, "  dead letters       {:>10}", self.dead_letters)?;
        writeln!(f, "  plugins")?;
        for p in &self.plugins {
            writeln!(
                f,
                "    {:<20} {:<8} events {:>9}  failures {}  restarts {}  quarantines {}{}",
                p.name,
                p.version,
                p.stats.events,
                p.stats.failures,
                p.stats.restarts,
                p.stats.quarantines,
                if p.quarantined { "  (quarantined)" } else { "" }
            )?;
        }
        writeln!(f, "  outputs")?;
        writeln!(
            f,
            "    raw events       {}  (table click_events)",
            show_text(&self.outputs.raw)
        )?;
        writeln!(
            f,
            "    aggregates       {}",
            show_text(&self.outputs.aggregates)
        )?;
        writeln!(
            f,
            "    alerts           {}",
            show_text(&self.outputs.alerts)
        )?;
        write!(
            f,
            "    dead letters     {}",
            show_text(&self.outputs.dead_letters)
        )
    }
}

/// Where a run wrote its outputs.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    /// Raw events store (a file, or a database URL without password).
    pub raw: Option<String>,
    /// Aggregates database.
    pub aggregates: Option<String>,
    /// Alerts file or topic.
    pub alerts: Option<String>,
    /// Dead-letter file or topic.
    pub dead_letters: Option<String>,
}

/// Where the outputs of `config` go.
pub fn outputs(config: &Config) -> Outputs {
    let alerts = match &config.sinks.alerts {
        AlertSinkConfig::File(f) => f.path.display().to_string(),
        AlertSinkConfig::Kafka(k) => format!("kafka://{}/{}", k.brokers, k.topic),
    };
    let dead = match &config.sinks.dead_letters {
        DeadLetterConfig::File(f) => f.path.display().to_string(),
        DeadLetterConfig::Kafka(k) => format!("kafka://{}/{}", k.brokers, k.topic),
    };
    let aggregates = match &config.sinks.aggregates {
        AggregateSinkConfig::Sqlite(s) => s.path.display().to_string(),
        AggregateSinkConfig::Bigquery(b) => format!("bigquery://{}/{}", b.project, b.dataset),
    };
    let raw = match &config.sinks.raw {
        RawSinkConfig::Sqlite(s) => s.path.display().to_string(),
        RawSinkConfig::Postgres(p) => p.url.clone(),
        RawSinkConfig::None(_) => "(not kept)".to_owned(),
    };
    Outputs {
        raw: Some(raw),
        aggregates: Some(aggregates),
        alerts: Some(alerts),
        dead_letters: Some(dead),
    }
}
