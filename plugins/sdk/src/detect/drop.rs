//! A continuous-time Poisson CUSUM for a rate *falling* (Page 1954, Lorden 1971): a sequential
//! test that proves an outage as soon as the missing events are evidence enough, wherever it
//! began, instead of waiting for whole buckets to close.
//!
//! Under the null, events arrive as a Poisson process with the expected rate `λ(t)` (the
//! caller's baseline); the alternative is `ρ·λ(t)`. An interval with `μ` expected and `n`
//! observed events adds the log-likelihood ratio `(1 − ρ)·μ + n·ln ρ`, divided by the
//! dispersion `φ ≥ 1` (variance over mean of the counts: visits bring events in bursts, so a
//! Poisson model would be overconfident; the quasi-likelihood divides by `φ`). The statistic
//! `S = max(0, S + llr)` stays near zero while the rate is normal and climbs at `(1 − ρ)·λ/φ`
//! during a total loss; it signals at `S ≥ ln(1/tail)` (Wald's bound: the probability that one
//! in-control excursion reaches the threshold is at most `tail`).
//!
//! `ρ` is chosen from the smallest drop worth reporting, `r`: the statistic drifts upwards
//! exactly when the rate is below `r·λ`, i.e. `(1 − ρ)/ln(1/ρ) = r` ([`DropCusum::rho_for`]):
//! `r = 0.45` gives `ρ ≈ 0.15`, and a total loss is proven after `ln(1/tail)·φ/(1 − ρ)`
//! expected events (about 16 at `tail` 1e-6 and `φ` 1: 16 s at a thousand events a minute,
//! 48 s at twenty).

use serde::{Deserialize, Serialize};

/// The state of one drop test: two sums and the start of the current excursion.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct DropCusum {
    /// The statistic (log-likelihood ratio of the excursion, in units of `φ`).
    pub statistic: f64,
    /// Start of the current excursion above zero (where the drop probably began).
    pub start_ms: i64,
    /// Expected events since the excursion began.
    pub expected: f64,
    /// Observed events since the excursion began.
    pub observed: f64,
}

impl DropCusum {
    /// The alternative's rate ratio `ρ` whose test drifts upwards exactly below `r·λ`
    /// (`0 < r < 1`): the root of `(1 − ρ)/ln(1/ρ) = r`.
    pub fn rho_for(r: f64) -> f64 {
        let r = r.clamp(1e-3, 0.999);
        // (1 − ρ)/ln(1/ρ) rises from 0 (ρ → 0) to 1 (ρ → 1): bisect on ln ρ.
        let (mut lo, mut hi) = (-30.0_f64, -1e-9_f64);
        for _ in 0..100 {
            let mid = 0.5 * (lo + hi);
            let rho = mid.exp();
            if (1.0 - rho) / -mid < r {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        (0.5 * (lo + hi)).exp()
    }

    /// Adds an interval ending at `end_ms` (starting at `start_ms`) with `expected` events under
    /// the null and `observed` events, at dispersion `dispersion` (≥ 1), against the alternative
    /// `rho`. Returns the statistic. Non-finite or negative inputs are ignored.
    pub fn add(
        &mut self,
        start_ms: i64,
        expected: f64,
        observed: f64,
        dispersion: f64,
        rho: f64,
    ) -> f64 {
        let valid = expected.is_finite()
            && expected >= 0.0
            && observed.is_finite()
            && observed >= 0.0
            && rho > 0.0
            && rho < 1.0;
        if !valid {
            return self.statistic;
        }
        let phi = if dispersion.is_finite() {
            dispersion.max(1.0)
        } else {
            1.0
        };
        let llr = ((1.0 - rho) * expected + observed * rho.ln()) / phi;
        if self.statistic <= 0.0 {
            self.start_ms = start_ms;
            self.expected = 0.0;
            self.observed = 0.0;
        }
        self.statistic = (self.statistic + llr).max(0.0);
        if self.statistic > 0.0 {
            self.expected += expected;
            self.observed += observed;
        }
        self.statistic
    }

    /// The log-likelihood ratio of the current excursion with its expected events scaled by
    /// `factor` (e.g. how the whole site moved meanwhile): the same evidence against a lower
    /// null.
    pub fn statistic_scaled(&self, factor: f64, dispersion: f64, rho: f64) -> f64 {
        let phi = dispersion.max(1.0);
        ((1.0 - rho) * self.expected * factor.max(0.0) + self.observed * rho.ln()) / phi
    }

    /// Takes the scaled null of [`Self::statistic_scaled`] as the excursion's own: the
    /// evidence that remains once the common move is discounted.
    pub fn rescale(&mut self, factor: f64, dispersion: f64, rho: f64) {
        self.statistic = self.statistic_scaled(factor, dispersion, rho).max(0.0);
        self.expected *= factor.max(0.0);
        if self.statistic <= 0.0 {
            self.reset();
        }
    }

    /// Forgets the excursion.
    pub fn reset(&mut self) {
        *self = DropCusum::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rho_makes_the_break_even_the_smallest_reported_drop() {
        let rho = DropCusum::rho_for(0.45);
        assert!((0.14..0.17).contains(&rho), "{rho}");
        assert!(((1.0 - rho) / -rho.ln() - 0.45).abs() < 1e-9);
    }

    #[test]
    fn a_total_loss_is_proven_after_the_expected_events_the_threshold_asks_for() {
        let rho = DropCusum::rho_for(0.45);
        let h = (1e6_f64).ln();
        let mut c = DropCusum::default();
        // 20 expected events a minute, one-second steps, nothing arrives from t = 0.
        let mut t = 0;
        while c.add(t, 20.0 / 60.0, 0.0, 1.0, rho) < h {
            t += 1000;
        }
        // ln(1e6)/(1 − ρ) ≈ 16.3 expected events ≈ 49 s.
        assert!((45_000..55_000).contains(&t), "{t}");
        assert_eq!(c.start_ms, 0);
        assert_eq!(c.observed, 0.0);
    }

    #[test]
    fn normal_traffic_keeps_the_statistic_near_zero() {
        let rho = DropCusum::rho_for(0.45);
        let mut c = DropCusum::default();
        let mut top: f64 = 0.0;
        // One event every 3 s against 20 a minute: exactly the null, for ten hours.
        for s in 0..36_000 {
            let n = if s % 3 == 0 { 1.0 } else { 0.0 };
            top = top.max(c.add(s * 1000, 20.0 / 60.0, n, 1.0, rho));
        }
        assert!(top < 3.0, "{top}");
        // Half the rate is above the break-even (0.45): still no drift upwards.
        let mut c = DropCusum::default();
        for s in 0..36_000 {
            let n = if s % 6 == 0 { 1.0 } else { 0.0 };
            top = top.max(c.add(s * 1000, 20.0 / 60.0, n, 1.0, rho));
        }
        assert!(top < 6.0, "{top}");
    }

    #[test]
    fn dispersion_slows_the_proof_in_proportion() {
        let rho = DropCusum::rho_for(0.45);
        let (mut a, mut b) = (DropCusum::default(), DropCusum::default());
        for s in 0..30 {
            a.add(s * 1000, 1.0, 0.0, 1.0, rho);
            b.add(s * 1000, 1.0, 0.0, 3.0, rho);
        }
        assert!((a.statistic / b.statistic - 3.0).abs() < 1e-9);
        // The factor lowers the null: the same silence is less evidence.
        assert!(a.statistic_scaled(0.5, 1.0, rho) < a.statistic);
    }
}
