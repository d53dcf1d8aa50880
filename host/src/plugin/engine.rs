//! The one wasmtime [`Engine`] and [`Linker`] of the process, with the sandbox limits every
//! plugin call runs under.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, StoreLimits, StoreLimitsBuilder};

use super::bindings::{ClickwatchPlugin, Level, clickwatch};
use super::guest_log::{Admit, GuestLog, MAX_LOG_LINES};

/// Sandbox limits applied to every plugin instance.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Wall-clock budget of one guest call.
    pub deadline: Duration,
    /// Largest linear memory an instance may grow to, in bytes.
    pub memory_bytes: usize,
    /// Most bytes the host allocates to copy one call's data out of the guest (a call's
    /// output, a log line): wasmtime's hostcall fuel, spent on every string and list while
    /// lifting (list entries at their host size). Without it, entries aliasing one guest
    /// string would let a small guest describe a huge output. Past it the call fails as a
    /// trap ("too much data is being copied"), contained like any other.
    pub output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Duration::from_millis(500),
            memory_bytes: 64 << 20,
            output_bytes: 64 << 20,
        }
    }
}

/// How often the epoch advances: the granularity of call deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Per-instance host state: the plugin's name for its log lines, its memory limiter, and the
/// panic message its SDK reported just before trapping.
pub struct PluginCtx {
    pub(crate) plugin: Arc<str>,
    pub(crate) limits: Limiter,
    /// What the plugin logged during the current call (line cap, panic report).
    pub(crate) log: GuestLog,
}

impl PluginCtx {
    pub(crate) fn new(plugin: Arc<str>, limits: &Limits) -> Self {
        PluginCtx {
            plugin,
            limits: Limiter {
                memory_bytes: 0,
                inner: StoreLimitsBuilder::new()
                    .memory_size(limits.memory_bytes)
                    .trap_on_grow_failure(true)
                    // One linear memory, so the cap is a cap on the instance; tables bounded too,
                    // or `table.grow` would be a way around the memory cap.
                    .memories(1)
                    .table_elements(100_000)
                    .instances(8)
                    .tables(8)
                    .build(),
                growth_denied: false,
            },
            log: GuestLog::default(),
        }
    }
}

/// The store's limits, and the linear memory the instance holds (for the memory gauge).
pub(crate) struct Limiter {
    inner: StoreLimits,
    pub(crate) memory_bytes: usize,
    /// A growth of linear memory or a table was refused during the current call: a trap that
    /// follows is the cap's doing, whatever its message says.
    pub(crate) growth_denied: bool,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.inner.memory_growing(current, desired, maximum);
        match allowed {
            Ok(true) => self.memory_bytes = self.memory_bytes.saturating_sub(current) + desired,
            Ok(false) | Err(_) => self.growth_denied = true,
        }
        allowed
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.inner.table_growing(current, desired, maximum);
        if !matches!(allowed, Ok(true)) {
            self.growth_denied = true;
        }
        allowed
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.memory_grow_failed(error)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

impl clickwatch::plugin::host::Host for PluginCtx {
    fn log(&mut self, level: Level, message: String, fields: Vec<(String, String)>) {
        let plugin = &*self.plugin;
        match self.log.admit(&fields) {
            Admit::Drop => return,
            Admit::DropAndWarn => {
                tracing::warn!(
                    plugin,
                    limit = MAX_LOG_LINES,
                    "plugin log lines dropped for the rest of this call"
                );
                return;
            }
            Admit::PanicQuiet => {
                self.log.last_panic = Some(message);
                return;
            }
            Admit::Panic => {
                let location = fields
                    .iter()
                    .find(|(k, _)| k == "location")
                    .map(|(_, v)| v.as_str())
                    .unwrap_or("");
                tracing::error!(plugin, location, "plugin panicked: {message}");
                self.log.last_panic = Some(message);
                return;
            }
            Admit::Write => {}
        }
        let structured = match level {
            Level::Trace => tracing_core::Level::TRACE,
            Level::Debug => tracing_core::Level::DEBUG,
            Level::Info => tracing_core::Level::INFO,
            Level::Warn => tracing_core::Level::WARN,
            Level::Error => tracing_core::Level::ERROR,
        };
        if super::log_fields::emit(structured, plugin, &message, &fields).is_some() {
            return;
        }
        let fields = fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        match level {
            Level::Trace => tracing::trace!(plugin, fields, "{message}"),
            Level::Debug => tracing::debug!(plugin, fields, "{message}"),
            Level::Info => tracing::info!(plugin, fields, "{message}"),
            Level::Warn => tracing::warn!(plugin, fields, "{message}"),
            Level::Error => tracing::error!(plugin, fields, "{message}"),
        }
    }
}

impl clickwatch::plugin::types::Host for PluginCtx {}

/// The process-wide runtime: engine, linker and limits. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) linker: Arc<Linker<PluginCtx>>,
    pub(crate) limits: Limits,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The engine could not be set up (a bug or an unsupported platform, never the user's input).
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the wasm runtime: {0}")]
pub struct RuntimeError(String);

impl Runtime {
    /// Builds the engine with epoch interruption on, links the host imports, and starts the
    /// thread that advances the epoch (it stops when the engine is dropped).
    pub fn new(limits: Limits) -> Result<Self, RuntimeError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        config.max_wasm_stack(1 << 20);
        let engine = Engine::new(&config).map_err(|e| RuntimeError(e.to_string()))?;
        let mut linker = Linker::new(&engine);
        ClickwatchPlugin::add_to_linker::<PluginCtx, HasSelf<PluginCtx>>(&mut linker, |ctx| ctx)
            .map_err(|e| RuntimeError(e.to_string()))?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| RuntimeError(e.to_string()))?;
        Ok(Runtime {
            engine,
            linker: Arc::new(linker),
            limits,
        })
    }

    /// The limits instances are created with.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Epoch ticks that make up one call deadline (at least one).
    pub(crate) fn deadline_ticks(&self) -> u64 {
        let ticks = self.limits.deadline.as_micros() / EPOCH_TICK.as_micros();
        (ticks as u64).max(1) + 1
    }
}
