//! The statistical core for detectors: streaming, bounded-memory tests on one series at a
//! time, with thresholds stated as tail probabilities.
//!
//! - [`Detector`] (with [`DetectorConfig`]): a robust seasonal baseline, a robust residual
//!   scale, an anomaly likelihood and a slow-drift test, with warm-up, freezing during
//!   incidents and a cooldown after an alert.
//! - [`Cusum`]: a one-sided sequential test on counts (slow ramps that no single bucket proves).
//! - [`DropCusum`]: a continuous-time Poisson CUSUM for a rate falling (an outage proven as
//!   soon as the missing events suffice, not at a bucket's end).
//! - [`proportion`]: two-proportion tests (a conversion rate falling, volume accounted for).
//! - [`EventRate`]: an exponentially weighted event rate in continuous time.
//! - [`tail`]: normal tail probabilities and the surprise scale `−log10 p`.
//! - Building blocks: [`Ring`], [`RobustScale`], [`Baseline`], [`Likelihood`].
//!
//! Everything here is `serde`-serialisable (snapshot and restore give identical subsequent
//! results), holds a bounded amount of memory, and ignores NaN and infinite inputs.
//! See docs/detectors.md ("The detector core") for the method and why it was chosen.

mod config;
mod cusum;
mod detector;
mod drop;
mod likelihood;
pub mod proportion;
mod rate;
mod ring;
mod scale;
mod seasonal;
pub mod tail;

pub use config::DetectorConfig;
pub use cusum::{Cusum, CusumStep};
pub use detector::{Detector, Verdict};
pub use drop::DropCusum;
pub use likelihood::Likelihood;
pub use rate::EventRate;
pub use ring::Ring;
pub use scale::RobustScale;
pub use seasonal::{Baseline, Clip, DAY_MS, WEEK_MS};
