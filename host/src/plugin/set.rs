//! The loaded plugins of one pipeline: fan a batch out to every plugin, collect their output,
//! and swap, add or remove plugins between batches.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::bindings::ClickBatch;
use super::component::PluginModule;
use super::fan_out;
use super::instance::{CallError, Instance};
use super::output::{Refused, convert_output};
use super::slot::{Outcome, Policy, Slot, SlotStats};
use crate::aggregate::{AggregateRow, SchemaError, TableSchema, check_evolution};
use crate::alert::Alert;
use crate::keyed::StateKey;
use crate::metrics::PluginMeters;

/// A plugin ready to go live: compiled, validated, initialised with its settings.
pub struct Prepared {
    /// Where it was loaded from.
    pub path: PathBuf,
    /// The module.
    pub module: PluginModule,
    /// Its settings JSON.
    pub settings: String,
    /// A fresh instance on which `init` succeeded.
    pub instance: Instance,
}

impl Prepared {
    /// Another fresh, initialised instance of the same module and settings (for another
    /// worker thread's tasks).
    pub fn again(&self) -> Result<Prepared, CallError> {
        let instance = self.module.instantiate(&self.settings)?;
        Ok(Prepared {
            path: self.path.clone(),
            module: self.module.clone(),
            settings: self.settings.clone(),
            instance,
        })
    }
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("path", &self.path)
            .field("module", &self.module)
            .finish_non_exhaustive()
    }
}

/// Why a prepared plugin was not installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Another loaded file already provides this plugin name. The prepared plugin is handed
    /// back so the caller can install it once that file is removed.
    #[error("plugin {name} is already loaded from {other}")]
    Parked {
        /// Plugin name.
        name: String,
        /// The file that has it.
        other: String,
        /// The plugin that was not installed.
        prepared: Box<Prepared>,
    },
    /// A table is owned by a different plugin.
    #[error("table {table} already belongs to plugin {owner}")]
    TableOwned {
        /// Table.
        table: String,
        /// Its owner.
        owner: String,
    },
    /// The table's schema cannot change that way.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// There is no plugin set to install into.
    #[error("{0}")]
    Unavailable(String),
}

/// What the plugins produced for one input.
#[derive(Debug, Default)]
pub struct SetOutput {
    /// Alerts from detectors.
    pub alerts: Vec<Alert>,
    /// Rows from aggregators.
    pub rows: Vec<AggregateRow>,
    /// Alerts and rows the host refused (for the dead-letter destination).
    pub refused: Vec<Refused>,
}

/// What changed when a plugin was installed.
#[derive(Debug)]
pub struct Installed {
    /// Plugin name.
    pub name: String,
    /// The version it replaced, if any.
    pub replaced: Option<String>,
    /// Tables to create or extend in the aggregate sinks before its rows arrive.
    pub tables: Vec<TableSchema>,
    /// Whether the previous state was restored into it.
    pub restored: bool,
}

struct Entry {
    path: PathBuf,
    slot: Slot,
}

/// The live plugins, by name.
pub struct PluginSet {
    entries: BTreeMap<String, Entry>,
    policy: Policy,
    /// Threads a large batch may fan out to (see [`PluginSet::process`]).
    threads: usize,
    /// Where the plugins' calls are exported, if anywhere.
    meters: Option<Arc<PluginMeters>>,
}

impl std::fmt::Debug for PluginSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginSet")
            .field("plugins", &self.entries.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Name, version and counters of one loaded plugin.
#[derive(Debug, Clone)]
pub struct PluginStatus {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// File.
    pub path: PathBuf,
    /// Counters.
    pub stats: SlotStats,
    /// Quarantined right now.
    pub quarantined: bool,
}

impl PluginSet {
    /// An empty set supervising plugins with `policy`.
    pub fn new(policy: Policy) -> Self {
        PluginSet {
            entries: BTreeMap::new(),
            policy,
            threads: 1,
            meters: None,
        }
    }

    /// Exports every plugin's calls, latencies and failures into `meters`.
    pub fn with_meters(mut self, meters: Arc<PluginMeters>) -> Self {
        self.meters = Some(meters);
        self
    }

    /// Lets a large batch run its plugins on up to `threads` threads (at least 1).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// An empty set with the same supervision policy and threads.
    pub fn empty_like(&self) -> PluginSet {
        PluginSet {
            meters: self.meters.clone(),
            ..PluginSet::new(self.policy).with_threads(self.threads)
        }
    }

    /// The state key of the live plugin `name`.
    pub fn key_of(&self, name: &str) -> Option<&StateKey> {
        self.entries.get(name).map(|e| &e.slot.module().info.key)
    }

    /// The distinct state keys of the loaded plugins.
    pub fn keys(&self) -> Vec<StateKey> {
        let mut keys: Vec<StateKey> = self
            .entries
            .values()
            .map(|e| e.slot.module().info.key.clone())
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// Number of loaded plugins.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is loaded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every table the loaded plugins declare.
    pub fn tables(&self) -> Vec<TableSchema> {
        self.entries
            .values()
            .flat_map(|e| e.slot.module().info.tables.clone())
            .collect()
    }

    /// Status of each plugin.
    pub fn status(&self) -> Vec<PluginStatus> {
        let now = Instant::now();
        self.entries
            .iter()
            .map(|(name, e)| PluginStatus {
                name: name.clone(),
                version: e.slot.module().info.version.clone(),
                path: e.path.clone(),
                stats: e.slot.stats(),
                quarantined: e.slot.is_quarantined(now),
            })
            .collect()
    }

    /// Installs a prepared plugin: a new name is added; a known name is swapped, carrying its
    /// state over through snapshot → restore (a failed restore is logged and the new version
    /// starts fresh). Refused, with the old version left running, if its tables conflict.
    pub fn install(&mut self, prepared: Prepared, now: Instant) -> Result<Installed, InstallError> {
        let info = prepared.module.info.clone();
        if let Some(existing) = self.entries.get(&info.name)
            && existing.path != prepared.path
        {
            return Err(InstallError::Parked {
                name: info.name.clone(),
                other: existing.path.display().to_string(),
                prepared: Box::new(prepared),
            });
        }
        let mut tables = Vec::new();
        for table in &info.tables {
            let owner = self.entries.iter().find(|(_, e)| {
                e.slot
                    .module()
                    .info
                    .tables
                    .iter()
                    .any(|t| t.name == table.name)
            });
            match owner {
                Some((owner, _)) if *owner != info.name => {
                    return Err(InstallError::TableOwned {
                        table: table.name.clone(),
                        owner: owner.clone(),
                    });
                }
                Some((_, entry)) => {
                    let old = entry
                        .slot
                        .module()
                        .info
                        .tables
                        .iter()
                        .find(|t| t.name == table.name)
                        .cloned();
                    if let Some(old) = old {
                        check_evolution(&old, table)?;
                        if old != *table {
                            tables.push(table.clone());
                        }
                    }
                }
                None => tables.push(table.clone()),
            }
        }
        // The same file may have been renamed to provide another plugin: drop the old entry.
        let renamed: Vec<String> = self
            .entries
            .iter()
            .filter(|(n, e)| **n != info.name && e.path == prepared.path)
            .map(|(n, _)| n.clone())
            .collect();
        for name in renamed {
            self.entries.remove(&name);
        }
        let mut slot = Slot::new(
            prepared.module,
            prepared.settings,
            prepared.instance,
            self.policy,
        );
        if let Some(meters) = &self.meters {
            slot.set_meter(meters.meter(&info.name, &info.version));
            meters.set_live(&info.name, &info.version);
        }
        let mut replaced = None;
        let mut restored = false;
        if let Some(mut old) = self.entries.remove(&info.name) {
            replaced = Some(old.slot.module().info.version.clone());
            if let Some(state) = old.slot.take_snapshot(now) {
                match slot.restore(&state) {
                    Ok(()) => restored = true,
                    Err(error) => {
                        tracing::warn!(plugin = %info.name, %error, "new version could not restore the old state; it starts fresh")
                    }
                }
            }
        }
        self.entries.insert(
            info.name.clone(),
            Entry {
                path: prepared.path,
                slot,
            },
        );
        Ok(Installed {
            name: info.name.clone(),
            replaced,
            tables,
            restored,
        })
    }

    /// A fresh, initialised instance of the live plugin `name`, ready to install into another
    /// set (one set per Kafka partition shares the compiled modules).
    pub fn fresh(&self, name: &str) -> Option<Result<Prepared, CallError>> {
        let entry = self.entries.get(name)?;
        let module = entry.slot.module().clone();
        let settings = entry.slot.settings().to_owned();
        Some(module.instantiate(&settings).map(|instance| Prepared {
            path: entry.path.clone(),
            module,
            settings,
            instance,
        }))
    }

    /// A set with the same plugins, each a fresh instance with empty state. A plugin whose
    /// `init` fails is left out and named in the second value.
    pub fn fork(&self, now: Instant) -> (PluginSet, Vec<(String, CallError)>) {
        self.fork_keyed(None, now)
    }

    /// Like [`PluginSet::fork`], with only the plugins keyed by `key` (all when `None`).
    pub fn fork_keyed(
        &self,
        key: Option<&StateKey>,
        now: Instant,
    ) -> (PluginSet, Vec<(String, CallError)>) {
        let mut set = self.empty_like();
        let mut failed = Vec::new();
        for (name, entry) in &self.entries {
            if key.is_some_and(|k| entry.slot.module().info.key != *k) {
                continue;
            }
            match self.fresh(name) {
                Some(Ok(prepared)) => {
                    if let Err(error) = set.install(prepared, now) {
                        tracing::error!(plugin = %name, %error, "cannot install a plugin copy");
                    }
                }
                Some(Err(error)) => failed.push((name.clone(), error)),
                None => {}
            }
        }
        (set, failed)
    }

    /// Restores saved state into the live plugin `name` and keeps it as its last good snapshot.
    /// `Ok(false)` when no such plugin is loaded.
    pub fn restore(&mut self, name: &str, state: &[u8]) -> Result<bool, CallError> {
        match self.entries.get_mut(name) {
            Some(entry) => entry.slot.restore(state).map(|()| true),
            None => Ok(false),
        }
    }

    /// Names of the loaded plugins.
    pub fn names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    /// Records `state` as the plugin's last good snapshot (it was restored into the instance
    /// before install), so a restart after a trap starts from it.
    pub fn remember_snapshot(&mut self, name: &str, state: Vec<u8>) {
        if let Some(e) = self.entries.get_mut(name) {
            e.slot.remember_snapshot(state);
        }
    }

    /// Unloads whatever plugin came from `path`; returns its name.
    pub fn remove_path(&mut self, path: &Path) -> Option<String> {
        let name = self.name_of_path(path)?;
        self.entries.remove(&name);
        if let Some(meters) = &self.meters {
            meters.unload(&name);
        }
        Some(name)
    }

    /// Points the plugin loaded from `from` at the file `to`, keeping its instance and state;
    /// returns its name. A parked file taking over when the live one is removed is then
    /// installed as an ordinary swap, with the state carried over.
    pub fn repath(&mut self, from: &Path, to: &Path) -> Option<String> {
        let (name, entry) = self.entries.iter_mut().find(|(_, e)| e.path == from)?;
        entry.path = to.to_path_buf();
        Some(name.clone())
    }

    /// The name of the plugin loaded from `path`.
    pub fn name_of_path(&self, path: &Path) -> Option<String> {
        self.entries
            .iter()
            .find(|(_, e)| e.path == path)
            .map(|(n, _)| n.clone())
    }

    /// Whether a plugin was loaded from `path`.
    pub fn has_path(&self, path: &Path) -> bool {
        self.name_of_path(path).is_some()
    }

    /// Runs every plugin over a batch. The plugins are independent (each sees the whole
    /// batch and keeps its own state), so a large batch is shared out over up to `threads`
    /// threads, each taking the next plugin not yet run; their output is collected in name
    /// order as in a serial run, so it does not depend on the threads. One task (e.g. the one
    /// partition of a `global` key group) then uses more than one core.
    pub fn process(&mut self, batch: &Arc<ClickBatch>, now: Instant) -> SetOutput {
        let threads = self.threads.min(self.entries.len());
        let mut slots: Vec<&mut Slot> = self.entries.values_mut().map(|e| &mut e.slot).collect();
        let outcomes = if threads >= 2 && batch.len >= fan_out::MIN_EVENTS {
            fan_out::process(&mut slots, batch, now, threads)
        } else {
            slots
                .iter_mut()
                .map(|slot| slot.process(batch, now))
                .collect()
        };
        let mut out = SetOutput::default();
        for (slot, outcome) in slots.into_iter().zip(outcomes) {
            collect(slot, outcome, &mut out);
        }
        out
    }

    /// Advances every plugin's watermark.
    pub fn tick(&mut self, watermark_ms: i64, now: Instant) -> SetOutput {
        let mut out = SetOutput::default();
        for entry in self.entries.values_mut() {
            let outcome = entry.slot.tick(watermark_ms, now);
            collect(&mut entry.slot, outcome, &mut out);
        }
        out
    }

    /// Fresh snapshots of every plugin, by name (at shutdown).
    pub fn snapshots(&mut self, now: Instant) -> Vec<(String, Vec<u8>)> {
        self.entries
            .iter_mut()
            .filter_map(|(name, e)| e.slot.take_snapshot(now).map(|s| (name.clone(), s)))
            .collect()
    }
}

fn collect(slot: &mut Slot, outcome: Outcome, out: &mut SetOutput) {
    if let Outcome::Done(output) = outcome {
        let info = &slot.module().info;
        let refused = convert_output(info, output, &mut out.alerts, &mut out.rows);
        if let Some(first) = refused.first() {
            tracing::warn!(plugin = %info.name, version = %info.version, refused = refused.len(),
                problem = %first.problem, "plugin output refused; dead-lettered");
            slot.count_refused(refused.len() as u64);
        }
        out.refused.extend(refused);
    }
}
