//! Turning bytes into a validated, pre-instantiated plugin: check it is wasm, encode a core
//! module into a component, check the contract version, compile once, link once, and read
//! its declared info.

use std::sync::Arc;

use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use super::bindings::{self, CONTRACT_PACKAGE, CONTRACT_VERSION, ClickwatchPluginPre};
use super::engine::Runtime;
use super::info::{PluginInfo, convert_info};
use super::instance::{CallError, Instance};

/// Why a file cannot be loaded as a plugin. Every variant is the plugin author's to fix.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not a WebAssembly binary at all.
    #[error("not a WebAssembly file (it does not start with the wasm magic bytes)")]
    NotWasm,
    /// A core module that cannot be turned into a component.
    #[error(
        "a core wasm module without a usable Clickwatch component type (was it built with the clickwatch SDK?): {0}"
    )]
    Encode(String),
    /// Compilation failed.
    #[error("invalid WebAssembly: {0}")]
    Compile(String),
    /// Exports no Clickwatch plugin interface.
    #[error(
        "not a Clickwatch plugin: it exports {exports:?}, not {CONTRACT_PACKAGE}/plugin@{CONTRACT_VERSION}"
    )]
    NotAPlugin {
        /// What it exports instead.
        exports: Vec<String>,
    },
    /// Built against a contract this host does not implement.
    #[error(
        "built against contract {CONTRACT_PACKAGE}@{found}; this host supports {CONTRACT_PACKAGE}@{CONTRACT_VERSION} (the same major.minor); rebuild it with the matching clickwatch-sdk"
    )]
    Contract {
        /// The version it was built against.
        found: String,
    },
    /// Imports something the host does not provide (files, network, clocks, ...).
    #[error("imports something this host does not provide (plugins get no I/O): {0}")]
    Link(String),
    /// `info()` failed or declared something invalid.
    #[error("invalid plugin info: {0}")]
    Info(String),
    /// Instantiation or `init` failed.
    #[error("init failed: {0}")]
    Init(#[from] CallError),
}

/// A compiled, linked plugin with its declared info: instantiate it as often as needed.
#[derive(Clone)]
pub struct PluginModule {
    /// What it declares.
    pub info: Arc<PluginInfo>,
    pre: ClickwatchPluginPre<super::engine::PluginCtx>,
    runtime: Runtime,
}

impl std::fmt::Debug for PluginModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginModule")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// Whether a contract version is one this host implements: the same major.minor (patch
/// releases only add documentation).
fn same_series(version: &str) -> bool {
    version
        .split('.')
        .take(2)
        .eq(CONTRACT_VERSION.split('.').take(2))
        && version.split('.').count() == 3
}

/// Finds the contract version a component was built against from its export names.
fn contract_of(component: &Component, runtime: &Runtime) -> Result<(), LoadError> {
    let ty = component.component_type();
    let mut exports = Vec::new();
    for (name, item) in ty.exports(&runtime.engine) {
        if let ComponentItem::ComponentInstance(_) = item.ty
            && let Some(rest) = name.strip_prefix(&format!("{CONTRACT_PACKAGE}/plugin"))
        {
            let found = rest.strip_prefix('@').unwrap_or("(unversioned)");
            let compatible = same_series(found);
            return if compatible {
                Ok(())
            } else {
                Err(LoadError::Contract {
                    found: found.to_owned(),
                })
            };
        }
        exports.push(name.to_owned());
    }
    Err(LoadError::NotAPlugin { exports })
}

impl PluginModule {
    /// The memory cap of each of its instances, bytes.
    pub fn memory_cap_bytes(&self) -> u64 {
        self.runtime.limits().memory_bytes as u64
    }

    /// Validates and compiles `bytes` (a component, or a core module carrying the component
    /// type that the SDK embeds), and reads the plugin's info from a throwaway instance.
    /// Compilation takes tens of milliseconds: call it off the data path.
    pub fn load(runtime: &Runtime, bytes: &[u8]) -> Result<Self, LoadError> {
        if !bytes.starts_with(b"\0asm") {
            return Err(LoadError::NotWasm);
        }
        let component_bytes;
        let bytes = if wasmparser_is_core(bytes) {
            // Validate first: the encoder assumes a well-formed module and can panic on a
            // truncated one; the unwind guard is the second line of defence.
            wasmparser::Validator::new()
                .validate_all(bytes)
                .map_err(|e| LoadError::Compile(e.to_string()))?;
            component_bytes = std::panic::catch_unwind(|| {
                wit_component::ComponentEncoder::default()
                    .module(bytes)
                    .and_then(|e| e.validate(true).encode())
            })
            .map_err(|_| LoadError::Encode("the component encoder failed on this module".into()))?
            .map_err(|e| LoadError::Encode(format!("{e:#}")))?;
            &component_bytes[..]
        } else {
            bytes
        };
        let component = Component::new(&runtime.engine, bytes)
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        contract_of(&component, runtime)?;
        let instance_pre = runtime
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let pre = ClickwatchPluginPre::new(instance_pre)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let mut probe = Instance::new(runtime, &pre, Arc::from("(loading)"))?;
        let raw: bindings::PluginInfo = probe.info()?;
        if !same_series(&raw.contract_version) {
            return Err(LoadError::Contract {
                found: raw.contract_version,
            });
        }
        let info = convert_info(raw).map_err(LoadError::Info)?;
        Ok(PluginModule {
            info: Arc::new(info),
            pre,
            runtime: runtime.clone(),
        })
    }

    /// A fresh instance configured with `settings` (JSON): `init` has run.
    pub fn instantiate(&self, settings: &str) -> Result<Instance, CallError> {
        let mut instance =
            Instance::new(&self.runtime, &self.pre, Arc::from(self.info.name.as_str()))?;
        instance.init(settings)?;
        Ok(instance)
    }
}

/// Whether the bytes are a core module (version 1) rather than a component.
fn wasmparser_is_core(bytes: &[u8]) -> bool {
    // Header: magic, then a 4-byte version/layer field; core modules have version 1, layer 0.
    bytes.get(4..8) == Some(&[1, 0, 0, 0])
}
