//! `kill -9` of an embedded run: restarted, it resumes from its last checkpoint and ends with
//! the same aggregates, raw events and alerts as a run that was never interrupted. Output
//! written between the checkpoint and the kill is written again with the same keys, so the
//! stores hold it once and the alerts file repeats identical alerts (de-duplicated by
//! `alert_id`, as any consumer does).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clickwatch::metrics::Metrics;
use clickwatch::pipeline::{self, Ending, LocalCheckpoints};

const EVENTS: u64 = 40_000;

/// A config for an embedded generator run of `EVENTS` events at `rate` per wall second,
/// checkpointing every 200 ms into `out/state`: the shared test config with its source,
/// event time and state folder set.
fn config_text(plugins: &Path, out: &Path, rate: u32) -> String {
    let source = format!(
        "type = \"generator\"\nrate = {rate}\nseed = 17\nsimulated_rate = 25.0\nbot_fraction = 0.02\nmax_events = {EVENTS}"
    );
    let raw = format!("type = \"sqlite\"\npath = \"{}/db.sqlite\"", out.display());
    let mut config: toml::Table = common::config_text(&source, plugins, out, &raw)
        .parse()
        .expect("test config TOML");
    let set = |config: &mut toml::Table, section: &str, key: &str, value: toml::Value| {
        let Some(toml::Value::Table(t)) = config.get_mut(section) else {
            panic!("the shared test config has no [{section}]");
        };
        t.insert(key.to_owned(), value);
    };
    set(&mut config, "pipeline", "batch_size", 300.into());
    set(&mut config, "pipeline", "allowed_lateness_ms", 2_000.into());
    set(&mut config, "pipeline", "idle_advance_ms", 600_000.into());
    set(
        &mut config,
        "pipeline",
        "checkpoint_interval_ms",
        200.into(),
    );
    set(&mut config, "plugins", "deadline_ms", 5_000.into());
    let state = out.join("state").display().to_string();
    set(&mut config, "plugins", "state_dir", state.into());
    config.to_string()
}

fn write_config(dir: &Path, plugins: &Path, rate: u32) -> PathBuf {
    std::fs::create_dir_all(dir).expect("out dir");
    let path = dir.join("clickwatch.toml");
    std::fs::write(&path, config_text(plugins, dir, rate)).expect("config");
    path
}

/// What a run leaves: `page_traffic` and `engagement_segments` rows by key, the raw event
/// ids, and the distinct alerts by id (an id with two different contents fails the test).
struct Outcome {
    traffic: BTreeMap<String, (i64, i64, i64)>,
    raw: BTreeSet<String>,
    alerts: BTreeMap<String, String>,
}

async fn outcome(out: &Path) -> Outcome {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}/db.sqlite", out.display()))
        .await
        .expect("sqlite");
    let rows: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(
        "SELECT CAST(window_start AS TEXT), url, views, unique_sessions, unique_users FROM page_traffic",
    )
    .fetch_all(&pool)
    .await
    .expect("page_traffic");
    let traffic = rows
        .into_iter()
        .map(|(w, url, v, s, u)| (format!("{w} {url}"), (v, s, u)))
        .collect();
    let raw: Vec<String> = sqlx::query_scalar("SELECT event_id FROM click_events")
        .fetch_all(&pool)
        .await
        .expect("click_events");
    let mut alerts = BTreeMap::new();
    let text = std::fs::read_to_string(out.join("alerts.jsonl")).unwrap_or_default();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("alert JSON");
        let id = v["alert_id"].as_str().expect("alert_id").to_owned();
        let content = v.to_string();
        if let Some(earlier) = alerts.insert(id.clone(), content.clone()) {
            assert_eq!(
                earlier, content,
                "alert {id} was raised twice with different content"
            );
        }
    }
    Outcome {
        traffic,
        raw: raw.into_iter().collect(),
        alerts,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_run_killed_and_restarted_ends_as_an_uninterrupted_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).expect("plugin dir");
    for name in [
        "page-traffic",
        "bot-detector",
        "traffic-anomaly",
        "session-engagement",
    ] {
        std::fs::write(plugins.join(format!("{name}.wasm")), common::wasm(name)).expect("copy");
    }

    // The reference: one uninterrupted run, as fast as it goes (pacing changes batches only,
    // and batches do not change results).
    let reference = dir.path().join("reference");
    let path = write_config(&reference, &plugins, 1_000_000);
    let config = clickwatch::config::load(&path, []).expect("config");
    let summary = pipeline::run(config, Arc::new(Metrics::default()), std::future::pending())
        .await
        .expect("reference run");
    assert_eq!(summary.ending, Ending::Exhausted);
    let expected = outcome(&reference).await;
    assert_eq!(expected.raw.len() as u64, EVENTS);
    assert!(
        expected.alerts.len() >= 5 && expected.traffic.len() > 100,
        "too little output to compare: {} alerts, {} rows",
        expected.alerts.len(),
        expected.traffic.len()
    );

    // Paced so the kill lands mid-run: killed once a checkpoint past a quarter of the input
    // is stored (the checkpoint file itself says how far it got).
    let crashed = dir.path().join("crashed");
    let path = write_config(&crashed, &plugins, 5_000);
    let config = clickwatch::config::load(&path, []).expect("config");
    let source = pipeline::source_id(&config);
    let checkpoints = LocalCheckpoints::new(crashed.join("state"));
    let mut host = common::spawn_host(&path, &crashed.join("first.log"));
    common::wait_until("a checkpoint past a quarter of the input", || {
        checkpoints
            .load(&source)
            .is_some_and(|s| s.next_offset as u64 >= EVENTS / 4)
    })
    .await;
    assert!(
        host.try_wait().expect("host status").is_none(),
        "the host ended before it was killed"
    );
    host.kill().expect("kill -9");
    host.wait().expect("reap");
    let at = checkpoints.load(&source).expect("checkpoint").next_offset as u64;
    assert!(at < EVENTS, "killed after the whole input: {at}");

    let mut host = common::spawn_host(&path, &crashed.join("second.log"));
    let status = tokio::task::spawn_blocking(move || host.wait())
        .await
        .expect("join")
        .expect("restarted host");
    assert!(status.success(), "the restarted host failed: {status}");
    let log = std::fs::read_to_string(crashed.join("second.log")).unwrap_or_default();
    assert!(
        log.contains("resuming after the records the last run checkpointed"),
        "the restart did not resume from the checkpoint:\n{log}"
    );

    let got = outcome(&crashed).await;
    eprintln!(
        "killed at a checkpoint of {at} of {EVENTS} events; {} alerts, {} page_traffic rows",
        expected.alerts.len(),
        expected.traffic.len()
    );
    assert_eq!(got.raw, expected.raw, "raw events differ");
    assert_eq!(
        got.traffic.len(),
        expected.traffic.len(),
        "page_traffic rows"
    );
    for (key, value) in &expected.traffic {
        assert_eq!(got.traffic.get(key), Some(value), "page_traffic {key}");
    }
    assert_eq!(
        got.alerts.keys().collect::<Vec<_>>(),
        expected.alerts.keys().collect::<Vec<_>>(),
        "alert ids differ"
    );
    assert_eq!(got.alerts, expected.alerts, "alert contents differ");
}
