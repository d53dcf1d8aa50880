//! `/metrics`, `/healthz` and `/readyz` of a real run: scraped while the pipeline runs and
//! after, parsed with a Prometheus text-format parser, and checked against what the run
//! wrote (events, alerts, rows, dead letters). And the binary's own listener, from config.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clickwatch::metrics::Metrics;
use clickwatch::observe::Listener;
use clickwatch::pipeline::{self, Ending};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PLUGINS: [&str; 3] = ["page-traffic", "bot-detector", "traffic-anomaly"];

/// One HTTP/1.1 GET: (status, body).
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("read response");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The samples of a scrape by `name{labels}` (labels sorted), parsed by `prometheus-parse`.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("exposition parses");
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .count();
    let mut out = BTreeMap::new();
    for s in &scrape.samples {
        let value = match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            _ => continue,
        };
        let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        out.insert(format!("{}{{{}}}", s.metric, labels.join(",")), value);
    }
    assert!(
        out.len() + 200 >= samples && !out.is_empty(),
        "the parser kept {} of {samples} sample lines",
        out.len()
    );
    out
}

fn sample(samples: &BTreeMap<String, f64>, key: &str) -> f64 {
    *samples.get(key).unwrap_or_else(|| {
        panic!(
            "no sample {key}; have: {:?}",
            samples.keys().take(80).collect::<Vec<_>>()
        )
    })
}

/// Writes generated events with injected anomalies and `bad` malformed lines; returns the
/// number of valid events.
fn write_events(path: &Path, bad: usize) -> u64 {
    let n = 60_000u64;
    common::write_anomalous_events(path, 41, n, bad as u64, 0);
    n
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_scraped_during_a_run_agree_with_what_it_wrote() {
    let dir = tempfile::tempdir().expect("temp dir");
    let events = dir.path().join("events.jsonl");
    let bad = 7;
    let valid = write_events(&events, bad);
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).expect("plugins");
    for name in PLUGINS {
        std::fs::write(plugins.join(format!("{name}.wasm")), common::wasm(name)).expect("copy");
    }
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).expect("out");
    let config = common::config(
        &format!("type = \"file\"\npath = \"{}\"", events.display()),
        &plugins,
        &out,
    );

    let metrics = Arc::new(Metrics::default());
    let listener = Listener::bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("bound address");
    let server = listener.serve(metrics.clone());
    assert_eq!(get(addr, "/healthz").await.0, 200);
    assert_eq!(
        get(addr, "/readyz").await.0,
        503,
        "not ready before the run"
    );
    assert_eq!(get(addr, "/nothing-here").await.0, 404);

    let run = tokio::spawn(pipeline::run(
        config,
        metrics.clone(),
        std::future::pending::<Ending>(),
    ));
    // During the run: ready, and a scrape that parses and shows events flowing.
    let mut seen_ready = false;
    let mut during = None;
    while !run.is_finished() {
        if !seen_ready && get(addr, "/readyz").await.0 == 200 {
            seen_ready = true;
        }
        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        let samples = parse(&body);
        let events_in = sample(&samples, "clickwatch_events_in_total{}");
        if events_in > 0.0 && during.is_none() {
            during = Some(events_in);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let summary = run.await.expect("join").expect("pipeline");
    assert!(seen_ready, "/readyz never said ready during the run");
    let during = during.expect("no scrape saw events while the run went on");
    assert!(during <= valid as f64);
    assert_eq!(
        get(addr, "/readyz").await.0,
        503,
        "not ready once the run ended"
    );

    // After the run: every counter agrees with the outputs.
    let (_, body) = get(addr, "/metrics").await;
    let m = parse(&body);
    assert_eq!(sample(&m, "clickwatch_events_in_total{}"), valid as f64);
    assert_eq!(sample(&m, "clickwatch_events_invalid_total{}"), bad as f64);
    let alerts = lines(&out.join("alerts.jsonl"));
    assert!(
        alerts.len() >= 3,
        "the injected anomalies raise alerts: {}",
        alerts.len()
    );
    assert_eq!(sample(&m, "clickwatch_alerts_total{}"), alerts.len() as f64);
    assert_eq!(summary.alerts, alerts.len() as u64);
    let mut by_detector: BTreeMap<String, u64> = BTreeMap::new();
    for a in &alerts {
        *by_detector
            .entry(a["detector"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    for (detector, n) in &by_detector {
        assert_eq!(
            sample(
                &m,
                &format!("clickwatch_detector_alerts_total{{detector={detector}}}")
            ),
            *n as f64
        );
    }
    let dead = lines(&out.join("dead.jsonl"));
    assert_eq!(dead.len(), bad);
    assert_eq!(sample(&m, "clickwatch_dead_letters_total{}"), bad as f64);
    let reason = dead[0]["reason"].as_str().expect("reason").to_owned();
    assert_eq!(
        sample(
            &m,
            &format!("clickwatch_dead_letter_reasons_total{{reason={reason}}}")
        ),
        bad as f64
    );
    let raw = common::sqlite_scalar(&out, "SELECT COUNT(*) FROM click_events").await;
    assert_eq!(raw, valid as i64);
    assert_eq!(sample(&m, "clickwatch_raw_rows_total{}"), raw as f64);
    assert_eq!(
        sample(&m, "clickwatch_sink_written_total{sink=raw}"),
        raw as f64
    );
    let traffic_rows = common::sqlite_scalar(&out, "SELECT COUNT(*) FROM page_traffic").await;
    assert!(traffic_rows > 0);
    assert_eq!(
        sample(&m, "clickwatch_aggregate_rows_total{}"),
        summary.aggregate_rows as f64
    );
    assert_eq!(
        sample(&m, "clickwatch_sink_written_total{sink=aggregates}"),
        summary.aggregate_rows as f64
    );
    assert_eq!(
        sample(&m, "clickwatch_sink_written_total{sink=alerts}"),
        alerts.len() as f64
    );
    for status in &summary.plugins {
        let labels = format!("plugin={},version={}", status.name, status.version);
        assert_eq!(
            sample(&m, &format!("clickwatch_plugin_events_total{{{labels}}}")),
            valid as f64,
            "{} saw every valid event",
            status.name
        );
        assert!(sample(&m, &format!("clickwatch_plugin_calls_total{{{labels}}}")) > 0.0);
        assert!(
            sample(
                &m,
                &format!("clickwatch_plugin_batch_seconds_count{{{labels}}}")
            ) > 0.0
        );
        assert_eq!(
            sample(&m, &format!("clickwatch_plugin_live{{{labels}}}")),
            1.0
        );
        assert!(
            sample(
                &m,
                &format!("clickwatch_plugin_memory_cap_bytes{{{labels}}}")
            ) > 0.0
        );
    }
    assert_eq!(summary.plugins.len(), PLUGINS.len());
    let emitted: f64 = summary
        .plugins
        .iter()
        .map(|p| {
            sample(
                &m,
                &format!(
                    "clickwatch_plugin_alerts_total{{plugin={},version={}}}",
                    p.name, p.version
                ),
            )
        })
        .sum();
    assert_eq!(
        emitted,
        alerts.len() as f64,
        "alerts emitted by plugins = alerts published"
    );
    server.abort();
}

/// The binary opens the listener its config names (port 0 here: a free one, logged), and
/// serves health and metrics while it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_binary_serves_metrics_on_its_configured_address() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).expect("plugins");
    std::fs::write(
        plugins.join("page-traffic.wasm"),
        common::wasm("page-traffic"),
    )
    .expect("copy");
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).expect("out");
    let text = common::config_text(
        "type = \"generator\"\nrate = 2000\nseed = 3",
        &plugins,
        &out,
        &format!("type = \"sqlite\"\npath = \"{}/db.sqlite\"", out.display()),
    );
    let config = dir.path().join("host.toml");
    std::fs::write(&config, text).expect("config");
    let log = dir.path().join("host.log");
    let mut host = common::spawn_host(&config, &log);
    // The address is in the log line the host writes once it listens.
    let mut addr = None;
    common::wait_until("the host logs its metrics address", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        addr = text
            .lines()
            .find(|l| l.contains("observability listening"))
            .and_then(|l| l.split("at=").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse::<std::net::SocketAddr>().ok());
        addr.is_some() || host.try_wait().ok().flatten().is_some()
    })
    .await;
    let addr = addr.unwrap_or_else(|| {
        panic!(
            "host exited early: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    assert_eq!(get(addr, "/healthz").await.0, 200);
    let mut ready = false;
    for _ in 0..600 {
        if get(addr, "/readyz").await.0 == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the host never became ready");
    let mut events = 0.0;
    for _ in 0..600 {
        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        events = sample(&parse(&body), "clickwatch_events_in_total{}");
        if events > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(events > 0.0, "no events counted");
    let _ = host.kill();
    let _ = host.wait();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !text.contains('\u{1b}'),
        "ANSI codes in a log that is not a terminal"
    );
}
