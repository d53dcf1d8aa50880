//! Event sources: they read or make events, validate them, batch them by size and time, and
//! push batches into a bounded channel (a full channel slows the source: backpressure).

mod file;
mod generator;

pub use file::run_file;
pub use generator::{Pacing, run_generator};

use crate::event::ClickEvent;
use crate::sink::DeadLetter;

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
