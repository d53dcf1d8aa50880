//! The host's state store for partitioned processing: a compacted Kafka topic holding, per
//! (group, topic, partition) — input and internal topics alike — the latest checkpoint — every plugin's snapshot with the
//! offset it corresponds to — in one record, so state and position can never disagree.
//!
//! Why a compacted topic and not a table: it lives where the input lives (any host that can
//! consume the partition can restore its state, with no extra service to run or reach), it is
//! replicated like the input, and compaction keeps only the newest checkpoint per partition.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::source::{PartitionState, TopicPartition};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

/// Largest checkpoint record: plugin memory is capped at 64 MiB by default, so one snapshot
/// per plugin fits comfortably; the topic and the producer are configured to accept it.
pub const MAX_RECORD_BYTES: usize = 64 << 20;

/// How long a load may take before it is reported as failed (and retried by the caller).
const LOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// The state store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateStoreError {
    /// The broker refused or did not answer.
    #[error("state topic {topic}: {message}")]
    Kafka {
        /// The state topic.
        topic: String,
        /// What went wrong.
        message: String,
    },
}

/// Checkpoints of one consumer group's partitions.
pub struct StateStore {
    brokers: String,
    topic: String,
    /// The consumer group: records are keyed `group/topic/partition`.
    group: String,
    producer: FutureProducer,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore")
            .field("topic", &self.topic)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl StateStore {
    /// Opens the store in `topic`, creating it (compacted, one partition) if it is missing.
    pub async fn open(brokers: &str, topic: &str, group: &str) -> Result<Self, StateStoreError> {
        let fail = |message: String| StateStoreError::Kafka {
            topic: topic.to_owned(),
            message,
        };
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .create()
            .map_err(|e| fail(e.to_string()))?;
        let max_bytes = MAX_RECORD_BYTES.to_string();
        // Replication -1: the broker's default, so production clusters replicate the state
        // like any other topic while a single test broker works too.
        // Small, short-lived segments: only closed segments are compacted, and a new owner
        // reads the topic from its start, so the uncompacted tail must stay short even when
        // checkpoints are frequent and large.
        let new = NewTopic::new(topic, 1, TopicReplication::Fixed(-1))
            .set("cleanup.policy", "compact")
            .set("max.message.bytes", &max_bytes)
            .set("segment.ms", "300000")
            .set("max.compaction.lag.ms", "300000")
            .set("min.cleanable.dirty.ratio", "0.1");
        let created = admin
            .create_topics([&new], &AdminOptions::new())
            .await
            .map_err(|e| fail(e.to_string()))?;
        for result in created {
            match result {
                Ok(_) => tracing::info!(topic, "state topic created (compacted)"),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => return Err(fail(format!("cannot create it: {code}"))),
            }
        }
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("message.max.bytes", &max_bytes)
            .set("message.timeout.ms", "30000")
            .create()
            .map_err(|e: rdkafka::error::KafkaError| fail(e.to_string()))?;
        Ok(StateStore {
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
            group: group.to_owned(),
            producer,
        })
    }

    /// Stores the checkpoints; returns once the broker acknowledged all of them.
    pub async fn save(&self, states: &[PartitionState]) -> Result<(), StateStoreError> {
        for state in states {
            let value = state.encode().map_err(|e| StateStoreError::Kafka {
                topic: self.topic.clone(),
                message: format!("checkpoint of {}/{}: {e}", state.topic, state.partition),
            })?;
            let key = self.key(&state.topic, state.partition);
            self.producer
                .send(
                    FutureRecord::to(&self.topic).key(&key).payload(&value),
                    super::QUEUE_TIMEOUT,
                )
                .await
                .map_err(|(error, _)| StateStoreError::Kafka {
                    topic: self.topic.clone(),
                    message: format!("checkpoint of {}/{}: {error}", state.topic, state.partition),
                })?;
        }
        Ok(())
    }

    /// The record key of a partition's checkpoint.
    fn key(&self, topic: &str, partition: i32) -> String {
        format!("{}/{topic}/{partition}", self.group)
    }

    /// Reads the latest checkpoint of each of `partitions` (blocking: reads the compacted topic
    /// from its start to its end).
    pub fn load(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<HashMap<TopicPartition, PartitionState>, StateStoreError> {
        let wanted: HashMap<String, &TopicPartition> = partitions
            .iter()
            .map(|tp| (self.key(&tp.topic, tp.partition), tp))
            .collect();
        let fail = |message: String| StateStoreError::Kafka {
            topic: self.topic.clone(),
            message,
        };
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", "clickwatch-state-reader")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("fetch.message.max.bytes", MAX_RECORD_BYTES.to_string())
            .create()
            .map_err(|e| fail(e.to_string()))?;
        let (low, high) = consumer
            .fetch_watermarks(&self.topic, 0, LOAD_TIMEOUT)
            .map_err(|e| fail(format!("cannot read its offsets: {e}")))?;
        let mut found = HashMap::new();
        if high <= low {
            return Ok(found);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, 0, Offset::Offset(low))
            .map_err(|e| fail(e.to_string()))?;
        consumer.assign(&tpl).map_err(|e| fail(e.to_string()))?;
        let deadline = Instant::now() + LOAD_TIMEOUT;
        let mut position = low;
        while position < high {
            if Instant::now() > deadline {
                return Err(fail(format!(
                    "read only to offset {position} of {high} in {LOAD_TIMEOUT:?}"
                )));
            }
            let message = match consumer.poll(Duration::from_millis(200)) {
                None => continue,
                Some(Err(e)) => return Err(fail(e.to_string())),
                Some(Ok(m)) => m,
            };
            position = message.offset() + 1;
            let Some(tp) = message
                .key()
                .and_then(|k| std::str::from_utf8(k).ok())
                .and_then(|k| wanted.get(k))
            else {
                continue;
            };
            match message
                .payload()
                .map(|bytes| PartitionState::decode(bytes, &tp.topic))
            {
                Some(Ok(state)) => {
                    found.insert((*tp).clone(), state);
                }
                Some(Err(error)) => {
                    tracing::warn!(partition = %tp, offset = message.offset(), %error, "unreadable checkpoint skipped")
                }
                // A tombstone: the state was deleted.
                None => {
                    found.remove(*tp);
                }
            }
        }
        Ok(found)
    }
}
