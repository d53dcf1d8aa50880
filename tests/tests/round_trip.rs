//! The round trip a user runs: records on a Kafka topic → the `clickwatch` binary → every raw
//! event in PostgreSQL, aggregates in BigQuery (the emulator), alerts and dead letters on Kafka
//! topics. Checked against the input itself, not against another run: the page views per page
//! and window in BigQuery are counted from the records produced, the raw rows are the valid
//! events' ids, the dead letters the poison records with their reasons.

use std::collections::{BTreeMap, BTreeSet};

use clickwatch::event::{EventKind, decode};
use clickwatch::sink::bigquery::{BigQuerySettings, BigQuerySink, Credentials};
use clickwatch_e2e::input::input;
use clickwatch_e2e::kafka::{create_topic, produce, producer, read_to_end};
use clickwatch_e2e::outcome::dead_letters;
use clickwatch_e2e::postgres::raw_ids;
use clickwatch_e2e::run::{Aggregates, BIGQUERY_PROJECT, Run};
use clickwatch_e2e::services::{bigquery, unique};
use gcp_bigquery_client::model::query_request::QueryRequest;
use gcp_bigquery_client::model::query_response::ResultSet;

const WINDOW_MS: i64 = 60_000;

/// A timestamp as the REST API returns it: BigQuery sends seconds as a decimal string
/// (`1.78999998E9`), the emulator whole microseconds (`1789999980000000`); told apart by size
/// (any date after 1973 in microseconds is above 1e14, any in seconds far below).
fn millis(text: &str) -> i64 {
    match text.parse::<f64>() {
        Ok(micros) if micros.abs() >= 1e14 => (micros / 1000.0).round() as i64,
        Ok(seconds) => (seconds * 1000.0).round() as i64,
        Err(_) => chrono::DateTime::parse_from_rfc3339(text)
            .unwrap_or_else(|e| panic!("timestamp {text:?}: {e}"))
            .timestamp_millis(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_to_postgres_bigquery_and_kafka() {
    let input = input(73, 6_000);
    let topic = unique("trip_in");
    create_topic(&topic, 3).await;
    let landed = produce(&producer(), &topic, &input.records).await;
    assert_eq!(landed.len(), input.records.len(), "every record produced");

    let root = tempfile::tempdir().expect("temp dir");
    let dataset = unique("trip");
    let run = Run::new(
        "trip",
        root.path(),
        &topic,
        &["page-traffic", "bot-detector"],
        "",
        &Aggregates::BigQuery {
            dataset: dataset.clone(),
        },
    )
    .await;
    let mut host = run.start();
    run.finish(&mut host, &input).await;
    let (status, _) = host.terminate(std::time::Duration::from_secs(30));
    assert!(status.success(), "the host exits 0 on SIGTERM ({status})");

    // PostgreSQL: every valid event once, nothing else.
    let ids = raw_ids(&run.db).await;
    assert!(ids.values().all(|n| *n == 1), "an event stored twice");
    let ids: BTreeSet<String> = ids.into_keys().collect();
    assert_eq!(
        ids, input.stored_ids,
        "the raw store holds the valid events"
    );

    // BigQuery: page views per (window, url), as counted from the records produced: every
    // record the decoder accepts reaches the plugins (also the one PostgreSQL then refuses).
    // BigQuery is append-only: the documented reading is the latest `ingest_time` per key.
    let mut expected: BTreeMap<(i64, String), i64> = BTreeMap::new();
    for (_, bytes) in &input.records {
        let Ok(event) = decode(bytes) else { continue };
        if event.kind == EventKind::PageView && event.time_ms < input.cutoff_ms {
            let start = event.time_ms.div_euclid(WINDOW_MS) * WINDOW_MS;
            *expected.entry((start, event.url)).or_default() += 1;
        }
    }
    let sink = BigQuerySink::open(BigQuerySettings {
        project: BIGQUERY_PROJECT.into(),
        dataset: dataset.clone(),
        location: None,
        credentials: Credentials::StaticToken("test".into()),
        endpoint: Some(format!("{}/bigquery/v2", bigquery().trim_end_matches('/'))),
    })
    .await
    .expect("the BigQuery emulator");
    let response = sink
        .client()
        .job()
        .query(
            BIGQUERY_PROJECT,
            QueryRequest::new(format!(
                "SELECT window_start, url, views, ingest_time FROM {dataset}.page_traffic"
            )),
        )
        .await
        .expect("query page_traffic");
    let mut rows = ResultSet::new_from_query_response(response);
    let mut latest: BTreeMap<(i64, String), (i64, i64)> = BTreeMap::new();
    while rows.next_row() {
        let text = |name: &str| {
            rows.get_string_by_name(name)
                .unwrap_or_else(|e| panic!("column {name}: {e}"))
                .unwrap_or_else(|| panic!("column {name} is null"))
        };
        let key = (millis(&text("window_start")), text("url"));
        let (ingest, views) = (
            millis(&text("ingest_time")),
            text("views").parse::<i64>().expect("views"),
        );
        if key.0 >= input.cutoff_ms {
            continue;
        }
        let slot = latest.entry(key).or_insert((ingest, views));
        if ingest >= slot.0 {
            *slot = (ingest, views);
        }
    }
    let got: BTreeMap<(i64, String), i64> = latest
        .into_iter()
        .map(|(k, (_, views))| (k, views))
        .collect();
    let wrong: Vec<_> = expected
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(*v))
        .take(5)
        .map(|(k, v)| (k, v, got.get(k)))
        .collect();
    assert!(
        wrong.is_empty() && got.len() == expected.len(),
        "page_traffic in BigQuery differs from the input ({} keys vs {} expected): (key, expected, got) {wrong:?}",
        got.len(),
        expected.len()
    );

    // Kafka: dead letters are the poison records with their reasons; the bot the input
    // carries is alerted.
    let (alerts_topic, dead_topic) = (run.alerts_topic.clone(), run.dead_topic.clone());
    let (alerts, dead) =
        tokio::task::spawn_blocking(move || (read_to_end(&alerts_topic), read_to_end(&dead_topic)))
            .await
            .expect("join");
    let reasons: BTreeSet<String> = dead_letters(&dead).into_iter().map(|(_, r)| r).collect();
    let poison: BTreeSet<String> = input.poison.iter().map(|p| p.reason.to_owned()).collect();
    assert_eq!(
        reasons, poison,
        "every poison kind dead-lettered with its reason"
    );
    assert_eq!(
        dead.len(),
        input.poison.len(),
        "one dead letter per poison record"
    );
    let bot_alerts = alerts
        .iter()
        .map(|a| serde_json::from_slice::<serde_json::Value>(a).expect("an alert is JSON"))
        .filter(|a| a["detector"] == "bot-detector")
        .count();
    assert!(
        bot_alerts > 0,
        "the injected bot is alerted by bot-detector"
    );
    eprintln!(
        "round trip: {} raw rows, {} page_traffic keys equal to the input, {} dead letters, {bot_alerts} bot alerts",
        ids.len(),
        got.len(),
        dead.len()
    );
}
