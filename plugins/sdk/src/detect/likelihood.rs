//! Anomaly likelihood: how unusual the recent average of a raw score is, against that
//! average's own history (after Ahmad, Lavin, Purdy & Agha 2017, the scoring stage of NAB's
//! strongest detectors).
//!
//! A raw score (here the capped |z| of a residual) is noisy and its scale differs between
//! series: a heavy-tailed series throws |z| = 5 every day. The likelihood averages the raw
//! score over a short window and compares that average with the running mean and variance of
//! the same average: the answer is a tail probability that means the same on every series, and
//! a sustained shift (many moderate residuals) is as visible as one large one.

use serde::{Deserialize, Serialize};

use super::ring::Ring;
use super::tail::normal_sf;

/// Lowest standard deviation of the short average: a series whose residuals were exactly
/// constant so far must not make the next wobble infinitely unlikely.
const MIN_SD: f64 = 0.05;

/// The short window and the long-run distribution of its average.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Likelihood {
    short: Ring,
    sum: f64,
    mean: f64,
    var: f64,
    learned: u64,
}

impl Likelihood {
    /// Averages over the last `short` raw scores.
    pub fn new(short: usize) -> Self {
        Likelihood {
            short: Ring::new(short),
            sum: 0.0,
            mean: 0.0,
            var: 0.0,
            learned: 0,
        }
    }

    /// Adds a raw score and returns the short average. Non-finite scores count as 0.
    pub fn push(&mut self, raw: f64) -> f64 {
        let raw = if raw.is_finite() { raw } else { 0.0 };
        self.short.push(raw);
        // Summed afresh: the window is short and a running sum would drift.
        self.sum = self.short.values().iter().sum();
        self.average()
    }

    /// The current short average.
    pub fn average(&self) -> f64 {
        self.sum / self.short.len().max(1) as f64
    }

    /// The upper tail probability of `average` under the learned distribution (1 before
    /// anything was learned).
    pub fn tail(&self, average: f64) -> f64 {
        if self.learned < 2 {
            return 1.0;
        }
        let sd = self.var.sqrt().max(MIN_SD);
        normal_sf((average - self.mean) / sd)
    }

    /// Folds `average` into the long-run distribution with weight `alpha` (an EWMA of mean and
    /// variance, so old history fades and memory stays constant).
    pub fn learn(&mut self, average: f64, alpha: f64) {
        if !average.is_finite() {
            return;
        }
        if self.learned == 0 {
            self.mean = average;
            self.var = 0.0;
        } else {
            // Early on the weight is 1/n (a plain average), later `alpha`.
            let a = alpha.max(1.0 / (self.learned as f64 + 1.0));
            let d = average - self.mean;
            self.mean += a * d;
            self.var = (1.0 - a) * (self.var + a * d * d);
        }
        self.learned = self.learned.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sustained_rise_is_unlikely_a_typical_wobble_is_not() {
        let mut l = Likelihood::new(10);
        for i in 0..2000 {
            let raw = [0.2, 1.5, 0.7, 0.4, 1.1][i % 5];
            let m = l.push(raw);
            l.learn(m, 0.01);
        }
        let typical = l.push(0.9);
        assert!(l.tail(typical) > 0.01);
        let mut m = 0.0;
        for _ in 0..5 {
            m = l.push(3.0);
        }
        assert!(l.tail(m) < 1e-4, "{}", l.tail(m));
        assert_eq!(l.tail(f64::NAN), 1.0);
    }
}
