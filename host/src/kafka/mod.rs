//! Kafka plumbing shared by the Kafka source and sinks and `clickwatch generate --to kafka`:
//! producer settings chosen once (idempotent, acks=all), the generator-to-topic loop, and the
//! state store of partitioned processing.

mod generate;
mod state_store;

pub use generate::{GenerateReport, produce_generated};
pub use state_store::{MAX_RECORD_BYTES, StateStore, StateStoreError};

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::FutureProducer;

/// Builds an idempotent producer (acks=all, so an acknowledged record is on every in-sync
/// replica; idempotence, so librdkafka's own retries never duplicate or reorder).
pub fn producer(brokers: &str) -> Result<FutureProducer, rdkafka::error::KafkaError> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        // Give up on a record after this long; the caller then retries or reports it.
        .set("message.timeout.ms", "30000")
        .create()
}

/// How long a send may wait for room in the producer's queue before it counts as failed.
pub const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);
