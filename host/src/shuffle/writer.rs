//! Writes routed records to the internal topics. A write succeeds only when every record is
//! acknowledged; a failure is retryable (the sink stage retries the whole write, and stage 2
//! drops the copies it already applied, by origin offset). The idempotent producer keeps each
//! partition's records in the order they were sent, which that de-duplication relies on.

use async_trait::async_trait;
use futures_util::future::join_all;
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::Routed;
use crate::sink::SinkError;

/// Where stage 1 writes routed records.
#[async_trait]
pub trait RoutedSink: Send {
    /// Writes every record; succeeds only when all are stored.
    async fn write(&mut self, records: &[Routed]) -> Result<(), SinkError>;
}

/// The Kafka internal topics.
pub struct KafkaRouted {
    producer: FutureProducer,
}

impl KafkaRouted {
    /// A writer to the internal topics on `brokers`.
    pub fn new(brokers: &str) -> Result<Self, SinkError> {
        let producer = crate::kafka::producer(brokers)
            .map_err(|e| SinkError::permanent("kafka-internal", e))?;
        Ok(KafkaRouted { producer })
    }
}

#[async_trait]
impl RoutedSink for KafkaRouted {
    async fn write(&mut self, records: &[Routed]) -> Result<(), SinkError> {
        let sends = records.iter().map(|r| {
            self.producer.send(
                FutureRecord::<(), [u8]>::to(&r.topic)
                    .partition(r.partition)
                    .payload(&r.bytes),
                crate::kafka::QUEUE_TIMEOUT,
            )
        });
        for result in join_all(sends).await {
            if let Err((error, _)) = result {
                return Err(SinkError::transient(
                    "kafka-internal",
                    format!("delivery to an internal topic failed: {error}"),
                ));
            }
        }
        Ok(())
    }
}
