//! The BigQuery aggregate sink against the `bqemulator` BigQuery API emulator (started by
//! `cargo xtask services up bigquery`; its URL comes from BIGQUERY_EMULATOR). Without the
//! emulator these tests fail, loudly.
//!
//! The emulator ignores insertId, so de-duplication by insert id cannot be shown here; the ids'
//! determinism is unit-tested in `sink/bigquery/insert_id.rs`.

mod common;

/// The restart test restarts the shared server: it runs alone, the others share the server.
static SERVER: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use clickwatch::aggregate::{AggregateRow, ColumnSchema, ColumnType, TableSchema, Value};
use clickwatch::event::{EventKind, encode};
use clickwatch::generator::{Generator, GeneratorSettings};
use clickwatch::metrics::Metrics;
use clickwatch::pipeline::{self, Ending};
use clickwatch::sink::AggregateSink;
use clickwatch::sink::bigquery::{BigQuerySettings, BigQuerySink, Credentials};
use common::{service, unique, wait_until, wasm};
use gcp_bigquery_client::model::query_request::QueryRequest;
use gcp_bigquery_client::model::query_response::ResultSet;

const PROJECT: &str = "test-project";

fn endpoint() -> String {
    let base = std::env::var("BIGQUERY_EMULATOR")
        .expect("the BigQuery emulator is needed: run `cargo xtask services up bigquery` and export BIGQUERY_EMULATOR (or use `cargo xtask test`)");
    format!("{}/bigquery/v2", base.trim_end_matches('/'))
}

fn settings(dataset: &str) -> BigQuerySettings {
    BigQuerySettings {
        project: PROJECT.into(),
        dataset: dataset.into(),
        location: None,
        credentials: Credentials::StaticToken("test".into()),
        endpoint: Some(endpoint()),
    }
}

async fn query(sink: &BigQuerySink, sql: &str) -> ResultSet {
    let response = sink
        .client()
        .job()
        .query(PROJECT, QueryRequest::new(sql))
        .await
        .expect("query");
    ResultSet::new_from_query_response(response)
}

fn aggregates_toml(dataset: &str) -> String {
    format!(
        "type = \"bigquery\"\nproject = \"{PROJECT}\"\ndataset = \"{dataset}\"\nendpoint = \"{}\"\ntoken = \"test\"",
        endpoint()
    )
}

fn pipeline_config(
    source: &str,
    plugins: &std::path::Path,
    out: &std::path::Path,
    dataset: &str,
) -> clickwatch::config::Config {
    let text = format!(
        "[source]\n{source}\n[pipeline]\nbatch_size = 500\nbatch_linger_ms = 20\nallowed_lateness_ms = 1000\nidle_advance_ms = 60000\n\
         [plugins]\ndir = \"{}\"\n[sinks.raw]\ntype = \"sqlite\"\npath = \"{o}/db.sqlite\"\n[sinks.aggregates]\n{}\n\
         [sinks.alerts]\ntype = \"file\"\npath = \"{o}/alerts.jsonl\"\nstdout = false\n[sinks.dead_letters]\ntype = \"file\"\npath = \"{o}/dead.jsonl\"\n",
        plugins.display(),
        aggregates_toml(dataset),
        o = out.display()
    );
    clickwatch::config::parse(std::path::Path::new("test.toml"), &text, []).expect("config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_traffic_rows_land_and_a_group_by_returns_the_expected_sums() {
    let _server = SERVER.read().await;
    let dataset = unique("pt");
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::write(plugins.join("page-traffic.wasm"), wasm("page-traffic")).unwrap();
    let events = Generator::new(GeneratorSettings {
        seed: 4,
        ..GeneratorSettings::default()
    })
    .take(5_000);
    let input = dir.path().join("events.jsonl");
    std::fs::write(
        &input,
        events.iter().map(encode).collect::<Vec<_>>().join("\n"),
    )
    .unwrap();
    let source = format!("type = \"file\"\npath = \"{}\"", input.display());
    let summary = pipeline::run(
        pipeline_config(&source, &plugins, dir.path(), &dataset),
        Arc::new(Metrics::default()),
        std::future::pending::<Ending>(),
    )
    .await
    .unwrap();
    assert!(summary.aggregate_rows > 0);
    assert_eq!(summary.dead_letters, 0);

    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for e in events.iter().filter(|e| e.kind == EventKind::PageView) {
        *expected.entry(e.url.clone()).or_default() += 1;
    }
    let sink = BigQuerySink::open(settings(&dataset)).await.unwrap();
    let mut rs = query(
        &sink,
        &format!("SELECT url, SUM(views) AS total FROM {dataset}.page_traffic GROUP BY url"),
    )
    .await;
    let mut got: BTreeMap<String, i64> = BTreeMap::new();
    while rs.next_row() {
        got.insert(
            rs.get_string_by_name("url").unwrap().unwrap(),
            rs.get_i64_by_name("total").unwrap().unwrap(),
        );
    }
    assert_eq!(
        got, expected,
        "page views per url in BigQuery must equal the page views generated"
    );
}

fn table_v1(name: &str) -> TableSchema {
    TableSchema {
        name: name.into(),
        columns: vec![
            ColumnSchema {
                name: "k".into(),
                ty: ColumnType::Text,
                nullable: false,
            },
            ColumnSchema {
                name: "n".into(),
                ty: ColumnType::Int64,
                nullable: false,
            },
        ],
        key: vec!["k".into()],
    }
}

fn row(table: &str, k: &str, n: Value) -> AggregateRow {
    AggregateRow {
        table: table.into(),
        values: vec![Value::Text(k.into()), n],
    }
}

#[tokio::test]
async fn a_rejected_row_is_reported_while_its_siblings_are_stored() {
    let _server = SERVER.read().await;
    let dataset = unique("rej");
    let mut sink = BigQuerySink::open(settings(&dataset)).await.unwrap();
    sink.ensure_table(&table_v1("t")).await.unwrap();
    let rows = vec![
        row("t", "a", Value::Int64(1)),
        row("t", "b", Value::Text("not a number".into())),
        row("t", "c", Value::Int64(3)),
    ];
    let rejected = sink.write(&rows).await.unwrap();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].0, 1);
    let mut rs = query(
        &sink,
        &format!("SELECT COUNT(*) AS n, SUM(n) AS s FROM {dataset}.t"),
    )
    .await;
    assert!(rs.next_row());
    assert_eq!(
        (
            rs.get_i64_by_name("n").unwrap(),
            rs.get_i64_by_name("s").unwrap()
        ),
        (Some(2), Some(4))
    );
}

#[tokio::test]
async fn tables_gain_new_nullable_columns_and_refuse_type_changes() {
    let _server = SERVER.read().await;
    let dataset = unique("evo");
    let mut sink = BigQuerySink::open(settings(&dataset)).await.unwrap();
    sink.ensure_table(&table_v1("t")).await.unwrap();
    sink.write(&[row("t", "a", Value::Int64(1))]).await.unwrap();
    let mut v2 = table_v1("t");
    v2.columns.push(ColumnSchema {
        name: "note".into(),
        ty: ColumnType::Text,
        nullable: true,
    });
    sink.ensure_table(&v2).await.unwrap();
    let rejected = sink
        .write(&[AggregateRow {
            table: "t".into(),
            values: vec![
                Value::Text("b".into()),
                Value::Int64(2),
                Value::Text("hi".into()),
            ],
        }])
        .await
        .unwrap();
    assert!(rejected.is_empty(), "{rejected:?}");
    let mut rs = query(
        &sink,
        &format!("SELECT k, note FROM {dataset}.t ORDER BY k"),
    )
    .await;
    let mut got = Vec::new();
    while rs.next_row() {
        got.push((
            rs.get_string_by_name("k").unwrap().unwrap(),
            rs.get_string_by_name("note").unwrap(),
        ));
    }
    assert_eq!(
        got,
        vec![
            ("a".to_string(), None),
            ("b".to_string(), Some("hi".to_string()))
        ]
    );
    let mut v3 = v2.clone();
    v3.columns[1].ty = ColumnType::Float64;
    let err = sink.ensure_table(&v3).await.unwrap_err();
    assert!(!err.retryable && err.message.contains("column n"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emulator_restart_mid_run_loses_nothing() {
    let _server = SERVER.write().await;
    let dataset = unique("restart");
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::write(plugins.join("counter.wasm"), wasm("counter")).unwrap();
    let metrics = Arc::new(Metrics::default());
    let m = metrics.clone();
    let shutdown = async move {
        let processed = || m.events_processed.load(Ordering::Relaxed);
        wait_until("events flowed", || processed() > 3_000).await;
        // An outage: stop the server, wait until the sink has failed and is retrying (the
        // pipeline is stalled behind it), then bring the server back.
        service("bigquery", "stop").await;
        wait_until("the sink noticed the outage", || {
            m.sink_retries.load(Ordering::Relaxed) > 0
        })
        .await;
        service("bigquery", "up").await;
        let at = processed();
        wait_until("events flowed after the restart", || {
            processed() > at + 3_000
        })
        .await;
        Ending::Exhausted
    };
    let source = "type = \"generator\"\nrate = 5000\nseed = 12";
    let summary = pipeline::run(
        pipeline_config(source, &plugins, dir.path(), &dataset),
        metrics.clone(),
        shutdown,
    )
    .await
    .unwrap();

    let sink = BigQuerySink::open(settings(&dataset)).await.unwrap();
    // One row per batch keyed by the running total. The emulator does not de-duplicate by
    // insertId, so a request whose response was lost in the restart may appear twice: count
    // each key once.
    let mut rs = query(
        &sink,
        &format!("SELECT SUM(be) AS events, COUNT(*) AS batches FROM (SELECT total, MAX(batch_events) AS be FROM {dataset}.counter_progress GROUP BY total)"),
    )
    .await;
    assert!(rs.next_row());
    let events = rs.get_i64_by_name("events").unwrap().unwrap();
    assert_eq!(
        events as u64, summary.events_processed,
        "rows were lost across the emulator restart"
    );
    assert_eq!(summary.dead_letters, 0);
}
