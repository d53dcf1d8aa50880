//! A dead letter: an input record the pipeline could not process, kept with the reason and,
//! for Kafka records, the exact place it came from.

use serde::Serialize;

/// One dead letter.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DeadLetter {
    /// Short stable label: `malformed_json`, `schema_violation`, `too_large`, `late`, ...
    pub reason: String,
    /// Human explanation.
    pub detail: String,
    /// Where the record came from (file and line, topic/partition@offset, ...).
    pub origin: String,
    /// The original record, as text (invalid UTF-8 replaced; see `payload_base64`).
    pub payload: String,
    /// The original bytes, base64, when they are not valid UTF-8 (so nothing is lost).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
    /// Kafka topic of the record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Kafka partition of the record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    /// Kafka offset of the record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
}

impl DeadLetter {
    /// Keeps `bytes` as the payload: as text, plus base64 when they are not valid UTF-8.
    pub fn with_bytes(mut self, bytes: &[u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(text) => self.payload = text.to_owned(),
            Err(_) => {
                use base64::Engine as _;
                self.payload = String::from_utf8_lossy(bytes).into_owned();
                self.payload_base64 = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
            }
        }
        self
    }
}
