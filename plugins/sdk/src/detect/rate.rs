//! An exponentially weighted event rate in continuous time: events per minute with a memory
//! of `tau` minutes, corrected for a history shorter than that (so a new entity's first
//! minutes are not read as a low rate). Sequential tests use it for the in-control rates they
//! compare against; it is two numbers and a time, whatever the stream's length.

use serde::{Deserialize, Serialize};

/// An exponentially weighted event rate (events per minute) with time constant `tau_min`.
/// The same `tau_min` must be passed to every call.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct EventRate {
    /// Decayed event count as of `at_ms`.
    count: f64,
    at_ms: i64,
    first_ms: Option<i64>,
}

impl EventRate {
    fn decay(&mut self, t: i64, tau_min: f64) {
        let dt = (t - self.at_ms).max(0) as f64 / 60_000.0;
        if dt > 0.0 {
            self.count *= (-dt / tau_min).exp();
            self.at_ms = t;
        }
    }

    /// Counts one event at `t`.
    pub fn add(&mut self, t: i64, tau_min: f64) {
        self.first_ms.get_or_insert(t);
        self.decay(t, tau_min);
        self.count += 1.0;
    }

    /// Events per minute as of `t`, as if there had been none before the first: what a
    /// sequential test should assume of a source it has only just met.
    pub fn per_min_from_silence(&self, t: i64, tau_min: f64) -> f64 {
        let dt = (t - self.at_ms).max(0) as f64 / 60_000.0;
        self.count * (-dt / tau_min).exp() / tau_min
    }

    /// Events per minute as of `t` (corrected for a history shorter than `tau_min`).
    pub fn per_min(&self, t: i64, tau_min: f64) -> f64 {
        let Some(first) = self.first_ms else {
            return 0.0;
        };
        let dt = (t - self.at_ms).max(0) as f64 / 60_000.0;
        let count = self.count * (-dt / tau_min).exp();
        let span = ((t - first).max(0) as f64 / 60_000.0).max(1.0);
        count / (tau_min * (1.0 - (-span / tau_min).exp()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_rate_is_measured_from_the_first_minutes_on() {
        let mut r = EventRate::default();
        assert_eq!(r.per_min(0, 30.0), 0.0);
        for i in 0..600 {
            r.add(i * 6_000, 30.0);
            if i >= 20 {
                let m = r.per_min(i * 6_000, 30.0);
                assert!((m - 10.0).abs() < 2.0, "{i}: {m}");
            }
        }
        // An hour of silence forgets most of it.
        assert!(r.per_min(600 * 6_000 + 3_600_000, 30.0) < 2.0);
    }
}
