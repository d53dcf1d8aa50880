//! The scenario suite: generated clickstreams with every labelled anomaly kind at realistic
//! magnitudes, and normal-only traffic with a daily shape and legitimate surges, replayed
//! through the shipped detector plugins and scored against the labels. Each detector must
//! reach the floors in `FLOORS`, measured as recorded in `docs/detection-quality.md`.
//!
//! Run: `cargo xtask plugins && CLICKWATCH_WASM_DIR=target/plugins cargo test -p clickwatch
//! --test scenarios -- --nocapture` (the reports are printed).

mod common;

use clickwatch::generator::{
    Generator, GeneratorSettings, Label, Scenario, parse_anomalies, parse_surges,
};
use clickwatch::replay::{
    self, Batching, DEFAULT_GRACE_MS, PluginSettings, Replayer, Report, load_plugins,
};

/// The least a detector must achieve on one anomaly kind. Adding a detector is one line.
struct Floor {
    detector: &'static str,
    kind: &'static str,
    /// Label variant the recall floor is about ("" = every label of the kind).
    variant: &'static str,
    /// Over the anomaly runs.
    min_recall: f64,
    /// Over the anomaly runs, alerts of this kind.
    min_precision: f64,
    /// Alerts of this kind (any `kind/rule`) that match no label, per simulated hour: over
    /// each normal-only run (a morning ramp and a whole day, each with a flash sale and a
    /// newsletter) and over the anomaly runs.
    max_false_per_hour: f64,
}

/// Measured floors (docs/detection-quality.md has the measurements and the command).
/// `kind` may be `kind/variant` to hold the recall of one variant only (the ordinary bots
/// outnumber the injected ones a hundredfold); precision is always over the whole kind.
///
/// Measured as recorded in docs/detection-quality.md. Each floor is the measurement rounded
/// down to 0.05 but at most 0.9 (the target: F1 ≥ 0.9 needs about that much of
/// each), so a detector that meets the target may trade a little of one for the other, and
/// one that misses it can only get better. The false-alert ceiling is the target, 1 per
/// simulated hour of normal traffic, which every detector met.
const FLOORS: &[Floor] = &[
    // detector, kind[/variant], min recall, min precision, max false alerts/h (normal run)
    floor("bot-detector", "bot", 0.9, 0.9, 1.0),
    floor("bot-detector", "bot/ordinary", 0.9, 0.0, 1.0),
    floor("bot-detector", "bot/regular", 0.9, 0.0, 1.0),
    floor("bot-detector", "bot/crawler", 0.9, 0.0, 1.0),
    floor("bot-detector", "bot/headless", 0.9, 0.0, 1.0),
    floor("bot-detector", "bot/swarm", 0.9, 0.0, 1.0),
    floor("traffic-anomaly", "traffic-spike", 0.9, 0.9, 1.0),
    floor("traffic-anomaly", "traffic-drop", 0.9, 0.9, 1.0),
    floor("click-fraud", "click-fraud", 0.9, 0.9, 1.0),
    floor("funnel-drop", "funnel-drop", 0.9, 0.9, 1.0),
];

const fn floor(
    detector: &'static str,
    kind: &'static str,
    min_recall: f64,
    min_precision: f64,
    max_false_per_hour: f64,
) -> Floor {
    // Split `kind/variant` by hand: `split_once` is not const.
    let bytes = kind.as_bytes();
    let mut i = 0;
    while i < bytes.len() && bytes[i] != b'/' {
        i += 1;
    }
    let (kind, variant) = if i < bytes.len() {
        let (k, v) = bytes.split_at(i);
        let (_, v) = v.split_at(1);
        match (std::str::from_utf8(k), std::str::from_utf8(v)) {
            (Ok(k), Ok(v)) => (k, v),
            _ => (kind, ""),
        }
    } else {
        (kind, "")
    };
    Floor {
        detector,
        kind,
        variant,
        min_recall,
        min_precision,
        max_false_per_hour,
    }
}

/// One generated run.
struct Run {
    name: &'static str,
    seed: u64,
    /// Simulated start, hour of the day (UTC).
    start_hour: i64,
    anomalies: &'static str,
    surges: &'static str,
    /// Length when nothing is injected, minutes.
    minutes: i64,
}

const ANOMALY_RUNS: &[Run] = &[
    Run {
        name: "all kinds, evening",
        seed: 14,
        start_hour: 17,
        anomalies: "all",
        surges: "none",
        minutes: 0,
    },
    Run {
        name: "all kinds, afternoon",
        seed: 11,
        start_hour: 13,
        anomalies: "all",
        surges: "none",
        minutes: 0,
    },
    Run {
        name: "all kinds, morning",
        seed: 12,
        start_hour: 8,
        anomalies: "all",
        surges: "none",
        minutes: 0,
    },
];

const NORMAL_RUNS: &[Run] = &[
    Run {
        name: "normal: morning ramp, flash sale, newsletter",
        seed: 13,
        start_hour: 6,
        anomalies: "none",
        surges: "flash-sale,newsletter",
        minutes: 0,
    },
    // A whole day: the night low (×0.35 of the mean) and the evening peak (×1.65), so the
    // baselines must follow the daily shape without alerting on it.
    Run {
        name: "normal: a whole day with a flash sale and a newsletter",
        seed: 15,
        start_hour: 0,
        anomalies: "none",
        surges: "flash-sale,newsletter",
        minutes: 24 * 60,
    },
];

/// Events per simulated second at the daily mean: the generator's default (~4 M events a
/// day), so `clickwatch generate` reproduces a run without extra flags.
const MEAN_RATE: f64 = 50.0;

/// Midnight UTC of the generator's default start day; runs are a day apart so their event
/// times never overlap when their alerts and labels are scored together.
const DAY0_MS: i64 = 1_790_000_000_000 - 1_790_000_000_000 % 86_400_000;

/// Generates a run, replays it through the plugins, returns its labels, alerts and hours.
fn replay_run(
    index: usize,
    run: &Run,
    dir: &std::path::Path,
) -> (Vec<Label>, Vec<clickwatch::alert::Alert>, f64, Vec<String>) {
    let items = [
        parse_anomalies(run.anomalies).expect("anomaly spec"),
        parse_surges(run.surges).expect("surge spec"),
    ]
    .concat();
    let start_ms = DAY0_MS + index as i64 * 86_400_000 + run.start_hour * 3_600_000;
    let mut generator = Generator::new(GeneratorSettings {
        seed: run.seed,
        start_ms,
        mean_rate: MEAN_RATE,
        scenario: Scenario {
            items,
            warmup_ms: 45 * 60_000,
            gap_ms: 15 * 60_000,
        },
        ..GeneratorSettings::default()
    });
    let end_ms = generator.plan_end_ms().max(start_ms + run.minutes * 60_000) + 20 * 60_000;
    let runtime = clickwatch::plugin::Runtime::new(replay::replay_limits()).expect("runtime");
    let (set, detectors) = load_plugins(&runtime, dir, &PluginSettings::default()).expect("load");
    let mut replayer = Replayer::new(set, Batching::default());
    loop {
        let event = generator.next_event();
        if event.time_ms >= end_ms {
            break;
        }
        replayer.push(event);
    }
    let labels = generator.labels();
    let outcome = replayer.finish();
    if index == 0 {
        let versions: Vec<String> = outcome
            .plugins
            .iter()
            .map(|p| format!("{} {}", p.name, p.version))
            .collect();
        eprintln!("plugins: {}", versions.join(", "));
    }
    // A detector whose calls fail (deadline, trap) misses events: that is a bug to fix, not
    // something a floor should absorb.
    for p in &outcome.plugins {
        assert_eq!(
            p.stats.failures, 0,
            "run `{}`: plugin {} had failed calls",
            run.name, p.name
        );
    }
    eprintln!(
        "run `{}` (seed {}): {} events, {:.2} h, {} labels, {} alerts",
        run.name,
        run.seed,
        outcome.events,
        outcome.hours(),
        labels.len(),
        outcome.alerts.len()
    );
    let hours = outcome.hours();
    (labels, outcome.alerts, hours, detectors)
}

fn score_runs(runs: &[(usize, &Run)], dir: &std::path::Path) -> Report {
    // Runs are independent: replay them on parallel threads (each its own wasm runtime).
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = runs
            .iter()
            .map(|(i, run)| s.spawn(move || replay_run(*i, run, dir)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("run thread"))
            .collect()
    });
    let mut labels = Vec::new();
    let mut alerts = Vec::new();
    let mut hours = 0.0;
    let mut detectors = Vec::new();
    for (i, (l, a, h, d)) in results.into_iter().enumerate() {
        // Label ids are per run; keep them unique across runs.
        labels.extend(l.into_iter().map(|mut l| {
            l.id = format!("r{i}-{}", l.id);
            l
        }));
        // A `traffic-surge` (info: more visitors converting as usual or better) answers a
        // `traffic-spike` label: the generator's site spike is ordinary visitors arriving
        // ×2.7–3.3, a demand surge by issue #11's definition.
        alerts.extend(a.into_iter().map(|mut a| {
            if a.kind == "traffic-surge" {
                a.kind = "traffic-spike/surge".to_owned();
            }
            a
        }));
        hours += h;
        detectors = d;
    }
    replay::score(&alerts, &labels, &detectors, hours, DEFAULT_GRACE_MS)
}

/// False alerts per simulated hour of `detector` on `kind`, summed over every alert kind that
/// belongs to it (`click-fraud/ip` counts for `click-fraud`): rows are per alert kind when no
/// label of the kind exists, as in the normal runs.
fn false_per_hour(report: &Report, detector: &str, kind: &str) -> f64 {
    report
        .kinds
        .iter()
        .filter(|k| k.detector == detector && replay::kind_matches(&k.kind, kind))
        .map(|k| k.false_per_hour)
        .sum()
}

#[test]
fn detectors_reach_their_measured_floors() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Only the detectors: aggregators do not change alerts and would only slow the suite.
    let mut names: Vec<&str> = FLOORS.iter().map(|f| f.detector).collect();
    names.sort_unstable();
    names.dedup();
    for name in &names {
        std::fs::write(dir.path().join(format!("{name}.wasm")), common::wasm(name))
            .expect("copy plugin");
    }
    let started = std::time::Instant::now();
    let mut runs: Vec<(usize, &Run)> = ANOMALY_RUNS.iter().enumerate().collect();
    let normal_index = runs.len();
    runs.extend(
        NORMAL_RUNS
            .iter()
            .enumerate()
            .map(|(i, run)| (normal_index + i, run)),
    );
    let (anomaly_runs, normal_runs) = runs.split_at(normal_index);
    let dir_path = dir.path();
    let (anomalies, normal) = std::thread::scope(|s| {
        let a = s.spawn(|| score_runs(anomaly_runs, dir_path));
        // Each normal run is scored alone: its false alerts per hour must stay under the
        // ceiling on its own, not only averaged with a quieter run.
        let n: Vec<_> = normal_runs
            .iter()
            .map(|run| s.spawn(move || score_runs(std::slice::from_ref(run), dir_path)))
            .collect();
        (
            a.join().expect("anomaly runs"),
            n.into_iter()
                .map(|h| h.join().expect("normal run"))
                .collect::<Vec<_>>(),
        )
    });
    eprintln!("\nanomaly runs:\n{anomalies}");
    for (report, (_, run)) in normal.iter().zip(normal_runs) {
        eprintln!("normal-only run `{}`:\n{report}", run.name);
    }
    eprintln!("suite took {:.1}s", started.elapsed().as_secs_f64());

    let mut failures = Vec::new();
    for f in FLOORS {
        let a = anomalies.kind(f.detector, f.kind);
        let recall = if f.variant.is_empty() {
            a.and_then(|k| k.recall).unwrap_or(0.0)
        } else {
            match a.and_then(|k| k.variants.get(f.variant)) {
                Some((n, d)) if *n > 0 => *d as f64 / *n as f64,
                // A floor on a variant the runs never injected is a broken table, not a pass.
                _ => panic!("no {} labels of variant {}", f.kind, f.variant),
            }
        };
        let precision = a.and_then(|k| k.precision).unwrap_or(0.0);
        let false_per_hour = normal
            .iter()
            .map(|report| false_per_hour(report, f.detector, f.kind))
            .fold(false_per_hour(&anomalies, f.detector, f.kind), f64::max);
        let what = if f.variant.is_empty() {
            f.kind.to_owned()
        } else {
            format!("{}/{}", f.kind, f.variant)
        };
        if recall < f.min_recall {
            failures.push(format!(
                "{} on {what}: recall {recall:.3} < {}",
                f.detector, f.min_recall
            ));
        }
        if precision < f.min_precision {
            failures.push(format!(
                "{} on {}: precision {precision:.3} < {}",
                f.detector, f.kind, f.min_precision
            ));
        }
        if false_per_hour > f.max_false_per_hour {
            failures.push(format!(
                "{} on {}: {false_per_hour:.2} false alerts per simulated hour > {}",
                f.detector, f.kind, f.max_false_per_hour
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "below the floors:\n{}",
        failures.join("\n")
    );
}
