//! The consumer's context: what happens when the group gives or takes partitions. Both
//! callbacks run inside `poll` on the source thread, so they see the batches not yet sent.
//! On revoke: send what is pending, then have the processor checkpoint the partitions' tasks
//! and wait until their state is stored and offsets committed. On assign: read the last
//! checkpoint of each partition from the state store and start its task from it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use tokio::sync::{mpsc, watch};

use super::pending::Pending;
use crate::kafka::StateStore;
use crate::metrics::Metrics;
use crate::source::SourceMsg;

/// Shared between the source thread (through the consumer) and its callbacks.
pub struct Rebalancer {
    pub(super) topic: Arc<str>,
    /// To the processor; taken out at shutdown so the channel can close.
    pub(super) tx: Mutex<Option<mpsc::Sender<SourceMsg>>>,
    pub(super) store: Arc<StateStore>,
    /// Records not yet sent, per partition.
    pub(super) pending: Mutex<Pending>,
    /// Assigned partitions whose task was started, with the first offset to process (records
    /// before it are already reflected in the restored state).
    pub(super) resume: Mutex<HashMap<i32, i64>>,
    pub(super) stop: watch::Receiver<bool>,
    pub(super) metrics: Arc<Metrics>,
}

/// Locks a mutex, ignoring poisoning (no code panics while holding these locks).
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Rebalancer {
    /// Sends every pending batch to the processor, in partition order.
    pub(super) fn flush(&self) {
        let batches = lock(&self.pending).take(&self.topic);
        let tx = lock(&self.tx).clone();
        let Some(tx) = tx else { return };
        for msg in batches {
            if tx.blocking_send(msg).is_err() {
                return;
            }
        }
    }

    /// Hands `partitions` back: pending records go first, then the processor checkpoints
    /// (unless the partitions were `lost`) and drops their tasks; returns once that is done.
    pub(super) fn revoke(&self, partitions: Vec<i32>, lost: bool) {
        let partitions: Vec<i32> = {
            let mut resume = lock(&self.resume);
            partitions
                .into_iter()
                .filter(|p| resume.remove(p).is_some())
                .collect()
        };
        if partitions.is_empty() {
            return;
        }
        self.flush();
        let tx = lock(&self.tx).clone();
        let Some(tx) = tx else { return };
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
        tracing::info!(
            ?partitions,
            lost,
            "partitions revoked; checkpointing their tasks"
        );
        let msg = SourceMsg::Revoke {
            partitions,
            checkpoint: !lost,
            done: done_tx,
        };
        if tx.blocking_send(msg).is_ok() {
            // An error means the processor is gone: nothing more can be checkpointed.
            let _ = done_rx.recv();
        }
    }

    /// Starts the tasks of newly assigned `partitions` from their stored checkpoints.
    fn assign(&self, partitions: Vec<i32>) {
        if partitions.is_empty() {
            return;
        }
        let mut backoff = Duration::from_millis(200);
        let states = loop {
            match self.store.load(&partitions) {
                Ok(states) => break states,
                Err(error) => {
                    if *self.stop.borrow() {
                        return;
                    }
                    // Processing without the state would count the partition's events
                    // wrongly: wait for the store. Records of these partitions are skipped
                    // until then (not committed, so nothing is lost).
                    tracing::warn!(%error, ?partitions, retry_in_ms = backoff.as_millis() as u64,
                        "cannot read partition checkpoints; retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        let tx = lock(&self.tx).clone();
        let Some(tx) = tx else { return };
        let mut states: BTreeMap<i32, _> = states.into_iter().collect();
        for partition in partitions {
            let restored = states.remove(&partition);
            let from = restored.as_ref().map_or(0, |s| s.next_offset);
            if tx
                .blocking_send(SourceMsg::Assign {
                    partition,
                    restored,
                })
                .is_err()
            {
                return;
            }
            Metrics::add(&self.metrics.partitions_assigned, 1);
            lock(&self.resume).insert(partition, from);
        }
    }

    fn partitions_of(&self, rebalance: &Rebalance<'_>) -> Vec<i32> {
        let tpl = match rebalance {
            Rebalance::Assign(tpl) | Rebalance::Revoke(tpl) => tpl,
            Rebalance::Error(_) => return Vec::new(),
        };
        tpl.elements()
            .iter()
            .filter(|e| e.topic() == &*self.topic)
            .map(|e| e.partition())
            .collect()
    }
}

impl ClientContext for Rebalancer {}

impl ConsumerContext for Rebalancer {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(_) => {
                let lost = consumer.assignment_lost();
                self.revoke(self.partitions_of(rebalance), lost);
            }
            Rebalance::Error(error) => tracing::error!(%error, "consumer group rebalance failed"),
            Rebalance::Assign(_) => {}
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(_) = rebalance {
            let partitions = self.partitions_of(rebalance);
            tracing::info!(?partitions, "partitions assigned");
            self.assign(partitions);
        }
    }
}
