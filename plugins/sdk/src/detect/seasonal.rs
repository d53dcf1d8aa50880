//! Additive seasonal profiles by time of day or of week, and the choice between them.
//!
//! A profile is a Holt-Winters seasonal term (Winters 1960) on wall-clock bins: the expected
//! offset from the level for each bin of the period, learned by exponential smoothing. The
//! baseline runs a plain level, a daily and a weekly model side by side and predicts with the
//! one whose recent one-step error is smallest, once its history covers two periods: a series
//! without a daily shape, or without enough history for a weekly one, pays nothing for it.
//!
//! Each model learns robustly on its own terms (Gelper, Fried & Croux 2010): a value is clipped
//! to *that model's* prediction ± k of *its own* error scale, and a seasonal bin's first visit
//! is learned unclipped (a Holt-Winters start-up period). Clipping every model around the
//! predicting model's forecast instead would starve a seasonal model of exactly the shape it
//! is there to learn: while the plain level predicts, a daily swing is clipped to a few of the
//! plain level's sigmas before the daily model ever sees it, so it never predicts better.

use serde::{Deserialize, Serialize};

/// One day and one week in milliseconds.
pub const DAY_MS: i64 = 86_400_000;
/// One week in milliseconds.
pub const WEEK_MS: i64 = 7 * DAY_MS;

/// The seasonal offsets of one period, in equal wall-clock bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    period_ms: i64,
    offsets: Vec<f64>,
    seen: Vec<bool>,
}

impl Profile {
    /// A profile of `bins` equal bins over `period_ms`.
    pub fn new(period_ms: i64, bins: usize) -> Self {
        let bins = bins.max(1);
        Profile {
            period_ms: period_ms.max(1),
            offsets: vec![0.0; bins],
            seen: vec![false; bins],
        }
    }

    /// The period in milliseconds.
    pub fn period_ms(&self) -> i64 {
        self.period_ms
    }

    fn bin(&self, time_ms: i64) -> usize {
        let n = self.offsets.len() as i64;
        let phase = time_ms.rem_euclid(self.period_ms);
        // i128: phase × bins can exceed i64 for long periods with many bins.
        ((i128::from(phase) * i128::from(n) / i128::from(self.period_ms)) as i64).clamp(0, n - 1)
            as usize
    }

    /// Whether the bin of `time_ms` was learned at least once.
    pub fn seen(&self, time_ms: i64) -> bool {
        self.seen.get(self.bin(time_ms)).copied().unwrap_or(false)
    }

    /// The expected offset from the level at `time_ms`.
    pub fn offset(&self, time_ms: i64) -> f64 {
        self.offsets.get(self.bin(time_ms)).copied().unwrap_or(0.0)
    }

    /// Learns that `deviation` (value minus level) was seen at `time_ms`.
    pub fn learn(&mut self, time_ms: i64, deviation: f64, gamma: f64) {
        let b = self.bin(time_ms);
        if let (Some(o), Some(s)) = (self.offsets.get_mut(b), self.seen.get_mut(b)) {
            if *s {
                *o += gamma * (deviation - *o);
            } else {
                *o = deviation;
                *s = true;
            }
        }
    }
}

/// Mean absolute error → standard deviation for Gaussian noise (`sqrt(pi/2)`).
const MEAN_ABS_TO_SIGMA: f64 = 1.253_3;
/// One-step errors a model averages before it clips what it learns.
const MIN_ERRORS: u32 = 8;

/// How the models clip what they learn: to their own prediction ± `z` of their own error
/// scale, never narrower than `floor_rel` of the prediction's magnitude.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clip {
    /// Width in the model's own sigmas.
    pub z: f64,
    /// Least sigma as a share of the prediction's magnitude.
    pub floor_rel: f64,
    /// Least sigma in the series' units: the data's rounding error, below which an error
    /// scale says nothing (without it a run of zeros in a count shrinks a model's scale until
    /// it clips every later count back to zero).
    pub floor_abs: f64,
}

impl Default for Clip {
    /// No clipping (plain exponential smoothing).
    fn default() -> Self {
        Clip {
            z: f64::INFINITY,
            floor_rel: 0.0,
            floor_abs: 0.0,
        }
    }
}

/// One candidate model: a level, optionally with a seasonal profile, and its recent error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    level: f64,
    profile: Option<Profile>,
    /// EWMA of the absolute one-step error (of the clipped value).
    error: f64,
    started: bool,
    /// One-step errors averaged so far (saturating; the early EWMA weight is 1/n).
    #[serde(default)]
    errors: u32,
}

impl Model {
    /// A model with the given seasonal profile (or none).
    pub fn new(profile: Option<Profile>) -> Self {
        Model {
            level: 0.0,
            profile,
            error: 0.0,
            started: false,
            errors: 0,
        }
    }

    /// The prediction at `time_ms`.
    pub fn predict(&self, time_ms: i64) -> f64 {
        self.level + self.profile.as_ref().map_or(0.0, |p| p.offset(time_ms))
    }

    /// The deseasonalised level.
    pub fn level(&self) -> f64 {
        self.level
    }

    /// Learns `x` at `time_ms`, clipped by `clip` around this model's own prediction once it
    /// has an error scale and has seen the seasonal bin before.
    pub fn learn(
        &mut self,
        time_ms: i64,
        x: f64,
        (alpha, gamma, error_alpha): (f64, f64, f64),
        clip: Clip,
    ) {
        if !self.started {
            self.level = x;
            self.started = true;
            return;
        }
        let predicted = self.predict(time_ms);
        let known = self.profile.as_ref().is_none_or(|p| p.seen(time_ms));
        let x = if known && self.errors >= MIN_ERRORS && clip.z.is_finite() {
            let sigma = (MEAN_ABS_TO_SIGMA * self.error)
                .max(clip.floor_rel * predicted.abs())
                .max(clip.floor_abs)
                .max(1e-12);
            x.clamp(predicted - clip.z * sigma, predicted + clip.z * sigma)
        } else {
            x
        };
        let a = error_alpha.max(1.0 / (f64::from(self.errors) + 1.0));
        self.error += a * ((x - predicted).abs() - self.error);
        self.errors = self.errors.saturating_add(1);
        let offset = self.profile.as_ref().map_or(0.0, |p| p.offset(time_ms));
        self.level += alpha * (x - offset - self.level);
        let level = self.level;
        if let Some(p) = self.profile.as_mut() {
            p.learn(time_ms, x - level, gamma);
        }
    }

    /// Moves the level so that the prediction at `time_ms` is `x` (accepting a new normal).
    pub fn reset_to(&mut self, time_ms: i64, x: f64) {
        let offset = self.profile.as_ref().map_or(0.0, |p| p.offset(time_ms));
        self.level = x - offset;
    }
}

/// The plain, daily and weekly models, and the choice between them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    models: [Model; 3],
    first_ms: Option<i64>,
    last_ms: i64,
    /// Index of the model predicting.
    chosen: usize,
}

/// Bins of the daily (half-hours) and weekly (hours) profiles.
const DAY_BINS: usize = 48;
const WEEK_BINS: usize = 168;
/// A seasonal model must beat the plain one by this factor to be used: a small gain is noise.
const SEASONAL_GAIN: f64 = 0.9;

impl Baseline {
    /// An empty baseline; `seasonal = false` keeps only the plain level.
    pub fn new(seasonal: bool) -> Self {
        let season = |period, bins| seasonal.then(|| Profile::new(period, bins));
        Baseline {
            models: [
                Model::new(None),
                Model::new(season(DAY_MS, DAY_BINS)),
                Model::new(season(WEEK_MS, WEEK_BINS)),
            ],
            first_ms: None,
            last_ms: 0,
            chosen: 0,
        }
    }

    fn model(&self) -> &Model {
        self.models.get(self.chosen).unwrap_or(&self.models[0])
    }

    /// The value expected at `time_ms`.
    pub fn predict(&self, time_ms: i64) -> f64 {
        self.model().predict(time_ms)
    }

    /// The deseasonalised level of the predicting model.
    pub fn level(&self) -> f64 {
        self.model().level()
    }

    /// Which period the prediction uses: `None`, or the daily or weekly period in ms.
    pub fn period_ms(&self) -> Option<i64> {
        self.model().profile.as_ref().map(Profile::period_ms)
    }

    /// Learns `x` at `time_ms` in every model, unclipped, and re-chooses the predicting one.
    pub fn learn(&mut self, time_ms: i64, x: f64, alpha: f64, gamma: f64, error_alpha: f64) {
        self.learn_clipped(time_ms, x, (alpha, gamma, error_alpha), Clip::default());
    }

    /// Learns `x` at `time_ms` in every model, each clipping it by `clip` around its own
    /// prediction, and re-chooses the predicting one. `rates` are the level's, a seasonal
    /// bin's and the one-step error's EWMA weights.
    pub fn learn_clipped(&mut self, time_ms: i64, x: f64, rates: (f64, f64, f64), clip: Clip) {
        let first = *self.first_ms.get_or_insert(time_ms);
        self.last_ms = self.last_ms.max(time_ms);
        for m in &mut self.models {
            m.learn(time_ms, x, rates, clip);
        }
        let span = self.last_ms.saturating_sub(first);
        let mut best = 0;
        for (i, m) in self.models.iter().enumerate().skip(1) {
            let Some(p) = &m.profile else { continue };
            if span >= 2 * p.period_ms && m.error < SEASONAL_GAIN * self.models[best].error {
                best = i;
            }
        }
        self.chosen = best;
    }

    /// Accepts `x` at `time_ms` as the new normal in every model.
    pub fn reset_to(&mut self, time_ms: i64, x: f64) {
        for m in &mut self.models {
            m.reset_to(time_ms, x);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daily_shape_is_learned_and_chosen() {
        let mut b = Baseline::new(true);
        let step = 600_000; // 10 min
        let shape = |t: i64| {
            if (t / 3_600_000) % 24 < 12 {
                100.0
            } else {
                10.0
            }
        };
        for k in 0..(5 * 144) {
            let t = k * step;
            b.learn(t, shape(t), 0.05, 0.2, 0.02);
        }
        assert_eq!(b.period_ms(), Some(DAY_MS));
        let t = 5 * DAY_MS + 3 * 3_600_000;
        assert!((b.predict(t) - 100.0).abs() < 5.0, "{}", b.predict(t));
    }

    #[test]
    fn a_clipping_baseline_still_learns_a_noise_free_square_wave() {
        // Clipped around the predicting (plain) model's forecast, the daily model would never
        // see the 60-unit swing and never predict better; each model clipping around its own
        // forecast learns it.
        let clip = Clip {
            z: 3.0,
            floor_rel: 0.01,
            floor_abs: 0.0,
        };
        let mut b = Baseline::new(true);
        let step = 300_000; // 5 min
        let shape = |t: i64| {
            if (t / 3_600_000) % 24 >= 14 {
                80.0
            } else {
                20.0
            }
        };
        let days = 6;
        let mut last_day_error = 0.0;
        for k in 0..(days * 288) {
            let t = k * step;
            if k >= (days - 1) * 288 {
                last_day_error += (b.predict(t) - shape(t)).abs() / 288.0;
            }
            b.learn_clipped(t, shape(t), (0.05, 0.3, 0.01), clip);
        }
        assert_eq!(b.period_ms(), Some(DAY_MS));
        assert!(
            last_day_error < 3.0,
            "mean error {last_day_error} on a swing of 60"
        );
    }

    #[test]
    fn a_flat_series_keeps_the_plain_model() {
        let mut b = Baseline::new(true);
        for k in 0..3000 {
            b.learn(
                k * 600_000,
                5.0 + if k % 2 == 0 { 0.1 } else { -0.1 },
                0.05,
                0.2,
                0.02,
            );
        }
        assert_eq!(b.period_ms(), None);
    }
}
