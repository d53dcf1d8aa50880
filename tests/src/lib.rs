//! End-to-end harness: the `clickwatch` binary run as a user runs it, against the real broker,
//! PostgreSQL and the BigQuery emulator that `cargo xtask test` starts. Every helper panics
//! with what is missing and how to get it, so a suite without its services fails loudly.

/// Where the services are and how to stop and start them (the project's own scripts).
pub mod services;

/// A host process: started, killed with SIGKILL, stopped with SIGTERM within a grace period.
pub mod host;

/// Kafka: topics, producing, reading a topic to its end, a group's progress.
pub mod kafka;

/// PostgreSQL: a fresh migrated database, and what the raw store holds.
pub mod postgres;

/// The input: generated events with labelled anomalies, a trailer that closes every window,
/// and one poison record of each kind with the dead-letter reason it must get.
pub mod input;

/// What a run leaves behind, read back from its stores for comparison.
pub mod outcome;

/// One host's run: config, start, waiting on its progress.
pub mod run;
