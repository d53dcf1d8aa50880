//! The embedded pipeline end to end on a file source: malformed records are dead-lettered with a
//! reason and counted, every valid event is stored once, aggregates and alerts come out, and a
//! replay of the same file stores nothing twice; a store outage is waited out without loss.

mod common;

use std::sync::Arc;

use clickwatch::event::encode;
use clickwatch::generator::{Generator, GeneratorSettings};
use clickwatch::metrics::Metrics;
use clickwatch::pipeline::{self, Ending};
use common::{config, wasm};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_with_bad_records_is_processed_and_bad_ones_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::write(plugins.join("page-traffic.wasm"), wasm("page-traffic")).unwrap();
    std::fs::write(plugins.join("bot-detector.wasm"), wasm("bot-detector")).unwrap();

    let mut generator = Generator::new(GeneratorSettings {
        seed: 11,
        bot_fraction: 0.05,
        ..GeneratorSettings::default()
    });
    let events = generator.take(20_000);
    let bad = [
        "{not json",
        r#"{"event_id":"x"}"#,
        r#"{"event_id":"y","event_time":"2026-01-01T00:00:00Z","event_type":"warp","session_id":"s","url":"/"}"#,
    ];
    let mut lines: Vec<String> = events.iter().map(encode).collect();
    for (i, b) in bad.iter().enumerate() {
        lines.insert(1_000 * (i + 1), (*b).to_owned());
    }
    let input = dir.path().join("events.jsonl");
    std::fs::write(&input, lines.join("\n")).unwrap();

    let source = format!("type = \"file\"\npath = \"{}\"", input.display());
    let metrics = Arc::new(Metrics::default());
    let summary = pipeline::run(
        config(&source, &plugins, dir.path()),
        metrics,
        std::future::pending::<Ending>(),
    )
    .await
    .unwrap();
    assert_eq!(summary.ending, Ending::Exhausted);
    assert_eq!(summary.events_in, 20_000);
    assert_eq!(summary.events_invalid, 3);
    assert_eq!(summary.raw_rows, 20_000);
    assert!(
        summary.aggregate_rows > 0,
        "page-traffic windows must close at the end of the input"
    );
    assert!(
        summary
            .alerts_by_detector
            .iter()
            .any(|(d, n)| d == "bot-detector" && *n > 0),
        "bots must be detected"
    );

    let dead = std::fs::read_to_string(dir.path().join("dead.jsonl")).unwrap();
    let dead: Vec<serde_json::Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dead.len(), 3);
    assert_eq!(dead[0]["reason"], "malformed_json");
    assert_eq!(dead[0]["payload"], "{not json");
    assert!(dead[0]["origin"].as_str().unwrap().ends_with(":1001"));
    assert!(
        dead[1]["detail"]
            .as_str()
            .unwrap()
            .contains("missing field")
    );
    assert!(
        dead[2]["detail"]
            .as_str()
            .unwrap()
            .contains("unknown variant `warp`")
    );

    let alerts = std::fs::read_to_string(dir.path().join("alerts.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(alerts.lines().next().unwrap()).unwrap();
    assert_eq!(first["detector"], "bot-detector");
    assert_eq!(first["entity_type"], "session");

    // Replaying the same file stores no raw event twice and rewrites, not adds, aggregates.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}/db.sqlite", dir.path().display()))
        .await
        .unwrap();
    let windows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM page_traffic")
        .fetch_one(&pool)
        .await
        .unwrap();
    let views: i64 = sqlx::query_scalar("SELECT SUM(views) FROM page_traffic")
        .fetch_one(&pool)
        .await
        .unwrap();
    let again = pipeline::run(
        config(&source, &plugins, dir.path()),
        Arc::new(Metrics::default()),
        std::future::pending::<Ending>(),
    )
    .await
    .unwrap();
    assert_eq!(again.raw_rows, 0, "a replay must store nothing twice");
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM click_events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 20_000);
    let windows_after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM page_traffic")
        .fetch_one(&pool)
        .await
        .unwrap();
    let views_after: i64 = sqlx::query_scalar("SELECT SUM(views) FROM page_traffic")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        (windows_after, views_after),
        (windows, views),
        "aggregates must be upserted by key"
    );
    let page_views = events
        .iter()
        .filter(|e| e.kind == clickwatch::event::EventKind::PageView)
        .count() as i64;
    assert_eq!(
        views, page_views,
        "every page view is counted in exactly one window"
    );
}

/// An aggregate store that is down for its first `outage` writes (a transient error each
/// time), then passes writes on.
struct Flaky {
    inner: Box<dyn clickwatch::sink::AggregateSink>,
    outage: usize,
}

#[async_trait::async_trait]
impl clickwatch::sink::AggregateSink for Flaky {
    async fn ensure_table(
        &mut self,
        table: &clickwatch::aggregate::TableSchema,
    ) -> Result<(), clickwatch::sink::SinkError> {
        self.inner.ensure_table(table).await
    }
    async fn write(
        &mut self,
        rows: &[clickwatch::aggregate::AggregateRow],
    ) -> Result<Vec<(usize, String)>, clickwatch::sink::SinkError> {
        if self.outage > 0 {
            self.outage -= 1;
            return Err(clickwatch::sink::SinkError::transient(
                "flaky",
                "down for maintenance",
            ));
        }
        self.inner.write(rows).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregate_store_outage_is_waited_out_and_no_row_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::write(plugins.join("page-traffic.wasm"), wasm("page-traffic")).unwrap();
    let events = Generator::new(GeneratorSettings {
        seed: 12,
        ..GeneratorSettings::default()
    })
    .take(10_000);
    let page_views = events
        .iter()
        .filter(|e| e.kind == clickwatch::event::EventKind::PageView)
        .count() as i64;
    let input = dir.path().join("events.jsonl");
    let text: Vec<String> = events.iter().map(encode).collect();
    std::fs::write(&input, text.join("\n")).unwrap();

    let config = config(
        &format!("type = \"file\"\npath = \"{}\"", input.display()),
        &plugins,
        dir.path(),
    );
    let metrics = Arc::new(Metrics::default());
    let mut parts = pipeline::parts(&config, &metrics).await.expect("parts");
    // The real store behind a fault-injecting one: the pipeline is built from parts.
    parts.sinks.aggregates = Box::new(Flaky {
        inner: parts.sinks.aggregates,
        outage: 4,
    });
    let summary = pipeline::run_with(config, parts, metrics.clone(), std::future::pending())
        .await
        .expect("pipeline");
    assert_eq!(summary.ending, Ending::Exhausted);
    assert!(
        Metrics::get(&metrics.sink_retries) >= 4,
        "the outage was retried"
    );
    let views = common::sqlite_scalar(dir.path(), "SELECT SUM(views) FROM page_traffic").await;
    assert_eq!(
        views, page_views,
        "every page view counted once after the outage"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_output_the_host_refuses_is_dead_lettered_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::write(plugins.join("chaos.wasm"), wasm("chaos")).unwrap();
    let mut generator = Generator::new(GeneratorSettings {
        seed: 5,
        ..GeneratorSettings::default()
    });
    let lines: Vec<String> = generator.take(3_000).iter().map(encode).collect();
    let input = dir.path().join("events.jsonl");
    std::fs::write(&input, lines.join("\n")).unwrap();
    let source = format!("type = \"file\"\npath = \"{}\"", input.display());
    let mut config = config(&source, &plugins, dir.path());
    config.plugins.settings.insert(
        "chaos".into(),
        toml::from_str(r#"mode = "bad-output""#).unwrap(),
    );
    let metrics = Arc::new(Metrics::default());
    let summary = pipeline::run(config, metrics.clone(), std::future::pending::<Ending>())
        .await
        .unwrap();
    assert_eq!(summary.events_processed, 3_000);

    let read = |name: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.path().join(name))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    // Every batch made one good alert, one oversized alert and one row for an undeclared
    // table: the good alerts are delivered, the rest dead-lettered with a reason each.
    let alerts = read("alerts.jsonl");
    let batches = alerts.len();
    assert!(batches >= 6, "3 000 events in batches of at most 500");
    assert!(alerts.iter().all(|a| a["kind"] == "chaos-ok"));
    let dead = read("dead.jsonl");
    let count = |reason: &str| dead.iter().filter(|d| d["reason"] == reason).count();
    assert_eq!(count("plugin_row_invalid"), batches);
    assert_eq!(count("plugin_alert_invalid"), batches);
    assert_eq!(dead.len(), 2 * batches);
    let row = dead
        .iter()
        .find(|d| d["reason"] == "plugin_row_invalid")
        .unwrap();
    assert!(row["detail"].as_str().unwrap().contains("chaos_undeclared"));
    assert!(row["origin"].as_str().unwrap().starts_with("plugin chaos@"));
    assert!(
        row["payload"]
            .as_str()
            .unwrap()
            .contains("chaos_undeclared")
    );
    let refused: u64 = metrics
        .plugins
        .all()
        .iter()
        .map(|(_, m, _)| m.refused.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    assert_eq!(refused as usize, 2 * batches);
    assert_eq!(
        metrics.dead_letters_by_reason().get("plugin_row_invalid"),
        Some(&(batches as u64))
    );
}
