//! What an operator sees of a running host: the Prometheus exposition of the counters
//! ([`export`]) and the HTTP listener that serves it with the health endpoints ([`server`]).

pub mod export;
pub mod server;

pub use server::{ListenError, Listener};
