//! Scores anomaly detectors on the Numenta Anomaly Benchmark (NAB): an outside yardstick for
//! the statistical core in `clickwatch_sdk::detect`.
//!
//! # Layout
//! - [`corpus`]: the corpus on disk (series, label windows as rows, cost profiles).
//! - [`scorer`]: NAB's scoring rules, normalisation and the corpus-wide threshold sweep.
//! - [`published`]: a published detector's output, to check the scorer against.
//! - [`detector`]: runs the SDK's detector core over a series, as NAB's harness would.
//! - [`report`]: the table the binary prints (both threshold modes, every profile).
//!
//! The scorer is written from NAB's published rules, not translated from its Python.
#![deny(missing_docs)]

pub mod corpus;
pub mod detector;
pub mod error;
pub mod published;
pub mod report;
pub mod scorer;

pub use corpus::{Corpus, Profile, Series};
pub use error::NabError;
