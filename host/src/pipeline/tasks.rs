//! The tasks one processor runs, by partition, and the counters of the tasks it dropped
//! (revoked partitions), so the run summary covers every plugin instance that ever ran.

use std::collections::BTreeMap;

use super::task::Task;
use crate::plugin::PluginStatus;
use crate::source::TopicPartition;

/// Live tasks and the summed counters of dropped ones.
#[derive(Default)]
pub struct Tasks {
    /// The live tasks.
    pub map: BTreeMap<TopicPartition, Task>,
    /// Counters of tasks already dropped, by plugin.
    retired: BTreeMap<String, PluginStatus>,
}

impl Tasks {
    /// Adds `task` for `at`; a task it replaces is retired.
    pub fn insert(&mut self, at: TopicPartition, task: Task) {
        if let Some(old) = self.map.insert(at, task) {
            merge_status(&mut self.retired, old.plugins.status());
        }
    }

    /// Drops the task of `at`, keeping its counters; whether there was one.
    pub fn retire(&mut self, at: &TopicPartition) -> bool {
        match self.map.remove(at) {
            Some(task) => {
                merge_status(&mut self.retired, task.plugins.status());
                true
            }
            None => false,
        }
    }

    /// Counters of every plugin, summed over live and dropped tasks.
    pub fn status(&self) -> BTreeMap<String, PluginStatus> {
        let mut all = self.retired.clone();
        for task in self.map.values() {
            merge_status(&mut all, task.plugins.status());
        }
        all
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
