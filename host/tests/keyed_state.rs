//! Exact results at any partition count and any number of hosts (docs/design/keyed-state.md):
//! the same events through a 4-partition topic read by two hosts in one group — one joining
//! mid-run (a rebalance), or one killed with `kill -9` — give, key by key, the `page_traffic`
//! rows and, alert by alert, the alerts of one embedded task over the same events. Real broker
//! (KAFKA_BROKERS, started by `cargo xtask test`); the six shipped plugins.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clickwatch::event::{ClickEvent, EventKind, encode};
use clickwatch::generator::{Generator, GeneratorSettings};
use clickwatch::metrics::Metrics;
use clickwatch::pipeline::{self, Ending};
use common::kafka::{brokers, create_topic, produce};
use common::spawn_host;
use common::{unique, wait_until, wasm};

const SHIPPED: [&str; 6] = [
    "page-traffic",
    "bot-detector",
    "session-engagement",
    "traffic-anomaly",
    "click-fraud",
    "funnel-drop",
];
/// Key groups of the shipped plugins: url, ip-network, global.
const GROUPS: u64 = 3;
const PARTITIONS: i32 = 4;
/// Shared by the embedded and the Kafka runs, so both close windows by the same rule.
const PIPELINE: &str = "[pipeline]\nbatch_size = 500\nbatch_linger_ms = 20\n\
     allowed_lateness_ms = 5000\nidle_advance_ms = 600000\n";

/// The events, then a trailer a day later on many sessions (so every input partition gets
/// one): it moves every partition's watermark past every window of the events, which then
/// close in the Kafka run as they do at the end of the embedded input. Results at or after
/// `cutoff` (the trailer's own windows) are not compared.
fn input(seed: u64, n: usize) -> (Vec<ClickEvent>, i64) {
    let mut g = Generator::new(GeneratorSettings {
        seed,
        bot_fraction: 0.05,
        ..GeneratorSettings::default()
    });
    let mut events: Vec<ClickEvent> = (0..n).map(|_| g.next_event()).collect();
    let last = events.iter().map(|e| e.time_ms).max().unwrap_or_default();
    // Midnight two days on: the trailer's windows (of any length dividing a day) start at or
    // after the cutoff.
    let cutoff = (last.div_euclid(86_400_000) + 2) * 86_400_000;
    for i in 0..64 {
        let mut e = events[i].clone();
        e.event_id = format!("trailer-{i}");
        e.session_id = format!("trailer-{i}");
        e.user_id = None;
        e.kind = EventKind::PageView;
        e.time_ms = cutoff + i as i64;
        events.push(e);
    }
    (events, cutoff)
}

fn plugins_dir(root: &Path) -> PathBuf {
    let dir = root.join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    for name in SHIPPED {
        std::fs::write(dir.join(format!("{name}.wasm")), wasm(name)).unwrap();
    }
    dir
}

fn sinks(out: &Path) -> String {
    format!(
        "[sinks.raw]\ntype = \"none\"\n\
         [sinks.aggregates]\ntype = \"sqlite\"\npath = \"{o}/aggregates.db\"\n\
         [sinks.alerts]\ntype = \"file\"\npath = \"{o}/alerts.jsonl\"\nstdout = false\n\
         [sinks.dead_letters]\ntype = \"file\"\npath = \"{o}/dead.jsonl\"\n",
        o = out.display()
    )
}

fn kafka_config(topic: &str, group: &str, plugins: &Path, out: &Path) -> String {
    std::fs::create_dir_all(out).unwrap();
    format!(
        "[source]\ntype = \"kafka\"\nbrokers = \"{b}\"\ntopic = \"{topic}\"\ngroup_id = \"{group}\"\n\
         session_timeout_ms = 6000\ncheckpoint_interval_ms = 500\n{PIPELINE}\
         [plugins]\ndir = \"{p}\"\nwatch = false\n{s}",
        b = brokers(),
        p = plugins.display(),
        s = sinks(out),
    )
}

/// `page_traffic` rows before `cutoff`: (window_start, url) → (views, sessions, users).
type Traffic = BTreeMap<(i64, String), (i64, i64, i64)>;

async fn page_traffic(db: &Path, cutoff: i64) -> Traffic {
    let url = format!("sqlite://{}?mode=ro", db.display());
    let pool = sqlx::SqlitePool::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", db.display()));
    let rows: Vec<(i64, String, i64, i64, i64)> = sqlx::query_as(
        "SELECT window_start, url, views, unique_sessions, unique_users FROM page_traffic",
    )
    .fetch_all(&pool)
    .await
    .unwrap_or_default();
    pool.close().await;
    rows.into_iter()
        .filter(|r| r.0 < cutoff)
        .map(|(w, u, v, s, us)| ((w, u), (v, s, us)))
        .collect()
}

/// Alert ids (with detector and kind, for a readable diff) of alerts before `cutoff`.
fn alerts(file: &Path, cutoff: i64) -> BTreeSet<(String, String, String)> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|a| {
            let start = a["window_start"].as_str().unwrap_or_default();
            chrono::DateTime::parse_from_rfc3339(start)
                .map(|t| t.timestamp_millis() < cutoff)
                .unwrap_or(true)
        })
        .map(|a| {
            (
                a["alert_id"].as_str().unwrap_or_default().to_owned(),
                a["detector"].as_str().unwrap_or_default().to_owned(),
                a["kind"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Merges the rows of several hosts: a key written by two owners (one before a move, one
/// after a restart) must have the same value in both.
fn merge(parts: &[Traffic]) -> Traffic {
    let mut all = Traffic::new();
    for part in parts {
        for (key, value) in part {
            if let Some(old) = all.insert(key.clone(), *value) {
                assert_eq!(old, *value, "two owners disagree on {key:?}");
            }
        }
    }
    all
}

/// One embedded task over the same events: the reference.
async fn embedded(
    events: &[ClickEvent],
    plugins: &Path,
    out: &Path,
    cutoff: i64,
) -> (Traffic, BTreeSet<(String, String, String)>) {
    std::fs::create_dir_all(out).unwrap();
    let file = out.join("events.jsonl");
    let lines: Vec<String> = events.iter().map(encode).collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let text = format!(
        "[source]\ntype = \"file\"\npath = \"{f}\"\n{PIPELINE}[plugins]\ndir = \"{p}\"\nwatch = false\n{s}",
        f = file.display(),
        p = plugins.display(),
        s = sinks(out)
    );
    let config = clickwatch::config::parse(Path::new("embedded.toml"), &text, []).unwrap();
    let summary = pipeline::run(config, Arc::new(Metrics::default()), std::future::pending())
        .await
        .unwrap();
    assert_eq!(summary.ending, Ending::Exhausted);
    assert_eq!(summary.events_late, 0, "the reference has no late events");
    (
        page_traffic(&out.join("aggregates.db"), cutoff).await,
        alerts(&out.join("alerts.jsonl"), cutoff),
    )
}

fn keyed(events: &[ClickEvent]) -> Vec<(String, Vec<u8>)> {
    events
        .iter()
        .map(|e| (e.session_id.clone(), encode(e).into_bytes()))
        .collect()
}

/// Produces `events` and checks that every input partition got some of the trailer.
async fn produce_all(topic: &str, events: &[ClickEvent]) -> Vec<(i32, i64)> {
    let landed = produce(topic, &keyed(events)).await;
    let trailer: BTreeSet<i32> = landed
        .iter()
        .zip(events)
        .filter(|(_, e)| e.event_id.starts_with("trailer-"))
        .map(|((p, _), _)| *p)
        .collect();
    if events.iter().any(|e| e.event_id.starts_with("trailer-")) {
        assert_eq!(
            trailer.len(),
            PARTITIONS as usize,
            "the trailer reaches every partition"
        );
    }
    landed
}

fn compare(
    what: &str,
    (traffic, alert_set): (&Traffic, &BTreeSet<(String, String, String)>),
    (want_traffic, want_alerts): (&Traffic, &BTreeSet<(String, String, String)>),
) {
    assert!(
        !want_traffic.is_empty() && !want_alerts.is_empty(),
        "the reference produced results"
    );
    let missing: Vec<_> = want_traffic
        .iter()
        .filter(|(k, v)| traffic.get(*k) != Some(*v))
        .take(5)
        .collect();
    let extra: Vec<_> = traffic
        .keys()
        .filter(|k| !want_traffic.contains_key(*k))
        .take(5)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: page_traffic differs from one embedded task ({} rows vs {}): wrong or missing {missing:?}, extra {extra:?}",
        traffic.len(),
        want_traffic.len()
    );
    let views: i64 = traffic.values().map(|v| v.0).sum();
    eprintln!(
        "{what}: {} page_traffic rows, {views} views, {} alerts: equal to the embedded run",
        traffic.len(),
        alert_set.len()
    );
    let only_kafka: Vec<_> = alert_set.difference(want_alerts).collect();
    let only_embedded: Vec<_> = want_alerts.difference(alert_set).collect();
    assert!(
        only_kafka.is_empty() && only_embedded.is_empty(),
        "{what}: alerts differ: only on Kafka {only_kafka:?}, only embedded {only_embedded:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_and_a_rebalance_give_the_results_of_one_task() {
    let (topic, group) = (unique("keyed"), unique("g"));
    create_topic(&topic, PARTITIONS).await;
    let dir = tempfile::tempdir().unwrap();
    let plugins = plugins_dir(dir.path());
    let (events, cutoff) = input(51, 30_000);
    let reference = embedded(&events, &plugins, &dir.path().join("embedded"), cutoff).await;

    let host = |name: &str| {
        let text = kafka_config(&topic, &group, &plugins, &dir.path().join(name));
        clickwatch::config::parse(Path::new("kafka.toml"), &text, []).unwrap()
    };
    let (a_metrics, b_metrics) = (Arc::new(Metrics::default()), Arc::new(Metrics::default()));
    let (a_stop, a_stopped) = tokio::sync::oneshot::channel::<()>();
    let (b_stop, b_stopped) = tokio::sync::oneshot::channel::<()>();
    let a = tokio::spawn(pipeline::run(host("a"), a_metrics.clone(), async move {
        let _ = a_stopped.await;
        Ending::Stopped
    }));
    // A alone reads the first half; B joins, and the partitions of the input and of the key
    // groups are split between them, state and all.
    let half = events.len() / 2;
    produce_all(&topic, &events[..half]).await;
    let am = a_metrics.clone();
    wait_until("host A processed part of the first half", || {
        am.events_processed.load(Ordering::Relaxed) >= half as u64
    })
    .await;
    let b = tokio::spawn(pipeline::run(host("b"), b_metrics.clone(), async move {
        let _ = b_stopped.await;
        Ending::Stopped
    }));
    let bm = b_metrics.clone();
    wait_until("host B was given partitions", || {
        bm.partitions_assigned.load(Ordering::Relaxed) >= 1
    })
    .await;
    produce_all(&topic, &events[half..]).await;
    let total = events.len() as u64 * GROUPS;
    let (am, bm) = (a_metrics.clone(), b_metrics.clone());
    wait_until("every key group processed every event", || {
        am.events_processed.load(Ordering::Relaxed) + bm.events_processed.load(Ordering::Relaxed)
            >= total
    })
    .await;
    // The trailer's markers close the last windows right after its events.
    let (a_db, b_db) = (
        dir.path().join("a/aggregates.db"),
        dir.path().join("b/aggregates.db"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = merge(&[
            page_traffic(&a_db, cutoff).await,
            page_traffic(&b_db, cutoff).await,
        ]);
        if rows.len() >= reference.0.len() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = (a_stop.send(()), b_stop.send(()));
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();

    assert!(
        b_metrics.events_in.load(Ordering::Relaxed) > 0,
        "B read part of the input"
    );
    assert_eq!(
        a_metrics.events_processed.load(Ordering::Relaxed)
            + b_metrics.events_processed.load(Ordering::Relaxed),
        total,
        "a clean rebalance processes nothing twice"
    );
    let traffic = merge(&[
        page_traffic(&a_db, cutoff).await,
        page_traffic(&b_db, cutoff).await,
    ]);
    let mut alert_set = alerts(&dir.path().join("a/alerts.jsonl"), cutoff);
    alert_set.extend(alerts(&dir.path().join("b/alerts.jsonl"), cutoff));
    compare(
        "rebalance",
        (&traffic, &alert_set),
        (&reference.0, &reference.1),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_host_leaves_the_results_of_one_task() {
    let (topic, group) = (unique("keyed"), unique("g"));
    create_topic(&topic, PARTITIONS).await;
    let dir = tempfile::tempdir().unwrap();
    let plugins = plugins_dir(dir.path());
    let (events, cutoff) = input(52, 30_000);
    let reference = embedded(&events, &plugins, &dir.path().join("embedded"), cutoff).await;

    let mut hosts = Vec::new();
    for name in ["a", "b"] {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &path,
            kafka_config(&topic, &group, &plugins, &dir.path().join(name)),
        )
        .unwrap();
        hosts.push(spawn_host(&path, &dir.path().join(format!("{name}.log"))));
    }
    // The events in chunks while both hosts run; A is killed once it wrote some results.
    let records = events.clone();
    let producer_topic = topic.clone();
    let producing = tokio::spawn(async move {
        for chunk in records.chunks(1_000) {
            produce_all(&producer_topic, chunk).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let a_alerts = dir.path().join("a/alerts.jsonl");
    let b_alerts = dir.path().join("b/alerts.jsonl");
    let deadline = Instant::now() + Duration::from_secs(90);
    while alerts(&a_alerts, i64::MAX).is_empty() {
        assert!(
            Instant::now() < deadline,
            "host A produced nothing (see {})",
            dir.path().join("a.log").display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    hosts[0].kill().expect("kill -9 host A");
    hosts[0].wait().unwrap();
    producing.await.unwrap();

    // B takes everything over after the session timeout and catches up: the results
    // converge on the reference (A's rows and alerts count as written).
    let (a_db, b_db) = (
        dir.path().join("a/aggregates.db"),
        dir.path().join("b/aggregates.db"),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let (traffic, alert_set) = loop {
        let traffic = merge(&[
            page_traffic(&a_db, cutoff).await,
            page_traffic(&b_db, cutoff).await,
        ]);
        let mut alert_set = alerts(&a_alerts, cutoff);
        alert_set.extend(alerts(&b_alerts, cutoff));
        if (traffic == reference.0 && alert_set == reference.1) || Instant::now() > deadline {
            break (traffic, alert_set);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let status = std::process::Command::new("kill")
        .args(["-TERM", &hosts[1].id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        hosts[1].wait().unwrap().success(),
        "host B exits 0 on SIGTERM"
    );
    compare(
        "kill -9",
        (&traffic, &alert_set),
        (&reference.0, &reference.1),
    );
}
