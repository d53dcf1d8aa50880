//! Sequential evidence that a network (/24, /48) or one IP starts sessions much faster than an
//! ordinary one: a continuous-time Poisson CUSUM (Page 1954) on session starts.
//!
//! Under the null a source starts sessions as a Poisson process with rate `μ0`: the larger of
//! its own learned rate (learned only while the evidence against it is under an eighth of the
//! threshold, so a farm is not taught to it) and a prior, the instance's session-start rate spread over its active sources
//! of that kind plus one pseudo-session per memory (a never-seen network is, a priori, an
//! average one). The alternative adds `min_rate` sessions per minute
//! (`μ1 = max(μ0 + min_rate, 2·μ0)`). A session start adds `ln(μ1/μ0)`, `Δ` minutes without
//! one subtract `(μ1 − μ0)·Δ`, the statistic never goes below zero and signals at
//! `ln(1/tail)`. Each farm member's session is weak evidence alone; many of them from one
//! network add up in seconds, whatever each session's timing looks like.

use clickwatch_sdk::detect::EventRate;
use serde::{Deserialize, Serialize};

/// Memory of a source's own rate, minutes: long, so that its first sessions do not set a
/// high rate for it (one session in ten minutes would read as 0.1 a minute).
pub const OWN_MEMORY_MIN: f64 = 60.0;

/// IP digests remembered per run: enough to tell one address from a farm.
pub const MAX_RUN_IPS: usize = 16;

/// One source's test. About 120 bytes plus up to [`MAX_RUN_IPS`] × 4.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Crowd {
    pub statistic: f64,
    pub at_ms: i64,
    pub run_start_ms: i64,
    pub run_sessions: u32,
    /// Digests of the IPs behind the current run's sessions.
    pub run_ips: Vec<u32>,
    /// Its own session starts, learned outside runs.
    pub own: EventRate,
    /// All its session starts (for the instance's total).
    pub all: EventRate,
    pub last_seen: i64,
    pub alerted: bool,
}

/// The null and the threshold, for one kind of source at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Null {
    pub prior_per_min: f64,
    pub min_rate: f64,
    pub threshold: f64,
    pub tau_min: f64,
}

/// A source whose evidence crossed the threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Conviction {
    pub start_ms: i64,
    pub sessions: u32,
    pub ips: usize,
    pub statistic: f64,
    pub mu0: f64,
}

impl Crowd {
    fn mu(&self, t: i64, null: &Null) -> (f64, f64) {
        let mu0 = null
            .prior_per_min
            .max(self.own.per_min_from_silence(t, OWN_MEMORY_MIN))
            .max(1e-6);
        (mu0, (mu0 + null.min_rate).max(2.0 * mu0))
    }

    /// A session started from this source at `t` (from the IP with digest `ip`).
    pub fn session(&mut self, t: i64, ip: u32, null: &Null) -> Option<Conviction> {
        let (mu0, mu1) = self.mu(t, null);
        if t > self.at_ms {
            let dt = (t - self.at_ms) as f64 / 60_000.0;
            self.statistic = (self.statistic - (mu1 - mu0) * dt).max(0.0);
            self.at_ms = t;
        }
        self.last_seen = self.last_seen.max(t);
        self.all.add(t, null.tau_min);
        if self.statistic < null.threshold / 8.0 {
            // Little evidence standing: this start is ordinary traffic as far as we know (a
            // busy source's statistic is rarely exactly zero).
            self.own.add(t, OWN_MEMORY_MIN);
        }
        if self.statistic == 0.0 {
            self.run_start_ms = t;
            self.run_sessions = 0;
            self.run_ips.clear();
        }
        self.statistic += (mu1 / mu0).ln();
        self.run_sessions = self.run_sessions.saturating_add(1);
        if self.run_ips.len() < MAX_RUN_IPS && !self.run_ips.contains(&ip) {
            self.run_ips.push(ip);
        }
        if self.alerted || self.statistic < null.threshold {
            return None;
        }
        Some(Conviction {
            start_ms: self.run_start_ms,
            sessions: self.run_sessions,
            ips: self.run_ips.len(),
            statistic: self.statistic,
            mu0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn null() -> Null {
        Null {
            prior_per_min: 0.002,
            min_rate: 0.5,
            threshold: (1e6f64).ln(),
            tau_min: 10.0,
        }
    }

    #[test]
    fn a_session_now_and_then_is_ordinary_and_a_burst_is_not() {
        // A never-seen network starting sessions every ten seconds: a few prove it.
        let mut fresh = Crowd::default();
        let caught = (0..10).find_map(|i| fresh.session(i * 10_000, i as u32, &null()));
        assert!(
            caught.as_ref().is_some_and(|c| c.sessions <= 4),
            "{caught:?}"
        );
        // One that had a session every twenty minutes for hours: its own rate is higher than
        // the prior, so the same burst takes a little longer.
        let mut c = Crowd::default();
        for i in 0..50 {
            assert!(c.session(i * 20 * MIN, 1, &null()).is_none(), "{i}");
        }
        let t0 = 50 * 20 * MIN;
        let caught = (0..20).find_map(|i| c.session(t0 + i * 10_000, i as u32, &null()));
        let c = caught.expect("a burst of sessions was not caught");
        assert_eq!(c.start_ms, t0);
        assert!(c.sessions <= 12, "{c:?}");
    }

    #[test]
    fn a_source_is_judged_against_its_own_rate_once_learned() {
        // One session a minute where an average source starts one a minute too: ordinary,
        // and its own rate is learned.
        let busy = Null {
            prior_per_min: 1.0,
            ..null()
        };
        let mut c = Crowd::default();
        let gaps = [40_000, 80_000, 55_000, 65_000, 30_000, 90_000];
        let mut t = 0;
        for i in 0..300 {
            t += gaps[i % gaps.len()];
            assert!(c.session(t, 1, &busy).is_none(), "session {i}");
        }
        let own = c.own.per_min(t, OWN_MEMORY_MIN);
        assert!((0.7..1.3).contains(&own), "{own}");
        // Against a quiet instance, that learned rate keeps it ordinary.
        for i in 0..300 {
            t += gaps[i % gaps.len()];
            assert!(c.session(t, 1, &null()).is_none(), "session {i}");
        }
    }
}
