//! Sequential evidence per network (/24 or /48): a continuous-time Poisson CUSUM (Page 1954)
//! on unconverted ad clicks, so many IPs that each click too rarely for the per-IP rule add up
//! to proof within a few clicks.
//!
//! Under the null a network's *exits* (ad-click sessions without a further page within the
//! exit window) arrive as a Poisson process with rate `μ0`; the alternative adds at least
//! `min_rate` a minute (`μ1 = max(μ0 + min_rate, 2·μ0)`). An exit adds `ln(μ1/μ0)`, `Δ`
//! minutes without one subtract `(μ1 − μ0)·Δ`; the statistic never goes below zero and
//! signals at `ln(1/tail)` (Wald's bound: the false-alarm probability per in-control run is at
//! most `tail`).
//!
//! `μ0` is what an ordinary network would show:
//! - the site's exit rate spread over the active networks (a never-seen /24 is, a priori, an
//!   average one), with one pseudo-exit per memory so a site without exits does not make a
//!   network's first one infinitely unlikely, and
//! - what the network's own continued ad sessions predict (`p/(1 − p)` exits per continued
//!   session, `p` the site's long-run exit share), so a network carrying many human ad
//!   visitors (a carrier NAT) is judged against its own volume;
//! - both scaled by the site's current exit share over its long-run one.

use clickwatch_sdk::detect::EventRate as Rate;
use serde::{Deserialize, Serialize};

pub use clickwatch_sdk::net::network;

/// One network's test.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Source {
    /// The CUSUM statistic as of `at_ms`.
    pub statistic: f64,
    pub at_ms: i64,
    /// First exit of the current run (the alert's window start).
    pub run_start_ms: i64,
    /// Exits in the current run.
    pub run_exits: u32,
    /// Distinct IPs behind the current run's exits (at most [`MAX_RUN_IPS`]).
    pub run_ips: Vec<String>,
    /// The network's continued (non-exit) ad sessions.
    pub continued: Rate,
    /// Its exits and settled ad sessions, for the leave-one-out site figures of the null.
    pub exits: Rate,
    pub exits_fast: Rate,
    pub settled_fast: Rate,
    pub last_seen_ms: i64,
    /// No new alert before this time.
    pub quiet_until_ms: i64,
}

/// Time constant of the "current" exit share, minutes.
pub const FAST_MIN: f64 = 5.0;

/// IPs remembered per run: enough to tell one IP from many.
pub const MAX_RUN_IPS: usize = 8;

/// The null and the test's constants, shared by every network at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Null {
    /// Prior exit rate of an average network, per minute.
    pub prior_per_min: f64,
    /// Expected exits per continued session (`p/(1 − p)`).
    pub exits_per_continued: f64,
    /// Current over long-run exit share of the site (≥ 1).
    pub scale: f64,
    /// Least excess rate tested for, exits per minute.
    pub min_rate: f64,
    /// `ln(1/tail)`.
    pub threshold: f64,
    /// Time constant of the rates, minutes.
    pub tau_min: f64,
}

/// A network whose evidence crossed the threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Conviction {
    pub statistic: f64,
    pub start_ms: i64,
    pub exits: u32,
    pub ips: Vec<String>,
    pub mu0: f64,
}

impl Source {
    fn mu(&self, t: i64, null: &Null) -> (f64, f64) {
        let own = null.exits_per_continued * self.continued.per_min(t, null.tau_min);
        let mu0 = (null.prior_per_min.max(own) * null.scale).max(1e-6);
        let mu1 = (mu0 + null.min_rate).max(2.0 * mu0);
        (mu0, mu1)
    }

    /// Advances the statistic to `t` (no exit in between).
    fn advance(&mut self, t: i64, null: &Null) {
        if t <= self.at_ms {
            return;
        }
        let (mu0, mu1) = self.mu(t, null);
        let dt = (t - self.at_ms) as f64 / 60_000.0;
        self.statistic = (self.statistic - (mu1 - mu0) * dt).max(0.0);
        self.at_ms = t;
        self.reset_if_idle();
    }

    fn reset_if_idle(&mut self) {
        if self.statistic == 0.0 {
            self.run_exits = 0;
            self.run_ips.clear();
        }
    }

    /// A continued ad session of this network at `t`.
    pub fn continued(&mut self, t: i64, null: &Null) {
        self.advance(t, null);
        self.continued.add(t, null.tau_min);
        self.settled_fast.add(t, FAST_MIN);
        self.last_seen_ms = self.last_seen_ms.max(t);
    }

    /// An exit of this network's ad session from `ip`, settled at `t`, counted as evidence
    /// unless `evidence` is false (then it only feeds the rates). A conviction when the
    /// evidence crosses the threshold (the statistic then restarts from zero).
    pub fn exited(
        &mut self,
        t: i64,
        ip: Option<&str>,
        null: &Null,
        evidence: bool,
    ) -> Option<Conviction> {
        self.advance(t, null);
        self.exits.add(t, null.tau_min);
        self.exits_fast.add(t, FAST_MIN);
        self.settled_fast.add(t, FAST_MIN);
        self.last_seen_ms = self.last_seen_ms.max(t);
        if !evidence {
            return None;
        }
        let (mu0, mu1) = self.mu(t, null);
        if self.statistic == 0.0 {
            self.run_start_ms = t;
        }
        self.statistic += (mu1 / mu0).ln();
        self.run_exits = self.run_exits.saturating_add(1);
        if let Some(ip) = ip
            && self.run_ips.len() < MAX_RUN_IPS
            && !self.run_ips.iter().any(|x| x == ip)
        {
            self.run_ips.push(ip.to_owned());
        }
        if self.statistic < null.threshold || t < self.quiet_until_ms {
            return None;
        }
        let conviction = Conviction {
            statistic: self.statistic,
            start_ms: self.run_start_ms,
            exits: self.run_exits,
            ips: std::mem::take(&mut self.run_ips),
            mu0,
        };
        self.statistic = 0.0;
        self.run_exits = 0;
        Some(conviction)
    }

    /// Whether the network can be forgotten: idle since before `horizon`.
    pub fn idle(&self, horizon: i64) -> bool {
        self.last_seen_ms < horizon
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn null() -> Null {
        Null {
            prior_per_min: 0.001,
            exits_per_continued: 0.05,
            scale: 1.0,
            min_rate: 0.2,
            threshold: (1e5f64).ln(),
            tau_min: 30.0,
        }
    }

    #[test]
    fn a_few_exits_convict_a_quiet_network_and_sparse_ones_do_not() {
        let mut s = Source::default();
        // One exit an hour: evidence decays between them.
        for i in 0..20 {
            assert!(
                s.exited(i * 60 * MIN, Some("a"), &null(), true).is_none(),
                "{i}"
            );
        }
        let t0 = 30 * 60 * MIN;
        let mut caught = None;
        for i in 0..10 {
            let ip = format!("ip{i}");
            if let Some(c) = s.exited(t0 + i * MIN, Some(&ip), &null(), true) {
                caught = Some((i, c));
                break;
            }
        }
        let (i, c) = caught.expect("never convicted");
        assert!(i <= 2, "took {i} exits");
        assert_eq!(c.start_ms, t0);
        assert!(c.ips.len() >= 2);
    }

    #[test]
    fn a_busy_network_is_judged_against_its_own_volume() {
        let mut s = Source::default();
        let n = null();
        // 20 continued ad sessions a minute and an exit a minute (5 %): ordinary.
        for m in 0..120 {
            for k in 0..20 {
                s.continued(m * MIN + k * 3_000, &n);
            }
            let r = s.exited(m * MIN + 30_000, Some("x"), &n, true);
            assert!(r.is_none(), "minute {m}");
        }
    }
}
