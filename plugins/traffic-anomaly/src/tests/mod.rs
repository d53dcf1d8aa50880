//! Native tests: simulated minute-by-minute traffic with Poisson noise and the daily shape.

use super::*;
use clickwatch_sdk::testing::{Harness, TestClick};

mod catalogue;

const MIN: i64 = 60_000;
/// 04:00 UTC, the trough of the daily shape: the test day starts where the shape rises fastest
/// soon after.
const T0: i64 = 1_790_000_000_000 - 1_790_000_000_000 % 86_400_000 + 4 * 3_600_000;

/// A deterministic pseudo-random source (no dependency needed for tests).
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Poisson sample: Knuth for small means, a rounded normal for large ones.
    fn poisson(&mut self, mean: f64) -> u32 {
        if mean <= 0.0 {
            return 0;
        }
        if mean > 50.0 {
            let u1 = self.next_f64().max(1e-12);
            let u2 = self.next_f64();
            let n = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            return (mean + n * mean.sqrt()).round().max(0.0) as u32;
        }
        let limit = (-mean).exp();
        let mut p = 1.0;
        let mut k = 0;
        loop {
            p *= self.next_f64();
            if p <= limit {
                return k;
            }
            k += 1;
        }
    }
}

/// The generator's daily shape: 0.35 at 04:00 UTC, 1.65 at 16:00.
fn daily_shape(t: i64) -> f64 {
    let hour = t.rem_euclid(86_400_000) as f64 / 3_600_000.0;
    1.0 - 0.65 * ((hour - 4.0) / 24.0 * std::f64::consts::TAU).cos()
}

/// Pages and their mean events per minute at the daily mean.
fn pages() -> Vec<(String, f64)> {
    let mut p = vec![("/".to_owned(), 150.0), ("/cart".to_owned(), 40.0)];
    p.extend((0..8).map(|i| (format!("/category/{i}"), 20.0)));
    p.extend((0..60).map(|i| (format!("/product/{i}"), 3.0)));
    p
}

/// Simulates `minutes` minutes from `start`; `factor(minute, url)` scales each page's rate.
/// Returns every alert with the minute it was emitted in.
fn simulate(
    h: &mut Harness<TrafficAnomaly>,
    rng: &mut Rng,
    start: i64,
    minutes: i64,
    factor: impl Fn(i64, &str) -> f64,
) -> Vec<Alert> {
    let pages = pages();
    let mut alerts = Vec::new();
    for m in 0..minutes {
        let t = start + m * MIN;
        let mut clicks = Vec::new();
        for (url, rate) in &pages {
            let n = rng.poisson(rate * daily_shape(t) * factor(m, url));
            for i in 0..n {
                let at = t + i64::from(i) * MIN / i64::from(n.max(1));
                clicks.push(TestClick::page_view(at, "s", url));
            }
        }
        alerts.extend(h.process(&clicks).unwrap().alerts);
        alerts.extend(h.tick(t + MIN).unwrap().alerts);
    }
    alerts
}

fn harness() -> Harness<TrafficAnomaly> {
    Harness::new("{}").unwrap()
}

#[test]
fn a_day_of_normal_traffic_with_its_shape_raises_nothing() {
    let mut h = harness();
    let alerts = simulate(&mut h, &mut Rng(1), T0, 24 * 60, |_, _| 1.0);
    assert!(alerts.is_empty(), "false alerts: {alerts:#?}");
}

#[test]
fn a_page_spike_is_caught_within_minutes_and_alerted_once() {
    let mut h = harness();
    let mut rng = Rng(2);
    // Warm up for an hour, then /category/3 runs at 5x for 15 minutes.
    simulate(&mut h, &mut rng, T0, 60, |_, _| 1.0);
    let start = T0 + 60 * MIN;
    let alerts = simulate(&mut h, &mut rng, start, 60, |m, url| {
        if url == "/category/3" && (0..15).contains(&m) {
            5.0
        } else {
            1.0
        }
    });
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!(
        (a.kind.as_str(), a.entity_type.as_str(), a.entity.as_str()),
        ("traffic-spike", "page", "/category/3")
    );
    assert_eq!(a.window_start_ms, start, "{a:#?}");
    assert!(
        a.time_ms - start <= 3 * MIN,
        "delay {} ms",
        a.time_ms - start
    );
    assert!(a.details.contains("\"ratio\""));
}

#[test]
fn a_site_drop_is_caught_and_its_recovery_is_not_a_spike() {
    let mut h = harness();
    let mut rng = Rng(3);
    simulate(&mut h, &mut rng, T0, 60, |_, _| 1.0);
    let start = T0 + 60 * MIN;
    let alerts = simulate(&mut h, &mut rng, start, 90, |m, _| {
        if (0..20).contains(&m) { 0.1 } else { 1.0 }
    });
    let site: Vec<_> = alerts.iter().filter(|a| a.entity_type == "site").collect();
    assert_eq!(site.len(), 1, "{alerts:#?}");
    assert_eq!(site[0].kind, "traffic-drop");
    assert_eq!(site[0].entity, SITE);
    assert_eq!(site[0].severity, Severity::Critical);
    assert!(site[0].time_ms - start <= 3 * MIN);
    // Busy pages drop too (that is true); nothing may call the recovery a spike.
    assert!(
        alerts.iter().all(|a| a.kind == "traffic-drop"),
        "{alerts:#?}"
    );
}

#[test]
fn a_site_spike_of_three_times_is_caught() {
    let mut h = harness();
    let mut rng = Rng(4);
    simulate(&mut h, &mut rng, T0, 60, |_, _| 1.0);
    let start = T0 + 60 * MIN;
    let alerts = simulate(&mut h, &mut rng, start, 40, |m, _| {
        if (0..20).contains(&m) { 3.0 } else { 1.0 }
    });
    assert!(
        alerts
            .iter()
            .any(|a| a.kind == "traffic-spike" && a.entity_type == "site"),
        "{alerts:#?}"
    );
}

#[test]
fn a_flash_sale_and_a_newsletter_are_not_anomalies() {
    let mut h = harness();
    let mut rng = Rng(5);
    simulate(&mut h, &mut rng, T0, 60, |_, _| 1.0);
    // Flash sale: the site ramps to 1.7x over 10 minutes and stays 30 minutes.
    let sale = |m: i64| 1.0 + 0.7 * (m as f64 / 10.0).clamp(0.0, 1.0) * f64::from(m < 40);
    let alerts = simulate(&mut h, &mut rng, T0 + 60 * MIN, 90, |m, _| sale(m));
    assert!(alerts.is_empty(), "flash sale: {alerts:#?}");
    // Newsletter: landing pages ramp to 2x over 5 minutes, then decay over 30 minutes.
    let news = |m: i64| {
        let m = m as f64;
        if m < 5.0 {
            1.0 + m / 5.0
        } else {
            1.0 + (1.0 - (m - 5.0) / 30.0).max(0.0)
        }
    };
    let alerts = simulate(&mut h, &mut rng, T0 + 150 * MIN, 60, |m, url| {
        if url == "/" || url.starts_with("/category/") {
            news(m)
        } else {
            1.0
        }
    });
    assert!(alerts.is_empty(), "newsletter: {alerts:#?}");
}

#[test]
fn restore_continues_with_the_learned_baseline() {
    let mut h = harness();
    let mut rng = Rng(6);
    simulate(&mut h, &mut rng, T0, 30, |_, _| 1.0);
    h.reload().unwrap();
    // No second warm-up: a spike right after the reload is caught.
    let start = T0 + 30 * MIN;
    let alerts = simulate(&mut h, &mut rng, start, 5, |_, url| {
        if url == "/cart" { 6.0 } else { 1.0 }
    });
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0].entity, "/cart");
}

#[test]
fn warm_up_keeps_new_series_quiet() {
    let mut h = harness();
    let alerts = simulate(
        &mut h,
        &mut Rng(7),
        T0,
        10,
        |m, _| if m > 5 { 8.0 } else { 1.0 },
    );
    assert!(alerts.is_empty(), "{alerts:#?}");
}

#[test]
fn idle_pages_are_evicted_and_new_pages_are_capped() {
    let mut h =
        Harness::<TrafficAnomaly>::new(r#"{"idle_timeout_secs": 600, "max_pages": 3}"#).unwrap();
    let clicks: Vec<_> = (0..5)
        .map(|i| TestClick::page_view(T0 + i, "s", &format!("/p{i}")))
        .collect();
    h.process(&clicks).unwrap();
    assert_eq!(h.plugin().tracked_pages(), 3);
    h.tick(T0 + 5 * MIN).unwrap();
    assert_eq!(h.plugin().tracked_pages(), 3);
    h.tick(T0 + 11 * MIN).unwrap();
    assert_eq!(h.plugin().tracked_pages(), 0);
    // After eviction the room is free again.
    h.process(&[TestClick::page_view(T0 + 12 * MIN, "s", "/new")])
        .unwrap();
    assert_eq!(h.plugin().tracked_pages(), 1);
}

#[test]
fn a_long_silence_is_skipped_in_bounded_work() {
    let mut h = Harness::<TrafficAnomaly>::new(r#"{"max_catchup_buckets": 10}"#).unwrap();
    h.process(&[TestClick::page_view(T0, "s", "/")]).unwrap();
    h.tick(T0 + MIN).unwrap();
    // A year later: one call, no panic, no "drop", and counting carries on.
    assert!(h.tick(T0 + 365 * 1440 * MIN).unwrap().alerts.is_empty());
    let late = T0 + 365 * 1440 * MIN + 1;
    h.process(&[TestClick::page_view(late, "s", "/")]).unwrap();
    h.tick(late + MIN).unwrap();
}

#[test]
fn settings_are_checked() {
    assert!(
        Harness::<TrafficAnomaly>::new(r#"{"spike_ratio": 3}"#)
            .unwrap_err()
            .contains("unknown field")
    );
    assert!(
        Harness::<TrafficAnomaly>::new(r#"{"level_alpha": 0}"#)
            .unwrap_err()
            .contains("level_alpha")
    );
    assert!(
        Harness::<TrafficAnomaly>::new(r#"{"pages": false, "site": false}"#)
            .unwrap_err()
            .contains("pages")
    );
    assert!(Harness::<TrafficAnomaly>::new(r#"{"spike_ratio_site": 0.5}"#).is_err());
}

#[test]
fn the_end_of_input_tick_returns() {
    let mut h = harness();
    simulate(&mut h, &mut Rng(8), T0, 30, |_, _| 1.0);
    // The host closes everything at the end of a replay with a watermark near i64::MAX: that
    // is not an outage.
    assert!(h.tick(i64::MAX).unwrap().alerts.is_empty());
    assert!(h.tick(i64::MAX).unwrap().alerts.is_empty());
}

#[test]
fn conversions_do_not_make_page_series() {
    let mut h = harness();
    let mut clicks = vec![TestClick::page_view(T0, "s", "/cart")];
    for kind in [
        EventKind::AddToCart,
        EventKind::Checkout,
        EventKind::Purchase,
    ] {
        clicks.push(TestClick::new(kind, T0 + 1, "s", "/order/confirmed"));
    }
    h.process(&clicks).unwrap();
    assert_eq!(h.plugin().tracked_pages(), 1);
    let mut h = Harness::<TrafficAnomaly>::new(r#"{"pages_skip_conversions": false}"#).unwrap();
    h.process(&clicks).unwrap();
    assert_eq!(h.plugin().tracked_pages(), 2);
}

#[test]
fn a_page_that_lifts_the_whole_site_is_named_instead_of_the_site() {
    let mut h = harness();
    let mut rng = Rng(9);
    let start = T0 + 10 * 60 * MIN;
    simulate(&mut h, &mut rng, start - 60 * MIN, 60, |_, _| 1.0);
    // "/" at 6x is enough to take the whole site past its spike ratio.
    let alerts = simulate(&mut h, &mut rng, start, 40, |m, url| {
        if url == "/" && m < 20 { 6.0 } else { 1.0 }
    });
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(
        (
            alerts[0].kind.as_str(),
            alerts[0].entity_type.as_str(),
            alerts[0].entity.as_str()
        ),
        ("traffic-spike", "page", "/")
    );
}

#[test]
fn pages_do_not_learn_a_site_incident_as_normal() {
    let mut h = harness();
    let mut rng = Rng(10);
    let start = T0 + 10 * 60 * MIN;
    simulate(&mut h, &mut rng, start - 60 * MIN, 60, |_, _| 1.0);
    // 2.8x everywhere for 25 minutes: one site alert, and no page "drop" when it ends.
    let alerts = simulate(
        &mut h,
        &mut rng,
        start,
        60,
        |m, _| if m < 25 { 2.8 } else { 1.0 },
    );
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(
        (alerts[0].kind.as_str(), alerts[0].entity.as_str()),
        ("traffic-spike", SITE)
    );
}

#[test]
fn a_page_drop_at_night_is_caught() {
    let mut h = harness();
    let mut rng = Rng(11);
    // 23:00 to 01:00 UTC, then /cart (about 20 events a minute at that hour) falls to 0.25x.
    let start = T0 + 19 * 60 * MIN;
    simulate(&mut h, &mut rng, start, 120, |_, _| 1.0);
    let alerts = simulate(&mut h, &mut rng, start + 120 * MIN, 30, |m, url| {
        if url == "/cart" && m < 20 { 0.25 } else { 1.0 }
    });
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(
        (alerts[0].kind.as_str(), alerts[0].entity.as_str()),
        ("traffic-drop", "/cart")
    );
}

#[test]
fn a_site_outage_to_nearly_nothing_is_the_sites_even_when_a_page_hits_zero() {
    let mut h = harness();
    let mut rng = Rng(12);
    let start = T0 + 10 * 60 * MIN;
    simulate(&mut h, &mut rng, start - 60 * MIN, 60, |_, _| 1.0);
    let alerts = simulate(&mut h, &mut rng, start, 40, |m, url| match (m < 20, url) {
        (true, "/cart") => 0.0,
        (true, _) => 0.03,
        _ => 1.0,
    });
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(
        (alerts[0].kind.as_str(), alerts[0].entity.as_str()),
        ("traffic-drop", SITE)
    );
}

/// A snapshot written by traffic-anomaly 0.1.0 (the build at 019ee60): 60 minutes of
/// `simulate(…, Rng(3), T0, 60, factor 1)`, no levels, no conversion share.
const SNAPSHOT_0_1: &[u8] = include_bytes!("fixtures/traffic-anomaly-0.1.snapshot.json");

#[test]
fn a_snapshot_written_by_0_1_restores_and_a_site_drop_is_caught_at_once() {
    let mut h = harness();
    h.restore(SNAPSHOT_0_1).unwrap();
    assert!(h.plugin().tracked_pages() > 0);
    // The baselines came over: a fresh instance learns `warmup_buckets` (15) before judging.
    let start = T0 + 60 * MIN;
    let drop = |m: i64, _: &str| if (0..20).contains(&m) { 0.1 } else { 1.0 };
    let alerts = simulate(&mut h, &mut Rng(33), start, 40, drop);
    let site: Vec<_> = alerts.iter().filter(|a| a.entity_type == "site").collect();
    assert_eq!(site.len(), 1, "{alerts:#?}");
    assert_eq!(site[0].kind, "traffic-drop");
    assert!(site[0].time_ms - start <= 3 * MIN, "{:?}", site[0]);
    let mut fresh = harness();
    let early: Vec<_> = simulate(&mut fresh, &mut Rng(33), start, 40, drop)
        .into_iter()
        .filter(|a| a.time_ms - start <= 3 * MIN)
        .collect();
    assert!(early.is_empty(), "{early:#?}");
}
