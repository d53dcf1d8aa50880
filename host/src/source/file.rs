//! A JSON-lines file source: each line is decoded and validated; bad lines become dead letters
//! with their line number and reason. Reads as fast as the pipeline accepts.

use std::path::Path;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, watch};

use super::SourceMsg;
use crate::event::decode;
use crate::metrics::Metrics;
use crate::sink::DeadLetter;

/// Reads `path` to the end (then sends `Exhausted`) or until `stop`, after skipping the first
/// `skip` records (non-blank lines) that an earlier run already processed. Returns lines read.
pub async fn run_file(
    path: &Path,
    skip: u64,
    batch_size: usize,
    tx: mpsc::Sender<SourceMsg>,
    mut stop: watch::Receiver<bool>,
    metrics: &Metrics,
) -> std::io::Result<u64> {
    let file = tokio::fs::File::open(path).await?;
    let mut lines = BufReader::new(file).split(b'\n');
    let (mut events, mut dead) = (Vec::with_capacity(batch_size), Vec::new());
    let mut number = 0u64;
    let mut records = 0u64;
    let mut bytes = 0usize;
    loop {
        let line = tokio::select! {
            line = lines.next_segment() => line,
            _ = stop.changed() => Ok(None),
        };
        let line = match line {
            Ok(line) => line,
            Err(error) => {
                // Hand over what was read before the error; the error ends the source.
                Metrics::add(&metrics.events_in, events.len() as u64);
                Metrics::add(&metrics.events_invalid, dead.len() as u64);
                let _ = tx
                    .send(SourceMsg::Batch {
                        events,
                        dead,
                        from: None,
                    })
                    .await;
                return Err(error);
            }
        };
        let exhausted = line.is_none();
        if let Some(line) = line {
            number += 1;
            let line = line.strip_suffix(b"\r").unwrap_or(&line);
            if !line.iter().all(u8::is_ascii_whitespace) {
                records += 1;
            }
            if records > skip && !line.iter().all(u8::is_ascii_whitespace) {
                bytes += line.len();
                match decode(line) {
                    Ok(event) => events.push(event),
                    Err(e) => dead.push(
                        DeadLetter {
                            reason: e.label().to_owned(),
                            detail: e.to_string(),
                            origin: format!("{}:{number}", path.display()),
                            ..DeadLetter::default()
                        }
                        .with_bytes(line),
                    ),
                }
            }
        }
        if events.len() >= batch_size
            || dead.len() >= batch_size
            || bytes >= super::MAX_BATCH_BYTES
            || (exhausted && (!events.is_empty() || !dead.is_empty()))
        {
            bytes = 0;
            Metrics::add(&metrics.events_in, events.len() as u64);
            Metrics::add(&metrics.events_invalid, dead.len() as u64);
            let msg = SourceMsg::Batch {
                events: std::mem::take(&mut events),
                dead: std::mem::take(&mut dead),
                from: None,
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
