//! Kafka end to end: generator → Kafka (4 partitions) → host (page-traffic + bot-detector) →
//! alerts topic, on the broker of `cargo xtask services up kafka` (KAFKA_BROKERS). Prints the
//! rate of each stage so the table in docs/benchmarks.md can say where the time goes:
//!   1. produce: the generator into the topic;
//!   2. consume+decode: a bare consumer reading and validating the topic (the source's floor);
//!   3. host, raw not kept: the whole host path with `sinks.raw.type = "none"`;
//!   4. host, raw in SQLite: the same with the embedded raw store;
//!   5. host, raw in PostgreSQL: the same into the COPY sink, when `CLICKWATCH_TEST_POSTGRES_URL`
//!      is set (`cargo xtask services up postgres`).
//!
//! `RAW=none,sqlite,postgres` picks the host runs (default: all that can run).
//! `EVENTS=N` sets the number of events (default 1 000 000); `PLUGINS=a,b` the plugins;
//! `PARTITIONS=P` the input topic's partitions (default 4); `WORKERS=W` the host's
//! `pipeline.workers` (default: the cores). The host re-partitions the input by
//! the plugins' state keys (one internal topic per key group), so an event counts as processed
//! once per key group; the rate below is of input events, and the bytes the re-partitioning
//! writes per input event are printed.
//!
//! Run: cargo xtask plugins && cargo xtask services up kafka &&
//!      KAFKA_BROKERS=127.0.0.1:19092 cargo bench -p clickwatch --bench kafka

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;

use clickwatch::generator::{Generator, GeneratorSettings};
use clickwatch::metrics::Metrics;
use clickwatch::pipeline::{self, Ending};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;

fn main() {
    let n: u64 = std::env::var("EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let brokers =
        std::env::var("KAFKA_BROKERS").expect("set KAFKA_BROKERS (cargo xtask services up kafka)");
    let wasm = std::env::var_os("CLICKWATCH_WASM_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins")
        });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    // PLUGINS=a,b overrides the example pair (e.g. PLUGINS= for the host without plugins).
    let plugin_names: Vec<String> = std::env::var("PLUGINS")
        .unwrap_or_else(|_| "page-traffic,bot-detector".into())
        .split(',')
        .map(str::to_owned)
        .collect();
    let partitions: i32 = std::env::var("PARTITIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    // Key groups of the plugins: each processes every event once.
    let groups = {
        let runtime = clickwatch::plugin::Runtime::new(clickwatch::plugin::Limits::default())
            .expect("wasm runtime");
        let mut keys: Vec<String> = plugin_names
            .iter()
            .filter(|n| !n.is_empty())
            .map(|name| {
                let bytes = std::fs::read(wasm.join(format!("{name}.wasm")))
                    .expect("build plugins first: cargo xtask plugins");
                clickwatch::plugin::PluginModule::load(&runtime, &bytes)
                    .expect("plugin loads")
                    .info
                    .key
                    .to_string()
            })
            .collect();
        keys.sort();
        keys.dedup();
        keys.len().max(1) as u64
    };
    let suffix = std::process::id();
    let topic = format!("bench-clicks-{suffix}");

    // 1. Produce.
    runtime.block_on(async {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .expect("admin");
        for r in admin
            .create_topics(
                [&NewTopic::new(
                    &topic,
                    partitions,
                    TopicReplication::Fixed(1),
                )],
                &AdminOptions::new(),
            )
            .await
            .expect("create topic")
        {
            r.expect("topic");
        }
        let producer = clickwatch::kafka::producer(&brokers).expect("producer");
        let mut generator = Generator::new(GeneratorSettings {
            seed: 9,
            mean_rate: 200.0,
            ..GeneratorSettings::default()
        });
        let started = Instant::now();
        let report = clickwatch::kafka::produce_generated(
            &producer,
            &topic,
            &mut generator,
            u32::MAX,
            Some(n),
            None,
            |_, _| {},
        )
        .await;
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(report.errors, 0);
        println!(
            "produce: {} events in {secs:.2} s = {:.0} events/s",
            report.sent,
            report.sent as f64 / secs
        );
    });

    // 2. Consume and decode only.
    {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", format!("bench-bare-{suffix}"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("queued.min.messages", "200000")
            .create()
            .expect("consumer");
        consumer.subscribe(&[&topic]).expect("subscribe");
        let mut seen = 0u64;
        let mut first = None;
        while seen < n {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                first.get_or_insert_with(Instant::now);
                let event = clickwatch::event::decode(m.payload().unwrap_or_default());
                assert!(event.is_ok());
                seen += 1;
            }
        }
        let secs = first.map_or(0.0, |t| t.elapsed().as_secs_f64());
        println!(
            "consume+decode: {seen} events in {secs:.2} s = {:.0} events/s",
            seen as f64 / secs
        );
    }

    // 3 and 4. The host.
    let postgres = std::env::var("CLICKWATCH_TEST_POSTGRES_URL").ok();
    let chosen: Vec<String> = std::env::var("RAW")
        .unwrap_or_else(|_| "none,sqlite,postgres".into())
        .split(',')
        .map(str::to_owned)
        .collect();
    let mut runs = Vec::new();
    if chosen.iter().any(|r| r == "none") {
        runs.push(("host, raw not kept", "type = \"none\"".to_owned()));
    }
    if chosen.iter().any(|r| r == "sqlite") {
        runs.push(("host, raw in SQLite", String::new()));
    }
    if let Some(server) = postgres.filter(|_| chosen.iter().any(|r| r == "postgres")) {
        // A database of its own per run, so the run writes every row (the sink is idempotent
        // on event_id: rows of an earlier run would be skipped, not written).
        let url = runtime.block_on(common::fresh_postgres(
            &server,
            &format!("bench_{suffix}"),
            true,
        ));
        runs.push((
            "host, raw in PostgreSQL",
            format!("type = \"postgres\"\nurl = \"{url}\""),
        ));
    }
    for (label, raw) in runs {
        let dir = tempfile::tempdir().expect("tempdir");
        let plugins = dir.path().join("plugins");
        std::fs::create_dir(&plugins).expect("plugins dir");
        for name in plugin_names.iter().filter(|n| !n.is_empty()) {
            std::fs::copy(
                wasm.join(format!("{name}.wasm")),
                plugins.join(format!("{name}.wasm")),
            )
            .expect("build plugins first: cargo xtask plugins");
        }
        let out = dir.path().display();
        let raw = if raw.is_empty() {
            format!("type = \"sqlite\"\npath = \"{out}/raw.sqlite\"")
        } else {
            raw
        };
        let group = format!("bench-host-{}-{suffix}", label.len());
        let workers = std::env::var("WORKERS")
            .map(|w| format!("workers = {w}\n"))
            .unwrap_or_default();
        let config = format!(
            "[source]\ntype = \"kafka\"\nbrokers = \"{brokers}\"\ntopic = \"{topic}\"\ngroup_id = \"{group}\"\n\
             [pipeline]\nbatch_size = 5000\nbatch_linger_ms = 50\n{workers}\
             [plugins]\ndir = \"{}\"\nwatch = false\n\
             [sinks.raw]\n{raw}\n\
             [sinks.aggregates]\ntype = \"sqlite\"\npath = \"{out}/agg.sqlite\"\n\
             [sinks.alerts]\ntype = \"kafka\"\nbrokers = \"{brokers}\"\ntopic = \"bench-alerts-{suffix}\"\n\
             [sinks.dead_letters]\ntype = \"file\"\npath = \"{out}/dead.jsonl\"\n",
            plugins.display()
        );
        let config = clickwatch::config::parse(std::path::Path::new("bench.toml"), &config, [])
            .expect("config");
        let metrics = Arc::new(Metrics::default());
        let m = metrics.clone();
        let timing = Arc::new(std::sync::Mutex::new((None, None)));
        let t = timing.clone();
        let shutdown = async move {
            loop {
                let done = m.events_processed.load(Ordering::Relaxed);
                {
                    let mut t = t.lock().unwrap();
                    if done > 0 && t.0.is_none() {
                        t.0 = Some(Instant::now());
                    }
                    if done >= n * groups {
                        t.1 = Some(Instant::now());
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ending::Stopped
        };
        let summary = runtime
            .block_on(pipeline::run(config, metrics.clone(), shutdown))
            .expect("pipeline");
        let (first, last) = *timing.lock().unwrap();
        let secs = last.unwrap().duration_since(first.unwrap()).as_secs_f64();
        let routed = Metrics::get(&metrics.routed_bytes);
        println!(
            "{label}, {partitions} partitions, {groups} key groups: {n} events in {secs:.2} s (first to last event) = {:.0} events/s; {:.0} routed bytes per event; {} alerts, {} aggregate rows, {} raw rows; whole run incl. start-up and group join {:.2} s",
            n as f64 / secs,
            routed as f64 / n as f64,
            summary.alerts,
            summary.aggregate_rows,
            summary.raw_rows,
            summary.elapsed.as_secs_f64()
        );
    }
}
