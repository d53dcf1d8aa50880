//! Event sources: they read or make events, validate them, batch them by size and time, and
//! push batches into a bounded channel (a full channel slows the source: backpressure).

mod file;
mod generator;
pub mod kafka;
mod state;

pub use file::run_file;
pub use generator::{Pacing, run_generator};
pub use state::PartitionState;

use std::sync::Arc;

use crate::event::ClickEvent;
use crate::sink::DeadLetter;

/// Largest batch in bytes of input, whatever `batch_size` says: a batch is copied into every
/// plugin's memory, whose default cap is 64 MiB, and string offsets in the batch are 32-bit.
pub const MAX_BATCH_BYTES: usize = 8 << 20;

/// What a source sends downstream.
#[derive(Debug)]
pub enum SourceMsg {
    /// Valid events in order, and the records that were not valid.
    Batch {
        /// Valid events.
        events: Vec<ClickEvent>,
        /// Invalid records with reasons.
        dead: Vec<DeadLetter>,
        /// For a partitioned source: which partition and offsets the batch covers.
        from: Option<BatchOrigin>,
    },
    /// A partitioned source was given a partition: start its task, from saved state if any.
    Assign {
        /// The partition.
        at: TopicPartition,
        /// State saved by whoever owned the partition last.
        restored: Option<PartitionState>,
    },
    /// A partitioned source loses these partitions: checkpoint their tasks (state and offset,
    /// after the sinks acknowledged everything before), drop them, then let go of `done` (the
    /// source waits until every clone of it is dropped).
    Revoke {
        /// The partitions.
        partitions: Vec<TopicPartition>,
        /// False when the partitions were lost (this member was thrown out of the group and
        /// someone else may already own them): drop the tasks without storing their state,
        /// so a stale state never overwrites the new owner's.
        checkpoint: bool,
        /// Dropped once the checkpoint is stored and committed (or failed, logged).
        done: std::sync::mpsc::SyncSender<()>,
    },
    /// The input is exhausted: no event will ever follow, so every window may close.
    Exhausted,
}

/// A partition of a topic: what one task owns.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
}

impl TopicPartition {
    /// `partition` of `topic`.
    pub fn new(topic: &Arc<str>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.clone(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// Where a batch of a partitioned source came from.
#[derive(Debug, Clone)]
pub struct BatchOrigin {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset of each valid event, in order.
    pub offsets: Vec<i64>,
    /// The offset after the last record of the batch (valid or not): where to resume.
    pub next_offset: i64,
    /// For a batch of an internal (re-partitioning) topic: the input partition and offset
    /// each event was first read at, in order; empty for input batches.
    pub routed: Vec<(i32, i64)>,
    /// For a batch of an internal topic: the input partitions' watermark markers it carried,
    /// each with the number of the batch's events written before it; empty for input batches.
    pub markers: Vec<(usize, crate::shuffle::Marker)>,
}

impl BatchOrigin {
    /// The task the batch belongs to.
    pub fn task(&self) -> TopicPartition {
        TopicPartition::new(&self.topic, self.partition)
    }
}
