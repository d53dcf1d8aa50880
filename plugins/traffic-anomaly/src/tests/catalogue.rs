//! Native tests on a catalogue of many quiet product pages: url levels, the surge rule,
//! upgrades from 0.1 and the sequential drop test with second ticks.

use super::*;

/// A catalogue in the `/p/<category>-<n>` scheme: a home page, six category pages and 40
/// products per category at about two events a minute each: every product is far too quiet
/// to be judged alone. `conversions(minute)` add-to-cart events per minute are added.
fn simulate_catalogue(
    h: &mut Harness<TrafficAnomaly>,
    rng: &mut Rng,
    start: i64,
    minutes: i64,
    factor: impl Fn(i64, &str) -> f64,
    conversions: impl Fn(i64) -> f64,
) -> Vec<Alert> {
    let pages = catalogue();
    let mut alerts = Vec::new();
    for m in 0..minutes {
        let t = start + m * MIN;
        let mut clicks = Vec::new();
        for (url, rate) in &pages {
            let n = rng.poisson(rate * factor(m, url));
            for i in 0..n {
                let at = t + i64::from(i) * MIN / i64::from(n.max(1));
                clicks.push(TestClick::page_view(at, "s", url));
            }
        }
        let n = rng.poisson(conversions(m));
        for i in 0..n {
            let at = t + i64::from(i) * MIN / i64::from(n.max(1));
            clicks.push(TestClick::new(EventKind::AddToCart, at, "s", "/cart"));
        }
        clicks.sort_by_key(|c| c.time_ms);
        alerts.extend(h.process(&clicks).unwrap().alerts);
        alerts.extend(h.tick(t + MIN).unwrap().alerts);
    }
    alerts
}

/// The pages of [`simulate_catalogue`] and their events per minute.
fn catalogue() -> Vec<(String, f64)> {
    let categories = ["shoes", "shirts", "books", "toys", "garden", "tools"];
    let mut pages = vec![("/".to_owned(), 120.0)];
    for c in categories {
        pages.push((format!("/c/{c}"), 15.0));
        pages.extend((0..40).map(|n| (format!("/p/{c}-{n}"), 2.0)));
    }
    pages
}

/// [`simulate_catalogue`] with the watermark advanced every `tick_ms` (the host's default is a
/// second) and `factor(minute, ms into the minute, url)`.
fn simulate_catalogue_ticked(
    h: &mut Harness<TrafficAnomaly>,
    rng: &mut Rng,
    start: i64,
    minutes: i64,
    tick_ms: i64,
    factor: impl Fn(i64, i64, &str) -> f64,
    conversions: impl Fn(i64) -> f64,
) -> Vec<Alert> {
    let pages = catalogue();
    let mut alerts = Vec::new();
    for m in 0..minutes {
        let t = start + m * MIN;
        let mut clicks = Vec::new();
        for (url, rate) in &pages {
            let n = rng.poisson(*rate);
            for _ in 0..n {
                // At random times in the minute (a Poisson process), thinned by the factor
                // at the event's own time.
                let offset = (rng.next_f64() * MIN as f64) as i64;
                if rng.next_f64() < factor(m, offset, url) {
                    clicks.push(TestClick::page_view(t + offset, "s", url));
                }
            }
        }
        let n = rng.poisson(conversions(m));
        for i in 0..n {
            let at = t + i64::from(i) * MIN / i64::from(n.max(1));
            clicks.push(TestClick::new(EventKind::AddToCart, at, "s", "/cart"));
        }
        clicks.sort_by_key(|c| c.time_ms);
        let mut at = t;
        // A negative `tick_ms` hands the minute over in one batch before its ticks: events
        // run ahead of the watermark, as in a batch that spans many ticks.
        let ahead = tick_ms < 0;
        let tick_ms = tick_ms.abs();
        if ahead {
            alerts.extend(h.process(&clicks).unwrap().alerts);
        }
        while at < t + MIN {
            let end = at + tick_ms;
            let slice: Vec<TestClick> = clicks
                .iter()
                .filter(|c| !ahead && c.time_ms >= at && c.time_ms < end)
                .cloned()
                .collect();
            alerts.extend(h.process(&slice).unwrap().alerts);
            alerts.extend(h.tick(end).unwrap().alerts);
            at = end;
        }
    }
    alerts
}

/// An hour of normal catalogue traffic with second ticks from `T0`, checked to raise nothing;
/// returns the time it ends.
fn a_quiet_ticked_hour(h: &mut Harness<TrafficAnomaly>, rng: &mut Rng) -> i64 {
    let none = |_: i64, _: i64, _: &str| 1.0;
    let quiet = simulate_catalogue_ticked(h, rng, T0, 60, 1_000, none, |_| 20.0);
    assert!(quiet.is_empty(), "{quiet:#?}");
    T0 + 60 * MIN
}

#[test]
fn a_category_outage_over_many_quiet_pages_is_found_at_its_level_and_named() {
    let mut h = harness();
    let mut rng = Rng(11);
    let quiet = simulate_catalogue(&mut h, &mut rng, T0, 60, |_, _| 1.0, |_| 20.0);
    assert!(quiet.is_empty(), "{quiet:#?}");
    let start = T0 + 60 * MIN;
    let alerts = simulate_catalogue(
        &mut h,
        &mut rng,
        start,
        40,
        |m, url| {
            if url.starts_with("/p/books-") && (0..12).contains(&m) {
                0.0
            } else {
                1.0
            }
        },
        |_| 20.0,
    );
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!(
        (a.kind.as_str(), a.entity_type.as_str(), a.entity.as_str()),
        ("traffic-drop", "category", "books")
    );
    assert!(a.time_ms - start <= 3 * MIN, "{a:#?}");
    assert!(a.details.contains("/p/books-*"), "{}", a.details);
    assert!(
        a.message.contains("most affected: /p/books-"),
        "{}",
        a.message
    );
}

#[test]
fn a_surge_that_converts_is_info_and_a_flood_that_does_not_is_a_spike() {
    // Three times the visitors, converting as usual: a demand surge.
    let mut h = harness();
    let mut rng = Rng(12);
    simulate_catalogue(&mut h, &mut rng, T0, 60, |_, _| 1.0, |_| 20.0);
    let surge = |m: i64| if (0..20).contains(&m) { 3.0 } else { 1.0 };
    let alerts = simulate_catalogue(
        &mut h,
        &mut rng,
        T0 + 60 * MIN,
        40,
        |m, _| surge(m),
        |m| 20.0 * surge(m),
    );
    let site: Vec<_> = alerts.iter().filter(|a| a.entity_type == "site").collect();
    assert_eq!(site.len(), 1, "{alerts:#?}");
    assert_eq!(
        (site[0].kind.as_str(), site[0].severity),
        ("traffic-surge", Severity::Info)
    );
    assert!(
        alerts.iter().all(|a| a.severity == Severity::Info),
        "{alerts:#?}"
    );
    // Three times the events, conversions as before: not demand.
    let mut h = harness();
    let mut rng = Rng(13);
    simulate_catalogue(&mut h, &mut rng, T0, 60, |_, _| 1.0, |_| 20.0);
    let alerts = simulate_catalogue(
        &mut h,
        &mut rng,
        T0 + 60 * MIN,
        40,
        |m, _| surge(m),
        |_| 20.0,
    );
    assert!(
        alerts
            .iter()
            .any(|a| a.kind == "traffic-spike" && a.entity_type == "site"),
        "{alerts:#?}"
    );
}

/// Upgrade: a snapshot as 0.1 wrote it (no levels, no conversion share) restores into this
/// version; pages keep their baselines, levels start learning, and after their warm-up a
/// category outage is found at its level.
#[test]
fn a_0_1_snapshot_restores_and_levels_learn_from_there() {
    let mut h = harness();
    let mut rng = Rng(14);
    simulate_catalogue(&mut h, &mut rng, T0, 60, |_, _| 1.0, |_| 20.0);
    let mut v: serde_json::Value = serde_json::from_slice(&h.snapshot().unwrap()).unwrap();
    let fields = v.as_object_mut().unwrap();
    assert!(fields.remove("groups").is_some());
    assert!(fields.remove("conversion").is_some());
    let pages = h.plugin().tracked_pages();
    h.restore(&serde_json::to_vec(&v).unwrap()).unwrap();
    assert_eq!(h.plugin().tracked_pages(), pages);
    assert_eq!(h.plugin().tracked_levels(), 0);
    let start = T0 + 60 * MIN;
    let quiet = simulate_catalogue(&mut h, &mut rng, start, 30, |_, _| 1.0, |_| 20.0);
    assert!(quiet.is_empty(), "{quiet:#?}");
    assert!(h.plugin().tracked_levels() > 0);
    let start = start + 30 * MIN;
    let alerts = simulate_catalogue(
        &mut h,
        &mut rng,
        start,
        20,
        |m, url| {
            if url.starts_with("/p/toys-") && m < 12 {
                0.0
            } else {
                1.0
            }
        },
        |_| 20.0,
    );
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(
        (alerts[0].entity_type.as_str(), alerts[0].entity.as_str()),
        ("category", "toys")
    );
}

#[test]
fn levels_are_capped() {
    let mut h = Harness::<TrafficAnomaly>::new(r#"{"max_levels": 2}"#).unwrap();
    let clicks: Vec<_> = (0..50)
        .map(|i| TestClick::page_view(T0 + i, "s", &format!("/s{i}/p/x-{i}")))
        .collect();
    h.process(&clicks).unwrap();
    assert_eq!(h.plugin().tracked_levels(), 2);
}

#[test]
fn with_second_ticks_a_category_outage_is_proven_within_its_first_bucket() {
    let mut h = harness();
    let mut rng = Rng(21);
    let start = a_quiet_ticked_hour(&mut h, &mut rng);
    // Every books product is lost from 20 s into minute 60 for 12 minutes: 80 events a minute
    // at its level, none above 3 a minute on a page.
    let outage_ms = start + 20_000;
    let alerts = simulate_catalogue_ticked(
        &mut h,
        &mut rng,
        start,
        40,
        1_000,
        |m, ms, url| {
            let t = start + m * MIN + ms;
            if url.starts_with("/p/books-") && (outage_ms..outage_ms + 12 * MIN).contains(&t) {
                0.0
            } else {
                1.0
            }
        },
        |_| 20.0,
    );
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!(
        (a.kind.as_str(), a.entity_type.as_str(), a.entity.as_str()),
        ("traffic-drop", "category", "books")
    );
    // Proven by the sequential test before the bucket the outage began in has closed.
    assert!(a.time_ms - outage_ms < 40_000, "{}", a.time_ms - outage_ms);
    assert!(a.window_start_ms >= start, "{a:#?}");
}

#[test]
fn with_second_ticks_six_hours_of_normal_traffic_raise_nothing() {
    let mut h = harness();
    let mut rng = Rng(22);
    let none = |_: i64, _: i64, _: &str| 1.0;
    let alerts = simulate_catalogue_ticked(&mut h, &mut rng, T0, 360, 1_000, none, |_| 20.0);
    assert!(alerts.is_empty(), "{alerts:#?}");
}

#[test]
fn with_second_ticks_events_ahead_of_the_watermark_count_at_their_own_time() {
    let mut h = harness();
    let mut rng = Rng(23);
    let none = |_: i64, _: i64, _: &str| 1.0;
    let alerts = simulate_catalogue_ticked(&mut h, &mut rng, T0, 120, -1_000, none, |_| 20.0);
    assert!(alerts.is_empty(), "{alerts:#?}");
}

#[test]
fn with_second_ticks_a_site_drop_deepest_on_the_home_page_is_the_sites() {
    let mut h = harness();
    let mut rng = Rng(24);
    let start = a_quiet_ticked_hour(&mut h, &mut rng);
    // From 10 s into minute 60 every page keeps 0.3 of its traffic, the home page 0.1: the
    // home page follows the site down (it lost more, but not `drop_dominance` times more).
    let drop_ms = start + 10_000;
    let alerts = simulate_catalogue_ticked(
        &mut h,
        &mut rng,
        start,
        20,
        1_000,
        |m, ms, url| match (start + m * MIN + ms >= drop_ms, url) {
            (false, _) => 1.0,
            (true, "/") => 0.1,
            (true, _) => 0.3,
        },
        |_| 20.0,
    );
    assert!(!alerts.is_empty());
    for a in &alerts {
        assert_eq!(
            (a.kind.as_str(), a.entity.as_str()),
            ("traffic-drop", SITE),
            "{alerts:#?}"
        );
    }
}

#[test]
fn the_sequential_test_watches_a_page_only_when_it_can_prove_a_loss_within_a_bucket() {
    let mut h = harness();
    let mut rng = Rng(25);
    simulate_catalogue(&mut h, &mut rng, T0, 60, |_, _| 1.0, |_| 20.0);
    let p = h.plugin();
    let pages: Vec<&str> = p
        .watched
        .iter()
        .filter_map(|n| match n {
            NodeId::Page(u) => Some(u.as_str()),
            _ => None,
        })
        .collect();
    // The home page (120 a minute) is watched; the category pages (15 a minute, enough to be
    // alerted at the bucket close) are not.
    assert_eq!(pages, vec!["/"], "{:?}", p.watched);
}
