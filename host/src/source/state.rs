//! A partition's processing state — what a new owner, or the same host after a crash,
//! restores — and its stored form, the same in every checkpoint store: JSON with the plugin
//! snapshots in base64 (JSON arrays of numbers would be 3x larger).

use std::sync::Arc;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::shuffle::Origins;

/// A partition's processing state at a point of its input: what a new owner restores.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionState {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// The first offset not yet reflected in the state.
    pub next_offset: i64,
    /// The partition's watermark, ms.
    pub watermark: i64,
    /// Newest event time seen, ms.
    pub max_event_ms: i64,
    /// Snapshot of each plugin, by name.
    pub plugins: Vec<(String, Vec<u8>)>,
    /// For a task of an internal topic: what it applied of each input partition.
    pub origins: Option<Origins>,
}

/// The stored form.
#[derive(Serialize, Deserialize)]
struct Record {
    partition: i32,
    next_offset: i64,
    watermark: i64,
    max_event_ms: i64,
    plugins: Vec<(String, String)>,
    /// Stage-2 tasks only; absent in records of input partitions (and older hosts').
    #[serde(default, skip_serializing_if = "Option::is_none")]
    origins: Option<Origins>,
}

impl PartitionState {
    /// The stored form of the state (the topic is not in it: stores key records by it).
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let record = Record {
            partition: self.partition,
            next_offset: self.next_offset,
            watermark: self.watermark,
            max_event_ms: self.max_event_ms,
            plugins: self
                .plugins
                .iter()
                .map(|(name, bytes)| {
                    (
                        name.clone(),
                        base64::engine::general_purpose::STANDARD.encode(bytes),
                    )
                })
                .collect(),
            origins: self.origins.clone(),
        };
        serde_json::to_vec(&record).map_err(|e| e.to_string())
    }

    /// Reads a stored state of `topic`; an error says what is wrong with the bytes.
    pub fn decode(bytes: &[u8], topic: &Arc<str>) -> Result<Self, String> {
        let record: Record = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let mut plugins = Vec::with_capacity(record.plugins.len());
        for (name, b64) in record.plugins {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("plugin {name}: {e}"))?;
            plugins.push((name, bytes));
        }
        Ok(PartitionState {
            topic: Arc::clone(topic),
            partition: record.partition,
            next_offset: record.next_offset,
            watermark: record.watermark,
            max_event_ms: record.max_event_ms,
            plugins,
            origins: record.origins,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_round_trips_and_foreign_bytes_are_an_error() {
        let topic: Arc<str> = "clicks".into();
        let state = PartitionState {
            topic: topic.clone(),
            partition: 3,
            next_offset: 42,
            watermark: 1_000,
            max_event_ms: 6_000,
            plugins: vec![("counter".into(), vec![0, 1, 255])],
            origins: None,
        };
        let bytes = state.encode().unwrap();
        assert_eq!(PartitionState::decode(&bytes, &topic).unwrap(), state);
        assert!(PartitionState::decode(b"\xff not json", &topic).is_err());
        assert!(PartitionState::decode(br#"{"partition":1}"#, &topic).is_err());
    }
}
