//! The detector core: one streaming series in, one verdict per observation out.
//!
//! Per observation: predict from the [`Baseline`] (level, with a daily or weekly profile when
//! that predicts better), standardise the residual by the [`RobustScale`], turn its capped |z|
//! into an anomaly [`Likelihood`], and test the drift of the fast level from a slow reference
//! (a slow ramp that the fast level follows). The smaller of the two tail probabilities,
//! doubled for testing twice, is the verdict. While it is at or below `freeze_tail` the
//! detector is in an *episode* and learns nothing, so an incident, ramp included, is never
//! learned as normal; an episode longer than `max_episode` is accepted as the new normal.

use serde::{Deserialize, Serialize};

use super::config::DetectorConfig;
use super::likelihood::Likelihood;
use super::ring::{Ring, median};
use super::scale::RobustScale;
use super::seasonal::{Baseline, Clip};
use super::tail::{normal_two_sided, surprise};

/// Mean absolute deviation → standard deviation for Gaussian noise.
const MEAN_ABS_TO_SIGMA: f64 = 1.253_3;
/// Residuals needed before the scale is trusted at all.
const MIN_SCALE_SAMPLES: usize = 8;
/// Standard deviation of rounding to a grid of step 1 (`1/sqrt(12)`).
const ROUNDING_SD: f64 = 0.288_675;
/// Recent raw values kept to re-anchor the level when a new normal is accepted.
const RECENT: usize = 16;

/// What the detector says about one observation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The value the baseline expected.
    pub expected: f64,
    /// The residual in robust standard deviations.
    pub z: f64,
    /// Probability of a verdict at least this extreme on normal data (1 while warming up).
    pub tail: f64,
    /// `−log10 tail`, except 0 while warming up and during the cooldown after an alert: the
    /// score to threshold or rank.
    pub score: f64,
    /// Whether this observation raises an alert (`tail ≤ alert_tail`, outside warm-up and
    /// cooldown).
    pub alert: bool,
    /// Whether the baseline is frozen (an episode is running).
    pub frozen: bool,
}

/// The state of one watched series. Bounded: about `8 × (scale_window + short_window + 16)`
/// bytes plus 216 seasonal bins, whatever the length of the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detector {
    config: DetectorConfig,
    baseline: Baseline,
    scale: RobustScale,
    likelihood: Likelihood,
    /// The slow reference level and the EWMA of |fast − slow| (their typical spread).
    slow: f64,
    drift_spread: f64,
    recent: Ring,
    seen: u64,
    skipped: u64,
    episode: u32,
    calm: u32,
    cooldown: u32,
    /// The data's resolution: the smallest non-zero step between consecutive values seen (0
    /// before any). Defaulted so a snapshot from before it existed still restores.
    #[serde(default)]
    resolution: f64,
    #[serde(skip)]
    scratch: Vec<f64>,
}

impl Detector {
    /// A detector with `config`, after checking it.
    pub fn new(config: DetectorConfig) -> Result<Self, String> {
        config.validate()?;
        Ok(Detector {
            baseline: Baseline::new(config.seasonal),
            scale: RobustScale::new(config.scale_window, config.scale_floor_rel),
            likelihood: Likelihood::new(config.short_window),
            slow: 0.0,
            drift_spread: 0.0,
            recent: Ring::new(RECENT),
            seen: 0,
            skipped: 0,
            episode: 0,
            calm: 0,
            cooldown: 0,
            resolution: 0.0,
            scratch: Vec::new(),
            config,
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// Observations judged so far (non-finite ones excluded).
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Non-finite observations ignored so far.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Judges `value` observed at `time_ms`, then learns from it if it looks normal. A NaN or
    /// infinite value is ignored (`None`) and leaves the state untouched.
    pub fn observe(&mut self, time_ms: i64, value: f64) -> Option<Verdict> {
        if !value.is_finite() {
            self.skipped = self.skipped.saturating_add(1);
            return None;
        }
        let c = &self.config;
        self.seen = self.seen.saturating_add(1);
        if let Some(step) = self.recent.last().map(|last| (value - last).abs())
            && step > 0.0
            && (self.resolution == 0.0 || step < self.resolution)
        {
            self.resolution = step;
        }
        self.recent.push(value);
        let expected = self.baseline.predict(time_ms);
        if self.seen == 1 {
            self.baseline.learn(
                time_ms,
                value,
                c.level_alpha,
                c.season_gamma,
                c.model_error_alpha,
            );
            self.slow = self.baseline.level();
            return Some(quiet(expected));
        }
        // Never below the rounding error of the data (a grid step q rounds with standard
        // deviation q/sqrt(12)): on counts near zero, a run of zeros must not make a single
        // event look infinitely unlikely.
        let sigma = self
            .scale
            .sigma(expected)
            .max(self.resolution * ROUNDING_SD);
        let residual = value - expected;
        let z = residual / sigma;
        let ready = self.scale.len() >= MIN_SCALE_SAMPLES;
        let average = self
            .likelihood
            .push(if ready { z.abs().min(c.z_cap) } else { 0.0 });
        let p_short = if ready {
            self.likelihood.tail(average)
        } else {
            1.0
        };
        // The fast level against the slow reference, in units of its own typical spread: a
        // ramp the fast level follows moves it away from the slow one, which is frozen with
        // the rest of the baseline once the episode starts.
        let drift = self.baseline.level() - self.slow;
        let drift_sd = MEAN_ABS_TO_SIGMA * self.drift_spread;
        let p_drift = if ready && drift_sd > 0.0 {
            normal_two_sided(drift / drift_sd.max(sigma * 0.05))
        } else {
            1.0
        };
        let tail = (2.0 * p_short.min(p_drift)).min(1.0);
        let warm = self.seen <= u64::from(c.warmup);
        let anomalous = !warm && tail <= c.freeze_tail;

        // Episode bookkeeping: freeze while anomalous, end after `calm` quiet observations,
        // accept the present as normal after `max_episode`.
        if self.episode > 0 || anomalous {
            self.episode = self.episode.saturating_add(1);
            self.calm = if anomalous {
                0
            } else {
                self.calm.saturating_add(1)
            };
            if self.calm >= c.calm {
                self.episode = 0;
                self.calm = 0;
            } else if self.episode > c.max_episode {
                let now = median(self.recent.values(), &mut self.scratch).unwrap_or(value);
                self.baseline.reset_to(time_ms, now);
                self.slow = self.baseline.level();
                self.episode = 0;
                self.calm = 0;
            }
        }
        if self.episode == 0 {
            let clip = c.learn_clip_z * sigma;
            let (lo, hi) = (expected - clip, expected + clip);
            let x = if ready && lo <= hi {
                value.clamp(lo, hi)
            } else {
                value
            };
            // The models clip the raw value themselves, each around its own prediction.
            let clip = Clip {
                z: c.learn_clip_z,
                floor_rel: c.scale_floor_rel,
                floor_abs: self.resolution * ROUNDING_SD,
            };
            self.baseline.learn_clipped(
                time_ms,
                value,
                (c.level_alpha, c.season_gamma, c.model_error_alpha),
                clip,
            );
            self.scale.push(x - expected);
            if ready {
                self.likelihood.learn(average, c.long_alpha);
            }
            // The slow reference stops as soon as the drift is suspicious (`drift_gate_tail`,
            // far earlier than the fast baseline freezes) and the fast level is at least
            // `drift_gate_sigma` residual sigmas away: a ramp then pulls the fast level away
            // from a reference that stays put, instead of dragging both along, while the
            // fast level's ordinary wandering within the noise (or within a seasonal shape it
            // partly follows) keeps the reference learning.
            if p_drift > c.drift_gate_tail || drift.abs() < c.drift_gate_sigma * sigma {
                self.slow += c.slow_alpha * (self.baseline.level() - self.slow);
                let d = (self.baseline.level() - self.slow).abs();
                let a = c.slow_alpha.max(1.0 / self.seen as f64);
                self.drift_spread += a * (d - self.drift_spread);
            }
        }

        let mut score = if warm { 0.0 } else { surprise(tail) };
        let alert = !warm && self.cooldown == 0 && tail <= c.alert_tail;
        if alert {
            self.cooldown = c.cooldown;
        } else if self.cooldown > 0 {
            self.cooldown -= 1;
            score = 0.0;
        }
        Some(Verdict {
            expected,
            z,
            tail: if warm { 1.0 } else { tail },
            score,
            alert,
            frozen: self.episode > 0,
        })
    }
}

fn quiet(expected: f64) -> Verdict {
    Verdict {
        expected,
        z: 0.0,
        tail: 1.0,
        score: 0.0,
        alert: false,
        frozen: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP_MS: i64 = 300_000; // 5-minute samples, 288 a day

    /// Deterministic noise, roughly standard normal (sum of four uniforms, xorshift).
    struct Noise(u64);
    impl Noise {
        fn next(&mut self) -> f64 {
            let mut s = 0.0;
            for _ in 0..4 {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                s += (self.0 >> 11) as f64 / (1u64 << 53) as f64;
            }
            (s - 2.0) * 3f64.sqrt()
        }
    }

    /// A daily sine of amplitude 30 around 100 with unit noise.
    fn daily(k: i64, noise: &mut Noise) -> f64 {
        let phase = (k * STEP_MS) as f64 / DAY_MS_F * std::f64::consts::TAU;
        100.0 + 30.0 * phase.sin() + noise.next()
    }
    const DAY_MS_F: f64 = 86_400_000.0;

    fn detector() -> Detector {
        Detector::new(DetectorConfig::default()).unwrap()
    }

    #[test]
    fn warm_up_emits_nothing() {
        let mut d = detector();
        let mut n = Noise(7);
        for k in 0..i64::from(d.config().warmup) {
            // Even wild values during warm-up neither score nor alert.
            let x = if k % 17 == 0 { 1e6 } else { daily(k, &mut n) };
            let v = d.observe(k * STEP_MS, x).unwrap();
            assert!(!v.alert && v.score == 0.0 && v.tail == 1.0, "at {k}: {v:?}");
        }
    }

    #[test]
    fn a_step_in_a_seasonal_series_is_flagged_once_normal_noise_is_not() {
        let mut d = detector();
        let mut n = Noise(11);
        let days = 288 * 6;
        for k in 0..days {
            let v = d.observe(k * STEP_MS, daily(k, &mut n)).unwrap();
            assert!(!v.alert, "false alert at {k}: {v:?}");
        }
        // The daily shape is modelled: the prediction follows the sine.
        assert!(d.baseline.period_ms().is_some());
        let mut alerts = 0;
        let mut first = None;
        for k in days..days + 150 {
            let v = d.observe(k * STEP_MS, daily(k, &mut n) + 20.0).unwrap();
            if v.alert {
                alerts += 1;
                first.get_or_insert(k - days);
            }
        }
        assert_eq!(alerts, 1, "one alert per incident");
        assert!(first.is_some_and(|f| f < 10), "late: {first:?}");
    }

    #[test]
    fn a_slow_ramp_is_detected_and_not_absorbed() {
        // A steady rate (no daily shape: the drift test compares deseasonalised levels, and
        // with a strong daily shape that the fast level partly follows it is far less
        // sensitive, see docs/detectors.md).
        let flat = |_: i64, n: &mut Noise| 100.0 + n.next();
        let mut d = detector();
        let mut n = Noise(5);
        let start = 288 * 4;
        for k in 0..start {
            let v = d.observe(k * STEP_MS, flat(k, &mut n)).unwrap();
            assert!(!v.alert, "false alert at {k}");
        }
        // +0.02 sigma per sample: each step is far inside the noise, and an EWMA level with
        // weight 0.05 would lag the ramp by only 0.4 sigma.
        let mut detected = None;
        let mut frozen = None;
        for i in 0..1500 {
            let k = start + i;
            let ramp = 0.02 * i as f64;
            let v = d.observe(k * STEP_MS, flat(k, &mut n) + ramp).unwrap();
            if v.alert && detected.is_none() {
                detected = Some(i);
            }
            if v.frozen && frozen.is_none() {
                frozen = Some((i, v.expected));
            }
        }
        let i = detected.expect("ramp never alerted");
        assert!(
            i < 400,
            "ramp alerted late, at +{:.1} sigma",
            0.02 * i as f64
        );
        // Once frozen, the baseline stays near where the ramp began, not where it got to.
        let (fi, expected) = frozen.expect("baseline never froze during the ramp");
        assert!(fi <= i + 50, "froze at {fi}, alerted at {i}");
        assert!(
            expected < 100.0 + 0.02 * fi as f64,
            "expected {expected} at {fi}"
        );
    }

    #[test]
    fn a_count_after_a_run_of_zeros_is_judged_at_the_data_resolution() {
        // Sparse counts: long runs of zeros shrink every residual to nothing; the resolution
        // of the data (steps of 1) keeps one event from being infinitely unlikely.
        let mut d = detector();
        for k in 0..2000 {
            let x = if k % 97 == 0 { 1.0 } else { 0.0 };
            d.observe(k * STEP_MS, x);
        }
        for k in 2000..2400 {
            d.observe(k * STEP_MS, 0.0);
        }
        let v = d.observe(2400 * STEP_MS, 1.0).unwrap();
        assert!(v.z.abs() < 4.0, "{v:?}");
    }

    #[test]
    fn snapshot_restore_gives_identical_scores() {
        let mut a = detector();
        let mut n = Noise(3);
        for k in 0..3000 {
            a.observe(k * STEP_MS, daily(k, &mut n));
        }
        let bytes = crate::state::encode(&a).unwrap();
        let mut b: Detector = crate::state::decode(&bytes).unwrap();
        for k in 3000..4000 {
            let x = daily(k, &mut n) + if k > 3500 { 10.0 } else { 0.0 };
            assert_eq!(
                a.observe(k * STEP_MS, x),
                b.observe(k * STEP_MS, x),
                "at {k}"
            );
        }
    }

    #[test]
    fn a_snapshot_from_before_the_resolution_floor_still_restores() {
        let mut a = detector();
        let mut n = Noise(4);
        for k in 0..1000 {
            a.observe(k * STEP_MS, daily(k, &mut n));
        }
        // The state as the previous version wrote it: no resolution, no model error counts.
        let mut old: serde_json::Value = serde_json::to_value(&a).unwrap();
        old.as_object_mut().unwrap().remove("resolution");
        for m in old["baseline"]["models"].as_array_mut().unwrap() {
            m.as_object_mut().unwrap().remove("errors");
        }
        let mut b: Detector = crate::state::decode(&serde_json::to_vec(&old).unwrap()).unwrap();
        let v = b.observe(1000 * STEP_MS, daily(1000, &mut n)).unwrap();
        assert!(v.score.is_finite() && !v.alert, "{v:?}");
    }

    #[test]
    fn nan_and_infinity_do_not_poison_state() {
        let mut a = detector();
        let mut b = detector();
        let mut n = Noise(9);
        for k in 0..2000 {
            let x = daily(k, &mut n);
            a.observe(k * STEP_MS, x);
            b.observe(k * STEP_MS, x);
            if k % 100 == 0 {
                for odd in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
                    assert!(b.observe(k * STEP_MS, odd).is_none());
                }
            }
        }
        assert_eq!(b.skipped(), 60);
        let x = daily(2000, &mut n);
        let (va, vb) = (a.observe(2000 * STEP_MS, x), b.observe(2000 * STEP_MS, x));
        assert_eq!(va, vb);
        assert!(vb.is_some_and(|v| v.score.is_finite() && v.expected.is_finite()));
    }

    #[test]
    fn memory_stays_bounded_over_a_million_points() {
        let mut d = detector();
        let mut n = Noise(1);
        let mut size_at_10k = 0;
        for k in 0..1_000_000 {
            // A mix of regimes, spikes and huge magnitudes.
            let x = daily(k, &mut n) * if (k / 50_000) % 2 == 0 { 1.0 } else { 1e6 }
                + if k % 9973 == 0 { 1e9 } else { 0.0 };
            let v = d.observe(k * STEP_MS, x).unwrap();
            assert!(v.score.is_finite() && v.tail.is_finite());
            if k == 10_000 {
                size_at_10k = crate::state::encode(&d).unwrap().len();
            }
        }
        let size = crate::state::encode(&d).unwrap().len();
        assert!(
            size < 2 * size_at_10k,
            "state grew: {size_at_10k} -> {size} bytes"
        );
        assert!(d.scratch.capacity() <= d.config().scale_window.max(RECENT));
    }

    #[test]
    fn bad_settings_are_refused_by_name() {
        let bad = DetectorConfig {
            alert_tail: 0.0,
            ..DetectorConfig::default()
        };
        assert!(Detector::new(bad).unwrap_err().contains("alert_tail"));
    }
}
