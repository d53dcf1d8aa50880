//! One task: the work of one partition (or of the whole embedded input) and its event-time
//! clock. What a task does with a batch is its [`Role`]: run its plugins (embedded input),
//! route events to their key owners (a Kafka input partition, stage 1), or run one key group's
//! plugins over routed events (an internal partition, stage 2). Tasks follow their partitions
//! from host to host, like Kafka Streams tasks.

use std::sync::Arc;
use std::time::Instant;

use super::clock::EventTime;
use super::sink_stage::SinkWork;
use crate::event::ClickEvent;
use crate::metrics::Metrics;
use crate::plugin::{PluginSet, batch::encode_batch};
use crate::shuffle::{Marker, Origins, Router};
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

    /// A task resuming from a saved partition state: each plugin's snapshot restored into
    /// `plugins` (a plugin that cannot take it starts fresh, logged), the clock and the
    /// position as saved.
    pub fn resumed(mut plugins: PluginSet, mut role: Role, state: &PartitionState) -> Self {
        let partition = format!("{}/{}", state.topic, state.partition);
        for (plugin, bytes) in &state.plugins {
            match plugins.restore(plugin, bytes) {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(%partition, %plugin, "saved state of a plugin that is no longer loaded is dropped")
                }
                Err(error) => {
                    tracing::warn!(%partition, %plugin, %error, "saved state could not be restored; the plugin starts fresh")
                }
            }
        }
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
    ///
    /// Event by event: an event behind the watermark is late, and each time the watermark
    /// crosses a step the events before it are handed on and the plugins ticked (or, routing,
    /// the step is announced). So the calls the plugins see do not depend on how the input
    /// was cut into batches, only on the events and their order.
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
        match &self.role {
            Role::Direct => {
                self.process_input(events, origin, None, event_time, &mut work, metrics)
            }
            Role::Route(router) => {
                let router = router.clone();
                if origin.is_some() {
                    self.process_input(
                        events,
                        origin,
                        Some(&router),
                        event_time,
                        &mut work,
                        metrics,
                    );
                }
            }
            Role::Keyed { input, .. } => {
                let input = input.clone();
                if let Some(o) = origin {
                    self.process_routed(events, o, &input, &mut work, metrics);
                }
            }
        }
        work
    }

    /// Events straight from the source: run here (`router` none) or routed to their owners.
    fn process_input(
        &mut self,
        events: Vec<ClickEvent>,
        origin: Option<&BatchOrigin>,
        router: Option<&Router>,
        event_time: EventTime,
        work: &mut SinkWork,
        metrics: &Metrics,
    ) {
        let topic = origin_topic(origin);
        if router.is_some() {
            // Stored raw events carry their input coordinates.
            work.input = origin.map(|o| o.topic.clone());
        }
        let partition = origin.map_or(-1, |o| o.partition);
        let offsets = origin
            .map(|o| o.offsets.as_slice())
            .filter(|o| o.len() == events.len());
        let mut segment = Located::default();
        for (i, event) in events.into_iter().enumerate() {
            let at = offsets.map(|o| (partition, o[i]));
            if event.time_ms < self.watermark {
                work.dead
                    .push(late(&event, at, topic, self.watermark, metrics));
                continue;
            }
            self.max_event_ms = self.max_event_ms.max(event.time_ms);
            segment.push(event, at);
            let next = event_time.watermark_at(self.max_event_ms);
            if next > self.watermark {
                self.hand_on(&mut segment, router, partition, work, metrics);
                self.step(next, router, partition, work);
            }
        }
        self.hand_on(&mut segment, router, partition, work, metrics);
    }

    /// The events of one watermark step: run or routed, then kept for the raw store.
    fn hand_on(
        &mut self,
        segment: &mut Located,
        router: Option<&Router>,
        partition: i32,
        work: &mut SinkWork,
        metrics: &Metrics,
    ) {
        if segment.events.is_empty() {
            return;
        }
        let Located { events, at } = std::mem::take(segment);
        match router {
            None => self.run_plugins(&events, work, metrics),
            Some(router) => {
                let offsets: Vec<i64> = at.iter().map(|&(_, off)| off).collect();
                work.routed
                    .extend(router.route(partition, &offsets, &events));
                if router.groups.is_empty() {
                    // No plugin to hand them to: stored is processed.
                    Metrics::add(&metrics.events_processed, events.len() as u64);
                }
            }
        }
        work.events.extend(events);
        work.sources.extend(at);
    }

    /// The watermark moved to `watermark`: tick the plugins, or tell the key groups.
    fn step(
        &mut self,
        watermark: i64,
        router: Option<&Router>,
        partition: i32,
        work: &mut SinkWork,
    ) {
        match router {
            None => work.merge(self.tick(watermark)),
            Some(router) => {
                self.watermark = watermark;
                work.routed
                    .extend(router.markers(partition, watermark, false));
            }
        }
    }

    /// Stage 2: routed events, each origin's applied once, and the origins' watermark
    /// markers in the order they were written among the events.
    fn process_routed(
        &mut self,
        events: Vec<ClickEvent>,
        o: &BatchOrigin,
        input: &str,
        work: &mut SinkWork,
        metrics: &Metrics,
    ) {
        let mut markers = o.markers.iter().peekable();
        // Only the events: stage 2 stores nothing, so their coordinates serve late ones only.
        let mut segment = Vec::new();
        for (i, (event, &(from, offset))) in events.into_iter().zip(&o.routed).enumerate() {
            while let Some((_, marker)) = markers.next_if(|(before, _)| *before <= i) {
                self.mark(*marker, &mut segment, work, metrics);
            }
            let Role::Keyed { origins, .. } = &mut self.role else {
                return;
            };
            // A copy written again by a restarted stage 1 was applied already.
            if !origins.admit(from, offset) {
                Metrics::add(&metrics.events_duplicate, 1);
                continue;
            }
            if event.time_ms < self.watermark {
                work.dead.push(late(
                    &event,
                    Some((from, offset)),
                    input,
                    self.watermark,
                    metrics,
                ));
                continue;
            }
            self.max_event_ms = self.max_event_ms.max(event.time_ms);
            segment.push(event);
        }
        for (_, marker) in markers {
            self.mark(*marker, &mut segment, work, metrics);
        }
        self.run_plugins(&segment, work, metrics);
    }

    /// Applies an origin's marker; when the minimum over the origins moves, the events before
    /// it are run and the plugins ticked.
    fn mark(
        &mut self,
        marker: Marker,
        segment: &mut Vec<ClickEvent>,
        work: &mut SinkWork,
        metrics: &Metrics,
    ) {
        let Role::Keyed { origins, .. } = &mut self.role else {
            return;
        };
        origins.mark(marker);
        if let Some(next) = origins.watermark()
            && next > self.watermark
        {
            let events = std::mem::take(segment);
            self.run_plugins(&events, work, metrics);
            work.merge(self.tick(next));
        }
    }

    fn run_plugins(&mut self, events: &[ClickEvent], work: &mut SinkWork, metrics: &Metrics) {
        if events.is_empty() {
            return;
        }
        let batch = std::sync::Arc::new(encode_batch(events));
        let out = self.plugins.process(&batch, Instant::now());
        Metrics::add(&metrics.events_processed, events.len() as u64);
        work.alerts.extend(out.alerts);
        work.rows.extend(out.rows);
        work.dead
            .extend(out.refused.into_iter().map(refused_letter));
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
        let next = event_time.watermark_at(self.max_event_ms.saturating_add(idle_ms));
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

    /// The event time up to which this task has seen everything (`i64::MIN` before any).
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// Advances the watermark to `watermark` and ticks the plugins.
    pub fn tick(&mut self, watermark: i64) -> SinkWork {
        self.watermark = watermark;
        let out = self.plugins.tick(watermark, Instant::now());
        SinkWork {
            alerts: out.alerts,
            rows: out.rows,
            dead: out.refused.into_iter().map(refused_letter).collect(),
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
    fn push(&mut self, event: ClickEvent, at: Option<(i32, i64)>) {
        self.events.push(event);
        self.at.extend(at);
    }
}

/// The dead letter of an event behind the watermark, with the input coordinates it was read at.
fn late(
    event: &ClickEvent,
    at: Option<(i32, i64)>,
    topic: &str,
    watermark: i64,
    metrics: &Metrics,
) -> DeadLetter {
    Metrics::add(&metrics.events_late, 1);
    let letter = DeadLetter {
        reason: "late".into(),
        detail: format!(
            "event time {} is behind the watermark {}",
            event.time_ms, watermark
        ),
        origin: "processor".into(),
        payload: crate::event::encode(event),
        ..DeadLetter::default()
    };
    match at {
        Some((partition, offset)) => letter.at(topic, partition, offset),
        None => letter,
    }
}

fn origin_topic(origin: Option<&BatchOrigin>) -> &str {
    origin.map_or("", |o| &o.topic)
}

/// A plugin's refused alert or row as a dead letter: the destination for everything the
/// pipeline could not deliver, so a plugin bug is visible and its output recoverable.
fn refused_letter(r: crate::plugin::Refused) -> DeadLetter {
    DeadLetter {
        reason: r.reason.to_owned(),
        detail: r.problem,
        origin: format!("plugin {}@{}", r.plugin, r.version),
        ..DeadLetter::default()
    }
    .with_bytes(r.payload.as_bytes())
}
