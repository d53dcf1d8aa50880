//! Settings of `bot-detector`, from `[plugins.settings.bot-detector]` in the host config.

use serde::Deserialize;

/// The rules, by the name used in alert kinds (`bot/<rule>`) and in `disabled_rules`.
pub const RULES: [&str; 7] = [
    "fast-clicker",
    "no-dwell",
    "regular-gaps",
    "page-breadth",
    "headless",
    "ip-farm",
    "network",
];

/// Settings. Unknown keys are refused; missing keys take the defaults listed on each field.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// `fast-clicker`: length of the sliding window in milliseconds (default 10 000).
    pub window_ms: i64,
    /// `fast-clicker`: events allowed within one window before the session is flagged
    /// (default 25).
    pub max_events: u32,
    /// `no-dwell` and `regular-gaps` judge the last this many gaps between a session's events
    /// (default 20).
    pub gap_sample: u32,
    /// ... once the session has at least this many gaps (default 10).
    pub min_gaps: u32,
    /// `no-dwell`: flagged when the median gap is below this, in ms (default 1000; humans
    /// dwell seconds to a minute, scripted clients fire every 50-300 ms).
    pub min_dwell_ms: i64,
    /// `regular-gaps`: flagged when the gaps' coefficient of variation (std / mean) is below
    /// this (default 0.2; human dwell times vary by about their own mean).
    pub max_gap_cv: f64,
    /// `page-breadth`: flagged after this many distinct pages in one session (default 40).
    pub max_distinct_pages: u32,
    /// `headless`: case-insensitive user-agent fragments that only automation sends.
    pub headless_markers: Vec<String>,
    /// `ip-farm`: sliding window for new sessions per IP, in seconds (default 600).
    pub ip_window_secs: i64,
    /// `ip-farm`: flagged when one IP starts more than this many sessions within the window
    /// (default 20).
    pub max_sessions_per_ip: u32,
    /// `ip-farm` and `network`: a sequential test (CUSUM) of session starts per IP and per
    /// network (/24, /48) also convicts a source that starts sessions faster than an ordinary
    /// one by this many per minute (default 0.5) ...
    pub crowd_min_rate_per_min: f64,
    /// ... with this false-alarm probability per in-control run of one source (default 1e-6;
    /// the threshold is `ln(1/tail)`).
    pub crowd_tail: f64,
    /// `network`: a network is alerted only when its evidence comes from at least this many
    /// IPs (default 3; fewer are judged as IPs).
    pub min_network_ips: u32,
    /// Rules to switch off, by name (default none).
    pub disabled_rules: Vec<String>,
    /// A session or IP unseen for this long (event time) is forgotten (default 600: humans
    /// dwell at most about a minute, and every rule looks at recent behaviour only; the
    /// timeout mostly sets how much state is kept).
    pub idle_timeout_secs: i64,
    /// At most this many sessions are tracked; further new sessions are ignored
    /// (default 200 000).
    pub max_sessions: u32,
    /// At most this many IPs are tracked (default 100 000).
    pub max_ips: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            window_ms: 10_000,
            max_events: 25,
            gap_sample: 20,
            min_gaps: 10,
            min_dwell_ms: 1_000,
            max_gap_cv: 0.2,
            max_distinct_pages: 40,
            headless_markers: [
                "headlesschrome",
                "phantomjs",
                "python-requests",
                "python-urllib",
                "scrapy",
                "curl/",
                "wget/",
                "go-http-client",
                "selenium",
                "puppeteer",
                "playwright",
                "spider",
                "crawler",
                "bot/",
            ]
            .map(str::to_owned)
            .to_vec(),
            ip_window_secs: 600,
            max_sessions_per_ip: 20,
            crowd_min_rate_per_min: 0.5,
            crowd_tail: 1e-6,
            min_network_ips: 3,
            disabled_rules: Vec::new(),
            idle_timeout_secs: 600,
            max_sessions: 200_000,
            max_ips: 100_000,
        }
    }
}

impl Settings {
    /// Checks value ranges; the message names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        if self.window_ms <= 0 {
            return Err(format!(
                "window_ms must be positive, got {}",
                self.window_ms
            ));
        }
        if !(2..=10_000).contains(&self.max_events) {
            return Err(format!(
                "max_events must be in 2..=10000, got {}",
                self.max_events
            ));
        }
        if !(2..=1_000).contains(&self.gap_sample) {
            return Err(format!(
                "gap_sample must be in 2..=1000, got {}",
                self.gap_sample
            ));
        }
        if self.min_gaps < 2 || self.min_gaps > self.gap_sample {
            return Err(format!(
                "min_gaps must be in 2..=gap_sample ({}), got {}",
                self.gap_sample, self.min_gaps
            ));
        }
        if !(self.max_gap_cv.is_finite() && self.max_gap_cv >= 0.0) {
            return Err(format!(
                "max_gap_cv must be zero or more, got {}",
                self.max_gap_cv
            ));
        }
        if !(2..=10_000).contains(&self.max_distinct_pages) {
            return Err(format!(
                "max_distinct_pages must be in 2..=10000, got {}",
                self.max_distinct_pages
            ));
        }
        if !(1..=10_000).contains(&self.max_sessions_per_ip) {
            return Err(format!(
                "max_sessions_per_ip must be in 1..=10000, got {}",
                self.max_sessions_per_ip
            ));
        }
        if self.ip_window_secs <= 0 || self.idle_timeout_secs <= 0 {
            return Err("ip_window_secs and idle_timeout_secs must be positive".into());
        }
        if !(self.crowd_min_rate_per_min.is_finite() && self.crowd_min_rate_per_min > 0.0) {
            return Err(format!(
                "crowd_min_rate_per_min must be above zero, got {}",
                self.crowd_min_rate_per_min
            ));
        }
        if !(self.crowd_tail.is_finite() && self.crowd_tail > 0.0 && self.crowd_tail < 1.0) {
            return Err(format!(
                "crowd_tail must be in (0, 1), got {}",
                self.crowd_tail
            ));
        }
        if self.min_network_ips < 2 {
            return Err(format!(
                "min_network_ips must be at least 2, got {}",
                self.min_network_ips
            ));
        }
        if self.headless_markers.iter().any(|m| m.is_empty()) {
            return Err("headless_markers must not contain an empty string".into());
        }
        for rule in &self.disabled_rules {
            if !RULES.contains(&rule.as_str()) {
                return Err(format!(
                    "disabled_rules: unknown rule `{rule}`, expected one of {}",
                    RULES.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Whether `rule` is on.
    pub fn enabled(&self, rule: &str) -> bool {
        !self.disabled_rules.iter().any(|r| r == rule)
    }
}
