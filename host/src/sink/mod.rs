//! Where results go. Each kind of output has a small trait so that new backends (PostgreSQL,
//! BigQuery, Kafka) plug in without the pipeline knowing which one it has.
//!
//! **Architecture Invariant:** sinks know nothing about plugins. They see events, table
//! schemas, rows, alerts and dead letters: plain data.

pub mod bigquery;
mod dead_letter;
mod jsonl;
mod kafka;
pub mod postgres;
mod sqlite;

pub use dead_letter::{DeadLetter, MAX_PAYLOAD_BYTES};
pub use jsonl::{JsonLinesAlertSink, JsonLinesDeadLetterSink};
pub use kafka::KafkaTopicSink;
pub use sqlite::SqliteStore;

use async_trait::async_trait;

use crate::aggregate::{AggregateRow, TableSchema};
use crate::alert::Alert;
use crate::event::ClickEvent;

/// A sink failure, saying whether trying again can help.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{sink}: {message}")]
pub struct SinkError {
    /// Which sink.
    pub sink: &'static str,
    /// What went wrong.
    pub message: String,
    /// Whether a retry can succeed (outage, lock, timeout) or never will (bad data, bad schema).
    pub retryable: bool,
}

impl SinkError {
    /// A failure worth retrying.
    pub fn transient(sink: &'static str, message: impl ToString) -> Self {
        SinkError {
            sink,
            message: message.to_string(),
            retryable: true,
        }
    }

    /// A failure no retry will fix.
    pub fn permanent(sink: &'static str, message: impl ToString) -> Self {
        SinkError {
            sink,
            message: message.to_string(),
            retryable: false,
        }
    }
}

/// What a raw write did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawWrite {
    /// Rows newly stored (a replayed event is not counted again).
    pub stored: u64,
    /// Events the store refused, by index in the batch, with the store's reason. The rest of
    /// the batch was stored.
    pub rejected: Vec<(usize, String)>,
}

/// Stores every valid raw event, idempotently on event id.
#[async_trait]
pub trait RawSink: Send {
    /// Durably stores `events`. Writing the same events again stores nothing twice.
    async fn write(&mut self, events: &[ClickEvent]) -> Result<RawWrite, SinkError>;

    /// Like [`RawSink::write`], with where each event came from: `sources[i]` is the
    /// (partition, offset) of `events[i]` (empty when the source has no such thing). Stores
    /// that keep the coordinates override this.
    async fn write_with_sources(
        &mut self,
        events: &[ClickEvent],
        _sources: &[(i32, i64)],
    ) -> Result<RawWrite, SinkError> {
        self.write(events).await
    }
}

/// The raw "store" of `type = "none"`: accepts events and keeps nothing.
#[derive(Debug, Default)]
pub struct DiscardRaw;

#[async_trait]
impl RawSink for DiscardRaw {
    async fn write(&mut self, _events: &[ClickEvent]) -> Result<RawWrite, SinkError> {
        Ok(RawWrite::default())
    }
}

/// Stores aggregate rows in plugin-declared tables.
#[async_trait]
pub trait AggregateSink: Send {
    /// Creates the table, or adds new (nullable) columns to it. Idempotent.
    async fn ensure_table(&mut self, table: &TableSchema) -> Result<(), SinkError>;
    /// Writes rows so that a re-emitted row never counts twice (an upsert by key, or an insert
    /// id the store de-duplicates on). Returns the rows the store refused, by index, with its
    /// reason; the others were stored.
    async fn write(&mut self, rows: &[AggregateRow]) -> Result<Vec<(usize, String)>, SinkError>;
}

/// Publishes alerts.
#[async_trait]
pub trait AlertSink: Send {
    /// Durably publishes `alerts`.
    async fn write(&mut self, alerts: &[Alert]) -> Result<(), SinkError>;
}

/// Keeps records that could not be processed, with the reason.
#[async_trait]
pub trait DeadLetterSink: Send {
    /// Durably stores `letters`.
    async fn write(&mut self, letters: &[DeadLetter]) -> Result<(), SinkError>;
}
