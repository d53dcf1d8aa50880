//! Ground-truth labels: what was injected (or simulated as a bot), when, and which entities a
//! correct alert may name. The JSON-lines form is the contract in `docs/anomaly-labels.md`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Label `kind` of legitimate traffic (flash sales, newsletters, slow ramps): not an anomaly;
/// no alert matches it, and false alerts inside its window are counted as surge alerts.
pub const SURGE_KIND: &str = "surge";

/// One thing an alert may be about: `page`, `site`, `session`, `ip`, `referrer`, `device`,
/// `category` (a category name), `subnet` (`a.b.c.0/24`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entity {
    /// Entity type, as in an alert's `entity_type`.
    #[serde(rename = "type")]
    pub entity_type: String,
    /// Entity id, as in an alert's `entity`.
    pub id: String,
}

impl Entity {
    /// An entity of `entity_type` named `id`.
    pub fn new(entity_type: &str, id: impl Into<String>) -> Self {
        Entity {
            entity_type: entity_type.to_owned(),
            id: id.into(),
        }
    }
}

/// One labelled anomaly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Label {
    /// Unique within a labels file.
    pub id: String,
    /// Anomaly kind: `traffic-spike`, `traffic-drop`, `bot`, `click-fraud`, `funnel-drop`; or
    /// `surge` for legitimate traffic.
    pub kind: String,
    /// Which flavour of the kind was injected (`page`, `site`, `regular`, `crawler`,
    /// `swarm`, `headless`, `ordinary`, `farm`, `category`...; a surge's `flash-sale`,
    /// `newsletter`, `slow-ramp`); scoring reports recall per variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Event time of the first affected event, ms.
    pub start_ms: i64,
    /// Event time of the last affected event, ms.
    pub end_ms: i64,
    /// Every entity a correct alert may name.
    pub entities: Vec<Entity>,
    /// Kind-specific strength (rate factor, events per minute, conversion factor).
    pub magnitude: f64,
    /// Human text.
    #[serde(default)]
    pub note: String,
}

/// A labels file that could not be read or written, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum LabelsError {
    /// I/O on the file failed.
    #[error("labels file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not a label.
    #[error("labels file {}, line {line}: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Why.
        source: serde_json::Error,
    },
    /// A label breaks a rule of the contract (docs/anomaly-labels.md).
    #[error("labels file {}, line {line}: {problem}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: String,
    },
}

/// Reads a JSON-lines labels file (blank lines are skipped).
pub fn read_labels(path: &Path) -> Result<Vec<Label>, LabelsError> {
    let io = |source| LabelsError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut labels = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let label: Label = serde_json::from_str(&line).map_err(|source| LabelsError::Parse {
            path: path.to_owned(),
            line: i + 1,
            source,
        })?;
        let invalid = |problem: String| LabelsError::Invalid {
            path: path.to_owned(),
            line: i + 1,
            problem,
        };
        if label.end_ms < label.start_ms {
            return Err(invalid(format!(
                "end_ms {} is before start_ms {}",
                label.end_ms, label.start_ms
            )));
        }
        // Detections are recorded per label id: two labels sharing one (e.g. label files of
        // two runs joined) would be detected together.
        if !ids.insert(label.id.clone()) {
            return Err(invalid(format!(
                "id {:?} is used by an earlier label; ids must be unique",
                label.id
            )));
        }
        labels.push(label);
    }
    Ok(labels)
}

/// Writes labels as JSON lines, replacing the file.
pub fn write_labels(path: &Path, labels: &[Label]) -> Result<(), LabelsError> {
    let io = |source| LabelsError::Io {
        path: path.to_owned(),
        source,
    };
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    for label in labels {
        let line = serde_json::to_string(label).map_err(|e| io(std::io::Error::other(e)))?;
        writeln!(out, "{line}").map_err(io)?;
    }
    out.flush().map_err(io)
}

/// Where the labels of an events file go by default: `<events>.labels.jsonl` beside it.
pub fn default_labels_path(events: &Path) -> PathBuf {
    let mut name = events
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".labels.jsonl");
    events.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.labels.jsonl");
        let labels = vec![Label {
            id: "a-3".into(),
            kind: "traffic-spike".into(),
            variant: Some("page".into()),
            start_ms: 1,
            end_ms: 2,
            entities: vec![Entity::new("page", "/p/12")],
            magnitude: 5.0,
            note: "5x".into(),
        }];
        write_labels(&path, &labels).unwrap();
        assert_eq!(read_labels(&path).unwrap(), labels);
        std::fs::write(&path, "{}\n").unwrap();
        let err = read_labels(&path).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn default_path_sits_beside_the_events() {
        assert_eq!(
            default_labels_path(Path::new("/d/ev.jsonl")),
            PathBuf::from("/d/ev.jsonl.labels.jsonl")
        );
    }

    #[test]
    fn duplicate_ids_and_backwards_windows_are_refused_with_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.labels.jsonl");
        let line = |id: &str, start: i64, end: i64| {
            format!(
                r#"{{"id":"{id}","kind":"bot","start_ms":{start},"end_ms":{end},"entities":[],"magnitude":1.0,"note":""}}"#
            )
        };
        std::fs::write(&path, [line("a-0", 1, 2), line("a-0", 3, 4)].join("\n")).unwrap();
        let error = read_labels(&path).unwrap_err().to_string();
        assert!(
            error.contains("line 2") && error.contains("unique"),
            "{error}"
        );
        std::fs::write(&path, [line("a-0", 1, 2), line("a-1", 5, 4)].join("\n")).unwrap();
        let error = read_labels(&path).unwrap_err().to_string();
        assert!(
            error.contains("line 2") && error.contains("before"),
            "{error}"
        );
        std::fs::write(&path, [line("a-0", 1, 2), line("a-1", 5, 5)].join("\n")).unwrap();
        assert_eq!(read_labels(&path).unwrap().len(), 2);
    }
}
