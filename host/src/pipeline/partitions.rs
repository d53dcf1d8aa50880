//! The partition side of the processor: tasks started on assign (an input partition routes;
//! an internal partition gets fresh instances of its key group's plugins, restored from the
//! partition's checkpoint), checkpointed periodically and on revoke, and dropped without a
//! checkpoint when the assignment was lost.

use std::collections::BTreeMap;
use std::time::Instant;

use super::processor::Processor;
use super::sink_stage::SinkWork;
use super::task::{Role, Task};
use crate::plugin::PluginStatus;
use crate::shuffle::Origins;
use crate::source::{Checkpoint, PartitionState, TopicPartition};

impl Processor {
    /// Starts the task of a newly assigned partition with fresh plugin instances, restoring
    /// the state its last owner checkpointed.
    pub(super) fn assign(&mut self, at: TopicPartition, restored: Option<PartitionState>) {
        let (Some(template), Some(router)) = (&self.template, &self.router) else {
            tracing::error!(
                partition = %at,
                "a partition was assigned to an unpartitioned pipeline"
            );
            return;
        };
        let now = Instant::now();
        let (role, (plugins, failed)) = if at.topic == router.input {
            // Routing needs no plugins: they run where the key groups are.
            (
                Role::Route(router.clone()),
                (template.empty_like(), Vec::new()),
            )
        } else if let Some(group) = router.group_of(&at.topic) {
            (
                Role::Keyed {
                    origins: Origins::default(),
                    input: router.input.clone(),
                },
                template.fork_keyed(Some(&group.key), now),
            )
        } else {
            tracing::error!(partition = %at, "a partition of an unknown topic was assigned");
            return;
        };
        let partition = &at;
        for (plugin, error) in failed {
            tracing::error!(%partition, %plugin, %error, "plugin could not start for this partition; it misses the partition's events");
        }
        let task = match &restored {
            Some(state) => {
                tracing::info!(
                    %partition,
                    next_offset = state.next_offset,
                    plugins = state.plugins.len(),
                    "partition assigned; state restored"
                );
                Task::resumed(plugins, role, state)
            }
            None => {
                tracing::info!(
                    %partition,
                    "partition assigned; no saved state, plugins start fresh"
                );
                Task::new(plugins, role)
            }
        };
        if let Some(old) = self.tasks.insert(at, task) {
            merge_status(&mut self.retired, old.plugins.status());
        }
    }

    /// Checkpoints the tasks of `partitions` (dropping them when `drop` is set, on revoke):
    /// the returned work carries an ack, and the checkpoint goes to the source, which stores
    /// the states and commits the offsets once the sinks acknowledged.
    pub(super) fn checkpoint(
        &mut self,
        partitions: &[TopicPartition],
        drop: bool,
        done: Option<std::sync::mpsc::SyncSender<()>>,
    ) -> SinkWork {
        self.last_checkpoint = Instant::now();
        let mut states = Vec::new();
        for partition in partitions {
            let state = match self.tasks.get_mut(partition) {
                Some(task) => task.checkpoint(partition),
                None => None,
            };
            states.extend(state);
            if drop && let Some(task) = self.tasks.remove(partition) {
                merge_status(&mut self.retired, task.plugins.status());
                tracing::info!(
                    %partition,
                    "partition revoked; its task is checkpointed and dropped"
                );
            }
        }
        let Some(checkpoints) = &self.checkpoints else {
            if let Some(done) = done {
                let _ = done.send(());
            }
            return SinkWork::default();
        };
        let (ack_tx, ack_rx) = tokio::sync::oneshot::channel();
        let checkpoint = Checkpoint {
            ack: ack_rx,
            partitions: states,
            done,
        };
        if let Err(std::sync::mpsc::SendError(checkpoint)) = checkpoints.send(checkpoint)
            && let Some(done) = checkpoint.done
        {
            let _ = done.send(());
        }
        SinkWork {
            acks: vec![ack_tx],
            ..SinkWork::default()
        }
    }

    /// Drops the tasks of partitions this member lost without checkpointing them.
    pub(super) fn drop_lost(&mut self, partitions: &[TopicPartition]) {
        for partition in partitions {
            if let Some(task) = self.tasks.remove(partition) {
                merge_status(&mut self.retired, task.plugins.status());
                tracing::warn!(
                    %partition,
                    "partition lost; its task is dropped without a checkpoint (the new owner resumes from the last one)"
                );
            }
        }
    }
}

/// Adds the counters of `statuses` into `all`, by plugin name. `statuses` are the newer ones
/// (tasks dropped later, or still live), so their version and file win: a plugin swapped after
/// a rebalance is reported at its current version.
pub(super) fn merge_status(all: &mut BTreeMap<String, PluginStatus>, statuses: Vec<PluginStatus>) {
    for status in statuses {
        match all.get_mut(&status.name) {
            Some(sum) => {
                sum.version = status.version;
                sum.path = status.path;
                sum.stats.events += status.stats.events;
                sum.stats.failures += status.stats.failures;
                sum.stats.restarts += status.stats.restarts;
                sum.stats.quarantines += status.stats.quarantines;
                sum.stats.skipped_events += status.stats.skipped_events;
                sum.quarantined |= status.quarantined;
            }
            None => {
                all.insert(status.name.clone(), status);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::SlotStats;

    fn status(version: &str, events: u64) -> PluginStatus {
        PluginStatus {
            name: "counter".into(),
            version: version.into(),
            path: format!("{version}.wasm").into(),
            stats: SlotStats {
                events,
                ..SlotStats::default()
            },
            quarantined: false,
        }
    }

    #[test]
    fn merged_counters_add_up_and_the_newer_version_wins() {
        let mut all = BTreeMap::new();
        merge_status(&mut all, vec![status("1.0.0", 10)]);
        merge_status(&mut all, vec![status("2.0.0", 5)]);
        let counter = &all["counter"];
        assert_eq!(
            (counter.version.as_str(), counter.stats.events),
            ("2.0.0", 15)
        );
        assert_eq!(counter.path, std::path::PathBuf::from("2.0.0.wasm"));
    }
}
