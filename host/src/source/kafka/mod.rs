//! The Kafka source: a consumer-group member polled in batches on its own thread. Records are
//! decoded there (undecodable ones become dead letters with topic, partition and offset) and
//! sent per partition, in order, to the processor, which runs one task per partition.
//! Progress is at-least-once: offsets are committed only by checkpoints (see `checkpoints`):
//! barriers in the sink queue, stored once the sinks hold everything before them.
//! The same consumer reads the internal topics of the key groups (docs/design/keyed-state.md):
//! their records are shuffle records, decoded here too, and their partitions are tasks too.

mod checkpoints;
mod pending;
mod rebalance;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use tokio::sync::{mpsc, watch};

use super::{SourceMsg, TopicPartition};
use crate::event::decode;
use crate::kafka::{StateStore, StateStoreError};
use crate::keyed::StateKey;
use crate::metrics::Metrics;
use crate::shuffle::{KeyGroup, ShuffleRecord, topic_name};
use crate::sink::DeadLetter;
pub use checkpoints::KafkaCheckpoints;
use pending::Pending;
use rebalance::{Rebalancer, lock};

type Group = BaseConsumer<Rebalancer>;

/// What the Kafka source needs to know.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// Bootstrap servers.
    pub brokers: String,
    /// Input topic.
    pub topic: String,
    /// Consumer group: hosts with the same group share the partitions.
    pub group_id: String,
    /// Compacted topic holding partition checkpoints.
    pub state_topic: String,
    /// Consumer group session timeout, ms: how soon a dead host's partitions move.
    pub session_timeout_ms: u32,
    /// Most records per batch (over all partitions).
    pub batch_size: usize,
    /// Longest a partial batch waits.
    pub linger: Duration,
    /// The state keys of the loaded plugins: one internal topic each.
    pub keys: Vec<StateKey>,
    /// Partitions of a new internal topic (not of `global`'s, which has one); `None`: as
    /// many as the input topic has.
    pub key_partitions: Option<u32>,
}

/// The Kafka source could not start.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSourceError {
    /// The consumer could not be created or subscribed.
    #[error("kafka consumer for topic {topic}: {message}")]
    Consumer {
        /// Input topic.
        topic: String,
        /// What went wrong.
        message: String,
    },
    /// The state store could not be opened.
    #[error(transparent)]
    StateStore(#[from] StateStoreError),
    /// A thread could not be started.
    #[error("cannot start the kafka source thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// A running Kafka source.
pub struct KafkaSource {
    poll: JoinHandle<()>,
    consumer: Arc<Group>,
    store: Arc<StateStore>,
    /// The key groups, with their topics' partition counts as the broker has them.
    pub groups: Vec<KeyGroup>,
    /// Partitions of the input topic.
    pub input_partitions: u32,
}

/// Longest wait for a topic's metadata at start-up.
const METADATA_TIMEOUT: Duration = Duration::from_secs(30);

impl KafkaSource {
    /// Starts consuming. Batches and partition changes go to `tx`; the checkpoints of the
    /// processor's barriers are stored by [`KafkaSource::checkpointer`]. Stops when `stop`
    /// turns true: pending records are sent and every partition is checkpointed before the
    /// source lets go of `tx`.
    pub async fn start(
        settings: KafkaSettings,
        tx: mpsc::Sender<SourceMsg>,
        stop: watch::Receiver<bool>,
        metrics: Arc<Metrics>,
    ) -> Result<KafkaSource, KafkaSourceError> {
        let store = Arc::new(
            StateStore::open(&settings.brokers, &settings.state_topic, &settings.group_id).await?,
        );
        let fail = |message: String| KafkaSourceError::Consumer {
            topic: settings.topic.clone(),
            message,
        };
        let input_partitions = partition_count(&settings.brokers, &settings.topic)
            .await
            .map_err(fail)?;
        let groups = create_internal_topics(&settings, input_partitions)
            .await
            .map_err(fail)?;
        let mut topics: Vec<Arc<str>> = vec![settings.topic.as_str().into()];
        topics.extend(groups.iter().map(|g| g.topic.clone()));
        let context = Rebalancer {
            topics: topics.clone(),
            tx: Mutex::new(Some(tx)),
            store: store.clone(),
            pending: Mutex::new(Pending::default()),
            started: Mutex::new(BTreeSet::new()),
            stop: stop.clone(),
            metrics: metrics.clone(),
        };
        let consumer: Group = ClientConfig::new()
            .set("bootstrap.servers", &settings.brokers)
            .set("group.id", &settings.group_id)
            .set("enable.auto.commit", "false")
            // For the consumer-lag gauge (see `Rebalancer::stats`).
            .set("statistics.interval.ms", "1000")
            .set("auto.offset.reset", "earliest")
            .set(
                "session.timeout.ms",
                settings.session_timeout_ms.to_string(),
            )
            .set("enable.partition.eof", "false")
            // Large prefetch so the poll thread rarely waits on the network. Memory stays bounded
            // by librdkafka's `queued.max.messages.kbytes` (64 MiB per partition by default; a
            // 32 MiB cap measured 30 % slower here).
            .set("queued.min.messages", "200000")
            .create_with_context(context)
            .map_err(|e| fail(e.to_string()))?;
        let names: Vec<&str> = topics.iter().map(|t| &**t).collect();
        consumer
            .subscribe(&names)
            .map_err(|e| fail(e.to_string()))?;
        let consumer = Arc::new(consumer);
        let poll = {
            let consumer = consumer.clone();
            std::thread::Builder::new()
                .name("kafka-source".into())
                .spawn(move || poll_loop(&consumer, &settings, &stop, &metrics))?
        };
        Ok(KafkaSource {
            poll,
            consumer,
            store,
            groups,
            input_partitions,
        })
    }

    /// Where the sink stage stores this source's barriers: the state topic, then the
    /// consumer group's offsets. It holds the consumer, which leaves the group when the
    /// last holder lets go.
    pub fn checkpointer(&self) -> KafkaCheckpoints {
        KafkaCheckpoints {
            consumer: self.consumer.clone(),
            store: self.store.clone(),
        }
    }

    /// Waits for the poll thread (it ends after `stop`, once every partition's last
    /// checkpoint is settled).
    pub fn join(self) {
        if self.poll.join().is_err() {
            tracing::error!("the kafka source thread panicked");
        }
    }
}

/// Polls until `stop`, batching per partition; then sends what is pending, checkpoints every
/// partition and lets go of the processor channel.
fn poll_loop(
    consumer: &Group,
    settings: &KafkaSettings,
    stop: &watch::Receiver<bool>,
    metrics: &Metrics,
) {
    let ctx = consumer.context();
    // Whatever happens here, let go of the processor channel at the end (also on a panic), so
    // the processor, then the sink stage (holding the consumer for its checkpoints) can end.
    struct Release<'a>(&'a Rebalancer);
    impl Drop for Release<'_> {
        fn drop(&mut self) {
            lock(&self.0.tx).take();
        }
    }
    let _release = Release(ctx);
    let input = &ctx.topics[0];
    let mut skipped_logged = false;
    while !*stop.borrow() {
        match consumer.poll(Duration::from_millis(50)) {
            None => {}
            Some(Err(error)) => tracing::warn!(%error, "kafka consumer error"),
            Some(Ok(message)) => {
                let Some(topic) = ctx.topic(message.topic()) else {
                    continue;
                };
                let at = TopicPartition::new(topic, message.partition());
                let offset = message.offset();
                // A partition whose task has not started (its state could not be read yet):
                // skip; the offset is not committed, so nothing is lost.
                if !lock(&ctx.started).contains(&at) {
                    if !skipped_logged {
                        tracing::warn!(partition = %at, "record of a partition without a task skipped");
                        skipped_logged = true;
                    }
                    continue;
                }
                let bytes = message.payload().unwrap_or_default();
                let mut pending = lock(&ctx.pending);
                if Arc::ptr_eq(topic, input) {
                    read_input(&mut pending, &at, offset, bytes, metrics);
                } else {
                    read_internal(&mut pending, &at, offset, bytes, metrics);
                }
            }
        }
        let full = {
            let pending = lock(&ctx.pending);
            pending.records() >= settings.batch_size
                || pending.bytes() >= super::MAX_BATCH_BYTES
                || pending
                    .since()
                    .is_some_and(|t| t.elapsed() >= settings.linger)
        };
        if full && !ctx.flush() {
            tracing::error!(topic = %settings.topic, "the processor is gone; the kafka source stops (nothing is committed past what was processed)");
            return;
        }
    }
    // Graceful stop: finish and commit what is in flight, then let the processor end.
    let assigned: Vec<TopicPartition> = lock(&ctx.started).iter().cloned().collect();
    ctx.revoke(assigned, consumer.assignment_lost());
    ctx.flush();
    tracing::info!(topic = %settings.topic, "kafka source stopped; partitions checkpointed");
}

/// An input record: a valid event, or a dead letter with its reason and coordinates.
fn read_input(
    pending: &mut Pending,
    at: &TopicPartition,
    offset: i64,
    bytes: &[u8],
    metrics: &Metrics,
) {
    match decode(bytes) {
        Ok(event) => {
            Metrics::add(&metrics.events_in, 1);
            pending.event(at, offset, bytes.len(), event);
        }
        Err(error) => {
            let letter = refused(at, offset, bytes, error.label(), error.to_string(), metrics);
            pending.dead(at, offset, bytes.len(), letter);
        }
    }
}

/// A record of an internal topic: a routed event or a watermark marker. Only Clickwatch
/// hosts write there, so anything else is kept as a dead letter rather than guessed at.
fn read_internal(
    pending: &mut Pending,
    at: &TopicPartition,
    offset: i64,
    bytes: &[u8],
    metrics: &Metrics,
) {
    match ShuffleRecord::decode(bytes) {
        Ok(ShuffleRecord::Event {
            origin,
            offset: origin_offset,
            event,
        }) => pending.routed(at, offset, bytes.len(), (origin, origin_offset), event),
        Ok(ShuffleRecord::Marker(marker)) => pending.marker(at, offset, marker),
        Err(error) => {
            let letter = refused(
                at,
                offset,
                bytes,
                "bad_internal_record",
                error.to_string(),
                metrics,
            );
            pending.dead(at, offset, bytes.len(), letter);
        }
    }
}

/// The dead letter of a record that could not be read, with its coordinates and bytes.
fn refused(
    at: &TopicPartition,
    offset: i64,
    bytes: &[u8],
    reason: &str,
    detail: String,
    metrics: &Metrics,
) -> DeadLetter {
    Metrics::add(&metrics.events_invalid, 1);
    DeadLetter {
        reason: reason.to_owned(),
        detail,
        ..DeadLetter::default()
    }
    .at(&at.topic, at.partition, offset)
    .with_bytes(bytes)
}

/// Partitions of `topic`, from the broker's metadata (waits while the topic is being created).
async fn partition_count(brokers: &str, topic: &str) -> Result<u32, String> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + METADATA_TIMEOUT;
        loop {
            let found = consumer
                .fetch_metadata(Some(&topic), Duration::from_secs(5))
                .map_err(|e| format!("cannot read the metadata of {topic}: {e}"))?
                .topics()
                .first()
                .map_or(0, |t| t.partitions().len());
            if found > 0 {
                return Ok(found as u32);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "topic {topic} has no partitions (does it exist?) after {METADATA_TIMEOUT:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Creates the internal topic of each key group if it is missing, and reads the partition
/// count each really has: every host must route by the same count, so an existing topic's
/// count wins over the configured one.
async fn create_internal_topics(
    settings: &KafkaSettings,
    input_partitions: u32,
) -> Result<Vec<KeyGroup>, String> {
    let mut keys = settings.keys.clone();
    keys.sort();
    keys.dedup();
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &settings.brokers)
        .create()
        .map_err(|e| e.to_string())?;
    let wanted: Vec<(String, u32)> = keys
        .iter()
        .map(|key| {
            let partitions = match key {
                StateKey::Global => 1,
                _ => settings.key_partitions.unwrap_or(input_partitions).max(1),
            };
            (topic_name(&settings.group_id, key), partitions)
        })
        .collect();
    // Replication -1: the broker's default, like the state topic.
    let new: Vec<NewTopic<'_>> = wanted
        .iter()
        .map(|(name, partitions)| {
            NewTopic::new(name, *partitions as i32, TopicReplication::Fixed(-1))
        })
        .collect();
    let created = admin
        .create_topics(&new, &AdminOptions::new())
        .await
        .map_err(|e| format!("cannot create the internal topics: {e}"))?;
    for result in created {
        match result {
            Ok(topic) => tracing::info!(topic, "internal topic created"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(format!("cannot create {topic}: {code}")),
        }
    }
    let mut groups = Vec::new();
    for (key, (name, configured)) in keys.into_iter().zip(wanted) {
        let partitions = partition_count(&settings.brokers, &name).await?;
        if partitions != configured {
            tracing::warn!(topic = %name, partitions, configured, "the internal topic exists with another partition count; routing by its own");
        }
        groups.push(KeyGroup {
            key,
            topic: name.as_str().into(),
            partitions,
        });
    }
    Ok(groups)
}
