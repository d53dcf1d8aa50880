//! `clickwatch replay`: recorded events through a folder of plugins in event time, the
//! detectors' alerts scored against ground-truth labels.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clickwatch::generator;
use clickwatch::plugin::Runtime;

/// Options of `clickwatch replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Events, JSON lines in event-time order.
    #[arg(long)]
    pub events: PathBuf,
    /// Labels (default `<events>.labels.jsonl`).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Folder of plugins (*.wasm), all loaded.
    #[arg(long)]
    pub plugins: PathBuf,
    /// TOML with plugin settings in `[plugins.settings.<name>]` (a pipeline config works)
    /// or `[settings.<name>]` tables; a `[pipeline]` table sets the event time
    /// (`allowed_lateness_ms`, `tick_interval_ms`) as in the pipeline.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// How long after a label's end an alert still counts, in simulated ms.
    #[arg(long, default_value_t = clickwatch::replay::DEFAULT_GRACE_MS,
          value_parser = clap::value_parser!(i64).range(0..))]
    pub grace_ms: i64,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write every alert (JSON lines) to this file.
    #[arg(long)]
    pub alerts_out: Option<PathBuf>,
}

/// Runs `clickwatch replay`.
pub fn replay(args: ReplayArgs) -> Result<()> {
    use clickwatch::replay::{self, Batching, PluginSettings, Replayer};
    let labels_path = args
        .labels
        .unwrap_or_else(|| generator::default_labels_path(&args.events));
    let labels = generator::read_labels(&labels_path)?;
    let (settings, event_time) = match &args.config {
        Some(path) => replay::read_config(path)?,
        None => (
            PluginSettings::default(),
            clickwatch::pipeline::EventTime::default(),
        ),
    };
    let runtime = Runtime::new(replay::replay_limits())?;
    let (set, detectors) = replay::load_plugins(&runtime, &args.plugins, &settings)?;
    let mut replayer = Replayer::with_event_time(set, Batching::default(), event_time);
    let total = std::fs::metadata(&args.events)
        .with_context(|| format!("cannot read {}", args.events.display()))?
        .len()
        .max(1);
    let tty = std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    let read = replay::feed_file(&args.events, &mut replayer, |s| {
        if tty {
            let done = s.bytes as f64 / total as f64;
            let filled = (done * 30.0) as usize;
            eprint!(
                "\r\x1b[2K[{}{}] {:>5.1}% {:.0}s",
                "#".repeat(filled.min(30)),
                " ".repeat(30 - filled.min(30)),
                done * 100.0,
                started.elapsed().as_secs_f64()
            );
        }
    })?;
    if tty {
        eprintln!();
    }
    let outcome = replayer.finish();
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "replayed {} events ({} invalid lines skipped, {} late: behind the watermark) in {elapsed:.1}s ({:.0}/s), {} alerts",
        outcome.events,
        read.invalid,
        outcome.late,
        outcome.events as f64 / elapsed.max(1e-9),
        outcome.alerts.len()
    );
    if let Some(path) = &args.alerts_out {
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        );
        for a in &outcome.alerts {
            let mut v = a.to_json();
            // The scorer works in ms; keep them beside the formatted times.
            v["time_ms"] = serde_json::json!(a.time_ms);
            writeln!(out, "{v}")?;
        }
        out.flush()?;
    }
    let report = replay::score(
        &outcome.alerts,
        &labels,
        &detectors,
        outcome.hours(),
        args.grace_ms,
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}
