//! Settings of `click-fraud`, from `[plugins.settings.click-fraud]` in the host config.

use serde::Deserialize;

/// Settings. Unknown keys are refused; missing keys take the defaults listed on each field.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Sliding window of the per-IP rule, in seconds (default 600).
    pub ip_window_secs: u32,
    /// Ad clicks from one IP within the window before it can be flagged (default 5; a human
    /// arrives from an ad about once per visit).
    pub min_ip_ad_clicks: u32,
    /// ... and conversions (add_to_cart, checkout, purchase) from that IP in the window at most
    /// this fraction of its ad clicks (default 0.1).
    pub max_ip_conversion_rate: f64,
    /// An ad-click session with no further non-ad event within this many seconds is an exit
    /// (default 60; humans dwell up to about a minute).
    pub exit_secs: u32,
    /// Watch exits per referrer (default true).
    pub referrer_rule: bool,
    /// Watch exits per device class (default false: a device class is shared by most of the
    /// audience, so fraud rarely dominates it, and the labels rarely name one).
    pub device_rule: bool,
    /// Counting bucket of the group rules, in seconds (default 60).
    pub bucket_secs: u32,
    /// Sliding window of the group rules, in buckets (default 10).
    pub group_window_buckets: u32,
    /// EWMA weight of the newest bucket in a group's baseline exit rate (default 0.02).
    pub group_baseline_alpha: f64,
    /// A group needs at least this many exits in the window (default 10) ...
    pub min_group_exits: u32,
    /// ... exits must be at least this share of its ad clicks in the window (default 0.5:
    /// human ad visitors go on browsing, so a normal ad referrer's exit share is a few
    /// percent, and a traffic outage that cuts sessions short does not reach it) ...
    pub min_group_exit_share: f64,
    /// ... its ad clicks in the window at least this fraction of their baseline (default 0.8:
    /// fraud adds ad clicks, while a traffic outage removes them and cuts the remaining
    /// sessions short, which would look like exits) ...
    pub min_group_ad_ratio: f64,
    /// ... at least this multiple of its baseline exits (default 3.0) ...
    pub group_exit_ratio: f64,
    /// ... and at least this many Poisson standard deviations above it (default 4.0).
    pub group_z_threshold: f64,
    /// After a group alert the group stays quiet this long, in seconds (default 3600).
    pub group_cooldown_secs: u32,
    /// Sequential test (CUSUM) of ad-click exits per network (/24, /48) and per referrer
    /// (default true).
    pub sequential_rule: bool,
    /// Its false-alarm probability per in-control run of one source (default 1e-5; the
    /// threshold is `ln(1/tail)`).
    pub sequential_tail: f64,
    /// The least excess of exits per minute over a source's null it tests for (default 0.2:
    /// one extra unconverted ad click every five minutes).
    pub sequential_min_rate_per_min: f64,
    /// Memory of the rates the null is made of, in seconds (default 1800).
    pub sequential_memory_secs: u32,
    /// IPs, pending sessions and groups idle this long (event time) are forgotten
    /// (default 1800).
    pub idle_timeout_secs: u32,
    /// At most this many IPs are tracked (default 100000).
    pub max_ips: u32,
    /// At most this many ad-click sessions wait for their exit verdict (default 100000).
    pub max_pending: u32,
    /// At most this many referrer/device groups are tracked (default 1000).
    pub max_groups: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            ip_window_secs: 600,
            min_ip_ad_clicks: 5,
            max_ip_conversion_rate: 0.1,
            exit_secs: 60,
            referrer_rule: true,
            device_rule: false,
            bucket_secs: 60,
            group_window_buckets: 10,
            group_baseline_alpha: 0.02,
            min_group_exits: 10,
            min_group_exit_share: 0.5,
            min_group_ad_ratio: 0.8,
            group_exit_ratio: 3.0,
            group_z_threshold: 4.0,
            group_cooldown_secs: 3_600,
            sequential_rule: true,
            sequential_tail: 1e-5,
            sequential_min_rate_per_min: 0.2,
            sequential_memory_secs: 1_800,
            idle_timeout_secs: 1_800,
            max_ips: 100_000,
            max_pending: 100_000,
            max_groups: 1_000,
        }
    }
}

impl Settings {
    /// Checks value ranges; the message names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("ip_window_secs", self.ip_window_secs),
            ("min_ip_ad_clicks", self.min_ip_ad_clicks),
            ("exit_secs", self.exit_secs),
            ("bucket_secs", self.bucket_secs),
            ("group_window_buckets", self.group_window_buckets),
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("sequential_memory_secs", self.sequential_memory_secs),
        ] {
            if v == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        if self.min_ip_ad_clicks > 10_000 {
            return Err(format!(
                "min_ip_ad_clicks must be at most 10000, got {}",
                self.min_ip_ad_clicks
            ));
        }
        if self.group_window_buckets > 1_440 {
            return Err(format!(
                "group_window_buckets must be at most 1440, got {}",
                self.group_window_buckets
            ));
        }
        if !(self.max_ip_conversion_rate.is_finite()
            && (0.0..=1.0).contains(&self.max_ip_conversion_rate))
        {
            return Err(format!(
                "max_ip_conversion_rate must be in [0, 1], got {}",
                self.max_ip_conversion_rate
            ));
        }
        if !(self.group_baseline_alpha.is_finite()
            && self.group_baseline_alpha > 0.0
            && self.group_baseline_alpha <= 1.0)
        {
            return Err(format!(
                "group_baseline_alpha must be in (0, 1], got {}",
                self.group_baseline_alpha
            ));
        }
        if !(self.min_group_exit_share.is_finite()
            && (0.0..=1.0).contains(&self.min_group_exit_share))
        {
            return Err(format!(
                "min_group_exit_share must be in [0, 1], got {}",
                self.min_group_exit_share
            ));
        }
        if !(self.min_group_ad_ratio.is_finite() && self.min_group_ad_ratio >= 0.0) {
            return Err(format!(
                "min_group_ad_ratio must be zero or more, got {}",
                self.min_group_ad_ratio
            ));
        }
        if !(self.group_exit_ratio.is_finite() && self.group_exit_ratio >= 1.0) {
            return Err(format!(
                "group_exit_ratio must be at least 1, got {}",
                self.group_exit_ratio
            ));
        }
        if !(self.sequential_tail.is_finite()
            && self.sequential_tail > 0.0
            && self.sequential_tail < 1.0)
        {
            return Err(format!(
                "sequential_tail must be in (0, 1), got {}",
                self.sequential_tail
            ));
        }
        if !(self.sequential_min_rate_per_min.is_finite() && self.sequential_min_rate_per_min > 0.0)
        {
            return Err(format!(
                "sequential_min_rate_per_min must be above zero, got {}",
                self.sequential_min_rate_per_min
            ));
        }
        if !(self.group_z_threshold.is_finite() && self.group_z_threshold >= 0.0) {
            return Err(format!(
                "group_z_threshold must be zero or more, got {}",
                self.group_z_threshold
            ));
        }
        Ok(())
    }
}
