//! One task: a plugin set and its event-time clock. The embedded sources have a single task;
//! the Kafka source has one per assigned partition, so plugin state and the watermark follow
//! the partition from host to host (like Kafka Streams tasks).

use std::time::Instant;

use super::processor::EventTime;
use super::sink_stage::SinkWork;
use crate::event::ClickEvent;
use crate::metrics::Metrics;
use crate::plugin::{PluginSet, batch::encode_batch};
use crate::sink::DeadLetter;
use crate::source::{BatchOrigin, PartitionState};

/// The plugins and event time of one partition (or of the whole input).
pub struct Task {
    /// The task's own plugin instances.
    pub plugins: PluginSet,
    watermark: i64,
    max_event_ms: i64,
    /// For a partition: the offset after the last record processed.
    pub next_offset: Option<i64>,
    /// The offset of the last checkpoint taken: an unchanged partition is not checkpointed
    /// again (its stored state is still right, and rewriting it would only grow the state
    /// topic's tail).
    checkpointed: Option<i64>,
}

impl Task {
    /// A task over `plugins` with no event seen yet.
    pub fn new(plugins: PluginSet) -> Self {
        Task {
            plugins,
            watermark: i64::MIN,
            max_event_ms: i64::MIN,
            next_offset: None,
            checkpointed: None,
        }
    }

    /// A task resuming from a saved partition state (plugin state restored by the caller).
    pub fn resumed(plugins: PluginSet, state: &PartitionState) -> Self {
        Task {
            plugins,
            watermark: state.watermark,
            max_event_ms: state.max_event_ms,
            next_offset: Some(state.next_offset),
            checkpointed: Some(state.next_offset),
        }
    }

    /// Splits off late events (dead-lettered), runs the plugins over the rest and advances the
    /// watermark. `origin` gives Kafka coordinates for dead letters and the resume offset.
    pub fn process(
        &mut self,
        events: Vec<ClickEvent>,
        mut dead: Vec<DeadLetter>,
        origin: Option<&BatchOrigin>,
        event_time: EventTime,
        metrics: &Metrics,
    ) -> SinkWork {
        // Events behind the watermark arrive after their windows closed: dead-letter them.
        let watermark = self.watermark;
        let mut on_time = Vec::with_capacity(events.len());
        let mut sources = Vec::new();
        for (i, e) in events.into_iter().enumerate() {
            let offset = origin.and_then(|o| o.offsets.get(i).copied());
            if e.time_ms >= watermark {
                on_time.push(e);
                if let (Some(o), Some(offset)) = (origin, offset) {
                    sources.push((o.partition, offset));
                }
                continue;
            }
            Metrics::add(&metrics.events_late, 1);
            dead.push(DeadLetter {
                reason: "late".into(),
                detail: format!(
                    "event time {} is behind the watermark {}",
                    e.time_ms, watermark
                ),
                origin: match (origin, offset) {
                    (Some(o), Some(off)) => format!("{}/{}@{off}", o.topic, o.partition),
                    _ => "processor".into(),
                },
                payload: crate::event::encode(&e),
                topic: origin.map(|o| o.topic.to_string()),
                partition: origin.map(|o| o.partition),
                offset,
                ..DeadLetter::default()
            });
        }
        if let Some(o) = origin {
            self.next_offset = Some(o.next_offset);
        }
        let mut work = SinkWork {
            dead,
            ..SinkWork::default()
        };
        if on_time.is_empty() {
            return work;
        }
        let batch = encode_batch(&on_time);
        let out = self.plugins.process(&batch, Instant::now());
        Metrics::add(&metrics.events_processed, on_time.len() as u64);
        work.alerts = out.alerts;
        work.rows = out.rows;
        self.max_event_ms = on_time
            .iter()
            .map(|e| e.time_ms)
            .fold(self.max_event_ms, i64::max);
        work.events = on_time;
        work.sources = sources;
        let next = self
            .max_event_ms
            .saturating_sub(event_time.allowed_lateness_ms);
        if next > self.watermark {
            work.merge(self.tick(next));
        }
        work
    }

    /// No input for `idle_ms`: let event time follow the wall clock so windows still close.
    pub fn idle_advance(&mut self, idle_ms: i64, event_time: EventTime) -> SinkWork {
        if self.max_event_ms == i64::MIN {
            return SinkWork::default();
        }
        let next = self
            .max_event_ms
            .saturating_add(idle_ms)
            .saturating_sub(event_time.allowed_lateness_ms);
        if next > self.watermark {
            self.tick(next)
        } else {
            SinkWork::default()
        }
    }

    /// Advances the watermark to `watermark` and ticks the plugins.
    pub fn tick(&mut self, watermark: i64) -> SinkWork {
        self.watermark = watermark;
        let out = self.plugins.tick(watermark, Instant::now());
        SinkWork {
            alerts: out.alerts,
            rows: out.rows,
            ..SinkWork::default()
        }
    }

    /// The task's state for a checkpoint: fresh plugin snapshots, the watermark and the offset.
    /// `None` for a task that has no offset (not a partition) or has not moved since its last
    /// checkpoint.
    pub fn checkpoint(&mut self, partition: i32) -> Option<PartitionState> {
        let next_offset = self.next_offset?;
        if self.checkpointed == Some(next_offset) {
            return None;
        }
        self.checkpointed = Some(next_offset);
        Some(PartitionState {
            partition,
            next_offset,
            watermark: self.watermark,
            max_event_ms: self.max_event_ms,
            plugins: self.plugins.snapshots(Instant::now()),
        })
    }
}
