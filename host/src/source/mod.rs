//! Event sources: they read or make events, validate them, batch them by size and time, and
//! push batches into a bounded channel (a full channel slows the source: backpressure).

mod file;
mod generator;

pub use file::run_file;
pub use generator::{Pacing, run_generator};

use crate::event::ClickEvent;
use crate::sink::DeadLetter;

/// Largest batch in bytes of input, whatever `batch_size` says: a batch is copied into every
/// plugin's memory, whose default cap is 64 MiB, and string offsets in the batch are 32-bit.
pub const MAX_BATCH_BYTES: usize = 8 << 20;

/// What a source sends downstream.
#[derive(Debug)]
pub enum SourceMsg {
    /// Valid events in order, and the records that were not valid.
    Batch {
        /// Valid events.
        events: Vec<ClickEvent>,
        /// Invalid records with reasons.
        dead: Vec<DeadLetter>,
    },
    /// The input is exhausted: no event will ever follow, so every window may close.
    Exhausted,
}
