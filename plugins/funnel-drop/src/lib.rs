//! funnel-drop: conversion through product → cart → checkout → purchase falling against its
//! baseline (a broken checkout).
//!
//! # Method
//! Each session counts once per funnel step, the first time it reaches it: a product view
//! (a page view whose url contains `product_url_contains`), `add_to_cart`, `checkout`,
//! `purchase`. Counting sessions rather than events keeps scrapers that view hundreds of
//! products from diluting the first step. Reaches are counted per `bucket_secs` bucket of
//! event time. When the watermark closes a bucket, each transition (product→cart,
//! cart→checkout, checkout→purchase) is judged over the last `window_buckets` (5) buckets:
//!
//! - `p` = entries to the next step / entries to this step in the window; `p0` = the same
//!   ratio of two slow EWMAs (`baseline_alpha` 0.02, ~50 buckets) of the per-bucket counts.
//!   Conversion is a ratio, so the daily traffic shape cancels out of it.
//! - **minimum volume**: judged only with at least `min_window_volume` (30) entries in the
//!   window, so night-time traffic does not alert.
//! - **segments**: the same is judged for each segment a session belongs to, taken from its
//!   first event: `device`, `country`, `browser` (chrome/firefox/safari/edge/other from the
//!   user agent) and `referrer_class` (none/search/social/ads/other from the referrer host).
//!   At most `max_segment_values` (12) values per dimension; unknown and overflow values are
//!   `other`.
//! - **drop-like**: `n ≥ min_window_volume` (30; `min_segment_volume`, 8, for a segment),
//!   `p ≤ drop_ratio · p0` (0.5) and the one-sided likelihood-ratio tail
//!   (`detect::proportion::drop_tail`, baseline counted as ~1/alpha buckets of evidence) at
//!   most the normal tail at `z_threshold` (4): for the site alone, for a segment times the
//!   number of segments judged in the bucket (Bonferroni).
//! - **confirmation**: `confirm_buckets` (2) drop-like buckets in a row; one alert per
//!   incident and transition, `funnel-drop/<step>`: about the segment that best explains it
//!   (entity type = the dimension, entity = the value, e.g. `device` `mobile`) when the rest
//!   of the site converts at ≥ `remainder_ratio` (0.75) of its baseline without it, else
//!   about `site` `*` with the most affected segments in details. Series still in an episode
//!   when the alert goes out belong to it. The baseline does not learn during an episode;
//!   after one, the step is quiet for `cooldown_buckets` (60); an episode longer than
//!   `max_episode_buckets` (240) becomes the new baseline.
//! - **sequential test** (the site's funnel): a Bernoulli CUSUM per transition on each
//!   bucket's entries and conversions, for conversion below `drop_ratio` of the baseline
//!   ([`funnel::bernoulli_rho`]), signalling at `ln(sequential_false_alarm_entries)` (16.1:
//!   by Lorden's bound a false alarm at most about once per 10^7 entries,
//!   [`funnel::sequential_threshold`]), so a broken step is proven after a couple of dozen
//!   entries instead of when the window has filled with the break; judged under the same
//!   traffic guard as the window, with at least `min_segment_volume` entries in the window,
//!   and named by the same rules. Each segment runs the same test at the site's threshold
//!   plus `ln` of the segments tested (they share its budget), so a small segment's break
//!   that no five-bucket window shows adds up over the buckets; it is not named while the
//!   site's own statistic is half-way to proof (a site-wide break is the site's), and every
//!   statistic of a transition restarts when its incident is alerted.
//! - **traffic guard**: while the window's product-step entries are below
//!   `min_traffic_ratio` (0.5) of their baseline, or any bucket of the window has site events
//!   outside `[min_traffic_ratio, 1/min_traffic_ratio]` of the median of the last hour's
//!   buckets and, at once, more than 4 robust sigmas from it (the spread of successive
//!   buckets: a quiet site's buckets scatter far beyond Poisson), nothing is judged: an
//!   outage cuts sessions short and every conversion falls, a surge brings another mix of
//!   visitors; both are `traffic-anomaly`'s to report.
//! - **warm-up**: `warmup_buckets` (30) buckets are learned before anything may alert.
//!
//! # State
//! About 90 bytes plus the session id per tracked session (a step bitmask, a time, 4 segment
//! slots); at most `4 × max_segment_values` segments of about 1 kB each. A 0.1 snapshot
//! (no segments) restores: its sessions count for the site only.
//! sessions idle for `idle_timeout_secs` are evicted on `tick`, at most `max_sessions` are
//! tracked. The bucket ring and baselines are a few hundred bytes.
//!
//! # Layout
//! - [`settings`]: the documented settings.
//! - [`funnel`]: per-transition baseline and episode logic, the alerts.
//! - [`segment`]: segment classes and their bounded slots.
//! - `traffic`: the traffic guard.
//! - `close`: judging a closed bucket and naming its drop.
//! - this file: the plugin (session steps, buckets, eviction, snapshots).

mod close;
pub mod funnel;
pub mod segment;
pub mod settings;
mod traffic;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use clickwatch_sdk::buckets::skip_silence;
use clickwatch_sdk::prelude::*;
use serde::{Deserialize, Serialize};

use funnel::Series;
use segment::Segment;
pub use settings::Settings;
use traffic::Traffic;

/// Per-session progress.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct SessionSteps {
    /// Bit `i` set once the session reached step `i`.
    reached: u8,
    last_seen_ms: i64,
    /// Segment slots (device, country, browser, referrer class); absent in v1 snapshots.
    #[serde(default)]
    seg: Option<[u16; 4]>,
}

/// Everything that survives a reload.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    sessions: HashMap<String, SessionSteps>,
    /// Open buckets: start -> entries per step. Stored as pairs (JSON keys must be strings).
    open: Vec<(i64, [u32; 4])>,
    next_close_ms: Option<i64>,
    /// The site's funnel (v1 field names: `window`, `transitions`, `learned`).
    #[serde(flatten)]
    site: Series,
    untracked: u64,
    /// Tracked segment values, at most `max_segment_values` per dimension.
    #[serde(default)]
    segments: Vec<Segment>,
    /// Open buckets per segment: (bucket start, slot, entries per step).
    #[serde(default)]
    open_segments: Vec<(i64, u16, [u32; 4])>,
    /// Per transition: an alert was raised and some series is still in its episode.
    #[serde(default)]
    incident: [bool; 3],
    /// The site's event rate, for the traffic guard (absent in 0.1 snapshots).
    #[serde(default)]
    traffic: Traffic,
}

/// The detector.
#[derive(Debug)]
pub struct FunnelDrop {
    settings: Settings,
    state: State,
}

impl FunnelDrop {
    fn bucket_ms(&self) -> i64 {
        i64::from(self.settings.bucket_secs) * 1000
    }

    /// Number of sessions currently tracked.
    pub fn tracked_sessions(&self) -> usize {
        self.state.sessions.len()
    }

    fn step_of(&self, click: &Click<'_>) -> Option<usize> {
        match click.kind() {
            EventKind::PageView if click.url().contains(&self.settings.product_url_contains) => {
                Some(0)
            }
            EventKind::AddToCart => Some(1),
            EventKind::Checkout => Some(2),
            EventKind::Purchase => Some(3),
            _ => None,
        }
    }

    /// Number of tracked segment values.
    pub fn tracked_segments(&self) -> usize {
        self.state.segments.len()
    }

    fn segments_of(&mut self, click: &Click<'_>) -> [u16; 4] {
        let cap = self.settings.max_segment_values as usize;
        let values = [
            segment::device(click.device()),
            segment::country(click.country()),
            segment::browser(click.user_agent()).to_owned(),
            segment::referrer(click.referrer()).to_owned(),
        ];
        let mut slots = [0; 4];
        for (d, v) in values.iter().enumerate() {
            slots[d] = segment::slot(&mut self.state.segments, d as u8, v, cap);
        }
        slots
    }
}

impl Plugin for FunnelDrop {
    type Settings = Settings;

    fn info() -> PluginInfo {
        PluginInfo::detector("funnel-drop", env!("CARGO_PKG_VERSION"))
            // The site-wide funnel.
            .keyed_by(StateKey::Global)
    }

    fn new(settings: Settings) -> Result<Self, String> {
        settings.validate()?;
        Ok(FunnelDrop {
            settings,
            state: State::default(),
        })
    }

    fn process(&mut self, batch: &Batch<'_>, _out: &mut Output) -> Result<(), String> {
        let len = self.bucket_ms();
        let max = self.settings.max_sessions as usize;
        for click in batch.iter() {
            let t = click.time_ms();
            let step = self.step_of(&click);
            let bucket = t.div_euclid(len) * len;
            if self.state.next_close_ms.is_none_or(|next| bucket >= next) {
                self.state.traffic.count(bucket);
            }
            if !self.state.sessions.contains_key(click.session()) {
                if self.state.sessions.len() >= max {
                    self.state.untracked += 1;
                    continue;
                }
                // Segments are taken from the session's first event (the landing page carries
                // the referrer).
                let seg = self.segments_of(&click);
                self.state.sessions.insert(
                    click.session().to_owned(),
                    SessionSteps {
                        reached: 0,
                        last_seen_ms: t,
                        seg: Some(seg),
                    },
                );
            }
            let Some(session) = self.state.sessions.get_mut(click.session()) else {
                continue;
            };
            session.last_seen_ms = session.last_seen_ms.max(t);
            let Some(step) = step else {
                continue;
            };
            if self.state.next_close_ms.is_some_and(|next| bucket < next) {
                continue;
            }
            let bit = 1u8 << step;
            if session.reached & bit != 0 {
                continue;
            }
            session.reached |= bit;
            let seg = session.seg;
            let open = &mut self.state.open;
            match open.iter_mut().find(|(b, _)| *b == bucket) {
                Some((_, c)) => c[step] = c[step].saturating_add(1),
                None => {
                    let mut c = [0; 4];
                    c[step] = 1;
                    open.push((bucket, c));
                }
            }
            for slot in seg.into_iter().flatten() {
                let open = &mut self.state.open_segments;
                match open.iter_mut().find(|(b, s, _)| *b == bucket && *s == slot) {
                    Some((_, _, c)) => c[step] = c[step].saturating_add(1),
                    None => {
                        let mut c = [0; 4];
                        c[step] = 1;
                        open.push((bucket, slot, c));
                    }
                }
            }
        }
        Ok(())
    }

    fn tick(&mut self, watermark_ms: i64, out: &mut Output) -> Result<(), String> {
        let len = self.bucket_ms();
        let next = match self.state.next_close_ms {
            Some(n) => n,
            None => match self.state.open.iter().map(|(b, _)| *b).min() {
                Some(b) => b,
                None => return Ok(()),
            },
        };
        let mut bucket = next;
        let catchup = i64::from(self.settings.window_buckets) + 1;
        // Buckets with counts: a skip must stop short of them.
        let counted: std::collections::BTreeSet<i64> = self
            .state
            .open
            .iter()
            .map(|(b, _)| *b)
            .chain(self.state.open_segments.iter().map(|(b, _, _)| *b))
            .chain(self.state.traffic.open_buckets())
            .collect();
        // `checked_add`: the end-of-input tick may carry a watermark near `i64::MAX`, where a
        // saturating sum would compare as "closable" forever.
        while bucket
            .checked_add(len)
            .is_some_and(|end| end <= watermark_ms)
        {
            // A long silence is skipped rather than judged bucket by bucket (its buckets are
            // empty, below the minimum volume), never past a bucket with counts.
            if let Some(next) = skip_silence(bucket, watermark_ms, len, catchup, &counted) {
                bucket = next;
                continue;
            }
            let mut counts = [0; 4];
            self.state.open.retain(|&(b, c)| {
                if b == bucket {
                    counts = c;
                }
                b > bucket
            });
            self.close_bucket(bucket, counts, out);
            bucket += len;
        }
        self.state.next_close_ms = Some(bucket);
        let horizon =
            watermark_ms.saturating_sub(i64::from(self.settings.idle_timeout_secs) * 1000);
        self.state.sessions.retain(|_, s| s.last_seen_ms >= horizon);
        Ok(())
    }

    fn snapshot(&self) -> Result<Vec<u8>, String> {
        clickwatch_sdk::state::encode(&self.state)
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        if state.is_empty() {
            return Ok(());
        }
        match clickwatch_sdk::state::decode::<State>(state) {
            Ok(mut restored) => {
                // Slots must point at tracked segments; drop any that do not.
                let n = restored.segments.len();
                restored
                    .open_segments
                    .retain(|&(_, slot, _)| (slot as usize) < n);
                for s in restored.sessions.values_mut() {
                    if s.seg
                        .is_some_and(|seg| seg.iter().any(|&x| x as usize >= n))
                    {
                        s.seg = None;
                    }
                }
                self.state = restored;
                Ok(())
            }
            Err(e) => {
                clickwatch_sdk::log::warn(&format!(
                    "funnel-drop: snapshot unreadable, starting fresh: {e}"
                ));
                Err(e)
            }
        }
    }
}

clickwatch_sdk::export_plugin!(FunnelDrop);
