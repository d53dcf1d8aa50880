//! One task: the work of one partition (or of the whole embedded input) and its event-time
//! clock. What a task does with a batch is its [`Role`]: run its plugins (embedded input),
//! route events to their key owners (a Kafka input partition, stage 1), or run one key group's
//! plugins over routed events (an internal partition, stage 2). Tasks follow their partitions
//! from host to host, like Kafka Streams tasks.

use std::sync::Arc;
use std::time::Instant;

use super::processor::EventTime;
use super::sink_stage::SinkWork;
use crate::event::ClickEvent;
use crate::metrics::Metrics;
use crate::plugin::{PluginSet, batch::encode_batch};
use crate::shuffle::{Origins, Router};
use crate::sink::DeadLetter;
use crate::source::{BatchOrigin, PartitionState, TopicPartition};

/// What a task does with its input.
#[derive(Debug)]
pub enum Role {
    /// Runs its plugins over events straight from the source: the embedded sources, where
    /// one task sees every event, so every key meets there.
    Direct,
    /// Stage 1 of a partitioned input: stores nothing in plugins; hands each event to the key
    /// groups' owners and its watermark to all of them.
    Route(Arc<Router>),
    /// Stage 2: runs one key group's plugins over routed events, each origin's once, at the
    /// minimum watermark of the origins.
    Keyed {
        /// What was applied of each input partition.
        origins: Origins,
        /// The input topic (the coordinates dead letters name).
        input: Arc<str>,
    },
}

/// The plugins, role and event time of one partition (or of the whole input).
pub struct Task {
    /// The task's own plugin instances (none for [`Role::Route`]).
    pub plugins: PluginSet,
    role: Role,
    watermark: i64,
    max_event_ms: i64,
    /// For a partition: the offset after the last record processed.
    pub next_offset: Option<i64>,
    /// The offset of the last checkpoint taken: an unchanged partition is not checkpointed
    /// again (its stored state is still right, and rewriting it would only grow the state
    /// topic's tail).
    checkpointed: Option<i64>,
    /// When the task last had input: a quiet route task's watermark follows the wall clock.
    pub last_input: Instant,
    /// A route task without input told its key groups so (once is enough: the marker stays
    /// in their topics after any checkpoint that came before it).
    idle_announced: bool,
}

impl Task {
    /// A task over `plugins` with no event seen yet.
    pub fn new(plugins: PluginSet, role: Role) -> Self {
        Task {
            plugins,
            role,
            watermark: i64::MIN,
            max_event_ms: i64::MIN,
            next_offset: None,
            checkpointed: None,
            last_input: Instant::now(),
            idle_announced: false,
        }
    }

    /// A task resuming from a saved partition state (plugin state restored by the caller).
    pub fn resumed(plugins: PluginSet, mut role: Role, state: &PartitionState) -> Self {
        if let (Role::Keyed { origins, .. }, Some(saved)) = (&mut role, &state.origins) {
            *origins = saved.clone();
        }
        Task {
            plugins,
            role,
            watermark: state.watermark,
            max_event_ms: state.max_event_ms,
            next_offset: Some(state.next_offset),
            checkpointed: Some(state.next_offset),
            last_input: Instant::now(),
            idle_announced: false,
        }
    }

    /// Processes a batch: late events split off (dead-lettered), the rest run, routed or both
    /// stored, and the watermark advanced. `origin` gives Kafka coordinates.
    pub fn process(
        &mut self,
        events: Vec<ClickEvent>,
        dead: Vec<DeadLetter>,
        origin: Option<&BatchOrigin>,
        event_time: EventTime,
        metrics: &Metrics,
    ) -> SinkWork {
        self.last_input = Instant::now();
        if let Some(o) = origin {
            self.next_offset = Some(o.next_offset);
        }
        let mut work = SinkWork {
            dead,
            ..SinkWork::default()
        };
        match &mut self.role {
            Role::Direct => {
                let located = Located::read(events, origin);
                let on_time = self.split_late(located, origin_topic(origin), &mut work, metrics);
                self.note_times(&on_time.events);
                self.run_plugins(&on_time.events, &mut work, metrics);
                work.events = on_time.events;
                work.sources = on_time.at;
                self.advance(event_time, &mut work);
            }
            Role::Route(router) => {
                let router = router.clone();
                let Some(o) = origin else {
                    return work;
                };
                let located = Located::read(events, origin);
                let on_time = self.split_late(located, &o.topic, &mut work, metrics);
                self.note_times(&on_time.events);
                let offsets: Vec<i64> = on_time.at.iter().map(|&(_, off)| off).collect();
                work.routed = router.route(o.partition, &offsets, &on_time.events);
                if router.groups.is_empty() {
                    // No plugin to hand them to: stored is processed.
                    Metrics::add(&metrics.events_processed, on_time.events.len() as u64);
                }
                work.events = on_time.events;
                work.sources = on_time.at;
                if let Some(watermark) = self.advance_clock(event_time) {
                    work.routed
                        .extend(router.markers(o.partition, watermark, false));
                }
            }
            Role::Keyed { origins, input } => {
                let Some(o) = origin else {
                    return work;
                };
                let input = input.clone();
                let mut fresh = Located::default();
                for (event, &(from, offset)) in events.into_iter().zip(&o.routed) {
                    // A copy written again by a restarted stage 1 was applied already.
                    if origins.admit(from, offset) {
                        fresh.events.push(event);
                        fresh.at.push((from, offset));
                    } else {
                        Metrics::add(&metrics.events_duplicate, 1);
                    }
                }
                let on_time = self.split_late(fresh, &input, &mut work, metrics);
                self.note_times(&on_time.events);
                self.run_plugins(&on_time.events, &mut work, metrics);
                let Role::Keyed { origins, .. } = &mut self.role else {
                    return work;
                };
                for marker in &o.markers {
                    origins.mark(*marker);
                }
                if let Some(next) = origins.watermark()
                    && next > self.watermark
                {
                    work.merge(self.tick(next));
                }
            }
        }
        work
    }

    /// Keeps the events at or after the watermark; dead-letters the others with the input
    /// coordinates they were read at.
    fn split_late(
        &self,
        located: Located,
        topic: &str,
        work: &mut SinkWork,
        metrics: &Metrics,
    ) -> Located {
        let watermark = self.watermark;
        let mut on_time = Located::default();
        let has_coordinates = located.at.len() == located.events.len();
        for (i, e) in located.events.into_iter().enumerate() {
            let at = if has_coordinates {
                located.at.get(i).copied()
            } else {
                None
            };
            if e.time_ms >= watermark {
                on_time.events.push(e);
                on_time.at.extend(at);
                continue;
            }
            Metrics::add(&metrics.events_late, 1);
            work.dead.push(DeadLetter {
                reason: "late".into(),
                detail: format!(
                    "event time {} is behind the watermark {}",
                    e.time_ms, watermark
                ),
                origin: match at {
                    Some((p, off)) => format!("{topic}/{p}@{off}"),
                    None => "processor".into(),
                },
                payload: crate::event::encode(&e),
                topic: at.map(|_| topic.to_owned()),
                partition: at.map(|(p, _)| p),
                offset: at.map(|(_, off)| off),
                ..DeadLetter::default()
            });
        }
        on_time
    }

    fn note_times(&mut self, events: &[ClickEvent]) {
        self.max_event_ms = events
            .iter()
            .map(|e| e.time_ms)
            .fold(self.max_event_ms, i64::max);
    }

    fn run_plugins(&mut self, events: &[ClickEvent], work: &mut SinkWork, metrics: &Metrics) {
        if events.is_empty() {
            return;
        }
        let batch = encode_batch(events);
        let out = self.plugins.process(&batch, Instant::now());
        Metrics::add(&metrics.events_processed, events.len() as u64);
        work.alerts.extend(out.alerts);
        work.rows.extend(out.rows);
    }

    /// Moves the own clock to the newest event time less the allowed lateness; the new
    /// watermark if it moved.
    fn advance_clock(&mut self, event_time: EventTime) -> Option<i64> {
        if self.max_event_ms == i64::MIN {
            return None;
        }
        let next = self
            .max_event_ms
            .saturating_sub(event_time.allowed_lateness_ms);
        (next > self.watermark).then(|| {
            self.watermark = next;
            next
        })
    }

    /// Advances the own clock and ticks the plugins if it moved.
    fn advance(&mut self, event_time: EventTime, work: &mut SinkWork) {
        if let Some(watermark) = self.advance_clock(event_time) {
            work.merge(self.tick(watermark));
        }
    }

    /// No input for `idle_ms`: let event time follow the wall clock so windows still close.
    /// A routing task tells its key groups; one that never had input says it is idle, so the
    /// groups do not wait for it.
    pub fn idle_advance(
        &mut self,
        idle_ms: i64,
        event_time: EventTime,
        partition: i32,
    ) -> SinkWork {
        if matches!(self.role, Role::Keyed { .. }) {
            // Its clock is its origins'.
            return SinkWork::default();
        }
        if self.max_event_ms == i64::MIN {
            return match &self.role {
                Role::Route(router) if !self.idle_announced => {
                    self.idle_announced = true;
                    SinkWork {
                        routed: router.markers(partition, self.watermark, true),
                        ..SinkWork::default()
                    }
                }
                _ => SinkWork::default(),
            };
        }
        let next = self
            .max_event_ms
            .saturating_add(idle_ms)
            .saturating_sub(event_time.allowed_lateness_ms);
        if next <= self.watermark {
            return SinkWork::default();
        }
        match &self.role {
            Role::Route(router) => {
                self.watermark = next;
                SinkWork {
                    routed: router.markers(partition, next, false),
                    ..SinkWork::default()
                }
            }
            _ => self.tick(next),
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

    /// The task's state for a checkpoint: fresh plugin snapshots, the watermark, the offset
    /// and (stage 2) the origins. `None` for a task that has no offset (not a partition) or
    /// has not moved since its last checkpoint.
    pub fn checkpoint(&mut self, at: &TopicPartition) -> Option<PartitionState> {
        let next_offset = self.next_offset?;
        if self.checkpointed == Some(next_offset) {
            return None;
        }
        self.checkpointed = Some(next_offset);
        Some(PartitionState {
            topic: at.topic.clone(),
            partition: at.partition,
            next_offset,
            watermark: self.watermark,
            max_event_ms: self.max_event_ms,
            plugins: self.plugins.snapshots(Instant::now()),
            origins: match &self.role {
                Role::Keyed { origins, .. } => Some(origins.clone()),
                _ => None,
            },
        })
    }
}

/// Events with the input coordinates (partition, offset) they were read at; `at` is empty
/// when the source has none (embedded sources).
#[derive(Default)]
struct Located {
    events: Vec<ClickEvent>,
    at: Vec<(i32, i64)>,
}

impl Located {
    fn read(events: Vec<ClickEvent>, origin: Option<&BatchOrigin>) -> Self {
        let at = match origin {
            Some(o) => o.offsets.iter().map(|&off| (o.partition, off)).collect(),
            None => Vec::new(),
        };
        Located { events, at }
    }
}

fn origin_topic(origin: Option<&BatchOrigin>) -> &str {
    origin.map_or("", |o| &o.topic)
}
