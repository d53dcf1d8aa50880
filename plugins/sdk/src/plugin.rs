//! The trait a plugin author implements.

use serde::de::DeserializeOwned;

use crate::batch::Batch;
use crate::info::PluginInfo;
use crate::output::Output;

/// A detector or aggregator. One value of this type lives inside each plugin instance.
///
/// The host calls, in order: [`Plugin::info`], [`Plugin::new`] with the plugin's settings,
/// then possibly [`Plugin::restore`] with a snapshot of a previous instance, then any number of
/// [`Plugin::process`] and [`Plugin::tick`] calls, with [`Plugin::snapshot`] in between.
///
/// Errors are plain strings shown to the operator. A panic is also contained by the host (the
/// instance is restarted from its last snapshot), but a returned error is cheaper and clearer.
pub trait Plugin: Sized + 'static {
    /// The plugin's settings, deserialised from its `[plugins.settings]` table in the host
    /// config (an empty object when there is none: give fields `#[serde(default)]`).
    type Settings: DeserializeOwned;

    /// Describes the plugin. Must not depend on settings.
    fn info() -> PluginInfo;

    /// Builds the plugin from its settings; an error refuses the load.
    fn new(settings: Self::Settings) -> Result<Self, String>;

    /// Looks at a batch of events (in arrival order: times may step back by up to the host's
    /// allowed lateness, never behind the last watermark) and emits alerts or
    /// rows into `out`.
    fn process(&mut self, batch: &Batch<'_>, out: &mut Output) -> Result<(), String>;

    /// The event-time watermark advanced to `watermark_ms`: no older event will arrive, so
    /// windows ending at or before it can be closed and emitted.
    fn tick(&mut self, watermark_ms: i64, out: &mut Output) -> Result<(), String> {
        let _ = (watermark_ms, out);
        Ok(())
    }

    /// Serialises state so it survives hot reload and restart. The default keeps no state.
    /// [`crate::state::encode`] does it for any `serde::Serialize` value.
    fn snapshot(&self) -> Result<Vec<u8>, String> {
        Ok(Vec::new())
    }

    /// Restores what [`Plugin::snapshot`] wrote, possibly in an older version of the plugin.
    /// An error makes the host log it and keep the fresh instance.
    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        let _ = state;
        Ok(())
    }
}
