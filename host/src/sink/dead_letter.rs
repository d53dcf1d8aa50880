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
    /// The record's size in bytes when the payload holds only its first
    /// [`MAX_PAYLOAD_BYTES`] (the whole record stays at its input coordinates).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_truncated_from: Option<usize>,
}

/// Most bytes of a record a dead letter keeps: twice the event size limit, so every record
/// near the limit is kept whole, while a dead letter always fits a broker's default 1 MB
/// message limit (worst case: control characters escaped six-fold, or invalid UTF-8 as
/// replacement characters plus base64).
pub const MAX_PAYLOAD_BYTES: usize = 2 * crate::event::MAX_EVENT_BYTES;

impl DeadLetter {
    /// Names the input record's place: `origin` `topic/partition@offset`, and the three
    /// fields, so the record can be found (and read again) at its source.
    pub fn at(mut self, topic: &str, partition: i32, offset: i64) -> Self {
        self.origin = format!("{topic}/{partition}@{offset}");
        self.topic = Some(topic.to_owned());
        self.partition = Some(partition);
        self.offset = Some(offset);
        self
    }

    /// Keeps `bytes` as the payload: as text, plus base64 when they are not valid UTF-8; only
    /// the first [`MAX_PAYLOAD_BYTES`] of a longer record (noting its size).
    pub fn with_bytes(mut self, bytes: &[u8]) -> Self {
        let bytes = if bytes.len() > MAX_PAYLOAD_BYTES {
            self.payload_truncated_from = Some(bytes.len());
            let mut end = MAX_PAYLOAD_BYTES;
            // Cut text on a character boundary, so a long valid record stays valid text.
            if let Err(e) = std::str::from_utf8(&bytes[..end])
                && e.error_len().is_none()
            {
                end = e.valid_up_to();
            }
            &bytes[..end]
        } else {
            bytes
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_record_is_kept_in_part_and_fits_a_broker_message() {
        let huge = "é".repeat(MAX_PAYLOAD_BYTES); // 2 bytes each
        let letter = DeadLetter::default().with_bytes(huge.as_bytes());
        assert_eq!(letter.payload_truncated_from, Some(huge.len()));
        assert!(letter.payload.len() <= MAX_PAYLOAD_BYTES && letter.payload_base64.is_none());
        let binary: Vec<u8> = (0..900 * 1024).map(|i| (i % 256) as u8).collect();
        let letter = DeadLetter::default().with_bytes(&binary);
        assert_eq!(letter.payload_truncated_from, Some(binary.len()));
        let json = serde_json::to_string(&letter).unwrap();
        assert!(json.len() < 1_000_000, "{} bytes", json.len());
        let small = DeadLetter::default().with_bytes(b"{\"a\":1}");
        assert_eq!(
            (small.payload.as_str(), small.payload_truncated_from),
            ("{\"a\":1}", None)
        );
    }
}
