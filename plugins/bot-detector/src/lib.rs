//! bot-detector: sessions that click faster than a human can.
//!
//! Rule: more than `max_events` events of one session within any `window_ms` of event time.
//! Each session keeps only the times of its last `max_events + 1` events, so state is bounded
//! per session; sessions idle for `idle_timeout_secs` of event time are evicted on `tick`.
//! A session is alerted once (until it is evicted), so a bot does not flood the alert topic.

use std::collections::{HashMap, VecDeque};

use clickwatch_sdk::prelude::*;
use serde::{Deserialize, Serialize};

/// Settings, from `[plugins.settings]` in the host config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Length of the sliding window in milliseconds (default 10 000).
    pub window_ms: i64,
    /// Events allowed within one window before the session is flagged (default 25).
    pub max_events: u32,
    /// A session unseen for this long (event time) is forgotten (default 1800).
    pub idle_timeout_secs: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            window_ms: 10_000,
            max_events: 25,
            idle_timeout_secs: 1_800,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SessionState {
    recent: VecDeque<i64>,
    last_seen: i64,
    alerted: bool,
}

/// The detector.
#[derive(Debug)]
pub struct BotDetector {
    settings: Settings,
    sessions: HashMap<String, SessionState>,
}

/// Alert kind emitted by this detector.
pub const ALERT_KIND: &str = "fast-clicker";

impl Plugin for BotDetector {
    type Settings = Settings;

    fn info() -> PluginInfo {
        PluginInfo::detector("bot-detector", env!("CARGO_PKG_VERSION"))
    }

    fn new(settings: Settings) -> Result<Self, String> {
        if settings.window_ms <= 0 {
            return Err(format!(
                "window_ms must be positive, got {}",
                settings.window_ms
            ));
        }
        if settings.max_events < 2 {
            return Err(format!(
                "max_events must be at least 2, got {}",
                settings.max_events
            ));
        }
        Ok(BotDetector {
            settings,
            sessions: HashMap::new(),
        })
    }

    fn process(&mut self, batch: &Batch<'_>, out: &mut Output) -> Result<(), String> {
        let limit = self.settings.max_events as usize;
        for click in batch.iter() {
            let state = match self.sessions.get_mut(click.session()) {
                Some(s) => s,
                None => self.sessions.entry(click.session().to_owned()).or_default(),
            };
            let t = click.time_ms();
            state.last_seen = state.last_seen.max(t);
            state.recent.push_back(t);
            while state.recent.len() > limit + 1 {
                state.recent.pop_front();
            }
            if state.alerted || state.recent.len() <= limit {
                continue;
            }
            let first = state.recent.front().copied().unwrap_or(t);
            let span = t - first;
            if span < self.settings.window_ms {
                state.alerted = true;
                let rate = state.recent.len() as f64 * 1000.0 / span.max(1) as f64;
                out.alert(
                    Alert::new(ALERT_KIND, "session", click.session())
                        .window(first, t)
                        .score(rate)
                        .message(format!(
                            "{} events in {span} ms ({rate:.1}/s)",
                            state.recent.len()
                        ))
                        .details(serde_json::json!({
                            "events": state.recent.len(),
                            "span_ms": span,
                            "ip": click.ip(),
                            "user_agent": click.user_agent(),
                        })),
                );
            }
        }
        Ok(())
    }

    fn tick(&mut self, watermark_ms: i64, _out: &mut Output) -> Result<(), String> {
        let horizon = watermark_ms - self.settings.idle_timeout_secs * 1000;
        self.sessions.retain(|_, s| s.last_seen >= horizon);
        Ok(())
    }

    fn snapshot(&self) -> Result<Vec<u8>, String> {
        clickwatch_sdk::state::encode(&self.sessions)
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        self.sessions = clickwatch_sdk::state::decode(state)?;
        Ok(())
    }
}

clickwatch_sdk::export_plugin!(BotDetector);

#[cfg(test)]
mod tests {
    use super::*;
    use clickwatch_sdk::testing::{Harness, TestClick};

    fn clicks(session: &str, start: i64, gap: i64, n: usize) -> Vec<TestClick> {
        (0..n)
            .map(|i| TestClick::click(start + gap * i as i64, session, "/p"))
            .collect()
    }

    #[test]
    fn flags_a_fast_session_once() {
        let mut h =
            Harness::<BotDetector>::new(r#"{"window_ms": 10000, "max_events": 10}"#).unwrap();
        let out = h.process(&clicks("bot", 0, 100, 30)).unwrap();
        assert_eq!(out.alerts.len(), 1);
        assert_eq!(out.alerts[0].entity, "bot");
        assert_eq!(out.alerts[0].kind, ALERT_KIND);
        assert!(out.alerts[0].score > 5.0);
        assert!(
            h.process(&clicks("bot", 3_000, 100, 30))
                .unwrap()
                .alerts
                .is_empty()
        );
    }

    #[test]
    fn leaves_a_human_pace_alone() {
        let mut h =
            Harness::<BotDetector>::new(r#"{"window_ms": 10000, "max_events": 10}"#).unwrap();
        // One event every 1.5 s: never more than 7 within 10 s.
        assert!(
            h.process(&clicks("human", 0, 1_500, 200))
                .unwrap()
                .alerts
                .is_empty()
        );
    }

    #[test]
    fn idle_sessions_are_evicted_and_state_survives_reload() {
        let mut h =
            Harness::<BotDetector>::new(r#"{"max_events": 10, "idle_timeout_secs": 60}"#).unwrap();
        h.process(&clicks("a", 0, 100, 5)).unwrap();
        h.process(&clicks("b", 100_000, 100, 5)).unwrap();
        h.reload().unwrap();
        assert_eq!(h.plugin().sessions.len(), 2);
        h.tick(130_000).unwrap();
        assert_eq!(h.plugin().sessions.keys().collect::<Vec<_>>(), vec!["b"]);
        // b's five earlier clicks were restored: six more make it a bot.
        let out = h.process(&clicks("b", 100_500, 100, 6)).unwrap();
        assert_eq!(out.alerts.len(), 1);
    }
}
