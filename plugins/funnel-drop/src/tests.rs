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
    simulate_bursty(h, rng, start, minutes, per_min, 0.0, purchase)
}

/// [`simulate`] with each minute's sessions scaled by a uniform factor in `1 ± burst`: a quiet
/// site whose minutes scatter far beyond Poisson.
fn simulate_bursty(
    h: &mut Harness<FunnelDrop>,
    rng: &mut Rng,
    start: i64,
    minutes: i64,
    per_min: f64,
    burst: f64,
    purchase: impl Fn(i64) -> f64,
) -> Vec<Alert> {
    let mut alerts = Vec::new();
    for m in 0..minutes {
        let t = start + m * MIN;
        let factor = 1.0 + burst * (2.0 * rng.next_f64() - 1.0);
        let n = (per_min * daily_shape(t) * factor).round() as i64;
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
fn a_quiet_sites_broken_checkout_is_proven_and_its_normal_hours_are_not() {
    // ~30 sessions a minute at mid-morning, each minute between 0.4 and 1.6 of that (visits
    // come in bursts): about four checkouts a minute, never the window's 30 entries in five
    // buckets, and minutes a fixed traffic band would call an outage or a surge. The
    // sequential test counts entries, not minutes; the guard allows for the site's own
    // scatter.
    let mut h = Harness::<FunnelDrop>::new("{}").unwrap();
    let mut rng = Rng(11);
    let start = T0 + 6 * 60 * MIN;
    let normal = simulate_bursty(&mut h, &mut rng, start, 6 * 60, 30.0, 0.6, |_| 0.6);
    assert!(normal.is_empty(), "{normal:#?}");
    let broken = start + 6 * 60 * MIN;
    let alerts = simulate_bursty(&mut h, &mut rng, broken, 30, 30.0, 0.6, |_| 0.06);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!(a.kind, "funnel-drop/purchase");
    assert!(
        a.time_ms - broken <= 10 * MIN,
        "delay {} s",
        (a.time_ms - broken) / 1000
    );
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

const UAS: [&str; 3] = [
    "Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
];
const REFS: [Option<&str>; 4] = [
    None,
    Some("https://www.google.com/"),
    Some("https://www.facebook.com/"),
    Some("https://ads.example.net/click"),
];
const COUNTRIES: [&str; 5] = ["US", "DE", "GB", "FR", "IN"];

/// Like [`simulate`] with segments: `mobile_share` of sessions are mobile (the rest desktop);
/// `purchase(m, device)` is the checkout → purchase probability.
fn simulate_segments(
    h: &mut Harness<FunnelDrop>,
    rng: &mut Rng,
    start: i64,
    minutes: i64,
    per_min: f64,
    mobile_share: f64,
    purchase: impl Fn(i64, &str) -> f64,
) -> Vec<Alert> {
    let mut alerts = Vec::new();
    for m in 0..minutes {
        let t = start + m * MIN;
        let n = (per_min * daily_shape(t)).round() as i64;
        let mut clicks = Vec::new();
        for i in 0..n {
            let s = format!("s{t}-{i}");
            let at = t + i * MIN / n.max(1);
            let device = if rng.chance(mobile_share) {
                "mobile"
            } else {
                "desktop"
            };
            let pick = |rng: &mut Rng, k: usize| ((rng.next_f64() * k as f64) as usize).min(k - 1);
            let mut landing = TestClick::page_view(at, &s, "/");
            landing.device = Some(device.into());
            landing.country = Some(COUNTRIES[pick(rng, 5)].into());
            landing.user_agent = Some(UAS[pick(rng, 3)].into());
            landing.referrer = REFS[pick(rng, 4)].map(str::to_owned);
            clicks.push(landing);
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
            if rng.chance(purchase(m, device)) {
                clicks.push(TestClick::new(EventKind::Purchase, at + 4, &s, "/order"));
            }
        }
        alerts.extend(h.process(&clicks).unwrap().alerts);
        alerts.extend(h.tick(t + MIN).unwrap().alerts);
    }
    alerts
}

fn one_device_outage(broken: &'static str, mobile_share: f64, seed: u64) {
    let mut h = Harness::<FunnelDrop>::new("{}").unwrap();
    let mut rng = Rng(seed);
    let start = T0 + 8 * 60 * MIN;
    // ~60 sessions a minute: a few purchases a minute per device.
    let quiet = simulate_segments(&mut h, &mut rng, start, 90, 45.0, mobile_share, |_, _| 0.65);
    assert!(quiet.is_empty(), "{quiet:#?}");
    let at = start + 90 * MIN;
    let alerts = simulate_segments(&mut h, &mut rng, at, 40, 45.0, mobile_share, |m, d| {
        if m < 30 && d == broken { 0.0 } else { 0.65 }
    });
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!(
        (a.kind.as_str(), a.entity_type.as_str(), a.entity.as_str()),
        ("funnel-drop/purchase", "device", broken),
        "{a:#?}"
    );
    assert!(
        a.time_ms > at && a.time_ms - at <= 6 * MIN,
        "delay {}",
        a.time_ms - at
    );
    assert!(
        a.details
            .contains(&format!("\"step\":\"purchase:{broken}\""))
    );
}

#[test]
fn a_mobile_only_checkout_outage_is_named_mobile() {
    one_device_outage("mobile", 0.5, 11);
    one_device_outage("mobile", 0.4, 12);
    // Most of the traffic: the site as a whole falls below half too, yet mobile is named.
    one_device_outage("mobile", 0.65, 19);
}

#[test]
fn a_small_segments_outage_adds_up_over_the_buckets() {
    // A device with a tenth of ~90 sessions a minute: about one checkout a minute, never
    // `min_segment_volume` (8) in a five-bucket window, so only the segment's sequential test
    // can prove its break.
    let mut h = Harness::<FunnelDrop>::new("{}").unwrap();
    let mut rng = Rng(21);
    let start = T0 + 8 * 60 * MIN;
    let quiet = simulate_segments(&mut h, &mut rng, start, 120, 70.0, 0.1, |_, _| 0.65);
    assert!(quiet.is_empty(), "{quiet:#?}");
    let at = start + 120 * MIN;
    let alerts = simulate_segments(&mut h, &mut rng, at, 50, 70.0, 0.1, |m, d| {
        if m < 40 && d == "mobile" { 0.0 } else { 0.65 }
    });
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!(
        (a.kind.as_str(), a.entity_type.as_str(), a.entity.as_str()),
        ("funnel-drop/purchase", "device", "mobile"),
        "{a:#?}"
    );
    assert!(
        a.time_ms - at <= 30 * MIN,
        "delay {} s",
        (a.time_ms - at) / 1000
    );
}

#[test]
fn a_desktop_only_checkout_outage_is_named_desktop() {
    one_device_outage("desktop", 0.55, 13);
}

#[test]
fn a_site_wide_outage_raises_one_site_alert() {
    let mut h = Harness::<FunnelDrop>::new("{}").unwrap();
    let mut rng = Rng(14);
    let start = T0 + 8 * 60 * MIN;
    simulate_segments(&mut h, &mut rng, start, 90, 45.0, 0.5, |_, _| 0.65);
    let alerts = simulate_segments(&mut h, &mut rng, start + 90 * MIN, 40, 45.0, 0.5, |m, _| {
        if m < 30 { 0.05 } else { 0.65 }
    });
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(
        (alerts[0].entity_type.as_str(), alerts[0].entity.as_str()),
        ("site", "*")
    );
    assert!(alerts[0].details.contains("\"segments\":[{"));
}

#[test]
fn normal_traffic_a_better_converting_surge_and_a_quiet_night_raise_nothing() {
    let mut h = Harness::<FunnelDrop>::new("{}").unwrap();
    let mut rng = Rng(15);
    let a = simulate_segments(&mut h, &mut rng, T0, 12 * 60, 45.0, 0.5, |_, _| 0.65);
    assert!(a.is_empty(), "{a:#?}");
    // A surge: three times the sessions, converting better.
    let a = simulate_segments(
        &mut h,
        &mut rng,
        T0 + 12 * 60 * MIN,
        60,
        135.0,
        0.5,
        |_, _| 0.8,
    );
    assert!(a.is_empty(), "{a:#?}");
    // Night: a few sessions a minute.
    let mut h = Harness::<FunnelDrop>::new("{}").unwrap();
    let a = simulate_segments(&mut h, &mut Rng(16), T0, 6 * 60, 6.0, 0.5, |_, _| 0.65);
    assert!(a.is_empty(), "{a:#?}");
}

#[test]
fn a_tiny_segment_with_no_conversions_by_chance_raises_nothing() {
    let mut h = Harness::<FunnelDrop>::new("{}").unwrap();
    let mut rng = Rng(17);
    let start = T0 + 8 * 60 * MIN;
    // 3 % mobile: a handful of checkouts per window, all failing for 20 minutes.
    simulate_segments(&mut h, &mut rng, start, 90, 45.0, 0.03, |_, _| 0.65);
    let a = simulate_segments(
        &mut h,
        &mut rng,
        start + 90 * MIN,
        20,
        45.0,
        0.03,
        |m, d| {
            if d == "mobile" && m % 3 == 0 {
                0.0
            } else {
                0.65
            }
        },
    );
    assert!(a.is_empty(), "{a:#?}");
}

#[test]
fn segments_stay_bounded_under_many_agents_and_referrers() {
    let mut h = Harness::<FunnelDrop>::new(r#"{"max_sessions": 1000}"#).unwrap();
    for chunk in 0..100 {
        let clicks: Vec<_> = (0..1000)
            .map(|i| {
                let n = chunk * 1000 + i;
                let mut c = TestClick::page_view(T0 + n, &format!("s{n}"), "/product/1");
                c.user_agent = Some(format!("agent-{n}"));
                c.referrer = Some(format!("https://site{n}.example/"));
                c.device = Some(format!("dev{n}"));
                c.country = Some(format!("Q{}", n % 26_000));
                c
            })
            .collect();
        h.process(&clicks).unwrap();
        h.tick(T0 + chunk * 1000).unwrap();
    }
    let cap = Settings::default().max_segment_values as usize;
    assert!(
        h.plugin().tracked_segments() <= 4 * cap,
        "{}",
        h.plugin().tracked_segments()
    );
    assert!(h.plugin().tracked_sessions() <= 1000);
    assert!(h.plugin().snapshot().unwrap().len() < 1_000_000);
}

#[test]
fn segments_survive_a_reload_and_a_v1_snapshot_is_accepted() {
    let mut h = Harness::<FunnelDrop>::new("{}").unwrap();
    let mut rng = Rng(18);
    let start = T0 + 8 * 60 * MIN;
    simulate_segments(&mut h, &mut rng, start, 60, 45.0, 0.5, |_, _| 0.65);
    let json = |h: &Harness<FunnelDrop>| {
        serde_json::from_slice::<serde_json::Value>(&h.plugin().snapshot().unwrap()).unwrap()
    };
    let before = json(&h);
    h.reload().unwrap();
    assert_eq!(json(&h), before);
    let a = simulate_segments(&mut h, &mut rng, start + 60 * MIN, 15, 45.0, 0.5, |_, d| {
        if d == "mobile" { 0.0 } else { 0.65 }
    });
    assert_eq!(a.len(), 1, "{a:#?}");
    assert_eq!(a[0].entity, "mobile");

    // The shape 0.1 wrote: no segments, sessions without them.
    let t = |den: f64, num: f64| {
        format!(
            r#"{{"den":{den},"num":{num},"initialised":true,"episode":null,"quiet_until_ms":0}}"#
        )
    };
    let v1 = format!(
        r#"{{"sessions":{{"old":{{"reached":3,"last_seen_ms":{T0}}}}},"open":[],"window":[],"next_close_ms":{T0},"transitions":[{},{},{}],"learned":100,"untracked":0}}"#,
        t(80.0, 24.0),
        t(24.0, 13.2),
        t(13.2, 8.6)
    );
    let mut fresh = FunnelDrop::new(Settings::default()).unwrap();
    fresh.restore(v1.as_bytes()).unwrap();
    assert_eq!(fresh.tracked_sessions(), 1);
    assert_eq!(fresh.state.site.learned, 100);
    assert!(fresh.restore(b"{\"sessions\": 7}").is_err());
}

/// A broken tracker loses 70 % of all events at random for 20 minutes. A session's single cart
/// or purchase event is lost as often as any, while a session with several product views
/// still counts as having reached the product step, so conversion "falls": but the site's
/// traffic fell too, and that is the traffic detector's to report.
#[test]
fn a_tracker_losing_most_events_is_not_a_funnel_drop() {
    let mut h = Harness::<FunnelDrop>::new("{}").unwrap();
    let mut rng = Rng(9);
    let start = T0 + 8 * 60 * MIN;
    let mut alerts = Vec::new();
    for m in 0..130 {
        let t = start + m * MIN;
        let n = (100.0 * daily_shape(t)).round() as i64;
        let mut clicks = Vec::new();
        for i in 0..n {
            let s = format!("o{t}-{i}");
            let at = t + i * MIN / n.max(1);
            let mut events = vec![TestClick::page_view(at, &s, "/")];
            for v in 0..4 {
                events.push(TestClick::page_view(at + 1 + v, &s, "/product/7"));
            }
            if rng.chance(0.3) {
                events.push(TestClick::new(EventKind::AddToCart, at + 6, &s, "/p"));
                if rng.chance(0.55) {
                    events.push(TestClick::new(EventKind::Checkout, at + 7, &s, "/c"));
                    if rng.chance(0.65) {
                        events.push(TestClick::new(EventKind::Purchase, at + 8, &s, "/o"));
                    }
                }
            }
            let lossy = (90..110).contains(&m);
            clicks.extend(events.into_iter().filter(|_| !lossy || rng.chance(0.3)));
        }
        alerts.extend(h.process(&clicks).unwrap().alerts);
        alerts.extend(h.tick(t + MIN).unwrap().alerts);
    }
    assert!(alerts.is_empty(), "{alerts:#?}");
}

#[test]
fn a_broken_checkout_is_proven_sequentially_before_the_window_fills() {
    let mut h = Harness::<FunnelDrop>::new("{}").unwrap();
    let mut rng = Rng(4);
    // About 14 checkouts a minute at this hour: the 5-bucket window needs five buckets of the
    // break to fall below half its baseline; the sequential test needs a score of entries.
    let start = T0 + 8 * 60 * MIN;
    assert!(simulate(&mut h, &mut rng, start, 90, 100.0, |_| 0.65).is_empty());
    let broken = start + 90 * MIN;
    let alerts = simulate(&mut h, &mut rng, broken, 60, 100.0, |m| {
        if m < 30 { 0.1 } else { 0.65 }
    });
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!(a.entity.as_str(), "*");
    assert!(
        a.time_ms - broken <= 3 * MIN,
        "delay {}",
        a.time_ms - broken
    );
    assert!(a.window_start_ms >= broken, "{a:#?}");
}

#[test]
fn the_traffic_guard_follows_a_steep_start_from_a_partial_first_bucket() {
    // The first bucket holds a few seconds of traffic and the morning then triples: a
    // reference learned from that bucket at a slow weight (winsorised to the guard's band)
    // stayed far below the traffic and kept the guard shut for hours; the median of the last
    // hour follows.
    let s = Settings::default();
    let mut guard = crate::Traffic::default();
    let mut open = Vec::new();
    for (i, n) in std::iter::once(5)
        .chain((0..120).map(|m| 100 + 2 * m))
        .enumerate()
    {
        let bucket = i as i64 * MIN;
        for _ in 0..n {
            guard.count(bucket);
        }
        open.push(guard.close(bucket, &s));
    }
    assert!(open[40..].iter().all(|&o| o), "{open:?}");
    // A site outage (a tenth of the events) shuts it, from its first bucket.
    let bucket = 121 * MIN;
    for _ in 0..30 {
        guard.count(bucket);
    }
    assert!(!guard.close(bucket, &s));
}

/// A snapshot written by funnel-drop 0.2.0 (main at b01b888): 90 minutes of
/// `simulate_segments(…, Rng(31), T0 + 8 h, 90, 45.0, 0.4, purchase 0.65)` with
/// `idle_timeout_secs` 300.
const SNAPSHOT_0_2: &[u8] = include_bytes!("fixtures/funnel-drop-0.2.snapshot.json");

#[test]
fn a_snapshot_written_by_0_2_restores_with_its_baselines_and_segments() {
    let mut h = Harness::<FunnelDrop>::new(r#"{"idle_timeout_secs": 300}"#).unwrap();
    h.restore(SNAPSHOT_0_2).unwrap();
    // A fresh instance would learn 30 buckets before judging anything: an alert within
    // minutes proves the baselines (site and segments) came over.
    let mut rng = Rng(32);
    let at = T0 + 8 * 60 * MIN + 90 * MIN;
    let alerts = simulate_segments(&mut h, &mut rng, at, 40, 45.0, 0.4, |m, d| {
        if m < 30 && d == "mobile" { 0.0 } else { 0.65 }
    });
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!(
        (a.kind.as_str(), a.entity_type.as_str(), a.entity.as_str()),
        ("funnel-drop/purchase", "device", "mobile"),
        "{a:#?}"
    );
    assert!(
        a.time_ms - at <= 10 * MIN,
        "delay {} s",
        (a.time_ms - at) / 1000
    );
    // Without the snapshot, the same minutes raise nothing that soon.
    let mut fresh = Harness::<FunnelDrop>::new(r#"{"idle_timeout_secs": 300}"#).unwrap();
    let early: Vec<_> = simulate_segments(&mut fresh, &mut Rng(32), at, 40, 45.0, 0.4, |m, d| {
        if m < 30 && d == "mobile" { 0.0 } else { 0.65 }
    })
    .into_iter()
    .filter(|a| a.time_ms - at <= 10 * MIN)
    .collect();
    assert!(early.is_empty(), "{early:#?}");
}
