//! The traffic guard: conversion is judged only while the site's own event rate is near
//! its recent median.

use serde::{Deserialize, Serialize};

use crate::Settings;

/// The site's events per bucket against their recent median: conversion is only judged while
/// the site's traffic itself is near its normal. An outage (a broken tracker loses events at
/// random: a session's one cart event is lost more often than one of its many product views)
/// and a surge (visitors of another mix) both move conversion for reasons that are not the
/// funnel's, and both are `traffic-anomaly`'s to report.
///
/// The reference is the median of the last [`GUARD_HISTORY`] closed buckets: it follows the
/// daily shape within half that span, an outage or a surge shorter than half of it cannot
/// move it, and a lasting change of level is the new normal after half of it. An EWMA
/// winsorised to the guard's band (the earlier reference) could lag a steep morning, or a
/// first bucket that was partial, for hours, and the guard stayed shut.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct Traffic {
    /// Open buckets: (start, events).
    open: Vec<(i64, u32)>,
    /// Closed buckets in the window, oldest first.
    window: std::collections::VecDeque<u32>,
    /// The last [`GUARD_HISTORY`] closed buckets, oldest first (absent in earlier snapshots).
    #[serde(default)]
    history: std::collections::VecDeque<u32>,
}

/// Closed buckets whose median is the traffic guard's reference (an hour of 60 s buckets).
const GUARD_HISTORY: usize = 60;

/// Robust standard deviations a bucket may stray from the median inside the guard: at 4, an
/// ordinary bucket of any distribution with a MAD leaves it far less than once an hour.
const GUARD_Z: f64 = 4.0;

/// Median of `history` and its robust noise scale: `1.4826 × median |x(t) − x(t−1)| / √2`
/// (the MAD of successive differences, so a change of level within the hour, such as the end
/// of a surge, is not read as noise), at least Poisson's `√median`.
fn robust_level(history: &std::collections::VecDeque<u32>) -> (f64, f64) {
    let mut sorted: Vec<f64> = history.iter().map(|&x| f64::from(x)).collect();
    if sorted.is_empty() {
        return (0.0, 0.0);
    }
    sorted.sort_unstable_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let mut steps: Vec<f64> = history
        .iter()
        .zip(history.iter().skip(1))
        .map(|(a, b)| (f64::from(*b) - f64::from(*a)).abs())
        .collect();
    let noise = if steps.is_empty() {
        0.0
    } else {
        steps.sort_unstable_by(f64::total_cmp);
        1.4826 * steps[steps.len() / 2] / std::f64::consts::SQRT_2
    };
    (median, noise.max(median.sqrt()))
}

impl Traffic {
    pub(crate) fn count(&mut self, bucket: i64) {
        match self.open.iter_mut().rev().find(|(b, _)| *b == bucket) {
            Some((_, n)) => *n = n.saturating_add(1),
            None => {
                if self.open.len() >= clickwatch_sdk::buckets::MAX_OPEN {
                    self.open.sort_unstable();
                    self.open.remove(0);
                }
                self.open.push((bucket, 1));
            }
        }
    }

    /// The buckets it has counts in.
    pub(crate) fn open_buckets(&self) -> impl Iterator<Item = i64> + '_ {
        self.open.iter().map(|(b, _)| *b)
    }

    /// Closes a bucket and says whether conversion may be judged in it.
    pub(crate) fn close(&mut self, bucket: i64, s: &Settings) -> bool {
        let mut n = 0;
        self.open.retain(|&(b, c)| {
            if b == bucket {
                n = c;
            }
            b > bucket
        });
        self.window.push_back(n);
        while self.window.len() > s.window_buckets as usize {
            self.window.pop_front();
        }
        // The reference before this bucket: the median of the history, and its spread.
        let warm = self.history.len() >= (s.warmup_buckets as usize).min(GUARD_HISTORY);
        let (base, sigma) = robust_level(&self.history);
        self.history.push_back(n);
        while self.history.len() > GUARD_HISTORY {
            self.history.pop_front();
        }
        // Every bucket of the window must be near normal: the window judged now includes
        // them all, and the first bucket of an outage already skews its conversions. "Near"
        // is the ratio band, widened to the series' own noise: events come in sessions, so
        // a quiet site's buckets scatter far more than Poisson counts would, and a bucket
        // at 0.45 of the median is ordinary there (a fixed band shut the guard for most of
        // a checkout break in such a world).
        let ratio = s.min_traffic_ratio.clamp(1e-3, 1.0);
        let spread = GUARD_Z * sigma;
        !warm
            || self.window.iter().all(|&x| {
                let x = f64::from(x);
                (x >= ratio * base || x >= base - spread)
                    && (x * ratio <= base || x <= base + spread)
            })
    }
}
