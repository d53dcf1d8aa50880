//! JSON text of the host's own records (events, rows, dead letters, labels) for sinks and
//! dead letters, never an empty payload.
//!
//! Host types serialise without error today, but a `Serialize` impl can fail (a map with
//! non-string keys, a custom impl). An empty string in its place would be written as if it
//! were the record, and the record would be gone without a trace; the note says what was
//! there and why it is missing.

use serde::Serialize;

/// `item` as one line of JSON; if it cannot be serialised, a JSON object naming `what` and
/// the error (logged as well).
pub fn to_json_text(item: &impl Serialize, what: &str) -> String {
    match serde_json::to_string(item) {
        Ok(text) => text,
        Err(error) => {
            tracing::error!(what, %error, "a record could not be serialised; a note is written in its place");
            serde_json::json!({ "unserialisable": what, "error": error.to_string() }).to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Refuses;

    impl Serialize for Refuses {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("refused on purpose"))
        }
    }

    #[test]
    fn a_record_that_cannot_be_serialised_leaves_a_note_not_an_empty_payload() {
        let text = to_json_text(&Refuses, "aggregate row");
        let note: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(note["unserialisable"], "aggregate row");
        assert!(
            note["error"]
                .as_str()
                .unwrap()
                .contains("refused on purpose")
        );
        assert_eq!(to_json_text(&[1, 2], "list"), "[1,2]");
    }
}
