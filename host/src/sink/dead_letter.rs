//! A dead letter: an input record the pipeline could not process, kept with the reason.

use serde::Serialize;

/// One dead letter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    /// Short stable label: `malformed_json`, `schema_violation`, `too_large`, `late`, ...
    pub reason: String,
    /// Human explanation.
    pub detail: String,
    /// Where the record came from (file and line, topic/partition/offset, ...).
    pub origin: String,
    /// The original record, as text (invalid UTF-8 replaced).
    pub payload: String,
}
