//! Telling a demand surge from other spikes: the site's conversion share (`add_to_cart`,
//! `checkout` and `purchase` events among all events) during a site-wide spike, against its
//! baseline. Visitors who want to buy convert as usual or better; scrapers, bots, floods and
//! broken pages that reload themselves add events that do not convert. The test is the SDK's
//! one-sided likelihood-ratio test of a fall in a proportion
//! (`clickwatch_sdk::detect::proportion::drop_tail`), so the volume behind both shares counts:
//! only a *significant* fall of the share to half its baseline or less makes a spike more than
//! a surge.

use clickwatch_sdk::detect::proportion::drop_tail;
use serde::{Deserialize, Serialize};

// Open buckets kept at most: as for the series.
use crate::series::MAX_OPEN;

/// Weight of the newest bucket in the baseline share.
const ALPHA: f64 = 0.02;
/// A spike is not demand only if its conversion share is at most this fraction of the
/// baseline's (and the fall is significant).
const MAX_SHARE_RATIO: f64 = 0.5;

/// Buckets the baseline must have learned before it can vouch for a surge.
const WARMUP: u32 = 15;

/// The site's conversions per bucket and their baseline share.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Conversion {
    /// Conversions of buckets not yet closed: (bucket start, count).
    open: Vec<(i64, u32)>,
    /// EWMAs of events and conversions per bucket, learned outside site episodes.
    base_events: f64,
    base_conversions: f64,
    learned: u32,
    /// Sums over the site's current episode.
    episode_events: f64,
    episode_conversions: f64,
}

/// One closed bucket's counts.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub events: f64,
    pub conversions: f64,
}

/// Whether a site spike is a demand surge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    pub surge: bool,
    /// The episode's conversion share over the baseline's.
    pub ratio: f64,
    /// Tail probability of a fall of the share at least this large.
    pub tail: f64,
}

impl Conversion {
    /// Counts one conversion in the bucket starting at `bucket`.
    pub fn count(&mut self, bucket: i64) {
        match self.open.iter_mut().rev().find(|(b, _)| *b == bucket) {
            Some((_, n)) => *n = n.saturating_add(1),
            None => {
                if self.open.len() >= MAX_OPEN {
                    self.open.sort_unstable();
                    self.open.remove(0);
                }
                self.open.push((bucket, 1));
            }
        }
    }

    /// Removes the conversions of the bucket starting at `bucket` (events are filled in by the
    /// caller from the site series).
    pub fn take(&mut self, bucket: i64) -> Counts {
        let mut n = 0;
        self.open.retain(|&(b, c)| {
            if b == bucket {
                n = c;
            }
            b > bucket
        });
        Counts {
            events: 0.0,
            conversions: f64::from(n),
        }
    }

    /// Folds a closed bucket in: into the episode's sums while the site is in an episode,
    /// into the baseline otherwise.
    pub fn close(&mut self, c: Counts, in_episode: bool) {
        if in_episode {
            self.episode_events += c.events;
            self.episode_conversions += c.conversions;
            return;
        }
        self.episode_events = 0.0;
        self.episode_conversions = 0.0;
        let a = ALPHA.max(1.0 / (f64::from(self.learned) + 1.0));
        self.base_events += a * (c.events - self.base_events);
        self.base_conversions += a * (c.conversions - self.base_conversions);
        self.learned = self.learned.saturating_add(1);
    }

    /// Judges the current episode: a surge unless its conversion share fell with a tail
    /// probability at most `tail` (and the baseline has been learned).
    pub fn surge(&self, tail: f64) -> Verdict {
        // The baseline stands for about 1/ALPHA buckets of traffic.
        let weight = 1.0 / ALPHA;
        let (x0, n0) = (self.base_conversions * weight, self.base_events * weight);
        let (x1, n1) = (self.episode_conversions, self.episode_events);
        let p = drop_tail(x1, n1, x0, n0);
        let share = |x: f64, n: f64| if n > 0.0 { x / n } else { 0.0 };
        let base = share(x0, n0);
        let ratio = if base > 0.0 {
            share(x1, n1) / base
        } else {
            1.0
        };
        // Not demand only when the share fell significantly *and* by half or more: extra
        // events at the site's spike ratio (2.2x) that do not convert take it below half,
        // while the conversions of real visitors trail their arrival by a session's length,
        // which dips the share for the first buckets of a surge but not that far.
        let not_demand = p <= tail && ratio <= MAX_SHARE_RATIO;
        Verdict {
            surge: self.learned >= WARMUP && x0 > 0.0 && !not_demand,
            ratio,
            tail: p,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learn(c: &mut Conversion, buckets: u32, events: f64, conversions: f64) {
        for _ in 0..buckets {
            c.close(
                Counts {
                    events,
                    conversions,
                },
                false,
            );
        }
    }

    #[test]
    fn more_visitors_converting_as_usual_is_a_surge_and_more_events_without_is_not() {
        let mut c = Conversion::default();
        learn(&mut c, 60, 1000.0, 50.0);
        for _ in 0..3 {
            c.close(
                Counts {
                    events: 3000.0,
                    conversions: 150.0,
                },
                true,
            );
        }
        assert!(c.surge(1e-3).surge);
        let mut c = Conversion::default();
        learn(&mut c, 60, 1000.0, 50.0);
        for _ in 0..3 {
            c.close(
                Counts {
                    events: 3000.0,
                    conversions: 55.0,
                },
                true,
            );
        }
        let v = c.surge(1e-3);
        assert!(!v.surge, "{v:?}");
        assert!(v.ratio < 0.5);
    }

    #[test]
    fn an_unlearned_baseline_vouches_for_nothing() {
        let mut c = Conversion::default();
        learn(&mut c, 3, 1000.0, 50.0);
        c.close(
            Counts {
                events: 3000.0,
                conversions: 150.0,
            },
            true,
        );
        assert!(!c.surge(1e-3).surge);
    }
}
