//! The partition side of the processor: tasks started on assign (an input partition routes;
//! an internal partition gets fresh instances of its key group's plugins, restored from the
//! partition's checkpoint), checkpointed periodically and on revoke, and dropped without a
//! checkpoint when the assignment was lost.

use std::sync::Arc;
use std::time::Instant;

use super::checkpoint::Barrier;
use super::sink_stage::SinkWork;
use super::task::{Role, Task};
use super::tasks::Tasks;
use crate::plugin::{InstallError, Installed, PluginSet, Prepared};
use crate::shuffle::{Origins, Router};
use crate::source::{PartitionState, TopicPartition};

/// What a partitioned source's tasks are made from.
pub struct Partitioned {
    /// The loaded plugins, never run, from which each new partition's task gets fresh
    /// instances; it also decides swaps and refusals.
    pub template: PluginSet,
    /// How the input is re-partitioned by state key.
    pub router: Arc<Router>,
}

impl Partitioned {
    /// Starts the task of a newly assigned partition with fresh plugin instances, restoring
    /// the state its last owner checkpointed.
    pub fn assign(&self, tasks: &mut Tasks, at: TopicPartition, restored: Option<PartitionState>) {
        let (template, router) = (&self.template, &self.router);
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
        tasks.insert(at, task);
    }

    /// Checkpoints the tasks of `partitions` (dropping them when `drop` is set, on revoke):
    /// the returned work is a barrier, stored (states, then offsets) once the sinks hold
    /// everything before it; `done` is told when it is settled.
    pub fn checkpoint(
        &self,
        tasks: &mut Tasks,
        partitions: &[TopicPartition],
        drop: bool,
        done: Option<std::sync::mpsc::SyncSender<()>>,
    ) -> SinkWork {
        let mut states = Vec::new();
        for partition in partitions {
            let state = match tasks.map.get_mut(partition) {
                Some(task) => task.checkpoint(partition),
                None => None,
            };
            states.extend(state);
            if drop && tasks.retire(partition) {
                tracing::info!(
                    %partition,
                    "partition revoked; its task is checkpointed and dropped"
                );
            }
        }
        if states.is_empty() && done.is_none() {
            // Nothing moved and nobody waits: no barrier (a quiet input would otherwise send
            // an empty one every interval).
            return SinkWork::default();
        }
        let mut barrier = Barrier::new(self.router.input.to_string(), states);
        barrier.done.extend(done);
        SinkWork {
            barrier: Some(barrier),
            ..SinkWork::default()
        }
    }

    /// Drops the tasks of partitions this member lost without checkpointing them.
    pub fn drop_lost(tasks: &mut Tasks, partitions: &[TopicPartition]) {
        for partition in partitions {
            if tasks.retire(partition) {
                tracing::warn!(
                    %partition,
                    "partition lost; its task is dropped without a checkpoint (the new owner resumes from the last one)"
                );
            }
        }
    }

    /// Installs a plugin: the template decides whether it is accepted; every task of its key
    /// group then gets its own fresh instance, swapped in with its own state carried over.
    pub fn install(
        &mut self,
        tasks: &mut Tasks,
        prepared: Prepared,
        now: Instant,
    ) -> Result<Installed, InstallError> {
        let name = prepared.module.info.name.clone();
        let key = prepared.module.info.key.clone();
        let (template, router) = (&mut self.template, &self.router);
        {
            // A key group's internal topic exists from the start of the run; the consumer
            // reads only those.
            if !router.groups.iter().any(|g| g.key == key) {
                return Err(InstallError::Unavailable(format!(
                    "plugin {name} is keyed by {key}, and this running pipeline has no {key} key group (it re-partitions by {}): restart the host to add it",
                    router
                        .groups
                        .iter()
                        .map(|g| g.key.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            if let Some(old) = template.key_of(&name)
                && *old != key
            {
                return Err(InstallError::Unavailable(format!(
                    "plugin {name} changes its state key from {old} to {key}: its state would have to move between key groups; restart the host to deploy it"
                )));
            }
        }
        let done = template.install(prepared, now)?;
        for (at, task) in &mut tasks.map {
            // Only the tasks of the plugin's key group (route tasks belong to none).
            let in_group = router.group_of(&at.topic).is_some_and(|g| g.key == key);
            if !in_group {
                continue;
            }
            match template.fresh(&done.name) {
                Some(Ok(copy)) => {
                    if let Err(error) = task.plugins.install(copy, now) {
                        tracing::error!(partition = %at, plugin = %done.name, %error, "plugin not installed for this partition");
                    }
                }
                Some(Err(error)) => {
                    tracing::error!(partition = %at, plugin = %done.name, %error, "plugin could not start for this partition")
                }
                None => {}
            }
        }
        Ok(done)
    }
}
