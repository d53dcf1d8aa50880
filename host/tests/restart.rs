//! Stop and start again with a state folder: plugin state and the source position are
//! checkpointed together, so the second run resumes where the first stopped and nothing is counted twice.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use clickwatch::event::EventKind;
use clickwatch::generator::{Generator, GeneratorSettings};
use clickwatch::metrics::Metrics;
use clickwatch::pipeline::{self, Ending, LocalCheckpoints};
use common::{config, wait_until, wasm};

async fn run_until(
    config: clickwatch::config::Config,
    events: u64,
    ending: Ending,
) -> pipeline::Summary {
    let metrics = Arc::new(Metrics::default());
    let m = metrics.clone();
    let shutdown = async move {
        wait_until("enough events were processed", || {
            m.events_processed.load(Ordering::Relaxed) >= events
        })
        .await;
        ending
    };
    pipeline::run(config, metrics, shutdown)
        .await
        .expect("pipeline")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_run_resumes_without_counting_twice() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::write(plugins.join("page-traffic.wasm"), wasm("page-traffic")).unwrap();
    let state = dir.path().join("state");
    let source = "type = \"generator\"\nrate = 20000\nseed = 5\nsimulated_rate = 20.0";
    let make = || {
        let mut c = config(source, &plugins, dir.path());
        c.plugins.state_dir = Some(state.clone());
        c
    };
    // Stopped: windows stay open in the saved plugin state.
    let first = run_until(make(), 4_000, Ending::Stopped).await;
    let checkpoints = LocalCheckpoints::new(&state);
    let saved = checkpoints
        .load(&pipeline::source_id(&make()))
        .expect("the first run checkpointed");
    assert!(
        saved.plugins.iter().any(|(name, _)| name == "page-traffic"),
        "page-traffic's state is in the checkpoint"
    );
    // Resumed and then ended: every window closes.
    let second = run_until(make(), 4_000, Ending::Exhausted).await;
    let records = checkpoints
        .load(&pipeline::source_id(&make()))
        .expect("the second run checkpointed")
        .next_offset as u64;
    assert_eq!(
        records,
        first.events_in + second.events_in,
        "the second run continued the first"
    );

    let generated = Generator::new(GeneratorSettings {
        seed: 5,
        mean_rate: 20.0,
        bot_fraction: 0.01,
        ..GeneratorSettings::default()
    })
    .take(records as usize);
    let page_views = generated
        .iter()
        .filter(|e| e.kind == EventKind::PageView)
        .count() as i64;
    let views = common::sqlite_scalar(dir.path(), "SELECT SUM(views) FROM page_traffic").await;
    assert_eq!(
        views, page_views,
        "each page view of the two runs is counted exactly once"
    );
    let raw = common::sqlite_scalar(dir.path(), "SELECT COUNT(*) FROM click_events").await;
    assert_eq!(raw as u64, records);
}
