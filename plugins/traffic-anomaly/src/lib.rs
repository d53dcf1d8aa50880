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
//! - **levels** ([`levels`]): between the site and its pages, series per url path prefix
//!   (`/shop/books/`) and name stem (`/p/books-*`), learned from the urls seen, watched for
//!   drops like pages; an outage spread over many quiet pages is found at its level and named
//!   `category` (or `section`) with its most affected children. A node of the site → levels →
//!   pages tree that moves with its ancestor is the ancestor's anomaly, unless it moved
//!   `dominance`/`drop_dominance` times more.
//! - **common factor**: the weighted median of count / baseline over the warm pages; a page or
//!   level drop must also be a drop against its baseline times that factor, so the end of a
//!   sale or an outage that moves every page alike is no page's drop.
//! - **surge or spike** ([`surge`]): a site spike whose conversion share did not fall to half
//!   its baseline or less (significantly, `surge_tail`) is a `traffic-surge`, severity info.
//! - **error pages** (`/404`, `/error`, ...) are never alerted; their rise is listed in the
//!   drop alerts of that bucket.
//! - **decisive buckets**: a drop bucket 6 sigmas below its baseline confirms alone.
//! - **sequential drop test** (`sequential_tail`, 1e-8): between bucket closes, the site and
//!   every level busy enough to alert a drop, and every page busy enough for the test to
//!   prove a total loss within one bucket, run a continuous-time Poisson CUSUM
//!   ([`clickwatch_sdk::detect::DropCusum`]) on its events per second against its baseline,
//!   for the rate below `drop_ratio` of it, quasi-likelihood with the dispersion its robust
//!   scale shows. When it signals, the drop is named in the tree as above (an ancestor moving
//!   down alike carries it, a busy child that lost more explains it, and the evidence must
//!   also hold against the common factor of the elapsed part of the bucket and against each
//!   ancestor's own excursion), and alerted at
//!   that second: an outage is proven as soon as the missing events suffice, wherever in a
//!   bucket it began.

//! # State
//! One [`series::Series`] per page and per level, about 200 bytes plus the name; pages and
//! levels idle for `idle_timeout_secs` are evicted (unless in an episode), at most `max_pages`
//! and `max_levels` are tracked. A 0.1 snapshot (no levels, no conversion share) restores.
//!
//! # Layout
//! - [`settings`]: the documented settings.
//! - [`series`]: one watched rate and its baseline.
//! - [`levels`]: the url levels of a page, their names, error pages.
//! - [`surge`]: the site's conversion share, surge or spike.
//! - `tree`: the site → levels → pages tree of series.
//! - `sequential`: the sequential drop test between bucket closes.
//! - `report`: naming a closed bucket's episodes in the tree, and their alerts.
//! - this file: the plugin (counting, closing buckets, eviction, snapshots).

pub mod levels;
mod report;
mod sequential;
pub mod series;
pub mod settings;
pub mod surge;
mod tree;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use clickwatch_sdk::prelude::*;
use serde::{Deserialize, Serialize};

use series::{Finding, Rules, Series};
pub use settings::Settings;
use surge::Conversion;
use tree::{Node, NodeId};

/// Entity of the site-wide series.
pub const SITE: &str = "*";

/// Least expected events per bucket over the warm pages for a common factor to be measured.
const MIN_FACTOR_WEIGHT: f64 = 50.0;

/// Least expected events of a page, in the elapsed part of a bucket, for its ratio to count
/// towards the common factor there.
const MIN_PARTIAL_EXPECTED: f64 = 5.0;

/// The detector.
#[derive(Debug)]
pub struct TrafficAnomaly {
    settings: Settings,
    page_rules: Rules,
    site_rules: Rules,
    state: State,
    /// Levels of the urls seen (see [`levels`]), so each event does not split its url again;
    /// cleared when it outgrows `max_pages`.
    levels: HashMap<String, Vec<String>>,
    /// Series the sequential drop test watches (warm and busy enough to alert a drop),
    /// coarsest first; derived from the state at each bucket close and on restore.
    watched: Vec<NodeId>,
}

/// Everything that survives a reload.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// Start of the next bucket to close; `None` until the first tick after the first event.
    next_close_ms: Option<i64>,
    site: Option<Series>,
    pages: HashMap<String, Series>,
    /// Levels between the site and its pages (url path prefixes and stems; absent in 0.1
    /// snapshots).
    #[serde(default)]
    groups: HashMap<String, Series>,
    /// The site's conversion share, which tells a demand surge from other spikes (absent in
    /// 0.1 snapshots).
    #[serde(default)]
    conversion: Conversion,
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

    /// Number of levels (url prefixes and stems) currently tracked.
    pub fn tracked_levels(&self) -> usize {
        self.state.groups.len()
    }

    /// Forgets pages and levels idle since before `watermark_ms − idle_timeout_secs`, unless
    /// they are in an episode (a page that dropped to nothing is idle, and still being watched).
    fn evict(&mut self, watermark_ms: i64) {
        let horizon =
            watermark_ms.saturating_sub(i64::from(self.settings.idle_timeout_secs) * 1000);
        self.state
            .pages
            .retain(|_, s| s.last_seen_ms >= horizon || s.episode.is_some());
        self.state
            .groups
            .retain(|_, s| s.last_seen_ms >= horizon || s.episode.is_some());
    }

    /// Counts one event for every level above its page (creating levels up to `max_levels`).
    fn count_levels(&mut self, url: &str, bucket: i64, t: i64) {
        if !self.levels.contains_key(url) {
            if self.levels.len() >= self.settings.max_pages as usize {
                self.levels.clear();
            }
            self.levels.insert(url.to_owned(), levels::levels(url));
        }
        let Some(levels) = self.levels.get(url) else {
            return;
        };
        let groups = &mut self.state.groups;
        for level in levels {
            if let Some(series) = groups.get_mut(level) {
                series.count(bucket, t);
            } else if groups.len() < self.settings.max_levels as usize {
                let mut series = Series::new(bucket);
                series.count(bucket, t);
                groups.insert(level.clone(), series);
            }
        }
    }

    /// How the site's pages as a whole moved in the bucket starting at `bucket`: the median of
    /// count / baseline over the warm pages, each weighted by its baseline. A sale, the end of
    /// one, or an outage moves every page alike and so moves the median; one page or one
    /// category moving alone does not (it is a minority of the weight). 1 when too few events
    /// are expected to tell.
    fn common_factor(&self, bucket: i64) -> f64 {
        self.median_ratio(bucket, 1.0, 1.0)
    }

    /// The weighted median of count / (`scale` × baseline) over the warm pages of the bucket
    /// starting at `bucket` that expect at least `min_expected` events, each weighted by that
    /// expectation; 1 when their weight is under [`MIN_FACTOR_WEIGHT`].
    fn median_ratio(&self, bucket: i64, scale: f64, min_expected: f64) -> f64 {
        let mut points: Vec<(f64, f64)> = self
            .state
            .pages
            .values()
            .filter(|s| s.first_bucket_ms <= bucket && s.warm(&self.page_rules))
            .map(|s| (s.holt() * scale, f64::from(s.peek(bucket))))
            .filter(|(e, _)| *e >= min_expected)
            .map(|(e, c)| (c / e, e))
            .collect();
        let total: f64 = points.iter().map(|(_, w)| w).sum();
        if total < MIN_FACTOR_WEIGHT {
            return 1.0;
        }
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut acc = 0.0;
        for (ratio, w) in points {
            acc += w;
            if acc >= total / 2.0 {
                return ratio;
            }
        }
        1.0
    }

    fn close_bucket(&mut self, bucket: i64, out: &mut Output) {
        let secs = self.settings.bucket_secs;
        let min_drop = self.settings.min_drop_baseline;
        let mut nodes: Vec<Node> = Vec::new();
        let node_of = |id: NodeId, parent: Option<NodeId>, s: &Series, f: Option<Finding>| Node {
            id,
            parent,
            dir: s.episode.as_ref().map(|e| e.dir),
            ratio: s.last_ratio,
            count: s.last_count,
            expected: s.last_expected,
            alertable: s.last_expected >= min_drop,
            finding: f,
        };
        let mut conversions = self.state.conversion.take(bucket);
        if let Some(site) = &mut self.state.site
            && site.first_bucket_ms <= bucket
        {
            let n = site.take(bucket);
            let was = site.episode.is_some();
            let f = site.close(bucket, n, &self.site_rules, false, None);
            conversions.events = f64::from(n);
            self.state
                .conversion
                .close(conversions, was || site.episode.is_some());
            nodes.push(node_of(NodeId::Site, None, site, f));
        }
        let site_moving = nodes.first().is_some_and(|n| n.dir.is_some());
        let factor = self.common_factor(bucket);
        // Coarse levels first (for the tree, below).
        let mut keys: Vec<String> = self.state.groups.keys().cloned().collect();
        keys.sort_by_key(|k| (k.matches('/').count(), k.clone()));
        for key in keys {
            let parent = self.group_parent(&key);
            let Some(s) = self.state.groups.get_mut(&key) else {
                continue;
            };
            if s.first_bucket_ms > bucket {
                continue;
            }
            let n = s.take(bucket);
            let f = s.close(bucket, n, &self.page_rules, site_moving, Some(factor));
            nodes.push(node_of(NodeId::Group(key), parent, s, f));
        }
        let urls: Vec<String> = self.state.pages.keys().cloned().collect();
        for url in urls {
            let parent = self.page_parent(&url);
            let Some(s) = self.state.pages.get_mut(&url) else {
                continue;
            };
            if s.first_bucket_ms > bucket {
                continue;
            }
            let n = s.take(bucket);
            let f = s.close(bucket, n, &self.page_rules, site_moving, Some(factor));
            nodes.push(node_of(NodeId::Page(url), parent, s, f));
        }
        self.report(bucket, secs, &nodes, out);
        self.refresh_watched();
    }

    /// The series the sequential drop test watches: warm and expecting enough events for a
    /// drop to be alerted (error pages never are); a page also enough for the test to prove
    /// a total loss within one bucket. The test is there to be faster than the bucket test;
    /// on a quieter page it cannot be (it needs `ln(1/tail)·φ/(1 − ρ)` expected events, ~22
    /// at φ = 1), and its Poisson model is at its weakest there: a quiet page's events come
    /// from a few visitors each viewing it in a burst, so the bucket test and its
    /// confirmation decide alone. A level pools many pages' visitors and keeps the test.
    fn refresh_watched(&mut self) {
        let r = &self.page_rules;
        let busy = |s: &Series| s.warm(r) && s.holt() >= r.min_drop_baseline;
        let fast = |s: &Series| s.holt() * (1.0 - r.rho) >= r.seq_threshold * s.dispersion();
        self.watched.clear();
        if self.state.site.as_ref().is_some_and(busy) {
            self.watched.push(NodeId::Site);
        }
        self.watched.extend(
            self.state
                .groups
                .iter()
                .filter(|(_, s)| busy(s))
                .map(|(k, _)| NodeId::Group(k.clone())),
        );
        self.watched.extend(
            self.state
                .pages
                .iter()
                .filter(|(u, s)| busy(s) && fast(s) && !levels::is_error_page(u))
                .map(|(u, _)| NodeId::Page(u.clone())),
        );
        self.watched.sort();
    }
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
            rho: clickwatch_sdk::detect::DropCusum::rho_for(settings.drop_ratio),
            seq_threshold: if settings.sequential_tail > 0.0 {
                (1.0 / settings.sequential_tail).ln()
            } else {
                f64::INFINITY
            },
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
            levels: HashMap::new(),
            watched: Vec::new(),
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
                if matches!(
                    click.kind(),
                    EventKind::AddToCart | EventKind::Checkout | EventKind::Purchase
                ) {
                    self.state.conversion.count(bucket);
                }
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
            if self.settings.levels {
                self.count_levels(click.url(), bucket, t);
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
                    .chain(self.state.groups.values())
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
            // The sequential test first sees the bucket's last events, then it closes.
            self.sequential(bucket, bucket + len, out);
            self.close_bucket(bucket, out);
            bucket += len;
        }
        self.state.next_close_ms = Some(bucket);
        // Within the open bucket only (not after the end-of-input jump).
        if bucket
            .checked_add(len)
            .is_some_and(|end| watermark_ms < end)
        {
            self.sequential(bucket, watermark_ms, out);
        }
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
        self.refresh_watched();
        Ok(())
    }
}

clickwatch_sdk::export_plugin!(TrafficAnomaly);
