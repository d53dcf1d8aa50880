//! `clickwatch generate`: fake click events (optionally with labelled anomalies and surges) to
//! stdout, a file or a Kafka topic, and the ground-truth labels beside them.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use clickwatch::event::encode;
use clickwatch::generator::{self, Generator, GeneratorSettings};

/// Options of `clickwatch generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Where to write.
    #[arg(long, value_enum, default_value = "stdout")]
    pub to: Target,
    /// The file, with --to file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Bootstrap servers, with --to kafka.
    #[arg(long, default_value = "127.0.0.1:19092")]
    pub brokers: String,
    /// Topic, with --to kafka (events are keyed by session id).
    #[arg(long, default_value = "clicks")]
    pub topic: String,
    /// Events per second, with --to kafka.
    #[arg(long, default_value_t = 5_000)]
    pub rate: u32,
    /// Stop after this many seconds, with --to kafka (else after --count events).
    #[arg(long)]
    pub duration: Option<u64>,
    /// Number of events (default 10000 unless --simulated-hours, --anomalies or --surges
    /// bound the run in simulated time).
    #[arg(long)]
    pub count: Option<u64>,
    /// Seed; the same seed writes the same events.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Events per simulated second at the daily mean.
    #[arg(long, default_value_t = 50.0)]
    pub simulated_rate: f64,
    /// Share of bot sessions, 0..1.
    #[arg(long, default_value_t = 0.01)]
    pub bot_fraction: f64,
    /// Stop after this many hours of simulated time.
    #[arg(long)]
    pub simulated_hours: Option<f64>,
    /// Simulated start time, ms since the epoch (default 1790000000000, a 14:00 UTC).
    #[arg(long)]
    pub start_ms: Option<i64>,
    /// Labelled anomalies to inject: `all`, `none`, or a comma list of
    /// KIND[/VARIANT][:COUNT] (see docs/anomaly-labels.md), e.g.
    /// `traffic-spike/page,bot:3,funnel-drop`. Without --simulated-hours the run lasts until
    /// 20 simulated minutes after the last injection.
    #[arg(long, default_value = "none")]
    pub anomalies: String,
    /// Legitimate, unlabelled surges: `flash-sale`, `newsletter`, `all`, with `:COUNT`.
    #[arg(long, default_value = "none")]
    pub surges: String,
    /// Simulated minutes of normal traffic before the first injection.
    #[arg(long, default_value_t = 60)]
    pub warmup_minutes: i64,
    /// Simulated minutes of normal traffic between injections.
    #[arg(long, default_value_t = 20)]
    pub gap_minutes: i64,
    /// The simulated world: `legacy` (the original site, audience and daily shape) or
    /// `random` (URL scheme, categories, device mix, daily shape, navigation and surge sizes
    /// drawn from --world-seed; see docs/anomaly-labels.md).
    #[arg(long, value_enum, default_value = "legacy")]
    pub world: WorldChoice,
    /// Seed of a `--world random` (default: --seed).
    #[arg(long)]
    pub world_seed: Option<u64>,
    /// Where the ground-truth labels go (JSON lines). Default with --to file:
    /// `<out>.labels.jsonl`; with --to stdout or kafka, labels are written only when given.
    #[arg(long)]
    pub labels: Option<PathBuf>,
}

/// Which world to simulate.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum WorldChoice {
    Legacy,
    Random,
}

/// Where generated events go.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Target {
    Stdout,
    File,
    Kafka,
}

/// Runs `clickwatch generate`.
pub fn generate(args: GenerateArgs) -> Result<()> {
    let GenerateArgs {
        to,
        out,
        brokers,
        topic,
        rate,
        duration,
        count,
        seed,
        simulated_rate,
        bot_fraction,
        simulated_hours,
        start_ms,
        anomalies,
        surges,
        warmup_minutes,
        gap_minutes,
        world,
        world_seed,
        labels,
    } = args;
    let world = match (world, world_seed) {
        (WorldChoice::Legacy, None) => generator::World::legacy(),
        (WorldChoice::Legacy, Some(_)) => bail!("--world-seed needs --world random"),
        (WorldChoice::Random, s) => generator::World::random(s.unwrap_or(seed)),
    };
    if world != generator::World::legacy() {
        eprintln!("{}", world.describe());
    }
    let items = [
        generator::parse_anomalies(&anomalies).context("--anomalies")?,
        generator::parse_surges(&surges).context("--surges")?,
    ]
    .concat();
    let planned = !items.is_empty();
    let defaults = GeneratorSettings::default();
    let start_ms = start_ms.unwrap_or(defaults.start_ms);
    let mut generator = Generator::new(GeneratorSettings {
        seed,
        mean_rate: simulated_rate,
        bot_fraction,
        start_ms,
        scenario: generator::Scenario {
            items,
            warmup_ms: warmup_minutes * 60_000,
            gap_ms: gap_minutes * 60_000,
        },
        world,
        ..defaults
    });
    // Simulated end: as asked, else 20 minutes past the last injection.
    let end_ms = match simulated_hours {
        Some(h) => Some(start_ms + (h * 3_600_000.0) as i64),
        None if planned => Some(generator.plan_end_ms() + 20 * 60_000),
        None => None,
    };
    let count = count.or(if end_ms.is_some() { None } else { Some(10_000) });
    if let Target::Kafka = to {
        if planned && labels.is_none() {
            tracing::warn!(
                "--anomalies/--surges with --to kafka: pass --labels FILE to keep the ground truth"
            );
        }
        let count = if duration.is_none() { count } else { None };
        generate_to_kafka(&mut generator, &brokers, &topic, rate, count, duration)?;
        if let Some(path) = labels {
            let labels = generator.labels();
            generator::write_labels(&path, &labels)?;
            eprintln!("{} labels -> {}", labels.len(), path.display());
        }
        return Ok(());
    }
    let labels = match (&to, &out, labels) {
        (_, _, Some(path)) => Some(path),
        (Target::File, Some(out), None) => Some(generator::default_labels_path(out)),
        _ => {
            if planned {
                tracing::warn!("labels are not written to stdout; pass --labels FILE");
            }
            None
        }
    };
    let mut sink: Box<dyn Write> = match (to, out) {
        (Target::Stdout, _) => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
        (Target::File, Some(path)) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(&path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        (Target::File, None) => bail!("--to file needs --out FILE"),
        (Target::Kafka, _) => bail!("--to kafka is handled above"),
    };
    let mut written = 0u64;
    while count.is_none_or(|c| written < c) {
        let event = generator.next_event();
        if end_ms.is_some_and(|end| event.time_ms >= end) {
            break;
        }
        writeln!(sink, "{}", encode(&event))?;
        written += 1;
    }
    sink.flush()?;
    if let Some(path) = labels {
        let labels = generator.labels();
        generator::write_labels(&path, &labels)?;
        eprintln!(
            "{written} events, {} labels -> {}",
            labels.len(),
            path.display()
        );
    }
    Ok(())
}

fn generate_to_kafka(
    generator: &mut Generator,
    brokers: &str,
    topic: &str,
    rate: u32,
    count: Option<u64>,
    duration: Option<u64>,
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        let producer =
            clickwatch::kafka::producer(brokers).context("cannot create the Kafka producer")?;
        let tty = std::io::stderr().is_terminal();
        let report = clickwatch::kafka::produce_generated(
            &producer,
            topic,
            generator,
            rate,
            count,
            duration.map(Duration::from_secs),
            |r, rate| {
                let line = format!("sent {} ({rate:.0}/s) | errors {}", r.sent, r.errors);
                if tty {
                    eprint!("\r\x1b[2K{line}")
                } else {
                    eprintln!("{line}")
                }
            },
        )
        .await;
        anyhow::Ok(report)
    })?;
    eprintln!();
    println!(
        "sent {} events to {topic} on {brokers}; {} errors",
        report.sent, report.errors
    );
    if report.errors > 0 {
        bail!("{} events could not be delivered", report.errors);
    }
    Ok(())
}
