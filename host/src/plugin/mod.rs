//! The plugin runtime: loading components, sandboxed instances, supervision with restart and
//! quarantine, the set of loaded plugins, and hot reload from a watched folder.

pub mod batch;
mod bindings;
mod component;
mod engine;
mod fan_out;
mod guest_log;
mod info;
mod instance;
mod log_fields;
mod output;

pub use bindings::CONTRACT_VERSION;
pub use component::{LoadError, PluginModule};
pub use engine::{Limits, Runtime, RuntimeError};
pub use info::{PluginInfo, PluginKind};
pub use instance::{CallError, Instance};
pub use output::{Refused, convert_output};
mod set;
mod slot;

pub use set::{InstallError, Installed, PluginSet, PluginStatus, Prepared, SetOutput};
pub use slot::{Outcome, Policy, SlotStats};
mod loader;
mod watch;

pub use loader::{PrepareError, PrepareReason, is_plugin_file, plugin_files, prepare};
pub(crate) use watch::content_hash;
pub use watch::{Control, SETTLE, WatchError, watch_folder};
