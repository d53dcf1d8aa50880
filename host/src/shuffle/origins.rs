//! A stage-2 task's view of its inputs. Per input partition (origin): the last offset applied,
//! so a record written again after a stage-1 crash is applied once; and the origin's
//! watermark, so the task's watermark is the minimum over the origins it must wait for.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::record::Marker;

/// The origins of one stage-2 task; saved with its checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Origins {
    /// Partitions of the input topic, as last announced by a marker.
    expected: u32,
    /// What each origin has sent so far.
    slots: BTreeMap<i32, Origin>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Origin {
    /// Highest input offset applied (-1: none).
    applied: i64,
    /// Its latest watermark.
    watermark: i64,
    /// It has never had input: not waited for until it has.
    idle: bool,
}

impl Default for Origin {
    fn default() -> Self {
        Origin {
            applied: -1,
            watermark: i64::MIN,
            idle: false,
        }
    }
}

impl Origins {
    /// Whether the event at `offset` of `origin` is new (and remembers that it was applied).
    /// Stage 1 writes each origin's events to a partition in offset order, so anything at or
    /// below the high-water mark was applied before: a copy written again after a crash.
    pub fn admit(&mut self, origin: i32, offset: i64) -> bool {
        let slot = self.slots.entry(origin).or_default();
        if offset <= slot.applied {
            return false;
        }
        slot.applied = offset;
        // An origin that was idle has input again: wait for it (its marker follows its events).
        slot.idle = false;
        true
    }

    /// Takes an origin's watermark marker. Watermarks never go back.
    pub fn mark(&mut self, marker: Marker) {
        self.expected = self.expected.max(marker.origins);
        let slot = self.slots.entry(marker.origin).or_default();
        slot.watermark = slot.watermark.max(marker.watermark);
        slot.idle = marker.idle;
    }

    /// The task's watermark: the minimum over the expected origins that are not idle. `None`
    /// while an expected origin has not spoken yet, or when every origin is idle.
    pub fn watermark(&self) -> Option<i64> {
        let mut min: Option<i64> = None;
        for origin in 0..self.expected as i32 {
            match self.slots.get(&origin) {
                None => return None,
                Some(slot) if slot.idle => {}
                Some(slot) => min = Some(min.map_or(slot.watermark, |m| m.min(slot.watermark))),
            }
        }
        min
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(origin: i32, watermark: i64) -> Marker {
        Marker {
            origin,
            watermark,
            idle: false,
            origins: 2,
        }
    }

    #[test]
    fn each_origin_offset_is_applied_once() {
        let mut o = Origins::default();
        assert!(o.admit(0, 0));
        assert!(o.admit(0, 1));
        assert!(o.admit(1, 0), "origins are independent");
        // A stage-1 restart writes offsets 0 and 1 again, then goes on.
        assert!(!o.admit(0, 0));
        assert!(!o.admit(0, 1));
        assert!(o.admit(0, 2));
    }

    #[test]
    fn the_watermark_is_the_minimum_and_waits_for_every_origin() {
        let mut o = Origins::default();
        assert_eq!(o.watermark(), None);
        o.mark(marker(0, 1_000));
        assert_eq!(o.watermark(), None, "origin 1 has not spoken");
        o.mark(marker(1, 400));
        assert_eq!(o.watermark(), Some(400));
        o.mark(marker(1, 5_000));
        assert_eq!(o.watermark(), Some(1_000));
        o.mark(marker(0, 10));
        assert_eq!(o.watermark(), Some(1_000), "watermarks never go back");
    }

    #[test]
    fn idle_origins_do_not_stall_the_others_until_they_have_input() {
        let mut o = Origins::default();
        o.mark(marker(0, 1_000));
        o.mark(Marker {
            idle: true,
            ..marker(1, i64::MIN)
        });
        assert_eq!(o.watermark(), Some(1_000));
        // Origin 1 gets an event: it is waited for again, from its next marker on.
        assert!(o.admit(1, 0));
        assert_eq!(o.watermark(), Some(i64::MIN));
        o.mark(marker(1, 2_000));
        assert_eq!(o.watermark(), Some(1_000));
    }

    #[test]
    fn a_restored_view_continues_where_it_was_saved() {
        let mut o = Origins::default();
        o.mark(marker(0, 7));
        o.mark(marker(1, 9));
        o.admit(0, 41);
        let json = serde_json::to_vec(&o).expect("serialises");
        let mut back: Origins = serde_json::from_slice(&json).expect("deserialises");
        assert_eq!(back, o);
        assert!(!back.admit(0, 41));
        assert_eq!(back.watermark(), Some(7));
    }
}
