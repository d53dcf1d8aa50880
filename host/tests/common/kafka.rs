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

use clickwatch::event::{ClickEvent, encode};
use clickwatch::generator::{Generator, GeneratorSettings};

use super::{unique, wasm};

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

/// `n` generated events (5 % bots) from `seed`.
pub fn generated(seed: u64, n: usize) -> Vec<ClickEvent> {
    let mut g = Generator::new(GeneratorSettings {
        seed,
        bot_fraction: 0.05,
        ..GeneratorSettings::default()
    });
    (0..n).map(|_| g.next_event()).collect()
}

/// Records keyed by session id, as the generator's producer keys them.
pub fn keyed(events: &[ClickEvent]) -> Vec<(String, Vec<u8>)> {
    events
        .iter()
        .map(|e| (e.session_id.clone(), encode(e).into_bytes()))
        .collect()
}

/// A host config consuming `topic` in `group`, raw events and aggregates in `out`.
pub fn config_text(topic: &str, group: &str, plugins: &Path, out: &Path, sinks: &str) -> String {
    format!(
        "[source]\ntype = \"kafka\"\nbrokers = \"{b}\"\ntopic = \"{topic}\"\ngroup_id = \"{group}\"\n\
         session_timeout_ms = 6000\ncheckpoint_interval_ms = 500\n\
         [pipeline]\nbatch_size = 1000\nbatch_linger_ms = 20\nallowed_lateness_ms = 600000\n\
         [plugins]\ndir = \"{p}\"\nwatch = false\n\
         [sinks.raw]\ntype = \"sqlite\"\npath = \"{o}/raw.db\"\n\
         [sinks.aggregates]\ntype = \"sqlite\"\npath = \"{o}/raw.db\"\n{sinks}",
        b = brokers(),
        p = plugins.display(),
        o = out.display(),
    )
}

/// Alert and dead-letter files in `out`.
pub fn file_sinks(out: &Path) -> String {
    format!(
        "[sinks.alerts]\ntype = \"file\"\npath = \"{o}/alerts.jsonl\"\nstdout = false\n\
         [sinks.dead_letters]\ntype = \"file\"\npath = \"{o}/dead.jsonl\"\n",
        o = out.display()
    )
}

/// A plugins folder in `root` with the named built plugins.
pub fn plugins_dir(root: &Path, names: &[&str]) -> std::path::PathBuf {
    let dir = root.join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    for name in names {
        std::fs::write(dir.join(format!("{name}.wasm")), wasm(name)).unwrap();
    }
    dir
}

/// Records per partition of `landed` (partition, offset) coordinates.
pub fn per_partition(landed: &[(i32, i64)]) -> BTreeMap<i32, i64> {
    let mut counts = BTreeMap::new();
    for (p, _) in landed {
        *counts.entry(*p).or_insert(0) += 1;
    }
    counts
}
