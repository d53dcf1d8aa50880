//! The services the suites need, found from the environment `cargo xtask test` sets, and
//! stopped or restarted through the project's own `services/*.sh` scripts.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn required(var: &str, what: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{what} is needed: run `cargo xtask services up` and export {var} (or use `cargo xtask test`)"
        )
    })
}

/// The broker, from KAFKA_BROKERS.
pub fn brokers() -> String {
    required("KAFKA_BROKERS", "Kafka")
}

/// The PostgreSQL server URL (any database on it), from CLICKWATCH_TEST_POSTGRES_URL.
pub fn postgres_server() -> String {
    required("CLICKWATCH_TEST_POSTGRES_URL", "PostgreSQL")
}

/// The BigQuery emulator's REST root, from BIGQUERY_EMULATOR.
pub fn bigquery() -> String {
    required("BIGQUERY_EMULATOR", "The BigQuery emulator")
}

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .to_path_buf()
}

/// Runs `services/NAME.sh ACTION ARGS` and returns how long it took; panics if it fails, or
/// if the instance it manages is not the one the suite talks to (a `KEY=VALUE` line it prints
/// differs from the suite's environment): disrupting another instance would test nothing.
pub fn script(name: &str, action: &str, args: &[&str]) -> Duration {
    let started = Instant::now();
    let script = root().join("services").join(format!("{name}.sh"));
    let output = std::process::Command::new("bash")
        .arg(&script)
        .arg(action)
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprint!("{stdout}");
    assert!(
        output.status.success(),
        "services/{name}.sh {action} {args:?} failed ({})",
        output.status
    );
    for (key, value) in stdout.lines().filter_map(|l| l.split_once('=')) {
        if let Ok(ours) = std::env::var(key) {
            assert_eq!(
                ours, value,
                "services/{name}.sh manages {key}={value}, but the suite uses {key}={ours}: \
                 it must run against the script-managed services (cargo xtask test or chaos)"
            );
        }
    }
    took
}

/// The folder of built plugins and fixtures (CLICKWATCH_WASM_DIR, else `target/plugins`).
pub fn wasm_dir() -> PathBuf {
    match std::env::var_os("CLICKWATCH_WASM_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => root().join("target/plugins"),
    }
}

/// Copies the named built plugins into `dir` (created), panicking with the command to run
/// when one has not been built.
pub fn plugins_into(dir: &Path, names: &[&str]) {
    std::fs::create_dir_all(dir).expect("plugins folder");
    for name in names {
        let from = wasm_dir().join(format!("{name}.wasm"));
        std::fs::copy(&from, dir.join(format!("{name}.wasm"))).unwrap_or_else(|e| {
            panic!(
                "{} is missing ({e}); build it with `cargo xtask plugins`",
                from.display()
            )
        });
    }
}

/// A name no other run uses, valid as a SQL, BigQuery and Kafka identifier.
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
