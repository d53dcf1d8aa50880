//! The Kafka input's [`Checkpointer`]: a barrier that reached it covers output every sink
//! already holds, so it stores the partitions' states in the state topic and only then commits
//! their offsets. A new owner starts each partition at its stored state's offset, so a crash
//! between the two steps costs nothing.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::Group;
use crate::kafka::StateStore;
use crate::pipeline::{Barrier, CheckpointError, Checkpointer};
use crate::source::PartitionState;

/// Attempts at storing or committing one checkpoint before giving up on it (the next
/// checkpoint supersedes it; a new owner would resume from the previous one).
const ATTEMPTS: u32 = 5;

/// Stores checkpoints of the partitions this member owns.
pub struct KafkaCheckpoints {
    pub(super) consumer: Arc<Group>,
    pub(super) store: Arc<StateStore>,
}

#[async_trait]
impl Checkpointer for KafkaCheckpoints {
    async fn store(&mut self, barrier: &Barrier) -> Result<(), CheckpointError> {
        let states = &barrier.states;
        if states.is_empty() {
            return Ok(());
        }
        let failed = |message: String| CheckpointError::Encode {
            source_id: barrier.source.clone(),
            message,
        };
        // A member thrown out of the group must not store state: the partitions may already
        // belong to another host (a stale record would only cost duplicates, as a new owner
        // starts at the record's offset, but there is no reason to write it).
        if self.consumer.assignment_lost() {
            return Err(failed("the assignment was lost; checkpoint dropped".into()));
        }
        retry("store partition state", || async {
            self.store.save(states).await.map_err(|e| e.to_string())
        })
        .await
        .map_err(failed)?;
        let offsets = offsets(states).map_err(failed)?;
        retry("commit offsets", || {
            // A synchronous commit waits on the broker: off the async workers.
            let (consumer, offsets) = (self.consumer.clone(), offsets.clone());
            async move {
                tokio::task::spawn_blocking(move || consumer.commit(&offsets, CommitMode::Sync))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())
            }
        })
        .await
        .map_err(failed)?;
        for state in states {
            tracing::debug!(
                topic = %state.topic,
                partition = state.partition,
                next_offset = state.next_offset,
                "checkpoint committed"
            );
        }
        Ok(())
    }
}

/// The offsets to commit: where each partition resumes.
fn offsets(states: &[PartitionState]) -> Result<TopicPartitionList, String> {
    let mut tpl = TopicPartitionList::new();
    for state in states {
        tpl.add_partition_offset(
            &state.topic,
            state.partition,
            Offset::Offset(state.next_offset),
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(tpl)
}

async fn retry<F, Fut>(what: &str, mut op: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut backoff = Duration::from_millis(100);
    for attempt in 1..ATTEMPTS {
        match op().await {
            Ok(()) => return Ok(()),
            Err(error) => {
                tracing::warn!(what, attempt, %error, "checkpoint step failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
    }
    op().await.map_err(|error| format!("{what}: {error}"))
}
