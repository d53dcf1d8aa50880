//! Kafka helpers for the integration tests: the broker address (tests fail loudly without
//! it), topics, producing with delivery coordinates, reading back, checkpoints and offsets.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use super::unique;

/// The test broker, from KAFKA_BROKERS.
pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS")
        .expect("Kafka is needed: run `cargo xtask services up kafka` and export KAFKA_BROKERS (or use `cargo xtask test`)")
}

pub async fn create_topic(topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let results = admin
        .create_topics(
            [&NewTopic::new(
                topic,
                partitions,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    for r in results {
        r.expect("topic created");
    }
}

/// Sends records in order and returns where each landed (partition, offset).
pub async fn produce(topic: &str, records: &[(String, Vec<u8>)]) -> Vec<(i32, i64)> {
    let producer: FutureProducer = clickwatch::kafka::producer(&brokers()).unwrap();
    let mut out = Vec::with_capacity(records.len());
    // In chunks, so deliveries are concurrent but the queue stays bounded.
    for chunk in records.chunks(2_000) {
        let sends = chunk.iter().map(|(key, value)| {
            producer.send(
                FutureRecord::to(topic).key(key).payload(value),
                Duration::from_secs(10),
            )
        });
        for result in futures_util::future::join_all(sends).await {
            let delivery = result.expect("delivered");
            out.push((delivery.partition, delivery.offset));
        }
    }
    out
}

/// Event ids in a host's raw store (empty if it does not exist yet).
pub async fn stored_ids(db: &Path) -> Vec<String> {
    if !db.exists() {
        return Vec::new();
    }
    let url = format!("sqlite://{}?mode=ro", db.display());
    let Ok(pool) = sqlx::SqlitePool::connect(&url).await else {
        return Vec::new();
    };
    let ids: Vec<(String,)> = sqlx::query_as("SELECT event_id FROM click_events")
        .fetch_all(&pool)
        .await
        .unwrap_or_default();
    pool.close().await;
    ids.into_iter().map(|(id,)| id).collect()
}

/// The counter fixture's total in each partition's last checkpoint.
pub async fn checkpointed_totals(
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> BTreeMap<i32, i64> {
    let store = clickwatch::kafka::StateStore::open(
        &brokers(),
        &format!("{group}.clickwatch-state"),
        group,
    )
    .await
    .unwrap();
    let topic: std::sync::Arc<str> = topic.into();
    let partitions: Vec<clickwatch::source::TopicPartition> = partitions
        .iter()
        .map(|&p| clickwatch::source::TopicPartition::new(&topic, p))
        .collect();
    let states = tokio::task::spawn_blocking(move || store.load(&partitions))
        .await
        .unwrap()
        .unwrap();
    states
        .into_iter()
        .map(|(at, state)| {
            let (_, bytes) = state
                .plugins
                .iter()
                .find(|(name, _)| name == "counter")
                .expect("counter state in the checkpoint");
            let json: serde_json::Value = serde_json::from_slice(bytes).unwrap();
            (at.partition, json["total"].as_i64().unwrap())
        })
        .collect()
}

/// Committed offsets of `group` on `topic`.
pub fn committed(group: &str, topic: &str, partitions: &[i32]) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition(topic, *p);
    }
    let tpl = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    tpl.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// Reads `expected` records of `topic` from the start with a consumer of its own (60 s
/// deadline), as (key, value) text.
pub async fn read_records(topic: &str, expected: usize) -> Vec<(String, String)> {
    let (brokers, topic) = (brokers(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", unique("reader"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        consumer.subscribe(&[&topic]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut out = Vec::new();
        let text = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
        while out.len() < expected && Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                out.push((text(m.key()), text(m.payload())));
            }
        }
        out
    })
    .await
    .unwrap()
}

/// Reads `expected` JSON records of `topic` from the start (60 s deadline).
pub async fn read_topic(topic: &str, expected: usize) -> Vec<serde_json::Value> {
    read_records(topic, expected)
        .await
        .iter()
        .map(|(_, value)| serde_json::from_str(value).unwrap())
        .collect()
}

/// Waits (bounded, 60 s) until `group` has committed `expected` offsets on `topic`.
pub async fn wait_committed(group: &str, topic: &str, expected: &BTreeMap<i32, i64>) {
    let partitions: Vec<i32> = expected.keys().copied().collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (g, t, p) = (group.to_owned(), topic.to_owned(), partitions.clone());
        let now = tokio::task::spawn_blocking(move || committed(&g, &t, &p))
            .await
            .unwrap();
        if now == *expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "offsets not committed: {now:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The internal topic of the `global` key group (where the counter fixture's one instance
/// lives).
pub fn global_topic(group: &str) -> String {
    format!("{group}.clickwatch-by-global")
}

/// Waits until the counter's last checkpoint in the `global` key group holds `expected`.
pub async fn wait_global_total(group: &str, expected: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let topic = global_topic(group);
    loop {
        let totals = checkpointed_totals(group, &topic, &[0]).await;
        if totals.get(&0) == Some(&expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the global counter's checkpoint holds {totals:?}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
