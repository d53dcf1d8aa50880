//! What is kept per open session and per segment of a window, and the rows they become.

use std::collections::BTreeMap;

use clickwatch_sdk::prelude::*;
use serde::{Deserialize, Serialize};

/// Table of closed sessions.
pub const SESSIONS: &str = "engagement_sessions";
/// Table of per-window segments.
pub const SEGMENTS: &str = "engagement_segments";

/// An open session: about 120 bytes plus its id, device and country.
///
/// Snapshots use one-letter keys and leave out empty fields: thousands of sessions are open at
/// any time (each stays open for the inactivity timeout), and the snapshot must serialise
/// within the host's per-call deadline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    #[serde(rename = "f")]
    pub first_ms: i64,
    #[serde(rename = "l")]
    pub last_ms: i64,
    #[serde(rename = "e")]
    pub events: u32,
    #[serde(rename = "p", default)]
    pub pages: u32,
    #[serde(rename = "c", default, skip_serializing_if = "std::ops::Not::not")]
    pub cart: bool,
    #[serde(rename = "b", default, skip_serializing_if = "std::ops::Not::not")]
    pub purchase: bool,
    /// Whether the user was seen before: decided when the session closes (see
    /// [`crate::visitors`]); `None` before, and for a session without a user id. (Older
    /// snapshots hold sessions decided at their first event; they keep that answer.)
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub returning: Option<bool>,
    /// The user id of its first event that carries one.
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

impl Session {
    /// A session whose first event is at `t`.
    pub fn new(t: i64) -> Self {
        Session {
            first_ms: t,
            last_ms: t,
            events: 0,
            pages: 0,
            cart: false,
            purchase: false,
            returning: None,
            user: None,
            device: None,
            country: None,
        }
    }

    /// A single-event visit.
    pub fn bounce(&self) -> bool {
        self.events <= 1
    }

    /// `new`, `returning` or `anonymous` (no user id); a session with a user counts as `new`
    /// until it is decided at close.
    pub fn visitor(&self) -> &'static str {
        match (self.returning, &self.user) {
            (Some(true), _) => "returning",
            (Some(false), _) | (None, Some(_)) => "new",
            (None, None) => "anonymous",
        }
    }

    /// Its `engagement_sessions` row.
    pub fn row(&self, id: &str) -> Vec<Value> {
        vec![
            id.into(),
            Value::Timestamp(self.first_ms),
            Value::Timestamp(self.last_ms),
            Value::Int64(self.last_ms - self.first_ms),
            Value::Int64(i64::from(self.pages)),
            Value::Int64(i64::from(self.events)),
            self.bounce().into(),
            self.cart.into(),
            self.purchase.into(),
            self.visitor().into(),
            self.device.clone().into(),
            self.country.clone().into(),
        ]
    }
}

/// The declaration of both tables.
pub fn tables() -> [Table; 2] {
    [
        Table::new(
            SESSIONS,
            vec![
                Column::new("session_id", ColumnType::Text),
                Column::new("session_start", ColumnType::Timestamp),
                Column::new("session_end", ColumnType::Timestamp),
                Column::new("duration_ms", ColumnType::Int64),
                Column::new("pages", ColumnType::Int64),
                Column::new("events", ColumnType::Int64),
                Column::new("bounce", ColumnType::Boolean),
                Column::new("reached_cart", ColumnType::Boolean),
                Column::new("reached_purchase", ColumnType::Boolean),
                Column::new("visitor", ColumnType::Text),
                Column::nullable("device", ColumnType::Text),
                Column::nullable("country", ColumnType::Text),
            ],
            &["session_id", "session_start"],
        ),
        Table::new(
            SEGMENTS,
            vec![
                Column::new("window_start", ColumnType::Timestamp),
                Column::new("window_end", ColumnType::Timestamp),
                Column::new("dimension", ColumnType::Text),
                Column::new("segment", ColumnType::Text),
                Column::new("sessions", ColumnType::Int64),
                Column::new("bounces", ColumnType::Int64),
                Column::new("bounce_rate", ColumnType::Float64),
                Column::new("avg_duration_ms", ColumnType::Float64),
                Column::new("avg_pages", ColumnType::Float64),
                Column::new("cart_sessions", ColumnType::Int64),
                Column::new("purchase_sessions", ColumnType::Int64),
                Column::new("purchase_rate", ColumnType::Float64),
            ],
            &["window_start", "dimension", "segment"],
        ),
    ]
}

/// Totals of one segment in one window.
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub sessions: i64,
    pub bounces: i64,
    pub duration_ms: i64,
    pub pages: i64,
    pub cart: i64,
    pub purchase: i64,
}

/// Longest device or country value used as a segment name; longer values are cut, so a
/// hostile value cannot bloat state.
const MAX_SEGMENT_BYTES: usize = 32;

fn segment_name(v: Option<&str>) -> String {
    match v {
        None | Some("") => "unknown".into(),
        Some(s) => {
            let mut end = s.len().min(MAX_SEGMENT_BYTES);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s[..end].to_owned()
        }
    }
}

/// One window's segments: (dimension, segment) -> totals.
pub type Window = BTreeMap<(String, String), Segment>;

/// Adds a closed session to its window under every dimension.
pub fn add(window: &mut Window, s: &Session) {
    let keys = [
        ("all", "*".to_owned()),
        ("device", segment_name(s.device.as_deref())),
        ("country", segment_name(s.country.as_deref())),
        ("visitor", s.visitor().to_owned()),
    ];
    for (dimension, segment) in keys {
        let t = window.entry((dimension.to_owned(), segment)).or_default();
        t.sessions += 1;
        t.bounces += i64::from(s.bounce());
        t.duration_ms += s.last_ms - s.first_ms;
        t.pages += i64::from(s.pages);
        t.cart += i64::from(s.cart);
        t.purchase += i64::from(s.purchase);
    }
}

/// The `engagement_segments` rows of a closed window.
pub fn rows(start: i64, end: i64, window: &Window) -> impl Iterator<Item = Vec<Value>> + '_ {
    window.iter().map(move |((dimension, segment), t)| {
        let n = t.sessions.max(1) as f64;
        vec![
            Value::Timestamp(start),
            Value::Timestamp(end),
            dimension.as_str().into(),
            segment.as_str().into(),
            Value::Int64(t.sessions),
            Value::Int64(t.bounces),
            (t.bounces as f64 / n).into(),
            (t.duration_ms as f64 / n).into(),
            (t.pages as f64 / n).into(),
            Value::Int64(t.cart),
            Value::Int64(t.purchase),
            (t.purchase as f64 / n).into(),
        ]
    })
}
