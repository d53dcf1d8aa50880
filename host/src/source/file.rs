//! A JSON-lines file source: each line is decoded and validated; bad lines become dead letters
//! with their line number and reason. Reads as fast as the pipeline accepts.

use std::path::Path;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, watch};

use super::SourceMsg;
use crate::event::decode;
use crate::metrics::Metrics;
use crate::sink::DeadLetter;

/// Reads `path` to the end (then sends `Exhausted`) or until `stop`. Returns lines read.
pub async fn run_file(
    path: &Path,
    batch_size: usize,
    tx: mpsc::Sender<SourceMsg>,
    mut stop: watch::Receiver<bool>,
    metrics: &Metrics,
) -> std::io::Result<u64> {
    let file = tokio::fs::File::open(path).await?;
    let mut lines = BufReader::new(file).split(b'\n');
    let (mut events, mut dead) = (Vec::with_capacity(batch_size), Vec::new());
    let mut number = 0u64;
    loop {
        let line = tokio::select! {
            line = lines.next_segment() => line?,
            _ = stop.changed() => None,
        };
        let exhausted = line.is_none();
        if let Some(line) = line {
            number += 1;
            let line = line.strip_suffix(b"\r").unwrap_or(&line);
            if !line.iter().all(u8::is_ascii_whitespace) {
                match decode(line) {
                    Ok(event) => events.push(event),
                    Err(e) => dead.push(DeadLetter {
                        reason: e.label().to_owned(),
                        detail: e.to_string(),
                        origin: format!("{}:{number}", path.display()),
                        payload: String::from_utf8_lossy(line).into_owned(),
                    }),
                }
            }
        }
        if events.len() >= batch_size
            || dead.len() >= batch_size
            || (exhausted && (!events.is_empty() || !dead.is_empty()))
        {
            Metrics::add(&metrics.events_in, events.len() as u64);
            Metrics::add(&metrics.events_invalid, dead.len() as u64);
            let msg = SourceMsg::Batch {
                events: std::mem::take(&mut events),
                dead: std::mem::take(&mut dead),
            };
            if tx.send(msg).await.is_err() {
                return Ok(number);
            }
        }
        if exhausted {
            if !*stop.borrow() {
                let _ = tx.send(SourceMsg::Exhausted).await;
            }
            return Ok(number);
        }
    }
}
