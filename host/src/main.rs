//! The `clickwatch` command line.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use clickwatch::config;
use clickwatch::event::encode;
use clickwatch::generator::{self, Generator, GeneratorSettings};
use clickwatch::metrics::Metrics;
use clickwatch::pipeline::{self, Ending};
use clickwatch::plugin::{self, Limits, Runtime};
use clickwatch::scaffold;
use clickwatch::sink::postgres;

/// Real-time clickstream analytics and anomaly detection with hot-reloaded wasm plugins.
#[derive(Debug, Parser)]
#[command(name = "clickwatch", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the pipeline described by a config file.
    Run {
        /// The TOML config (see config/embedded.toml).
        #[arg(long, short)]
        config: PathBuf,
        /// Stop after this many seconds and treat it as the end of the input (every window
        /// closes); without it, run until Ctrl-C (open windows stay in plugin state).
        #[arg(long)]
        duration: Option<u64>,
        /// No live status line.
        #[arg(long)]
        quiet: bool,
    },
    /// Write fake click events (JSON lines).
    Generate {
        /// Where to write.
        #[arg(long, value_enum, default_value = "stdout")]
        to: Target,
        /// The file, with --to file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Bootstrap servers, with --to kafka.
        #[arg(long, default_value = "127.0.0.1:19092")]
        brokers: String,
        /// Topic, with --to kafka (events are keyed by session id).
        #[arg(long, default_value = "clicks")]
        topic: String,
        /// Events per second, with --to kafka.
        #[arg(long, default_value_t = 5_000)]
        rate: u32,
        /// Stop after this many seconds, with --to kafka (else after --count events).
        #[arg(long)]
        duration: Option<u64>,
        /// Number of events (default 10000 unless --simulated-hours, --anomalies or --surges
        /// bound the run in simulated time).
        #[arg(long)]
        count: Option<u64>,
        /// Seed; the same seed writes the same events.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Events per simulated second at the daily mean.
        #[arg(long, default_value_t = 50.0)]
        simulated_rate: f64,
        /// Share of bot sessions, 0..1.
        #[arg(long, default_value_t = 0.01)]
        bot_fraction: f64,
        /// Stop after this many hours of simulated time.
        #[arg(long)]
        simulated_hours: Option<f64>,
        /// Simulated start time, ms since the epoch (default 1790000000000, a 14:00 UTC).
        #[arg(long)]
        start_ms: Option<i64>,
        /// Labelled anomalies to inject: `all`, `none`, or a comma list of
        /// KIND[/VARIANT][:COUNT] (see docs/anomaly-labels.md), e.g.
        /// `traffic-spike/page,bot:3,funnel-drop`. Without --simulated-hours the run lasts until
        /// 20 simulated minutes after the last injection.
        #[arg(long, default_value = "none")]
        anomalies: String,
        /// Legitimate, unlabelled surges: `flash-sale`, `newsletter`, `all`, with `:COUNT`.
        #[arg(long, default_value = "none")]
        surges: String,
        /// Simulated minutes of normal traffic before the first injection.
        #[arg(long, default_value_t = 60)]
        warmup_minutes: i64,
        /// Simulated minutes of normal traffic between injections.
        #[arg(long, default_value_t = 20)]
        gap_minutes: i64,
        /// Where the ground-truth labels go (JSON lines). Default with --to file:
        /// `<out>.labels.jsonl`; with --to stdout or kafka, labels are written only when given.
        #[arg(long)]
        labels: Option<PathBuf>,
    },
    /// Replay recorded events through the plugins of a folder and score the detectors'
    /// alerts against ground-truth labels.
    Replay {
        /// Events, JSON lines in event-time order.
        #[arg(long)]
        events: PathBuf,
        /// Labels (default `<events>.labels.jsonl`).
        #[arg(long)]
        labels: Option<PathBuf>,
        /// Folder of plugins (*.wasm), all loaded.
        #[arg(long)]
        plugins: PathBuf,
        /// TOML with plugin settings in `[plugins.settings.<name>]` (a pipeline config works)
        /// or `[settings.<name>]` tables.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// How long after a label's end an alert still counts, in simulated ms.
        #[arg(long, default_value_t = clickwatch::replay::DEFAULT_GRACE_MS)]
        grace_ms: i64,
        /// Print the report as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Also write every alert (JSON lines) to this file.
        #[arg(long)]
        alerts_out: Option<PathBuf>,
    },
    /// Create, check and list plugins.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Manage the raw store's database schema.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
}

#[derive(Debug, Subcommand)]
enum DbCommand {
    /// Create or upgrade the PostgreSQL schema of `sinks.raw`.
    Migrate {
        /// The config whose `[sinks.raw]` is PostgreSQL.
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Target {
    Stdout,
    File,
    Kafka,
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Scaffold a plugin crate that builds to wasm and passes its own tests.
    New {
        /// Plugin name: lower-case letters, digits and '-'.
        name: String,
        /// Folder to create it in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Path to the clickwatch SDK (default: $CLICKWATCH_SDK, else this source tree's).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Say whether the host would accept a .wasm file, and print its declared info.
    Check {
        /// The plugin file.
        file: PathBuf,
        /// Settings JSON to try `init` with.
        #[arg(long, default_value = "{}")]
        settings: String,
    },
    /// List the plugins in a folder with their info.
    List {
        /// The folder (default: plugins.dir of --config).
        dir: Option<PathBuf>,
        /// Read the folder and settings from this config.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,sqlx=warn,cranelift=warn,wasmtime=warn")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    match dispatch(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run {
            config,
            duration,
            quiet,
        } => run(&config, duration, quiet),
        Command::Generate {
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
            labels,
        } => {
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
        Command::Replay {
            events,
            labels,
            plugins,
            config,
            grace_ms,
            json,
            alerts_out,
        } => replay(ReplayArgs {
            events,
            labels,
            plugins,
            config,
            grace_ms,
            json,
            alerts_out,
        }),
        Command::Plugin { command } => plugin_command(command),
        Command::Db {
            command: DbCommand::Migrate { config },
        } => {
            let c = config::load(&config, std::env::vars())?;
            let config::RawSinkConfig::Postgres(pg) = &c.sinks.raw else {
                bail!(
                    "{}: sinks.raw is not PostgreSQL; nothing to migrate",
                    config.display()
                );
            };
            let settings = pg.settings();
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(async {
                    let pool = postgres::pool(&settings)?;
                    let before = postgres::check_schema(&pool)
                        .await
                        .context("cannot reach the database")?;
                    postgres::migrate(&pool).await.context("migration failed")?;
                    println!(
                        "schema: {before:?} -> version {} (current)",
                        postgres::latest_version()
                    );
                    anyhow::Ok(())
                })
        }
    }
}

struct ReplayArgs {
    events: PathBuf,
    labels: Option<PathBuf>,
    plugins: PathBuf,
    config: Option<PathBuf>,
    grace_ms: i64,
    json: bool,
    alerts_out: Option<PathBuf>,
}

fn replay(args: ReplayArgs) -> Result<()> {
    use clickwatch::replay::{self, Batching, PluginSettings, Replayer};
    let labels_path = args
        .labels
        .unwrap_or_else(|| generator::default_labels_path(&args.events));
    let labels = generator::read_labels(&labels_path)?;
    let settings = match &args.config {
        Some(path) => PluginSettings::from_file(path)?,
        None => PluginSettings::default(),
    };
    let runtime = Runtime::new(replay::replay_limits())?;
    let (set, detectors) = replay::load_plugins(&runtime, &args.plugins, &settings)?;
    let mut replayer = Replayer::new(set, Batching::default());
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
        "replayed {} events ({} invalid lines skipped, {} out of order) in {elapsed:.1}s ({:.0}/s), {} alerts",
        outcome.events,
        read.invalid,
        outcome.out_of_order,
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

fn run(config_path: &Path, duration: Option<u64>, quiet: bool) -> Result<()> {
    let config = config::load(config_path, std::env::vars())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let metrics = Arc::new(Metrics::default());
    let summary = runtime.block_on(async {
        let status = (!quiet).then(|| tokio::spawn(show_status(metrics.clone())));
        let shutdown = async move {
            match duration {
                Some(secs) => tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(secs)) => Ending::Exhausted,
                    _ = shutdown_signal() => Ending::Stopped,
                },
                None => {
                    shutdown_signal().await;
                    Ending::Stopped
                }
            }
        };
        let summary = pipeline::run(config, metrics.clone(), shutdown).await;
        if let Some(status) = status {
            status.abort();
        }
        summary
    })?;
    eprintln!();
    println!("{summary}");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down: finishing in-flight work");
}

async fn show_status(metrics: Arc<Metrics>) {
    let tty = std::io::stderr().is_terminal();
    let mut last = 0;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let now = Metrics::get(&metrics.events_processed);
        let line = pipeline::status_line(&metrics, (now - last) as f64);
        last = now;
        if tty {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
    }
}

fn plugin_command(command: PluginCommand) -> Result<()> {
    match command {
        PluginCommand::New { name, dir, sdk } => {
            let sdk = scaffold::find_sdk(sdk.as_deref())?;
            let created = scaffold::new_plugin(&name, &dir, &sdk)?;
            println!("created {}", created.display());
            println!(
                "next: cd {} && cargo test && cargo build --release --target wasm32-unknown-unknown",
                created.display()
            );
            Ok(())
        }
        PluginCommand::Check { file, settings } => {
            let runtime = Runtime::new(Limits::default())?;
            let prepared = plugin::prepare(&runtime, &file, &|_| settings.clone())?;
            let info = &prepared.module.info;
            println!("ok: the host would accept {}", file.display());
            println!("{}", serde_json::to_string_pretty(&**info)?);
            Ok(())
        }
        PluginCommand::List { dir, config } => {
            let (dir, plugins) = match (dir, config) {
                (Some(dir), _) => (dir, None),
                (None, Some(config)) => {
                    let c = config::load(&config, std::env::vars())?;
                    (c.plugins.dir.clone(), Some(c.plugins))
                }
                (None, None) => bail!("give a folder or --config FILE"),
            };
            let runtime = Runtime::new(Limits::default())?;
            let files = plugin::plugin_files(&dir)
                .with_context(|| format!("cannot read {}", dir.display()))?;
            if files.is_empty() {
                println!("no plugins in {}", dir.display());
            }
            for file in files {
                let settings = |name: &str| {
                    plugins
                        .as_ref()
                        .map_or_else(|| "{}".to_owned(), |p| p.settings_json(name))
                };
                match plugin::prepare(&runtime, &file, &settings) {
                    Ok(p) => {
                        let i = &p.module.info;
                        let tables: Vec<&str> = i.tables.iter().map(|t| t.name.as_str()).collect();
                        println!(
                            "{:<20} {:<8} {:<10} tables {:?}  {}",
                            i.name,
                            i.version,
                            format!("{:?}", i.kind).to_lowercase(),
                            tables,
                            file.display()
                        );
                    }
                    Err(error) => println!("REFUSED {error}"),
                }
            }
            Ok(())
        }
    }
}
