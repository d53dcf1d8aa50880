//! Reading the config file: TOML, environment overrides, then typed deserialisation whose
//! errors name the file, the key and what was expected.

use std::path::{Path, PathBuf};

use super::Config;

/// Prefix of environment overrides: `CLICKWATCH__SINKS__RAW__PATH=/data/raw.db` sets
/// `sinks.raw.path`. Values are read as TOML when they parse (numbers, booleans), else as text.
pub const ENV_PREFIX: &str = "CLICKWATCH__";

/// A configuration problem, always naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not TOML.
    #[error("{file}: not valid TOML: {message}")]
    Syntax {
        /// The file.
        file: PathBuf,
        /// Parser message with line and column.
        message: String,
    },
    /// A key is unknown, missing or of the wrong type.
    #[error("{file}: key `{key}`: {message}")]
    Key {
        /// The file.
        file: PathBuf,
        /// Dotted key path.
        key: String,
        /// What was expected.
        message: String,
    },
    /// A value is well-typed but unusable.
    #[error("{file}: key `{key}`: {message}")]
    Value {
        /// The file.
        file: PathBuf,
        /// Dotted key path.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// Loads `file`, applies environment overrides from `env`, and validates the result.
pub fn load(
    file: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        file: file.to_owned(),
        source,
    })?;
    parse(file, &text, env)
}

/// Parses config text (named `file` in errors).
pub fn parse(
    file: &Path,
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut table: toml::Table =
        text.parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax {
                file: file.to_owned(),
                message: e.to_string(),
            })?;
    for (name, value) in env {
        if let Some(path) = name.strip_prefix(ENV_PREFIX) {
            apply_override(&mut table, path, &value);
        }
    }
    let config: Config =
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let outer = e.path().to_string();
            let message = e.into_inner().message().to_owned();
            match message.split_once(super::tagged::PATH_MARK) {
                Some((inner, message)) => {
                    let key = if inner == "." {
                        outer
                    } else {
                        format!("{outer}.{inner}")
                    };
                    ConfigError::Key {
                        file: file.to_owned(),
                        key,
                        message: message.to_owned(),
                    }
                }
                None => ConfigError::Key {
                    file: file.to_owned(),
                    key: outer,
                    message,
                },
            }
        })?;
    validate(file, &config)?;
    Ok(config)
}

fn apply_override(table: &mut toml::Table, path: &str, value: &str) {
    let keys: Vec<String> = path.split("__").map(|k| k.to_ascii_lowercase()).collect();
    let Some((last, parents)) = keys.split_last() else {
        return;
    };
    let mut current = table;
    for key in parents {
        let entry = current
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(next) = entry else {
            return;
        };
        current = next;
    }
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"));
    current.insert(
        last.clone(),
        parsed.unwrap_or_else(|| toml::Value::String(value.to_owned())),
    );
}

/// Most worker threads a pipeline may ask for.
const MAX_WORKERS: usize = 256;

/// Checks a `[pipeline]` section; the error names the key and what was expected. Shared with
/// `replay`, which reads the section of a pipeline config on its own.
pub fn validate_pipeline(p: &super::PipelineConfig) -> Result<(), (&'static str, String)> {
    let positive = "expected a positive number of milliseconds".to_owned();
    if p.batch_size == 0 || p.batch_size > 100_000 {
        return Err((
            "pipeline.batch_size",
            format!("expected 1..=100000, got {}", p.batch_size),
        ));
    }
    if p.queue_batches == 0 {
        return Err(("pipeline.queue_batches", "expected at least 1".into()));
    }
    if p.allowed_lateness_ms < 0 {
        return Err((
            "pipeline.allowed_lateness_ms",
            format!("expected >= 0, got {}", p.allowed_lateness_ms),
        ));
    }
    if p.idle_advance_ms == 0 {
        return Err(("pipeline.idle_advance_ms", positive));
    }
    if p.shutdown_grace_ms == 0 {
        return Err(("pipeline.shutdown_grace_ms", positive));
    }
    if p.checkpoint_interval_ms == 0 {
        return Err(("pipeline.checkpoint_interval_ms", positive));
    }
    if let Some(workers) = p.workers
        && !(1..=MAX_WORKERS).contains(&workers)
    {
        return Err((
            "pipeline.workers",
            format!("expected 1..={MAX_WORKERS} threads, got {workers}"),
        ));
    }
    if p.tick_interval_ms == 0 || p.tick_interval_ms > 3_600_000 {
        return Err((
            "pipeline.tick_interval_ms",
            format!(
                "expected 1..=3600000 milliseconds, got {}",
                p.tick_interval_ms
            ),
        ));
    }
    Ok(())
}

fn validate(file: &Path, config: &Config) -> Result<(), ConfigError> {
    let bad = |key: &str, message: String| ConfigError::Value {
        file: file.to_owned(),
        key: key.to_owned(),
        message,
    };
    if !config.plugins.dir.is_dir() {
        return Err(bad(
            "plugins.dir",
            format!(
                "folder {} does not exist (expected a folder of .wasm plugins)",
                config.plugins.dir.display()
            ),
        ));
    }
    validate_pipeline(&config.pipeline).map_err(|(key, message)| bad(key, message))?;
    if config.observability.enabled
        && let Err(message) = config.observability.address()
    {
        return Err(bad("observability.listen", message));
    }
    if config.plugins.deadline_ms == 0 {
        return Err(bad(
            "plugins.deadline_ms",
            "expected a positive number of milliseconds".into(),
        ));
    }
    if config.plugins.memory_mb < 2 {
        return Err(bad(
            "plugins.memory_mb",
            format!("expected at least 2 MiB, got {}", config.plugins.memory_mb),
        ));
    }
    if let super::SourceConfig::Kafka(k) = &config.source {
        if k.brokers.trim().is_empty() {
            return Err(bad(
                "source.brokers",
                "expected host:port of at least one broker".into(),
            ));
        }
        if k.topic.trim().is_empty() {
            return Err(bad("source.topic", "expected a topic name".into()));
        }
        if k.group_id.trim().is_empty() {
            return Err(bad(
                "source.group_id",
                "expected a consumer group id".into(),
            ));
        }
        if !(1_000..=300_000).contains(&k.session_timeout_ms) {
            return Err(bad(
                "source.session_timeout_ms",
                format!("expected 1000..=300000, got {}", k.session_timeout_ms),
            ));
        }
        if k.checkpoint_interval_ms == 0 {
            return Err(bad(
                "source.checkpoint_interval_ms",
                "expected a positive number of milliseconds".into(),
            ));
        }
    }
    if let super::SourceConfig::Generator(super::GeneratorSource {
        rate,
        bot_fraction,
        simulated_rate,
        ..
    }) = &config.source
    {
        if *rate == 0 {
            return Err(bad(
                "source.rate",
                "expected a positive events-per-second rate".into(),
            ));
        }
        if !(0.0..=1.0).contains(bot_fraction) {
            return Err(bad(
                "source.bot_fraction",
                format!("expected 0..1, got {bot_fraction}"),
            ));
        }
        if *simulated_rate <= 0.0 {
            return Err(bad(
                "source.simulated_rate",
                format!("expected > 0, got {simulated_rate}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(dir: &Path) -> String {
        format!(
            r#"
[source]
type = "generator"
rate = 100

[plugins]
dir = "{}"

[sinks.raw]
type = "sqlite"
path = "x.db"
[sinks.aggregates]
type = "sqlite"
path = "x.db"
[sinks.alerts]
type = "file"
path = "alerts.jsonl"
[sinks.dead_letters]
type = "file"
path = "dead.jsonl"
"#,
            dir.display()
        )
    }

    fn err(text: &str) -> String {
        parse(Path::new("conf/test.toml"), text, [])
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_good_file_parses() {
        let dir = tempfile::tempdir().unwrap();
        let c = parse(Path::new("t.toml"), &base(dir.path()), []).unwrap();
        assert_eq!(c.pipeline.batch_size, 1000);
        assert_eq!(c.plugins.settings_json("nope"), "{}");
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let good = base(dir.path());
        let unknown = err(&good.replace("rate = 100", "rate = 100\nspeed = 3"));
        assert!(
            unknown.starts_with("conf/test.toml: key `source"),
            "{unknown}"
        );
        assert!(unknown.contains("unknown field `speed`"), "{unknown}");
        let wrong_type = err(&good.replace("rate = 100", "rate = \"fast\""));
        assert!(
            wrong_type.contains("conf/test.toml: key `source.rate`")
                && wrong_type.contains("expected u32"),
            "{wrong_type}"
        );
        let nested = err(&format!("{good}\n[pipeline]\nbatch_sise = 5\n"));
        assert!(
            nested.contains("key `pipeline.batch_sise`") && nested.contains("unknown field"),
            "{nested}"
        );
        let missing_dir = err(&good.replace(&dir.path().display().to_string(), "/no/such/folder"));
        assert!(
            missing_dir.contains("key `plugins.dir`") && missing_dir.contains("does not exist"),
            "{missing_dir}"
        );
        let syntax = err("[source\n");
        assert!(
            syntax.contains("conf/test.toml: not valid TOML"),
            "{syntax}"
        );
    }

    #[test]
    fn the_environment_overrides_keys() {
        let dir = tempfile::tempdir().unwrap();
        let env = [
            (
                "CLICKWATCH__SINKS__RAW__PATH".to_owned(),
                "/secret/raw.db".to_owned(),
            ),
            (
                "CLICKWATCH__PIPELINE__BATCH_SIZE".to_owned(),
                "77".to_owned(),
            ),
            ("UNRELATED".to_owned(), "x".to_owned()),
        ];
        let c = parse(Path::new("t.toml"), &base(dir.path()), env).unwrap();
        let super::super::RawSinkConfig::Sqlite(super::super::SqliteSink { path }) = &c.sinks.raw
        else {
            panic!("expected the sqlite raw sink");
        };
        assert_eq!(path, Path::new("/secret/raw.db"));
        assert_eq!(c.pipeline.batch_size, 77);
    }
}
