//! A one-sided CUSUM on counts (Page 1954): a sequential test that accumulates small, steady
//! excesses no single bucket proves, such as fraud ramping up slowly over many IPs.
//!
//! For Poisson counts with an in-control rate `μ0` and an out-of-control rate `μ1 = k × μ0`
//! (`k > 1`), the log-likelihood ratio of one count `x` is `x ln k − (μ1 − μ0)`. The statistic
//! `S = max(0, S + llr)` stays near zero while the rate is normal and climbs steadily once it is
//! `μ1` or more; it signals at `S ≥ h`. With `h = ln(1/α)` the false-alarm rate per run is at
//! most about `α` (Wald's bound), so the threshold, too, is stated as a tail probability.
//! The in-control rate is learned only while `S` is zero, so a ramp is never taught to it.

use serde::{Deserialize, Serialize};

/// One-sided Poisson CUSUM for an increase of the rate by `ratio` or more.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cusum {
    ratio: f64,
    threshold: f64,
    alpha: f64,
    /// The learned in-control rate per observation (an EWMA).
    rate: f64,
    learned: u64,
    warmup: u64,
    statistic: f64,
    /// Observations since the statistic last left zero (the run being tested).
    run: u64,
}

/// What one observation did to the test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CusumStep {
    /// The statistic after this observation.
    pub statistic: f64,
    /// Observations in the current run above zero: where the change probably began.
    pub run: u64,
    /// Whether the statistic crossed the threshold here (it is then reset to zero).
    pub alert: bool,
}

impl Cusum {
    /// Tests for the rate rising by `ratio` (> 1) with false-alarm probability `tail` per
    /// in-control run, learning the rate with EWMA weight `alpha` after `warmup` observations.
    pub fn new(ratio: f64, tail: f64, alpha: f64, warmup: u64) -> Result<Self, String> {
        if !(ratio.is_finite() && ratio > 1.0) {
            return Err(format!("ratio must be > 1, got {ratio}"));
        }
        if !(tail.is_finite() && tail > 0.0 && tail < 1.0) {
            return Err(format!("tail must be in (0, 1), got {tail}"));
        }
        if !(alpha.is_finite() && alpha > 0.0 && alpha <= 1.0) {
            return Err(format!("alpha must be in (0, 1], got {alpha}"));
        }
        Ok(Cusum {
            ratio,
            threshold: (1.0 / tail).ln(),
            alpha,
            rate: 0.0,
            learned: 0,
            warmup,
            statistic: 0.0,
            run: 0,
        })
    }

    /// The learned in-control rate.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Adds one count (events in a bucket). Negative or non-finite counts are ignored (`None`).
    pub fn observe(&mut self, count: f64) -> Option<CusumStep> {
        if !(count.is_finite() && count >= 0.0) {
            return None;
        }
        if self.learned < self.warmup.max(1) {
            self.learn(count);
            return Some(self.step(false));
        }
        // A rate of zero would make any event infinitely unlikely: half an event per
        // observation is the least rate tested against.
        let mu0 = self
            .rate
            .max(0.5 / (self.learned as f64).max(1.0))
            .max(1e-9);
        let llr = count * self.ratio.ln() - (self.ratio - 1.0) * mu0;
        self.statistic = (self.statistic + llr).max(0.0);
        if self.statistic > 0.0 {
            self.run = self.run.saturating_add(1);
        } else {
            self.run = 0;
            self.learn(count);
        }
        if self.statistic >= self.threshold {
            let step = self.step(true);
            self.statistic = 0.0;
            self.run = 0;
            return Some(step);
        }
        Some(self.step(false))
    }

    fn learn(&mut self, count: f64) {
        let a = self.alpha.max(1.0 / (self.learned as f64 + 1.0));
        self.rate += a * (count - self.rate);
        self.learned = self.learned.saturating_add(1);
    }

    fn step(&self, alert: bool) -> CusumStep {
        CusumStep {
            statistic: self.statistic,
            run: self.run,
            alert,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic Poisson-ish counts around `mean` (a fixed pattern, no RNG).
    fn counts(mean: f64, i: usize) -> f64 {
        let wobble = [-2.0, 1.0, 0.0, 2.0, -1.0, 1.0, -1.0, 0.0];
        (mean + wobble[i % wobble.len()] * mean.sqrt() / 1.5)
            .round()
            .max(0.0)
    }

    #[test]
    fn a_slow_ramp_is_caught_and_not_learned() {
        let mut c = Cusum::new(1.5, 1e-4, 0.01, 50).unwrap();
        for i in 0..2000 {
            assert!(
                !c.observe(counts(20.0, i)).unwrap().alert,
                "false alarm at {i}"
            );
        }
        let base = c.rate();
        // +1 % per bucket: each bucket is within noise for the first ~30 buckets.
        let mut caught = None;
        for i in 0..200 {
            let step = c
                .observe(counts(20.0 * (1.0 + 0.01 * i as f64), i))
                .unwrap();
            if step.alert {
                caught = Some(i);
                break;
            }
        }
        let i = caught.expect("ramp never detected");
        assert!(i < 80, "detected late, at {i}");
        assert!(
            (c.rate() - base).abs() < 1.0,
            "ramp learned: {} vs {base}",
            c.rate()
        );
    }

    #[test]
    fn odd_counts_are_ignored_and_settings_checked() {
        let mut c = Cusum::new(2.0, 1e-3, 0.1, 5).unwrap();
        let before = c.clone();
        assert!(c.observe(f64::NAN).is_none());
        assert!(c.observe(-1.0).is_none());
        assert_eq!(c, before);
        assert!(Cusum::new(1.0, 1e-3, 0.1, 5).is_err());
        assert!(Cusum::new(2.0, 0.0, 0.1, 5).is_err());
    }

    #[test]
    fn snapshot_restore_continues_identically() {
        let mut a = Cusum::new(1.5, 1e-4, 0.01, 20).unwrap();
        for i in 0..500 {
            a.observe(counts(10.0, i));
        }
        let mut b: Cusum = serde_json::from_slice(&serde_json::to_vec(&a).unwrap()).unwrap();
        for i in 0..500 {
            let x = counts(10.0 + i as f64 * 0.05, i);
            assert_eq!(a.observe(x), b.observe(x));
        }
    }
}
