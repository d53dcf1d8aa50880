//! The `clickwatch` command line.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use clickwatch::config;
use clickwatch::event::encode;
use clickwatch::generator::{Generator, GeneratorSettings};
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
        /// Number of events.
        #[arg(long, default_value_t = 10_000)]
        count: u64,
        /// Seed; the same seed writes the same events.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Events per simulated second at the daily mean.
        #[arg(long, default_value_t = 50.0)]
        simulated_rate: f64,
        /// Share of bot sessions, 0..1.
        #[arg(long, default_value_t = 0.01)]
        bot_fraction: f64,
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
        } => {
            let mut generator = Generator::new(GeneratorSettings {
                seed,
                mean_rate: simulated_rate,
                bot_fraction,
                ..GeneratorSettings::default()
            });
            if let Target::Kafka = to {
                let count = duration.is_none().then_some(count);
                return generate_to_kafka(generator, &brokers, &topic, rate, count, duration);
            }
            let mut sink: Box<dyn Write> = match (to, out) {
                (Target::Stdout, _) => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
                (Target::File, Some(path)) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(&path)
                        .with_context(|| format!("cannot create {}", path.display()))?,
                )),
                (Target::File, None) => bail!("--to file needs --out FILE"),
                (Target::Kafka, _) => bail!("--to kafka is handled above"),
            };
            for _ in 0..count {
                writeln!(sink, "{}", encode(&generator.next_event()))?;
            }
            sink.flush()?;
            Ok(())
        }
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

fn generate_to_kafka(
    generator: Generator,
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
