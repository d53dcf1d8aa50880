//! What the dashboard shows of the alerts delivered so far: the latest few, counts per event
//! minute per detector, and the entities alerted on most. All bounded, whatever the run's
//! length or the number of entities.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::Serialize;

use crate::alert::{Alert, Severity};

/// Latest alerts kept.
pub const RECENT: usize = 50;
/// Event minutes kept for the per-minute chart.
pub const MINUTES: usize = 60;
/// Distinct (entity type, entity) pairs counted; past it, only pairs already counted grow
/// (a top list over the first ones seen, said so on the dashboard).
pub const ENTITIES: usize = 10_000;

/// One alert as the dashboard lists it.
#[derive(Debug, Clone, Serialize)]
pub struct AlertLine {
    /// Event time of the anomaly, ms since the epoch.
    pub time_ms: i64,
    /// Detector.
    pub detector: String,
    /// Kind.
    pub kind: String,
    /// How bad (serialised `info`, `warning` or `critical`).
    pub severity: Severity,
    /// What it is about.
    pub entity_type: String,
    /// Which one.
    pub entity: String,
    /// Strength of the evidence.
    pub score: f64,
}

/// An entity and its alert count.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EntityCount {
    /// `ip`, `page`, `site`, ...
    pub entity_type: String,
    /// Which one.
    pub entity: String,
    /// Alerts about it.
    pub alerts: u64,
}

/// Alerts of one event minute, by detector.
#[derive(Debug, Clone, Serialize)]
pub struct MinuteCount {
    /// Start of the minute, ms since the epoch.
    pub minute_ms: i64,
    /// Alerts per detector in it.
    pub by_detector: BTreeMap<String, u64>,
}

/// The bounded alert log.
#[derive(Debug, Default)]
pub struct AlertLog {
    recent: VecDeque<AlertLine>,
    /// Event minute (ms) → detector → alerts.
    per_minute: BTreeMap<i64, BTreeMap<String, u64>>,
    entities: HashMap<(String, String), u64>,
    /// Whether some entity was not counted because [`ENTITIES`] were already.
    pub entities_capped: bool,
}

impl AlertLog {
    /// Notes alerts that were delivered.
    pub fn record(&mut self, alerts: &[Alert]) {
        for a in alerts {
            if self.recent.len() == RECENT {
                self.recent.pop_front();
            }
            self.recent.push_back(AlertLine {
                time_ms: a.time_ms,
                detector: a.detector.clone(),
                kind: a.kind.clone(),
                severity: a.severity,
                entity_type: a.entity_type.clone(),
                entity: a.entity.clone(),
                score: a.score,
            });
            let minute = a.time_ms.div_euclid(60_000) * 60_000;
            *self
                .per_minute
                .entry(minute)
                .or_default()
                .entry(a.detector.clone())
                .or_default() += 1;
            while self.per_minute.len() > MINUTES {
                self.per_minute.pop_first();
            }
            let key = (a.entity_type.clone(), a.entity.clone());
            let room = self.entities.len() < ENTITIES;
            match self.entities.get_mut(&key) {
                Some(n) => *n += 1,
                None if room => {
                    self.entities.insert(key, 1);
                }
                None => self.entities_capped = true,
            }
        }
    }

    /// The latest alerts, newest first.
    pub fn recent(&self) -> Vec<AlertLine> {
        self.recent.iter().rev().cloned().collect()
    }

    /// Alerts per event minute per detector, oldest minute first.
    pub fn per_minute(&self) -> Vec<MinuteCount> {
        self.per_minute
            .iter()
            .map(|(m, by)| MinuteCount {
                minute_ms: *m,
                by_detector: by.clone(),
            })
            .collect()
    }

    /// The `n` entities with the most alerts (ties by name).
    pub fn top(&self, n: usize) -> Vec<EntityCount> {
        let mut all: Vec<EntityCount> = self
            .entities
            .iter()
            .map(|((t, e), n)| EntityCount {
                entity_type: t.clone(),
                entity: e.clone(),
                alerts: *n,
            })
            .collect();
        all.sort_by(|a, b| {
            b.alerts
                .cmp(&a.alerts)
                .then_with(|| (&a.entity_type, &a.entity).cmp(&(&b.entity_type, &b.entity)))
        });
        all.truncate(n);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(minute: i64, detector: &str, entity: &str) -> Alert {
        Alert {
            detector: detector.into(),
            detector_version: "1".into(),
            kind: "k".into(),
            severity: Severity::Warning,
            entity_type: "ip".into(),
            entity: entity.into(),
            time_ms: minute * 60_000 + 5,
            window_start_ms: 0,
            score: 1.0,
            message: String::new(),
            details: serde_json::Value::Null,
        }
    }

    #[test]
    fn stays_bounded_and_ranks_entities() {
        let mut log = AlertLog::default();
        let alerts: Vec<Alert> = (0..200)
            .map(|i| {
                alert(
                    i,
                    if i % 2 == 0 { "a" } else { "b" },
                    &format!("e{}", i % 7),
                )
            })
            .collect();
        log.record(&alerts);
        assert_eq!(log.recent().len(), RECENT);
        assert_eq!(log.recent()[0].time_ms, 199 * 60_000 + 5, "newest first");
        let minutes = log.per_minute();
        assert_eq!(minutes.len(), MINUTES);
        assert_eq!(minutes[0].minute_ms, 140 * 60_000);
        let top = log.top(3);
        assert_eq!(top[0].alerts, 29);
        assert_eq!(top.iter().map(|e| e.alerts).sum::<u64>(), 29 * 3);
        assert_eq!(top[0].entity, "e0");
        assert!(!log.entities_capped);
    }
}
