//! Alerts as the host emits them: what a detector said, stamped with who said it. The JSON form
//! is the alert schema (`docs/alert-schema.md`).

use serde::Serialize;

use crate::event::format_time;

/// How bad an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth a look.
    Info,
    /// Probably wrong.
    Warning,
    /// Act now.
    Critical,
}

/// One alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Name of the detector plugin.
    pub detector: String,
    /// Its version.
    pub detector_version: String,
    /// Machine-readable kind.
    pub kind: String,
    /// Severity.
    pub severity: Severity,
    /// What it is about (session, ip, page, site...).
    pub entity_type: String,
    /// Which one.
    pub entity: String,
    /// Event time of the observation, ms.
    pub time_ms: i64,
    /// Start of the evidence window, ms.
    pub window_start_ms: i64,
    /// Evidence strength.
    pub score: f64,
    /// Human text.
    pub message: String,
    /// Extra evidence.
    pub details: serde_json::Value,
}

impl Alert {
    /// A deterministic id: the same detector raising the same alert again (e.g. after a replay)
    /// yields the same id, so consumers can de-duplicate.
    pub fn id(&self) -> String {
        // FNV-1a over the identifying fields; stable across processes and versions.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for part in [
            &self.detector,
            &self.kind,
            &self.entity_type,
            &self.entity,
            &self.window_start_ms.to_string(),
        ] {
            for byte in part.as_bytes().iter().chain(std::iter::once(&0xff)) {
                h ^= u64::from(*byte);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        format!("{h:016x}")
    }

    /// The documented JSON form.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "alert_id": self.id(),
            "detector": self.detector,
            "detector_version": self.detector_version,
            "kind": self.kind,
            "severity": self.severity,
            "entity_type": self.entity_type,
            "entity": self.entity,
            "event_time": format_time(self.time_ms),
            "window_start": format_time(self.window_start_ms),
            "score": self.score,
            "message": self.message,
            "details": self.details,
        })
    }
}
