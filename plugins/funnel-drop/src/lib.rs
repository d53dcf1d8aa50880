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
//!   ([`funnel::bernoulli_rho`]), signalling at `2·ln(1/tail)` with the tail of
//!   `z_threshold` sigmas (the joint evidence the window needs from its two confirming
//!   buckets, [`funnel::sequential_threshold`]), so a broken step is proven after a few dozen
//!   entries instead of when the window has filled with the break; judged under the same volume floor and traffic
//!   guard as the window, and named by the same rules.
//! - **traffic guard**: while the window's product-step entries are below
//!   `min_traffic_ratio` (0.5) of their baseline, or any bucket of the window has site events
//!   outside `[min_traffic_ratio, 1/min_traffic_ratio]` of the median of the last hour's
//!   buckets, nothing is judged: an outage cuts sessions short and every conversion falls, a
//!   surge brings another mix of visitors; both are `traffic-anomaly`'s to report.
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
//! - this file: the plugin (session steps, buckets, alerts, eviction, snapshots).

pub mod funnel;
pub mod segment;
pub mod settings;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use clickwatch_sdk::prelude::*;
use serde::{Deserialize, Serialize};

use funnel::Series;
use segment::Segment;
pub use settings::Settings;

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
struct Traffic {
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

impl Traffic {
    fn count(&mut self, bucket: i64) {
        match self.open.iter_mut().find(|(b, _)| *b == bucket) {
            Some((_, n)) => *n = n.saturating_add(1),
            None => {
                if self.open.len() >= 8 {
                    self.open.sort_unstable();
                    self.open.remove(0);
                }
                self.open.push((bucket, 1));
            }
        }
    }

    /// Closes a bucket and says whether conversion may be judged in it.
    fn close(&mut self, bucket: i64, s: &Settings) -> bool {
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
        // The reference before this bucket: the median of the history.
        let warm = self.history.len() >= (s.warmup_buckets as usize).min(GUARD_HISTORY);
        let mut sorted: Vec<u32> = self.history.iter().copied().collect();
        sorted.sort_unstable();
        let base = sorted.get(sorted.len() / 2).map_or(0.0, |&m| f64::from(m));
        self.history.push_back(n);
        while self.history.len() > GUARD_HISTORY {
            self.history.pop_front();
        }
        // Every bucket of the window must be near normal: the window judged now includes
        // them all, and the first bucket of an outage already skews its conversions.
        let ratio = s.min_traffic_ratio.clamp(1e-3, 1.0);
        !warm
            || self.window.iter().all(|&x| {
                let x = f64::from(x);
                x >= ratio * base && x * ratio <= base
            })
    }
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

    fn close_bucket(&mut self, bucket: i64, counts: [u32; 4], out: &mut Output) {
        let len = self.bucket_ms();
        let s = &self.settings;
        let st = &mut self.state;
        let mut seg_counts = vec![[0u32; 4]; st.segments.len()];
        st.open_segments.retain(|&(b, slot, c)| {
            if b == bucket
                && let Some(x) = seg_counts.get_mut(slot as usize)
            {
                *x = c;
            }
            b > bucket
        });
        let site_sums = st.site.push(counts, s.window_buckets);
        let seg_sums: Vec<[u64; 4]> = st
            .segments
            .iter_mut()
            .zip(&seg_counts)
            .map(|(g, c)| g.series.push(*c, s.window_buckets))
            .collect();
        // Traffic far below normal (an outage) cuts sessions short: conversions fall for a
        // reason that is not the funnel's, so nothing is judged until it is back.
        let traffic = &st.site.transitions[0];
        let sessions_ok = !traffic.initialised
            || site_sums[0] as f64
                >= s.min_traffic_ratio * traffic.den * st.site.window.len() as f64;
        let traffic_ok = st.traffic.close(bucket, s) && sessions_ok;
        let warmup = s.warmup_buckets;
        for k in 0..3 {
            if !traffic_ok {
                break;
            }
            // Bonferroni: every series with a baseline and entries this window is a test.
            let judged = |series: &Series, sums: &[u64; 4]| {
                series.learned >= warmup
                    && series.transitions[k].baseline().is_some()
                    && sums[k] > 0
            };
            let tests = usize::from(judged(&st.site, &site_sums))
                + st.segments
                    .iter()
                    .zip(&seg_sums)
                    .filter(|(g, sums)| judged(&g.series, sums))
                    .count();
            let site_learned = st.site.learned;
            // The site is the primary hypothesis, tested alone; the segments are a family and
            // share one false-alarm budget (Bonferroni over the segments judged).
            let segment_tests = tests.saturating_sub(usize::from(judged(&st.site, &site_sums)));
            let site_t = &mut st.site.transitions[k];
            let proven =
                site_t.sequential(bucket, counts[k], counts[k + 1], site_learned >= warmup, s);
            let site_finding = site_t
                .judge(
                    bucket,
                    len,
                    site_learned >= warmup,
                    site_sums[k],
                    site_sums[k + 1],
                    1,
                    site_learned,
                    s.min_window_volume,
                    s,
                )
                .or_else(|| {
                    // The sequential test proved what the window does not show yet: the
                    // episode starts where its excursion began.
                    // Judged, like the window, only at `min_window_volume` entries a window.
                    let busy = site_sums[k] >= u64::from(s.min_window_volume);
                    let p0 = site_t.baseline().filter(|_| proven && busy)?;
                    let e = site_t.episode.get_or_insert(funnel::Episode {
                        start_ms: site_t.seq_start_ms,
                        buckets: 0,
                        alerted: false,
                    });
                    e.buckets = e.buckets.max(1);
                    Some(funnel::Finding {
                        start_ms: e.start_ms,
                        time_ms: bucket.saturating_add(len),
                        entered: site_sums[k],
                        converted: site_sums[k + 1],
                        baseline: p0,
                        z: -(2.0 * site_t.seq).sqrt(),
                        buckets: e.buckets,
                    })
                });
            let mut found = Vec::new();
            for (i, (g, sums)) in st.segments.iter_mut().zip(&seg_sums).enumerate() {
                let learned = g.series.learned;
                if let Some(f) = g.series.transitions[k].judge(
                    bucket,
                    len,
                    learned >= warmup,
                    sums[k],
                    sums[k + 1],
                    segment_tests,
                    learned,
                    s.min_segment_volume,
                    s,
                ) {
                    found.push((i, f));
                }
            }
            if st.incident[k] {
                let active = st.site.transitions[k].episode.is_some()
                    || st
                        .segments
                        .iter()
                        .any(|g| g.series.transitions[k].episode.is_some());
                st.incident[k] = active;
                continue;
            }
            // The segment that best explains the drop: the rest of the site converts closest
            // to its own baseline without it.
            let site_t = &st.site.transitions[k];
            let remainder = |i: usize| {
                let g = &st.segments[i];
                let t = &g.series.transitions[k];
                let n = site_sums[k].saturating_sub(seg_sums[i][k]) as f64;
                let x = site_sums[k + 1].saturating_sub(seg_sums[i][k + 1]) as f64;
                let (den, num) = (site_t.den - t.den, site_t.num - t.num);
                if n < f64::from(s.min_segment_volume) || den <= 0.0 || num <= 0.0 {
                    return 0.0;
                }
                (x / n) / (num / den)
            };
            let best = found
                .iter()
                .map(|(i, f)| (*i, f, remainder(*i)))
                .max_by(|a, b| a.2.total_cmp(&b.2));
            // A segment already drop-like but not yet confirmed that explains the site's drop
            // (smaller, so slower to prove): wait for it rather than alert the site.
            let pending = site_finding.is_some()
                && best.is_none_or(|b| b.2 < s.remainder_ratio)
                && st.site.transitions[k]
                    .episode
                    .as_ref()
                    .is_some_and(|e| e.buckets <= s.confirm_buckets + s.window_buckets)
                && (0..st.segments.len()).any(|i| {
                    let t = &st.segments[i].series.transitions[k];
                    let low = t.baseline().is_some_and(|p0| {
                        let (n, x) = (seg_sums[i][k], seg_sums[i][k + 1]);
                        n > 0 && (x as f64 / n as f64) <= s.drop_ratio * p0
                    });
                    low && t.episode.as_ref().is_none_or(|e| !e.alerted)
                        && remainder(i) >= s.remainder_ratio
                });
            if pending {
                if let Some(e) = st.site.transitions[k].episode.as_mut() {
                    e.alerted = false;
                }
                continue;
            }
            let alert = match (best, &site_finding) {
                // Named only when the rest of the site converts near its own baseline without
                // it, also before the site's own drop is confirmed: a segment that confirms
                // first while everyone's conversion fell is part of the site's incident, and the
                // site's alert follows.
                (Some((i, f, rem)), _) if rem >= s.remainder_ratio => {
                    let g = &st.segments[i];
                    Some(funnel::segment_alert(
                        k,
                        f,
                        s.window_buckets,
                        segment::DIMENSIONS[g.dim as usize],
                        &g.value,
                        rem,
                    ))
                }
                (_, Some(f)) => {
                    // Name the most affected segments.
                    let mut worst: Vec<_> = st
                        .segments
                        .iter()
                        .zip(&seg_sums)
                        .filter_map(|(g, sums)| {
                            let p0 = g.series.transitions[k].baseline()?;
                            (sums[k] >= u64::from(s.min_segment_volume) && p0 > 0.0).then(|| {
                                let ratio = sums[k + 1] as f64 / sums[k] as f64 / p0;
                                (ratio, g, sums[k], sums[k + 1])
                            })
                        })
                        .collect();
                    worst.sort_by(|a, b| a.0.total_cmp(&b.0));
                    let named: Vec<_> = worst
                        .iter()
                        .take(5)
                        .map(|(ratio, g, n, x)| {
                            serde_json::json!({
                                "dimension": segment::DIMENSIONS[g.dim as usize],
                                "segment": g.value,
                                "ratio": ratio,
                                "entered": n,
                                "converted": x,
                            })
                        })
                        .collect();
                    Some(funnel::alert(k, f, s.window_buckets, named))
                }
                _ => None,
            };
            if let Some(a) = alert {
                out.alert(a);
                st.incident[k] = true;
                // Every series now in an episode belongs to this incident.
                for t in std::iter::once(&mut st.site.transitions[k])
                    .chain(st.segments.iter_mut().map(|g| &mut g.series.transitions[k]))
                {
                    if let Some(e) = t.episode.as_mut() {
                        e.alerted = true;
                    }
                }
            }
        }
        let learn = |series: &mut Series, c: &[u32; 4]| {
            for (k, t) in series.transitions.iter_mut().enumerate() {
                t.learn_unless_in_episode(c[k], c[k + 1], s.baseline_alpha);
            }
            series.learned = series.learned.saturating_add(1);
        };
        learn(&mut st.site, &counts);
        for (g, c) in st.segments.iter_mut().zip(&seg_counts) {
            learn(&mut g.series, c);
        }
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
        // A long silence is skipped rather than judged bucket by bucket: its buckets would be
        // empty, below the minimum volume, and the work of one call stays bounded.
        let closable = watermark_ms.saturating_sub(bucket).div_euclid(len);
        let catchup = i64::from(self.settings.window_buckets) + 1;
        if closable > catchup {
            bucket += (closable - catchup) * len;
        }
        // `checked_add`: the end-of-input tick may carry a watermark near `i64::MAX`, where a
        // saturating sum would compare as "closable" forever.
        while bucket
            .checked_add(len)
            .is_some_and(|end| end <= watermark_ms)
        {
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
