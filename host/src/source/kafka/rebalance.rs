//! The consumer's context: what happens when the group gives or takes partitions. It runs
//! inside `poll` on the source thread, so it sees the batches not yet sent. On revoke: send
//! what is pending, have the processor checkpoint the partitions' tasks and wait until their
//! state is stored and offsets committed (a lost assignment drops the tasks unsaved). On
//! assign: read each partition's last checkpoint, start its task from it, and start the
//! partition's input exactly at the checkpoint's offset. Input and internal (re-partitioning)
//! topics are handled alike: each partition of either is one task.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};

use super::pending::Pending;
use crate::kafka::StateStore;
use crate::metrics::Metrics;
use crate::source::{SourceMsg, TopicPartition};

/// Shared between the source thread (through the consumer) and its callbacks.
pub struct Rebalancer {
    /// The input topic, then the internal topics of the key groups.
    pub(super) topics: Vec<Arc<str>>,
    /// To the processor; taken out at shutdown so the channel can close.
    pub(super) tx: Mutex<Option<mpsc::Sender<SourceMsg>>>,
    pub(super) store: Arc<StateStore>,
    /// Records not yet sent, per partition.
    pub(super) pending: Mutex<Pending>,
    /// Assigned partitions whose task was started. (Where their input starts needs no
    /// tracking: each is assigned at its checkpoint's offset.)
    pub(super) started: Mutex<BTreeSet<TopicPartition>>,
    pub(super) stop: watch::Receiver<bool>,
    pub(super) metrics: Arc<Metrics>,
}

/// Locks a mutex, ignoring poisoning (no code panics while holding these locks).
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Rebalancer {
    /// Sends every pending batch to the processor, in partition order. False when the
    /// processor is gone (nothing more can be processed; the source should stop).
    pub(super) fn flush(&self) -> bool {
        let batches = lock(&self.pending).take();
        let tx = lock(&self.tx).clone();
        let Some(tx) = tx else { return false };
        for msg in batches {
            if tx.blocking_send(msg).is_err() {
                return false;
            }
        }
        true
    }

    /// Hands `partitions` back: pending records go first, then the processor checkpoints
    /// (unless the partitions were `lost`) and drops their tasks; returns once that is done.
    pub(super) fn revoke(&self, partitions: Vec<TopicPartition>, lost: bool) {
        let partitions: Vec<TopicPartition> = {
            let mut started = lock(&self.started);
            partitions
                .into_iter()
                .filter(|p| started.remove(p))
                .collect()
        };
        if partitions.is_empty() {
            return;
        }
        if !self.flush() {
            return;
        }
        let tx = lock(&self.tx).clone();
        let Some(tx) = tx else { return };
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
        tracing::info!(
            partitions = ?partitions.iter().map(ToString::to_string).collect::<Vec<_>>(),
            lost,
            "partitions revoked; checkpointing their tasks"
        );
        let msg = SourceMsg::Revoke {
            partitions,
            checkpoint: !lost,
            done: done_tx,
        };
        if tx.blocking_send(msg).is_ok() {
            // Returns once every worker's part of the revoke is settled (each drops its clone
            // of `done_tx`), or the processor is gone: nothing more can be checkpointed.
            let _ = done_rx.recv();
        }
    }

    /// Reads the stored checkpoints of newly assigned `partitions`, starts their tasks from
    /// them, and returns where each partition's input must resume: the checkpoint's offset
    /// (`None`: no checkpoint, start from the group's committed offset).
    fn assign(&self, partitions: &[TopicPartition]) -> Vec<(TopicPartition, Option<i64>)> {
        if partitions.is_empty() {
            return Vec::new();
        }
        let mut backoff = Duration::from_millis(200);
        let states = loop {
            match self.store.load(partitions) {
                Ok(states) => break states,
                Err(error) => {
                    if *self.stop.borrow() {
                        return Vec::new();
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
        let Some(tx) = tx else { return Vec::new() };
        let mut states: BTreeMap<TopicPartition, _> = states.into_iter().collect();
        let mut starts = Vec::new();
        for at in partitions {
            let restored = states.remove(at);
            let from = restored.as_ref().map(|s| s.next_offset);
            if tx
                .blocking_send(SourceMsg::Assign {
                    at: at.clone(),
                    restored,
                })
                .is_err()
            {
                return starts;
            }
            Metrics::add(&self.metrics.partitions_assigned, 1);
            lock(&self.started).insert(at.clone());
            starts.push((at.clone(), from));
        }
        starts
    }

    /// The topic as the source names it (shared), if it is one of the source's.
    pub(super) fn topic(&self, name: &str) -> Option<&Arc<str>> {
        self.topics.iter().find(|t| &***t == name)
    }

    fn partitions_of(&self, tpl: &TopicPartitionList) -> Vec<TopicPartition> {
        tpl.elements()
            .iter()
            .filter_map(|e| {
                self.topic(e.topic())
                    .map(|t| TopicPartition::new(t, e.partition()))
            })
            .collect()
    }
}

impl ClientContext for Rebalancer {
    /// librdkafka's statistics (every `statistics.interval.ms`): the lag of each partition
    /// this consumer is assigned, as the broker's high watermark minus the position the
    /// source has read up to (before anything is read, the position it fetches from).
    fn stats(&self, statistics: rdkafka::Statistics) {
        let mut lag = BTreeMap::new();
        for (name, topic) in &statistics.topics {
            if self.topic(name).is_none() {
                continue;
            }
            for p in topic.partitions.values() {
                let position = if p.app_offset >= 0 {
                    p.app_offset
                } else {
                    p.next_offset
                };
                if p.partition < 0 || !p.desired || p.hi_offset < 0 || position < 0 {
                    continue;
                }
                lag.insert((name.clone(), p.partition), (p.hi_offset - position).max(0));
            }
        }
        self.metrics.set_consumer_lag(lag);
    }
}

impl ConsumerContext for Rebalancer {
    /// Replaces rdkafka's default handling (pre-callback, assign, post-callback) so that an
    /// assigned partition starts exactly at its checkpoint's offset, whatever the group's
    /// committed offset says: plugin state and input position then always agree (a stale
    /// checkpoint means records processed twice, never records missing from the state).
    /// The group uses the eager protocol (librdkafka's default), so assign/unassign apply.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let partitions = self.partitions_of(tpl);
                tracing::info!(partitions = ?partitions.iter().map(ToString::to_string).collect::<Vec<_>>(), "partitions assigned");
                for (at, from) in self.assign(&partitions) {
                    if let Some(offset) = from
                        && let Err(error) = tpl.set_partition_offset(
                            &at.topic,
                            at.partition,
                            Offset::Offset(offset),
                        )
                    {
                        tracing::error!(partition = %at, %error, "cannot start the partition at its checkpoint");
                    }
                }
                if let Err(error) = consumer.assign(tpl) {
                    tracing::error!(%error, "cannot take the assigned partitions");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let lost = consumer.assignment_lost();
                self.revoke(self.partitions_of(tpl), lost);
                if let Err(error) = consumer.unassign() {
                    tracing::error!(%error, "cannot give the revoked partitions up");
                }
            }
            other => {
                // librdkafka drops the assignment after a failed rebalance: treat every
                // partition as lost (no checkpoint: the group may have moved on).
                tracing::error!(error = ?other, "consumer group rebalance failed; dropping every partition");
                let all: Vec<TopicPartition> = lock(&self.started).iter().cloned().collect();
                self.revoke(all, true);
                let _ = consumer.unassign();
            }
        }
    }
}
