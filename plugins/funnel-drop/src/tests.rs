//! Native tests: simulated sessions walking the funnel, minute by minute.

use super::*;
use clickwatch_sdk::testing::{Harness, TestClick};

const MIN: i64 = 60_000;
const T0: i64 = 1_789_963_200_000; // 04:00 UTC, the trough of the daily shape

struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }
}

fn daily_shape(t: i64) -> f64 {
    let hour = t.rem_euclid(86_400_000) as f64 / 3_600_000.0;
    1.0 - 0.65 * ((hour - 4.0) / 24.0 * std::f64::consts::TAU).cos()
}

/// Runs `minutes` of sessions (`per_min` at the daily mean) from `start`; `purchase(m)` is the
/// checkout → purchase probability in minute `m`. Returns the alerts.
fn simulate(
    h: &mut Harness<FunnelDrop>,
    rng: &mut Rng,
    start: i64,
    minutes: i64,
    per_min: f64,
    purchase: impl Fn(i64) -> f64,
) -> Vec<Alert> {
    let mut alerts = Vec::new();
    for m in 0..minutes {
        let t = start + m * MIN;
        let n = (per_min * daily_shape(t)).round() as i64;
        let mut clicks = Vec::new();
        for i in 0..n {
            let s = format!("s{t}-{i}");
            let at = t + i * MIN / n.max(1);
            clicks.push(TestClick::page_view(at, &s, "/"));
            if !rng.chance(0.8) {
                continue;
            }
            clicks.push(TestClick::page_view(at + 1, &s, "/product/7"));
            if !rng.chance(0.3) {
                continue;
            }
            clicks.push(TestClick::new(
                EventKind::AddToCart,
                at + 2,
                &s,
                "/product/7",
            ));
            if !rng.chance(0.55) {
                continue;
            }
            clicks.push(TestClick::new(EventKind::Checkout, at + 3, &s, "/checkout"));
            if rng.chance(purchase(m)) {
                clicks.push(TestClick::new(EventKind::Purchase, at + 4, &s, "/order"));
            }
        }
        alerts.extend(h.process(&clicks).unwrap().alerts);
        alerts.extend(h.tick(t + MIN).unwrap().alerts);
    }
    alerts
}

#[test]
fn a_broken_checkout_is_caught_once_within_minutes() {
    let mut h = Harness::<FunnelDrop>::new("{}").unwrap();
    let mut rng = Rng(1);
    // Mid-day volume: ~150 sessions a minute.
    let start = T0 + 8 * 60 * MIN;
    assert!(simulate(&mut h, &mut rng, start, 90, 100.0, |_| 0.65).is_empty());
    let broken = start + 90 * MIN;
    let alerts = simulate(&mut h, &mut rng, broken, 90, 100.0, |m| {
        if m < 45 { 0.1 } else { 0.65 }
    });
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!(
        (a.kind.as_str(), a.entity_type.as_str(), a.entity.as_str()),
        ("funnel-drop/purchase", "site", "*")
    );
    assert!(
        a.time_ms > broken && a.time_ms - broken <= 8 * MIN,
        "delay {}",
        a.time_ms - broken
    );
    assert!(a.window_start_ms >= broken);
}

#[test]
fn a_normal_day_and_a_quiet_night_do_not_alert() {
    let mut h = Harness::<FunnelDrop>::new("{}").unwrap();
    let alerts = simulate(&mut h, &mut Rng(2), T0, 24 * 60, 60.0, |_| 0.65);
    assert!(alerts.is_empty(), "{alerts:#?}");
    // Too few checkouts at night to judge: even a real break stays below the volume floor.
    let mut h = Harness::<FunnelDrop>::new("{}").unwrap();
    let mut rng = Rng(3);
    simulate(&mut h, &mut rng, T0, 60, 8.0, |_| 0.65);
    let alerts = simulate(&mut h, &mut rng, T0 + 60 * MIN, 60, 8.0, |_| 0.0);
    assert!(alerts.is_empty(), "{alerts:#?}");
}

#[test]
fn restore_keeps_the_baseline() {
    let mut h = Harness::<FunnelDrop>::new("{}").unwrap();
    let mut rng = Rng(4);
    let start = T0 + 8 * 60 * MIN;
    simulate(&mut h, &mut rng, start, 60, 100.0, |_| 0.65);
    h.reload().unwrap();
    let alerts = simulate(&mut h, &mut rng, start + 60 * MIN, 15, 100.0, |_| 0.05);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0].kind, "funnel-drop/purchase");
}

#[test]
fn sessions_are_evicted_and_capped() {
    let mut h =
        Harness::<FunnelDrop>::new(r#"{"idle_timeout_secs": 60, "max_sessions": 2}"#).unwrap();
    let clicks: Vec<_> = (0..4)
        .map(|i| TestClick::page_view(T0 + i, &format!("s{i}"), "/product/1"))
        .collect();
    h.process(&clicks).unwrap();
    assert_eq!(h.plugin().tracked_sessions(), 2);
    h.tick(T0 + 2 * MIN).unwrap();
    assert_eq!(h.plugin().tracked_sessions(), 0);
}

#[test]
fn a_session_counts_once_per_step() {
    let mut h = Harness::<FunnelDrop>::new("{}").unwrap();
    let clicks: Vec<_> = (0..50)
        .map(|i| TestClick::page_view(T0 + i, "scraper", &format!("/product/{i}")))
        .collect();
    h.process(&clicks).unwrap();
    assert_eq!(h.plugin().state.open, vec![(T0, [1, 0, 0, 0])]);
}

#[test]
fn settings_are_checked() {
    assert!(
        Harness::<FunnelDrop>::new(r#"{"window": 5}"#)
            .unwrap_err()
            .contains("unknown field")
    );
    assert!(
        Harness::<FunnelDrop>::new(r#"{"drop_ratio": 1.5}"#)
            .unwrap_err()
            .contains("drop_ratio")
    );
    assert!(Harness::<FunnelDrop>::new(r#"{"window_buckets": 0}"#).is_err());
}

#[test]
fn an_outage_that_cuts_sessions_short_is_not_a_funnel_drop() {
    let mut h = Harness::<FunnelDrop>::new("{}").unwrap();
    let mut rng = Rng(5);
    let start = T0 + 8 * 60 * MIN;
    simulate(&mut h, &mut rng, start, 60, 100.0, |_| 0.65);
    // A site outage: a tenth of the sessions, and those lose their purchases too.
    let alerts = simulate(&mut h, &mut rng, start + 60 * MIN, 30, 10.0, |_| 0.05);
    assert!(alerts.is_empty(), "{alerts:#?}");
    h.tick(i64::MAX).unwrap();
    h.tick(i64::MAX).unwrap();
}
