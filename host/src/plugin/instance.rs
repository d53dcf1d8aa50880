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
        store.set_hostcall_fuel(runtime.limits.output_bytes);
        store.set_epoch_deadline(runtime.deadline_ticks());
        store.epoch_deadline_trap();
        let limits = runtime.limits;
        let bindings = pre.instantiate(&mut store).map_err(|e| {
            let cause = Cause {
                panic: None,
                growth_denied: store.data().limits.growth_denied,
            };
            classify(e, cause, &limits)
        })?;
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
        ctx.log.reset();
        ctx.limits.growth_denied = false;
        match call(&self.bindings, &mut self.store) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(message)) => Err(CallError::Plugin(message)),
            Err(trap) => {
                self.dead = true;
                let ctx = self.store.data_mut();
                let cause = Cause {
                    panic: ctx.log.last_panic.take(),
                    growth_denied: ctx.limits.growth_denied,
                };
                Err(classify(trap, cause, &self.limits))
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

/// What the host saw of a trap's cause while the call ran.
#[derive(Debug, Default)]
struct Cause {
    /// The panic report the SDK's hook sent before trapping.
    panic: Option<String>,
    /// The limiter refused to grow memory or a table.
    growth_denied: bool,
}

/// Names a trap by what the host observed, not by the error's text: a refused growth is the
/// memory cap (whatever the guest did next: abort, panic on a failed allocation), a panic
/// report is a panic, an interrupt is the deadline.
fn classify(error: wasmtime::Error, cause: Cause, limits: &super::engine::Limits) -> CallError {
    if cause.growth_denied {
        return CallError::Memory(limits.memory_bytes >> 20);
    }
    if let Some(message) = cause.panic {
        return CallError::Panic(message);
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => CallError::Deadline(limits.deadline.as_millis()),
        Some(Trap::StackOverflow) => CallError::Trap("stack overflow".into()),
        _ => CallError::Trap(format!("{error:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::engine::Limits;

    #[test]
    fn a_trap_is_named_by_what_the_host_saw_not_by_its_text() {
        let limits = Limits::default();
        let says_memory = || wasmtime::Error::msg("guest says: out of memory while growing memory");
        assert!(matches!(
            classify(says_memory(), Cause::default(), &limits),
            CallError::Trap(_)
        ));
        let denied = Cause {
            panic: Some("memory allocation failed".into()),
            growth_denied: true,
        };
        assert_eq!(
            classify(wasmtime::Error::msg("unreachable"), denied, &limits),
            CallError::Memory(64)
        );
        let panicked = Cause {
            panic: Some("boom".into()),
            growth_denied: false,
        };
        assert_eq!(
            classify(says_memory(), panicked, &limits),
            CallError::Panic("boom".into())
        );
        assert_eq!(
            classify(
                wasmtime::Error::new(Trap::Interrupt),
                Cause::default(),
                &limits
            ),
            CallError::Deadline(500)
        );
    }
}
