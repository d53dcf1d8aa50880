//! Shared helpers for the host's integration tests: locating the real `.wasm` fixtures that
//! `cargo xtask plugins` builds, and making test events.
#![allow(dead_code)]

pub mod kafka;

use std::path::PathBuf;

use clickwatch::event::{ClickEvent, EventKind};

/// Folder holding the built plugins and fixtures.
pub fn wasm_dir() -> PathBuf {
    match std::env::var_os("CLICKWATCH_WASM_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"),
    }
}

/// Bytes of a built plugin; panics with the command to run when it has not been built, so a
/// missing fixture fails the test instead of skipping it.
pub fn wasm(name: &str) -> Vec<u8> {
    let path = wasm_dir().join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "fixture {} is missing ({e}); build it with `cargo xtask plugins`",
            path.display()
        )
    })
}

/// A page view at `time_ms` in `session`, with a unique id.
pub fn event(i: u64, time_ms: i64, session: &str) -> ClickEvent {
    ClickEvent {
        event_id: format!("e{i}"),
        time_ms,
        kind: EventKind::PageView,
        session_id: session.to_owned(),
        user_id: None,
        url: format!("/p/{}", i % 7),
        referrer: None,
        ip: Some("198.51.100.7".into()),
        user_agent: None,
        device: Some("desktop".into()),
        country: Some("FR".into()),
        properties: None,
    }
}

/// `n` events starting at id `first`, 10 ms apart.
pub fn events(first: u64, n: u64) -> Vec<ClickEvent> {
    (first..first + n)
        .map(|i| {
            event(
                i,
                1_790_000_000_000 + i as i64 * 10,
                &format!("s{}", i % 13),
            )
        })
        .collect()
}

/// Captures tracing output of the current thread into a buffer, for asserting on log lines.
pub fn capture_logs() -> (
    tracing::subscriber::DefaultGuard,
    std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
) {
    let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || BufWriter(writer.clone()))
        .finish();
    (tracing::subscriber::set_default(subscriber), buf)
}

/// A log writer into a shared buffer (see [`capture_logs`]).
pub struct BufWriter(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for BufWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Everything logged so far.
pub fn logged(buf: &std::sync::Arc<std::sync::Mutex<Vec<u8>>>) -> String {
    String::from_utf8_lossy(&buf.lock().expect("log buffer")).into_owned()
}

/// A config for a pipeline test: `source` is the `[source]` body; plugins from `plugins_dir`;
/// outputs under `out`.
pub fn config(
    source: &str,
    plugins_dir: &std::path::Path,
    out: &std::path::Path,
) -> clickwatch::config::Config {
    let raw = format!("type = \"sqlite\"\npath = \"{}/db.sqlite\"", out.display());
    config_with_raw(source, plugins_dir, out, &raw)
}

/// Like [`config`], with the `[sinks.raw]` body given.
pub fn config_with_raw(
    source: &str,
    plugins_dir: &std::path::Path,
    out: &std::path::Path,
    raw: &str,
) -> clickwatch::config::Config {
    let text = config_text(source, plugins_dir, out, raw);
    clickwatch::config::parse(std::path::Path::new("test.toml"), &text, []).expect("test config")
}

/// The TOML of [`config_with_raw`], for a test that edits it or hands it to a host process.
pub fn config_text(
    source: &str,
    plugins_dir: &std::path::Path,
    out: &std::path::Path,
    raw: &str,
) -> String {
    format!(
        r#"
[source]
{source}

[pipeline]
batch_size = 500
batch_linger_ms = 20
allowed_lateness_ms = 1000
idle_advance_ms = 60000

[plugins]
dir = "{plugins}"
deadline_ms = 2000
snapshot_interval_ms = 100

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
        plugins = plugins_dir.display(),
        out = out.display()
    )
}

/// Waits (polling, bounded) until `cond` holds; panics with `what` after 60 s.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Replaces `dest` atomically (write to a temporary name, then rename), as a deploy would.
pub fn deploy(bytes: &[u8], dest: &std::path::Path) {
    let tmp = dest.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write plugin");
    std::fs::rename(&tmp, dest).expect("rename plugin");
}

/// Runs `services/NAME.sh ACTION` (the project's own service script), e.g. to stop a server
/// mid-test and start it again.
pub async fn service(name: &'static str, action: &'static str) {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../services/{name}.sh"));
    let status = tokio::task::spawn_blocking(move || {
        std::process::Command::new("bash")
            .arg(script)
            .arg(action)
            .status()
    })
    .await
    .expect("join")
    .expect("run the service script");
    assert!(status.success(), "services/{name}.sh {action} failed");
}

/// A new database `name` on the PostgreSQL server at `server` (a URL ending in `/<database>`),
/// dropped first if it exists, and migrated unless `migrate` is false. Returns its URL.
pub async fn fresh_postgres(server: &str, name: &str, migrate: bool) -> String {
    use clickwatch::sink::postgres;
    let admin = sqlx::PgPool::connect(server)
        .await
        .expect("connect to the PostgreSQL server");
    for statement in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::query(&statement).execute(&admin).await.unwrap();
    }
    let (base, _) = server
        .rsplit_once('/')
        .expect("a server URL ending in /<database>");
    let url = format!("{base}/{name}");
    if migrate {
        let pool = postgres::pool(&pg_settings(&url)).unwrap();
        postgres::migrate(&pool).await.unwrap();
    }
    url
}

/// Connection settings for a test database.
pub fn pg_settings(url: &str) -> clickwatch::sink::postgres::PgSettings {
    clickwatch::sink::postgres::PgSettings {
        url: url.to_owned(),
        password: None,
        startup_timeout: std::time::Duration::from_secs(10),
    }
}

/// A name no other test run uses (process id and a random number), joined with `_` so it is a
/// valid SQL, BigQuery and Kafka identifier.
pub fn unique(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        h.finish() % 1_000_000_000
    )
}

/// A host process (the test build of `clickwatch run`) running `config`, its log in `log`.
pub fn spawn_host(config: &std::path::Path, log: &std::path::Path) -> std::process::Child {
    let log = std::fs::File::create(log).unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_clickwatch"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        // Several hosts run at once: each takes a free port for its metrics.
        .env("CLICKWATCH__OBSERVABILITY__LISTEN", "127.0.0.1:0")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start a host")
}

/// One integer from the SQLite store the test configs write (`<out>/db.sqlite`).
pub async fn sqlite_scalar(out: &std::path::Path, sql: &str) -> i64 {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}/db.sqlite", out.display()))
        .await
        .expect("open the test store");
    sqlx::query_scalar(sql)
        .fetch_one(&pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Writes `n` generated events (seed `seed`, an injected bot and site traffic spike, so the
/// detectors alert) to `path` as JSON lines, with a malformed line after each of the first
/// `bad` events and after every `bad_every`-th one (0: none).
pub fn write_anomalous_events(path: &std::path::Path, seed: u64, n: u64, bad: u64, bad_every: u64) {
    use std::io::Write;
    let mut generator =
        clickwatch::generator::Generator::new(clickwatch::generator::GeneratorSettings {
            seed,
            mean_rate: 30.0,
            scenario: clickwatch::generator::Scenario {
                items: clickwatch::generator::parse_anomalies("bot,traffic-spike")
                    .expect("anomaly spec"),
                warmup_ms: 20 * 60_000,
                gap_ms: 3 * 60_000,
            },
            ..clickwatch::generator::GeneratorSettings::default()
        });
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("events"));
    for i in 0..n {
        let line = clickwatch::event::encode(&generator.next_event());
        writeln!(out, "{line}").expect("write");
        if i < bad || (bad_every > 0 && i % bad_every == 0) {
            writeln!(out, "{{not json {i}").expect("write");
        }
    }
    out.flush().expect("flush");
}
