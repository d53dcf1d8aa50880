//! Tests that drawn worlds differ, stay deterministic, and that every extended anomaly
//! variant does to the event stream what its label says.

use std::collections::{HashMap, HashSet};

use super::anomaly::{Effect, plan};
use super::site::ORIGIN;
use super::*;
use crate::event::EventKind;

fn scenario(spec: &str, surges: &str) -> Scenario {
    Scenario {
        items: [
            parse_anomalies(spec).unwrap(),
            parse_surges(surges).unwrap(),
        ]
        .concat(),
        warmup_ms: 20 * 60_000,
        gap_ms: 15 * 60_000,
    }
}

fn settings(spec: &str, surges: &str, seed: u64, world: World) -> GeneratorSettings {
    GeneratorSettings {
        seed,
        mean_rate: 20.0,
        scenario: scenario(spec, surges),
        world,
        ..GeneratorSettings::default()
    }
}

/// Events until 10 simulated minutes after the plan, the labels, and the plan itself.
fn run(
    spec: &str,
    surges: &str,
    seed: u64,
    world: World,
) -> (Vec<ClickEvent>, Vec<Label>, Vec<anomaly::Planned>) {
    let s = settings(spec, surges, seed, world.clone());
    let planned = plan(&s.scenario, seed, s.start_ms, &world);
    let mut g = Generator::new(s);
    let end = g.plan_end_ms() + 10 * 60_000;
    let mut events = Vec::new();
    loop {
        let e = g.next_event();
        if e.time_ms >= end {
            break;
        }
        events.push(e);
    }
    (events, g.labels(), planned)
}

fn path(e: &ClickEvent) -> &str {
    e.url.strip_prefix(ORIGIN).unwrap_or(&e.url)
}

fn label<'a>(labels: &'a [Label], variant: &str) -> &'a Label {
    labels
        .iter()
        .find(|l| l.variant.as_deref() == Some(variant) && l.kind != SURGE_KIND)
        .unwrap_or_else(|| panic!("no {variant} label in {labels:#?}"))
}

fn count(events: &[ClickEvent], from: i64, to: i64, f: impl Fn(&ClickEvent) -> bool) -> usize {
    events
        .iter()
        .filter(|e| e.time_ms >= from && e.time_ms <= to && f(e))
        .count()
}

#[test]
fn the_same_world_seed_and_spec_give_the_same_events_and_labels() {
    let (a, la, _) = run("all,extended", "all", 21, World::random(4));
    let (b, lb, _) = run("all,extended", "all", 21, World::random(4));
    assert_eq!(a, b);
    assert_eq!(la, lb);
    assert!(a.windows(2).all(|w| w[0].time_ms <= w[1].time_ms));
    let (c, _, _) = run("all,extended", "all", 21, World::random(5));
    assert_ne!(a[..200], c[..200], "another world, other events");
    let injected: Vec<&Label> = la
        .iter()
        .filter(|l| l.kind != SURGE_KIND && l.variant.as_deref() != Some("ordinary"))
        .collect();
    assert_eq!(injected.len(), 16, "{injected:#?}");
    // Flash sale, newsletter, and the two halves of the slow ramp.
    let surges: Vec<&str> = la
        .iter()
        .filter(|l| l.kind == SURGE_KIND)
        .filter_map(|l| l.variant.as_deref())
        .collect();
    assert_eq!(surges.len(), 4, "{surges:?}");
    assert!(surges.contains(&"flash-sale") && surges.contains(&"slow-ramp"));
    let ids: HashSet<&str> = la.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(ids.len(), la.len(), "label ids are unique");
}

#[test]
fn urls_and_devices_follow_the_world() {
    let mut schemes = HashSet::new();
    for seed in 1..=6 {
        let world = World::random(seed);
        schemes.insert(world.site.scheme);
        let events = Generator::new(GeneratorSettings {
            seed,
            bot_fraction: 0.0,
            world: world.clone(),
            ..GeneratorSettings::default()
        })
        .take(6_000);
        let products: Vec<&ClickEvent> = events
            .iter()
            .filter(|e| world.site.category_of(path(e)).is_some())
            .collect();
        assert!(
            products.len() > 500,
            "{}: {} product events",
            world.describe(),
            products.len()
        );
        // Only the world's own spelling: no legacy `/product/<n>` unless the scheme is it.
        let legacy = events
            .iter()
            .filter(|e| {
                path(e).starts_with("/product/") && world.site.category_of(path(e)).is_none()
            })
            .count();
        assert_eq!(legacy, 0, "{}", world.describe());
        let mut sessions: HashMap<&str, &str> = HashMap::new();
        for e in &events {
            sessions.insert(&e.session_id, e.device.as_deref().unwrap_or(""));
        }
        let mobile =
            sessions.values().filter(|d| **d == "mobile").count() as f64 / sessions.len() as f64;
        let want = world.device_share("mobile");
        assert!(
            (mobile - want).abs() < 0.08,
            "{}: mobile {mobile:.2}",
            world.describe()
        );
    }
    assert!(schemes.len() >= 3, "{schemes:?}");
}

#[test]
fn a_category_outage_removes_that_categorys_product_views_in_its_window() {
    for (variant, seed) in [("category", 31), ("category-404", 32)] {
        let world = World::random(seed);
        let (events, labels, _) = run(
            &format!("traffic-drop/{variant}"),
            "none",
            seed,
            world.clone(),
        );
        let l = label(&labels, variant);
        let category = l
            .entities
            .iter()
            .find(|e| e.entity_type == "category")
            .unwrap();
        let c = world
            .site
            .categories
            .iter()
            .position(|n| *n == category.id)
            .unwrap();
        let of_category = |e: &ClickEvent| world.site.category_of(path(e)) == Some(c);
        let during = count(&events, l.start_ms, l.end_ms, of_category);
        let len = l.end_ms - l.start_ms;
        let before = count(&events, l.start_ms - len, l.start_ms - 1, of_category);
        assert_eq!(
            during, 0,
            "{variant}: {during} events of {} in its outage",
            category.id
        );
        assert!(
            before > 10,
            "{variant}: {before} events of {} before",
            category.id
        );
        // Every product page of the category is named, and nothing else but the category.
        let pages = l
            .entities
            .iter()
            .filter(|e| e.entity_type == "page")
            .count();
        assert_eq!(pages, world.site.products_of(c).len());
        let not_found = |e: &ClickEvent| path(e) == "/404";
        let found = count(&events, l.start_ms, l.end_ms, not_found);
        if variant == "category-404" {
            assert!(found > 0, "views become /404");
            assert_eq!(count(&events, 0, l.start_ms - 1, not_found), 0);
        } else {
            assert_eq!(found, 0);
        }
    }
}

#[test]
fn a_device_checkout_outage_removes_that_devices_checkouts_only() {
    let world = World::random(41);
    let (events, labels, _) = run("funnel-drop/device", "none", 41, world);
    let l = label(&labels, "device");
    let device = &l
        .entities
        .iter()
        .find(|e| e.entity_type == "device")
        .unwrap()
        .id;
    let converts = |e: &ClickEvent| matches!(e.kind, EventKind::Checkout | EventKind::Purchase);
    let on = |e: &ClickEvent| converts(e) && e.device.as_deref() == Some(device.as_str());
    let off = |e: &ClickEvent| {
        e.kind == EventKind::Purchase && e.device.as_deref() != Some(device.as_str())
    };
    assert_eq!(count(&events, l.start_ms, l.end_ms, on), 0, "{device}");
    assert!(
        count(&events, l.start_ms, l.end_ms, off) > 20,
        "other devices still buy"
    );
    assert!(
        count(&events, 0, l.start_ms - 1, on) > 5,
        "{device} bought before"
    );
    let views = |e: &ClickEvent| e.device.as_deref() == Some(device.as_str()) && !converts(e);
    assert!(
        count(&events, l.start_ms, l.end_ms, views) > 100,
        "its other events stay"
    );
}

#[test]
fn slow_fraud_ips_share_a_slash_24_and_each_stays_under_its_cap() {
    let world = World::random(51);
    let (events, labels, planned) = run("click-fraud/slow-subnet", "none", 51, world);
    let l = label(&labels, "slow-subnet");
    let Some(Effect::SlowFraud { cap, ips, .. }) = planned
        .iter()
        .map(|p| &p.effect)
        .find(|e| matches!(e, Effect::SlowFraud { .. }))
        .cloned()
    else {
        panic!("no slow fraud planned");
    };
    assert!(cap < 5, "under the per-IP threshold of 5 per 10 min");
    let subnet = &l
        .entities
        .iter()
        .find(|e| e.entity_type == "subnet")
        .unwrap()
        .id;
    let prefix = subnet.trim_end_matches("0/24");
    let fraud_ips: HashSet<&str> = l
        .entities
        .iter()
        .filter(|e| e.entity_type == "ip")
        .map(|e| e.id.as_str())
        .collect();
    assert_eq!(fraud_ips.len(), ips as usize);
    assert!(
        fraud_ips.iter().all(|ip| ip.starts_with(prefix)),
        "{fraud_ips:?} in {subnet}"
    );
    let mut clicks: HashMap<&str, Vec<i64>> = HashMap::new();
    for e in &events {
        if e.kind == EventKind::AdClick
            && let Some(ip) = e.ip.as_deref()
            && fraud_ips.contains(ip)
        {
            clicks.entry(ip).or_default().push(e.time_ms);
        }
    }
    assert!(clicks.len() as u32 >= ips * 9 / 10, "most IPs click");
    let total: usize = clicks.values().map(Vec::len).sum();
    assert!(2 * total as u32 > 3 * ips, "{total} clicks from {ips} IPs");
    for (ip, times) in &clicks {
        for (i, t) in times.iter().enumerate() {
            let in_ten = times[i..].iter().take_while(|u| **u < t + 600_000).count();
            assert!(
                in_ten <= cap as usize,
                "{ip}: {in_ten} clicks in 10 min > {cap}"
            );
        }
    }
}

#[test]
fn a_bot_farm_runs_one_session_per_ip_with_the_drawn_jitter() {
    let mut cvs = Vec::new();
    for seed in [61, 62, 63] {
        let world = World::random(seed);
        let (events, labels, planned) = run("bot/farm", "none", seed, world);
        let l = label(&labels, "farm");
        let Some(Effect::Farm { cv, ips, .. }) = planned
            .iter()
            .map(|p| &p.effect)
            .find(|e| matches!(e, Effect::Farm { .. }))
            .cloned()
        else {
            panic!("no farm planned");
        };
        assert!((0.1..0.9).contains(&cv));
        let subnet = &l
            .entities
            .iter()
            .find(|e| e.entity_type == "subnet")
            .unwrap()
            .id;
        let prefix = subnet.trim_end_matches("0/24");
        let sessions: HashSet<&str> = l
            .entities
            .iter()
            .filter(|e| e.entity_type == "session")
            .map(|e| e.id.as_str())
            .collect();
        assert!(sessions.len() as u32 >= ips, "every IP runs sessions");
        // Per session: its span and gaps; per IP: sessions never overlap.
        let mut spans: HashMap<&str, (String, i64, i64)> = HashMap::new();
        let mut gaps = Vec::new();
        let mut last: HashMap<&str, i64> = HashMap::new();
        for e in events
            .iter()
            .filter(|e| sessions.contains(e.session_id.as_str()))
        {
            let ip = e.ip.clone().unwrap();
            assert!(ip.starts_with(prefix), "{ip} outside {subnet}");
            let span = spans
                .entry(&e.session_id)
                .or_insert((ip, e.time_ms, e.time_ms));
            span.2 = e.time_ms;
            if let Some(prev) = last.insert(&e.session_id, e.time_ms) {
                gaps.push((e.time_ms - prev) as f64);
            }
        }
        let mut by_ip: HashMap<&str, Vec<(i64, i64)>> = HashMap::new();
        for (ip, start, end) in spans.values() {
            by_ip.entry(ip).or_default().push((*start, *end));
        }
        assert_eq!(by_ip.len() as u32, ips);
        for (ip, mut s) in by_ip {
            s.sort_unstable();
            assert!(
                s.windows(2).all(|w| w[1].0 > w[0].1),
                "{ip} overlaps: {s:?}"
            );
        }
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        let measured = var.sqrt() / mean;
        assert!(
            (measured - cv).abs() < 0.25 * cv + 0.05,
            "gap cv {measured:.2} vs drawn {cv:.2} over {} gaps",
            gaps.len()
        );
        cvs.push(cv);
    }
    // Across seeds the drawn jitter spans most of its range.
    let drawn: Vec<f64> = (1..=20)
        .filter_map(|seed| {
            let s = settings("bot/farm", "none", seed, World::random(seed));
            plan(&s.scenario, seed, s.start_ms, &s.world)
                .into_iter()
                .find_map(|p| match p.effect {
                    Effect::Farm { cv, .. } => Some(cv),
                    _ => None,
                })
        })
        .collect();
    let (lo, hi) = drawn
        .iter()
        .fold((1.0f64, 0.0f64), |(l, h), c| (l.min(*c), h.max(*c)));
    assert!(lo < 0.35 && hi > 0.65, "{drawn:?} (measured {cvs:?})");
}

#[test]
fn a_slow_ramp_raises_traffic_before_the_real_drop() {
    let world = World::random(71);
    let (events, labels, _) = run("traffic-drop/after-ramp", "none", 71, world.clone());
    let l = label(&labels, "after-ramp");
    let ramp = labels
        .iter()
        .find(|s| s.kind == SURGE_KIND && s.variant.as_deref() == Some("slow-ramp"))
        .unwrap();
    let per_min = |from: i64, to: i64| {
        let shape = world.shape.factor((from + to) / 2);
        count(&events, from, to, |_| true) as f64 / ((to - from) as f64 / 60_000.0) / shape
    };
    let ten = 10 * 60_000;
    let before = per_min(ramp.start_ms - ten, ramp.start_ms);
    let top = per_min(l.start_ms - ten, l.start_ms);
    let drop = per_min(l.start_ms + 60_000, l.end_ms);
    assert!(top > 1.2 * before, "ramp: {top:.0}/min vs {before:.0}/min");
    assert!(
        drop < 0.6 * top,
        "drop: {drop:.0}/min vs {top:.0}/min at the top of the ramp"
    );
    assert_eq!(ramp.end_ms + 1, l.start_ms, "the drop follows the ramp");
}
