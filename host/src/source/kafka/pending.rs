//! Records polled but not yet sent, kept per topic partition so each batch belongs to one
//! task and keeps its partition's order.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::event::ClickEvent;
use crate::shuffle::Marker;
use crate::sink::DeadLetter;
use crate::source::{BatchOrigin, SourceMsg, TopicPartition};

#[derive(Default)]
struct Part {
    events: Vec<ClickEvent>,
    offsets: Vec<i64>,
    routed: Vec<(i32, i64)>,
    /// Each after the number of events then held.
    markers: Vec<(usize, Marker)>,
    dead: Vec<DeadLetter>,
    next_offset: i64,
}

/// Pending records of every partition.
#[derive(Default)]
pub struct Pending {
    parts: BTreeMap<TopicPartition, Part>,
    records: usize,
    bytes: usize,
    since: Option<Instant>,
}

impl Pending {
    /// Adds a valid event of an input topic read at `offset` (`bytes` long on the wire).
    pub fn event(&mut self, at: &TopicPartition, offset: i64, bytes: usize, event: ClickEvent) {
        let part = self.part(at, offset, bytes);
        part.events.push(event);
        part.offsets.push(offset);
    }

    /// Adds an event of an internal topic, first read at `origin` of the input.
    pub fn routed(
        &mut self,
        at: &TopicPartition,
        offset: i64,
        bytes: usize,
        origin: (i32, i64),
        event: ClickEvent,
    ) {
        let part = self.part(at, offset, bytes);
        part.events.push(event);
        part.offsets.push(offset);
        part.routed.push(origin);
    }

    /// Adds a watermark marker of an internal topic.
    pub fn marker(&mut self, at: &TopicPartition, offset: i64, marker: Marker) {
        let part = self.part(at, offset, 0);
        part.markers.push((part.events.len(), marker));
    }

    /// Adds a record that was not a valid event.
    pub fn dead(&mut self, at: &TopicPartition, offset: i64, bytes: usize, letter: DeadLetter) {
        self.part(at, offset, bytes).dead.push(letter);
    }

    fn part(&mut self, at: &TopicPartition, offset: i64, bytes: usize) -> &mut Part {
        self.records += 1;
        self.bytes += bytes;
        self.since.get_or_insert_with(Instant::now);
        let part = self.parts.entry(at.clone()).or_default();
        part.next_offset = offset + 1;
        part
    }

    /// Records held.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Bytes held (as read).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// When the oldest held record arrived.
    pub fn since(&self) -> Option<Instant> {
        self.since
    }

    /// Takes everything held as one batch per partition.
    pub fn take(&mut self) -> Vec<SourceMsg> {
        self.records = 0;
        self.bytes = 0;
        self.since = None;
        std::mem::take(&mut self.parts)
            .into_iter()
            .map(|(at, part)| SourceMsg::Batch {
                events: part.events,
                dead: part.dead,
                from: Some(BatchOrigin {
                    topic: at.topic,
                    partition: at.partition,
                    offsets: part.offsets,
                    next_offset: part.next_offset,
                    routed: part.routed,
                    markers: part.markers,
                }),
            })
            .collect()
    }
}
