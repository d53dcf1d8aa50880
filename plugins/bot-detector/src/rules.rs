//! Per-session and per-IP evidence and the rules that judge it. Each rule returns its name and
//! a score and one line of evidence when it fires; the plugin turns that into an alert.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::settings::Settings;

/// Evidence about one session: bounded by the settings (at most `max_events + 1` times,
/// `gap_sample` gaps and `max_distinct_pages` page hashes), about 100 bytes plus 8 bytes per
/// kept time or gap, 4 per page, and the session id; a typical human session holds under
/// 300 bytes. An alerted session drops its evidence and keeps only its verdict.
///
/// Empty fields are left out of snapshots: the snapshot must serialise within the host's
/// per-call deadline, and most of its bulk is here.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct SessionState {
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pub recent: VecDeque<i64>,
    pub last_seen: i64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub alerted: bool,
    /// Gaps between consecutive events in arrival order, newest last.
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pub gaps: VecDeque<i64>,
    /// Short hashes of the distinct urls seen (collisions at 40 pages are negligible).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pages: Vec<u32>,
    #[serde(default)]
    pub events: u64,
}

/// Evidence about one IP: the sessions it started recently (session-id hashes with the time
/// they were first seen), at most `max_sessions_per_ip + 1`; about 100 bytes plus 16 bytes per
/// kept session and the address.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct IpState {
    pub sessions: VecDeque<(i64, u32)>,
    pub last_seen: i64,
    pub alerted: bool,
}

/// A rule that fired.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub rule: &'static str,
    pub window_start_ms: i64,
    pub score: f64,
    pub message: String,
}

/// FNV-1a: a stable hash (unlike std's, it is the same in every build), so snapshots stay
/// valid across versions.
pub fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A 32-bit digest of `s`, for sets where a rare collision only undercounts by one.
pub fn short_hash(s: &str) -> u32 {
    let h = fnv1a(s);
    (h >> 32) as u32 ^ h as u32
}

/// Whether `user_agent` contains one of the (lower-case) markers.
pub fn headless_marker<'m>(user_agent: &str, markers: &'m [String]) -> Option<&'m str> {
    let ua = user_agent.to_ascii_lowercase();
    markers
        .iter()
        .find(|m| ua.contains(m.as_str()))
        .map(String::as_str)
}

impl SessionState {
    /// Folds in one event of the session at `t` on `url`.
    pub fn observe(&mut self, t: i64, url: &str, s: &Settings) {
        if self.alerted {
            // A convicted session keeps only its verdict and when it was last seen (for
            // eviction); gathering evidence again would cost memory for nothing.
            self.events = self.events.saturating_add(1);
            self.last_seen = self.last_seen.max(t);
            return;
        }
        if self.events > 0 {
            let previous = self.recent.back().copied().unwrap_or(t);
            self.gaps.push_back((t - previous).max(0));
            while self.gaps.len() > s.gap_sample as usize {
                self.gaps.pop_front();
            }
        }
        self.events = self.events.saturating_add(1);
        self.last_seen = self.last_seen.max(t);
        self.recent.push_back(t);
        while self.recent.len() > s.max_events as usize + 1 {
            self.recent.pop_front();
        }
        if self.pages.len() < s.max_distinct_pages as usize {
            let h = short_hash(url);
            if !self.pages.contains(&h) {
                self.pages.push(h);
            }
        }
    }

    /// Drops the evidence of a convicted session: it is never judged again until evicted.
    pub fn convict(&mut self) {
        self.alerted = true;
        self.recent = VecDeque::new();
        self.gaps = VecDeque::new();
        self.pages = Vec::new();
    }

    /// The first rule that convicts the session after an event at `t`, if any.
    pub fn judge(&self, t: i64, s: &Settings) -> Option<Verdict> {
        let first = self.recent.front().copied().unwrap_or(t);
        if s.enabled("fast-clicker") && self.recent.len() > s.max_events as usize {
            let span = t - first;
            if span < s.window_ms {
                let rate = self.recent.len() as f64 * 1000.0 / span.max(1) as f64;
                return Some(Verdict {
                    rule: "fast-clicker",
                    window_start_ms: first,
                    score: rate,
                    message: format!("{} events in {span} ms ({rate:.1}/s)", self.recent.len()),
                });
            }
        }
        if self.gaps.len() >= s.min_gaps as usize {
            let since = t - self.gaps.iter().sum::<i64>();
            let mut sorted: Vec<i64> = self.gaps.iter().copied().collect();
            sorted.sort_unstable();
            let median = sorted[sorted.len() / 2];
            if s.enabled("no-dwell") && median < s.min_dwell_ms {
                return Some(Verdict {
                    rule: "no-dwell",
                    window_start_ms: since,
                    score: s.min_dwell_ms as f64 / median.max(1) as f64,
                    message: format!(
                        "median gap {median} ms over {} gaps: no time to read a page",
                        sorted.len()
                    ),
                });
            }
            let n = sorted.len() as f64;
            let mean = sorted.iter().sum::<i64>() as f64 / n;
            let var = sorted
                .iter()
                .map(|&g| (g as f64 - mean).powi(2))
                .sum::<f64>()
                / n;
            let cv = if mean > 0.0 { var.sqrt() / mean } else { 0.0 };
            if s.enabled("regular-gaps") && cv < s.max_gap_cv {
                return Some(Verdict {
                    rule: "regular-gaps",
                    window_start_ms: since,
                    score: 1.0 / cv.max(0.001),
                    message: format!(
                        "gaps of {mean:.0} ms ± {:.0} ms (cv {cv:.2}) over {} gaps: clockwork",
                        var.sqrt(),
                        sorted.len()
                    ),
                });
            }
        }
        if s.enabled("page-breadth") && self.pages.len() >= s.max_distinct_pages as usize {
            return Some(Verdict {
                rule: "page-breadth",
                window_start_ms: first,
                score: self.pages.len() as f64,
                message: format!(
                    "{} distinct pages in one session ({} events)",
                    self.pages.len(),
                    self.events
                ),
            });
        }
        None
    }
}

impl IpState {
    /// Records that `session` (new to the detector) started from this IP at `t`, and returns
    /// the verdict when the IP now starts too many sessions.
    pub fn new_session(&mut self, t: i64, session: &str, s: &Settings) -> Option<Verdict> {
        self.last_seen = self.last_seen.max(t);
        self.sessions.push_back((t, short_hash(session)));
        let horizon = self
            .last_seen
            .saturating_sub(s.ip_window_secs.saturating_mul(1000));
        self.sessions.retain(|&(at, _)| at > horizon);
        while self.sessions.len() > s.max_sessions_per_ip as usize + 1 {
            self.sessions.pop_front();
        }
        if self.alerted || self.sessions.len() <= s.max_sessions_per_ip as usize {
            return None;
        }
        let first = self.sessions.iter().map(|&(at, _)| at).min().unwrap_or(t);
        Some(Verdict {
            rule: "ip-farm",
            window_start_ms: first,
            score: self.sessions.len() as f64,
            message: format!(
                "more than {} sessions from one IP within {} s",
                s.max_sessions_per_ip, s.ip_window_secs
            ),
        })
    }
}
