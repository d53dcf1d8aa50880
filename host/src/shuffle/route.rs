//! Stage 1's routing: each event goes, once per key group, to the internal partition that owns
//! its key; each watermark advance goes to every partition of every group, behind the events
//! it covers (one producer writes both, in order).

use std::sync::Arc;

use super::record::{Marker, ShuffleRecord};
use super::{KeyGroup, Routed};
use crate::event::ClickEvent;

/// How a consumer group re-partitions its input.
#[derive(Debug, Clone)]
pub struct Router {
    /// The input topic.
    pub input: Arc<str>,
    /// Its partitions (carried in markers, so stage 2 knows whom to wait for).
    pub input_partitions: u32,
    /// The key groups in use.
    pub groups: Vec<KeyGroup>,
}

impl Router {
    /// The group of an internal topic.
    pub fn group_of(&self, topic: &str) -> Option<&KeyGroup> {
        self.groups.iter().find(|g| &*g.topic == topic)
    }

    /// The records that carry `events` (read from input partition `origin` at `offsets`) to
    /// their owners. An event is encoded once and sent to every group.
    pub fn route(&self, origin: i32, offsets: &[i64], events: &[ClickEvent]) -> Vec<Routed> {
        let mut out = Vec::with_capacity(events.len() * self.groups.len());
        if self.groups.is_empty() {
            return out;
        }
        for (event, &offset) in events.iter().zip(offsets) {
            let bytes = ShuffleRecord::Event {
                origin,
                offset,
                event: event.clone(),
            }
            .encode();
            for group in &self.groups {
                out.push(Routed {
                    topic: group.topic.clone(),
                    partition: group.key.partition_of(event, group.partitions) as i32,
                    bytes: bytes.clone(),
                });
            }
        }
        out
    }

    /// The marker of `origin`'s watermark, to every partition of every group.
    pub fn markers(&self, origin: i32, watermark: i64, idle: bool) -> Vec<Routed> {
        let bytes = ShuffleRecord::Marker(Marker {
            origin,
            watermark,
            idle,
            origins: self.input_partitions,
        })
        .encode();
        self.groups
            .iter()
            .flat_map(|g| {
                (0..g.partitions as i32).map(|partition| Routed {
                    topic: g.topic.clone(),
                    partition,
                    bytes: bytes.clone(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyed::StateKey;

    fn router() -> Router {
        Router {
            input: "in".into(),
            input_partitions: 3,
            groups: vec![
                KeyGroup {
                    key: StateKey::Url,
                    topic: "g.by-url".into(),
                    partitions: 4,
                },
                KeyGroup {
                    key: StateKey::Global,
                    topic: "g.by-global".into(),
                    partitions: 1,
                },
            ],
        }
    }

    fn event(url: &str) -> ClickEvent {
        let json = format!(
            r#"{{"event_id":"e-{url}","event_time":"2026-11-01T10:00:00Z","event_type":"page_view","session_id":"s","url":"{url}"}}"#
        );
        crate::event::decode(json.as_bytes()).expect("valid")
    }

    #[test]
    fn every_event_reaches_its_owner_in_every_group_with_its_origin() {
        let r = router();
        let events = [event("/a"), event("/b"), event("/a")];
        let routed = r.route(2, &[10, 11, 12], &events);
        assert_eq!(routed.len(), 6);
        let url_parts: Vec<i32> = routed
            .iter()
            .filter(|x| &*x.topic == "g.by-url")
            .map(|x| x.partition)
            .collect();
        assert_eq!(url_parts[0], url_parts[2], "the same URL, the same owner");
        assert!(
            routed
                .iter()
                .filter(|x| &*x.topic == "g.by-global")
                .all(|x| x.partition == 0)
        );
        match ShuffleRecord::decode(&routed[2].bytes) {
            Ok(ShuffleRecord::Event {
                origin,
                offset,
                event,
            }) => {
                assert_eq!((origin, offset, event.url.as_str()), (2, 11, "/b"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn markers_reach_every_partition_of_every_group() {
        let markers = router().markers(1, 5_000, false);
        assert_eq!(markers.len(), 5);
        for m in &markers {
            assert_eq!(
                ShuffleRecord::decode(&m.bytes),
                Ok(ShuffleRecord::Marker(Marker {
                    origin: 1,
                    watermark: 5_000,
                    idle: false,
                    origins: 3
                }))
            );
        }
    }
}
