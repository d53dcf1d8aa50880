//! The sink stage: writes each unit of work to every sink, retrying failures with backoff until
//! they succeed. A long outage therefore fills the bounded queues and slows the source
//! (backpressure); nothing is dropped. Only a write that can never succeed (bad data) is
//! dead-lettered instead.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::checkpoint::{Barrier, Checkpointer};
use crate::aggregate::{AggregateRow, TableSchema};
use crate::alert::Alert;
use crate::event::ClickEvent;
use crate::metrics::Metrics;
use crate::shuffle::{Routed, RoutedSink};
use crate::sink::{AggregateSink, AlertSink, DeadLetter, DeadLetterSink, RawSink, SinkError};

/// One unit of output, in order.
#[derive(Debug, Default)]
pub struct SinkWork {
    /// Tables to create or extend before `rows` are written.
    pub tables: Vec<TableSchema>,
    /// Valid events for the raw store.
    pub events: Vec<ClickEvent>,
    /// (partition, offset) of each event when the source has them; otherwise empty. A store
    /// ignores it unless it has exactly one entry per event.
    pub sources: Vec<(i32, i64)>,
    /// Aggregate rows.
    pub rows: Vec<AggregateRow>,
    /// Alerts.
    pub alerts: Vec<Alert>,
    /// Dead letters.
    pub dead: Vec<DeadLetter>,
    /// Records for the internal re-partitioning topics (stage 1 of a Kafka input).
    pub routed: Vec<Routed>,
    /// Signalled once every sink has durably accepted the work (the source may then commit).
    /// Several when work was merged: each is signalled.
    pub acks: Vec<oneshot::Sender<()>>,
    /// A checkpoint as of this work: stored once every sink accepted the work (and all
    /// before it).
    pub barrier: Option<Barrier>,
}

impl SinkWork {
    /// Appends `other` (which comes later).
    pub fn merge(&mut self, other: SinkWork) {
        self.tables.extend(other.tables);
        self.events.extend(other.events);
        self.sources.extend(other.sources);
        self.rows.extend(other.rows);
        self.alerts.extend(other.alerts);
        self.dead.extend(other.dead);
        self.routed.extend(other.routed);
        // A merged checkpoint keeps its ack: dropping it would fail the checkpoint.
        self.acks.extend(other.acks);
        // The later checkpoint covers everything the earlier one did.
        if other.barrier.is_some() {
            self.barrier = other.barrier;
        }
    }

    /// `None` when there is nothing to write.
    pub fn nonempty(self) -> Option<Self> {
        let empty = self.tables.is_empty()
            && self.events.is_empty()
            && self.rows.is_empty()
            && self.alerts.is_empty()
            && self.dead.is_empty()
            && self.routed.is_empty()
            && self.acks.is_empty()
            && self.barrier.is_none();
        (!empty).then_some(self)
    }
}

/// The sinks of one pipeline.
pub struct Sinks {
    /// Raw events.
    pub raw: Box<dyn RawSink>,
    /// Aggregates.
    pub aggregates: Box<dyn AggregateSink>,
    /// Alerts.
    pub alerts: Box<dyn AlertSink>,
    /// Dead letters.
    pub dead_letters: Box<dyn DeadLetterSink>,
    /// The internal topics of a Kafka input's key groups (`None` for the embedded sources,
    /// which do not re-partition).
    pub routed: Option<Box<dyn RoutedSink>>,
    /// Where barriers' checkpoints go (`None`: the pipeline keeps no state, or a Kafka input,
    /// whose checkpoints are confirmed by acks).
    pub checkpoints: Option<Box<dyn Checkpointer>>,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Retries an async write expression until it succeeds or fails permanently; logs what it
/// waits for. (A macro rather than a closure-taking fn: async closures borrowing the work are
/// not `Send` on stable.)
macro_rules! retry {
    ($metrics:expr, $what:expr, $op:expr) => {{
        let mut backoff = FIRST_BACKOFF;
        loop {
            match $op.await {
                Ok(v) => break Ok(v),
                Err(e) if !e.retryable => break Err(e),
                Err(error) => {
                    Metrics::add(&$metrics.sink_retries, 1);
                    tracing::warn!(sink = error.sink, what = $what, %error, retry_in_ms = backoff.as_millis() as u64,
                        "sink write failed; waiting and retrying (the pipeline is paused meanwhile)");
                    // Jitter, so that many hosts retrying one service do not retry in step.
                    let jitter = rand::random_range(0.0..0.25);
                    tokio::time::sleep(backoff.mul_f64(1.0 + jitter)).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }};
}

/// Writes work until the channel closes.
pub async fn run_sinks(mut sinks: Sinks, mut rx: mpsc::Receiver<SinkWork>, metrics: Arc<Metrics>) {
    // False once some output could not be written: no later checkpoint may be stored (it
    // would skip the lost output's input on a restart), so the input is read again instead.
    let mut confirmed = true;
    while let Some(mut work) = rx.recv().await {
        for table in &work.tables {
            if let Err(error) = retry!(
                metrics,
                "create table",
                sinks.aggregates.ensure_table(table)
            ) {
                tracing::error!(table = %table.name, %error, "cannot create aggregate table; its rows will be dead-lettered");
            }
        }
        if !work.events.is_empty() {
            match retry!(
                metrics,
                "raw events",
                sinks.raw.write_with_sources(&work.events, &work.sources)
            ) {
                Ok(written) => {
                    Metrics::add(&metrics.raw_rows, written.stored);
                    dead_letter_rejected(&mut work.dead, "raw store", written.rejected, |i| {
                        work.events.get(i).map(crate::event::encode)
                    });
                }
                Err(error) => dead_letter_all(
                    &mut work.dead,
                    &error,
                    work.events.iter().map(crate::event::encode),
                ),
            }
        }
        if !work.rows.is_empty() {
            match retry!(
                metrics,
                "aggregate rows",
                sinks.aggregates.write(&work.rows)
            ) {
                Ok(rejected) => {
                    Metrics::add(
                        &metrics.aggregate_rows,
                        (work.rows.len() - rejected.len()) as u64,
                    );
                    dead_letter_rejected(&mut work.dead, "aggregate store", rejected, |i| {
                        work.rows
                            .get(i)
                            .map(|r| serde_json::to_string(r).unwrap_or_default())
                    });
                }
                Err(error) => dead_letter_all(
                    &mut work.dead,
                    &error,
                    work.rows
                        .iter()
                        .map(|r| serde_json::to_string(r).unwrap_or_default()),
                ),
            }
        }
        if !work.alerts.is_empty() {
            match retry!(metrics, "alerts", sinks.alerts.write(&work.alerts)) {
                Ok(()) => {
                    Metrics::add(&metrics.alerts, work.alerts.len() as u64);
                    metrics.count_alerts(work.alerts.iter().map(|a| a.detector.as_str()));
                }
                Err(error) => dead_letter_all(
                    &mut work.dead,
                    &error,
                    work.alerts.iter().map(|a| a.to_json().to_string()),
                ),
            }
        }
        if !work.routed.is_empty() {
            match &mut sinks.routed {
                Some(sink) => match retry!(metrics, "routed events", sink.write(&work.routed)) {
                    Ok(()) => {
                        Metrics::add(&metrics.routed_records, work.routed.len() as u64);
                        let bytes = work.routed.iter().map(|r| r.bytes.len() as u64).sum();
                        Metrics::add(&metrics.routed_bytes, bytes);
                    }
                    Err(error) => {
                        // Only a broken producer fails for good; the input is not committed,
                        // so the next owner routes these events again.
                        tracing::error!(%error, records = work.routed.len(), "routed events could not be written; this work is not acknowledged");
                        work.acks.clear();
                        confirmed = false;
                    }
                },
                None => {
                    tracing::error!(
                        records = work.routed.len(),
                        "routed events without internal topics; this work is not acknowledged"
                    );
                    work.acks.clear();
                    confirmed = false;
                }
            }
        }
        if !work.dead.is_empty() {
            match retry!(
                metrics,
                "dead letters",
                sinks.dead_letters.write(&work.dead)
            ) {
                Ok(()) => Metrics::add(&metrics.dead_letters, work.dead.len() as u64),
                Err(error) => {
                    tracing::error!(%error, count = work.dead.len(), "dead letters could not be written; this work is not acknowledged, so its input is not committed");
                    // Without the ack a Kafka checkpoint is not committed: the records are
                    // read again by the next owner instead of being lost.
                    work.acks.clear();
                    confirmed = false;
                }
            }
        }
        for ack in work.acks.drain(..) {
            let _ = ack.send(());
        }
        if let Some(barrier) = work.barrier.take() {
            store_checkpoint(&mut sinks, &barrier, confirmed, &metrics).await;
        }
    }
}

/// Stores a barrier's checkpoint once its work is confirmed. A failure is logged and counted:
/// the previous checkpoint stays, so a restart reads more input again, never less.
async fn store_checkpoint(
    sinks: &mut Sinks,
    barrier: &Barrier,
    confirmed: bool,
    metrics: &Metrics,
) {
    let Some(store) = &mut sinks.checkpoints else {
        return;
    };
    if !confirmed {
        Metrics::add(&metrics.checkpoint_failures, 1);
        tracing::error!(source = %barrier.source, "output before this checkpoint was not written; the checkpoint is not stored");
        return;
    }
    match store.store(barrier).await {
        Ok(()) => {
            Metrics::add(&metrics.checkpoints, 1);
            tracing::debug!(source = %barrier.source, "checkpoint stored");
        }
        Err(error) => {
            Metrics::add(&metrics.checkpoint_failures, 1);
            tracing::error!(%error, "checkpoint not stored; a restart resumes from the previous one");
        }
    }
}

/// Dead-letters the records a store refused one by one (`rejected`: index, reason).
fn dead_letter_rejected(
    dead: &mut Vec<DeadLetter>,
    store: &str,
    rejected: Vec<(usize, String)>,
    payload: impl Fn(usize) -> Option<String>,
) {
    for (index, reason) in rejected {
        tracing::warn!(store, %reason, "the store refused a record; it goes to the dead letters");
        dead.push(DeadLetter {
            reason: "sink_rejected".into(),
            detail: reason,
            origin: store.into(),
            payload: payload(index).unwrap_or_default(),
            ..DeadLetter::default()
        });
    }
}

fn dead_letter_all(
    dead: &mut Vec<DeadLetter>,
    error: &SinkError,
    payloads: impl Iterator<Item = String>,
) {
    tracing::error!(%error, "sink refused a write permanently; its records go to the dead letters");
    dead.extend(payloads.map(|payload| DeadLetter {
        reason: "sink_rejected".into(),
        detail: error.to_string(),
        origin: error.sink.into(),
        payload,
        ..DeadLetter::default()
    }));
}
