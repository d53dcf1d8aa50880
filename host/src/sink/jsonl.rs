//! JSON-lines file sinks for alerts and dead letters: appended, flushed and synced per write so
//! that an acknowledged write survives a crash.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

use super::{AlertSink, DeadLetter, DeadLetterSink, SinkError};
use crate::alert::Alert;

async fn open(path: &Path, sink: &'static str) -> Result<tokio::fs::File, SinkError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| SinkError::permanent(sink, format!("{}: {e}", parent.display())))?;
    }
    tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .map_err(|e| SinkError::permanent(sink, format!("{}: {e}", path.display())))
}

async fn append(
    file: &mut tokio::fs::File,
    buf: &[u8],
    sink: &'static str,
) -> Result<(), SinkError> {
    file.write_all(buf)
        .await
        .map_err(|e| SinkError::transient(sink, e))?;
    file.sync_data()
        .await
        .map_err(|e| SinkError::transient(sink, e))
}

/// Alerts as JSON lines (the schema of `Alert::to_json`), optionally echoed to stdout.
#[derive(Debug)]
pub struct JsonLinesAlertSink {
    path: PathBuf,
    file: tokio::fs::File,
    stdout: bool,
}

impl JsonLinesAlertSink {
    /// Opens (appends to) `path`.
    pub async fn open(path: &Path, stdout: bool) -> Result<Self, SinkError> {
        Ok(JsonLinesAlertSink {
            path: path.to_owned(),
            file: open(path, "alerts").await?,
            stdout,
        })
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl AlertSink for JsonLinesAlertSink {
    async fn write(&mut self, alerts: &[Alert]) -> Result<(), SinkError> {
        if alerts.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for alert in alerts {
            buf.extend_from_slice(alert.to_json().to_string().as_bytes());
            buf.push(b'\n');
        }
        append(&mut self.file, &buf, "alerts").await?;
        if self.stdout {
            for a in alerts {
                println!(
                    "ALERT {} {} {}={}: {}",
                    a.detector, a.kind, a.entity_type, a.entity, a.message
                );
            }
        }
        Ok(())
    }
}

/// Dead letters as JSON lines.
#[derive(Debug)]
pub struct JsonLinesDeadLetterSink {
    file: tokio::fs::File,
}

impl JsonLinesDeadLetterSink {
    /// Opens (appends to) `path`.
    pub async fn open(path: &Path) -> Result<Self, SinkError> {
        Ok(JsonLinesDeadLetterSink {
            file: open(path, "dead_letters").await?,
        })
    }
}

#[async_trait]
impl DeadLetterSink for JsonLinesDeadLetterSink {
    async fn write(&mut self, letters: &[DeadLetter]) -> Result<(), SinkError> {
        if letters.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for letter in letters {
            buf.extend_from_slice(crate::json_text::to_json_text(letter, "dead letter").as_bytes());
            buf.push(b'\n');
        }
        append(&mut self.file, &buf, "dead_letters").await
    }
}
