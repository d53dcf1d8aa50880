//! A Kafka input that goes quiet: windows still close by the idle advance, and what was
//! processed is still committed to the end, on the checkpoint timer, while nothing arrives.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clickwatch::config::Config;
use clickwatch::event::ClickEvent;
use clickwatch::metrics::Metrics;
use clickwatch::pipeline::{self, Ending};
use common::kafka::{
    config_text, create_topic, file_sinks, generated, keyed, per_partition, plugins_dir, produce,
    wait_committed, wait_global_total,
};
use common::{unique, wait_until};

/// The Kafka host config of `topic` with `pipeline` in place of its lateness line, and
/// `extra` appended.
fn config(
    topic: &str,
    group: &str,
    plugins: &Path,
    out: &Path,
    pipeline: &str,
    extra: &str,
) -> Config {
    let text = config_text(topic, group, plugins, out, &file_sinks(out))
        .replace("allowed_lateness_ms = 600000", pipeline)
        + extra;
    clickwatch::config::parse(Path::new("kafka.toml"), &text, []).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_close_when_the_input_goes_quiet() {
    let (topic, group) = (unique("quiet"), unique("g"));
    create_topic(&topic, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let plugins = plugins_dir(dir.path(), &["page-traffic"]);
    // 140 views within the first 3 s of a 5 s window: its end lies 2 s after the last event,
    // so only the idle advance can close it. The idle interval (4 s: the watermark then
    // follows to 3 s past the last event) is longer than a partition's first fetch may take:
    // a partition without input for that long counts as idle, and with 300 ms the second
    // partition's events sometimes arrived after the window had closed on the first's.
    let start = 1_795_860_000_000; // a multiple of 5 000 ms
    let events: Vec<ClickEvent> = (0..140)
        .map(|i| common::event(i, start + (i as i64) * 20, &format!("s{}", i % 9)))
        .collect();
    produce(&topic, &keyed(&events)).await;
    let config = config(
        &topic,
        &group,
        &plugins,
        dir.path(),
        "allowed_lateness_ms = 1000\nidle_advance_ms = 4000",
        "[plugins.settings.page-traffic]\nwindow_secs = 5\n",
    );
    let metrics = Arc::new(Metrics::default());
    let m = metrics.clone();
    let shutdown = async move {
        // Seven pages, one row each, once the window closed; nothing else can close it. The
        // wait is bounded (and does not panic inside the pipeline): the assertion below fails
        // if the window never closed.
        let _ = tokio::time::timeout(Duration::from_secs(60), async {
            while m.aggregate_rows.load(Ordering::Relaxed) < 7 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        Ending::Stopped
    };
    pipeline::run(config, metrics.clone(), shutdown)
        .await
        .unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}/raw.db", dir.path().display()))
        .await
        .unwrap();
    let (rows, views): (i64, i64) = sqlx::query_as("SELECT COUNT(*), SUM(views) FROM page_traffic")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        (rows, views),
        (7, 140),
        "every view of the quiet window, once"
    );
}

/// When the input goes quiet the last checkpoint is still stored on time: checkpoints follow
/// `checkpoint_interval_ms`, not the arrival of the next record. (Found by the chaos suite:
/// with a long `idle_advance_ms` the processor slept until the next record or the idle
/// advance, so the input and internal topics stayed uncommitted, and lag was reported, for
/// as long as the input was quiet.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_input_is_committed_to_its_end() {
    let (topic, group) = (unique("still"), unique("g"));
    create_topic(&topic, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let plugins = plugins_dir(dir.path(), &["counter"]);
    let events = generated(31, 3_000);
    let landed = produce(&topic, &keyed(&events)).await;
    // The idle advance far beyond the test: only the checkpoint timer can commit.
    let config = config(
        &topic,
        &group,
        &plugins,
        dir.path(),
        "allowed_lateness_ms = 600000\nidle_advance_ms = 3600000",
        "",
    );
    let metrics = Arc::new(Metrics::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let host = tokio::spawn(pipeline::run(config, metrics.clone(), async move {
        let _ = stopped.await;
        Ending::Stopped
    }));
    let m = metrics.clone();
    wait_until("every event processed", || {
        m.events_processed.load(Ordering::Relaxed) == 3_000
    })
    .await;
    // The host keeps running (no stop, which would checkpoint anyway): the input and the
    // `global` group's internal topic are committed to their ends all the same.
    wait_committed(&group, &topic, &per_partition(&landed)).await;
    wait_global_total(&group, 3_000).await;
    let _ = stop.send(());
    host.await.unwrap().unwrap();
}
