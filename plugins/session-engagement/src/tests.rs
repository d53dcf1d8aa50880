//! Native tests: sessions close by inactivity in event time, segments add up, state survives.

use super::*;
use clickwatch_sdk::testing::{Harness, TestClick};

const MIN: i64 = 60_000;
const T0: i64 = 1_790_000_100_000 - 1_790_000_100_000 % (15 * MIN);

fn ev(kind: EventKind, t: i64, s: &str, device: &str, country: &str) -> TestClick {
    let mut c = TestClick::new(kind, t, s, "/");
    c.device = Some(device.into());
    c.country = Some(country.into());
    c
}

fn rows_of<'a>(out: &'a Output, table: &str) -> Vec<&'a Vec<Value>> {
    out.rows
        .iter()
        .filter(|r| r.table == table)
        .map(|r| &r.values)
        .collect()
}

fn segment<'a>(rows: &[&'a Vec<Value>], dimension: &str, seg: &str) -> Option<&'a Vec<Value>> {
    rows.iter()
        .find(|r| r[2] == Value::from(dimension) && r[3] == Value::from(seg))
        .copied()
}

#[test]
fn sessions_close_after_inactivity_and_segments_add_up() {
    let mut h = Harness::<SessionEngagement>::new("{}").unwrap();
    h.process(&[
        // A: mobile, DE, anonymous, three pages then a cart and a purchase.
        ev(EventKind::PageView, T0, "a", "mobile", "DE"),
        ev(EventKind::PageView, T0 + 30_000, "a", "mobile", "DE"),
        ev(EventKind::AddToCart, T0 + 60_000, "a", "mobile", "DE"),
        ev(EventKind::PageView, T0 + 90_000, "a", "mobile", "DE"),
        ev(EventKind::Purchase, T0 + 120_000, "a", "mobile", "DE"),
        // B: desktop, US, logged in, a bounce.
        ev(EventKind::PageView, T0 + 5_000, "b", "desktop", "US").user("u1"),
    ])
    .unwrap();
    // 29 minutes after B's only event: nothing closed yet.
    assert!(h.tick(T0 + 5_000 + 29 * MIN).unwrap().rows.is_empty());
    let out = h.tick(T0 + 5_000 + 30 * MIN).unwrap();
    let sessions = rows_of(&out, summary::SESSIONS);
    assert_eq!(sessions.len(), 1);
    let b = sessions[0];
    assert_eq!(b[0], Value::from("b"));
    assert_eq!(b[6], Value::Boolean(true)); // bounce
    assert_eq!(b[9], Value::from("new"));
    let out = h.tick(T0 + 120_000 + 30 * MIN).unwrap();
    let a = rows_of(&out, summary::SESSIONS)[0];
    assert_eq!(a[3], Value::Int64(120_000)); // duration
    assert_eq!(a[4], Value::Int64(3)); // pages
    assert_eq!(a[5], Value::Int64(5)); // events
    assert_eq!(
        &a[6..10],
        &[false.into(), true.into(), true.into(), "anonymous".into()]
    );
    assert_eq!(a[10], Value::from(Some("mobile".to_owned())));
    // The window [T0, T0+15 min) is written once its last possible session has timed out.
    assert!(rows_of(&out, summary::SEGMENTS).is_empty());
    let out = h.tick(T0 + 15 * MIN + 30 * MIN).unwrap();
    let segs = rows_of(&out, summary::SEGMENTS);
    let all = segment(&segs, "all", "*").unwrap();
    assert_eq!(all[4], Value::Int64(2));
    assert_eq!(all[5], Value::Int64(1));
    assert_eq!(all[6], Value::Float64(0.5));
    assert_eq!(all[10], Value::Int64(1)); // purchase sessions
    assert_eq!(
        segment(&segs, "device", "mobile").unwrap()[4],
        Value::Int64(1)
    );
    assert_eq!(segment(&segs, "country", "US").unwrap()[4], Value::Int64(1));
    assert_eq!(
        segment(&segs, "visitor", "anonymous").unwrap()[4],
        Value::Int64(1)
    );
    assert_eq!(
        segment(&segs, "visitor", "new").unwrap()[4],
        Value::Int64(1)
    );
    // Each row matches its table's column count.
    let [st, sg] = summary::tables();
    assert!(out.rows.iter().all(|r| r.values.len()
        == if r.table == summary::SESSIONS {
            st.columns.len()
        } else {
            sg.columns.len()
        }));
}

#[test]
fn a_user_seen_before_is_returning() {
    let mut h = Harness::<SessionEngagement>::new("{}").unwrap();
    h.process(&[TestClick::page_view(T0, "s1", "/").user("u7")])
        .unwrap();
    h.tick(T0 + 31 * MIN).unwrap();
    h.process(&[TestClick::page_view(T0 + 40 * MIN, "s2", "/").user("u7")])
        .unwrap();
    let out = h.tick(T0 + 71 * MIN).unwrap();
    assert_eq!(
        rows_of(&out, summary::SESSIONS)[0][9],
        Value::from("returning")
    );
}

#[test]
fn a_later_session_read_first_is_still_returning() {
    // Two sessions of one user on different partitions: the later one may be read first.
    let visitors = |first: &str, second: &str| {
        let mut h = Harness::<SessionEngagement>::new("{}").unwrap();
        let click = |s: &str| {
            let t = if s == "early" { T0 } else { T0 + 40 * MIN };
            TestClick::page_view(t, s, "/").user("u7")
        };
        h.process(&[click(first)]).unwrap();
        h.process(&[click(second)]).unwrap();
        let out = h.tick(T0 + 90 * MIN).unwrap();
        let mut got: Vec<(String, String)> = rows_of(&out, summary::SESSIONS)
            .iter()
            .map(|r| (format!("{:?}", r[0]), format!("{:?}", r[9])))
            .collect();
        got.sort();
        got
    };
    let in_order = visitors("early", "late");
    assert_eq!(
        in_order,
        visitors("late", "early"),
        "the read order changes nothing"
    );
    assert!(in_order[1].1.contains("returning") && in_order[0].1.contains("new"));
}

#[test]
fn a_user_last_seen_before_the_window_is_new_whenever_the_sweep_ran() {
    let mut h = Harness::<SessionEngagement>::new(r#"{"returning_window_days": 1}"#).unwrap();
    h.process(&[TestClick::page_view(T0, "s1", "/").user("u7")])
        .unwrap();
    h.tick(T0 + 31 * MIN).unwrap();
    // Two days later, with no tick (and so no sweep) in between.
    let later = T0 + 2 * 86_400_000;
    h.process(&[TestClick::page_view(later, "s2", "/").user("u7")])
        .unwrap();
    let out = h.tick(later + 31 * MIN).unwrap();
    assert_eq!(rows_of(&out, summary::SESSIONS)[0][9], Value::from("new"));
}

#[test]
fn a_session_kept_alive_past_its_first_deadline_closes_once_at_its_own() {
    let mut h = Harness::<SessionEngagement>::new("{}").unwrap();
    h.process(&[TestClick::page_view(T0, "s1", "/")]).unwrap();
    h.process(&[TestClick::page_view(T0 + 20 * MIN, "s1", "/b")])
        .unwrap();
    // Due by its first event (T0 + 30 min), alive by its second.
    let out = h.tick(T0 + 31 * MIN).unwrap();
    assert!(rows_of(&out, summary::SESSIONS).is_empty());
    assert_eq!(h.plugin().tracked().0, 1);
    let out = h.tick(T0 + 50 * MIN).unwrap();
    let s = rows_of(&out, summary::SESSIONS);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0][5], Value::Int64(2));
    assert_eq!(h.plugin().tracked().0, 0);
    assert!(rows_of(&h.tick(T0 + 90 * MIN).unwrap(), summary::SESSIONS).is_empty());
}

#[test]
fn state_survives_a_reload() {
    let mut h = Harness::<SessionEngagement>::new(r#"{"window_secs": 60}"#).unwrap();
    h.process(&[TestClick::page_view(T0, "s1", "/").user("u1")])
        .unwrap();
    h.reload().unwrap();
    h.process(&[TestClick::page_view(T0 + 10_000, "s1", "/b")])
        .unwrap();
    let out = h.tick(T0 + 10_000 + 30 * MIN + MIN).unwrap();
    let s = rows_of(&out, summary::SESSIONS);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0][5], Value::Int64(2)); // both events, across the reload
    assert_eq!(rows_of(&out, summary::SEGMENTS).len(), 4);
    assert_eq!(h.plugin().tracked(), (0, 1));
}

#[test]
fn state_is_bounded() {
    let mut h = Harness::<SessionEngagement>::new(
        r#"{"max_sessions": 5, "max_known_users": 10, "returning_window_days": 1}"#,
    )
    .unwrap();
    let clicks: Vec<_> = (0..20)
        .map(|i| TestClick::page_view(T0 + i, &format!("s{i}"), "/").user(&format!("u{i}")))
        .collect();
    h.process(&clicks).unwrap();
    assert_eq!(h.plugin().tracked(), (5, 5));
    for round in 0..5 {
        let t = T0 + (round + 1) * 40 * MIN;
        let clicks: Vec<_> = (0..5)
            .map(|i| {
                TestClick::page_view(t, &format!("r{round}-{i}"), "/")
                    .user(&format!("v{round}-{i}"))
            })
            .collect();
        h.process(&clicks).unwrap();
        h.tick(t + 31 * MIN).unwrap();
    }
    assert!(h.plugin().tracked().1 <= 10);
    // A day later every user is forgotten.
    h.tick(T0 + 3 * 86_400_000).unwrap();
    assert_eq!(h.plugin().tracked(), (0, 0));
}

#[test]
fn settings_are_checked() {
    assert!(
        Harness::<SessionEngagement>::new(r#"{"timeout": 5}"#)
            .unwrap_err()
            .contains("unknown field")
    );
    assert!(
        Harness::<SessionEngagement>::new(r#"{"window_secs": 0}"#)
            .unwrap_err()
            .contains("window_secs")
    );
}

#[test]
fn the_end_of_input_tick_closes_everything() {
    let mut h = Harness::<SessionEngagement>::new("{}").unwrap();
    h.process(&[TestClick::page_view(T0, "s1", "/").user("u1")])
        .unwrap();
    assert!(h.tick(i64::MIN).unwrap().rows.is_empty());
    let out = h.tick(i64::MAX).unwrap();
    assert_eq!(rows_of(&out, summary::SESSIONS).len(), 1);
    assert_eq!(rows_of(&out, summary::SEGMENTS).len(), 4);
}
