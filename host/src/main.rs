//! The `clickwatch` command line.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

mod cli {
    pub mod generate;
    pub mod replay;
}

use clickwatch::config;
use clickwatch::metrics::Metrics;
use clickwatch::observe;
use clickwatch::pipeline::{self, Ending};
use clickwatch::plugin::{self, Limits, Runtime};
use clickwatch::scaffold;
use clickwatch::sink::postgres;

/// Real-time clickstream analytics and anomaly detection with hot-reloaded wasm plugins.
#[derive(Debug, Parser)]
#[command(name = "clickwatch", version, about, long_about = None)]
struct Cli {
    /// Log lines as text (colour only on a terminal) or as JSON objects, one per line, for
    /// log shippers.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
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
    Generate(cli::generate::GenerateArgs),
    /// Replay recorded events through the plugins of a folder and score the detectors'
    /// alerts against ground-truth labels.
    Replay(cli::replay::ReplayArgs),
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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,sqlx=warn,cranelift=warn,wasmtime=warn")
    });
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => logs.json().init(),
        // Escape codes only where a person reads them: not in files, pipes or journald.
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
    }
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
        Command::Generate(args) => cli::generate::generate(args),
        Command::Replay(args) => cli::replay::replay(args),
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

fn run(config_path: &Path, duration: Option<u64>, quiet: bool) -> Result<()> {
    let config = config::load(config_path, std::env::vars())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let metrics = Arc::new(Metrics::default());
    let summary = runtime.block_on(async {
        let server = match config.observability.enabled {
            true => {
                let addr = config
                    .observability
                    .address()
                    .map_err(|e| anyhow::anyhow!("{}: observability.listen: {e}", config_path.display()))?;
                let listener = observe::Listener::bind(addr)
                    .await
                    .with_context(|| config_path.display().to_string())?;
                if let Some(at) = listener.local_addr() {
                    tracing::info!(%at, metrics = %format!("http://{at}/metrics"), "observability listening (/metrics, /healthz, /readyz)");
                }
                Some(listener.serve(metrics.clone()))
            }
            false => None,
        };
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
        if let Some(server) = server {
            server.abort();
        }
        anyhow::Ok(summary?)
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
                            "{:<20} {:<8} {:<10} keyed by {:<12} tables {:?}  {}",
                            i.name,
                            i.version,
                            format!("{:?}", i.kind).to_lowercase(),
                            i.key.to_string(),
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
