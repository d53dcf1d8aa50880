//! One referrer or device class: its ad-click exits per bucket, a slow baseline of them, and
//! whether it is currently alerted.

use std::collections::VecDeque;

use clickwatch_sdk::buckets::MAX_OPEN;
use serde::{Deserialize, Serialize};

use crate::Settings;

/// State of one group. About 150 bytes plus its name and `group_window_buckets` × 8 bytes.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Group {
    /// Open buckets: (start, ad clicks, exits).
    pub open: Vec<(i64, u32, u32)>,
    /// Closed buckets in the window, oldest first: (ad clicks, exits).
    pub window: VecDeque<(u32, u32)>,
    /// Slow EWMA of exits per bucket.
    pub base: f64,
    /// Slow EWMA of ad clicks per bucket.
    #[serde(default)]
    pub base_ads: f64,
    pub learned: u32,
    pub quiet_until_ms: i64,
    pub last_seen_ms: i64,
}

/// A group whose exits stand out, as reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub ad_clicks: u64,
    pub exits: u64,
    pub expected: f64,
    pub z: f64,
}

impl Group {
    /// Counts an ad click (`exit == false`) or an exit in the bucket starting at `bucket`.
    pub fn count(&mut self, bucket: i64, time_ms: i64, exit: bool) {
        self.last_seen_ms = self.last_seen_ms.max(time_ms);
        // From the back: nearly every event is in the newest bucket.
        let slot = match self.open.iter().rposition(|(b, _, _)| *b == bucket) {
            Some(i) => i,
            None => {
                if self.open.len() >= MAX_OPEN {
                    self.open.sort_unstable();
                    self.open.remove(0);
                }
                self.open.push((bucket, 0, 0));
                self.open.len() - 1
            }
        };
        let (_, ads, exits) = &mut self.open[slot];
        if exit {
            *exits = exits.saturating_add(1);
        } else {
            *ads = ads.saturating_add(1);
        }
    }

    /// Closes the bucket starting at `bucket` and judges the window that ends with it.
    pub fn close(&mut self, bucket: i64, now_ms: i64, s: &Settings) -> Option<Finding> {
        let mut counts = (0, 0);
        self.open.retain(|&(b, a, e)| {
            if b == bucket {
                counts = (a, e);
            }
            b > bucket
        });
        self.window.push_back(counts);
        while self.window.len() > s.group_window_buckets as usize {
            self.window.pop_front();
        }
        let (ads, exits) = self.window.iter().fold((0u64, 0u64), |(a, e), (x, y)| {
            (a + u64::from(*x), e + u64::from(*y))
        });
        let expected = self.base * self.window.len() as f64;
        let z = (exits as f64 - expected) / expected.max(1.0).sqrt();
        // No warm-up: a new group's baseline is zero exits, so a referrer that appears out of
        // nowhere with mostly exits is judged at once; the share condition keeps ordinary new
        // groups (and the start-up of the detector) quiet.
        // Fraud adds ad clicks; an outage removes them and cuts the survivors' sessions
        // short, which looks like exits. Only a group with its usual ad clicks or more counts.
        let ads_expected = self.base_ads * self.window.len() as f64;
        let anomalous = ads as f64 >= s.min_group_ad_ratio * ads_expected
            && exits >= u64::from(s.min_group_exits)
            && exits as f64 >= s.min_group_exit_share * ads.max(exits) as f64
            && exits as f64 >= s.group_exit_ratio * expected
            && z >= s.group_z_threshold;
        if !anomalous {
            // Only normal windows teach the baseline: fraud must not become the norm.
            let (a, x) = (f64::from(counts.0), f64::from(counts.1));
            if self.learned == 0 {
                self.base = x;
                self.base_ads = a;
            } else {
                self.base += s.group_baseline_alpha * (x - self.base);
                self.base_ads += s.group_baseline_alpha * (a - self.base_ads);
            }
            self.learned = self.learned.saturating_add(1);
            return None;
        }
        if now_ms < self.quiet_until_ms {
            return None;
        }
        self.quiet_until_ms = now_ms.saturating_add(i64::from(s.group_cooldown_secs) * 1000);
        Some(Finding {
            ad_clicks: ads,
            exits,
            expected,
            z,
        })
    }
}
