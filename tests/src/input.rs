//! The suites' input: generated clickstream with labelled anomalies (so the detectors alert),
//! a trailer a day later that moves every partition's watermark past every window (so the
//! windows of the events close in any run), and poison records of every kind, each with the
//! dead-letter reason the documentation gives it.

use clickwatch::event::{ClickEvent, EventKind, encode};
use clickwatch::generator::{Generator, GeneratorSettings, Scenario, parse_anomalies};

/// A record to produce: its key (the session id, as the generator's Kafka producer keys) and
/// its bytes.
pub type Record = (String, Vec<u8>);

/// One poison record and what must become of it.
#[derive(Debug, Clone)]
pub struct Poison {
    /// What is wrong with it, for messages.
    pub kind: &'static str,
    /// The dead-letter reason it must get.
    pub reason: &'static str,
    /// Where it goes in the record sequence (index of the record before which it is inserted).
    pub at: usize,
    pub record: Record,
}

/// The whole input.
pub struct Input {
    /// Every record in produce order: events, poison, the trailer.
    pub records: Vec<Record>,
    /// Ids of the events the raw store must hold, exactly once each.
    pub stored_ids: std::collections::BTreeSet<String>,
    /// The poison records.
    pub poison: Vec<Poison>,
    /// Results with a window starting at or after this instant are the trailer's own and are
    /// not compared.
    pub cutoff_ms: i64,
    /// Id of the event whose properties hold an integer beyond a double.
    pub big_number_id: String,
}

/// An integer no `f64` holds exactly; the raw store must keep it digit for digit.
pub const BIG_NUMBER: &str = "123456789012345678901234567890";

fn patched(event: &ClickEvent, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut json: serde_json::Value = serde_json::from_str(&encode(event)).expect("encoded event");
    edit(&mut json);
    json.to_string().into_bytes()
}

/// `n` generated events (seed `seed`) with a bot, a traffic spike and click fraud injected,
/// then the trailer, with poison records spread through the first half.
pub fn input(seed: u64, n: usize) -> Input {
    let mut generator = Generator::new(GeneratorSettings {
        seed,
        mean_rate: 30.0,
        bot_fraction: 0.03,
        scenario: Scenario {
            items: parse_anomalies("bot,traffic-spike,click-fraud").expect("anomaly spec"),
            warmup_ms: 20 * 60_000,
            gap_ms: 3 * 60_000,
        },
        ..GeneratorSettings::default()
    });
    let events: Vec<ClickEvent> = (0..n).map(|_| generator.next_event()).collect();
    let last = events.iter().map(|e| e.time_ms).max().unwrap_or_default();
    // Midnight two days on: the trailer's windows (of any length dividing a day) start at or
    // after the cutoff.
    let cutoff_ms = (last.div_euclid(86_400_000) + 2) * 86_400_000;
    let mut stored_ids: std::collections::BTreeSet<String> =
        events.iter().map(|e| e.event_id.clone()).collect();

    let near = |i: usize| events[i.min(events.len() - 1)].clone();
    let step = (n / 2 / 12).max(1);
    let mut poison = Vec::new();
    let mut add = |kind, reason, bytes: Vec<u8>| {
        let at = step * (poison.len() + 1);
        let key = near(at).session_id;
        poison.push(Poison {
            kind,
            reason,
            at,
            record: (key, bytes),
        });
    };
    add("not JSON", "malformed_json", b"{not json".to_vec());
    add("empty record", "malformed_json", Vec::new());
    add(
        "not UTF-8",
        "malformed_json",
        vec![0xff, 0xfe, b'{', 0x80, b'}'],
    );
    add("a JSON array", "malformed_json", b"[1,2,3]".to_vec());
    add(
        "missing fields",
        "malformed_json",
        br#"{"event_id":"poison-missing"}"#.to_vec(),
    );
    add(
        "empty event id",
        "schema_violation",
        patched(&near(step * 6), |j| j["event_id"] = "".into()),
    );
    add(
        "lower-case country",
        "schema_violation",
        patched(&near(step * 7), |j| {
            j["event_id"] = "poison-country".into();
            j["country"] = "de".into();
        }),
    );
    add(
        "time not RFC 3339",
        "schema_violation",
        patched(&near(step * 8), |j| {
            j["event_id"] = "poison-time".into();
            j["event_time"] = "yesterday".into();
        }),
    );
    add(
        "time in 1970",
        "schema_violation",
        patched(&near(step * 9), |j| {
            j["event_id"] = "poison-1970".into();
            j["event_time"] = "1970-01-01T00:00:00Z".into();
        }),
    );
    add(
        "a 900 KiB record",
        "too_large",
        patched(&near(step * 10), |j| {
            j["event_id"] = "poison-huge".into();
            j["properties"] = serde_json::json!({ "blob": "x".repeat(900 * 1024) });
        }),
    );
    // Valid for the decoder, refused by PostgreSQL (no NUL in text): the plugins see it, the
    // raw store dead-letters it with its coordinates.
    add(
        "NUL in properties",
        "sink_rejected",
        patched(&near(step * 11), |j| {
            j["event_id"] = "poison-nul".into();
            j["properties"] = serde_json::json!({ "note": "a\u{0}b" });
        }),
    );

    // One valid event whose properties hold an integer beyond a double, written as text.
    let big = near(step * 12);
    let big_number_id = format!("{}-big", big.event_id);
    let mut big_bytes = patched(&big, |j| {
        j["event_id"] = big_number_id.clone().into();
        if let Some(map) = j.as_object_mut() {
            map.remove("properties");
        }
    });
    big_bytes.pop(); // the closing brace
    big_bytes.extend_from_slice(format!(r#","properties":{{"big":{BIG_NUMBER}}}}}"#).as_bytes());
    stored_ids.insert(big_number_id.clone());

    let mut records: Vec<Record> = Vec::with_capacity(n + poison.len() + 65);
    let mut pending = poison.iter().peekable();
    for (i, e) in events.iter().enumerate() {
        while let Some(p) = pending.next_if(|p| p.at == i) {
            records.push(p.record.clone());
        }
        if i == step * 12 {
            records.push((big.session_id.clone(), big_bytes.clone()));
        }
        records.push((e.session_id.clone(), encode(e).into_bytes()));
    }
    for (i, e) in events.iter().take(64).enumerate() {
        let mut t = e.clone();
        t.event_id = format!("trailer-{i}");
        t.session_id = format!("trailer-{i}");
        t.user_id = None;
        t.kind = EventKind::PageView;
        t.time_ms = cutoff_ms + i as i64;
        stored_ids.insert(t.event_id.clone());
        records.push((t.session_id.clone(), encode(&t).into_bytes()));
    }
    Input {
        records,
        stored_ids,
        poison,
        cutoff_ms,
        big_number_id,
    }
}
