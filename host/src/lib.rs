//! Clickwatch: real-time clickstream analytics and anomaly detection whose logic lives in
//! hot-reloaded WebAssembly plugins.
//!
//! # Layout
//! - [`event`]: the click event model and its JSON form.
//! - [`alert`]: alerts as the host emits them.
//! - [`aggregate`]: aggregate tables and rows, and how their schemas may evolve.
//! - [`plugin`]: the wasm runtime: loading, sandboxing, supervision, hot reload.
//! - [`keyed`]: what a plugin's state is keyed by, and which key an event has.
//! - [`shuffle`]: re-partitioning a Kafka input by state key through internal topics.
//! - [`json_text`]: JSON text of host records for sinks, never an empty payload.
//! - [`metrics`]: the counters every stage updates; [`observe`]: `/metrics`, `/healthz` and
//!   `/readyz` over HTTP.

pub mod aggregate;
pub mod alert;
pub mod config;
pub mod event;
pub mod generator;
pub mod json_text;
pub mod kafka;
pub mod keyed;
pub mod metrics;
pub mod observe;
pub mod pipeline;
pub mod plugin;
pub mod replay;
pub mod scaffold;
pub mod shuffle;
pub mod sink;
pub mod source;
