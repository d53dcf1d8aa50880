//! Settings of `traffic-anomaly`, from `[plugins.settings.traffic-anomaly]` in the host config.
//!
//! Every threshold is a setting rather than a constant so that the detector can be tuned
//! against the labelled generator without a rebuild.

use serde::Deserialize;

/// Settings. Unknown keys are refused; missing keys take the defaults listed on each field.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Length of one counting bucket in seconds (default 60). Rates are events per bucket.
    pub bucket_secs: u32,
    /// Buckets folded into a new series' baseline before it may alert (default 15).
    pub warmup_buckets: u32,
    /// EWMA weight of the newest bucket in the baseline level (default 0.1, about a 10-bucket
    /// time constant: fast enough to follow the daily shape, slow enough not to chase a spike).
    pub level_alpha: f64,
    /// Weight of the newest slope in the baseline trend (default 0.02; 0 disables the trend).
    pub trend_beta: f64,
    /// EWMA weight of a slow reference level (default 0.01, ~100 buckets). A spike must stand
    /// out against both the baseline and this, so a recovery after a long dip is not a spike.
    pub slow_alpha: f64,
    /// A page bucket is spike-like at this multiple of its expected count (default 3.0).
    pub spike_ratio_page: f64,
    /// The site bucket is spike-like at this multiple of its expected count (default 2.2;
    /// a flash sale reaches about 1.7x).
    pub spike_ratio_site: f64,
    /// A bucket is drop-like at or below this fraction of its expected count (default 0.45).
    pub drop_ratio: f64,
    /// The deviation must also be at least this many robust standard deviations (default 3.0).
    pub z_threshold: f64,
    /// A drop-like bucket must be at least this many robust standard deviations below the
    /// baseline (default 2.5).
    pub drop_z_threshold: f64,
    /// A spike-like bucket needs at least this many events (default 30), so that pages with a
    /// handful of views do not alert on noise: a visit makes bursts of correlated events on a
    /// page, so quiet pages are far noisier than Poisson.
    pub min_spike_count: u32,
    /// A drop is only alerted when at least this many events per bucket are expected
    /// (default 10), so deep night and rarely visited pages do not alert.
    pub min_drop_baseline: f64,
    /// An episode longer than `confirm_buckets` is also proven when its summed deviation is
    /// this many (summed) standard deviations from the baseline (default 4.0): a page losing
    /// two thirds of a dozen events a minute is ~2.5 sigma per bucket, but ~5 over four.
    pub cumulative_z_threshold: f64,
    /// ... provided the episode's overall ratio is at most `drop_ratio × cumulative_margin`
    /// (drops) or at least `spike_ratio / cumulative_margin` (spikes) (default 0.8): the sum
    /// is surer of a modest shift than of its size, and a surge ending is a modest shift.
    pub cumulative_margin: f64,
    /// Strong spike- or drop-like buckets needed within an episode before alerting
    /// (default 2).
    pub confirm_buckets: u32,
    /// After an alerted episode ends, the series stays quiet this many buckets (default 30).
    pub cooldown_buckets: u32,
    /// An anomaly lasting longer than this many buckets is taken as the new normal and the
    /// baseline restarts from it (default 90).
    pub max_episode_buckets: u32,
    /// When a page and the site spike together, the page is the anomaly if its ratio to
    /// baseline is this many times the site's (default 2.0), and the site otherwise.
    pub dominance: f64,
    /// When a page and the site drop together, the page is the anomaly if the share of
    /// traffic it lost is this many times the site's (default 1.5), and the site otherwise.
    pub drop_dominance: f64,
    /// Drops are also tested sequentially, within buckets: a continuous-time Poisson CUSUM
    /// per watched series (busy enough to alert a drop) for the rate falling below
    /// `drop_ratio` of its baseline, signalling when the evidence's likelihood ratio reaches
    /// `1/sequential_tail` (default 1e-8; 0 turns the test off), so an outage is proven as soon
    /// as the missing events suffice, wherever in a bucket it began.
    pub sequential_tail: f64,
    /// Watch each page (`url`) separately (default true).
    pub pages: bool,
    /// Leave conversion events (`add_to_cart`, `checkout`, `purchase`) out of the page series
    /// (default true): their rates are the funnel's, watched by `funnel-drop`. The site series
    /// counts every event.
    pub pages_skip_conversions: bool,
    /// Watch the whole site's rate (default true).
    pub site: bool,
    /// Watch the levels between the site and its pages, learned from the url paths seen
    /// (prefixes such as `/p/` and `/category/books/`, stems such as `/p/books-*`; default
    /// true), so an outage spread over many small pages is found where it is significant.
    pub levels: bool,
    /// At most this many levels are tracked; further new ones are ignored (default 5000).
    pub max_levels: u32,
    /// A site-wide spike is a demand surge (`traffic-surge`, severity info) unless its
    /// conversion share fell below its baseline with at most this tail probability (default
    /// 1e-3).
    pub surge_tail: f64,
    /// A page without events for this long (event time) is forgotten (default 3600).
    pub idle_timeout_secs: u32,
    /// At most this many pages are tracked; further new pages are ignored (default 10000).
    pub max_pages: u32,
    /// Longest watermark jump, in buckets, that one tick judges bucket by bucket (default 240,
    /// four hours). A longer jump — the end of the input, or a gap in the data — is skipped
    /// unjudged, which also bounds the work of one call.
    pub max_catchup_buckets: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            bucket_secs: 60,
            warmup_buckets: 15,
            level_alpha: 0.1,
            trend_beta: 0.02,
            slow_alpha: 0.01,
            spike_ratio_page: 3.0,
            spike_ratio_site: 2.2,
            drop_ratio: 0.45,
            z_threshold: 3.0,
            min_spike_count: 30,
            min_drop_baseline: 10.0,
            drop_z_threshold: 2.5,
            cumulative_z_threshold: 4.0,
            cumulative_margin: 0.8,
            confirm_buckets: 2,
            cooldown_buckets: 30,
            max_episode_buckets: 90,
            dominance: 2.0,
            drop_dominance: 1.5,
            sequential_tail: 1e-8,
            pages: true,
            pages_skip_conversions: true,
            site: true,
            levels: true,
            max_levels: 5_000,
            surge_tail: 1e-3,
            idle_timeout_secs: 3_600,
            max_pages: 10_000,
            max_catchup_buckets: 240,
        }
    }
}

impl Settings {
    /// Checks value ranges; the message names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        let unit = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 && v <= 1.0 {
                Ok(())
            } else {
                Err(format!("{name} must be in (0, 1], got {v}"))
            }
        };
        unit("level_alpha", self.level_alpha)?;
        if !(self.sequential_tail.is_finite() && (0.0..1.0).contains(&self.sequential_tail)) {
            return Err(format!(
                "sequential_tail must be in [0, 1), got {}",
                self.sequential_tail
            ));
        }
        unit("slow_alpha", self.slow_alpha)?;
        if !(self.trend_beta.is_finite() && (0.0..=1.0).contains(&self.trend_beta)) {
            return Err(format!(
                "trend_beta must be in [0, 1], got {}",
                self.trend_beta
            ));
        }
        for (name, v) in [
            ("spike_ratio_page", self.spike_ratio_page),
            ("spike_ratio_site", self.spike_ratio_site),
        ] {
            if !(v.is_finite() && v > 1.0) {
                return Err(format!("{name} must be above 1, got {v}"));
            }
        }
        if !(self.dominance.is_finite() && self.dominance >= 1.0) {
            return Err(format!(
                "dominance must be at least 1, got {}",
                self.dominance
            ));
        }
        if !(self.drop_ratio.is_finite() && self.drop_ratio >= 0.0 && self.drop_ratio < 1.0) {
            return Err(format!(
                "drop_ratio must be in [0, 1), got {}",
                self.drop_ratio
            ));
        }
        if !(self.z_threshold.is_finite() && self.z_threshold > 0.0) {
            return Err(format!(
                "z_threshold must be positive, got {}",
                self.z_threshold
            ));
        }
        if !(self.min_drop_baseline.is_finite() && self.min_drop_baseline >= 0.0) {
            return Err(format!(
                "min_drop_baseline must be zero or more, got {}",
                self.min_drop_baseline
            ));
        }
        for (name, v) in [
            ("bucket_secs", self.bucket_secs),
            ("warmup_buckets", self.warmup_buckets),
            ("confirm_buckets", self.confirm_buckets),
            ("max_episode_buckets", self.max_episode_buckets),
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("max_catchup_buckets", self.max_catchup_buckets),
        ] {
            if v == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        if !(self.surge_tail.is_finite() && self.surge_tail > 0.0 && self.surge_tail < 1.0) {
            return Err(format!(
                "surge_tail must be in (0, 1), got {}",
                self.surge_tail
            ));
        }
        if !self.pages && !self.site {
            return Err("at least one of `pages` and `site` must be true".into());
        }
        Ok(())
    }
}
