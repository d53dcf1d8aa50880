//! The plugin sandbox against real `.wasm` fixtures: loops, memory blow-ups and panics become
//! contained errors while other plugins keep processing; wrong contracts are refused.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clickwatch::plugin::{
    CallError, Limits, LoadError, PluginModule, PluginSet, Policy, Prepared, Runtime,
    batch::encode_batch,
};
use common::{capture_logs, events, logged, wasm};

fn runtime() -> Runtime {
    Runtime::new(Limits {
        deadline: Duration::from_millis(100),
        memory_bytes: 32 << 20,
        ..Limits::default()
    })
    .expect("runtime")
}

fn prepared(runtime: &Runtime, name: &str, settings: &str) -> Prepared {
    let module =
        PluginModule::load(runtime, &wasm(name)).unwrap_or_else(|e| panic!("load {name}: {e}"));
    let instance = module
        .instantiate(settings)
        .unwrap_or_else(|e| panic!("init {name}: {e}"));
    Prepared {
        path: PathBuf::from(format!("{name}.wasm")),
        module,
        settings: settings.to_owned(),
        instance,
    }
}

/// Runs `chaos` (in `mode`) beside `counter` and checks the counter sees every event while
/// chaos fails with the expected error.
fn contained(mode: &str, expect: fn(&CallError) -> bool) {
    let rt = runtime();
    let module = PluginModule::load(&rt, &wasm("chaos")).unwrap();
    let mut instance = module
        .instantiate(&format!(r#"{{"mode": "{mode}", "after_events": 100}}"#))
        .unwrap();
    // First batch is fine; the second makes chaos misbehave.
    let first = encode_batch(&events(0, 100));
    assert!(instance.process(&first).is_ok());
    let started = Instant::now();
    let err = instance
        .process(&encode_batch(&events(100, 10)))
        .unwrap_err();
    assert!(expect(&err), "{mode}: unexpected error {err:?}");
    assert!(instance.is_dead() == err.is_trap());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{mode} was not stopped promptly"
    );

    // In a set, a chaos plugin that fails from its first event on, beside a healthy counter.
    let mut set = PluginSet::new(Policy {
        max_failures: 2,
        ..Policy::default()
    });
    set.install(
        prepared(&rt, "chaos", &format!(r#"{{"mode": "{mode}"}}"#)),
        Instant::now(),
    )
    .unwrap();
    set.install(prepared(&rt, "counter", "{}"), Instant::now())
        .unwrap();
    let mut counted = 0;
    for round in 0..6u64 {
        let out = set.process(
            &Arc::new(encode_batch(&events(round * 50, 50))),
            Instant::now(),
        );
        // Ticks succeed in between, as in the pipeline; they must not hide the failures.
        let ticked = set.tick(round as i64 * 1_000, Instant::now());
        let count = |rows: &[clickwatch::aggregate::AggregateRow]| {
            rows.iter()
                .map(|r| match r.values[1] {
                    clickwatch::aggregate::Value::Int64(n) => n,
                    _ => 0,
                })
                .sum::<i64>()
        };
        counted += count(&ticked.rows) + count(&out.rows);
    }
    assert_eq!(
        counted, 300,
        "counter must see every event while chaos ({mode}) fails"
    );
    let chaos = set
        .status()
        .into_iter()
        .find(|s| s.name == "chaos")
        .unwrap();
    assert!(
        chaos.stats.failures >= 2,
        "{mode}: failures not counted: {:?}",
        chaos.stats
    );
    assert!(
        chaos.quarantined,
        "{mode}: repeated failures must quarantine the plugin"
    );
}

#[test]
fn an_infinite_loop_hits_the_deadline_and_is_contained() {
    contained("loop", |e| matches!(e, CallError::Deadline(100)));
}

#[test]
fn a_memory_blow_up_hits_the_cap_and_is_contained() {
    contained("grow", |e| matches!(e, CallError::Memory(32)));
}

#[test]
fn a_panic_message_reaches_the_log_and_the_error() {
    let (_guard, logs) = capture_logs();
    contained(
        "panic",
        |e| matches!(e, CallError::Panic(m) if m.contains("chaos panicked on purpose after 110 events")),
    );
    let logs = logged(&logs);
    assert!(
        logs.contains("plugin panicked: chaos panicked on purpose"),
        "log was: {logs}"
    );
}

#[test]
fn a_returned_error_keeps_the_instance_alive() {
    contained(
        "error",
        |e| matches!(e, CallError::Plugin(m) if m.contains("failed on purpose")),
    );
}

#[test]
fn a_plugin_built_against_another_contract_is_refused() {
    let err = PluginModule::load(&runtime(), &wasm("other-contract")).unwrap_err();
    assert!(matches!(err, LoadError::Contract { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("clickwatch:plugin@0.9.0") && message.contains("clickwatch:plugin@0.2.0"),
        "{message}"
    );
}

#[test]
fn garbage_and_rejected_settings_are_refused_with_a_reason() {
    let rt = runtime();
    assert!(matches!(
        PluginModule::load(&rt, b"definitely not wasm"),
        Err(LoadError::NotWasm)
    ));
    let mut truncated = wasm("counter");
    truncated.truncate(truncated.len() / 2);
    assert!(PluginModule::load(&rt, &truncated).is_err());
    let module = PluginModule::load(&rt, &wasm("chaos")).unwrap();
    let err = module
        .instantiate(r#"{"mode": "fail-init"}"#)
        .err()
        .expect("init must fail");
    assert!(
        err.to_string().contains("chaos refuses these settings"),
        "{err}"
    );
    let err = module
        .instantiate(r#"{"mode": "sideways"}"#)
        .err()
        .expect("bad settings must fail");
    assert!(err.to_string().contains("unknown variant"), "{err}");
}

#[test]
fn declared_info_is_read() {
    let module = PluginModule::load(&runtime(), &wasm("page-traffic")).unwrap();
    assert_eq!(module.info.name, "page-traffic");
    assert_eq!(module.info.tables[0].name, "page_traffic");
    assert_eq!(
        module.info.tables[0].key,
        vec!["window_start".to_string(), "url".to_string()]
    );
}

/// The plugins of a large batch shared out over several threads give exactly the output of
/// one thread (same alerts, same rows, same order), and a panicking plugin among them is still
/// contained and quarantined.
#[test]
fn plugins_fanned_out_over_threads_give_the_output_of_one_thread() {
    use clickwatch::generator::{Generator, GeneratorSettings, Scenario, parse_anomalies};
    let rt = runtime();
    let mut generator = Generator::new(GeneratorSettings {
        seed: 31,
        mean_rate: 40.0,
        scenario: Scenario {
            items: parse_anomalies("bot,traffic-spike,click-fraud").expect("anomaly spec"),
            warmup_ms: 20 * 60_000,
            gap_ms: 3 * 60_000,
        },
        ..GeneratorSettings::default()
    });
    let events = generator.take(60_000);
    let run = |threads: usize| {
        let mut set = PluginSet::new(Policy {
            max_failures: 2,
            ..Policy::default()
        })
        .with_threads(threads);
        for name in [
            "page-traffic",
            "bot-detector",
            "session-engagement",
            "traffic-anomaly",
            "click-fraud",
            "counter",
        ] {
            set.install(prepared(&rt, name, "{}"), Instant::now())
                .unwrap();
        }
        set.install(
            prepared(&rt, "chaos", r#"{"mode": "panic"}"#),
            Instant::now(),
        )
        .unwrap();
        let (mut alerts, mut rows) = (Vec::new(), Vec::new());
        // One clock for both runs, so quarantines end at the same batch.
        let t0 = Instant::now();
        for (i, chunk) in events.chunks(2_000).enumerate() {
            let now = t0 + Duration::from_millis(i as u64 * 300);
            let out = set.process(&Arc::new(encode_batch(chunk)), now);
            alerts.extend(out.alerts);
            rows.extend(out.rows);
            let watermark = chunk.last().map_or(0, |e| e.time_ms) - 5_000;
            let out = set.tick(watermark, now);
            alerts.extend(out.alerts);
            rows.extend(out.rows);
        }
        let chaos = set
            .status()
            .into_iter()
            .find(|p| p.name == "chaos")
            .expect("chaos loaded");
        (alerts, rows, chaos.stats.quarantines)
    };
    let (alerts, rows, quarantines) = run(1);
    assert!(!alerts.is_empty(), "the injected anomalies raise alerts");
    assert!(rows.len() > 1_000, "{} rows", rows.len());
    assert!(quarantines >= 1, "the panicking plugin is quarantined");
    let fanned = run(3);
    assert_eq!(fanned.0, alerts, "alerts differ with 3 threads");
    assert_eq!(fanned.1, rows, "rows differ with 3 threads");
    assert_eq!(fanned.2, quarantines);
}

/// A plugin restarted after a trap resumes from exactly the state before the failed call: the
/// last snapshot plus a replay of the calls since, whether or not a snapshot fell in between.
#[test]
fn a_restart_after_a_trap_resumes_from_the_state_just_before_it() {
    let rt = runtime();
    for snapshot_midway in [false, true] {
        let mut set = PluginSet::new(Policy {
            snapshot_interval: Duration::from_secs(5),
            ..Policy::default()
        });
        let t0 = Instant::now();
        set.install(
            prepared(&rt, "counter", r#"{"trap_on_url": "/poison"}"#),
            t0,
        )
        .unwrap();
        let total = |out: &clickwatch::plugin::SetOutput| {
            out.rows.last().map(|r| match r.values[0] {
                clickwatch::aggregate::Value::Int64(n) => n,
                _ => -1,
            })
        };
        let mut at = t0;
        for round in 0..4u64 {
            let out = set.process(&Arc::new(encode_batch(&events(round * 50, 50))), at);
            assert_eq!(total(&out), Some((round as i64 + 1) * 50));
            if snapshot_midway && round == 1 {
                at += Duration::from_secs(6);
            }
            set.tick(round as i64, at);
        }
        let mut poison = events(200, 50);
        poison[17].url = "/poison".into();
        let out = set.process(&Arc::new(encode_batch(&poison)), at);
        assert!(out.rows.is_empty(), "the poison batch traps");
        let out = set.process(&Arc::new(encode_batch(&events(250, 50))), at);
        assert_eq!(
            total(&out),
            Some(250),
            "snapshot midway {snapshot_midway}: the restarted counter lost or repeated calls"
        );
        let stats = set.status().into_iter().next().unwrap().stats;
        assert_eq!(stats.restarts, 1);
        assert_eq!(stats.incomplete_replays, 0);
        assert_eq!(stats.skipped_events, 50);
    }
}

#[test]
fn an_output_larger_than_the_host_copies_is_a_contained_trap() {
    let flood = |output_bytes: usize| {
        let rt = Runtime::new(Limits {
            deadline: Duration::from_secs(5),
            memory_bytes: 32 << 20,
            output_bytes,
        })
        .expect("runtime");
        let module = PluginModule::load(&rt, &wasm("chaos")).unwrap();
        let mut instance = module.instantiate(r#"{"mode": "flood"}"#).unwrap();
        let result = instance.process(&encode_batch(&events(0, 10)));
        (result, instance.is_dead())
    };
    // ~14 MB to copy: within 64 MiB, every alert arrives.
    let (result, _) = flood(64 << 20);
    assert_eq!(result.expect("within the bound").alerts.len(), 50_000);
    // Over a 4 MiB bound: refused while lifting, before the host holds it, as a trap.
    let (result, dead) = flood(4 << 20);
    match result {
        Err(CallError::Trap(message)) => {
            assert!(message.contains("too much data"), "{message}")
        }
        other => panic!("expected a trap, got {:?}", other.map(|o| o.alerts.len())),
    }
    assert!(dead, "the instance is restarted after it");
}

#[test]
fn plugin_log_fields_are_fields_of_their_own_in_json_logs() {
    let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || common::BufWriter(writer.clone()))
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let rt = runtime();
    let module = PluginModule::load(&rt, &wasm("chaos")).unwrap();
    let mut instance = module.instantiate(r#"{"mode": "log"}"#).unwrap();
    instance.process(&encode_batch(&events(0, 7))).unwrap();
    let text = logged(&buf);
    let line: serde_json::Value = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON log line"))
        .find(|l| l["fields"]["message"] == "chaos says hello")
        .unwrap_or_else(|| panic!("no plugin line in {text}"));
    assert_eq!(line["fields"]["plugin"], "chaos");
    assert_eq!(line["fields"]["session"], "s1");
    assert_eq!(line["fields"]["count"], "7");
    assert_eq!(line["level"], "INFO");
}
