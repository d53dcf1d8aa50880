//! Repository chores behind `cargo xtask`: build the wasm plugins, run the demo, run every test.
//! Only std and anyhow, so it builds in seconds.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

const WASM_TARGET: &str = "wasm32-unknown-unknown";
/// Shipped plugins: (crate artifact, file name).
const SHIPPED: [(&str, &str); 6] = [
    ("page_traffic", "page-traffic"),
    ("bot_detector", "bot-detector"),
    ("session_engagement", "session-engagement"),
    ("traffic_anomaly", "traffic-anomaly"),
    ("click_fraud", "click-fraud"),
    ("funnel_drop", "funnel-drop"),
];
/// Test fixtures built from the plugins workspace.
const FIXTURES: [(&str, &str); 2] = [("fixture_chaos", "chaos"), ("fixture_counter", "counter")];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = root();
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("plugins") => build_plugins(&root).map(|_| ()),
        Some("demo") => demo(&root, &args[1..]),
        Some("test") => test(&root),
        Some("chaos") => chaos(&root),
        Some("lint") => lint(&root),
        Some("services") => services_command(&root, &args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  \
                 demo [--duration SECS]  build plugins and host, run the embedded pipeline\n  \
                 test                    build plugins, run every test (SDK, plugins, host, chaos suite short form)\n  \
                 chaos                   the chaos suite's full form (200k events, 20 kills, outages; ~15 min)\n  \
                 plugins                 build the wasm plugins and fixtures into target/plugins\n  \
                 services up|down|status [NAME..]  test services: postgres, kafka, bigquery, chromium (kafka: restart [--kill] keeps its data)\n  \
                 lint                    cargo fmt --check and clippy -D warnings on both workspaces"
            );
            bail!("unknown or missing command");
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("$ {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Adds the wasm target when rustup lacks it (a fresh machine does).
fn ensure_wasm_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match installed {
        Ok(out)
            if String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == WASM_TARGET) =>
        {
            Ok(())
        }
        Ok(_) => run(Command::new("rustup").args(["target", "add", WASM_TARGET])),
        Err(e) => bail!("rustup is needed to add the {WASM_TARGET} target: {e}"),
    }
}

/// Builds the shipped plugins and the test fixtures into `target/plugins/`.
fn build_plugins(root: &Path) -> Result<PathBuf> {
    ensure_wasm_target()?;
    let out = root.join("target/plugins");
    std::fs::create_dir_all(&out)?;
    let manifest = root.join("plugins/Cargo.toml");
    let built = root
        .join("plugins/target")
        .join(WASM_TARGET)
        .join("release");
    let wasm_build = |extra: &[&str]| -> Result<()> {
        let mut cmd = cargo();
        cmd.args([
            "build",
            "--release",
            "--target",
            WASM_TARGET,
            "--manifest-path",
        ])
        .arg(&manifest)
        .args(extra);
        run(&mut cmd)
    };
    wasm_build(&["--workspace"])?;
    for (artifact, name) in SHIPPED.iter().chain(&FIXTURES) {
        std::fs::copy(
            built.join(format!("{artifact}.wasm")),
            out.join(format!("{name}.wasm")),
        )
        .with_context(|| format!("copy {artifact}.wasm"))?;
    }
    // The second version of the counter, for hot-swap tests.
    wasm_build(&["-p", "fixture-counter", "--features", "v2"])?;
    std::fs::copy(
        built.join("fixture_counter.wasm"),
        out.join("counter-v2.wasm"),
    )?;
    // And a third with a schema change the host must refuse.
    wasm_build(&["-p", "fixture-counter", "--features", "v3"])?;
    std::fs::copy(
        built.join("fixture_counter.wasm"),
        out.join("counter-v3.wasm"),
    )?;
    // A plugin built against another contract version, in its own workspace.
    let other = root.join("plugins/fixtures/other-contract");
    let mut cmd = cargo();
    cmd.args([
        "build",
        "--release",
        "--target",
        WASM_TARGET,
        "--manifest-path",
    ])
    .arg(other.join("Cargo.toml"));
    cmd.env("CARGO_TARGET_DIR", root.join("plugins/target"));
    run(&mut cmd)?;
    std::fs::copy(
        built.join("fixture_other_contract.wasm"),
        out.join("other-contract.wasm"),
    )?;
    eprintln!("plugins and fixtures are in {}", out.display());
    Ok(out)
}

fn demo(root: &Path, args: &[String]) -> Result<()> {
    let built = build_plugins(root)?;
    let data = root.join(".clickwatch");
    let plugins = data.join("plugins");
    std::fs::create_dir_all(&plugins)?;
    // A fresh run each time, so the summary and the database agree.
    for file in [
        "clickwatch.db",
        "clickwatch.db-wal",
        "clickwatch.db-shm",
        "alerts.jsonl",
        "dead-letters.jsonl",
    ] {
        let _ = std::fs::remove_file(data.join(file));
    }
    let _ = std::fs::remove_dir_all(data.join("state"));
    for (_, name) in SHIPPED {
        std::fs::copy(
            built.join(format!("{name}.wasm")),
            plugins.join(format!("{name}.wasm")),
        )?;
    }
    run(cargo().args(["build", "-p", "clickwatch"]))?;
    let mut cmd = Command::new(root.join("target/debug/clickwatch"));
    cmd.args(["run", "--config", "config/embedded.toml"])
        .args(args);
    eprintln!(
        "\nRunning the embedded pipeline. Copy a .wasm into {} to hot-load it; Ctrl-C to stop.\n\
         Dashboard: http://127.0.0.1:9464/  (metrics: /metrics, health: /healthz, /readyz)\n",
        plugins.display()
    );
    run(&mut cmd)?;
    eprintln!("\nInspect: sqlite3 .clickwatch/clickwatch.db 'select count(*) from click_events'");
    Ok(())
}

/// The services tests need, with the variable that points tests at an existing instance
/// instead (when it is set, the service is not started).
const SERVICES: [(&str, &str); 4] = [
    ("postgres", "CLICKWATCH_TEST_POSTGRES_URL"),
    ("kafka", "KAFKA_BROKERS"),
    ("bigquery", "BIGQUERY_EMULATOR"),
    ("chromium", "CLICKWATCH_CHROMIUM"),
];
/// The services the test suite uses today (chromium: the dashboard's browser test).
const TEST_SERVICES: [&str; 4] = ["postgres", "bigquery", "kafka", "chromium"];

/// Runs `services/NAME.sh ACTION`; returns the KEY=VALUE lines it prints.
fn service(root: &Path, name: &str, action: &str) -> Result<Vec<(String, String)>> {
    let script = root.join("services").join(format!("{name}.sh"));
    eprintln!("$ {} {action}", script.display());
    let out = Command::new("bash")
        .arg(&script)
        .arg(action)
        .env(
            "CLICKWATCH_STATE",
            std::env::var_os("CLICKWATCH_STATE").unwrap_or_else(|| "/tmp/clickwatch-run".into()),
        )
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprint!("{stdout}");
    if !out.status.success() {
        bail!("{name} {action} failed ({})", out.status);
    }
    Ok(stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect())
}

fn services_command(root: &Path, args: &[String]) -> Result<()> {
    let (action, names) = args
        .split_first()
        .context("usage: cargo xtask services up|down|status [NAME..]")?;
    let names: Vec<&str> = if names.is_empty() {
        SERVICES.iter().map(|(n, _)| *n).collect()
    } else {
        names.iter().map(String::as_str).collect()
    };
    let mut failed = false;
    for name in names {
        if !SERVICES.iter().any(|(n, _)| *n == name) {
            bail!("unknown service {name}; known: postgres, kafka, bigquery, chromium");
        }
        match (action.as_str(), service(root, name, action)) {
            (_, Ok(_)) => {}
            ("status", Err(_)) => failed = true,
            (_, Err(e)) => return Err(e),
        }
    }
    if failed {
        bail!("some services are not running");
    }
    Ok(())
}

fn test(root: &Path) -> Result<()> {
    let wasm = build_plugins(root)?;
    run(cargo().args(["fmt", "--all", "--check"]))?;
    // Plugin logic, natively (SDK, shipped plugins, fixtures).
    run(cargo()
        .args(["test", "--workspace", "--manifest-path"])
        .arg(root.join("plugins/Cargo.toml")))?;
    // Host: unit tests and integration tests against the real .wasm files and services.
    let result = with_services(root, |env| {
        run(cargo()
            .args(["test", "--workspace"])
            .env("CLICKWATCH_WASM_DIR", &wasm)
            .envs(env.iter().cloned()))
        .and_then(|()| scaffold_check(root))
    });
    result?;
    eprintln!("all tests passed");
    Ok(())
}

/// The chaos suite's full form (tests/tests/chaos.rs: 200 000 events, 20 kills of the host, a
/// broker restart, a 30 s PostgreSQL outage); `test` runs its short form.
fn chaos(root: &Path) -> Result<()> {
    let wasm = build_plugins(root)?;
    run(cargo().args(["build", "-p", "clickwatch"]))?;
    with_services(root, |env| {
        run(cargo()
            .args([
                "test",
                "-p",
                "clickwatch-e2e",
                "--test",
                "chaos",
                "--",
                "--nocapture",
            ])
            .env("CLICKWATCH_WASM_DIR", &wasm)
            .env("CLICKWATCH_CHAOS", "full")
            .envs(env.iter().cloned()))
    })?;
    eprintln!("chaos suite passed");
    Ok(())
}

/// Runs `body` with the test services up (started here and stopped after, unless the
/// environment points at an existing instance); `body` gets the variables that reach them.
fn with_services(root: &Path, body: impl FnOnce(&[(String, String)]) -> Result<()>) -> Result<()> {
    let mut env: Vec<(String, String)> = vec![(
        // Tests stop and start services through the same scripts: same state folder.
        "CLICKWATCH_STATE".into(),
        std::env::var("CLICKWATCH_STATE").unwrap_or_else(|_| "/tmp/clickwatch-run".into()),
    )];
    let mut started = Vec::new();
    let mut result = Ok(());
    for name in TEST_SERVICES {
        let (_, var) = SERVICES
            .iter()
            .find(|(n, _)| *n == name)
            .expect("known service");
        match std::env::var(var) {
            Ok(value) => eprintln!("{name}: using {var}={value} from the environment"),
            Err(_) => match service(root, name, "up") {
                Ok(vars) => {
                    env.extend(vars);
                    started.push(name);
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            },
        }
    }
    if result.is_ok() {
        result = body(&env);
    }
    for name in started {
        if let Err(e) = service(root, name, "down") {
            eprintln!("warning: {e:#}");
        }
    }
    result
}

/// `clickwatch plugin new` must give a crate that passes its tests, builds to wasm and is
/// accepted by the host, unchanged.
fn scaffold_check(root: &Path) -> Result<()> {
    let dir = root.join("target/scaffold-check");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let clickwatch = root.join("target/debug/clickwatch");
    run(cargo().args(["build", "-p", "clickwatch"]))?;
    run(Command::new(&clickwatch)
        .args(["plugin", "new", "my-detector", "--dir"])
        .arg(&dir))?;
    let manifest = dir.join("my-detector/Cargo.toml");
    // Share the plugins' target dir so serde and friends are not rebuilt.
    let shared = root.join("plugins/target");
    run(cargo()
        .arg("test")
        .arg("--manifest-path")
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &shared))?;
    run(cargo()
        .args([
            "build",
            "--release",
            "--target",
            WASM_TARGET,
            "--manifest-path",
        ])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &shared))?;
    let wasm = shared.join(WASM_TARGET).join("release/my_detector.wasm");
    run(Command::new(&clickwatch)
        .args(["plugin", "check"])
        .arg(&wasm))?;
    Ok(())
}

fn lint(root: &Path) -> Result<()> {
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo()
        .args(["fmt", "--all", "--check", "--manifest-path"])
        .arg(root.join("plugins/Cargo.toml")))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(cargo()
        .args(["clippy", "--workspace", "--all-targets", "--manifest-path"])
        .arg(root.join("plugins/Cargo.toml"))
        .args(["--", "-D", "warnings"]))?;
    Ok(())
}
