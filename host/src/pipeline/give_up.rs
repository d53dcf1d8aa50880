//! When a stopping host gives up on output that keeps failing.

use std::time::Duration;

use tokio::sync::watch;

/// When a stop the user asked for gives up on output that still cannot be written: retrying
/// forever is right while running (backpressure, nothing lost), but a host told to stop must
/// stop. Output given up on is not lost: no checkpoint after it is stored, so the input is
/// read again by the next run. A clone counts its grace from its own first check after the
/// stop (the sinks written concurrently each hold one).
#[derive(Clone)]
pub struct GiveUp {
    stop: watch::Receiver<bool>,
    grace: Duration,
    since: Option<std::time::Instant>,
}

impl GiveUp {
    /// Gives up `grace` after `stop` turns true.
    pub fn after(stop: watch::Receiver<bool>, grace: Duration) -> Self {
        GiveUp {
            stop,
            grace,
            since: None,
        }
    }

    /// Never gives up.
    pub fn never() -> Self {
        GiveUp::after(watch::channel(false).1, Duration::MAX)
    }

    /// Whether the grace after a stop has run out.
    pub(super) fn due(&mut self) -> bool {
        if !*self.stop.borrow() {
            return false;
        }
        let since = *self.since.get_or_insert_with(std::time::Instant::now);
        since.elapsed() >= self.grace
    }
}
