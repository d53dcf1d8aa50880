//! JSON decoding with validation, and encoding. Decoding never panics: any input either
//! becomes a [`ClickEvent`] or an [`InvalidEvent`] that says why.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::{ClickEvent, EventKind};

/// Largest accepted encoded event.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;
const MAX_ID_LEN: usize = 128;
const MAX_URL_LEN: usize = 4096;
const MAX_TEXT_LEN: usize = 1024;

/// Why an input record is not a valid event.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidEvent {
    /// Not JSON, or not the right shape.
    #[error("malformed JSON: {0}")]
    Malformed(String),
    /// Too big to be a click event.
    #[error("event is {0} bytes, over the {MAX_EVENT_BYTES}-byte limit")]
    TooLarge(usize),
    /// A field breaks a rule.
    #[error("field `{field}`: {problem}")]
    Field {
        /// The JSON field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

impl InvalidEvent {
    /// A short, stable label for metrics and dead letters.
    pub fn label(&self) -> &'static str {
        match self {
            InvalidEvent::Malformed(_) => "malformed_json",
            InvalidEvent::TooLarge(_) => "too_large",
            InvalidEvent::Field { .. } => "schema_violation",
        }
    }
}

/// The wire form: times are RFC 3339 text, everything optional is nullable or absent.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    event_id: String,
    event_time: String,
    event_type: EventKind,
    session_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_id: Option<String>,
    url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    referrer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    properties: Option<super::Properties>,
}

fn field(field: &'static str, problem: impl Into<String>) -> InvalidEvent {
    InvalidEvent::Field {
        field,
        problem: problem.into(),
    }
}

fn check_len(
    name: &'static str,
    value: &str,
    max: usize,
    required: bool,
) -> Result<(), InvalidEvent> {
    if required && value.trim().is_empty() {
        return Err(field(name, "must not be empty"));
    }
    if value.len() > max {
        return Err(field(
            name,
            format!("is {} bytes, over the {max}-byte limit", value.len()),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(field(name, "contains control characters"));
    }
    Ok(())
}

fn check_opt(
    name: &'static str,
    value: &Option<String>,
    max: usize,
) -> Result<Option<String>, InvalidEvent> {
    match value.as_deref() {
        None | Some("") => Ok(None),
        Some(v) => check_len(name, v, max, false).map(|()| Some(v.to_owned())),
    }
}

/// Decodes and validates one event from JSON bytes.
pub fn decode(bytes: &[u8]) -> Result<ClickEvent, InvalidEvent> {
    if bytes.len() > MAX_EVENT_BYTES {
        return Err(InvalidEvent::TooLarge(bytes.len()));
    }
    let wire: Wire =
        serde_json::from_slice(bytes).map_err(|e| InvalidEvent::Malformed(e.to_string()))?;
    check_len("event_id", &wire.event_id, MAX_ID_LEN, true)?;
    check_len("session_id", &wire.session_id, MAX_ID_LEN, true)?;
    check_len("url", &wire.url, MAX_URL_LEN, true)?;
    let time = DateTime::parse_from_rfc3339(&wire.event_time).map_err(|e| {
        field(
            "event_time",
            format!("{:?} is not an RFC 3339 time: {e}", wire.event_time),
        )
    })?;
    let time_ms = time.timestamp_millis();
    // 2000-01-01 .. 2100-01-01: anything outside is a clock or encoding bug, not a click.
    if !(946_684_800_000..4_102_444_800_000).contains(&time_ms) {
        return Err(field(
            "event_time",
            format!("{} is outside 2000..2100", wire.event_time),
        ));
    }
    let user_id = check_opt("user_id", &wire.user_id, MAX_ID_LEN)?;
    let referrer = check_opt("referrer", &wire.referrer, MAX_URL_LEN)?;
    let ip = check_opt("ip", &wire.ip, 64)?;
    let user_agent = check_opt("user_agent", &wire.user_agent, MAX_TEXT_LEN)?;
    let device = check_opt("device", &wire.device, 32)?;
    let country = check_opt("country", &wire.country, 2)?;
    if let Some(c) = &country
        && !(c.len() == 2 && c.chars().all(|c| c.is_ascii_uppercase()))
    {
        return Err(field(
            "country",
            format!("{c:?} is not an ISO 3166-1 alpha-2 code"),
        ));
    }
    Ok(ClickEvent {
        event_id: wire.event_id,
        time_ms,
        kind: wire.event_type,
        session_id: wire.session_id,
        user_id,
        url: wire.url,
        referrer,
        ip,
        user_agent,
        device,
        country,
        properties: wire.properties,
    })
}

/// Formats ms since the epoch as RFC 3339 with milliseconds, UTC.
pub fn format_time(time_ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(time_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Encodes an event as one line of JSON (no trailing newline).
pub fn encode(event: &ClickEvent) -> String {
    let wire = Wire {
        event_id: event.event_id.clone(),
        event_time: format_time(event.time_ms),
        event_type: event.kind,
        session_id: event.session_id.clone(),
        user_id: event.user_id.clone(),
        url: event.url.clone(),
        referrer: event.referrer.clone(),
        ip: event.ip.clone(),
        user_agent: event.user_agent.clone(),
        device: event.device.clone(),
        country: event.country.clone(),
        properties: event.properties.clone(),
    };
    crate::json_text::to_json_text(&wire, "event")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"event_id":"e1","event_time":"2026-11-28T10:00:00.250Z","event_type":"add_to_cart",
        "session_id":"s1","url":"https://shop.example/p/1","user_id":"u1","ip":"203.0.113.9",
        "country":"DE","device":"mobile","properties":{"price":19.99}}"#;

    #[test]
    fn decodes_and_round_trips() {
        let e = decode(GOOD.as_bytes()).unwrap();
        assert_eq!(e.kind, EventKind::AddToCart);
        assert_eq!(e.time_ms, 1_795_860_000_250);
        assert_eq!(e.user_id.as_deref(), Some("u1"));
        assert_eq!(decode(encode(&e).as_bytes()).unwrap(), e);
        // Properties are kept as sent, beyond what a double holds.
        let big = GOOD.replace("19.99", "123456789012345678901234567890");
        let e = decode(big.as_bytes()).unwrap();
        assert!(encode(&e).contains(r#""properties":{"price":123456789012345678901234567890}"#));
    }

    #[test]
    fn rejects_with_a_reason() {
        let cases: &[(&str, &str)] = &[
            ("not json", "malformed JSON"),
            (r#"{"event_id":"e"}"#, "missing field"),
            (&GOOD.replace("add_to_cart", "teleport"), "unknown variant"),
            (
                &GOOD.replace(r#""e1""#, r#""""#),
                "field `event_id`: must not be empty",
            ),
            (
                &GOOD.replace("2026-11-28T10:00:00.250Z", "yesterday"),
                "field `event_time`",
            ),
            (
                &GOOD.replace("2026-11-28", "1970-01-01"),
                "outside 2000..2100",
            ),
            (&GOOD.replace(r#""DE""#, r#""de""#), "field `country`"),
            (
                &GOOD.replace(r#"{"price":19.99}"#, "[19.99]"),
                "expected a JSON object",
            ),
            (
                &GOOD.replace(r#""mobile""#, r#""mobile","colour":"red""#),
                "unknown field `colour`",
            ),
        ];
        for (input, expected) in cases {
            let err = decode(input.as_bytes()).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{input}: got {err:?}, expected {expected:?}"
            );
        }
        let huge = format!(r#"{{"event_id":"{}"}}"#, "x".repeat(MAX_EVENT_BYTES));
        assert_eq!(decode(huge.as_bytes()).unwrap_err().label(), "too_large");
    }
}
