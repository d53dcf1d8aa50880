//! Host-side bindings generated from `wit/clickwatch.wit`: the only place the contract's types
//! enter the host.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "clickwatch-plugin",
});

pub use self::clickwatch::plugin::host::Level;
pub use self::clickwatch::plugin::types::{
    Alert, ClickBatch, ColumnType, Output, PluginInfo, PluginKind, Severity, StateKey, Value,
};

/// The contract version this host implements (the `wit/` package version).
pub const CONTRACT_VERSION: &str = "0.2.0";
/// Package name of the contract, as it appears in component export names.
pub const CONTRACT_PACKAGE: &str = "clickwatch:plugin";
