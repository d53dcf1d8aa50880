//! Kafka against a real Apache Kafka broker (started by `cargo xtask services up kafka`; its
//! address comes from KAFKA_BROKERS). Without the broker these tests fail, loudly.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use clickwatch::event::decode;
use clickwatch::generator::{Generator, GeneratorSettings};
use clickwatch::metrics::Metrics;
use clickwatch::pipeline::{self, Ending};
use common::kafka::{brokers, read_records};
use common::{unique, wait_until, wasm};

#[tokio::test]
async fn generated_events_reach_the_topic_keyed_by_session() {
    let topic = unique("clicks");
    let producer = clickwatch::kafka::producer(&brokers()).unwrap();
    let mut generator = Generator::new(GeneratorSettings {
        seed: 3,
        ..GeneratorSettings::default()
    });
    let report = clickwatch::kafka::produce_generated(
        &producer,
        &topic,
        &mut generator,
        50_000,
        Some(5_000),
        None,
        |_, _| {},
    )
    .await;
    assert_eq!((report.sent, report.errors), (5_000, 0));
    let records = read_records(&topic, 5_000).await;
    assert_eq!(records.len(), 5_000);
    let mut ids = HashSet::new();
    for (key, value) in &records {
        let event = decode(value.as_bytes()).expect("a valid event");
        assert_eq!(key, &event.session_id, "records are keyed by session id");
        ids.insert(event.event_id);
    }
    assert_eq!(ids.len(), 5_000, "every event exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_arrive_on_the_topic_in_the_documented_schema() {
    let (alerts, dead) = (unique("alerts"), unique("dead"));
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::write(plugins.join("bot-detector.wasm"), wasm("bot-detector")).unwrap();
    let text = format!(
        "[source]\ntype = \"generator\"\nrate = 20000\nseed = 8\nbot_fraction = 0.05\n[plugins]\ndir = \"{}\"\n\
         [sinks.raw]\ntype = \"sqlite\"\npath = \"{o}/db.sqlite\"\n[sinks.aggregates]\ntype = \"sqlite\"\npath = \"{o}/db.sqlite\"\n\
         [sinks.alerts]\ntype = \"kafka\"\nbrokers = \"{b}\"\ntopic = \"{alerts}\"\n\
         [sinks.dead_letters]\ntype = \"kafka\"\nbrokers = \"{b}\"\ntopic = \"{dead}\"\n",
        plugins.display(),
        o = dir.path().display(),
        b = brokers()
    );
    let config = clickwatch::config::parse(std::path::Path::new("test.toml"), &text, []).unwrap();
    let metrics = Arc::new(Metrics::default());
    let m = metrics.clone();
    let shutdown = async move {
        wait_until("alerts were published", || {
            m.alerts.load(Ordering::Relaxed) >= 5
        })
        .await;
        Ending::Exhausted
    };
    let summary = pipeline::run(config, metrics, shutdown).await.unwrap();
    assert!(summary.alerts >= 5);
    let records = read_records(&alerts, summary.alerts as usize).await;
    assert_eq!(
        records.len() as u64,
        summary.alerts,
        "every alert is on the topic"
    );
    for (key, value) in &records {
        let alert: serde_json::Value = serde_json::from_str(value).expect("alert JSON");
        for field in [
            "alert_id",
            "detector",
            "detector_version",
            "kind",
            "severity",
            "entity_type",
            "entity",
            "event_time",
            "window_start",
            "score",
            "message",
            "details",
        ] {
            assert!(
                alert.get(field).is_some(),
                "field {field} missing in {value}"
            );
        }
        assert_eq!(alert["detector"], "bot-detector");
        let entity_type = alert["entity_type"].as_str().unwrap();
        assert!(
            ["session", "ip"].contains(&entity_type),
            "bot-detector alerts are about sessions or IPs: {value}"
        );
        assert_eq!(
            key,
            alert["entity"].as_str().unwrap(),
            "alerts are keyed by their entity"
        );
        assert_eq!(alert["alert_id"].as_str().unwrap().len(), 16);
    }
}
