//! Event time: how a task's watermark follows the events it has seen. The watermark moves in
//! whole steps of `tick_interval_ms`, judged event by event, so the plugins are ticked at the
//! same event times and the same events are late however the input was batched or how fast
//! it was read (a backlog after a crash gives the alerts a live feed gives).

use std::time::Duration;

/// Event-time settings of the tasks.
#[derive(Debug, Clone, Copy)]
pub struct EventTime {
    /// Watermark lag behind the newest event.
    pub allowed_lateness_ms: i64,
    /// Wall time without input after which the watermark follows the wall clock.
    pub idle_advance: Duration,
    /// The watermark's step, ms of event time: plugins are ticked each time it moves.
    pub tick_interval_ms: i64,
}

impl Default for EventTime {
    /// The pipeline's defaults (`[pipeline]` in the config).
    fn default() -> Self {
        let p = crate::config::PipelineConfig::default();
        EventTime::of(&p)
    }
}

impl EventTime {
    /// The event-time settings of a `[pipeline]` section.
    pub fn of(p: &crate::config::PipelineConfig) -> Self {
        EventTime {
            allowed_lateness_ms: p.allowed_lateness_ms,
            idle_advance: Duration::from_millis(p.idle_advance_ms),
            tick_interval_ms: p.tick_interval_ms as i64,
        }
    }

    /// The watermark once the newest event time is `newest_ms`: `newest − allowed lateness`,
    /// rounded down to a whole step.
    pub fn watermark_at(&self, newest_ms: i64) -> i64 {
        let raw = newest_ms.saturating_sub(self.allowed_lateness_ms);
        let step = self.tick_interval_ms.max(1);
        raw.div_euclid(step).saturating_mul(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watermark_trails_by_the_lateness_in_whole_steps() {
        let t = EventTime {
            allowed_lateness_ms: 5_000,
            idle_advance: Duration::from_secs(2),
            tick_interval_ms: 1_000,
        };
        assert_eq!(t.watermark_at(10_000), 5_000);
        assert_eq!(t.watermark_at(10_999), 5_000);
        assert_eq!(t.watermark_at(11_000), 6_000);
        // Before the epoch rounds down too, and the extremes do not overflow.
        assert_eq!(t.watermark_at(4_500), -1_000);
        assert!(t.watermark_at(i64::MIN) <= i64::MIN + 1_000);
        assert!(t.watermark_at(i64::MAX) > i64::MAX - 6_000);
    }
}
