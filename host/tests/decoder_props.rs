//! Property tests of event decoding and the dead-letter path (issue 12's fuzzing item, with
//! proptest since no nightly toolchain for cargo-fuzz is installed here): whatever bytes
//! arrive, decoding never panics; a record it refuses becomes a dead letter that keeps the
//! original bytes (exactly, or the first `MAX_PAYLOAD_BYTES` and the size) and fits a broker's
//! default 1 MB message limit; an event it accepts encodes and decodes back to itself.
//!
//! CI runs the default number of cases. A long run (the 10 minutes in docs/reliability.md):
//! `PROPTEST_CASES=400000 cargo test --release -p clickwatch --test decoder_props`.

use clickwatch::event::{MAX_EVENT_BYTES, decode, encode};
use clickwatch::sink::DeadLetter;
use clickwatch::sink::MAX_PAYLOAD_BYTES;
use proptest::prelude::*;

/// What the sources do with a record that does not decode.
fn letter(bytes: &[u8]) -> Option<DeadLetter> {
    decode(bytes).err().map(|e| {
        DeadLetter {
            reason: e.label().to_owned(),
            detail: e.to_string(),
            origin: "props".into(),
            ..DeadLetter::default()
        }
        .with_bytes(bytes)
    })
}

fn check_letter(bytes: &[u8]) -> Result<(), TestCaseError> {
    let Some(letter) = letter(bytes) else {
        return Ok(());
    };
    prop_assert!(!letter.reason.is_empty() && !letter.detail.is_empty());
    let kept: Vec<u8> = match &letter.payload_base64 {
        Some(b64) => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("valid base64")
        }
        None => letter.payload.clone().into_bytes(),
    };
    match letter.payload_truncated_from {
        None => prop_assert_eq!(&kept[..], bytes),
        Some(size) => {
            prop_assert_eq!(size, bytes.len());
            prop_assert!(bytes.starts_with(&kept));
            prop_assert!(kept.len() <= MAX_PAYLOAD_BYTES);
        }
    }
    let json = serde_json::to_string(&letter).expect("a dead letter serialises");
    prop_assert!(
        json.len() < 1_000_000,
        "dead letter of {} bytes",
        json.len()
    );
    Ok(())
}

fn valid_line() -> impl Strategy<Value = serde_json::Value> {
    (
        "[a-z0-9-]{1,40}",
        0i64..4_000_000_000_000,
        prop::sample::select(vec![
            "page_view",
            "click",
            "add_to_cart",
            "purchase",
            "warp",
        ]),
        "[ -~]{0,30}",
        prop::option::of("[0-9.:a-f]{0,20}"),
    )
        .prop_map(|(id, ms, kind, url, ip)| {
            let time = chrono::DateTime::from_timestamp_millis(ms)
                .unwrap_or_default()
                .to_rfc3339();
            serde_json::json!({
                "event_id": id, "event_time": time, "event_type": kind,
                "session_id": "s", "url": url, "ip": ip,
            })
        })
}

/// A JSON value of any shape, for replacing a field of a valid event.
fn any_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        ".{0,40}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_and_refusals_keep_the_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        check_letter(&bytes)?;
    }

    #[test]
    fn records_near_and_over_the_size_limit(fill in any::<u8>(), extra in 0usize..4096, wrap in any::<bool>()) {
        let mut bytes = vec![fill; MAX_EVENT_BYTES - 2048 + extra];
        if wrap {
            bytes[0] = b'{';
        }
        check_letter(&bytes)?;
        // Far over it: twice the dead letter's payload cap.
        check_letter(&vec![fill; 2 * MAX_PAYLOAD_BYTES + extra])?;
    }

    #[test]
    fn mutated_events_decode_or_are_refused_and_accepted_ones_round_trip(
        base in valid_line(),
        field in prop::sample::select(vec!["event_id", "event_time", "event_type", "session_id", "url",
            "ip", "user_id", "referrer", "user_agent", "device", "country", "properties", "extra"]),
        value in any_json(),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut object = base;
        object[field] = value;
        let mut bytes = serde_json::to_vec(&object).expect("json");
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        match decode(&bytes) {
            Ok(event) => {
                let again = decode(encode(&event).as_bytes()).expect("an accepted event re-decodes");
                prop_assert_eq!(again, event);
            }
            Err(_) => check_letter(&bytes)?,
        }
    }
}
