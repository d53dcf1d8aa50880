//! Native tests: generator-like bots, slow but robotic clients, and human sessions.

use super::*;
use clickwatch_sdk::testing::{Harness, TestClick};

const HUMAN_UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

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

fn clicks(session: &str, start: i64, gap: i64, n: usize) -> Vec<TestClick> {
    (0..n)
        .map(|i| TestClick::click(start + gap * i as i64, session, "/p"))
        .collect()
}

/// A session with the given gaps, each event on its own product page, from `ip`.
fn session(
    name: &str,
    ip: &str,
    start: i64,
    gaps: impl IntoIterator<Item = i64>,
) -> Vec<TestClick> {
    let mut t = start;
    let mut out = vec![];
    for (i, gap) in std::iter::once(0).chain(gaps).enumerate() {
        t += gap;
        let mut c = TestClick::page_view(t, name, &format!("/product/{i}")).ip(ip);
        c.user_agent = Some(HUMAN_UA.to_owned());
        out.push(c);
    }
    out
}

fn human_gaps(rng: &mut Rng, n: usize) -> Vec<i64> {
    (0..n)
        .map(|_| ((0.5 + rng.next_f64() * 3.7).exp() * 1000.0) as i64)
        .collect()
}

#[test]
fn flags_a_fast_session_once() {
    let mut h = Harness::<BotDetector>::new(
        r#"{"window_ms": 10000, "max_events": 10, "disabled_rules": ["no-dwell", "regular-gaps"]}"#,
    )
    .unwrap();
    let out = h.process(&clicks("bot", 0, 100, 30)).unwrap();
    assert_eq!(out.alerts.len(), 1);
    assert_eq!(out.alerts[0].entity, "bot");
    assert_eq!(out.alerts[0].kind, "bot/fast-clicker");
    assert!(out.alerts[0].score > 5.0);
    assert!(
        h.process(&clicks("bot", 3_000, 100, 30))
            .unwrap()
            .alerts
            .is_empty()
    );
}

#[test]
fn a_generator_bot_is_caught_within_a_few_seconds() {
    let mut h = Harness::<BotDetector>::new("{}").unwrap();
    let mut rng = Rng(1);
    let gaps: Vec<i64> = (0..150)
        .map(|_| 50 + (rng.next_f64() * 250.0) as i64)
        .collect();
    let out = h.process(&session("bot", "203.0.113.7", 0, gaps)).unwrap();
    assert_eq!(out.alerts.len(), 1, "{:#?}", out.alerts);
    let a = &out.alerts[0];
    assert!(a.kind.starts_with("bot/"));
    assert_eq!(
        (a.entity_type.as_str(), a.entity.as_str()),
        ("session", "bot")
    );
    assert!(a.time_ms < 5_000, "caught at {} ms", a.time_ms);
}

#[test]
fn a_thousand_human_sessions_raise_nothing() {
    let mut h = Harness::<BotDetector>::new("{}").unwrap();
    let mut rng = Rng(2);
    for i in 0..1_000 {
        let n = 2 + (rng.next_f64() * 20.0) as usize;
        let gaps = human_gaps(&mut rng, n);
        let out = h
            .process(&session(
                &format!("h{i}"),
                // Each visitor from its own network, as on the open internet (a never-seen
                // network starting a session a second is the `network` rule's business).
                &format!("10.{}.{}.7", i / 250, i % 250),
                i * 1_000,
                gaps,
            ))
            .unwrap();
        assert!(out.alerts.is_empty(), "{:#?}", out.alerts);
    }
}

#[test]
fn clockwork_gaps_are_caught_even_when_slow() {
    let mut h = Harness::<BotDetector>::new("{}").unwrap();
    let mut rng = Rng(3);
    let gaps: Vec<i64> = (0..15)
        .map(|_| 5_000 + (rng.next_f64() * 400.0) as i64)
        .collect();
    let out = h.process(&session("cron", "1.1.1.1", 0, gaps)).unwrap();
    assert_eq!(out.alerts.len(), 1);
    assert_eq!(out.alerts[0].kind, "bot/regular-gaps");
}

#[test]
fn a_human_paced_crawler_is_caught_by_its_breadth() {
    let mut h = Harness::<BotDetector>::new("{}").unwrap();
    let gaps = human_gaps(&mut Rng(4), 60);
    let out = h.process(&session("crawler", "1.1.1.2", 0, gaps)).unwrap();
    assert_eq!(out.alerts.len(), 1);
    assert_eq!(out.alerts[0].kind, "bot/page-breadth");
}

#[test]
fn a_headless_browser_is_caught_at_its_first_event() {
    let mut h = Harness::<BotDetector>::new("{}").unwrap();
    let mut c = TestClick::page_view(7, "hc", "/");
    c.user_agent =
        Some("Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/120.0 Safari/537.36".into());
    let out = h.process(&[c.clone(), c]).unwrap();
    assert_eq!(out.alerts.len(), 1);
    assert_eq!(out.alerts[0].kind, "bot/headless");
    assert_eq!(out.alerts[0].time_ms, 7);
}

#[test]
fn an_ip_starting_many_sessions_is_caught_once() {
    let mut h = Harness::<BotDetector>::new("{}").unwrap();
    let mut rng = Rng(5);
    let mut alerts = vec![];
    for i in 0..40 {
        let gaps = human_gaps(&mut rng, 2);
        alerts.extend(
            h.process(&session(&format!("f{i}"), "192.0.2.1", i * 10_000, gaps))
                .unwrap()
                .alerts,
        );
    }
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    // Ad-click floods are click-fraud's: forty single-click ad sessions from one IP are not
    // a bot farm here.
    let ads: Vec<_> = (0..40)
        .map(|i| {
            TestClick::new(EventKind::AdClick, i * 5_000, &format!("ad{i}"), "/").ip("192.0.2.2")
        })
        .collect();
    assert!(h.process(&ads).unwrap().alerts.is_empty());
    assert_eq!(
        (
            alerts[0].kind.as_str(),
            alerts[0].entity_type.as_str(),
            alerts[0].entity.as_str()
        ),
        ("bot/ip-farm", "ip", "192.0.2.1")
    );
}

#[test]
fn idle_sessions_are_evicted_and_state_survives_reload() {
    let mut h = Harness::<BotDetector>::new(
        r#"{"max_events": 10, "idle_timeout_secs": 60, "disabled_rules": ["no-dwell", "regular-gaps"]}"#,
    )
    .unwrap();
    h.process(&clicks("a", 0, 100, 5)).unwrap();
    h.process(&clicks("b", 100_000, 100, 5)).unwrap();
    h.reload().unwrap();
    assert_eq!(h.plugin().tracked().0, 2);
    h.tick(130_000).unwrap();
    assert_eq!(
        h.plugin().state.sessions.keys().collect::<Vec<_>>(),
        vec!["b"]
    );
    // b's five earlier clicks were restored: six more make it a bot.
    let out = h.process(&clicks("b", 100_500, 100, 6)).unwrap();
    assert_eq!(out.alerts.len(), 1);
}

#[test]
fn state_is_capped() {
    let mut h = Harness::<BotDetector>::new(r#"{"max_sessions": 3, "max_ips": 2}"#).unwrap();
    let all: Vec<_> = (0..10)
        .map(|i| TestClick::page_view(i, &format!("s{i}"), "/").ip(&format!("ip{i}")))
        .collect();
    h.process(&all).unwrap();
    assert_eq!(h.plugin().tracked(), (3, 2));
}

#[test]
fn a_snapshot_of_the_previous_version_is_read() {
    let old = br#"{"s1": {"recent": [1, 2, 3], "last_seen": 3, "alerted": true}}"#;
    let mut p = BotDetector::new(Settings::default()).unwrap();
    p.restore(old).unwrap();
    assert!(p.state.sessions["s1"].alerted);
    assert!(p.restore(b"not json").is_err());
}

#[test]
fn settings_are_checked() {
    assert!(
        Harness::<BotDetector>::new(r#"{"window": 5}"#)
            .unwrap_err()
            .contains("unknown field")
    );
    assert!(
        Harness::<BotDetector>::new(r#"{"disabled_rules": ["typo"]}"#)
            .unwrap_err()
            .contains("typo")
    );
    assert!(Harness::<BotDetector>::new(r#"{"min_gaps": 50}"#).is_err());
    assert!(Harness::<BotDetector>::new(r#"{"max_events": 1}"#).is_err());
}

#[test]
fn extreme_watermarks_do_not_overflow() {
    let mut h = Harness::<BotDetector>::new("{}").unwrap();
    h.process(&clicks("a", 0, 100, 5)).unwrap();
    h.tick(i64::MIN).unwrap();
    h.tick(i64::MAX).unwrap();
    assert_eq!(h.plugin().tracked(), (0, 0));
}

#[test]
fn a_convicted_session_keeps_no_evidence() {
    let s = Settings::default();
    let mut session = crate::rules::SessionState::default();
    session.observe(0, "/a", &s);
    session.convict();
    for i in 1..200 {
        session.observe(i * 100, &format!("/p/{i}"), &s);
    }
    assert!(session.recent.is_empty() && session.gaps.is_empty() && session.pages.is_empty());
    assert_eq!(session.last_seen, 19_900, "still seen, for eviction");
}

/// Log-normal-ish gaps with a coefficient of variation near `cv` around `median_ms`.
fn jittered_gaps(rng: &mut Rng, n: usize, median_ms: f64, cv: f64) -> Vec<i64> {
    let sigma = (1.0 + cv * cv).ln().sqrt();
    (0..n)
        .map(|_| {
            // Box-Muller from two uniforms.
            let u1 = rng.next_f64().max(1e-12);
            let u2 = rng.next_f64();
            let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            (median_ms * (sigma * z).exp()) as i64
        })
        .collect()
}

#[test]
fn a_jittered_farm_of_one_network_is_found_whatever_its_timing() {
    // Twenty IPs of one /24, each browsing like a human (gaps cv 0.9, median 8 s): no session
    // rule can tell them from people, the network's burst of sessions can.
    let mut h = Harness::<BotDetector>::new("{}").unwrap();
    let mut rng = Rng(7);
    // Background: ordinary visitors, each from its own network.
    let mut clicks = Vec::new();
    for i in 0..600 {
        let gaps = human_gaps(&mut rng, 8);
        clicks.extend(session(
            &format!("h{i}"),
            &format!("10.{}.{}.7", i / 200, i % 200),
            i * 2_000,
            gaps,
        ));
    }
    let t0 = 600_000;
    for ip in 0..20 {
        let gaps = jittered_gaps(&mut rng, 15, 8_000.0, 0.9);
        clicks.extend(session(
            &format!("farm{ip}"),
            &format!("198.51.100.{}", 10 + ip),
            t0 + ip * 700,
            gaps,
        ));
    }
    clicks.sort_by_key(|c| c.time_ms);
    let alerts = h.process(&clicks).unwrap().alerts;
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!(
        (a.kind.as_str(), a.entity_type.as_str(), a.entity.as_str()),
        ("bot/network", "subnet", "198.51.100.0/24")
    );
    assert!(a.time_ms - t0 <= 30_000, "after {} ms", a.time_ms - t0);
}

#[test]
fn a_swarm_of_short_sessions_from_one_ip_is_found() {
    let mut h = Harness::<BotDetector>::new("{}").unwrap();
    let mut rng = Rng(8);
    let mut clicks = Vec::new();
    for i in 0..1_200 {
        let gaps = human_gaps(&mut rng, 8);
        let ip = format!("10.{}.{}.7", i / 200, i % 200);
        clicks.extend(session(&format!("h{i}"), &ip, i * 1_000, gaps));
    }
    for i in 0..30 {
        let gaps = human_gaps(&mut rng, 4);
        clicks.extend(session(
            &format!("sw{i}"),
            "203.0.113.50",
            300_000 + i * 40_000,
            gaps,
        ));
    }
    clicks.sort_by_key(|c| c.time_ms);
    let alerts = h.process(&clicks).unwrap().alerts;
    let ip: Vec<_> = alerts.iter().filter(|a| a.entity_type == "ip").collect();
    assert_eq!(ip.len(), 1, "{alerts:#?}");
    assert_eq!(ip[0].kind, "bot/ip-farm");
    let after = ip[0].time_ms - 300_000;
    assert!(after <= 5 * 40_000, "after {after} ms");
}

/// Upgrade: a snapshot as 0.2 wrote it (no crowd tests) restores into this version and the
/// network rule works from there.
#[test]
fn a_0_2_snapshot_restores_and_the_network_rule_starts_from_there() {
    let mut h = Harness::<BotDetector>::new("{}").unwrap();
    let mut rng = Rng(9);
    let mut clicks = Vec::new();
    for i in 0..300 {
        let gaps = human_gaps(&mut rng, 6);
        let ip = format!("10.{}.{}.7", i / 200, i % 200);
        clicks.extend(session(&format!("h{i}"), &ip, i * 1_000, gaps));
    }
    clicks.sort_by_key(|c| c.time_ms);
    assert!(h.process(&clicks).unwrap().alerts.is_empty());
    let mut v: serde_json::Value = serde_json::from_slice(&h.snapshot().unwrap()).unwrap();
    let fields = v.as_object_mut().unwrap();
    for f in ["crowds", "repeats_ip", "repeats_net"] {
        assert!(fields.remove(f).is_some(), "{f}");
    }
    let tracked = h.plugin().tracked();
    h.restore(&serde_json::to_vec(&v).unwrap()).unwrap();
    assert_eq!(h.plugin().tracked(), tracked);
    let mut clicks = Vec::new();
    for ip in 0..12 {
        let gaps = jittered_gaps(&mut rng, 10, 6_000.0, 0.8);
        let ip_name = format!("198.51.100.{}", 10 + ip);
        clicks.extend(session(
            &format!("f{ip}"),
            &ip_name,
            400_000 + ip * 500,
            gaps,
        ));
    }
    clicks.sort_by_key(|c| c.time_ms);
    let alerts = h.process(&clicks).unwrap().alerts;
    assert!(
        alerts.iter().any(|a| a.kind == "bot/network"),
        "{alerts:#?}"
    );
}

/// A snapshot written by bot-detector 0.2.0 (the build before ab50a2b): 300 human sessions of
/// `human_gaps(Rng(9), 6)` from `10.x.y.7`, one a second, processed in one batch.
const SNAPSHOT_0_2: &[u8] = include_bytes!("fixtures/bot-detector-0.2.snapshot.json");

#[test]
fn a_snapshot_written_by_0_2_restores_and_the_network_rule_starts_from_there() {
    let mut h = Harness::<BotDetector>::new("{}").unwrap();
    h.restore(SNAPSHOT_0_2).unwrap();
    assert_eq!(h.plugin().tracked(), (300, 300));
    let mut rng = Rng(35);
    let mut clicks = Vec::new();
    for ip in 0..12 {
        let gaps = jittered_gaps(&mut rng, 10, 6_000.0, 0.8);
        let ip_name = format!("198.51.100.{}", 10 + ip);
        clicks.extend(session(
            &format!("f{ip}"),
            &ip_name,
            400_000 + ip * 500,
            gaps,
        ));
    }
    clicks.sort_by_key(|c| c.time_ms);
    let alerts = h.process(&clicks).unwrap().alerts;
    assert!(
        alerts.iter().any(|a| a.kind == "bot/network"),
        "{alerts:#?}"
    );
}
