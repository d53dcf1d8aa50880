//! Scoring alerts against labels, per detector and anomaly kind, by the rules in
//! `docs/anomaly-labels.md`: kind prefix match, entity match, time within the label's window
//! plus a grace period. `surge` labels are not anomalies: nothing matches them, and false
//! alerts inside one (plus grace) are counted as surge alerts.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::alert::{Alert, Severity};
use crate::generator::labels::{Entity, Label, SURGE_KIND};

/// Default grace after a label's end within which an alert still counts: 10 simulated minutes.
pub const DEFAULT_GRACE_MS: i64 = 10 * 60_000;

/// One detector × anomaly kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KindScore {
    /// Detector (plugin) name.
    pub detector: String,
    /// Label kind, or the alert kind itself when it matches no label kind.
    pub kind: String,
    /// Labels of this kind.
    pub labels: usize,
    /// Labels with at least one matching alert from this detector.
    pub detected: usize,
    /// This detector's alerts whose kind belongs to this kind.
    pub alerts: usize,
    /// Of those, alerts that match a label.
    pub true_alerts: usize,
    /// `true_alerts / alerts`; None without alerts.
    pub precision: Option<f64>,
    /// `detected / labels`; None without labels.
    pub recall: Option<f64>,
    /// Harmonic mean of precision and recall (0 when either is 0 or missing while labels exist).
    pub f1: Option<f64>,
    /// Median detection delay, ms (nearest rank).
    pub delay_median_ms: Option<i64>,
    /// 95th percentile detection delay, ms (nearest rank).
    pub delay_p95_ms: Option<i64>,
    /// Alerts matching no label.
    pub false_alerts: usize,
    /// `false_alerts` per simulated hour.
    pub false_per_hour: f64,
    /// Recall by label variant: variant → (labels, detected).
    pub variants: BTreeMap<String, (usize, usize)>,
    /// Where the false alerts fell: `kind/variant` of an injected label whose window (plus
    /// grace) contains the alert, or `normal`. Ordinary bot sessions are ignored here: they
    /// overlap everything. A false alert in a surge's window (plus grace) and no anomaly's
    /// shows as `surge/<variant>`.
    pub false_during: BTreeMap<String, usize>,
    /// False alerts of severity warning or higher inside a surge's window (plus grace).
    pub surge_warnings: usize,
}

/// One detector over all kinds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetectorScore {
    /// Detector (plugin) name.
    pub detector: String,
    /// All its alerts.
    pub alerts: usize,
    /// Alerts matching a label.
    pub true_alerts: usize,
    /// `true_alerts / alerts`.
    pub precision: Option<f64>,
    /// Alerts matching no label.
    pub false_alerts: usize,
    /// Per simulated hour.
    pub false_per_hour: f64,
}

/// The whole score of a replay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Simulated hours the events span.
    pub hours: f64,
    /// Grace used, ms.
    pub grace_ms: i64,
    /// Labels by kind.
    pub labels: BTreeMap<String, usize>,
    /// Per detector.
    pub detectors: Vec<DetectorScore>,
    /// Per detector and kind: every detector × every label kind, plus alert kinds that match
    /// no label kind.
    pub kinds: Vec<KindScore>,
}

impl Report {
    /// The row of `detector` × `kind`, if any.
    pub fn kind(&self, detector: &str, kind: &str) -> Option<&KindScore> {
        self.kinds
            .iter()
            .find(|k| k.detector == detector && k.kind == kind)
    }

    /// The summary of `detector`, if any.
    pub fn detector(&self, detector: &str) -> Option<&DetectorScore> {
        self.detectors.iter().find(|d| d.detector == detector)
    }
}

/// Alert kinds that predate the contract, and the contract kind each is read as.
pub const KIND_ALIASES: [(&str, &str); 1] = [
    // bot-detector 0.1 (the rate rule only).
    ("fast-clicker", "bot/fast-clicker"),
];

/// Whether alert kind `alert` belongs to label kind `label`: equal, or `label/<rule>`
/// (after [`KIND_ALIASES`]).
pub fn kind_matches(alert: &str, label: &str) -> bool {
    let alert = KIND_ALIASES
        .iter()
        .find(|(old, _)| *old == alert)
        .map_or(alert, |(_, new)| new);
    alert == label
        || alert
            .strip_prefix(label)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Whether an alert naming (`entity_type`, `entity`) names `e`. A page may be named by its full
/// url or by its path: detectors that strip the origin still match.
fn entity_matches(entity_type: &str, entity: &str, e: &Entity) -> bool {
    if entity_type != e.entity_type {
        return false;
    }
    if entity == e.id {
        return true;
    }
    entity_type == "page" && path_of(entity) == path_of(&e.id)
}

fn path_of(url: &str) -> &str {
    match url.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => url,
    }
}

/// Whether `alert` matches `label` with `grace_ms`.
pub fn matches(alert: &Alert, label: &Label, grace_ms: i64) -> bool {
    kind_matches(&alert.kind, &label.kind)
        && alert.time_ms >= label.start_ms
        && alert.time_ms <= label.end_ms.saturating_add(grace_ms)
        && label
            .entities
            .iter()
            .any(|e| entity_matches(&alert.entity_type, &alert.entity, e))
}

fn ratio(a: usize, b: usize) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// Scores `alerts` against `labels` over `hours` of simulated time. `detectors` names the
/// detectors that ran (so one that never alerted still gets rows); detectors that alerted are
/// added.
pub fn score(
    alerts: &[Alert],
    labels: &[Label],
    detectors: &[String],
    hours: f64,
    grace_ms: i64,
) -> Report {
    // A negative grace or a label ending before it starts would make the search window
    // below negative; neither means anything.
    let grace_ms = grace_ms.max(0);
    let (surges, labels): (Vec<&Label>, Vec<&Label>) =
        labels.iter().partition(|l| l.kind == SURGE_KIND);
    let mut names: BTreeSet<String> = detectors.iter().cloned().collect();
    names.extend(alerts.iter().map(|a| a.detector.clone()));
    let mut label_kinds: BTreeMap<String, usize> = BTreeMap::new();
    for l in &labels {
        *label_kinds.entry(l.kind.clone()).or_default() += 1;
    }
    let per_hour = |n: usize| if hours > 0.0 { n as f64 / hours } else { 0.0 };
    // Labels sorted by start so each alert only looks at labels that may contain it.
    let mut by_start: Vec<&Label> = labels.clone();
    by_start.sort_by_key(|l| l.start_ms);
    let longest = labels
        .iter()
        .map(|l| l.end_ms.saturating_sub(l.start_ms).max(0))
        .max()
        .unwrap_or(0)
        .saturating_add(grace_ms);

    let mut detectors_out = Vec::new();
    let mut kinds_out = Vec::new();
    for name in names {
        let mine: Vec<&Alert> = alerts.iter().filter(|a| a.detector == name).collect();
        // For each alert, the labels it matches.
        let mut first_hit: BTreeMap<&str, i64> = BTreeMap::new();
        let mut true_flags = Vec::with_capacity(mine.len());
        for a in &mine {
            let lo = by_start.partition_point(|l| l.start_ms < a.time_ms.saturating_sub(longest));
            let hi = by_start
                .partition_point(|l| l.start_ms <= a.time_ms)
                .max(lo);
            let mut hit = false;
            for l in &by_start[lo..hi] {
                if matches(a, l, grace_ms) {
                    hit = true;
                    let t = first_hit.entry(l.id.as_str()).or_insert(a.time_ms);
                    *t = (*t).min(a.time_ms);
                }
            }
            true_flags.push(hit);
        }
        // Context of each false alert, for detector authors: what was going on at the time.
        let context: Vec<String> = mine
            .iter()
            .zip(&true_flags)
            .map(|(a, hit)| {
                if *hit {
                    return String::new();
                }
                let lo =
                    by_start.partition_point(|l| l.start_ms < a.time_ms.saturating_sub(longest));
                let hi = by_start
                    .partition_point(|l| l.start_ms <= a.time_ms)
                    .max(lo);
                let within = |l: &&&Label| {
                    a.time_ms >= l.start_ms && a.time_ms <= l.end_ms.saturating_add(grace_ms)
                };
                by_start[lo..hi]
                    .iter()
                    .filter(|l| l.variant.as_deref() != Some("ordinary"))
                    .find(|l| a.time_ms <= l.end_ms.saturating_add(grace_ms))
                    .or_else(|| surges.iter().find(within))
                    .map_or_else(
                        || "normal".to_owned(),
                        |l| match &l.variant {
                            Some(v) => format!("{}/{v}", l.kind),
                            None => l.kind.clone(),
                        },
                    )
            })
            .collect();
        let true_alerts = true_flags.iter().filter(|t| **t).count();
        detectors_out.push(DetectorScore {
            detector: name.clone(),
            alerts: mine.len(),
            true_alerts,
            precision: ratio(true_alerts, mine.len()),
            false_alerts: mine.len() - true_alerts,
            false_per_hour: per_hour(mine.len() - true_alerts),
        });
        // Kinds: every label kind, plus alert kinds outside them.
        let mut kinds: BTreeSet<String> = label_kinds.keys().cloned().collect();
        for a in &mine {
            if !label_kinds.keys().any(|k| kind_matches(&a.kind, k)) {
                kinds.insert(a.kind.clone());
            }
        }
        for kind in kinds {
            let mut false_during: BTreeMap<String, usize> = BTreeMap::new();
            let mut surge_warnings = 0;
            let in_kind: Vec<bool> = mine
                .iter()
                .zip(&true_flags)
                .zip(&context)
                .filter(|((a, _), _)| kind_matches(&a.kind, &kind))
                .map(|((a, t), c)| {
                    if !*t {
                        *false_during.entry(c.clone()).or_default() += 1;
                        if c.starts_with("surge/")
                            && matches!(a.severity, Severity::Warning | Severity::Critical)
                        {
                            surge_warnings += 1;
                        }
                    }
                    *t
                })
                .collect();
            let kind_true = in_kind.iter().filter(|t| **t).count();
            let of_kind: Vec<&Label> = labels.iter().copied().filter(|l| l.kind == kind).collect();
            let mut delays: Vec<i64> = Vec::new();
            let mut variants: BTreeMap<String, (usize, usize)> = BTreeMap::new();
            for l in &of_kind {
                let hit = first_hit.get(l.id.as_str());
                if let Some(t) = hit {
                    delays.push(t - l.start_ms);
                }
                let v = variants
                    .entry(l.variant.clone().unwrap_or_default())
                    .or_default();
                v.0 += 1;
                v.1 += usize::from(hit.is_some());
            }
            delays.sort_unstable();
            let precision = ratio(kind_true, in_kind.len());
            let recall = ratio(delays.len(), of_kind.len());
            let f1 = match (precision, recall) {
                (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
                (_, Some(_)) => Some(0.0),
                _ => None,
            };
            kinds_out.push(KindScore {
                detector: name.clone(),
                kind,
                labels: of_kind.len(),
                detected: delays.len(),
                alerts: in_kind.len(),
                true_alerts: kind_true,
                precision,
                recall,
                f1,
                delay_median_ms: percentile(&delays, 0.5),
                delay_p95_ms: percentile(&delays, 0.95),
                false_alerts: in_kind.len() - kind_true,
                false_per_hour: per_hour(in_kind.len() - kind_true),
                variants,
                false_during,
                surge_warnings,
            });
        }
    }
    Report {
        hours,
        grace_ms,
        labels: label_kinds,
        detectors: detectors_out,
        kinds: kinds_out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Severity;

    const H: i64 = 3_600_000;

    fn alert(detector: &str, kind: &str, etype: &str, entity: &str, time_ms: i64) -> Alert {
        Alert {
            detector: detector.into(),
            detector_version: "1".into(),
            kind: kind.into(),
            severity: Severity::Warning,
            entity_type: etype.into(),
            entity: entity.into(),
            time_ms,
            window_start_ms: time_ms,
            score: 1.0,
            message: String::new(),
            details: serde_json::Value::Null,
        }
    }

    fn label(id: &str, kind: &str, start: i64, end: i64, entities: &[(&str, &str)]) -> Label {
        Label {
            id: id.into(),
            kind: kind.into(),
            variant: None,
            start_ms: start,
            end_ms: end,
            entities: entities.iter().map(|(t, i)| Entity::new(t, *i)).collect(),
            magnitude: 1.0,
            note: String::new(),
        }
    }

    #[test]
    fn kinds_match_exactly_or_by_rule_prefix() {
        assert!(kind_matches("bot", "bot"));
        assert!(kind_matches("bot/regular-gaps", "bot"));
        assert!(!kind_matches("bots", "bot"));
        assert!(kind_matches("fast-clicker", "bot"), "a documented alias");
        assert!(!kind_matches("fast-clicker", "click-fraud"));
    }

    #[test]
    fn precision_recall_f1_delays_and_false_rate_are_counted() {
        let labels = vec![
            label(
                "s1",
                "traffic-spike",
                H,
                H + 600_000,
                &[("page", "https://shop.example/a")],
            ),
            label(
                "s2",
                "traffic-spike",
                3 * H,
                3 * H + 600_000,
                &[("site", "*")],
            ),
            label(
                "s3",
                "traffic-spike",
                5 * H,
                5 * H + 600_000,
                &[("site", "*")],
            ),
            label(
                "s4",
                "traffic-spike",
                7 * H,
                7 * H + 600_000,
                &[("site", "*")],
            ),
            label(
                "b1",
                "bot",
                H,
                H + 60_000,
                &[("session", "x"), ("ip", "1.2.3.4")],
            ),
        ];
        let d = "traffic-anomaly";
        let alerts = vec![
            // s1 by path, 60 s late; a second alert on s1 is true too but not a new detection.
            alert(d, "traffic-spike", "page", "/a", H + 60_000),
            alert(
                d,
                "traffic-spike/page",
                "page",
                "https://shop.example/a",
                H + 120_000,
            ),
            // s2 in the grace period: 20 min after its start, 10 after its end.
            alert(d, "traffic-spike", "site", "*", 3 * H + 1_200_000),
            // s3: after the grace: false. Wrong entity during s4: false.
            alert(d, "traffic-spike", "site", "*", 5 * H + 1_200_001),
            alert(d, "traffic-spike", "page", "/b", 7 * H + 1_000),
            // A drop alert where only a spike is labelled: false, own row.
            alert(d, "traffic-drop", "site", "*", 7 * H + 2_000),
            // The bot detector: one right, one on a kind outside the contract.
            alert("bot-detector", "bot/regular", "ip", "1.2.3.4", H + 30_000),
            alert("bot-detector", "slow-clicker", "session", "x", H + 30_000),
        ];
        let r = score(
            &alerts,
            &labels,
            &["quiet".to_owned()],
            8.0,
            DEFAULT_GRACE_MS,
        );
        let s = r.kind(d, "traffic-spike").unwrap();
        assert_eq!(
            (s.labels, s.detected, s.alerts, s.true_alerts),
            (4, 2, 5, 3)
        );
        assert_eq!(s.precision, Some(0.6));
        assert_eq!(s.recall, Some(0.5));
        let f1 = s.f1.unwrap();
        assert!((f1 - 2.0 * 0.6 * 0.5 / 1.1).abs() < 1e-9, "{f1}");
        assert_eq!(s.delay_median_ms, Some(60_000));
        assert_eq!(s.delay_p95_ms, Some(1_200_000));
        assert_eq!(s.false_alerts, 2);
        // One after s3's grace (normal time), one during s4 (wrong entity).
        let during: Vec<(&str, usize)> = s
            .false_during
            .iter()
            .map(|(k, n)| (k.as_str(), *n))
            .collect();
        assert_eq!(during, vec![("normal", 1), ("traffic-spike", 1)]);
        assert!((s.false_per_hour - 0.25).abs() < 1e-9);
        let drop = r.kind(d, "traffic-drop").unwrap();
        assert_eq!((drop.labels, drop.alerts, drop.true_alerts), (0, 1, 0));
        assert_eq!((drop.recall, drop.f1), (None, None));
        let all = r.detector(d).unwrap();
        assert_eq!((all.alerts, all.true_alerts, all.false_alerts), (6, 3, 3));
        // The bot detector: `slow-clicker` is not `bot`, so it is a false alert in its own row.
        let bot = r.kind("bot-detector", "bot").unwrap();
        assert_eq!((bot.detected, bot.alerts, bot.precision), (1, 1, Some(1.0)));
        assert_eq!(bot.delay_median_ms, Some(30_000));
        let other = r.kind("bot-detector", "slow-clicker").unwrap();
        assert_eq!((other.alerts, other.false_alerts), (1, 1));
        // A detector that ran but said nothing has zero recall, not a missing row.
        let quiet = r.kind("quiet", "bot").unwrap();
        assert_eq!(
            (quiet.recall, quiet.precision, quiet.f1),
            (Some(0.0), None, Some(0.0))
        );
        let table = r.to_string();
        assert!(table.contains("no alerts from: quiet"), "{table}");
        assert!(table.contains("2/4"), "{table}");
    }

    #[test]
    fn surges_are_not_anomalies_but_alerts_on_them_are_counted_apart() {
        let mut sale = label("s-0", SURGE_KIND, H, 2 * H, &[("site", "*")]);
        sale.variant = Some("flash-sale".into());
        let labels = vec![
            sale,
            label("a-0", "traffic-spike", 4 * H, 5 * H, &[("site", "*")]),
        ];
        let d = "traffic-anomaly";
        let mut info = alert(d, "traffic-spike", "site", "*", H + 120_000);
        info.severity = Severity::Info;
        let alerts = vec![
            alert(d, "traffic-spike", "site", "*", H + 60_000),
            info,
            // Within the grace after the sale.
            alert(d, "traffic-spike", "site", "*", 2 * H + 300_000),
            alert(d, "traffic-spike", "site", "*", 3 * H),
            alert(d, "traffic-spike", "site", "*", 4 * H + 60_000),
        ];
        let r = score(&alerts, &labels, &[], 6.0, DEFAULT_GRACE_MS);
        assert!(
            r.kind(d, SURGE_KIND).is_none(),
            "a surge gets no recall row"
        );
        assert_eq!(r.labels.get(SURGE_KIND), None);
        let s = r.kind(d, "traffic-spike").unwrap();
        assert_eq!((s.labels, s.detected, s.true_alerts), (1, 1, 1));
        let during: Vec<(&str, usize)> = s
            .false_during
            .iter()
            .map(|(k, n)| (k.as_str(), *n))
            .collect();
        assert_eq!(during, vec![("normal", 1), ("surge/flash-sale", 3)]);
        assert_eq!(s.surge_warnings, 2, "the info-level alert is not a warning");
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<i64> = (1..=20).collect();
        assert_eq!(percentile(&v, 0.5), Some(10));
        assert_eq!(percentile(&v, 0.95), Some(19));
        assert_eq!(percentile(&[7], 0.95), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn alerts_before_a_label_starts_do_not_match() {
        let l = label("x", "funnel-drop", H, 2 * H, &[("site", "*")]);
        assert!(!matches(
            &alert("f", "funnel-drop", "site", "*", H - 1),
            &l,
            0
        ));
        assert!(matches(
            &alert("f", "funnel-drop/checkout", "site", "*", H),
            &l,
            0
        ));
        assert!(!matches(&alert("f", "funnel-drop", "page", "*", H), &l, 0));
    }
}
