//! Native tests: human visitors arriving from ads (and converting) with a few fraudulent IPs.

use super::*;
use clickwatch_sdk::testing::{Harness, TestClick};

const MIN: i64 = 60_000;
const T0: i64 = 1_789_963_200_000; // 04:00 UTC
const ADS: &str = "https://ads.example.net/click";

struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn daily_shape(t: i64) -> f64 {
    let hour = t.rem_euclid(86_400_000) as f64 / 3_600_000.0;
    1.0 - 0.65 * ((hour - 4.0) / 24.0 * std::f64::consts::TAU).cos()
}

/// Human sessions for one minute: 12 % land through an ad click, then browse with human
/// dwell (e^U(0.5, 4.2) seconds, as the generator does); some add to cart.
fn humans(rng: &mut Rng, t: i64, per_min: f64, out: &mut Vec<TestClick>) {
    let n = (per_min * daily_shape(t)).round() as i64;
    let devices = ["desktop", "mobile", "tablet"];
    for i in 0..n {
        let s = format!("h{t}-{i}");
        let ip = format!("10.{}.{}.{}", (t / MIN) % 250, i / 250, i % 250);
        let device = devices[(rng.next_f64() * 3.0) as usize % 3];
        let mut at = t + i * MIN / n.max(1);
        let ad = rng.next_f64() < 0.12;
        let mut first = TestClick::new(
            if ad {
                EventKind::AdClick
            } else {
                EventKind::PageView
            },
            at,
            &s,
            "/category/shoes",
        )
        .ip(&ip);
        first.referrer = ad.then(|| ADS.to_owned());
        first.device = Some(device.to_owned());
        out.push(first);
        for step in 0..3 {
            at += ((0.5 + rng.next_f64() * 3.7).exp() * 1000.0) as i64;
            let kind = if step == 2 && rng.next_f64() < 0.15 {
                EventKind::AddToCart
            } else {
                EventKind::PageView
            };
            let mut c = TestClick::new(kind, at, &s, "/product/1").ip(&ip);
            c.device = Some(device.to_owned());
            out.push(c);
        }
    }
}

/// The fraud's own ad referrer (a publisher id), as the generator injects it.
const FRAUD_REF: &str = "https://ads.example.net/click?pub=beef";

/// Fraudulent ad clicks for one minute: each IP fires `per_ip` single-event sessions.
fn fraud(t: i64, ips: &[&str], per_ip: i64, out: &mut Vec<TestClick>) {
    for ip in ips {
        for i in 0..per_ip {
            let mut c = TestClick::new(
                EventKind::AdClick,
                t + i * MIN / per_ip,
                &format!("f{ip}{t}{i}"),
                "/category/toys",
            )
            .ip(ip);
            c.referrer = Some(FRAUD_REF.to_owned());
            c.device = Some("desktop".to_owned());
            out.push(c);
        }
    }
}

fn run(
    h: &mut Harness<ClickFraud>,
    rng: &mut Rng,
    start: i64,
    minutes: i64,
    fraud_ips: &[&str],
) -> Vec<Alert> {
    let mut alerts = Vec::new();
    for m in 0..minutes {
        let t = start + m * MIN;
        let mut clicks = Vec::new();
        humans(rng, t, 330.0, &mut clicks);
        fraud(t, fraud_ips, 5, &mut clicks);
        alerts.extend(h.process(&clicks).unwrap().alerts);
        alerts.extend(h.tick(t + MIN).unwrap().alerts);
    }
    alerts
}

#[test]
fn fraudulent_ips_are_caught_once_each_and_humans_are_not() {
    let mut h = Harness::<ClickFraud>::new("{}").unwrap();
    let mut rng = Rng(1);
    let start = T0 + 8 * 60 * MIN;
    let quiet = run(&mut h, &mut rng, start, 60, &[]);
    assert!(quiet.is_empty(), "{quiet:#?}");
    let bad = ["198.51.100.1", "198.51.100.2", "198.51.100.3"];
    let fraud_start = start + 60 * MIN;
    let alerts = run(&mut h, &mut rng, fraud_start, 30, &bad);
    let ip_alerts: Vec<_> = alerts.iter().filter(|a| a.entity_type == "ip").collect();
    assert_eq!(ip_alerts.len(), 3, "{alerts:#?}");
    for a in &ip_alerts {
        assert_eq!(a.kind, "click-fraud/ip");
        assert!(bad.contains(&a.entity.as_str()));
        assert!(a.time_ms - fraud_start <= 2 * MIN);
    }
    // The fraud's own referrer is all exits, and the three IPs share a /24: one alert about
    // each, none about the ordinary ad referrer or a device class.
    let mut others: Vec<_> = alerts
        .iter()
        .filter(|a| a.entity_type != "ip")
        .map(|a| (a.kind.as_str(), a.entity.as_str(), a.time_ms - fraud_start))
        .collect();
    others.sort();
    assert_eq!(others.len(), 2, "{others:#?}");
    assert_eq!(
        (others[0].0, others[0].1),
        ("click-fraud/referrer", FRAUD_REF)
    );
    assert_eq!(
        (others[1].0, others[1].1),
        ("click-fraud/subnet", "198.51.100.0/24")
    );
    assert!(others.iter().all(|o| o.2 <= 4 * MIN), "{others:#?}");
}

/// Twenty IPs of one /24, each clicking an ad (and leaving) every 6–8 minutes, starting over
/// the first ten minutes: no IP comes near the per-IP rule's five clicks in ten minutes, but
/// the network's exits add up within a few minutes.
#[test]
fn a_slow_ramp_over_many_ips_of_one_network_is_caught_within_minutes() {
    let mut h = Harness::<ClickFraud>::new("{}").unwrap();
    let mut rng = Rng(5);
    let start = T0 + 8 * 60 * MIN;
    let quiet = run(&mut h, &mut rng, start, 60, &[]);
    assert!(quiet.is_empty(), "{quiet:#?}");
    let fraud_start = start + 60 * MIN;
    let mut alerts = Vec::new();
    for m in 0..30 {
        let t = fraud_start + m * MIN;
        let mut clicks = Vec::new();
        humans(&mut rng, t, 330.0, &mut clicks);
        for ip in 0..20i64 {
            let first = ip * MIN / 2;
            let every = (6 + ip % 3) * MIN;
            let mut at = first;
            while at < (m + 1) * MIN {
                if at >= m * MIN {
                    let ipname = format!("203.0.113.{}", 10 + ip);
                    let mut c = TestClick::new(
                        EventKind::AdClick,
                        fraud_start + at,
                        &format!("slow{ip}-{at}"),
                        "/category/toys",
                    )
                    .ip(&ipname);
                    c.referrer = Some(FRAUD_REF.to_owned());
                    clicks.push(c);
                }
                at += every;
            }
        }
        clicks.sort_by_key(|c| c.time_ms);
        alerts.extend(h.process(&clicks).unwrap().alerts);
        alerts.extend(h.tick(t + MIN).unwrap().alerts);
    }
    let subnet: Vec<_> = alerts
        .iter()
        .filter(|a| a.entity_type == "subnet")
        .collect();
    assert_eq!(subnet.len(), 1, "{alerts:#?}");
    assert_eq!(subnet[0].entity, "203.0.113.0/24");
    assert!(
        subnet[0].time_ms - fraud_start <= 4 * MIN,
        "after {} s",
        (subnet[0].time_ms - fraud_start) / 1000
    );
    assert!(alerts.iter().all(|a| a.entity_type != "ip"), "{alerts:#?}");
}

#[test]
fn half_a_day_of_humans_from_trough_to_peak_raises_nothing() {
    let mut h = Harness::<ClickFraud>::new("{}").unwrap();
    let alerts = run(&mut h, &mut Rng(2), T0, 12 * 60, &[]);
    assert!(alerts.is_empty(), "{alerts:#?}");
}

#[test]
fn ip_evidence_survives_a_reload() {
    let mut h = Harness::<ClickFraud>::new("{}").unwrap();
    let click = |i: i64| {
        TestClick::new(EventKind::AdClick, T0 + i * 5_000, &format!("f{i}"), "/").ip("1.2.3.4")
    };
    let first: Vec<_> = (0..3).map(click).collect();
    assert!(h.process(&first).unwrap().alerts.is_empty());
    h.reload().unwrap();
    assert!(h.process(&[click(3), click(4)]).unwrap().alerts.is_empty());
    // Judged once the watermark has passed the fifth ad click.
    h.reload().unwrap();
    let out = h.tick(T0 + 21_000).unwrap();
    assert_eq!(out.alerts.len(), 1);
    assert_eq!(out.alerts[0].entity, "1.2.3.4");
    assert_eq!(out.alerts[0].window_start_ms, T0);
}

#[test]
fn conversions_clear_an_ip() {
    let mut h = Harness::<ClickFraud>::new("{}").unwrap();
    let mut clicks = Vec::new();
    for i in 0..6 {
        let s = format!("s{i}");
        let t = T0 + i * 20_000;
        clicks.push(TestClick::new(EventKind::AdClick, t, &s, "/").ip("10.0.0.1"));
        clicks.push(TestClick::new(EventKind::AddToCart, t + 5_000, &s, "/p").ip("10.0.0.1"));
    }
    assert!(h.process(&clicks).unwrap().alerts.is_empty());
    assert!(h.tick(T0 + 10 * MIN).unwrap().alerts.is_empty());
}

#[test]
fn idle_state_is_evicted_and_capped() {
    let mut h = Harness::<ClickFraud>::new(r#"{"idle_timeout_secs": 120, "max_ips": 2}"#).unwrap();
    let clicks: Vec<_> = (0..4)
        .map(|i| {
            let mut c = TestClick::new(EventKind::AdClick, T0 + i, &format!("s{i}"), "/")
                .ip(&format!("ip{i}"));
            c.referrer = Some(ADS.into());
            c
        })
        .collect();
    h.process(&clicks).unwrap();
    assert_eq!(h.plugin().tracked(), (2, 4, 1));
    h.tick(T0 + 10 * MIN).unwrap();
    assert_eq!(h.plugin().tracked(), (0, 0, 0));
}

#[test]
fn settings_are_checked() {
    assert!(
        Harness::<ClickFraud>::new(r#"{"min_clicks": 5}"#)
            .unwrap_err()
            .contains("unknown field")
    );
    assert!(
        Harness::<ClickFraud>::new(r#"{"max_ip_conversion_rate": 2}"#)
            .unwrap_err()
            .contains("max_ip_conversion_rate")
    );
    assert!(Harness::<ClickFraud>::new(r#"{"min_ip_ad_clicks": 0}"#).is_err());
}

#[test]
fn the_end_of_input_tick_returns() {
    let mut h = Harness::<ClickFraud>::new("{}").unwrap();
    run(&mut h, &mut Rng(3), T0, 5, &["192.0.2.9"]);
    h.tick(i64::MAX).unwrap();
    h.tick(i64::MAX).unwrap();
}

#[test]
fn an_outage_that_cuts_ad_sessions_short_is_not_fraud() {
    let mut h = Harness::<ClickFraud>::new("{}").unwrap();
    let mut rng = Rng(4);
    let start = T0 + 8 * 60 * MIN;
    run(&mut h, &mut rng, start, 60, &[]);
    // Twenty minutes in which a tenth of the ad visitors arrive and none of them gets a
    // second page: all exits, through the ordinary ads referrer.
    let mut alerts = Vec::new();
    for m in 0..20 {
        let t = start + (60 + m) * MIN;
        let mut clicks = Vec::new();
        humans(&mut rng, t, 330.0, &mut clicks);
        let kept: Vec<_> = clicks
            .into_iter()
            .filter(|c| c.kind == EventKind::AdClick && rng.next_f64() < 0.1)
            .collect();
        alerts.extend(h.process(&kept).unwrap().alerts);
        alerts.extend(h.tick(t + MIN).unwrap().alerts);
    }
    assert!(alerts.is_empty(), "{alerts:#?}");
}

/// Upgrade: a snapshot as 0.1 wrote it (no network tests, no exit statistics, pending sessions
/// without their IP) restores into this version, and the network test starts from there.
#[test]
fn a_0_1_snapshot_restores_and_networks_are_judged_from_there() {
    let mut h = Harness::<ClickFraud>::new("{}").unwrap();
    let mut rng = Rng(6);
    let start = T0 + 8 * 60 * MIN;
    assert!(run(&mut h, &mut rng, start, 30, &[]).is_empty());
    let mut v: serde_json::Value = serde_json::from_slice(&h.snapshot().unwrap()).unwrap();
    let fields = v.as_object_mut().unwrap();
    assert!(fields.remove("sources").is_some());
    assert!(fields.remove("share").is_some());
    for p in fields["pending"].as_object_mut().unwrap().values_mut() {
        p.as_object_mut().unwrap().remove("ip");
    }
    let (ips, pending, groups) = h.plugin().tracked();
    h.restore(&serde_json::to_vec(&v).unwrap()).unwrap();
    assert_eq!(h.plugin().tracked(), (ips, pending, groups));
    assert!(run(&mut h, &mut rng, start + 30 * MIN, 30, &[]).is_empty());
    let bad = ["192.0.2.1", "192.0.2.2", "192.0.2.3"];
    let alerts = run(&mut h, &mut rng, start + 60 * MIN, 10, &bad);
    assert!(
        alerts
            .iter()
            .any(|a| a.kind == "click-fraud/subnet" && a.entity == "192.0.2.0/24"),
        "{alerts:#?}"
    );
}

#[test]
fn a_watermark_that_lags_the_events_changes_no_referrer_count() {
    // The same 40 minutes, ticked every minute or only at the end (a key group whose
    // watermark lags its events by 40 buckets, as when input partitions are far apart in
    // event time): the referrer groups count and judge the same buckets.
    let events: Vec<Vec<TestClick>> = {
        let mut rng = Rng(7);
        (0..40)
            .map(|m| {
                let t = T0 + m * MIN;
                let mut clicks = Vec::new();
                humans(&mut rng, t, 330.0, &mut clicks);
                fraud(t, &["203.0.113.7", "203.0.113.8"], 5, &mut clicks);
                clicks
            })
            .collect()
    };
    let end = T0 + 41 * MIN;
    let referrer_alerts = |alerts: Vec<Alert>| -> Vec<String> {
        let mut v: Vec<String> = alerts
            .into_iter()
            .filter(|a| a.kind == "click-fraud/referrer")
            .map(|a| format!("{} {} {}", a.entity, a.window_start_ms, a.message))
            .collect();
        v.sort();
        v
    };
    let mut stepped = Harness::<ClickFraud>::new("{}").unwrap();
    let mut a = Vec::new();
    for (m, clicks) in events.iter().enumerate() {
        a.extend(stepped.process(clicks).unwrap().alerts);
        a.extend(stepped.tick(T0 + (m as i64 + 1) * MIN).unwrap().alerts);
    }
    a.extend(stepped.tick(end).unwrap().alerts);
    let mut lagging = Harness::<ClickFraud>::new("{}").unwrap();
    let mut b = Vec::new();
    for clicks in &events {
        b.extend(lagging.process(clicks).unwrap().alerts);
    }
    b.extend(lagging.tick(end).unwrap().alerts);
    let group = |h: &Harness<ClickFraud>, key: &str| {
        let g = &h.plugin().state.groups[key];
        (g.window.clone(), g.base, g.base_ads, g.learned)
    };
    for key in [format!("referrer:{FRAUD_REF}"), format!("referrer:{ADS}")] {
        assert_eq!(group(&stepped, &key), group(&lagging, &key), "{key}");
    }
    let (a, b) = (referrer_alerts(a), referrer_alerts(b));
    assert!(!a.is_empty(), "the fraudulent referrer is alerted");
    assert_eq!(a, b);
}

/// A snapshot written by click-fraud 0.1.0 (the build at 019ee60's parent): 30 minutes of
/// `run(…, Rng(6), T0 + 8 h, 30, no fraud)` with `idle_timeout_secs` 300.
const SNAPSHOT_0_1: &[u8] = include_bytes!("fixtures/click-fraud-0.1.snapshot.json");

#[test]
fn a_snapshot_written_by_0_1_restores_and_networks_are_judged_from_there() {
    let settings = r#"{"idle_timeout_secs": 300}"#;
    let mut h = Harness::<ClickFraud>::new(settings).unwrap();
    h.restore(SNAPSHOT_0_1).unwrap();
    let (ips, pending, groups) = h.plugin().tracked();
    // As written: 629 IPs, one referrer group, no session waiting for its verdict.
    assert_eq!((ips, pending, groups), (629, 0, 1));
    let mut rng = Rng(34);
    let start = T0 + 8 * 60 * MIN + 30 * MIN;
    let quiet = run(&mut h, &mut rng, start, 30, &[]);
    assert!(quiet.is_empty(), "{quiet:#?}");
    let bad = ["192.0.2.1", "192.0.2.2", "192.0.2.3"];
    let alerts = run(&mut h, &mut rng, start + 30 * MIN, 10, &bad);
    assert!(
        alerts
            .iter()
            .any(|a| a.kind == "click-fraud/subnet" && a.entity == "192.0.2.0/24"),
        "{alerts:#?}"
    );
}
