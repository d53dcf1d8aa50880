//! One funnel transition (e.g. checkout → purchase): its slow baseline conversion and the
//! drop episode it may be in.

use clickwatch_sdk::prelude::*;
use serde::{Deserialize, Serialize};

use crate::Settings;

/// Funnel steps in order; a transition `k` goes from `STEPS[k]` to `STEPS[k + 1]` and is named
/// after the step it fails to reach (`funnel-drop/purchase`).
pub const STEPS: [&str; 4] = ["product", "cart", "checkout", "purchase"];

/// A run of drop-like buckets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Episode {
    pub start_ms: i64,
    pub buckets: u32,
    pub alerted: bool,
}

/// Baseline and episode of one transition.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Transition {
    /// Slow EWMAs of entries into this step and into the next one, per bucket.
    pub den: f64,
    pub num: f64,
    pub initialised: bool,
    pub episode: Option<Episode>,
    pub quiet_until_ms: i64,
}

/// A confirmed drop, as reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub start_ms: i64,
    pub time_ms: i64,
    pub entered: u64,
    pub converted: u64,
    pub baseline: f64,
    pub z: f64,
    pub buckets: u32,
}

impl Transition {
    /// The baseline conversion, if there is one.
    pub fn baseline(&self) -> Option<f64> {
        (self.initialised && self.den > 0.0).then(|| (self.num / self.den).clamp(0.0, 1.0))
    }

    /// Judges the window ending with the bucket starting at `bucket_ms`: `entered` sessions
    /// reached this step, `converted` reached the next one.
    pub fn judge(
        &mut self,
        bucket_ms: i64,
        bucket_len: i64,
        warm: bool,
        entered: u64,
        converted: u64,
        s: &Settings,
    ) -> Option<Finding> {
        let p0 = self.baseline().filter(|_| warm)?;
        let n = entered as f64;
        let x = converted as f64;
        let spread = (n * p0 * (1.0 - p0)).sqrt().max(0.5);
        let z = (x - n * p0) / spread;
        let drop_like = entered >= u64::from(s.min_window_volume)
            && p0 > 0.0
            && x / n.max(1.0) <= s.drop_ratio * p0
            && z <= -s.z_threshold;
        if !drop_like {
            if self.episode.take().is_some_and(|e| e.alerted) {
                self.quiet_until_ms =
                    bucket_ms.saturating_add(i64::from(s.cooldown_buckets) * bucket_len);
            }
            return None;
        }
        let episode = self.episode.get_or_insert(Episode {
            start_ms: bucket_ms,
            buckets: 0,
            alerted: false,
        });
        episode.buckets += 1;
        if episode.buckets > s.max_episode_buckets {
            // Low for longer than any outage we look for: accept it as the new conversion.
            self.num = self.den * (x / n.max(1.0));
            self.episode = None;
            return None;
        }
        if episode.alerted || episode.buckets < s.confirm_buckets || bucket_ms < self.quiet_until_ms
        {
            return None;
        }
        episode.alerted = true;
        Some(Finding {
            start_ms: episode.start_ms,
            time_ms: bucket_ms.saturating_add(bucket_len),
            entered,
            converted,
            baseline: p0,
            z,
            buckets: episode.buckets,
        })
    }

    /// Folds one bucket's counts into the baseline, except during a drop: an outage must not
    /// become the normal it is judged against.
    pub fn learn_unless_in_episode(&mut self, entered: u32, converted: u32, alpha: f64) {
        if self.episode.is_some() {
            return;
        }
        let (d, c) = (f64::from(entered), f64::from(converted));
        if !self.initialised {
            if entered == 0 {
                return;
            }
            self.den = d;
            self.num = c;
            self.initialised = true;
            return;
        }
        self.den += alpha * (d - self.den);
        self.num += alpha * (c - self.num);
    }
}

/// The alert for transition `k`.
pub fn alert(k: usize, f: &Finding, window_buckets: u32) -> Alert {
    let (from, to) = (STEPS[k], STEPS[(k + 1).min(STEPS.len() - 1)]);
    let p = f.converted as f64 / (f.entered as f64).max(1.0);
    Alert::new(&format!("funnel-drop/{to}"), "site", "*")
        .severity(Severity::Critical)
        .window(f.start_ms, f.time_ms)
        .score(f.z.abs())
        .message(format!(
            "{from} → {to} conversion {:.1}% against a baseline of {:.1}% \
             ({} of {} sessions over the last {window_buckets} buckets)",
            p * 100.0,
            f.baseline * 100.0,
            f.converted,
            f.entered
        ))
        .details(serde_json::json!({
            "from": from,
            "to": to,
            "entered": f.entered,
            "converted": f.converted,
            "conversion": p,
            "baseline": f.baseline,
            "z": f.z,
            "buckets": f.buckets,
        }))
}
