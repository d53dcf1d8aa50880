//! The committer: turns checkpoints into durable progress, in order. For each checkpoint it
//! waits until the sinks acknowledged everything before it, stores the partitions' states in
//! the state store, and only then commits their offsets. A new owner starts each partition at
//! its stored state's offset, so a crash between the two steps costs nothing.

use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::Group;
use crate::kafka::StateStore;
use crate::metrics::Metrics;
use crate::source::{Checkpoint, PartitionState};

/// Attempts at storing or committing one checkpoint before giving up on it (the next
/// checkpoint supersedes it; a new owner would resume from the previous one).
const ATTEMPTS: u32 = 5;

/// Runs until the processor drops its end of `checkpoints`.
pub(super) fn run(
    checkpoints: Receiver<Checkpoint>,
    consumer: Arc<Group>,
    store: Arc<StateStore>,
    handle: tokio::runtime::Handle,
    metrics: Arc<Metrics>,
) {
    for checkpoint in checkpoints {
        let Checkpoint {
            ack,
            partitions,
            done,
        } = checkpoint;
        match handle.block_on(ack) {
            Ok(()) if partitions.is_empty() => {}
            Ok(()) => match store_and_commit(&consumer, &store, &partitions, &handle) {
                Ok(()) => Metrics::add(&metrics.checkpoints, 1),
                Err(error) => {
                    Metrics::add(&metrics.checkpoint_failures, 1);
                    tracing::error!(%error, "checkpoint not committed; a new owner of these partitions resumes from the previous one (events in between are processed again)");
                }
            },
            // The sink stage stopped before writing everything: committing would skip records.
            Err(_) => {
                Metrics::add(&metrics.checkpoint_failures, 1);
                tracing::warn!(
                    partitions = partitions.len(),
                    "sinks did not acknowledge; checkpoint not committed"
                );
            }
        }
        if let Some(done) = done {
            let _ = done.send(());
        }
    }
}

fn store_and_commit(
    consumer: &Group,
    store: &StateStore,
    partitions: &[PartitionState],
    handle: &tokio::runtime::Handle,
) -> Result<(), String> {
    // A member thrown out of the group must not store state: the partitions may already
    // belong to another host (a stale record would only cost duplicates, as a new owner
    // starts at the record's offset, but there is no reason to write it).
    if consumer.assignment_lost() {
        return Err("the assignment was lost; checkpoint dropped".into());
    }
    retry("store partition state", || {
        handle
            .block_on(store.save(partitions))
            .map_err(|e| e.to_string())
    })?;
    let mut tpl = TopicPartitionList::new();
    for state in partitions {
        tpl.add_partition_offset(
            &state.topic,
            state.partition,
            Offset::Offset(state.next_offset),
        )
        .map_err(|e| e.to_string())?;
    }
    retry("commit offsets", || {
        consumer
            .commit(&tpl, CommitMode::Sync)
            .map_err(|e| e.to_string())
    })?;
    for state in partitions {
        tracing::debug!(
            topic = %state.topic,
            partition = state.partition,
            next_offset = state.next_offset,
            "checkpoint committed"
        );
    }
    Ok(())
}

fn retry(what: &str, mut op: impl FnMut() -> Result<(), String>) -> Result<(), String> {
    let mut backoff = Duration::from_millis(100);
    for attempt in 1..=ATTEMPTS {
        match op() {
            Ok(()) => return Ok(()),
            Err(error) if attempt == ATTEMPTS => return Err(format!("{what}: {error}")),
            Err(error) => {
                tracing::warn!(what, attempt, %error, "checkpoint step failed; retrying");
                std::thread::sleep(backoff);
                backoff *= 2;
            }
        }
    }
    Err(format!("{what}: gave up"))
}
