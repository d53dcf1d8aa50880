//! Kafka for the suites: topics, producing records where the test says, reading a topic to
//! its end, and whether a consumer group has committed everything there is.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use crate::services::brokers;

const TIMEOUT: Duration = Duration::from_secs(30);

/// Creates `topic` with `partitions` partitions.
pub async fn create_topic(topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("admin client");
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
        .expect("create topics");
    for r in results {
        r.expect("topic created");
    }
}

/// A producer that rides out a broker restart: librdkafka retries until delivery, within
/// five minutes per record.
pub fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "300000")
        .set("message.max.bytes", "2000000")
        .create()
        .expect("producer")
}

/// Sends `(key, value)` records in order; returns where each landed (partition, offset).
pub async fn produce(
    producer: &FutureProducer,
    topic: &str,
    records: &[(String, Vec<u8>)],
) -> Vec<(i32, i64)> {
    let mut out = Vec::with_capacity(records.len());
    for chunk in records.chunks(1_000) {
        let sends = chunk.iter().map(|(key, value)| {
            producer.send(
                FutureRecord::to(topic).key(key).payload(value),
                Duration::from_secs(300),
            )
        });
        for result in futures_util::future::join_all(sends).await {
            let delivery = result.unwrap_or_else(|(e, _)| panic!("not delivered: {e}"));
            out.push((delivery.partition, delivery.offset));
        }
    }
    out
}

fn consumer(group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer")
}

/// Partition count of `topic`, or `None` if it does not exist (yet).
fn partitions(consumer: &BaseConsumer, topic: &str) -> Option<Vec<i32>> {
    let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT).ok()?;
    let t = metadata.topics().first()?;
    if t.error().is_some() || t.partitions().is_empty() {
        return None;
    }
    Some(t.partitions().iter().map(|p| p.id()).collect())
}

/// The log-end offset of every partition of `topic` (empty if it does not exist).
pub fn end_offsets(topic: &str) -> BTreeMap<i32, i64> {
    let c = consumer("clickwatch-e2e-offsets");
    let Some(parts) = partitions(&c, topic) else {
        return BTreeMap::new();
    };
    parts
        .into_iter()
        .map(|p| {
            let (_, high) = c.fetch_watermarks(topic, p, TIMEOUT).expect("watermarks");
            (p, high)
        })
        .collect()
}

/// What `group` has committed on `topic`, by partition (partitions never committed absent).
pub fn committed(group: &str, topic: &str) -> BTreeMap<i32, i64> {
    let c = consumer(group);
    let Some(parts) = partitions(&c, topic) else {
        return BTreeMap::new();
    };
    let mut tpl = TopicPartitionList::new();
    for p in parts {
        tpl.add_partition(topic, p);
    }
    let tpl = c
        .committed_offsets(tpl, TIMEOUT)
        .expect("committed offsets");
    tpl.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// The topics whose names start with `prefix` (a group's internal topics).
pub fn topics_with_prefix(prefix: &str) -> Vec<String> {
    let c = consumer("clickwatch-e2e-metadata");
    let metadata = c.fetch_metadata(None, TIMEOUT).expect("metadata");
    metadata
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Whether `group` has committed, on its input and on every internal topic it reads
/// (`<group>.clickwatch-by-*`), every record there is: everything produced so far is
/// processed and its output acknowledged by the sinks (a checkpoint commits only then).
pub fn caught_up(group: &str, input: &str) -> bool {
    let mut topics = topics_with_prefix(&format!("{group}.clickwatch-by-"));
    topics.push(input.to_owned());
    topics.iter().all(|topic| {
        let ends = end_offsets(topic);
        let done = committed(group, topic);
        !ends.is_empty()
            && ends
                .iter()
                .all(|(p, end)| *end == 0 || done.get(p) == Some(end))
    })
}

/// Every record's value on `topic`, from the start to the end it has now.
pub fn read_to_end(topic: &str) -> Vec<Vec<u8>> {
    let ends = end_offsets(topic);
    let c = consumer(&crate::services::unique("reader"));
    let mut tpl = TopicPartitionList::new();
    for p in ends.keys() {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .expect("assignment");
    }
    c.assign(&tpl).expect("assign");
    let mut next: BTreeMap<i32, i64> = ends.keys().map(|p| (*p, 0)).collect();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while next.iter().any(|(p, o)| *o < ends[p]) {
        assert!(
            std::time::Instant::now() < deadline,
            "could not read {topic} to its end {ends:?} (at {next:?})"
        );
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                next.insert(m.partition(), m.offset() + 1);
                if m.offset() < ends[&m.partition()] {
                    out.push(m.payload().unwrap_or_default().to_vec());
                }
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    out
}
