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
//! - **drop-like**: `p ≤ drop_ratio · p0` (0.5) and the binomial
//!   `z = (x − n·p0) / sqrt(n·p0·(1 − p0)) ≤ −z_threshold` (3).
//! - **confirmation**: `confirm_buckets` (2) drop-like buckets in a row raise one alert,
//!   `funnel-drop/<step>` (`cart`, `checkout` or `purchase`) about entity `site` `*`, at the
//!   end of the confirming bucket. The baseline does not learn during an episode; after one,
//!   the step is quiet for `cooldown_buckets` (60); an episode longer than
//!   `max_episode_buckets` (240) becomes the new baseline.
//! - **traffic guard**: while the window's product-step entries are below
//!   `min_traffic_ratio` (0.5) of their baseline, nothing is judged: an outage cuts sessions
//!   short and every conversion falls, which is `traffic-anomaly`'s to report.
//! - **warm-up**: `warmup_buckets` (30) buckets are learned before anything may alert.
//!
//! # State
//! About 80 bytes plus the session id per tracked session (a step bitmask and a time);
//! sessions idle for `idle_timeout_secs` are evicted on `tick`, at most `max_sessions` are
//! tracked. The bucket ring and baselines are a few hundred bytes.
//!
//! # Layout
//! - [`settings`]: the documented settings.
//! - [`funnel`]: per-transition baseline and episode logic.
//! - this file: the plugin (session steps, buckets, alerts, eviction, snapshots).

pub mod funnel;
pub mod settings;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};

use clickwatch_sdk::prelude::*;
use serde::{Deserialize, Serialize};

use funnel::Transition;
pub use settings::Settings;

/// Per-session progress.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct SessionSteps {
    /// Bit `i` set once the session reached step `i`.
    reached: u8,
    last_seen_ms: i64,
}

/// Everything that survives a reload.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    sessions: HashMap<String, SessionSteps>,
    /// Open buckets: start -> entries per step. Stored as pairs (JSON keys must be strings).
    open: Vec<(i64, [u32; 4])>,
    /// Closed buckets inside the judging window, oldest first.
    window: VecDeque<[u32; 4]>,
    next_close_ms: Option<i64>,
    transitions: [Transition; 3],
    learned: u32,
    untracked: u64,
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

    fn close_bucket(&mut self, bucket: i64, counts: [u32; 4], out: &mut Output) {
        let len = self.bucket_ms();
        let s = &self.settings;
        let st = &mut self.state;
        st.window.push_back(counts);
        while st.window.len() > s.window_buckets as usize {
            st.window.pop_front();
        }
        let mut sums = [0u64; 4];
        for b in &st.window {
            for (sum, n) in sums.iter_mut().zip(b) {
                *sum += u64::from(*n);
            }
        }
        let warm = st.learned >= s.warmup_buckets;
        // Traffic far below normal (an outage) cuts sessions short: conversions fall for a
        // reason that is not the funnel's, so nothing is judged until it is back.
        let traffic = &st.transitions[0];
        let traffic_ok = !traffic.initialised
            || sums[0] as f64 >= s.min_traffic_ratio * traffic.den * st.window.len() as f64;
        for (k, t) in st.transitions.iter_mut().enumerate() {
            let (den, num) = (counts[k], counts[k + 1]);
            if !traffic_ok {
                t.learn_unless_in_episode(den, num, s.baseline_alpha);
                continue;
            }
            if let Some(f) = t.judge(bucket, len, warm, sums[k], sums[k + 1], s) {
                out.alert(funnel::alert(k, &f, s.window_buckets));
            }
            t.learn_unless_in_episode(den, num, s.baseline_alpha);
        }
        st.learned = st.learned.saturating_add(1);
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
            let Some(step) = self.step_of(&click) else {
                if let Some(s) = self.state.sessions.get_mut(click.session()) {
                    s.last_seen_ms = s.last_seen_ms.max(click.time_ms());
                }
                continue;
            };
            let t = click.time_ms();
            let bucket = t.div_euclid(len) * len;
            if self.state.next_close_ms.is_some_and(|next| bucket < next) {
                continue;
            }
            let sessions = &mut self.state.sessions;
            if !sessions.contains_key(click.session()) {
                if sessions.len() >= max {
                    self.state.untracked += 1;
                    continue;
                }
                sessions.insert(click.session().to_owned(), SessionSteps::default());
            }
            let Some(session) = sessions.get_mut(click.session()) else {
                continue;
            };
            session.last_seen_ms = session.last_seen_ms.max(t);
            let bit = 1u8 << step;
            if session.reached & bit != 0 {
                continue;
            }
            session.reached |= bit;
            let open = &mut self.state.open;
            match open.iter_mut().find(|(b, _)| *b == bucket) {
                Some((_, c)) => c[step] = c[step].saturating_add(1),
                None => {
                    let mut c = [0; 4];
                    c[step] = 1;
                    open.push((bucket, c));
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
        self.state = clickwatch_sdk::state::decode(state)?;
        Ok(())
    }
}

clickwatch_sdk::export_plugin!(FunnelDrop);
