//! bot-detector: sessions and IPs that behave in humanly impossible ways.
//!
//! # Rules
//! Each alert's kind is `bot/<rule>`; a session (or IP) is alerted once, by the first rule
//! that convicts it, until it is evicted, so a bot does not flood the alert topic.
//!
//! | rule | entity | fires when (defaults) |
//! |---|---|---|
//! | `fast-clicker` | session | more than `max_events` (25) events within `window_ms` (10 s) |
//! | `no-dwell` | session | the median of the last `gap_sample` (20) gaps, once there are `min_gaps` (10), is under `min_dwell_ms` (1 s) |
//! | `regular-gaps` | session | those gaps' coefficient of variation is under `max_gap_cv` (0.2): clockwork |
//! | `page-breadth` | session | `max_distinct_pages` (40) distinct urls in one session |
//! | `headless` | session | the user agent contains one of `headless_markers` (`HeadlessChrome`, `python-requests`, `scrapy`, ...) |
//! | `ip-farm` | ip | one IP starts more than `max_sessions_per_ip` (20) sessions within `ip_window_secs` (600 s); sessions that open with an ad click are left to `click-fraud` |
//!
//! Humans dwell seconds to a minute between events with widely varying gaps, look at a
//! dozen pages, and a visitor's address carries a session or two; the generator's bots fire
//! every 50-300 ms across up to 200 product pages.
//!
//! # State
//! See [`rules::SessionState`] and [`rules::IpState`] for the bytes per entity. Sessions and
//! IPs unseen for `idle_timeout_secs` are evicted on `tick`; `max_sessions` and `max_ips`
//! cap the maps.
//!
//! # Layout
//! - [`settings`]: the documented settings and the rule names.
//! - [`rules`]: per-session and per-IP evidence and the rules.
//! - this file: the plugin (routing events, alerts, eviction, snapshots).

pub mod crowd;
pub mod rules;
pub mod settings;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use clickwatch_sdk::prelude::*;
use serde::{Deserialize, Serialize};

use clickwatch_sdk::detect::EventRate;
use crowd::Crowd;
use rules::{IpState, SessionState, Verdict, headless_marker};
pub use settings::{RULES, Settings};

/// Prefix of every alert kind: the anomaly label `bot` matches `bot/<rule>`.
pub const KIND_PREFIX: &str = "bot/";

/// Everything that survives a reload.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    sessions: HashMap<String, SessionState>,
    ips: HashMap<String, IpState>,
    #[serde(default)]
    untracked: u64,
    /// Session-start evidence keyed `ip:<address>` or `net:<network>` (absent in 0.2
    /// snapshots).
    #[serde(default)]
    crowds: HashMap<String, Crowd>,
    /// Session starts from a source (IP, network) already active, this instance-wide: the
    /// prior of the crowd test. On the open internet a visitor's address rarely starts a
    /// second session within minutes; where it does (offices, carrier NAT), this says so.
    #[serde(default)]
    repeats_ip: EventRate,
    #[serde(default)]
    repeats_net: EventRate,
    /// Crowd entries per kind (`ip`, `net`), kept with the map so no call counts it.
    #[serde(default)]
    active: (u32, u32),
}

/// The detector.
#[derive(Debug)]
pub struct BotDetector {
    settings: Settings,
    state: State,
    /// `headless_markers`, lower-cased once.
    markers: Vec<String>,
}

impl BotDetector {
    /// Sessions and IPs currently tracked.
    pub fn tracked(&self) -> (usize, usize) {
        (self.state.sessions.len(), self.state.ips.len())
    }

    fn memory_min(&self) -> f64 {
        self.settings.idle_timeout_secs as f64 / 60.0
    }

    /// The crowd test's null for a source of `kind` (`ip` or `net`) at `t`: the instance's
    /// repeat session starts (the source's own left out) spread over its active sources of
    /// that kind, plus one pseudo-session per memory.
    fn crowd_null(&self, kind: &str, key: &str, t: i64) -> crowd::Null {
        let tau = self.memory_min();
        let (ips, nets) = self.state.active;
        let active = f64::from(if kind == "ip" { ips } else { nets }.max(1));
        let own = self
            .state
            .crowds
            .get(key)
            .map_or(0.0, |c| c.all.per_min(t, tau));
        let repeats = if kind == "ip" {
            &self.state.repeats_ip
        } else {
            &self.state.repeats_net
        };
        let others = (repeats.per_min(t, tau) - own).max(0.0);
        crowd::Null {
            prior_per_min: (others + 1.0 / tau) / active,
            min_rate: self.settings.crowd_min_rate_per_min,
            threshold: (1.0 / self.settings.crowd_tail).ln(),
            tau_min: tau,
        }
    }

    /// A session (not opened by an ad click) started from `ip` at `t`: the crowd tests of the
    /// IP and of its network. Returns the alert when one convicts.
    fn crowd_session(&mut self, ip: &str, t: i64, click: &Click<'_>) -> Option<Alert> {
        let tau = self.memory_min();
        let digest = rules::short_hash(ip);
        let network = clickwatch_sdk::net::network(ip);
        let mut found = None;
        for (kind, value) in [("ip", Some(ip.to_owned())), ("net", network)] {
            let rule = if kind == "ip" { "ip-farm" } else { "network" };
            let Some(value) = value else { continue };
            if !self.settings.enabled(rule) {
                continue;
            }
            let key = format!("{kind}:{value}");
            let null = self.crowd_null(kind, &key, t);
            if self.state.crowds.contains_key(&key) {
                let repeats = if kind == "ip" {
                    &mut self.state.repeats_ip
                } else {
                    &mut self.state.repeats_net
                };
                repeats.add(t, tau);
            } else {
                if self.state.crowds.len() >= 2 * self.settings.max_ips as usize {
                    continue;
                }
                self.state.crowds.insert(key.clone(), Crowd::default());
                if kind == "ip" {
                    self.state.active.0 += 1;
                } else {
                    self.state.active.1 += 1;
                }
            }
            let Some(crowd) = self.state.crowds.get_mut(&key) else {
                continue;
            };
            let Some(c) = crowd.session(t, digest, &null) else {
                continue;
            };
            if kind == "net" && c.ips < self.settings.min_network_ips as usize {
                // A network's evidence from one or two addresses is theirs (judged as IPs).
                continue;
            }
            crowd.alerted = true;
            if kind == "ip" {
                match self.state.ips.get_mut(ip) {
                    Some(st) if st.alerted => continue,
                    Some(st) => st.alerted = true,
                    None => {}
                }
            }
            let (entity_type, severity) = if kind == "ip" {
                ("ip", Severity::Critical)
            } else {
                ("subnet", Severity::Warning)
            };
            let v = Verdict {
                rule,
                window_start_ms: c.start_ms,
                score: c.statistic,
                message: format!(
                    "{} sessions from {} {value} since {:.1} min ago ({} IPs; {:.3} a minute \
                     expected)",
                    c.sessions,
                    if kind == "ip" { "IP" } else { "network" },
                    (t - c.start_ms) as f64 / 60_000.0,
                    c.ips,
                    c.mu0
                ),
            };
            found = found.or(Some(
                alert(v, entity_type, &value, t, click).severity(severity),
            ));
        }
        found
    }
}

fn alert(v: Verdict, entity_type: &str, entity: &str, t: i64, click: &Click<'_>) -> Alert {
    Alert::new(&format!("{KIND_PREFIX}{}", v.rule), entity_type, entity)
        .severity(Severity::Warning)
        .window(v.window_start_ms, t)
        .score(v.score)
        .message(v.message)
        .details(serde_json::json!({
            "rule": v.rule,
            "session": click.session(),
            "ip": click.ip(),
            "user_agent": click.user_agent(),
            "url": click.url(),
        }))
}

impl Plugin for BotDetector {
    type Settings = Settings;

    fn info() -> PluginInfo {
        PluginInfo::detector("bot-detector", env!("CARGO_PKG_VERSION"))
            // Sessions, and the farm rule over the sessions of one network.
            .keyed_by(StateKey::IpNetwork)
    }

    fn new(settings: Settings) -> Result<Self, String> {
        settings.validate()?;
        let markers = settings
            .headless_markers
            .iter()
            .map(|m| m.to_ascii_lowercase())
            .collect();
        Ok(BotDetector {
            settings,
            state: State::default(),
            markers,
        })
    }

    fn process(&mut self, batch: &Batch<'_>, out: &mut Output) -> Result<(), String> {
        // A copy, so the crowd test below can borrow the detector (once per batch).
        let settings = self.settings.clone();
        let s = &settings;
        for click in batch.iter() {
            let t = click.time_ms();
            let sessions = &mut self.state.sessions;
            let is_new = !sessions.contains_key(click.session());
            if is_new {
                if sessions.len() >= s.max_sessions as usize {
                    self.state.untracked += 1;
                    continue;
                }
                sessions.insert(click.session().to_owned(), SessionState::default());
            }
            let Some(state) = sessions.get_mut(click.session()) else {
                continue;
            };
            state.observe(t, click.url(), s);
            // Sessions that open with an ad click are left to click-fraud: a flood of them
            // from one address is ad fraud, and naming it a bot farm too would double-report.
            if is_new
                && s.enabled("ip-farm")
                && click.kind() != EventKind::AdClick
                && let Some(ip) = click.ip()
            {
                let ips = &mut self.state.ips;
                if !ips.contains_key(ip) && ips.len() < s.max_ips as usize {
                    ips.insert(ip.to_owned(), IpState::default());
                }
                if let Some(ip_state) = ips.get_mut(ip)
                    && let Some(v) = ip_state.new_session(t, click.session(), s)
                {
                    ip_state.alerted = true;
                    out.alert(alert(v, "ip", ip, t, &click).severity(Severity::Critical));
                }
            }
            // Sessions of a signed-in user are not counted: a returning customer opening
            // several sessions is the commonest legitimate repeat, and an account answers for
            // itself.
            if is_new
                && click.kind() != EventKind::AdClick
                && click.user().is_none()
                && let Some(ip) = click.ip()
                && let Some(a) = self.crowd_session(ip, t, &click)
            {
                out.alert(a);
            }
            let Some(state) = self.state.sessions.get_mut(click.session()) else {
                continue;
            };
            if state.alerted {
                continue;
            }
            let verdict = if is_new && s.enabled("headless") {
                click
                    .user_agent()
                    .and_then(|ua| headless_marker(ua, &self.markers))
                    .map(|m| Verdict {
                        rule: "headless",
                        window_start_ms: t,
                        score: 1.0,
                        message: format!("automation user agent (`{m}`)"),
                    })
            } else {
                None
            };
            if let Some(v) = verdict.or_else(|| state.judge(t, s)) {
                state.convict();
                out.alert(alert(v, "session", click.session(), t, &click));
            }
        }
        Ok(())
    }

    fn tick(&mut self, watermark_ms: i64, _out: &mut Output) -> Result<(), String> {
        let horizon =
            watermark_ms.saturating_sub(self.settings.idle_timeout_secs.saturating_mul(1000));
        self.state.sessions.retain(|_, s| s.last_seen >= horizon);
        self.state.ips.retain(|_, s| s.last_seen >= horizon);
        self.state.crowds.retain(|_, c| c.last_seen >= horizon);
        let ips = self
            .state
            .crowds
            .keys()
            .filter(|k| k.starts_with("ip:"))
            .count();
        let nets = self.state.crowds.len() - ips;
        self.state.active = (ips as u32, nets as u32);
        Ok(())
    }

    fn snapshot(&self) -> Result<Vec<u8>, String> {
        clickwatch_sdk::state::encode(&self.state)
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        if state.is_empty() {
            return Ok(());
        }
        // Version 0.1.0 snapshotted the bare session map; read it so an upgrade keeps state.
        self.state = match clickwatch_sdk::state::decode::<State>(state) {
            Ok(s) => s,
            Err(e) => State {
                sessions: clickwatch_sdk::state::decode(state).map_err(|_| e)?,
                ..State::default()
            },
        };
        Ok(())
    }
}

clickwatch_sdk::export_plugin!(BotDetector);
