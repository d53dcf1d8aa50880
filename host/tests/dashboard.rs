//! The dashboard in a real headless Chromium (Debian's `chromium`, installed by
//! `services/chromium.sh`; its path comes from CLICKWATCH_CHROMIUM, which `cargo xtask test`
//! sets). After a run, the page must load without errors, refresh by itself, draw both charts
//! with data, and show the same numbers as `/metrics`. A screenshot is written to
//! `target/dashboard.png` for people to look at.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clickwatch::metrics::Metrics;
use clickwatch::observe::Listener;
use clickwatch::pipeline::{self, Ending};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn chromium() -> String {
    std::env::var("CLICKWATCH_CHROMIUM").expect(
        "Chromium is needed: run `cargo xtask services up chromium` and export the \
         CLICKWATCH_CHROMIUM it prints (or use `cargo xtask test`)",
    )
}

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

/// Sums of each metric family over its labels, from a scrape.
fn totals(text: &str) -> BTreeMap<String, f64> {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("exposition parses");
    let mut out = BTreeMap::new();
    for s in &scrape.samples {
        if let prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) = s.value
        {
            *out.entry(s.metric.clone()).or_default() += v;
        }
    }
    out
}

/// Runs Chromium headless on `url` with `extra` arguments; returns (stdout, stderr).
async fn browse(url: &str, extra: &[&str]) -> (String, String) {
    let (url, extra): (String, Vec<String>) = (
        url.to_owned(),
        extra.iter().map(|s| (*s).to_owned()).collect(),
    );
    // On a blocking thread: the runtime keeps serving the page meanwhile.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(chromium())
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--enable-logging=stderr",
                "--v=0",
                "--window-size=1400,2000",
                // Virtual time: the page runs ~4 refreshes (one every 2 s), waiting on its fetches.
                "--virtual-time-budget=7000",
            ])
            .args(&extra)
            .arg(&url)
            .output()
            .expect("run chromium")
    })
    .await
    .expect("chromium thread");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The value of attribute `attr` of the element with id `id` in a DOM dump.
fn attr(dom: &str, id: &str, attr: &str) -> Option<String> {
    let start = dom.find(&format!("id=\"{id}\""))?;
    let tag_start = dom[..start].rfind('<')?;
    let tag_end = start + dom[start..].find('>')?;
    let tag = &dom[tag_start..tag_end];
    let at = tag.find(&format!("{attr}=\""))? + attr.len() + 2;
    Some(tag[at..at + tag[at..].find('"')?].to_owned())
}

/// The text of the element with id `id` (up to its first child tag).
fn text(dom: &str, id: &str) -> String {
    let start = dom.find(&format!("id=\"{id}\"")).expect("element");
    let open = start + dom[start..].find('>').expect("tag end") + 1;
    let close = open + dom[open..].find('<').expect("text end");
    dom[open..close].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_loads_refreshes_and_agrees_with_metrics_in_a_real_browser() {
    let dir = tempfile::tempdir().expect("temp dir");
    let events = dir.path().join("events.jsonl");
    common::write_anomalous_events(&events, 43, 40_000, 0, 10_000);
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).expect("plugins");
    for name in ["page-traffic", "bot-detector", "traffic-anomaly"] {
        std::fs::write(plugins.join(format!("{name}.wasm")), common::wasm(name)).expect("copy");
    }
    let config = common::config(
        &format!("type = \"file\"\npath = \"{}\"", events.display()),
        &plugins,
        dir.path(),
    );
    let metrics = Arc::new(Metrics::default());
    let listener = Listener::bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let _server = listener.serve(metrics.clone());
    let summary = pipeline::run(config, metrics.clone(), std::future::pending::<Ending>())
        .await
        .expect("pipeline");
    assert!(summary.alerts > 0, "the injected anomalies raise alerts");

    let url = format!("http://{addr}/");
    let (dom, log) = browse(&url, &["--dump-dom"]).await;
    let scrape = totals(&get(addr, "/metrics").await);

    // Loaded without errors, and refreshed by itself (no reload) more than once.
    assert_eq!(
        attr(&dom, "ready", "class").as_deref(),
        Some("pill bad"),
        "the run has ended: not ready"
    );
    let body = dom.find("<body").expect("body");
    let body_tag = &dom[body..body + dom[body..].find('>').expect("body tag")];
    assert!(
        body_tag.contains("data-errors=\"0\""),
        "errors on the page: {body_tag}\n{log}"
    );
    let refreshes: u32 = body_tag
        .split("data-refreshes=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|n| n.parse().ok())
        .expect("refresh count");
    assert!(
        refreshes >= 3,
        "the page refreshed {refreshes} times in 7 s"
    );
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:?}");

    // The numbers shown are /metrics' numbers.
    for (id, metric) in [
        ("events-in", "clickwatch_events_in_total"),
        ("events-processed", "clickwatch_events_processed_total"),
        ("events-invalid", "clickwatch_events_invalid_total"),
        ("alerts-total", "clickwatch_alerts_total"),
        ("dead-letters", "clickwatch_dead_letters_total"),
        ("raw-rows", "clickwatch_raw_rows_total"),
        ("aggregate-rows", "clickwatch_aggregate_rows_total"),
    ] {
        let shown: f64 = text(&dom, id).replace(',', "").parse().unwrap_or_else(|_| {
            panic!("{id} shows {:?}", text(&dom, id));
        });
        let expected = scrape.get(metric).copied().unwrap_or_default();
        assert_eq!(shown, expected, "{id} against {metric}");
    }
    assert_eq!(
        text(&dom, "events-in").replace(',', ""),
        summary.events_in.to_string()
    );
    assert_eq!(text(&dom, "events-invalid"), "4");

    // Both charts were drawn, with data.
    for chart in ["chart-rate", "chart-alerts"] {
        let points: usize = attr(&dom, chart, "data-points")
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        assert!(points >= 2, "{chart} has {points} points");
    }
    let charted: u64 = attr(&dom, "chart-alerts", "data-alerts")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(charted > 0 && charted <= summary.alerts);
    assert!(
        dom.matches("<canvas").count() >= 2,
        "uPlot draws on canvases"
    );

    // The tables: a row per plugin, the start-up loads in the history, alerts, dead letters.
    let rows = |table: &str| -> usize {
        let at = dom.find(&format!("id=\"{table}\"")).expect("table");
        let tbody = at + dom[at..].find("<tbody").expect("tbody");
        let tag = &dom[tbody..tbody + dom[tbody..].find('>').expect("tbody tag")];
        tag.split("data-rows=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(rows("plugin-table"), 3);
    assert_eq!(rows("history-table"), 3);
    assert!(rows("alert-table") > 0);
    assert!(rows("entity-table") > 0);
    assert_eq!(rows("dead-table"), 1, "one reason: malformed_json");
    assert!(rows("sink-table") >= 3);

    // A screenshot for people.
    let shot = screenshot_path();
    let _ = std::fs::remove_file(&shot);
    browse(&url, &[&format!("--screenshot={}", shot.display())]).await;
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 20_000,
        "screenshot {} is {size} bytes",
        shot.display()
    );
}

fn screenshot_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    std::fs::create_dir_all(&target).expect("target dir");
    target.join("dashboard.png")
}
