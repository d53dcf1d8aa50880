//! The records of the internal re-partitioning topics: an event with its origin (input
//! partition and offset), or a watermark marker of an input partition. A compact binary form
//! written and read only by Clickwatch hosts; decoding never panics on foreign bytes.

use crate::event::{ClickEvent, EventKind};

/// First byte of every record: the format's version, so a future host can tell.
const VERSION: u8 = 0xC1;
const TAG_EVENT: u8 = 1;
const TAG_MARKER: u8 = 2;
/// Length prefix of an absent optional field.
const ABSENT: u32 = u32::MAX;

/// One record of an internal topic.
// A record lives only between decoding and batching, one at a time: boxing the event to
// shrink the rare marker variant would cost an allocation per routed event instead.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum ShuffleRecord {
    /// An event routed to the partition that owns its key.
    Event {
        /// Input partition it was read from.
        origin: i32,
        /// Its offset there: stage 2 applies each origin's records once, in offset order.
        offset: i64,
        /// The event.
        event: ClickEvent,
    },
    /// The watermark of an input partition, sent to every partition of every internal topic.
    Marker(Marker),
}

/// Where an input partition's event time stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    /// The input partition.
    pub origin: i32,
    /// No event older than this will come from it (`i64::MIN`: none seen yet).
    pub watermark: i64,
    /// It has had no input for the idle interval: leave it out of the minimum until it
    /// speaks again.
    pub idle: bool,
    /// How many partitions the input topic has (so a stage-2 task knows whom to wait for).
    pub origins: u32,
}

/// Bytes that are not a shuffle record of this version.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("not a clickwatch shuffle record: {0}")]
pub struct BadRecord(pub &'static str);

impl ShuffleRecord {
    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        out.push(VERSION);
        match self {
            ShuffleRecord::Event {
                origin,
                offset,
                event,
            } => {
                out.push(TAG_EVENT);
                out.extend_from_slice(&origin.to_le_bytes());
                out.extend_from_slice(&offset.to_le_bytes());
                encode_event(event, &mut out);
            }
            ShuffleRecord::Marker(m) => {
                out.push(TAG_MARKER);
                out.extend_from_slice(&m.origin.to_le_bytes());
                out.extend_from_slice(&m.watermark.to_le_bytes());
                out.push(u8::from(m.idle));
                out.extend_from_slice(&m.origins.to_le_bytes());
            }
        }
        out
    }

    /// Reads a record written by [`ShuffleRecord::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, BadRecord> {
        let mut r = Reader { bytes, at: 0 };
        if r.u8()? != VERSION {
            return Err(BadRecord("unknown version"));
        }
        let record = match r.u8()? {
            TAG_EVENT => ShuffleRecord::Event {
                origin: r.i32()?,
                offset: r.i64()?,
                event: decode_event(&mut r)?,
            },
            TAG_MARKER => ShuffleRecord::Marker(Marker {
                origin: r.i32()?,
                watermark: r.i64()?,
                idle: r.u8()? != 0,
                origins: r.u32()?,
            }),
            _ => return Err(BadRecord("unknown record type")),
        };
        if r.at != bytes.len() {
            return Err(BadRecord("trailing bytes"));
        }
        Ok(record)
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Events are validated (fields far below 4 GiB), so the length always fits.
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => put_str(out, s),
        None => out.extend_from_slice(&ABSENT.to_le_bytes()),
    }
}

fn encode_event(e: &ClickEvent, out: &mut Vec<u8>) {
    put_str(out, &e.event_id);
    out.extend_from_slice(&e.time_ms.to_le_bytes());
    out.push(e.kind.code());
    put_str(out, &e.session_id);
    put_opt(out, e.user_id.as_deref());
    put_str(out, &e.url);
    put_opt(out, e.referrer.as_deref());
    put_opt(out, e.ip.as_deref());
    put_opt(out, e.user_agent.as_deref());
    put_opt(out, e.device.as_deref());
    put_opt(out, e.country.as_deref());
    put_opt(out, e.properties.as_ref().map(|p| p.as_str()));
}

fn decode_event(r: &mut Reader<'_>) -> Result<ClickEvent, BadRecord> {
    let event_id = r.string()?;
    let time_ms = r.i64()?;
    let kind = EventKind::from_code(r.u8()?);
    let session_id = r.string()?;
    let user_id = r.opt()?;
    let url = r.string()?;
    let referrer = r.opt()?;
    let ip = r.opt()?;
    let user_agent = r.opt()?;
    let device = r.opt()?;
    let country = r.opt()?;
    let properties = match r.opt()? {
        None => None,
        Some(text) => Some(
            serde_json::from_str(&text).map_err(|_| BadRecord("properties are not an object"))?,
        ),
    };
    Ok(ClickEvent {
        event_id,
        time_ms,
        kind,
        session_id,
        user_id,
        url,
        referrer,
        ip,
        user_agent,
        device,
        country,
        properties,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], BadRecord> {
        let end = self.at.checked_add(n).ok_or(BadRecord("truncated"))?;
        let slice = self.bytes.get(self.at..end).ok_or(BadRecord("truncated"))?;
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], BadRecord> {
        self.take(N)?.try_into().map_err(|_| BadRecord("truncated"))
    }

    fn u8(&mut self) -> Result<u8, BadRecord> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, BadRecord> {
        self.array().map(u32::from_le_bytes)
    }

    fn i32(&mut self) -> Result<i32, BadRecord> {
        self.array().map(i32::from_le_bytes)
    }

    fn i64(&mut self) -> Result<i64, BadRecord> {
        self.array().map(i64::from_le_bytes)
    }

    fn opt(&mut self) -> Result<Option<String>, BadRecord> {
        let len = self.u32()?;
        if len == ABSENT {
            return Ok(None);
        }
        let bytes = self.take(len as usize)?;
        String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|_| BadRecord("text is not UTF-8"))
    }

    fn string(&mut self) -> Result<String, BadRecord> {
        self.opt()?.ok_or(BadRecord("a required field is absent"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(props: bool) -> ClickEvent {
        let json = if props {
            r#"{"event_id":"e1","event_time":"2026-11-01T10:00:00.250Z","event_type":"ad_click",
               "session_id":"s1","user_id":"u1","url":"/p/1","referrer":"https://r.example/",
               "ip":"203.0.113.7","user_agent":"Mozilla/5.0","device":"mobile","country":"DE",
               "properties":{"price":19.99,"sku":"BT-42","n":[1,2]}}"#
        } else {
            r#"{"event_id":"e2","event_time":"2026-11-01T10:00:00Z","event_type":"page_view",
               "session_id":"s2","url":"/"}"#
        };
        crate::event::decode(json.as_bytes()).expect("valid")
    }

    #[test]
    fn events_and_markers_round_trip() {
        for record in [
            ShuffleRecord::Event {
                origin: 3,
                offset: 1 << 40,
                event: event(true),
            },
            ShuffleRecord::Event {
                origin: 0,
                offset: 0,
                event: event(false),
            },
            ShuffleRecord::Marker(Marker {
                origin: 7,
                watermark: i64::MIN,
                idle: true,
                origins: 12,
            }),
        ] {
            let bytes = record.encode();
            assert_eq!(ShuffleRecord::decode(&bytes), Ok(record));
        }
    }

    #[test]
    fn foreign_or_damaged_bytes_are_refused_without_panicking() {
        let good = ShuffleRecord::Event {
            origin: 1,
            offset: 5,
            event: event(true),
        }
        .encode();
        // Every truncation, and one byte too many.
        for n in 0..good.len() {
            assert!(ShuffleRecord::decode(&good[..n]).is_err(), "prefix {n}");
        }
        let mut long = good.clone();
        long.push(0);
        assert_eq!(
            ShuffleRecord::decode(&long),
            Err(BadRecord("trailing bytes"))
        );
        assert!(ShuffleRecord::decode(b"{\"event_id\":1}").is_err());
        // A length that points far past the end.
        let mut huge = good[..14].to_vec();
        huge.extend_from_slice(&(u32::MAX - 1).to_le_bytes());
        assert!(ShuffleRecord::decode(&huge).is_err());
    }

    #[test]
    fn a_compact_event_is_smaller_than_its_json() {
        let e = event(true);
        let record = ShuffleRecord::Event {
            origin: 0,
            offset: 0,
            event: e.clone(),
        };
        assert!(record.encode().len() < crate::event::encode(&e).len());
    }
}
