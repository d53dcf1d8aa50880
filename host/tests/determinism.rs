//! Same input, same output: `run` over a file and `replay` over the same file raise the same
//! alerts, and the live pipeline gives the same alerts and aggregates at any batch size. The
//! file holds every labelled anomaly kind, so each shipped detector has something to say.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use clickwatch::config::Config;
use clickwatch::generator::{Generator, GeneratorSettings, Scenario, parse_anomalies};
use clickwatch::metrics::Metrics;
use clickwatch::pipeline::{self, Ending, EventTime};
use clickwatch::replay::{self, Batching, PluginSettings, Replayer};

const SHIPPED: [&str; 6] = [
    "page-traffic",
    "session-engagement",
    "traffic-anomaly",
    "bot-detector",
    "click-fraud",
    "funnel-drop",
];

/// Writes about 90 simulated minutes with four anomaly kinds to `path`.
fn write_events(path: &Path) -> usize {
    let mut generator = Generator::new(GeneratorSettings {
        seed: 23,
        mean_rate: 10.0,
        scenario: Scenario {
            items: parse_anomalies("bot,traffic-spike,click-fraud,funnel-drop")
                .expect("anomaly spec"),
            warmup_ms: 30 * 60_000,
            gap_ms: 5 * 60_000,
        },
        ..GeneratorSettings::default()
    });
    let start = generator.next_event();
    let end_ms = generator.plan_end_ms().max(start.time_ms + 60 * 60_000) + 10 * 60_000;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("events file"));
    let mut n = 0;
    let mut event = start;
    while event.time_ms < end_ms {
        writeln!(out, "{}", clickwatch::event::encode(&event)).expect("write event");
        n += 1;
        event = generator.next_event();
    }
    out.flush().expect("flush events");
    n
}

fn plugin_dir(dir: &Path) -> std::path::PathBuf {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).expect("plugin dir");
    for name in SHIPPED {
        std::fs::write(plugins.join(format!("{name}.wasm")), common::wasm(name)).expect("copy");
    }
    plugins
}

fn file_config(events: &Path, plugins: &Path, out: &Path, batch_size: usize) -> Config {
    let mut config = common::config(
        &format!("type = \"file\"\npath = \"{}\"", events.display()),
        plugins,
        out,
    );
    config.pipeline.batch_size = batch_size;
    config
}

/// Runs the pipeline over the file to its end; returns the alerts (sorted JSON) and the
/// `page_traffic` rows by key.
async fn run_file(config: Config, out: &Path) -> (Vec<String>, BTreeMap<String, i64>) {
    let metrics = Arc::new(Metrics::default());
    // The input's end stops the run; the shutdown future never fires.
    let summary = pipeline::run(config, metrics, std::future::pending::<Ending>())
        .await
        .expect("pipeline");
    assert_eq!(summary.ending, Ending::Exhausted);
    let alerts = sorted_lines(&out.join("alerts.jsonl"));
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}/db.sqlite", out.display()))
        .await
        .expect("sqlite");
    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT CAST(window_start AS TEXT), url, views FROM page_traffic")
            .fetch_all(&pool)
            .await
            .expect("page_traffic");
    let traffic = rows
        .into_iter()
        .map(|(w, url, views)| (format!("{w} {url}"), views))
        .collect();
    (alerts, traffic)
}

fn sorted_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("alert JSON");
            v.to_string()
        })
        .collect();
    lines.sort();
    lines
}

fn replay_file(events: &Path, plugins: &Path, event_time: EventTime) -> Vec<String> {
    let runtime = clickwatch::plugin::Runtime::new(replay::replay_limits()).expect("runtime");
    let (set, _) =
        replay::load_plugins(&runtime, plugins, &PluginSettings::default()).expect("load");
    let mut replayer = Replayer::with_event_time(set, Batching::default(), event_time);
    replay::feed_file(events, &mut replayer, |_| {}).expect("feed");
    let outcome = replayer.finish();
    // Through the same JSON text round trip as the alerts file, so floats compare alike.
    let mut alerts: Vec<String> = outcome
        .alerts
        .iter()
        .map(|a| {
            let text = a.to_json().to_string();
            let v: serde_json::Value = serde_json::from_str(&text).expect("alert JSON");
            v.to_string()
        })
        .collect();
    alerts.sort();
    alerts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_and_replay_raise_the_same_alerts_at_any_batch_size() {
    let dir = tempfile::tempdir().expect("temp dir");
    let events = dir.path().join("events.jsonl");
    let n = write_events(&events);
    let plugins = plugin_dir(dir.path());

    let (out_a, out_b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&out_a).expect("out a");
    std::fs::create_dir_all(&out_b).expect("out b");
    let config = file_config(&events, &plugins, &out_a, 1_000);
    let event_time = EventTime::of(&config.pipeline);
    let (alerts_a, traffic_a) = run_file(config, &out_a).await;
    let (alerts_b, traffic_b) = run_file(file_config(&events, &plugins, &out_b, 37), &out_b).await;
    let replayed = replay_file(&events, &plugins, event_time);

    // Not vacuous: the anomalies were found by several detectors.
    let detectors: std::collections::BTreeSet<String> = alerts_a
        .iter()
        .map(|a| {
            let v: serde_json::Value = serde_json::from_str(a).expect("json");
            v["detector"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    eprintln!("{n} events; {} alerts from {detectors:?}", alerts_a.len());
    assert!(
        detectors.len() >= 3 && alerts_a.len() >= 10,
        "too few alerts to compare: {alerts_a:?}"
    );
    assert!(
        traffic_a.len() > 100,
        "page_traffic rows: {}",
        traffic_a.len()
    );

    assert_eq!(
        alerts_a.len(),
        replayed.len(),
        "run and replay raised different numbers of alerts"
    );
    for (live, back) in alerts_a.iter().zip(&replayed) {
        assert_eq!(live, back, "run and replay differ");
    }
    assert_eq!(
        alerts_a, alerts_b,
        "batch size 1000 and 37 raised different alerts"
    );
    let differ: Vec<String> = traffic_a
        .iter()
        .filter(|(k, v)| traffic_b.get(*k) != Some(v))
        .take(10)
        .map(|(k, v)| format!("{k}: {v} vs {:?}", traffic_b.get(k)))
        .collect();
    assert_eq!(
        traffic_a.len(),
        traffic_b.len(),
        "batch size 1000 and 37 stored different numbers of rows"
    );
    assert!(
        differ.is_empty(),
        "batch size 1000 and 37 stored different aggregates: {differ:?}"
    );
}
