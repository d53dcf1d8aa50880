//! A `clickwatch run` process, as an operator runs it: started on a config, killed with
//! SIGKILL, or stopped with SIGTERM and given a bounded time to exit.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// The `clickwatch` binary: CLICKWATCH_BIN, else the debug build in the workspace's target
/// folder (built by `cargo test --workspace` or `cargo build -p clickwatch`).
pub fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("CLICKWATCH_BIN") {
        return PathBuf::from(bin);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::services::root().join("target"));
    let bin = target.join("debug/clickwatch");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p clickwatch` (or `cargo xtask test`)",
        bin.display()
    );
    bin
}

/// A running host; killed when dropped, so a failing test leaves no process behind.
pub struct Host {
    child: Child,
    log: PathBuf,
}

impl Host {
    /// Starts `clickwatch run --config CONFIG`, its output appended to `log`.
    pub fn start(config: &Path, log: &Path) -> Host {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("host log");
        let child = Command::new(binary())
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            // Several hosts may run at once: each takes a free port for its metrics.
            .env("CLICKWATCH__OBSERVABILITY__LISTEN", "127.0.0.1:0")
            .stdout(file.try_clone().expect("host log"))
            .stderr(file)
            .spawn()
            .expect("start the clickwatch binary");
        Host {
            child,
            log: log.to_path_buf(),
        }
    }

    /// Where the host logs.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Whether the process is still running (a host that exited on its own is a failure the
    /// caller reports with the log).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// `kill -9`, and waits for the process to be gone.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL the host");
        self.child.wait().expect("reap the host");
    }

    /// SIGTERM, then waits at most `grace` for the exit; returns the status and the time it
    /// took, or panics naming the log if the host outlives the grace period.
    pub fn terminate(mut self, grace: Duration) -> (ExitStatus, Duration) {
        let started = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the host") {
                return (status, started.elapsed());
            }
            assert!(
                started.elapsed() < grace,
                "the host did not exit within {grace:?} of SIGTERM (log: {})",
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
