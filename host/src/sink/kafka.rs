//! Kafka sinks: alerts as JSON keyed by the entity they are about (schema in
//! `docs/alert-schema.md`), and dead letters as JSON keyed by their origin. Both write through
//! an idempotent acks=all producer and report success only when every record is acknowledged;
//! a failure is retryable (the sink stage retries, so delivery is at-least-once: consumers
//! de-duplicate alerts by `alert_id`).

use async_trait::async_trait;
use futures_util::future::join_all;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::{AlertSink, DeadLetter, DeadLetterSink, SinkError};
use crate::alert::Alert;

/// Records to one topic: used for alerts (keyed by entity) and for dead letters (keyed by
/// origin).
pub struct KafkaTopicSink {
    producer: FutureProducer,
    topic: String,
}

impl std::fmt::Debug for KafkaTopicSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaTopicSink")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaTopicSink {
    /// A sink writing to `topic` on `brokers`.
    pub fn new(brokers: &str, topic: &str) -> Result<Self, SinkError> {
        let producer =
            crate::kafka::producer(brokers).map_err(|e| SinkError::permanent("kafka", e))?;
        Ok(KafkaTopicSink {
            producer,
            topic: topic.to_owned(),
        })
    }

    /// Sends every (key, value) and succeeds only when all are acknowledged.
    async fn send_all(&self, records: &[(String, String)]) -> Result<(), SinkError> {
        let sends = records.iter().map(|(key, value)| {
            self.producer.send(
                FutureRecord::to(&self.topic).key(key).payload(value),
                crate::kafka::QUEUE_TIMEOUT,
            )
        });
        let failures: Vec<SinkError> = join_all(sends)
            .await
            .into_iter()
            .filter_map(|result| result.err())
            .map(|(error, _)| self.delivery_error(&error))
            .collect();
        // One retryable failure makes the write worth retrying as a whole.
        let failure = failures.iter().find(|e| e.retryable).or(failures.first());
        failure.map_or(Ok(()), |e| Err(e.clone()))
    }

    /// A failed delivery as a sink error: a record the broker will never take must not be
    /// retried forever (that wedges the pipeline); anything else may pass on a retry.
    fn delivery_error(&self, error: &rdkafka::error::KafkaError) -> SinkError {
        let message = format!("delivery to {} failed: {error}", self.topic);
        let never = matches!(
            error.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::MessageSizeTooLarge
                    | RDKafkaErrorCode::InvalidMessageSize
                    | RDKafkaErrorCode::InvalidMessage
                    | RDKafkaErrorCode::InvalidRecord
                    | RDKafkaErrorCode::TopicAuthorizationFailed
            )
        );
        if never {
            SinkError::permanent("kafka", message)
        } else {
            SinkError::transient("kafka", message)
        }
    }
}

#[async_trait]
impl AlertSink for KafkaTopicSink {
    async fn write(&mut self, alerts: &[Alert]) -> Result<(), SinkError> {
        let records: Vec<(String, String)> = alerts
            .iter()
            .map(|a| (a.entity.clone(), a.to_json().to_string()))
            .collect();
        self.send_all(&records).await
    }
}

#[async_trait]
impl DeadLetterSink for KafkaTopicSink {
    async fn write(&mut self, letters: &[DeadLetter]) -> Result<(), SinkError> {
        let records: Vec<(String, String)> = letters
            .iter()
            .map(|l| {
                (
                    l.origin.clone(),
                    crate::json_text::to_json_text(l, "dead letter"),
                )
            })
            .collect();
        self.send_all(&records).await
    }
}
