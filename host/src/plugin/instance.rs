//! One live plugin instance: a [`Store`] with its limits, and guarded calls into the guest.
//! Every call runs under the epoch deadline; a trap marks the instance dead (wasmtime cannot
//! re-enter it) and is classified so operators see why.

use std::sync::Arc;

use wasmtime::{Store, Trap};

use super::bindings::{ClickBatch, ClickwatchPlugin, ClickwatchPluginPre, Output, PluginInfo};
use super::engine::{PluginCtx, Runtime};

/// Why a call into a plugin failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// The plugin returned an error; the instance is still usable.
    #[error("plugin returned an error: {0}")]
    Plugin(String),
    /// The call overran its deadline and was interrupted.
    #[error("call exceeded its {0} ms deadline and was interrupted")]
    Deadline(u128),
    /// The plugin tried to grow memory past its cap.
    #[error("plugin exceeded its memory cap of {0} MiB")]
    Memory(usize),
    /// The plugin panicked (message from the SDK's panic hook).
    #[error("plugin panicked: {0}")]
    Panic(String),
    /// Any other trap.
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The instance trapped earlier and cannot be called again.
    #[error("instance is dead after an earlier trap")]
    Dead,
}

impl CallError {
    /// Whether the instance is unusable after this error.
    pub fn is_trap(&self) -> bool {
        !matches!(self, CallError::Plugin(_))
    }

    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            CallError::Plugin(_) => "error",
            CallError::Deadline(_) => "deadline",
            CallError::Memory(_) => "memory",
            CallError::Panic(_) => "panic",
            CallError::Trap(_) | CallError::Dead => "trap",
        }
    }
}

/// A live instance.
pub struct Instance {
    store: Store<PluginCtx>,
    bindings: ClickwatchPlugin,
    deadline_ticks: u64,
    limits: super::engine::Limits,
    dead: bool,
}

impl Instance {
    pub(crate) fn new(
        runtime: &Runtime,
        pre: &ClickwatchPluginPre<PluginCtx>,
        name: Arc<str>,
    ) -> Result<Self, CallError> {
        let mut store = Store::new(&runtime.engine, PluginCtx::new(name, &runtime.limits));
        store.limiter(|ctx| &mut ctx.limits);
        store.set_epoch_deadline(runtime.deadline_ticks());
        store.epoch_deadline_trap();
        let limits = runtime.limits;
        let bindings = pre
            .instantiate(&mut store)
            .map_err(|e| classify(e, None, &limits))?;
        Ok(Instance {
            store,
            bindings,
            deadline_ticks: runtime.deadline_ticks(),
            limits,
            dead: false,
        })
    }

    /// Runs one guest call under the deadline, turning traps into [`CallError`]s.
    fn guarded<R>(
        &mut self,
        call: impl FnOnce(
            &ClickwatchPlugin,
            &mut Store<PluginCtx>,
        ) -> wasmtime::Result<Result<R, String>>,
    ) -> Result<R, CallError> {
        if self.dead {
            return Err(CallError::Dead);
        }
        self.store.set_epoch_deadline(self.deadline_ticks);
        let ctx = self.store.data_mut();
        ctx.last_panic = None;
        ctx.log_lines = 0;
        match call(&self.bindings, &mut self.store) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(message)) => Err(CallError::Plugin(message)),
            Err(trap) => {
                self.dead = true;
                let panic = self.store.data_mut().last_panic.take();
                Err(classify(trap, panic, &self.limits))
            }
        }
    }

    /// The plugin's declared info.
    pub fn info(&mut self) -> Result<PluginInfo, CallError> {
        self.guarded(|b, s| b.clickwatch_plugin_plugin().call_info(s).map(Ok))
    }

    /// Configures the plugin.
    pub fn init(&mut self, settings: &str) -> Result<(), CallError> {
        self.guarded(|b, s| b.clickwatch_plugin_plugin().call_init(s, settings))
    }

    /// Processes a batch.
    pub fn process(&mut self, batch: &ClickBatch) -> Result<Output, CallError> {
        self.guarded(|b, s| b.clickwatch_plugin_plugin().call_process(s, batch))
    }

    /// Advances the watermark.
    pub fn tick(&mut self, watermark_ms: i64) -> Result<Output, CallError> {
        self.guarded(|b, s| b.clickwatch_plugin_plugin().call_tick(s, watermark_ms))
    }

    /// Serialises the plugin's state.
    pub fn snapshot(&mut self) -> Result<Vec<u8>, CallError> {
        self.guarded(|b, s| b.clickwatch_plugin_plugin().call_snapshot(s))
    }

    /// Restores state.
    pub fn restore(&mut self, state: &[u8]) -> Result<(), CallError> {
        self.guarded(|b, s| b.clickwatch_plugin_plugin().call_restore(s, state))
    }

    /// Linear memory the instance holds, bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.store.data().limits.memory_bytes as u64
    }

    /// Whether a trap made the instance unusable.
    pub fn is_dead(&self) -> bool {
        self.dead
    }
}

fn classify(
    error: wasmtime::Error,
    panic: Option<String>,
    limits: &super::engine::Limits,
) -> CallError {
    if let Some(message) = panic {
        return CallError::Panic(message);
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => return CallError::Deadline(limits.deadline.as_millis()),
        Some(Trap::StackOverflow) => return CallError::Trap("stack overflow".into()),
        _ => {}
    }
    let text = format!("{error:#}");
    if text.contains("growing memory")
        || text.contains("memory allocation")
        || text.contains("out of memory")
    {
        return CallError::Memory(limits.memory_bytes >> 20);
    }
    CallError::Trap(text)
}
