//! traffic-anomaly: spikes and drops of per-page and site-wide event rates.
//!
//! # Method
//! Events are counted per `bucket_secs` bucket of event time, for the whole site (entity `*`)
//! and for every page (`url`). When the watermark passes a bucket's end, every tracked series
//! closes that bucket (a series with no events in it closes a zero, which is what makes drops
//! to nothing visible) and compares the count `c` with its baseline:
//!
//! - **baseline**: Holt exponential smoothing (level + damped-by-clamp trend) of the bucket
//!   counts, `level_alpha` 0.1 and `trend_beta` 0.02 per 1-minute bucket. The daily shape is a
//!   smooth curve (0.35x..1.65x of the mean over 24 h, at most ~17 % of the mean per hour), so
//!   a baseline with a ~10-minute memory and a trend follows it within a few percent: that is
//!   how the detector is seasonality-aware without a day of history.
//! - **robust scale**: `sigma = max(sqrt(expected), 1.25·dev, 1)`, where `dev` is an EWMA of
//!   absolute residuals (a running MAD) and `sqrt(expected)` is Poisson noise, so both busy
//!   and quiet pages get a sensible z-score `z = (c − expected) / sigma`.
//! - **robust learning**: the value learned is clipped to `expected ± z_threshold·sigma`
//!   (winsorised), and nothing is learned while an anomaly episode runs.
//! - **spike-like bucket**: `c ≥ min_spike_count`, `c / ref ≥ spike_ratio_page` (pages, 3.0)
//!   or `spike_ratio_site` (site, 2.2), and `z ≥ z_threshold` (3.0), where
//!   `ref = max(expected, slow)` and `slow` is a ~100-bucket EWMA (`slow_alpha` 0.01): a page
//!   whose fast baseline learned a long dip does not "spike" when it recovers.
//! - **drop-like bucket**: `c / expected ≤ drop_ratio` (0.45) and `z ≤ −drop_z_threshold`
//!   (2.5: a fall to a third is hard to tell from noise on a page with a dozen events per
//!   bucket at night, and two such buckets in a row are rare); it is only alerted when
//!   `expected ≥ min_drop_baseline` (10 events per bucket, so quiet pages and deep night do
//!   not alert), but even a quiet series keeps it out of its baseline.
//! - **confirmation**: `confirm_buckets` (2) strong buckets within an episode — or, once it
//!   is longer than that, a cumulative z over all its buckets beyond
//!   `cumulative_z_threshold` (4) with its overall ratio past the threshold by
//!   `cumulative_margin` (0.8: drops ≤ 0.8 × `drop_ratio`, spikes ≥ `spike_ratio` / 0.8), for
//!   steady deviations no single bucket proves; it is
//!   alerted once, at the end of the confirming bucket (`time_ms`), with the episode's first
//!   bucket as `window_start_ms`. After it ends the series stays quiet `cooldown_buckets` (30).
//!   An episode longer than `max_episode_buckets` (90) is accepted as the new normal.
//! - **warm-up**: a new series learns `warmup_buckets` (15) buckets before it may alert.
//!
//! - **conversions are funnel-drop's**: with `pages_skip_conversions` (default true),
//!   `add_to_cart`, `checkout` and `purchase` events count for the site but not for their
//!   page, so a broken checkout is reported once, by `funnel-drop`, and not also as a
//!   traffic drop on the order-confirmation page.
//! - **site or page**: when the site and a page move the same way, the page is named if its
//!   ratio to baseline is `dominance` (2.0) times the site's — or, for drops, it lost
//!   `drop_dominance` (1.5) times the site's share — since extra visitors landing on one page
//!   lift the whole site; the site is named otherwise (a site-wide incident moves every page
//!   alike). Only one of the two is alerted. Pages do not learn while the site is in an
//!   episode, so its end is not a page "drop".
//!
//! Legitimate surges stay under the ratios: a flash sale ramps the site to ~1.7x (< 2.2) and
//! a newsletter doubles a few landing pages (< 3.0), while injected incidents are x3 (site),
//! x4..x8 (page) or x0..x0.3 (drops).
//!
//! # State
//! One [`series::Series`] per page, about 200 bytes plus the url; pages idle for
//! `idle_timeout_secs` are evicted (unless in an episode) and at most `max_pages` are tracked.
//!
//! # Layout
//! - [`settings`]: the documented settings.
//! - [`series`]: one watched rate and its baseline.
//! - this file: the plugin (counting, closing buckets, alerts, eviction, snapshots).

pub mod series;
pub mod settings;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use clickwatch_sdk::prelude::*;
use serde::{Deserialize, Serialize};

use series::{Direction, Finding, Rules, Series};
pub use settings::Settings;

/// Entity of the site-wide series.
pub const SITE: &str = "*";

/// The detector.
#[derive(Debug)]
pub struct TrafficAnomaly {
    settings: Settings,
    page_rules: Rules,
    site_rules: Rules,
    state: State,
}

/// Everything that survives a reload.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// Start of the next bucket to close; `None` until the first tick after the first event.
    next_close_ms: Option<i64>,
    site: Option<Series>,
    pages: HashMap<String, Series>,
    /// Events older than the last closed bucket (should not happen behind a watermark).
    late: u64,
    /// Events of pages not tracked because `max_pages` was reached.
    untracked: u64,
}

impl TrafficAnomaly {
    fn bucket_ms(&self) -> i64 {
        i64::from(self.settings.bucket_secs) * 1000
    }

    /// Number of pages currently tracked.
    pub fn tracked_pages(&self) -> usize {
        self.state.pages.len()
    }

    /// Forgets pages idle since before `watermark_ms − idle_timeout_secs`, unless they are in
    /// an episode (a page that dropped to nothing is idle, and still being watched).
    fn evict(&mut self, watermark_ms: i64) {
        let horizon =
            watermark_ms.saturating_sub(i64::from(self.settings.idle_timeout_secs) * 1000);
        self.state
            .pages
            .retain(|_, s| s.last_seen_ms >= horizon || s.episode.is_some());
    }

    fn close_bucket(&mut self, bucket: i64, out: &mut Output) {
        let secs = self.settings.bucket_secs;
        let mut site_finding = None;
        let mut site_dir = None;
        let mut site_ratio = 1.0;
        if let Some(site) = &mut self.state.site
            && site.first_bucket_ms <= bucket
        {
            let n = site.take(bucket);
            site_finding = site.close(bucket, n, &self.site_rules, false);
            site_dir = site.episode.as_ref().map(|e| e.dir);
            site_ratio = site.last_ratio;
        }
        let (dominance, drop_dominance) = (self.settings.dominance, self.settings.drop_dominance);
        // Whether a page moved much more than the site: then the site's move is that page's
        // doing (extra visitors landing on it), and the page is the anomaly to name. Drops
        // compare the share lost, not ratios: near zero, ratios of ratios are noise.
        let dominant = |dir: Direction, page_ratio: f64| match dir {
            Direction::Spike => page_ratio >= dominance * site_ratio,
            Direction::Drop => (1.0 - page_ratio) >= drop_dominance * (1.0 - site_ratio),
        };
        let mut site_explained = false;
        for (url, s) in &mut self.state.pages {
            if s.first_bucket_ms > bucket {
                continue;
            }
            let n = s.take(bucket);
            let finding = s.close(bucket, n, &self.page_rules, site_dir.is_some());
            if let Some(d) = site_dir
                && s.episode.as_ref().is_some_and(|e| e.dir == d)
                && dominant(d, s.last_ratio)
            {
                site_explained = true;
            }
            let Some(f) = finding else {
                continue;
            };
            // A page that merely moves with the whole site is the site's anomaly, named once
            // about `*`; a page that moves far more than the site is its own.
            if site_dir != Some(f.dir) || dominant(f.dir, s.last_ratio) {
                out.alert(alert(&f, "page", url, secs));
            }
        }
        if let Some(f) = site_finding
            && !site_explained
        {
            out.alert(alert(&f, "site", SITE, secs));
        }
    }
}

fn alert(f: &Finding, entity_type: &str, entity: &str, bucket_secs: u32) -> Alert {
    let ratio = f.observed / f.expected.max(0.5);
    let (kind, word) = match f.dir {
        Direction::Spike => ("traffic-spike", "above"),
        Direction::Drop => ("traffic-drop", "below"),
    };
    let severity = if entity_type == "site" {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let subject = if entity_type == "site" {
        "site-wide traffic".to_owned()
    } else {
        format!("traffic on {entity}")
    };
    Alert::new(kind, entity_type, entity)
        .severity(severity)
        .window(f.start_ms, f.time_ms)
        .score(f.z.abs())
        .message(format!(
            "{subject} {ratio:.2}x the expected rate ({:.0} vs {:.1} events per {bucket_secs} s), \
             {word} baseline for {} buckets",
            f.observed, f.expected, f.buckets
        ))
        .details(serde_json::json!({
            "observed": f.observed,
            "expected": f.expected,
            "ratio": ratio,
            "z": f.z,
            "buckets": f.buckets,
            "bucket_secs": bucket_secs,
        }))
}

impl Plugin for TrafficAnomaly {
    type Settings = Settings;

    fn info() -> PluginInfo {
        PluginInfo::detector("traffic-anomaly", env!("CARGO_PKG_VERSION"))
            // Site-wide series.
            .keyed_by(StateKey::Global)
    }

    fn new(settings: Settings) -> Result<Self, String> {
        settings.validate()?;
        let page_rules = Rules {
            spike_ratio: settings.spike_ratio_page,
            drop_ratio: settings.drop_ratio,
            z: settings.z_threshold,
            drop_z: settings.drop_z_threshold,
            cumulative_z: settings.cumulative_z_threshold,
            cumulative_margin: settings.cumulative_margin,
            min_spike_count: f64::from(settings.min_spike_count),
            min_drop_baseline: settings.min_drop_baseline,
            confirm: settings.confirm_buckets,
            alpha: settings.level_alpha,
            beta: settings.trend_beta,
            slow_alpha: settings.slow_alpha,
            warmup: settings.warmup_buckets,
            cooldown_buckets: settings.cooldown_buckets,
            max_episode_buckets: settings.max_episode_buckets,
            bucket_ms: i64::from(settings.bucket_secs) * 1000,
        };
        let site_rules = Rules {
            spike_ratio: settings.spike_ratio_site,
            ..page_rules
        };
        Ok(TrafficAnomaly {
            settings,
            page_rules,
            site_rules,
            state: State::default(),
        })
    }

    fn process(&mut self, batch: &Batch<'_>, _out: &mut Output) -> Result<(), String> {
        let len = self.bucket_ms();
        let max_pages = self.settings.max_pages as usize;
        for click in batch.iter() {
            let t = click.time_ms();
            let bucket = t.div_euclid(len) * len;
            if self.state.next_close_ms.is_some_and(|next| bucket < next) {
                self.state.late += 1;
                continue;
            }
            if self.settings.site {
                self.state
                    .site
                    .get_or_insert_with(|| Series::new(bucket))
                    .count(bucket, t);
            }
            if !self.settings.pages
                || (self.settings.pages_skip_conversions
                    && matches!(
                        click.kind(),
                        EventKind::AddToCart | EventKind::Checkout | EventKind::Purchase
                    ))
            {
                continue;
            }
            let pages = &mut self.state.pages;
            if let Some(series) = pages.get_mut(click.url()) {
                series.count(bucket, t);
            } else if pages.len() < max_pages {
                let mut series = Series::new(bucket);
                series.count(bucket, t);
                pages.insert(click.url().to_owned(), series);
            } else {
                self.state.untracked += 1;
            }
        }
        Ok(())
    }

    fn tick(&mut self, watermark_ms: i64, out: &mut Output) -> Result<(), String> {
        let len = self.bucket_ms();
        let next = match self.state.next_close_ms {
            Some(next) => next,
            None => {
                // Start closing at the earliest bucket any event fell in.
                let earliest = self
                    .state
                    .site
                    .iter()
                    .chain(self.state.pages.values())
                    .flat_map(|s| s.open.iter().map(|(b, _)| *b))
                    .min();
                match earliest {
                    Some(b) => b,
                    None => return Ok(()),
                }
            }
        };
        let mut bucket = next;
        let closable = watermark_ms.saturating_sub(bucket).div_euclid(len);
        let catchup = i64::from(self.settings.max_catchup_buckets);
        if closable > catchup {
            // A jump longer than any incident we look for is not traffic: it is the end of the
            // input (the host closes everything with a watermark near `i64::MAX`) or a gap in
            // the data. Judging hours of empty buckets would report a drop that did not happen
            // and spend one call on it, so skip them unjudged; `take` drops their counts.
            self.state.next_close_ms = Some(bucket.saturating_add(closable.saturating_mul(len)));
            self.evict(watermark_ms);
            return Ok(());
        }
        // `checked_add`: the end-of-input tick may carry a watermark near `i64::MAX`, where a
        // saturating sum would compare as "closable" forever.
        while bucket
            .checked_add(len)
            .is_some_and(|end| end <= watermark_ms)
        {
            self.close_bucket(bucket, out);
            bucket += len;
        }
        self.state.next_close_ms = Some(bucket);
        self.evict(watermark_ms);
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

clickwatch_sdk::export_plugin!(TrafficAnomaly);
