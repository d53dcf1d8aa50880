//! click-fraud: ad clicks without conversions, concentrated on IPs, referrers or devices.
//!
//! # Method
//! - **per IP** (`click-fraud/ip`, entity `ip`): the times of the IP's `ad_click` events and
//!   of its conversions (`add_to_cart`, `checkout`, `purchase`) are kept for
//!   `ip_window_secs` (600). When an ad click brings the window to at least
//!   `min_ip_ad_clicks` (5) ad clicks with conversions at most `max_ip_conversion_rate` (0.1)
//!   of them, the IP is alerted, once until it is evicted; `time_ms` is that ad click. Each ad
//!   click is judged once the watermark has passed it, in time order, so the verdict does not
//!   depend on the order the IP's sessions were read in (see [`ip`]). A human
//!   arrives from an ad about once per visit and each visitor has its own address, so five in
//!   ten minutes without buying is not human.
//! - **per referrer and per device** (`click-fraud/referrer`, `click-fraud/device`): an ad
//!   click whose session shows no further non-ad event within `exit_secs` (60) is an *exit*.
//!   Exits are counted per `bucket_secs` bucket for the ad click's referrer and device, and
//!   each closed bucket judges the last `group_window_buckets` (10) buckets against a slow
//!   EWMA baseline (`group_baseline_alpha` 0.02, learned only from normal windows; a new
//!   group starts from zero): it alerts when the window has at least `min_group_exits` (10)
//!   exits, making up at least `min_group_exit_share` (0.5) of its ad clicks, with ad clicks
//!   at least `min_group_ad_ratio` (0.8) of their baseline (an outage cuts sessions short but
//!   also removes ad clicks; fraud adds them), at least
//!   `group_exit_ratio` (3) times the baseline, with a Poisson z of at least
//!   `group_z_threshold` (4); then the group is quiet for `group_cooldown_secs` (3600).
//!   Normal visitors who land from an ad go on browsing, so their exits are a few percent;
//!   fraud typically arrives through its own referrer (a publisher id) made of exits. The
//!   device rule is off by default (`device_rule`).
//!
//! # State
//! Per IP about 100 bytes plus the address and 8 bytes per ad click or conversion in the
//! window (bounded to `4 × min_ip_ad_clicks` entries each); per ad-click session waiting for
//! its exit verdict about 120 bytes plus its id, referrer and device; per group see
//! [`group::Group`]. Everything idle for `idle_timeout_secs` is evicted on `tick`, and the
//! `max_*` settings cap each map.
//!
//! # Layout
//! - [`settings`]: the documented settings.
//! - [`group`]: the referrer/device exit rule.
//! - [`ip`]: the per-IP rule.
//! - this file: the plugin (IP rule, exit verdicts, buckets, eviction, snapshots).

pub mod evidence;
pub mod group;
pub mod ip;
pub mod settings;

#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, VecDeque};

use clickwatch_sdk::prelude::*;
use serde::{Deserialize, Serialize};

use clickwatch_sdk::buckets::skip_silence;
use clickwatch_sdk::detect::EventRate as Rate;
use evidence::{Conviction, Null, Source};
use group::Group;
use ip::IpState;
pub use settings::Settings;

/// An ad-click session waiting for its exit verdict.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    ad_ms: i64,
    referrer: Option<String>,
    device: Option<String>,
    /// The ad click's IP (absent in 0.1 snapshots).
    #[serde(default)]
    ip: Option<String>,
}

/// Site-wide exit statistics the sequential test's null is made of.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct ExitShare {
    /// Exits and settled ad sessions over the memory (`sequential_memory_secs`) and over the
    /// last few minutes ([`evidence::FAST_MIN`]).
    exits: Rate,
    settled: Rate,
    exits_fast: Rate,
    settled_fast: Rate,
    /// Every event of the site, over the memory ...
    #[serde(default)]
    events: Rate,
    /// ... and per second over the last `2 × exit_secs` (second, events), oldest first.
    #[serde(default)]
    seconds: VecDeque<(i64, u32)>,
}

impl ExitShare {
    fn count_event(&mut self, t: i64, tau_min: f64) {
        self.events.add(t, tau_min);
        let sec = t.div_euclid(1000);
        match self.seconds.iter_mut().rev().find(|(s, _)| *s == sec) {
            Some((_, n)) => *n = n.saturating_add(1),
            None => {
                // Out-of-order seconds are appended too; sums do not care about the order.
                self.seconds.push_back((sec, 1));
            }
        }
        // Bounded whatever the input: far more seconds than a watermark's worth means the
        // input is far out of order, and the oldest go.
        while self.seconds.len() > MAX_SECONDS {
            self.seconds.pop_front();
        }
    }

    /// Forgets seconds older than `keep_secs` before the watermark.
    fn prune(&mut self, watermark_ms: i64, keep_secs: i64) {
        let horizon = watermark_ms.div_euclid(1000).saturating_sub(keep_secs);
        self.seconds.retain(|(s, _)| *s >= horizon);
    }

    /// Site events with a time in `(from_ms, to_ms]`.
    fn events_between(&self, from_ms: i64, to_ms: i64) -> u64 {
        let (a, b) = (from_ms.div_euclid(1000), to_ms.div_euclid(1000));
        self.seconds
            .iter()
            .filter(|(s, _)| *s > a && *s <= b)
            .map(|(_, n)| u64::from(*n))
            .sum()
    }
}

/// Seconds of site event counts kept at most (an hour; the exit window needs a minute or two).
const MAX_SECONDS: usize = 3_600;

/// Everything that survives a reload.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    ips: HashMap<String, IpState>,
    pending: HashMap<String, Pending>,
    /// Groups keyed `referrer:<value>` or `device:<value>`.
    groups: HashMap<String, Group>,
    /// Sequential evidence per network, keyed `subnet:<network>` (absent in 0.1 snapshots).
    #[serde(default)]
    sources: HashMap<String, Source>,
    #[serde(default)]
    share: ExitShare,
    next_close_ms: Option<i64>,
    untracked: u64,
    /// IPs with events since the last tick, or ad clicks waiting for the watermark (absent in
    /// older snapshots).
    #[serde(default)]
    unjudged_ips: BTreeSet<String>,
}

/// The detector.
#[derive(Debug)]
pub struct ClickFraud {
    settings: Settings,
    state: State,
}

fn is_conversion(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::AddToCart | EventKind::Checkout | EventKind::Purchase
    )
}

impl ClickFraud {
    fn bucket_of(&self, t: i64) -> i64 {
        let len = i64::from(self.settings.bucket_secs) * 1000;
        t.div_euclid(len) * len
    }

    /// IPs, pending sessions and groups currently tracked.
    pub fn tracked(&self) -> (usize, usize, usize) {
        (
            self.state.ips.len(),
            self.state.pending.len(),
            self.state.groups.len(),
        )
    }

    fn count_group(&mut self, dimension: &str, value: Option<&str>, t: i64, exit: bool) {
        let Some(value) = value else { return };
        let enabled = match dimension {
            "referrer" => self.settings.referrer_rule,
            _ => self.settings.device_rule,
        };
        if !enabled {
            return;
        }
        let bucket = self.bucket_of(t);
        if self.state.next_close_ms.is_some_and(|n| bucket < n) {
            return;
        }
        let key = format!("{dimension}:{value}");
        let groups = &mut self.state.groups;
        if !groups.contains_key(&key) {
            if groups.len() >= self.settings.max_groups as usize {
                self.state.untracked += 1;
                return;
            }
            groups.insert(key.clone(), Group::default());
        }
        if let Some(g) = groups.get_mut(&key) {
            g.count(bucket, t, exit);
        }
    }

    /// Records an ad click or a conversion for the IP rule (judged at the watermark, see
    /// [`ip`]).
    fn ip_event(&mut self, ip: &str, click: &Click<'_>) {
        let ips = &mut self.state.ips;
        if !ips.contains_key(ip) {
            if ips.len() >= self.settings.max_ips as usize {
                self.state.untracked += 1;
                return;
            }
            ips.insert(ip.to_owned(), IpState::default());
        }
        if let Some(st) = ips.get_mut(ip) {
            st.record(click);
            // Judged, and its lists pruned to the window, at the next tick.
            if !self.state.unjudged_ips.contains(ip) {
                self.state.unjudged_ips.insert(ip.to_owned());
            }
        }
    }

    /// Judges the IPs with ad clicks the watermark has passed, in IP order.
    fn judge_ips(&mut self, watermark_ms: i64, out: &mut Output) {
        let mut done = Vec::new();
        for ip in &self.state.unjudged_ips {
            let Some(st) = self.state.ips.get_mut(ip) else {
                done.push(ip.clone());
                continue;
            };
            if let Some(alert) = st.judge(ip, watermark_ms, &self.settings) {
                out.alert(alert);
            }
            if !st.has_unjudged() {
                done.push(ip.clone());
            }
        }
        for ip in done {
            self.state.unjudged_ips.remove(&ip);
        }
    }

    /// Settles the exit verdict of ad-click sessions whose grace ran out by `watermark_ms`,
    /// in time order (then session id), so the sequential tests see the same sequence however
    /// the input was batched.
    fn settle_exits(&mut self, watermark_ms: i64, out: &mut Output) {
        let grace = i64::from(self.settings.exit_secs) * 1000;
        let mut due: Vec<(i64, String)> = self
            .state
            .pending
            .iter()
            .filter(|(_, p)| p.ad_ms.saturating_add(grace) <= watermark_ms)
            .map(|(k, p)| (p.ad_ms, k.clone()))
            .collect();
        due.sort_unstable();
        for (_, key) in due {
            if let Some(p) = self.state.pending.remove(&key) {
                let at = p.ad_ms.saturating_add(grace);
                self.count_group("referrer", p.referrer.as_deref(), at, true);
                self.count_group("device", p.device.as_deref(), at, true);
                if let Some(alert) = self.settle(&p, at, true) {
                    out.alert(alert);
                }
            }
        }
    }

    /// The null of the sequential test for `source` at `t`. Site figures leave the network's
    /// own sessions out, so a fraud that is most of the site's ad traffic does not set its
    /// own null.
    fn null(&self, source: Option<&Source>, t: i64) -> Null {
        let s = &self.settings;
        let tau_min = f64::from(s.sequential_memory_secs) / 60.0;
        let active = self.state.sources.len().max(1);
        let share = &self.state.share;
        let own = |f: fn(&Source) -> &Rate, tau: f64| source.map_or(0.0, |s| f(s).per_min(t, tau));
        let fast = evidence::FAST_MIN;
        let exits = (share.exits.per_min(t, tau_min) - own(|s| &s.exits, tau_min)).max(0.0);
        // The long-run share of exits among settled ad sessions, at least 2 %: a site whose
        // ad visitors hardly ever exit would otherwise read any exit as an outage's.
        let settled = share.settled.per_min(t, tau_min).max(1e-9);
        let long = (share.exits.per_min(t, tau_min) / settled).clamp(0.02, 0.9);
        let fast_exits =
            (share.exits_fast.per_min(t, fast) - own(|s| &s.exits_fast, fast)).max(0.0);
        let fast_settled =
            (share.settled_fast.per_min(t, fast) - own(|s| &s.settled_fast, fast)).max(0.0);
        // With too few other sessions in the last minutes there is no current share to speak of.
        let short = if fast_settled * fast >= 10.0 {
            fast_exits / fast_settled
        } else {
            long
        };
        Null {
            // One pseudo-exit per memory (a Laplace-style prior): a site without exits does
            // not make a network's first exit infinitely unlikely.
            prior_per_min: (exits + 1.0 / tau_min) / active as f64,
            exits_per_continued: long / (1.0 - long),
            scale: (short / long).max(1.0),
            min_rate: s.sequential_min_rate_per_min,
            threshold: (1.0 / s.sequential_tail).ln(),
            tau_min,
        }
    }

    /// One ad session's verdict (an exit settled at `t`, or continued at `t`) for its
    /// network's test. An exit while the site's traffic was thin during its exit window (an
    /// outage, or the end of a surge, cuts sessions short everywhere) feeds the rates but is
    /// no evidence. Returns the alert when the exit convicts the network.
    fn settle(&mut self, p: &Pending, t: i64, exit: bool) -> Option<Alert> {
        if !self.settings.sequential_rule {
            return None;
        }
        let tau_min = f64::from(self.settings.sequential_memory_secs) / 60.0;
        let share = &mut self.state.share;
        share.settled.add(t, tau_min);
        share.settled_fast.add(t, evidence::FAST_MIN);
        if exit {
            share.exits.add(t, tau_min);
            share.exits_fast.add(t, evidence::FAST_MIN);
        }
        let share = &self.state.share;
        let window_ms = i64::from(self.settings.exit_secs) * 1000;
        let usual = share.events.per_min(t, tau_min) * window_ms as f64 / 60_000.0;
        let site_thinned = (share.events_between(t - window_ms, t) as f64)
            < self.settings.min_group_ad_ratio * usual;
        let network = p.ip.as_deref().and_then(evidence::network)?;
        let key = format!("subnet:{network}");
        if !self.state.sources.contains_key(&key) {
            if self.state.sources.len() >= self.settings.max_ips as usize {
                self.state.untracked += 1;
                return None;
            }
            self.state.sources.insert(key.clone(), Source::default());
        }
        let null = self.null(self.state.sources.get(&key), t);
        let cooldown = i64::from(self.settings.group_cooldown_secs) * 1000;
        let source = self.state.sources.get_mut(&key)?;
        if !exit {
            source.continued(t, &null);
            return None;
        }
        let c = source.exited(t, p.ip.as_deref(), &null, !site_thinned)?;
        source.quiet_until_ms = t.saturating_add(cooldown);
        let alert = self.convicted(&network, &c, t)?;
        Some(alert.details(serde_json::json!({
            "rule": "sequential",
            "subnet": network,
            "ad_clicks": c.exits,
            "ips": c.ips,
            "statistic": c.statistic,
            "expected_exits_per_min": c.mu0,
            "referrer": p.referrer,
            "device": p.device,
        })))
    }

    /// The alert for a convicted network, when its evidence came from at least two IPs (one
    /// IP clicking is the IP rule's to judge: two bounced ad clicks from one address are a
    /// person as often as not).
    fn convicted(&mut self, network: &str, c: &Conviction, t: i64) -> Option<Alert> {
        if c.ips.len() < 2 {
            return None;
        }
        let (kind, entity_type, entity) = ("click-fraud/subnet", "subnet", network.to_owned());
        Some(
            Alert::new(kind, entity_type, &entity)
                .severity(Severity::Critical)
                .window(c.start_ms, t)
                .score(c.statistic)
                .message(format!(
                    "{} unconverted ad clicks from network {network} in {:.1} min ({} IPs; \
                     {:.3} exits per minute expected)",
                    c.exits,
                    (t - c.start_ms) as f64 / 60_000.0,
                    c.ips.len(),
                    c.mu0
                ))
                .details(serde_json::json!({
                    "rule": "sequential",
                    "subnet": network,
                    "ad_clicks": c.exits,
                    "ips": c.ips,
                    "statistic": c.statistic,
                    "expected_exits_per_min": c.mu0,
                })),
        )
    }
}

impl Plugin for ClickFraud {
    type Settings = Settings;

    fn info() -> PluginInfo {
        PluginInfo::detector("click-fraud", env!("CARGO_PKG_VERSION"))
            // Referrer and device groups compare against all traffic.
            .keyed_by(StateKey::Global)
    }

    fn new(settings: Settings) -> Result<Self, String> {
        settings.validate()?;
        Ok(ClickFraud {
            settings,
            state: State::default(),
        })
    }

    fn process(&mut self, batch: &Batch<'_>, _out: &mut Output) -> Result<(), String> {
        let groups_on = self.settings.referrer_rule
            || self.settings.device_rule
            || self.settings.sequential_rule;
        let tau_min = f64::from(self.settings.sequential_memory_secs) / 60.0;
        for click in batch.iter() {
            let kind = click.kind();
            if self.settings.sequential_rule {
                self.state.share.count_event(click.time_ms(), tau_min);
            }
            if kind != EventKind::AdClick {
                // Any further activity clears the session of being an exit.
                if !self.state.pending.is_empty()
                    && let Some(p) = self.state.pending.remove(click.session())
                {
                    self.settle(&p, click.time_ms(), false);
                }
                if is_conversion(kind)
                    && let Some(ip) = click.ip()
                {
                    self.ip_event(ip, &click);
                }
                continue;
            }
            if let Some(ip) = click.ip() {
                self.ip_event(ip, &click);
            }
            if !groups_on {
                continue;
            }
            let t = click.time_ms();
            self.count_group("referrer", click.referrer(), t, false);
            self.count_group("device", click.device(), t, false);
            if !self.state.pending.contains_key(click.session())
                && self.state.pending.len() < self.settings.max_pending as usize
            {
                self.state.pending.insert(
                    click.session().to_owned(),
                    Pending {
                        ad_ms: t,
                        referrer: click.referrer().map(str::to_owned),
                        device: click.device().map(str::to_owned),
                        ip: click.ip().map(str::to_owned),
                    },
                );
            }
        }
        Ok(())
    }

    fn tick(&mut self, watermark_ms: i64, out: &mut Output) -> Result<(), String> {
        self.judge_ips(watermark_ms, out);
        self.settle_exits(watermark_ms, out);
        self.state
            .share
            .prune(watermark_ms, 2 * i64::from(self.settings.exit_secs));
        let len = i64::from(self.settings.bucket_secs) * 1000;
        let next = match self.state.next_close_ms {
            Some(n) => Some(n),
            None => self
                .state
                .groups
                .values()
                .flat_map(|g| g.open.iter().map(|(b, _, _)| *b))
                .min(),
        };
        if let Some(mut bucket) = next {
            let catchup = i64::from(self.settings.group_window_buckets) + 1;
            // Buckets any group has counts in: a skip must stop short of them.
            let counted: std::collections::BTreeSet<i64> = self
                .state
                .groups
                .values()
                .flat_map(|g| g.open.iter().map(|(b, _, _)| *b))
                .collect();
            // `checked_add`: the end-of-input tick may carry a watermark near `i64::MAX`, where a
            // saturating sum would compare as "closable" forever.
            while bucket
                .checked_add(len)
                .is_some_and(|end| end <= watermark_ms)
            {
                // A long silence in bounded work, never past a bucket with counts.
                if let Some(next) = skip_silence(bucket, watermark_ms, len, catchup, &counted) {
                    bucket = next;
                    continue;
                }
                let end = bucket + len;
                for (key, g) in &mut self.state.groups {
                    if let Some(f) = g.close(bucket, end, &self.settings) {
                        let (dimension, value) = key.split_once(':').unwrap_or(("group", key));
                        out.alert(
                            Alert::new(&format!("click-fraud/{dimension}"), dimension, value)
                                .severity(Severity::Warning)
                                .window(end - len * g.window.len() as i64, end)
                                .score(f.z)
                                .message(format!(
                                    "{} ad clicks via {dimension} {value} exited at once in the \
                                     last {} buckets ({} ad clicks, {:.1} exits expected)",
                                    f.exits,
                                    g.window.len(),
                                    f.ad_clicks,
                                    f.expected
                                ))
                                .details(serde_json::json!({
                                    "exits": f.exits,
                                    "ad_clicks": f.ad_clicks,
                                    "expected_exits": f.expected,
                                    "z": f.z,
                                })),
                        );
                    }
                }
                bucket = end;
            }
            self.state.next_close_ms = Some(bucket);
        }
        let horizon =
            watermark_ms.saturating_sub(i64::from(self.settings.idle_timeout_secs) * 1000);
        self.state
            .ips
            .retain(|_, s| s.last_seen_ms >= horizon || s.has_unjudged());
        self.state.pending.retain(|_, p| p.ad_ms >= horizon);
        self.state.groups.retain(|_, g| g.last_seen_ms >= horizon);
        self.state.sources.retain(|_, s| !s.idle(horizon));
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
        for ip in self.state.ips.values_mut() {
            ip.normalize();
        }
        Ok(())
    }
}

clickwatch_sdk::export_plugin!(ClickFraud);
