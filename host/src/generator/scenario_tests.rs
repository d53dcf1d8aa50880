//! Tests that injected anomalies and surges do to the event stream what their labels say.

use std::collections::HashMap;

use super::*;
use crate::event::EventKind;

fn run(spec: &str, surges: &str, seed: u64) -> (Vec<ClickEvent>, Vec<Label>, Generator) {
    let items = [
        parse_anomalies(spec).unwrap(),
        parse_surges(surges).unwrap(),
    ]
    .concat();
    let mut g = Generator::new(GeneratorSettings {
        seed,
        mean_rate: 20.0,
        scenario: Scenario {
            items,
            warmup_ms: 20 * 60_000,
            gap_ms: 15 * 60_000,
        },
        ..GeneratorSettings::default()
    });
    let end = g.plan_end_ms() + 10 * 60_000;
    let mut events = Vec::new();
    loop {
        let e = g.next_event();
        if e.time_ms >= end {
            break;
        }
        events.push(e);
    }
    let labels = g.labels();
    (events, labels, g)
}

/// Events per minute matching `f` in [from, to).
fn per_minute(events: &[ClickEvent], from: i64, to: i64, f: impl Fn(&ClickEvent) -> bool) -> f64 {
    let n = events
        .iter()
        .filter(|e| e.time_ms >= from && e.time_ms < to && f(e))
        .count();
    n as f64 / ((to - from) as f64 / 60_000.0)
}

#[test]
fn the_same_seed_and_spec_give_the_same_events_and_labels() {
    let (a, la, _) = run("all", "all", 5);
    let (b, lb, _) = run("all", "all", 5);
    assert_eq!(a, b);
    assert_eq!(la, lb);
    assert!(a.windows(2).all(|w| w[0].time_ms <= w[1].time_ms));
    let ids: std::collections::HashSet<_> = a.iter().map(|e| &e.event_id).collect();
    assert_eq!(ids.len(), a.len(), "event ids stay unique");
    let (c, _, _) = run("all", "all", 6);
    assert_ne!(a[..100], c[..100]);
    // Every anomaly of `all` is labelled once, besides the ordinary bots; surges are
    // labelled as such.
    let injected: Vec<&Label> = la
        .iter()
        .filter(|l| l.variant.as_deref() != Some("ordinary") && l.kind != SURGE_KIND)
        .collect();
    assert_eq!(injected.len(), 10, "{injected:#?}");
    assert_eq!(la.iter().filter(|l| l.kind == SURGE_KIND).count(), 2);
    assert!(la.iter().any(|l| l.variant.as_deref() == Some("ordinary")));
}

#[test]
fn a_site_drop_and_a_broken_checkout_remove_what_they_say() {
    let (events, labels, _) = run("traffic-drop/site,funnel-drop", "none", 7);
    let drop = labels.iter().find(|l| l.kind == "traffic-drop").unwrap();
    let len = drop.end_ms - drop.start_ms;
    let during = per_minute(&events, drop.start_ms, drop.end_ms, |_| true);
    let before = per_minute(
        &events,
        drop.start_ms - len.min(15 * 60_000),
        drop.start_ms,
        |_| true,
    );
    assert!(
        during < 0.35 * before,
        "site drop to x{:.2}: {during:.0}/min vs {before:.0}/min",
        drop.magnitude
    );
    let funnel = labels.iter().find(|l| l.kind == "funnel-drop").unwrap();
    let purchase = |e: &ClickEvent| e.kind == EventKind::Purchase;
    let checkout = |e: &ClickEvent| e.kind == EventKind::Checkout;
    let (s, e) = (funnel.start_ms, funnel.end_ms);
    // The gap before an injection is normal traffic (the other item may precede it).
    let b = s - 15 * 60_000;
    let during = per_minute(&events, s, e, purchase) / per_minute(&events, s, e, checkout);
    let before = per_minute(&events, b, s, purchase) / per_minute(&events, b, s, checkout);
    assert!(
        during <= 0.3 * before,
        "checkout→purchase {during:.2} during vs {before:.2} before"
    );
    let views = |e: &ClickEvent| e.kind == EventKind::PageView;
    let ratio = per_minute(&events, s, e, views) / per_minute(&events, b, s, views);
    assert!(
        (0.7..1.4).contains(&ratio),
        "page views stay as they were: x{ratio:.2}"
    );
}

#[test]
fn a_page_spike_multiplies_that_page_and_bots_show_up_under_their_labels() {
    let (events, labels, _) = run("traffic-spike/page,bot/regular,click-fraud", "none", 9);
    let spike = labels.iter().find(|l| l.kind == "traffic-spike").unwrap();
    let page = spike.entities[0].id.clone();
    let on_page = |e: &ClickEvent| e.url == page;
    // Skip the one-minute ramp.
    let during = per_minute(&events, spike.start_ms + 60_000, spike.end_ms, on_page);
    let before = per_minute(
        &events,
        spike.start_ms - 20 * 60_000,
        spike.start_ms,
        on_page,
    );
    assert!(
        during > 0.6 * spike.magnitude * before,
        "x{:.1} on {page}: {during:.1}/min vs {before:.1}/min",
        spike.magnitude
    );
    let bot = labels
        .iter()
        .find(|l| l.variant.as_deref() == Some("regular"))
        .unwrap();
    let session = &bot
        .entities
        .iter()
        .find(|e| e.entity_type == "session")
        .unwrap()
        .id;
    let times: Vec<i64> = events
        .iter()
        .filter(|e| &e.session_id == session)
        .map(|e| e.time_ms)
        .collect();
    assert_eq!(times.first(), Some(&bot.start_ms));
    assert_eq!(times.last(), Some(&bot.end_ms));
    assert!(
        times
            .windows(2)
            .all(|w| (1_960..=2_040).contains(&(w[1] - w[0])))
    );
    let fraud = labels.iter().find(|l| l.kind == "click-fraud").unwrap();
    let ips: Vec<&str> = fraud
        .entities
        .iter()
        .filter(|e| e.entity_type == "ip")
        .map(|e| e.id.as_str())
        .collect();
    let mut clicks: HashMap<&str, usize> = HashMap::new();
    for e in &events {
        if e.kind == EventKind::AdClick
            && let Some(ip) = e.ip.as_deref()
            && ips.contains(&ip)
        {
            *clicks.entry(ip).or_default() += 1;
            assert!(e.time_ms >= fraud.start_ms && e.time_ms <= fraud.end_ms);
        }
    }
    let total: usize = clicks.values().sum();
    let minutes = (fraud.end_ms - fraud.start_ms) as f64 / 60_000.0;
    let rate = total as f64 / minutes;
    assert!(
        (0.7 * fraud.magnitude..1.3 * fraud.magnitude).contains(&rate),
        "{rate:.1} clicks/min for a planned {:.1}",
        fraud.magnitude
    );
}

#[test]
fn every_ordinary_bot_session_is_labelled_with_its_ip_and_session() {
    let (events, labels, _) = run("none", "none", 3);
    let bots: HashMap<&str, &Label> = labels
        .iter()
        .map(|l| {
            let s = l
                .entities
                .iter()
                .find(|e| e.entity_type == "session")
                .unwrap();
            (s.id.as_str(), l)
        })
        .collect();
    assert!(!bots.is_empty());
    for e in &events {
        if let Some(label) = bots.get(e.session_id.as_str()) {
            assert!(e.time_ms >= label.start_ms && e.time_ms <= label.end_ms);
            assert!(
                label
                    .entities
                    .contains(&Entity::new("ip", e.ip.clone().unwrap()))
            );
        } else {
            // Unlabelled sessions are human: never the scrapers' pace.
            assert!(
                !e.user_agent
                    .as_deref()
                    .unwrap_or("")
                    .contains("python-requests")
            );
        }
    }
}
