//! Embedded pipeline throughput: a file of generated events → plugins → SQLite (raw events
//! and aggregates) + alerts file. Prints events/s.
//!
//! Run: cargo xtask plugins && cargo bench --profile dev -p clickwatch --bench pipeline
//! Env: EVENTS (200000), PLUGINS (page-traffic,bot-detector; `all` for the six shipped),
//! RAW (sqlite | none), TICK_MS (pipeline.tick_interval_ms, default 1000).

use std::sync::Arc;

use clickwatch::event::encode;
use clickwatch::generator::{Generator, GeneratorSettings};
use clickwatch::metrics::Metrics;
use clickwatch::pipeline::{self, Ending};

fn main() {
    let n: usize = std::env::var("EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let wasm = std::env::var_os("CLICKWATCH_WASM_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins")
        });
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).expect("plugins dir");
    let names = match std::env::var("PLUGINS").as_deref() {
        Ok("all") => {
            "page-traffic,session-engagement,traffic-anomaly,bot-detector,click-fraud,funnel-drop"
                .to_owned()
        }
        Ok(list) => list.to_owned(),
        Err(_) => "page-traffic,bot-detector".to_owned(),
    };
    let names: Vec<&str> = names.split(',').map(str::trim).collect();
    let raw = match std::env::var("RAW").as_deref() {
        Ok("none") => "type = \"none\"".to_owned(),
        _ => format!(
            "type = \"sqlite\"\npath = \"{}/db.sqlite\"",
            dir.path().display()
        ),
    };
    let tick: u64 = std::env::var("TICK_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    for name in &names {
        std::fs::copy(
            wasm.join(format!("{name}.wasm")),
            plugins.join(format!("{name}.wasm")),
        )
        .expect("build plugins first");
    }
    let input = dir.path().join("events.jsonl");
    let mut generator = Generator::new(GeneratorSettings {
        seed: 5,
        mean_rate: 200.0,
        ..GeneratorSettings::default()
    });
    let text: Vec<String> = (0..n).map(|_| encode(&generator.next_event())).collect();
    std::fs::write(&input, text.join("\n")).expect("write events");
    let out = dir.path().display();
    let config = format!(
        r#"
[source]
type = "file"
path = "{}"
[pipeline]
tick_interval_ms = {tick}
[plugins]
dir = "{}"
watch = false
[sinks.raw]
{raw}
[sinks.aggregates]
type = "sqlite"
path = "{out}/db.sqlite"
[sinks.alerts]
type = "file"
path = "{out}/alerts.jsonl"
stdout = false
[sinks.dead_letters]
type = "file"
path = "{out}/dead.jsonl"
"#,
        input.display(),
        plugins.display()
    );
    let config =
        clickwatch::config::parse(std::path::Path::new("bench.toml"), &config, []).expect("config");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let summary = runtime
        .block_on(pipeline::run(
            config,
            Arc::new(Metrics::default()),
            std::future::pending::<Ending>(),
        ))
        .expect("pipeline");
    let secs = summary.elapsed.as_secs_f64();
    println!("{summary}");
    println!(
        "\n{} events in {secs:.2} s = {:.0} events/s (file source, {} plugins, raw {}, SQLite aggregates, tick {tick} ms)",
        summary.events_processed,
        summary.events_processed as f64 / secs,
        names.len(),
        if raw.contains("none") {
            "none"
        } else {
            "SQLite"
        },
    );
}
