//! What an operator sees of a running host: the Prometheus exposition of the counters
//! ([`export`]), the live dashboard ([`dashboard`]) and the HTTP listener that serves them
//! with the health endpoints ([`server`]).

pub mod dashboard;
pub mod export;
pub mod server;

pub use server::{ListenError, Listener};
