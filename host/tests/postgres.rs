//! The PostgreSQL raw store against a real server (started by `cargo xtask services up`; the
//! URL comes from CLICKWATCH_TEST_POSTGRES_URL). Without the server these tests fail, loudly.

mod common;

/// The restart test restarts the shared server: it runs alone, the others share the server.
static SERVER: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

use std::sync::Arc;
use std::sync::atomic::Ordering;

use clickwatch::event::{ClickEvent, Properties, encode};
use clickwatch::generator::{Generator, GeneratorSettings};
use clickwatch::metrics::Metrics;
use clickwatch::pipeline::{self, Ending};
use clickwatch::sink::RawSink;
use clickwatch::sink::postgres::PostgresRawSink;
use common::{config_with_raw, pg_settings, service, unique, wait_until, wasm};

fn server_url() -> String {
    std::env::var("CLICKWATCH_TEST_POSTGRES_URL")
        .expect("PostgreSQL is needed: run `cargo xtask services up` and export the URL it prints (or use `cargo xtask test`)")
}

/// A fresh database on the test server, migrated unless `migrate` is false. Returns its URL.
async fn fresh_database(migrate: bool) -> String {
    common::fresh_postgres(&server_url(), &unique("t"), migrate).await
}

fn events(seed: u64, n: usize) -> Vec<ClickEvent> {
    Generator::new(GeneratorSettings {
        seed,
        ..GeneratorSettings::default()
    })
    .take(n)
}

async fn count(url: &str) -> i64 {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    sqlx::query_scalar("SELECT COUNT(*) FROM click_events")
        .fetch_one(&pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn n_events_are_stored_exactly_once_even_when_delivered_twice() {
    let _server = SERVER.read().await;
    let url = fresh_database(true).await;
    let mut sink = PostgresRawSink::open(&pg_settings(&url)).await.unwrap();
    let batch = events(1, 5_000);
    assert_eq!(sink.write(&batch).await.unwrap().stored, 5_000);
    let again = sink.write(&batch).await.unwrap();
    assert_eq!((again.stored, again.rejected.len()), (0, 0));
    assert_eq!(count(&url).await, 5_000);
    // Part stored already, part new, and one event twice in the batch itself: the direct
    // COPY is refused by the key and the staged path stores exactly the new ones.
    let mut mixed = events(1, 7_500);
    assert_eq!(mixed[..5_000], batch[..], "same seed, same events");
    mixed.push(mixed[6_000].clone());
    let part = sink.write(&mixed).await.unwrap();
    assert_eq!((part.stored, part.rejected.len()), (2_500, 0));
    assert_eq!(count(&url).await, 7_500);
    // Typed columns: timestamptz, inet, jsonb.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let (time, ip, price): (String, Option<String>, Option<f64>) = sqlx::query_as(
        "SELECT to_char(event_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS'), host(ip), (properties->>'price')::float8 \
         FROM click_events WHERE event_id = $1",
    )
    .bind(&batch[0].event_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        format!("{time}Z"),
        clickwatch::event::format_time(batch[0].time_ms)
    );
    assert_eq!(ip.as_deref(), batch[0].ip.as_deref());
    assert_eq!(
        price,
        batch[0]
            .properties
            .as_ref()
            .and_then(|p| p.get("price"))
            .and_then(|v| v.as_f64())
    );
}

#[tokio::test]
async fn properties_are_stored_as_sent_even_numbers_beyond_a_double() {
    let _server = SERVER.read().await;
    let url = fresh_database(true).await;
    let mut sink = PostgresRawSink::open(&pg_settings(&url)).await.unwrap();
    let mut batch = events(4, 10);
    let text = r#"{"big":123456789012345678901234567890,"price":0.1000}"#;
    batch[3].properties = Some(Properties::parse(text).unwrap());
    // Read back through the wire format, as the sources do.
    let event = clickwatch::event::decode(encode(&batch[3]).as_bytes()).unwrap();
    assert_eq!(
        event.properties.as_ref().map(Properties::as_str),
        Some(text)
    );
    assert_eq!(sink.write(&[event]).await.unwrap().stored, 1);
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let (big, price): (String, String) = sqlx::query_as(
        "SELECT properties->>'big', properties->>'price' FROM click_events WHERE event_id = $1",
    )
    .bind(&batch[3].event_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (big.as_str(), price.as_str()),
        ("123456789012345678901234567890", "0.1000")
    );
}

#[tokio::test]
async fn a_row_the_server_rejects_is_isolated_and_its_siblings_stored() {
    let _server = SERVER.read().await;
    let url = fresh_database(true).await;
    let mut sink = PostgresRawSink::open(&pg_settings(&url)).await.unwrap();
    let mut batch = events(2, 300);
    // jsonb cannot hold \u0000: valid JSON, refused by PostgreSQL.
    let mut bad = serde_json::Map::new();
    bad.insert(
        "note".into(),
        serde_json::Value::String("nul \u{0} inside".into()),
    );
    batch[137].properties = Properties::from_map(&bad);
    let written = sink.write(&batch).await.unwrap();
    assert_eq!(written.stored, 299);
    assert_eq!(written.rejected.len(), 1);
    assert_eq!(written.rejected[0].0, 137);
    assert!(
        written.rejected[0]
            .1
            .contains("unsupported Unicode escape sequence (SQLSTATE 22P05)"),
        "{}",
        written.rejected[0].1
    );
    assert_eq!(count(&url).await, 299);
}

#[tokio::test]
async fn an_unmigrated_database_names_the_command_to_run() {
    let _server = SERVER.read().await;
    let url = fresh_database(false).await;
    let err = PostgresRawSink::open(&pg_settings(&url))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("schema is at version 0") && err.contains("clickwatch db migrate"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_mid_run_loses_nothing_and_rejects_go_to_dead_letters() {
    let _server = SERVER.write().await;
    let url = fresh_database(true).await;
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::write(plugins.join("page-traffic.wasm"), wasm("page-traffic")).unwrap();
    let raw = format!("type = \"postgres\"\nurl = \"{url}\"");
    let source = "type = \"generator\"\nrate = 20000\nseed = 9";
    let metrics = Arc::new(Metrics::default());
    let m = metrics.clone();
    let shutdown = async move {
        let processed = || m.events_processed.load(Ordering::Relaxed);
        wait_until("events flowed", || processed() > 5_000).await;
        // An outage: stop the server, wait until the sink has failed and is retrying (the
        // pipeline is stalled behind it), then bring the server back.
        service("postgres", "stop").await;
        wait_until("the sink noticed the outage", || {
            m.sink_retries.load(Ordering::Relaxed) > 0
        })
        .await;
        service("postgres", "up").await;
        let at = processed();
        wait_until("events flowed after the restart", || {
            processed() > at + 10_000
        })
        .await;
        Ending::Exhausted
    };
    let summary = pipeline::run(
        config_with_raw(source, &plugins, dir.path(), &raw),
        metrics.clone(),
        shutdown,
    )
    .await
    .unwrap();
    assert_eq!(
        count(&url).await as u64,
        summary.events_in,
        "every event read is stored once"
    );
    assert_eq!(summary.raw_rows, summary.events_in);

    // The same pipeline over a file with one event PostgreSQL refuses: dead-lettered with the
    // server's reason, the rest stored.
    let url = fresh_database(true).await;
    let mut batch = events(3, 1_000);
    let mut bad = serde_json::Map::new();
    bad.insert("note".into(), serde_json::Value::String("\u{0}".into()));
    batch[500].properties = Properties::from_map(&bad);
    let input = dir.path().join("events.jsonl");
    std::fs::write(
        &input,
        batch.iter().map(encode).collect::<Vec<_>>().join("\n"),
    )
    .unwrap();
    let raw = format!("type = \"postgres\"\nurl = \"{url}\"");
    let source = format!("type = \"file\"\npath = \"{}\"", input.display());
    let out = dir.path().join("second");
    std::fs::create_dir(&out).unwrap();
    let summary = pipeline::run(
        config_with_raw(&source, &plugins, &out, &raw),
        Arc::new(Metrics::default()),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(summary.raw_rows, 999);
    assert_eq!(count(&url).await, 999);
    let dead = std::fs::read_to_string(out.join("dead.jsonl")).unwrap();
    let dead: Vec<serde_json::Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["reason"], "sink_rejected");
    assert!(
        dead[0]["payload"]
            .as_str()
            .unwrap()
            .contains(&batch[500].event_id)
    );
}

#[tokio::test]
async fn kafka_coordinates_are_kept_per_event_even_when_a_row_is_refused() {
    let _server = SERVER.read().await;
    let url = fresh_database(true).await;
    let mut sink = PostgresRawSink::open(&pg_settings(&url)).await.unwrap();
    // Large enough for the two-writer path; one row PostgreSQL refuses, so the bisection
    // must split the coordinates with the events.
    let mut batch = events(9, 3_000);
    let mut bad = serde_json::Map::new();
    bad.insert("note".into(), serde_json::Value::String("nul \u{0}".into()));
    batch[2_345].properties = Properties::from_map(&bad);
    let sources: Vec<(i32, i64)> = (0..batch.len())
        .map(|i| ((i % 3) as i32, 10_000 + i as i64))
        .collect();
    let written = sink.write_with_sources(&batch, &sources).await.unwrap();
    assert_eq!(written.stored, 2_999);
    assert_eq!(written.rejected.len(), 1);
    assert_eq!(written.rejected[0].0, 2_345);
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let rows: Vec<(String, Option<i32>, Option<i64>)> =
        sqlx::query_as("SELECT event_id, source_partition, source_offset FROM click_events")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 2_999);
    let index: std::collections::HashMap<&str, usize> = batch
        .iter()
        .enumerate()
        .map(|(i, e)| (e.event_id.as_str(), i))
        .collect();
    for (id, partition, offset) in rows {
        let i = index[id.as_str()];
        assert_eq!(
            (partition, offset),
            (Some(sources[i].0), Some(sources[i].1)),
            "event {i}"
        );
    }
}
