//! One funnel transition (e.g. checkout → purchase): its slow baseline conversion and the
//! drop episode it may be in.

use clickwatch_sdk::prelude::*;
use serde::{Deserialize, Serialize};

use crate::Settings;

/// Funnel steps in order; a transition `k` goes from `STEPS[k]` to `STEPS[k + 1]` and is named
/// after the step it fails to reach (`funnel-drop/purchase`).
pub const STEPS: [&str; 4] = ["product", "cart", "checkout", "purchase"];

/// One funnel as judged for the site or a segment: its judging window and transitions.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Series {
    /// Closed buckets inside the judging window, oldest first.
    pub window: std::collections::VecDeque<[u32; 4]>,
    pub transitions: [Transition; 3],
    pub learned: u32,
}

impl Series {
    /// Pushes a closed bucket and returns the window sums.
    pub fn push(&mut self, counts: [u32; 4], window_buckets: u32) -> [u64; 4] {
        self.window.push_back(counts);
        while self.window.len() > window_buckets as usize {
            self.window.pop_front();
        }
        let mut sums = [0u64; 4];
        for b in &self.window {
            for (sum, n) in sums.iter_mut().zip(b) {
                *sum += u64::from(*n);
            }
        }
        sums
    }
}

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
    /// The sequential test's statistic and the bucket its excursion began (absent in 0.2.0
    /// snapshots).
    #[serde(default)]
    pub seq: f64,
    #[serde(default)]
    pub seq_start_ms: i64,
}

/// The alternative `ρ` of the Bernoulli CUSUM on a conversion with baseline `p0`: the test
/// drifts upwards exactly when conversion is below `r·p0`, i.e. the root in `(0, r)` of
/// `r·p0·ln ρ + (1 − r·p0)·ln((1 − ρ·p0)/(1 − p0)) = 0` (at `ρ = r` the left side is the
/// Kullback-Leibler divergence, positive; towards 0 it falls without bound).
pub fn bernoulli_rho(p0: f64, r: f64) -> f64 {
    let q = r * p0;
    let f = |rho: f64| q * rho.ln() + (1.0 - q) * ((1.0 - rho * p0) / (1.0 - p0)).ln();
    let (mut lo, mut hi) = (1e-9_f64, r);
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if f(mid) < 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// The sequential test's threshold, `ln(sequential_false_alarm_entries)` (16.1 at the
/// default 1e7): a CUSUM at threshold `h` raises a false alarm at most about once every `e^h`
/// observations while the baseline holds (Lorden 1971). A budget stated per entry rather than
/// per bucket: a quiet site's break is proven after as many entries as a busy one's, however
/// many minutes they take. (Until funnel-drop 0.3 the threshold was `2·ln(1/tail(z))`, 20.7 at
/// `z_threshold` 4: a false alarm once per 10^9 entries, which left a break on a site with a
/// few checkouts a minute unproven for 15 minutes or more.)
pub fn sequential_threshold(s: &Settings) -> f64 {
    s.sequential_false_alarm_entries.ln()
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
    // The counts and the judging context of one bucket; a struct for them would only rename.
    #[allow(clippy::too_many_arguments)]
    pub fn judge(
        &mut self,
        bucket_ms: i64,
        bucket_len: i64,
        warm: bool,
        entered: u64,
        converted: u64,
        tests: usize,
        learned: u32,
        min_volume: u32,
        s: &Settings,
    ) -> Option<Finding> {
        let p0 = self.baseline().filter(|_| warm)?;
        let n = entered as f64;
        let x = converted as f64;
        // The baseline counts as the evidence of the buckets it remembers (~1/alpha).
        let memory = f64::from(learned).min(1.0 / s.baseline_alpha).max(1.0);
        let tail = clickwatch_sdk::detect::proportion::drop_tail(
            x,
            n,
            self.num * memory,
            self.den * memory,
        );
        // Bonferroni across the series judged this bucket.
        let tail = (tail * tests.max(1) as f64).min(1.0);
        let z = -clickwatch_sdk::detect::tail::surprise(tail);
        let drop_like = entered >= u64::from(min_volume)
            && p0 > 0.0
            && x / n.max(1.0) <= s.drop_ratio * p0
            && tail <= clickwatch_sdk::detect::tail::normal_sf(s.z_threshold);
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

    /// The sequential test (a Bernoulli CUSUM, Page 1954): adds one bucket's entries and
    /// conversions and says whether the excursion now proves a drop below `drop_ratio` of the
    /// baseline at [`sequential_threshold`]. Each entry that does not convert adds
    /// `ln((1 − ρ·p0)/(1 − p0))`, each conversion `ln ρ` ([`bernoulli_rho`]), so a broken step
    /// is proven after about `h/ln((1 − ρ·p0)/(1 − p0))` entries (about 20 at `p0` 0.6, `h` 16.1),
    /// instead of when a window of buckets has filled with the break. Conversions
    /// trail their entries, which at a break's start only delays the proof.
    ///
    /// `threshold` is [`sequential_threshold`] for the site, plus `ln` of the number of
    /// segments tested for a segment (the family shares the site's false-alarm budget).
    // The bucket's counts and its judging context; a struct for them would only rename.
    #[allow(clippy::too_many_arguments)]
    pub fn sequential(
        &mut self,
        bucket_ms: i64,
        entered: u32,
        converted: u32,
        warm: bool,
        threshold: f64,
        s: &Settings,
    ) -> bool {
        let testable = warm
            && bucket_ms >= self.quiet_until_ms
            && !self.episode.as_ref().is_some_and(|e| e.alerted);
        let Some(p0) = self.baseline().filter(|p| testable && *p > 0.0 && *p < 1.0) else {
            self.seq = 0.0;
            return false;
        };
        let rho = bernoulli_rho(p0, s.drop_ratio);
        let (n, x) = (f64::from(entered), f64::from(converted));
        let llr = x * rho.ln() + (n - x).max(0.0) * ((1.0 - rho * p0) / (1.0 - p0)).ln();
        if self.seq <= 0.0 {
            self.seq_start_ms = bucket_ms;
        }
        self.seq = (self.seq + llr).max(0.0);
        self.seq >= threshold
    }

    /// The finding of a sequential proof (see [`Transition::sequential`]) when the window
    /// holds at least `min_volume` entries: the episode starts where the excursion began.
    pub fn sequential_finding(
        &mut self,
        bucket_ms: i64,
        bucket_len: i64,
        entered: u64,
        converted: u64,
        min_volume: u32,
    ) -> Option<Finding> {
        let p0 = self
            .baseline()
            .filter(|_| entered >= u64::from(min_volume))?;
        let start_ms = self.seq_start_ms;
        let e = self.episode.get_or_insert(Episode {
            start_ms,
            buckets: 0,
            alerted: false,
        });
        e.buckets = e.buckets.max(1);
        Some(Finding {
            start_ms: e.start_ms,
            time_ms: bucket_ms.saturating_add(bucket_len),
            entered,
            converted,
            baseline: p0,
            z: -(2.0 * self.seq).sqrt(),
            buckets: e.buckets,
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

fn details(k: usize, f: &Finding) -> serde_json::Value {
    let (from, to) = (STEPS[k], STEPS[(k + 1).min(STEPS.len() - 1)]);
    let p = f.converted as f64 / (f.entered as f64).max(1.0);
    let (lo, hi) =
        clickwatch_sdk::detect::proportion::wilson(f.converted as f64, f.entered as f64, 1.96);
    serde_json::json!({
        "from": from,
        "to": to,
        "entered": f.entered,
        "converted": f.converted,
        "conversion": p,
        "conversion_95": [lo, hi],
        "baseline": f.baseline,
        "surprise": f.z.abs(),
        "buckets": f.buckets,
    })
}

fn message(k: usize, f: &Finding, window_buckets: u32, whom: &str) -> String {
    let (from, to) = (STEPS[k], STEPS[(k + 1).min(STEPS.len() - 1)]);
    let p = f.converted as f64 / (f.entered as f64).max(1.0);
    format!(
        "{from} → {to} conversion{whom} {:.1}% against a baseline of {:.1}% \
         ({} of {} sessions over the last {window_buckets} buckets)",
        p * 100.0,
        f.baseline * 100.0,
        f.converted,
        f.entered
    )
}

/// The site-wide alert for transition `k`, naming the most affected segments.
pub fn alert(
    k: usize,
    f: &Finding,
    window_buckets: u32,
    segments: Vec<serde_json::Value>,
) -> Alert {
    let to = STEPS[(k + 1).min(STEPS.len() - 1)];
    let mut d = details(k, f);
    d["segments"] = serde_json::Value::Array(segments);
    Alert::new(&format!("funnel-drop/{to}"), "site", "*")
        .severity(Severity::Critical)
        .window(f.start_ms, f.time_ms)
        .score(f.z.abs())
        .message(message(k, f, window_buckets, ""))
        .details(d)
}

/// The alert for one segment's drop on transition `k`; `remainder` is the rest of the
/// site's conversion relative to its baseline.
pub fn segment_alert(
    k: usize,
    f: &Finding,
    window_buckets: u32,
    dimension: &str,
    value: &str,
    remainder: f64,
) -> Alert {
    let to = STEPS[(k + 1).min(STEPS.len() - 1)];
    let mut d = details(k, f);
    d["dimension"] = dimension.into();
    d["segment"] = value.into();
    d["step"] = format!("{to}:{value}").into();
    d["rest_of_site_ratio"] = remainder.into();
    Alert::new(&format!("funnel-drop/{to}"), dimension, value)
        .severity(Severity::Critical)
        .window(f.start_ms, f.time_ms)
        .score(f.z.abs())
        .message(message(
            k,
            f,
            window_buckets,
            &format!(" for {dimension} {value}"),
        ))
        .details(d)
}
