//! Hot reload under a continuous stream: a swap loses and repeats nothing and carries state;
//! a broken file is refused while the old version keeps running; deleting a file unloads it.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use clickwatch::metrics::Metrics;
use clickwatch::pipeline::{self, Ending};
use common::{config, deploy, wait_until, wasm};
use sqlx::Row;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_a_plugin_mid_stream_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::write(plugins.join("counter.wasm"), wasm("counter")).unwrap();
    std::fs::write(plugins.join("page-traffic.wasm"), wasm("page-traffic")).unwrap();
    let config = config(
        "type = \"generator\"\nrate = 20000\nseed = 3",
        &plugins,
        dir.path(),
    );
    let metrics = Arc::new(Metrics::default());
    let m = metrics.clone();
    let plugin_dir = plugins.clone();
    let shutdown = async move {
        let processed = || m.events_processed.load(Ordering::Relaxed);
        wait_until("some events flowed through version 1", || {
            processed() > 5_000
        })
        .await;
        deploy(&wasm("counter-v2"), &plugin_dir.join("counter.wasm"));
        wait_until("version 2 was swapped in", || {
            m.plugin_loads.load(Ordering::Relaxed) >= 3
        })
        .await;
        let at = processed();
        wait_until("events flowed through version 2", || {
            processed() > at + 5_000
        })
        .await;
        // A version that changes a column's type: refused, version 2 keeps running.
        deploy(&wasm("counter-v3"), &plugin_dir.join("counter.wasm"));
        wait_until("the incompatible version was refused", || {
            m.plugin_rejections.load(Ordering::Relaxed) >= 1
        })
        .await;
        // Garbage over the live file: refused too, version 2 keeps running.
        deploy(b"\0asm garbage", &plugin_dir.join("counter.wasm"));
        wait_until("the broken file was refused", || {
            m.plugin_rejections.load(Ordering::Relaxed) >= 2
        })
        .await;
        let at = processed();
        wait_until("events flowed after the refusal", || {
            processed() > at + 5_000
        })
        .await;
        // Deleting a file unloads its plugin.
        std::fs::remove_file(plugin_dir.join("page-traffic.wasm")).unwrap();
        wait_until("page-traffic was unloaded", || {
            m.plugins_loaded.load(Ordering::Relaxed) == 1
        })
        .await;
        Ending::Exhausted
    };
    let summary = pipeline::run(config, metrics.clone(), shutdown)
        .await
        .expect("pipeline");

    assert_eq!(
        summary.events_processed, summary.events_in,
        "every event read was processed"
    );
    assert!(summary.events_processed > 15_000);
    let counter = summary
        .plugins
        .iter()
        .find(|p| p.name == "counter")
        .expect("counter still loaded");
    assert_eq!(
        counter.version, "2.0.0",
        "the broken file must not replace version 2"
    );
    assert!(!summary.plugins.iter().any(|p| p.name == "page-traffic"));

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}/db.sqlite", dir.path().display()))
        .await
        .unwrap();
    let row = sqlx::query(
        "SELECT SUM(batch_events) AS events, MAX(total) AS total, COUNT(DISTINCT version) AS versions, \
         SUM(version = '2.0.0') AS v2_batches FROM counter_progress",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let (events, total, versions, v2) = (
        row.get::<i64, _>("events"),
        row.get::<i64, _>("total"),
        row.get::<i64, _>("versions"),
        row.get::<i64, _>("v2_batches"),
    );
    // Each batch wrote one row keyed by the running total: their sizes add up to exactly the
    // events processed (nothing lost, nothing twice), across both versions.
    assert_eq!(
        events as u64, summary.events_processed,
        "batches lost or repeated across the swap"
    );
    // Version 2 continued version 1's count: state was carried through snapshot/restore.
    assert_eq!(
        total as u64, summary.events_processed,
        "state did not carry over the swap"
    );
    assert_eq!(versions, 2);
    assert!(v2 > 0);
    assert_eq!(
        metrics.plugin_swaps.load(Ordering::Relaxed),
        1,
        "one swap, v1 -> v2"
    );
    let history = metrics.plugin_history.lock().unwrap().all();
    let changes: Vec<_> = history
        .iter()
        .map(|h| (h.plugin.as_str(), h.change))
        .collect();
    use clickwatch::metrics::Change;
    assert!(
        changes.contains(&("counter", Change::Swapped)),
        "{changes:?}"
    );
    assert!(
        changes.contains(&("page-traffic", Change::Unloaded)),
        "{changes:?}"
    );
    assert_eq!(
        changes
            .iter()
            .filter(|(_, c)| *c == Change::Refused)
            .count(),
        2,
        "{changes:?}"
    );
    let swap = history
        .iter()
        .find(|h| h.change == Change::Swapped)
        .unwrap();
    assert_eq!(
        (swap.from.as_deref(), swap.to.as_deref(), swap.restored),
        (Some("1.0.0"), Some("2.0.0"), Some(true))
    );
    // The refused file is validated once, not again and again while it sits in the folder.
    assert_eq!(
        metrics.plugin_rejections.load(Ordering::Relaxed),
        2,
        "a refused file must not be reloaded until it changes"
    );
    // Version 2 added a nullable column: the table gained it and version 2's rows fill it.
    let filled: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM counter_progress WHERE version = '2.0.0' AND first_event IS NOT NULL",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        filled, v2,
        "the added column must exist and be filled by version 2"
    );
    let raw: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM click_events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(raw as u64, summary.events_processed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_file_for_a_loaded_plugin_goes_live_when_the_old_file_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::write(plugins.join("counter.wasm"), wasm("counter")).unwrap();
    let config = config(
        "type = \"generator\"\nrate = 20000\nseed = 4",
        &plugins,
        dir.path(),
    );
    let metrics = Arc::new(Metrics::default());
    let m = metrics.clone();
    let plugin_dir = plugins.clone();
    let shutdown = async move {
        let processed = || m.events_processed.load(Ordering::Relaxed);
        wait_until("version 1 ran", || processed() > 3_000).await;
        // A deploy that adds the new version under a new name, then removes the old file.
        deploy(&wasm("counter-v2"), &plugin_dir.join("counter-2.wasm"));
        wait_until("version 2 is parked behind version 1", || {
            m.plugins_parked.load(Ordering::Relaxed) == 1
        })
        .await;
        std::fs::remove_file(plugin_dir.join("counter.wasm")).unwrap();
        wait_until("version 2 went live", || {
            m.plugin_loads.load(Ordering::Relaxed) >= 2
        })
        .await;
        let at = processed();
        wait_until("version 2 ran", || processed() > at + 3_000).await;
        Ending::Exhausted
    };
    let summary = pipeline::run(config, metrics.clone(), shutdown)
        .await
        .expect("pipeline");
    let counter = summary
        .plugins
        .iter()
        .find(|p| p.name == "counter")
        .expect("counter is loaded");
    assert_eq!(counter.version, "2.0.0");
    assert_eq!(metrics.plugin_rejections.load(Ordering::Relaxed), 0);
    // The waiting file took over as a swap: version 2 continued version 1's count.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}/db.sqlite", dir.path().display()))
        .await
        .unwrap();
    let (total, events): (i64, i64) =
        sqlx::query_as("SELECT MAX(total), SUM(batch_events) FROM counter_progress")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        events as u64, summary.events_processed,
        "batches lost or repeated across the takeover"
    );
    assert_eq!(
        total as u64, summary.events_processed,
        "the parked version started without its predecessor's state"
    );
}
