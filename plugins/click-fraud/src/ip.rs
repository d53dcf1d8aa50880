//! The per-IP rule: an IP's ad clicks against its conversions within `ip_window_secs`,
//! judged in event-time order once the watermark has passed each ad click.
//!
//! An IP's sessions live on different input partitions, so its events arrive interleaved in
//! an order that depends on read speed, restarts and rebalances. Judging each ad click as it
//! arrives made the convicting click (and the alert's time, span and details) depend on that
//! order; judging it once the watermark is past it sees every event of the IP up to then,
//! whatever the order. The cost is latency: an alert comes when the watermark passes the
//! convicting click, about `allowed_lateness_ms` after it.

use std::collections::VecDeque;

use clickwatch_sdk::prelude::*;
use serde::{Deserialize, Serialize};

use crate::Settings;

/// Times kept per IP and list at most (far more than any rule needs: an IP with this many ad
/// clicks in its window is convicted long before).
const MAX_TIMES: usize = 256;

/// Per-IP evidence.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct IpState {
    /// Ad click times, ascending.
    ad_clicks: VecDeque<i64>,
    /// Conversion times, ascending.
    conversions: VecDeque<i64>,
    pub last_seen_ms: i64,
    alerted: bool,
    /// Ad clicks not judged yet (absent in snapshots before they were judged at the
    /// watermark).
    #[serde(default)]
    unjudged: Vec<AdClick>,
}

/// An ad click waiting for the watermark, with what an alert on it reports.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct AdClick {
    time_ms: i64,
    referrer: Option<String>,
    device: Option<String>,
    user_agent: Option<String>,
}

/// Inserts `t` in order, dropping the oldest past [`MAX_TIMES`].
fn insert(times: &mut VecDeque<i64>, t: i64) {
    let at = times.partition_point(|&x| x <= t);
    times.insert(at, t);
    if times.len() > MAX_TIMES {
        times.pop_front();
    }
}

/// Times in `(from, to]`.
fn count(times: &VecDeque<i64>, from: i64, to: i64) -> usize {
    times.partition_point(|&x| x <= to) - times.partition_point(|&x| x <= from)
}

impl IpState {
    /// Records an ad click or a conversion of this IP.
    pub fn record(&mut self, click: &Click<'_>) {
        let t = click.time_ms();
        self.last_seen_ms = self.last_seen_ms.max(t);
        if self.alerted {
            // Convicted until evicted: nothing more to judge, nothing to keep.
            return;
        }
        if click.kind() != EventKind::AdClick {
            insert(&mut self.conversions, t);
            return;
        }
        insert(&mut self.ad_clicks, t);
        if self.unjudged.len() < MAX_TIMES {
            self.unjudged.push(AdClick {
                time_ms: t,
                referrer: click.referrer().map(str::to_owned),
                device: click.device().map(str::to_owned),
                user_agent: click.user_agent().map(str::to_owned),
            });
        }
    }

    /// Whether ad clicks wait for the watermark.
    pub fn has_unjudged(&self) -> bool {
        !self.unjudged.is_empty()
    }

    /// Puts the time lists in order (snapshots before they were kept sorted hold them in
    /// arrival order).
    pub fn normalize(&mut self) {
        self.ad_clicks.make_contiguous().sort_unstable();
        self.conversions.make_contiguous().sort_unstable();
    }

    /// Judges, in time order, the ad clicks the watermark has passed; returns the alert when
    /// one convicts the IP (once, until it is evicted). Each ad click sees the IP's events of
    /// the `ip_window_secs` up to and including its own time.
    pub fn judge(&mut self, ip: &str, watermark_ms: i64, s: &Settings) -> Option<Alert> {
        self.unjudged.sort_unstable();
        let due = self.unjudged.partition_point(|a| a.time_ms < watermark_ms);
        let window = i64::from(s.ip_window_secs) * 1000;
        let mut alert = None;
        for a in self.unjudged.drain(..due) {
            if self.alerted {
                break;
            }
            let t = a.time_ms;
            let from = t.saturating_sub(window);
            let ads = count(&self.ad_clicks, from, t);
            let conversions = count(&self.conversions, from, t);
            if ads < s.min_ip_ad_clicks as usize
                || conversions as f64 > s.max_ip_conversion_rate * ads as f64
            {
                continue;
            }
            self.alerted = true;
            let first = self
                .ad_clicks
                .iter()
                .copied()
                .find(|&x| x > from)
                .unwrap_or(t);
            let minutes = ((t - first) as f64 / 60_000.0).max(1.0 / 60.0);
            alert = Some(
                Alert::new("click-fraud/ip", "ip", ip)
                    .severity(Severity::Critical)
                    .window(first, t)
                    .score(ads as f64 / minutes)
                    .message(format!(
                        "{ads} ad clicks in {:.1} min from {ip} with {conversions} conversions",
                        (t - first) as f64 / 60_000.0
                    ))
                    .details(serde_json::json!({
                        "ad_clicks": ads,
                        "conversions": conversions,
                        "span_ms": t - first,
                        "referrer": a.referrer,
                        "device": a.device,
                        "user_agent": a.user_agent,
                    })),
            );
        }
        if self.alerted {
            self.unjudged.clear();
            self.ad_clicks.clear();
            self.conversions.clear();
        }
        // What no ad click still to be judged can look back to.
        let keep = self
            .unjudged
            .first()
            .map_or(watermark_ms, |a| a.time_ms.min(watermark_ms))
            .saturating_sub(window);
        while self.ad_clicks.front().is_some_and(|&x| x <= keep) {
            self.ad_clicks.pop_front();
        }
        while self.conversions.front().is_some_and(|&x| x <= keep) {
            self.conversions.pop_front();
        }
        alert
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clickwatch_sdk::testing::TestClick;

    #[test]
    fn times_are_counted_in_half_open_windows() {
        let times: VecDeque<i64> = [1, 2, 2, 5, 9].into_iter().collect();
        assert_eq!(count(&times, 1, 5), 3);
        assert_eq!(count(&times, 0, 9), 5);
        assert_eq!(count(&times, 9, 20), 0);
    }

    #[test]
    fn an_ip_keeps_its_window_and_a_convicted_one_nothing() {
        let s = Settings::default();
        let clicks: Vec<TestClick> = (0..400)
            .map(|i| {
                let kind = if i < 200 {
                    EventKind::AddToCart
                } else {
                    EventKind::AdClick
                };
                TestClick::new(kind, 10_000 * i, &format!("s{i}"), "/").ip("192.0.2.9")
            })
            .collect();
        let data = clickwatch_sdk::testing::BatchBuilder::from_clicks(&clicks);
        let batch = data.view().expect("batch");
        let mut st = IpState::default();
        let mut alerts = 0;
        for (i, click) in batch.iter().enumerate() {
            st.record(&click);
            alerts += usize::from(st.judge("192.0.2.9", 10_000 * i as i64 + 1, &s).is_some());
            // Ten minutes at one event per 10 s, and the newest.
            assert!(st.conversions.len() + st.ad_clicks.len() <= 61, "at {i}");
        }
        assert_eq!(alerts, 1, "convicted once its conversions left the window");
        assert!(st.ad_clicks.is_empty() && st.conversions.is_empty() && !st.has_unjudged());
    }

    #[test]
    fn the_verdict_does_not_depend_on_the_arrival_order() {
        let s = Settings::default();
        let clicks: Vec<TestClick> = (0..6)
            .map(|i| {
                TestClick::new(EventKind::AdClick, 1_000 * i, &format!("s{i}"), "/")
                    .ip("198.51.100.4")
            })
            .collect();
        let verdict = |order: &[usize]| {
            let mut st = IpState::default();
            let data = clickwatch_sdk::testing::BatchBuilder::from_clicks(&clicks);
            let batch = data.view().expect("batch");
            for &i in order {
                st.record(&batch.get(i).expect("click"));
            }
            st.judge("198.51.100.4", 60_000, &s)
                .map(|a| (a.time_ms, a.window_start_ms, a.message))
        };
        let forward = verdict(&[0, 1, 2, 3, 4, 5]);
        assert_eq!(forward, verdict(&[5, 3, 1, 4, 0, 2]));
        assert_eq!(forward.map(|(t, start, _)| (t, start)), Some((4_000, 0)));
    }
}
