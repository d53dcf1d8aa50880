//! Records polled but not yet sent, kept per partition so each batch belongs to one partition
//! (its task) and keeps the partition's order.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::event::ClickEvent;
use crate::sink::DeadLetter;
use crate::source::{BatchOrigin, SourceMsg};

#[derive(Default)]
struct Part {
    events: Vec<ClickEvent>,
    offsets: Vec<i64>,
    dead: Vec<DeadLetter>,
    next_offset: i64,
}

/// Pending records of every partition.
#[derive(Default)]
pub struct Pending {
    parts: BTreeMap<i32, Part>,
    records: usize,
    bytes: usize,
    since: Option<Instant>,
}

impl Pending {
    /// Adds a valid event read at `offset` (`bytes` long on the wire).
    pub fn event(&mut self, partition: i32, offset: i64, bytes: usize, event: ClickEvent) {
        let part = self.part(partition, offset, bytes);
        part.events.push(event);
        part.offsets.push(offset);
    }

    /// Adds a record that was not a valid event.
    pub fn dead(&mut self, partition: i32, offset: i64, bytes: usize, letter: DeadLetter) {
        self.part(partition, offset, bytes).dead.push(letter);
    }

    fn part(&mut self, partition: i32, offset: i64, bytes: usize) -> &mut Part {
        self.records += 1;
        self.bytes += bytes;
        self.since.get_or_insert_with(Instant::now);
        let part = self.parts.entry(partition).or_default();
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
    pub fn take(&mut self, topic: &Arc<str>) -> Vec<SourceMsg> {
        self.records = 0;
        self.bytes = 0;
        self.since = None;
        std::mem::take(&mut self.parts)
            .into_iter()
            .map(|(partition, part)| SourceMsg::Batch {
                events: part.events,
                dead: part.dead,
                from: Some(BatchOrigin {
                    topic: topic.clone(),
                    partition,
                    offsets: part.offsets,
                    next_offset: part.next_offset,
                }),
            })
            .collect()
    }
}
