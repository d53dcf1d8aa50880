//! The Clickwatch plugin SDK: write a detector or an aggregator as a plain Rust type, unit-test
//! it natively, and build it to a WebAssembly plugin the host hot-reloads.
//!
//! # Layout
//! - [`Plugin`]: the one trait an author implements (a constructor from settings and a batch
//!   method; tick, snapshot and restore have defaults).
//! - [`export_plugin!`]: the one line that turns the type into a plugin.
//! - [`batch`]: the zero-copy view of a batch of click events the host hands in.
//! - [`output`]: alerts and aggregate rows the plugin hands back.
//! - [`info`]: what a plugin declares about itself (name, kind, state key, tables).
//! - [`log`]: structured logging into the host's log.
//! - [`net`]: client networks (/24, /48) of an address.
//! - [`state`]: helpers to snapshot and restore serde-serialisable state.
//! - [`detect`]: the statistical core detectors share (baselines, tail-probability tests).
//! - [`testing`]: a native harness, so plugin logic is tested with plain `cargo test`.
//!
//! The wasm glue (generated from `wit/clickwatch.wit`) stays hidden in a private module: authors
//! never see `wit_bindgen`.
//!
//! ```
//! use clickwatch_sdk::prelude::*;
//!
//! #[derive(serde::Deserialize)]
//! struct Settings { max_clicks: u32 }
//!
//! struct Busy { max_clicks: u32 }
//!
//! impl Plugin for Busy {
//!     type Settings = Settings;
//!     fn info() -> PluginInfo { PluginInfo::detector("busy", "0.1.0") }
//!     fn new(s: Settings) -> Result<Self, String> { Ok(Busy { max_clicks: s.max_clicks }) }
//!     fn process(&mut self, batch: &Batch<'_>, out: &mut Output) -> Result<(), String> {
//!         if batch.len() > self.max_clicks as usize {
//!             out.alert(Alert::new("busy-batch", "site", "all").message("many clicks"));
//!         }
//!         Ok(())
//!     }
//! }
//! clickwatch_sdk::export_plugin!(Busy);
//! ```
#![deny(missing_docs)]

// The generated bindings name this crate by its public name, also from inside it.
extern crate self as clickwatch_sdk;

pub mod batch;
pub mod buckets;
pub mod detect;
pub mod info;
pub mod log;
pub mod net;
pub mod output;
pub mod state;
pub mod testing;

mod plugin;

#[doc(hidden)]
pub mod __private;

pub use plugin::Plugin;

/// The contract version this SDK builds plugins against (the `wit/` package version).
pub const CONTRACT_VERSION: &str = "0.2.0";

/// Everything a plugin usually needs, in one `use`.
pub mod prelude {
    pub use crate::Plugin;
    pub use crate::batch::{Batch, Click, EventKind};
    pub use crate::info::{Column, ColumnType, PluginInfo, PluginKind, StateKey, Table};
    pub use crate::output::{Alert, Output, Row, Severity, Value};
}
