//! Encoding events as PostgreSQL COPY text rows (tab-separated, `\N` for NULL, backslash
//! escapes), the fastest path into the server that sqlx exposes.

use std::fmt::Write;
use std::net::IpAddr;

use crate::event::{ClickEvent, format_time};

/// The staging table's columns, in COPY order.
pub const COLUMNS: &str = "event_id, event_time, event_type, session_id, user_id, url, referrer, ip, ip_raw, \
                           user_agent, device, country, properties, source_partition, source_offset";

fn field(buf: &mut Vec<u8>, value: Option<&str>) {
    match value {
        None => buf.extend_from_slice(b"\\N"),
        Some(s) => {
            for &b in s.as_bytes() {
                match b {
                    b'\\' => buf.extend_from_slice(b"\\\\"),
                    b'\t' => buf.extend_from_slice(b"\\t"),
                    b'\n' => buf.extend_from_slice(b"\\n"),
                    b'\r' => buf.extend_from_slice(b"\\r"),
                    _ => buf.push(b),
                }
            }
        }
    }
}

/// Appends one row for `event`.
pub fn encode_row(
    buf: &mut Vec<u8>,
    event: &ClickEvent,
    source: Option<(i32, i64)>,
    scratch: &mut String,
) {
    let valid_ip = event
        .ip
        .as_deref()
        .filter(|ip| ip.parse::<IpAddr>().is_ok());
    let raw_ip = if valid_ip.is_none() {
        event.ip.as_deref()
    } else {
        None
    };
    let properties = event.properties.as_ref().map(|p| p.as_str());
    scratch.clear();
    let _ = write!(scratch, "{}", format_time(event.time_ms));
    let fields: [Option<&str>; 13] = [
        Some(&event.event_id),
        Some(scratch.as_str()),
        Some(event.kind.as_str()),
        Some(&event.session_id),
        event.user_id.as_deref(),
        Some(&event.url),
        event.referrer.as_deref(),
        valid_ip,
        raw_ip,
        event.user_agent.as_deref(),
        event.device.as_deref(),
        event.country.as_deref(),
        properties,
    ];
    for f in fields {
        field(buf, f);
        buf.push(b'\t');
    }
    match source {
        Some((partition, offset)) => {
            scratch.clear();
            let _ = writeln!(scratch, "{partition}\t{offset}");
            buf.extend_from_slice(scratch.as_bytes());
        }
        None => buf.extend_from_slice(b"\\N\t\\N\n"),
    }
}

/// COPY text for `events`; `sources` is empty or gives each event's (partition, offset).
pub fn encode(events: &[ClickEvent], sources: &[(i32, i64)]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(events.len() * 320);
    let mut scratch = String::new();
    for (i, e) in events.iter().enumerate() {
        encode_row(&mut buf, e, sources.get(i).copied(), &mut scratch);
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;

    #[test]
    fn escapes_and_nulls() {
        let e = ClickEvent {
            event_id: "a\tb\\c".into(),
            time_ms: 0,
            kind: EventKind::Click,
            session_id: "s\nx".into(),
            user_id: None,
            url: "/".into(),
            referrer: None,
            ip: Some("not-an-ip".into()),
            user_agent: None,
            device: None,
            country: None,
            properties: None,
        };
        let row = String::from_utf8(encode(std::slice::from_ref(&e), &[])).unwrap();
        let cols: Vec<&str> = row.trim_end_matches('\n').split('\t').collect();
        assert_eq!(cols.len(), 15);
        assert_eq!(cols[0], "a\\tb\\\\c");
        assert_eq!(cols[1], "1970-01-01T00:00:00.000Z");
        assert_eq!(cols[3], "s\\nx");
        assert_eq!(cols[4], "\\N");
        assert_eq!((cols[7], cols[8]), ("\\N", "not-an-ip"));
        assert_eq!((cols[13], cols[14]), ("\\N", "\\N"));
        let row = String::from_utf8(encode(&[e], &[(3, 1234)])).unwrap();
        let cols: Vec<&str> = row.trim_end_matches('\n').split('\t').collect();
        assert_eq!((cols[13], cols[14]), ("3", "1234"));
    }
}
