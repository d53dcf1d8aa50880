//! Settings of the detector core, with the defaults every shipped detector starts from.

use serde::{Deserialize, Serialize};

/// How a [`super::Detector`] learns and when it alerts. Counts are in observations.
///
/// The defaults are one set for every series (chosen on the NAB corpus as a whole, see
/// docs/detectors.md): a detector should only need `alert_tail` changed, if anything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectorConfig {
    /// Observations learned before any alert (scores are 0 meanwhile).
    pub warmup: u32,
    /// EWMA weight of the level (the one-step prediction).
    pub level_alpha: f64,
    /// EWMA weight of a seasonal bin's offset, per visit of the bin.
    pub season_gamma: f64,
    /// Model daily and (with two weeks of history) weekly seasonality when it predicts better.
    pub seasonal: bool,
    /// EWMA weight of the one-step error that chooses between the seasonal models.
    pub model_error_alpha: f64,
    /// EWMA weight of the slow reference level the fast one is compared with (slow ramps).
    pub slow_alpha: f64,
    /// Residuals in the robust-scale window.
    pub scale_window: usize,
    /// The scale is at least this share of the level: smaller changes are never surprising.
    pub scale_floor_rel: f64,
    /// |z| of one residual is capped here before it is averaged: one wild value is one strong
    /// vote, not a veto over the window. The default 30 is `short_window × learn_clip_z`
    /// (10 × 3): one value weighs as much as a whole window of residuals at the learning
    /// clip, so a lone 30-sigma spike is as strong as a sustained 3-sigma shift, and a
    /// 50-sigma one no stronger than a 30-sigma one.
    pub z_cap: f64,
    /// Raw scores in the short average of the likelihood.
    pub short_window: usize,
    /// EWMA weight of the long-run distribution of the short average.
    pub long_alpha: f64,
    /// Each baseline model clips a value to its own `prediction ± learn_clip_z × sigma` (its
    /// own error scale) before learning it; the residual scale learns residuals clipped the
    /// same way around the predicting model.
    pub learn_clip_z: f64,
    /// Tail probability at or below which the baseline stops learning (an episode).
    pub freeze_tail: f64,
    /// Tail probability of the drift test at or below which the slow reference stops
    /// learning (ramp protection; the fast baseline keeps learning until `freeze_tail`).
    pub drift_gate_tail: f64,
    /// The slow reference stops only once the drift is also this many residual sigmas (a
    /// drift within the noise is the fast level's ordinary wandering, not a ramp).
    pub drift_gate_sigma: f64,
    /// Quiet observations that end an episode.
    pub calm: u32,
    /// Longest episode: after this many observations the present is accepted as the new normal.
    pub max_episode: u32,
    /// The alert threshold as a tail probability: the expected share of normal observations
    /// that alert (before the cooldown thins them out).
    pub alert_tail: f64,
    /// Observations after an alert whose score is reported as 0 (one alert per incident).
    pub cooldown: u32,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            warmup: 150,
            level_alpha: 0.05,
            season_gamma: 0.3,
            seasonal: true,
            model_error_alpha: 0.01,
            slow_alpha: 0.005,
            scale_window: 256,
            scale_floor_rel: 1e-2,
            z_cap: 30.0,
            short_window: 10,
            long_alpha: 0.002,
            learn_clip_z: 3.0,
            freeze_tail: 1e-10,
            drift_gate_tail: 1e-3,
            drift_gate_sigma: 1.0,
            calm: 30,
            max_episode: 100,
            alert_tail: 1e-5,
            cooldown: 200,
        }
    }
}

impl DetectorConfig {
    /// Checks value ranges; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        let unit = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 && v <= 1.0 {
                Ok(())
            } else {
                Err(format!("{name} must be in (0, 1], got {v}"))
            }
        };
        unit("level_alpha", self.level_alpha)?;
        unit("season_gamma", self.season_gamma)?;
        unit("model_error_alpha", self.model_error_alpha)?;
        unit("slow_alpha", self.slow_alpha)?;
        unit("long_alpha", self.long_alpha)?;
        unit("freeze_tail", self.freeze_tail)?;
        unit("alert_tail", self.alert_tail)?;
        unit("drift_gate_tail", self.drift_gate_tail)?;
        if !(self.scale_floor_rel.is_finite() && self.scale_floor_rel >= 0.0) {
            return Err("scale_floor_rel must be >= 0".into());
        }
        if !(self.drift_gate_sigma.is_finite() && self.drift_gate_sigma >= 0.0) {
            return Err("drift_gate_sigma must be >= 0".into());
        }
        for (name, v) in [("z_cap", self.z_cap), ("learn_clip_z", self.learn_clip_z)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{name} must be > 0, got {v}"));
            }
        }
        for (name, v) in [
            ("scale_window", self.scale_window),
            ("short_window", self.short_window),
        ] {
            if v == 0 || v > 100_000 {
                return Err(format!("{name} must be in 1..=100000, got {v}"));
            }
        }
        Ok(())
    }
}
