//! The re-partitioning of a Kafka input by plugin state key (docs/design/keyed-state.md).
//! Stage 1 (the task of an input partition) writes each event to the internal topic of every
//! key group in use, to the partition that owns the event's key, plus its watermark markers;
//! stage 2 (the task of an internal partition) applies each origin's records once and runs
//! the group's plugins at the minimum watermark of its origins.

mod origins;
mod record;
mod route;
mod writer;

pub use origins::Origins;
pub use record::{BadRecord, Marker, ShuffleRecord};
pub use route::Router;
pub use writer::{KafkaRouted, RoutedSink};

use std::sync::Arc;

use crate::keyed::StateKey;

/// The internal topic of one key group of a consumer group: `<group_id>.clickwatch-by-<key>`
/// (`property:plan` becomes `property-plan`: Kafka topic names allow `[a-zA-Z0-9._-]`).
pub fn topic_name(group_id: &str, key: &StateKey) -> String {
    let label: String = key
        .to_string()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{group_id}.clickwatch-by-{label}")
}

/// One key group: the plugins keyed alike share its internal topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyGroup {
    /// The key.
    pub key: StateKey,
    /// Its internal topic.
    pub topic: Arc<str>,
    /// The topic's partitions (1 for [`StateKey::Global`]).
    pub partitions: u32,
}

/// Routed records to write: (internal topic, partition, bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct Routed {
    /// Internal topic.
    pub topic: Arc<str>,
    /// Its partition.
    pub partition: i32,
    /// An encoded [`ShuffleRecord`].
    pub bytes: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_are_valid_kafka_names() {
        assert_eq!(
            topic_name("cw", &StateKey::IpNetwork),
            "cw.clickwatch-by-ip-network"
        );
        assert_eq!(
            topic_name("cw", &StateKey::Property("plan.tier".into())),
            "cw.clickwatch-by-property-plan.tier"
        );
        assert_eq!(
            topic_name("cw", &StateKey::Global),
            "cw.clickwatch-by-global"
        );
    }
}
