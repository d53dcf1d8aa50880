//! Settings of `funnel-drop`, from `[plugins.settings.funnel-drop]` in the host config.

use serde::Deserialize;

/// Settings. Unknown keys are refused; missing keys take the defaults listed on each field.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Length of one counting bucket in seconds (default 60).
    pub bucket_secs: u32,
    /// The sliding window judged each bucket, in buckets (default 5).
    pub window_buckets: u32,
    /// EWMA weight of the newest bucket in the slow baseline (default 0.02, ~50 buckets).
    pub baseline_alpha: f64,
    /// Buckets learned before the detector may alert (default 30).
    pub warmup_buckets: u32,
    /// A step is judged only when the window holds at least this many sessions at the step's
    /// entry (default 30), so night-time low traffic does not alert.
    pub min_window_volume: u32,
    /// A window is drop-like when its conversion is at or below this fraction of the baseline
    /// conversion (default 0.5).
    pub drop_ratio: f64,
    /// Steps are judged only while the window's product-step entries, and the site's events,
    /// are at least this fraction of their baseline, and the site's events at most its
    /// inverse (default 0.5, so between half and twice the usual traffic): during a traffic
    /// outage sessions are cut short and every conversion falls, a surge brings visitors of
    /// another mix; both are the traffic detector's business.
    pub min_traffic_ratio: f64,
    /// ... and significant: the one-sided likelihood-ratio tail probability of the drop,
    /// times the number of series judged that bucket (Bonferroni), at most the normal tail at
    /// this many sigma (default 4.0, about 3e-5).
    pub z_threshold: f64,
    /// The site's sequential test signals at `ln` of this (default 1e7): by Lorden's bound
    /// (1971) a false alarm at most about once per this many entries into a step while its
    /// conversion is as usual, e.g. once in ~70 days of a step entered 100 times a minute.
    pub sequential_false_alarm_entries: f64,
    /// A segment is judged only with at least this many sessions at the step's entry in the
    /// window (default 8); the significance test does the rest.
    pub min_segment_volume: u32,
    /// While the whole site is drop-like, a segment is named instead only if the rest of the
    /// site converts at least this fraction of its baseline without it (default 0.75).
    pub remainder_ratio: f64,
    /// Tracked values per segment dimension, `other` included (default 12); further values
    /// count as `other`.
    pub max_segment_values: u32,
    /// Consecutive drop-like buckets before alerting (default 2).
    pub confirm_buckets: u32,
    /// After an alerted episode ends, the step stays quiet this many buckets (default 60).
    pub cooldown_buckets: u32,
    /// A drop lasting longer than this many buckets becomes the new baseline (default 240).
    pub max_episode_buckets: u32,
    /// A page view whose url contains this is a product view, the funnel's first step
    /// (default "/product/").
    pub product_url_contains: String,
    /// A session idle this long (event time) is forgotten (default 1800).
    pub idle_timeout_secs: u32,
    /// At most this many sessions are tracked at once; events of further new sessions are
    /// ignored (default 200000).
    pub max_sessions: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            bucket_secs: 60,
            window_buckets: 5,
            baseline_alpha: 0.02,
            warmup_buckets: 30,
            min_window_volume: 30,
            drop_ratio: 0.5,
            z_threshold: 4.0,
            sequential_false_alarm_entries: 1e7,
            min_segment_volume: 8,
            remainder_ratio: 0.75,
            max_segment_values: 12,
            min_traffic_ratio: 0.5,
            confirm_buckets: 2,
            cooldown_buckets: 60,
            max_episode_buckets: 240,
            product_url_contains: "/product/".into(),
            idle_timeout_secs: 1_800,
            max_sessions: 200_000,
        }
    }
}

impl Settings {
    /// Checks value ranges; the message names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.baseline_alpha.is_finite()
            && self.baseline_alpha > 0.0
            && self.baseline_alpha <= 1.0)
        {
            return Err(format!(
                "baseline_alpha must be in (0, 1], got {}",
                self.baseline_alpha
            ));
        }
        if !(self.drop_ratio.is_finite() && self.drop_ratio > 0.0 && self.drop_ratio < 1.0) {
            return Err(format!(
                "drop_ratio must be in (0, 1), got {}",
                self.drop_ratio
            ));
        }
        if !(self.min_traffic_ratio.is_finite() && self.min_traffic_ratio >= 0.0) {
            return Err(format!(
                "min_traffic_ratio must be zero or more, got {}",
                self.min_traffic_ratio
            ));
        }
        if !(self.sequential_false_alarm_entries.is_finite()
            && self.sequential_false_alarm_entries > 1.0)
        {
            return Err(format!(
                "sequential_false_alarm_entries must be more than 1, got {}",
                self.sequential_false_alarm_entries
            ));
        }
        if !(self.z_threshold.is_finite() && self.z_threshold > 0.0) {
            return Err(format!(
                "z_threshold must be positive, got {}",
                self.z_threshold
            ));
        }
        for (name, v) in [
            ("bucket_secs", self.bucket_secs),
            ("window_buckets", self.window_buckets),
            ("warmup_buckets", self.warmup_buckets),
            ("confirm_buckets", self.confirm_buckets),
            ("max_episode_buckets", self.max_episode_buckets),
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("max_segment_values", self.max_segment_values),
        ] {
            if v == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        if self.window_buckets > 1_440 {
            return Err(format!(
                "window_buckets must be at most 1440, got {}",
                self.window_buckets
            ));
        }
        if self.product_url_contains.is_empty() {
            return Err("product_url_contains must not be empty".into());
        }
        Ok(())
    }
}
