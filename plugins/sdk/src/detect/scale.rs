//! A robust residual scale: the median absolute residual over a bounded window of recent
//! normal residuals (the MAD, scaled to a standard deviation for Gaussian noise).
//!
//! The median ignores up to half the window being outliers, so a burst of anomalies does not
//! inflate the scale and hide itself. Residuals quantised to zero (a counter that rarely moves)
//! fall back to the mean absolute residual, and a floor relative to the level keeps a flat line
//! from making every rounding error infinitely surprising.

use serde::{Deserialize, Serialize};

use super::ring::{Ring, median};

/// MAD → standard deviation for Gaussian noise.
const MAD_TO_SIGMA: f64 = 1.482_6;
/// Mean absolute deviation → standard deviation for Gaussian noise (`sqrt(pi/2)`).
const MEAN_ABS_TO_SIGMA: f64 = 1.253_3;

/// The robust scale of recent residuals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RobustScale {
    abs: Ring,
    /// Relative floor: the scale is at least this share of the level's magnitude.
    floor_rel: f64,
    /// Cached value, recomputed on each push (so reading it is free).
    value: f64,
    #[serde(skip)]
    scratch: Vec<f64>,
}

impl RobustScale {
    /// A scale over the last `window` residuals, never below `floor_rel × |level|`.
    pub fn new(window: usize, floor_rel: f64) -> Self {
        RobustScale {
            abs: Ring::new(window),
            floor_rel: if floor_rel.is_finite() {
                floor_rel.max(0.0)
            } else {
                0.0
            },
            value: 0.0,
            scratch: Vec::new(),
        }
    }

    /// Adds one residual (non-finite ones are ignored).
    pub fn push(&mut self, residual: f64) {
        if !residual.is_finite() {
            return;
        }
        self.abs.push(residual.abs());
        let values = self.abs.values();
        let mad = median(values, &mut self.scratch).unwrap_or(0.0);
        self.value = if mad > 0.0 {
            MAD_TO_SIGMA * mad
        } else {
            MEAN_ABS_TO_SIGMA * values.iter().sum::<f64>() / values.len().max(1) as f64
        };
    }

    /// Residuals held.
    pub fn len(&self) -> usize {
        self.abs.len()
    }

    /// Whether no residual was seen yet.
    pub fn is_empty(&self) -> bool {
        self.abs.is_empty()
    }

    /// The scale for a series at `level`: never zero, so a z-score is always finite.
    pub fn sigma(&self, level: f64) -> f64 {
        let floor = (self.floor_rel * level.abs()).max(1e-12);
        if self.value.is_finite() {
            self.value.max(floor)
        } else {
            floor
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outliers_do_not_inflate_the_scale() {
        let mut s = RobustScale::new(100, 0.0);
        for i in 0..100 {
            // Alternating ±1 with every fifth value a huge outlier.
            let r = if i % 5 == 0 {
                1e6
            } else if i % 2 == 0 {
                1.0
            } else {
                -1.0
            };
            s.push(r);
        }
        assert!((s.sigma(0.0) - MAD_TO_SIGMA).abs() < 1e-9);
    }

    #[test]
    fn flat_residuals_hit_the_floor() {
        let mut s = RobustScale::new(10, 1e-3);
        for _ in 0..20 {
            s.push(0.0);
        }
        s.push(f64::NAN);
        assert_eq!(s.sigma(50.0), 0.05);
        assert!(s.sigma(0.0) > 0.0);
    }
}
