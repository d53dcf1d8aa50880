//! The randomized-worlds suite (issue #11): twenty seeds, each simulated in its own drawn world
//! (URL scheme and catalogue, device mix, daily shape, navigation, surge sizes), each with every
//! extended anomaly variant, three classic ones drawn by the seed, a flash sale and a
//! newsletter. Replayed through the shipped detectors and scored against the labels; the
//! detectors must hold the floors below, measured as recorded in `docs/detection-quality.md`
//! ("Randomized worlds"). Variants today's detectors do not find are printed, not floored.
//!
//! Run: `cargo xtask plugins && CLICKWATCH_WASM_DIR=target/plugins cargo test -p clickwatch
//! --test scenario_worlds -- --nocapture` (the tables are printed).
//!
//! While working on a detector, `CLICKWATCH_WORLD_SEEDS=5,11` replays only those seeds (run
//! `i` of the verbose listing is seed `i + 1`) and `CLICKWATCH_WORLD_DETECTORS=traffic-anomaly`
//! only those detectors; the tables are printed and the floors, which hold over the whole
//! distribution, are not asserted. `CLICKWATCH_WORLD_DUMP=DIR` also writes each seed's events
//! and labels to `DIR/world-<seed>.jsonl`, to trace a detector with `clickwatch replay`.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use clickwatch::alert::Alert;
use clickwatch::generator::{
    Generator, GeneratorSettings, Label, SURGE_KIND, Scenario, World, parse_anomalies, parse_surges,
};
use clickwatch::replay::{
    self, Batching, DEFAULT_GRACE_MS, PluginSettings, Replayer, Report, kind_matches, load_plugins,
};

/// Seeds of the suite; seed `s` simulates `World::random(s)`.
const SEEDS: std::ops::RangeInclusive<u64> = 1..=20;

/// The detector answerable for each label kind.
const DETECTORS: [(&str, &str); 5] = [
    ("traffic-spike", "traffic-anomaly"),
    ("traffic-drop", "traffic-anomaly"),
    ("bot", "bot-detector"),
    ("click-fraud", "click-fraud"),
    ("funnel-drop", "funnel-drop"),
];

/// Least recall (and most median delay) of a detector on one label variant.
struct RecallFloor {
    kind: &'static str,
    variant: &'static str,
    min_recall: f64,
    /// Median detection delay ceiling, simulated seconds.
    max_median_delay_s: f64,
}

/// Per-kind floors: precision, false alerts per hour of normal traffic, and warning-level
/// alerts during surges, over the whole suite.
struct KindFloor {
    kind: &'static str,
    min_precision: f64,
    max_false_per_normal_hour: f64,
    max_surge_warnings: usize,
}

/// Measured on the shipped detectors (docs/detection-quality.md, "Randomized worlds"): recall
/// and precision rounded down to 0.05 and at most 0.9 (as in `scenarios.rs`, so a detector
/// meeting the target may trade a little of one for the other), median delays rounded
/// up to the next 30 s step, false alerts per normal hour rounded up to 0.05, surge warnings
/// as counted; so detectors can only get better. A variant with recall 0 would be a known gap
/// (printed, listed in the doc), not a floor; today every variant is found at least once.
const RECALL_FLOORS: &[RecallFloor] = &[
    // kind, variant, min recall, max median delay (s)
    recall("bot", "crawler", 0.9, 30.0),
    recall("bot", "farm", 0.9, 30.0),
    recall("bot", "headless", 0.9, 30.0),
    recall("bot", "ordinary", 0.9, 30.0),
    recall("bot", "regular", 0.9, 30.0),
    recall("bot", "swarm", 0.9, 120.0),
    recall("click-fraud", "ads", 0.9, 30.0),
    recall("click-fraud", "slow-subnet", 0.9, 330.0),
    recall("funnel-drop", "checkout", 0.9, 480.0),
    recall("funnel-drop", "device", 0.9, 240.0),
    recall("traffic-drop", "after-ramp", 0.9, 150.0),
    recall("traffic-drop", "category", 0.5, 90.0),
    recall("traffic-drop", "category-404", 0.45, 150.0),
    recall("traffic-drop", "page", 0.5, 120.0),
    recall("traffic-drop", "site", 0.6, 120.0),
    recall("traffic-spike", "page", 0.65, 210.0),
    recall("traffic-spike", "site", 0.85, 300.0),
];

/// See [`RECALL_FLOORS`].
const KIND_FLOORS: &[KindFloor] = &[
    // kind, min precision, max false alerts per hour of normal traffic, max surge warnings
    kind("traffic-spike", 0.9, 0.05, 0),
    kind("traffic-drop", 0.9, 0.1, 1),
    kind("bot", 0.9, 0.05, 2),
    kind("click-fraud", 0.9, 0.05, 0),
    kind("funnel-drop", 0.9, 0.05, 0),
];

const fn recall(
    kind: &'static str,
    variant: &'static str,
    min_recall: f64,
    max_median_delay_s: f64,
) -> RecallFloor {
    RecallFloor {
        kind,
        variant,
        min_recall,
        max_median_delay_s,
    }
}

const fn kind(
    kind: &'static str,
    min_precision: f64,
    max_false_per_normal_hour: f64,
    max_surge_warnings: usize,
) -> KindFloor {
    KindFloor {
        kind,
        min_precision,
        max_false_per_normal_hour,
        max_surge_warnings,
    }
}

/// One seeded run.
struct Case {
    seed: u64,
    world: World,
    start_ms: i64,
    mean_rate: f64,
    scenario: Scenario,
}

/// Midnight UTC of the generator's default start day; run `i` is `i` days later, so event
/// times of different runs never overlap when they are scored together.
const DAY0_MS: i64 = 1_790_000_000_000 - 1_790_000_000_000 % 86_400_000;

/// A small deterministic mix, so the suite's draws need no RNG crate.
fn mix(seed: u64, salt: u64) -> u64 {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ salt;
    x ^= x >> 31;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^ (x >> 29)
}

fn case(index: usize, seed: u64) -> Case {
    let classic = parse_anomalies("all").expect("all");
    let mut items = parse_anomalies("extended").expect("extended");
    // Three classic items, drawn by the seed (distinct).
    let mut picked = Vec::new();
    let mut k = 0;
    while picked.len() < 3 {
        let i = (mix(seed, 100 + k) % classic.len() as u64) as usize;
        if !picked.contains(&i) {
            picked.push(i);
        }
        k += 1;
    }
    items.extend(picked.iter().map(|i| classic[*i].clone()));
    items.extend(parse_surges("flash-sale,newsletter").expect("surges"));
    let start_hour = (mix(seed, 1) % 24) as i64;
    // 15–35 events per simulated second at the daily mean: sized so twenty worlds fit the CI.
    let mean_rate = 15.0 + (mix(seed, 2) % 21) as f64;
    Case {
        seed,
        world: World::random(seed),
        start_ms: DAY0_MS + index as i64 * 86_400_000 + start_hour * 3_600_000,
        mean_rate,
        scenario: Scenario {
            items,
            warmup_ms: 45 * 60_000,
            gap_ms: 15 * 60_000,
        },
    }
}

/// What one run produced.
struct RunResult {
    seed: u64,
    labels: Vec<Label>,
    alerts: Vec<Alert>,
    hours: f64,
    detectors: Vec<String>,
}

fn replay_case(c: &Case, dir: &std::path::Path) -> RunResult {
    let mut generator = Generator::new(GeneratorSettings {
        seed: c.seed,
        start_ms: c.start_ms,
        mean_rate: c.mean_rate,
        scenario: c.scenario.clone(),
        world: c.world.clone(),
        ..GeneratorSettings::default()
    });
    let end_ms = generator.plan_end_ms() + 20 * 60_000;
    let runtime = clickwatch::plugin::Runtime::new(replay::replay_limits()).expect("runtime");
    let (set, detectors) = load_plugins(&runtime, dir, &PluginSettings::default()).expect("load");
    let mut replayer = Replayer::new(set, Batching::default());
    // `CLICKWATCH_WORLD_DUMP=DIR` also writes each seed's events and labels to
    // `DIR/world-<seed>.jsonl` (and `.labels.jsonl`), for `clickwatch replay` by hand.
    let dump = std::env::var_os("CLICKWATCH_WORLD_DUMP").map(std::path::PathBuf::from);
    let mut events_out = dump.as_ref().map(|d| {
        std::fs::create_dir_all(d).expect("dump dir");
        let f = std::fs::File::create(d.join(format!("world-{}.jsonl", c.seed))).expect("dump");
        std::io::BufWriter::new(f)
    });
    loop {
        let event = generator.next_event();
        if event.time_ms >= end_ms {
            break;
        }
        if let Some(w) = events_out.as_mut() {
            use std::io::Write;
            writeln!(w, "{}", clickwatch::event::encode(&event)).expect("dump event");
        }
        replayer.push(event);
    }
    let labels = generator.labels();
    if let Some(d) = &dump {
        let lines: Vec<String> = labels
            .iter()
            .map(|l| serde_json::to_string(l).expect("label"))
            .collect();
        let path = d.join(format!("world-{}.jsonl.labels.jsonl", c.seed));
        std::fs::write(path, lines.join("\n") + "\n").expect("dump labels");
    }
    let outcome = replayer.finish();
    for p in &outcome.plugins {
        assert_eq!(
            p.stats.failures, 0,
            "seed {}: plugin {} had failed calls",
            c.seed, p.name
        );
    }
    eprintln!(
        "seed {:>2} {} events, {:.1} h, {:.0} ev/s: {}",
        c.seed,
        outcome.events,
        outcome.hours(),
        c.mean_rate,
        c.world.describe()
    );
    RunResult {
        seed: c.seed,
        labels,
        hours: outcome.hours(),
        alerts: outcome.alerts,
        detectors,
    }
}

/// Path of a page url (alerts may name either).
fn path_of(url: &str) -> &str {
    match url.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => url,
    }
}

/// An alert as the recall side reads it: a `traffic-surge` (info: more visitors converting as
/// usual or better) answers a `traffic-spike` label, since the generator's site spike is
/// ordinary visitors arriving ×2.7–3.3, a demand surge by issue #11's definition. Surges are
/// not anomaly claims, so they stay out of the spike kind's precision (the host's report keeps
/// them under their own kind).
fn as_answer(a: &Alert) -> Alert {
    let mut a = a.clone();
    if a.kind == "traffic-surge" {
        a.kind = "traffic-spike/surge".to_owned();
    }
    a
}

/// Detection and delay of every label by its answerable detector (`None` = missed).
fn detections<'a>(labels: &'a [Label], alerts: &[Alert]) -> Vec<(&'a Label, Option<i64>)> {
    let alerts: Vec<Alert> = alerts.iter().map(as_answer).collect();
    // Alerts by (detector, entity type, entity): a label only looks at alerts naming it.
    let mut index: HashMap<(&str, &str, &str), Vec<&Alert>> = HashMap::new();
    for a in &alerts {
        let entity = if a.entity_type == "page" {
            path_of(&a.entity)
        } else {
            &a.entity
        };
        index
            .entry((&a.detector, &a.entity_type, entity))
            .or_default()
            .push(a);
    }
    labels
        .iter()
        .filter(|l| l.kind != SURGE_KIND)
        .map(|l| {
            let detector = DETECTORS
                .iter()
                .find(|(k, _)| *k == l.kind)
                .map_or("", |(_, d)| *d);
            let first = l
                .entities
                .iter()
                .flat_map(|e| {
                    let id = if e.entity_type == "page" {
                        path_of(&e.id)
                    } else {
                        &e.id
                    };
                    index
                        .get(&(detector, e.entity_type.as_str(), id))
                        .into_iter()
                        .flatten()
                })
                .filter(|a| replay::score::matches(a, l, DEFAULT_GRACE_MS))
                .map(|a| a.time_ms)
                .min();
            (l, first.map(|t| t - l.start_ms))
        })
        .collect()
}

/// Hours of normal traffic: the runs' hours minus every injected window (anomalies and
/// surges) plus the grace after it.
fn normal_hours(results: &[RunResult]) -> f64 {
    results
        .iter()
        .map(|r| {
            let busy: i64 = r
                .labels
                .iter()
                .filter(|l| l.variant.as_deref() != Some("ordinary"))
                .map(|l| l.end_ms - l.start_ms + DEFAULT_GRACE_MS)
                .sum();
            r.hours - busy as f64 / 3_600_000.0
        })
        .sum()
}

/// Per label kind and variant: labels, detected, median delay.
type VariantRow = (usize, usize, Option<i64>);

fn by_variant(d: &[(&Label, Option<i64>)]) -> BTreeMap<(String, String), VariantRow> {
    let mut delays: BTreeMap<(String, String), (usize, Vec<i64>)> = BTreeMap::new();
    for (l, delay) in d {
        let key = (l.kind.clone(), l.variant.clone().unwrap_or_default());
        let e = delays.entry(key).or_default();
        e.0 += 1;
        e.1.extend(*delay);
    }
    delays
        .into_iter()
        .map(|(k, (n, mut ds))| {
            ds.sort_unstable();
            // Nearest-rank median, as the replay report.
            let median = (!ds.is_empty()).then(|| ds[(ds.len().div_ceil(2)).max(1) - 1]);
            (k, (n, ds.len(), median))
        })
        .collect()
}

/// One kind's precision, false alerts per normal hour and surge warnings for its detector.
struct KindRow {
    precision: Option<f64>,
    false_normal: usize,
    surge_false: usize,
    surge_warnings: usize,
}

fn kind_row(report: &Report, kind: &str) -> KindRow {
    let detector = DETECTORS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or("", |(_, d)| *d);
    let rows: Vec<_> = report
        .kinds
        .iter()
        .filter(|k| k.detector == detector && kind_matches(&k.kind, kind))
        .collect();
    let alerts: usize = rows.iter().map(|r| r.alerts).sum();
    let true_alerts: usize = rows.iter().map(|r| r.true_alerts).sum();
    let during = |pred: &dyn Fn(&str) -> bool| -> usize {
        rows.iter()
            .flat_map(|r| r.false_during.iter())
            .filter(|(c, _)| pred(c))
            .map(|(_, n)| n)
            .sum()
    };
    KindRow {
        precision: (alerts > 0).then(|| true_alerts as f64 / alerts as f64),
        false_normal: during(&|c| c == "normal"),
        surge_false: during(&|c| c.starts_with("surge/")),
        surge_warnings: rows.iter().map(|r| r.surge_warnings).sum(),
    }
}

/// With `CLICKWATCH_SCENARIO_VERBOSE` set: every alert (bots aside) that matches no label,
/// with the labels whose window (plus grace) it falls in, and every missed label.
fn print_unmatched(results: &[RunResult]) {
    for r in results {
        let start = r.labels.iter().map(|l| l.start_ms).min().unwrap_or(0);
        let during = |t: i64| -> Vec<String> {
            r.labels
                .iter()
                .filter(|l| l.variant.as_deref() != Some("ordinary"))
                .filter(|l| t >= l.start_ms && t <= l.end_ms + DEFAULT_GRACE_MS)
                .map(|l| format!("{}/{}", l.kind, l.variant.clone().unwrap_or_default()))
                .collect()
        };
        // Session verdicts on ordinary bots are too many to list; IP and network ones are not.
        for a in r
            .alerts
            .iter()
            .filter(|a| a.detector != "bot-detector" || a.entity_type != "session")
        {
            let matched = r
                .labels
                .iter()
                .any(|l| replay::score::matches(&as_answer(a), l, DEFAULT_GRACE_MS));
            if !matched {
                eprintln!(
                    "seed {:>2} +{:>5.1} min false {} {:?} {} {} in {:?}: {}",
                    r.seed,
                    (a.time_ms - start) as f64 / 60_000.0,
                    a.kind,
                    a.severity,
                    a.entity_type,
                    a.entity,
                    during(a.time_ms),
                    a.message
                );
            }
        }
        for (l, d) in detections(&r.labels, &r.alerts) {
            if l.variant.as_deref() == Some("ordinary") {
                continue;
            }
            let found = match d {
                Some(d) => format!("found after {:.0} s", d as f64 / 1000.0),
                None => "missed".to_owned(),
            };
            eprintln!(
                "seed {:>2} +{:>5.1} min {found} {}/{} {}",
                r.seed,
                (l.start_ms - start) as f64 / 60_000.0,
                l.kind,
                l.variant.clone().unwrap_or_default(),
                l.note
            );
        }
    }
}

#[test]
fn detectors_hold_their_floors_across_randomized_worlds() {
    let list = |var: &str| -> Option<Vec<String>> {
        let v = std::env::var(var).ok()?;
        Some(v.split(',').map(|s| s.trim().to_owned()).collect())
    };
    let only_seeds = list("CLICKWATCH_WORLD_SEEDS");
    let only_detectors = list("CLICKWATCH_WORLD_DETECTORS");
    let subset = only_seeds.is_some() || only_detectors.is_some();
    let dir = tempfile::tempdir().expect("temp dir");
    for (_, name) in DETECTORS {
        if only_detectors
            .as_ref()
            .is_some_and(|d| !d.iter().any(|d| d == name))
        {
            continue;
        }
        std::fs::write(dir.path().join(format!("{name}.wasm")), common::wasm(name))
            .expect("copy plugin");
    }
    let started = std::time::Instant::now();
    let cases: Vec<Case> = SEEDS
        .enumerate()
        .filter(|(_, s)| {
            only_seeds
                .as_ref()
                .is_none_or(|o| o.iter().any(|o| *o == s.to_string()))
        })
        .map(|(i, s)| case(i, s))
        .collect();
    // A pool as wide as the machine: each worker replays whole runs.
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, RunResult)>> = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(c) = cases.get(i) else { break };
                    let r = replay_case(c, dir.path());
                    results.lock().expect("results").push((i, r));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("results");
    results.sort_by_key(|(i, _)| *i);
    let results: Vec<RunResult> = results.into_iter().map(|(_, r)| r).collect();
    let mut labels = Vec::new();
    let mut alerts = Vec::new();
    for (i, r) in results.iter().enumerate() {
        labels.extend(r.labels.iter().cloned().map(|mut l| {
            l.id = format!("r{i}-{}", l.id);
            l
        }));
        alerts.extend(r.alerts.iter().cloned());
    }
    let hours: f64 = results.iter().map(|r| r.hours).sum();
    let normal = normal_hours(&results);
    let report = replay::score(
        &alerts,
        &labels,
        &results[0].detectors,
        hours,
        DEFAULT_GRACE_MS,
    );
    eprintln!("\nall worlds together:\n{report}");

    if std::env::var_os("CLICKWATCH_SCENARIO_VERBOSE").is_some() {
        print_unmatched(&results);
    }
    let variants = by_variant(&detections(&labels, &alerts));
    eprintln!(
        "{} seeds, {hours:.1} simulated hours ({normal:.1} h normal traffic), {} alerts, {:.0} s",
        results.len(),
        alerts.len(),
        started.elapsed().as_secs_f64()
    );
    eprintln!(
        "{:<16} {:<14} {:>9} {:>6} {:>8}",
        "kind", "variant", "detected", "recall", "delay50"
    );
    for ((kind, variant), (n, d, median)) in &variants {
        let gap = if *d == 0 { "  <- known gap" } else { "" };
        eprintln!(
            "{kind:<16} {variant:<14} {:>9} {:>6.2} {:>8}{gap}",
            format!("{d}/{n}"),
            *d as f64 / *n as f64,
            median.map_or("-".into(), |m| format!("{:.0}s", m as f64 / 1000.0)),
        );
    }
    eprintln!(
        "\n{:<16} {:<16} {:>6} {:>14} {:>13} {:>14}",
        "kind", "detector", "prec", "false/normal-h", "surge-false", "surge-warnings"
    );
    for (kind, detector) in DETECTORS {
        let k = kind_row(&report, kind);
        eprintln!(
            "{kind:<16} {detector:<16} {:>6} {:>14.2} {:>13} {:>14}",
            k.precision.map_or("-".into(), |p| format!("{p:.2}")),
            k.false_normal as f64 / normal,
            k.surge_false,
            k.surge_warnings
        );
    }

    if subset {
        eprintln!("a subset of seeds or detectors: the floors are not asserted");
        return;
    }
    let mut failures = Vec::new();
    for f in RECALL_FLOORS {
        let Some((n, d, median)) = variants.get(&(f.kind.to_owned(), f.variant.to_owned())) else {
            // A floor on a variant the suite never injected is a broken table, not a pass.
            panic!("no {} labels of variant {}", f.kind, f.variant);
        };
        let recall = *d as f64 / *n as f64;
        if recall < f.min_recall {
            failures.push(format!(
                "{}/{}: recall {recall:.3} < {}",
                f.kind, f.variant, f.min_recall
            ));
        }
        let median_s = median.map_or(f64::INFINITY, |m| m as f64 / 1000.0);
        if median_s > f.max_median_delay_s {
            failures.push(format!(
                "{}/{}: median delay {median_s:.0} s > {} s",
                f.kind, f.variant, f.max_median_delay_s
            ));
        }
    }
    for f in KIND_FLOORS {
        let k = kind_row(&report, f.kind);
        let precision = k.precision.unwrap_or(0.0);
        if precision < f.min_precision {
            failures.push(format!(
                "{}: precision {precision:.3} < {}",
                f.kind, f.min_precision
            ));
        }
        let per_hour = k.false_normal as f64 / normal;
        if per_hour > f.max_false_per_normal_hour {
            failures.push(format!(
                "{}: {per_hour:.2} false alerts per hour of normal traffic > {}",
                f.kind, f.max_false_per_normal_hour
            ));
        }
        if k.surge_warnings > f.max_surge_warnings {
            failures.push(format!(
                "{}: {} warning-level false alerts during surges > {}",
                f.kind, k.surge_warnings, f.max_surge_warnings
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "below the floors:\n{}",
        failures.join("\n")
    );
}
