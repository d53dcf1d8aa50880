//! The sink stage: writes each unit of work to every sink, retrying failures with backoff until
//! they succeed. A long outage therefore fills the bounded queues and slows the source
//! (backpressure); nothing is dropped. Only a write that can never succeed (bad data) is
//! dead-lettered instead.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::checkpoint::{Barrier, Checkpointer};
pub use super::give_up::GiveUp;
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
    /// The input topic `sources` are offsets of (a Kafka input), so a record the raw store
    /// refuses is dead-lettered with its coordinates.
    pub input: Option<Arc<str>>,
    /// Aggregate rows.
    pub rows: Vec<AggregateRow>,
    /// Alerts.
    pub alerts: Vec<Alert>,
    /// Dead letters.
    pub dead: Vec<DeadLetter>,
    /// Records for the internal re-partitioning topics (stage 1 of a Kafka input).
    pub routed: Vec<Routed>,
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
        if other.input.is_some() {
            self.input = other.input;
        }
        self.rows.extend(other.rows);
        self.alerts.extend(other.alerts);
        self.dead.extend(other.dead);
        self.routed.extend(other.routed);
        match (&mut self.barrier, other.barrier) {
            (Some(mine), Some(later)) => mine.merge(later),
            (mine, later @ Some(_)) => *mine = later,
            (_, None) => {}
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
    /// Where barriers' checkpoints go: the state topic of a Kafka input, the state folder of
    /// an embedded one (`None`: the pipeline keeps no state).
    pub checkpoints: Option<Box<dyn Checkpointer>>,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Retries an async write expression until it succeeds, fails permanently, or a stop gives up
/// on it (then the error is still `retryable`); logs what it waits for. (A macro rather than a
/// closure-taking fn: async closures borrowing the work are not `Send` on stable.)
macro_rules! retry {
    ($metrics:expr, $give_up:expr, $what:expr, $op:expr) => {
        retry!($metrics, $give_up, $what, $op, None::<&crate::metrics::SinkMeter>)
    };
    ($metrics:expr, $give_up:expr, $what:expr, $op:expr, $meter:expr) => {{
        let mut backoff = FIRST_BACKOFF;
        loop {
            match $op.await {
                Ok(v) => break Ok(v),
                Err(e) if !e.retryable => break Err(e),
                Err(e) if $give_up.due() => break Err(e),
                Err(error) => {
                    Metrics::add(&$metrics.sink_retries, 1);
                    if let Some(meter) = $meter {
                        Metrics::add(&meter.retries, 1);
                    }
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

/// Writes work until the channel closes; hands the sinks back (closing some blocks, e.g. a
/// consumer leaving its group, so the caller drops them off the async workers). Once
/// `give_up` is due, the rest of the work is drained unwritten and its checkpoints are not
/// stored, so the stages before can end.
pub async fn run_sinks(
    mut sinks: Sinks,
    mut rx: mpsc::Receiver<SinkWork>,
    metrics: Arc<Metrics>,
    mut give_up: GiveUp,
) -> Sinks {
    // False once some output could not be written: no later checkpoint may be stored (it
    // would skip the lost output's input on a restart), so the input is read again instead.
    let mut confirmed = true;
    let mut abandoned = false;
    // Without checkpoints nothing is read again after a restart: output that cannot be
    // written is lost for good, and is counted and reported as such.
    let replayable = sinks.checkpoints.is_some();
    while let Some(mut work) = rx.recv().await {
        metrics
            .sink_backlog
            .store(rx.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if abandoned {
            // Waiters on the barrier (a revoke) are released; nothing is stored.
            if let Some(barrier) = work.barrier.take() {
                barrier.settle();
            }
            continue;
        }
        if let Err(outcome) = write(&mut sinks, &mut work, &metrics, &mut give_up).await {
            confirmed = false;
            if outcome == Outcome::Lost && !replayable {
                Metrics::add(&metrics.output_lost, 1);
                tracing::error!(
                    "output that could not be written is lost: this pipeline keeps no checkpoints, so its input will not be read again"
                );
            }
            if outcome == Outcome::GaveUp {
                abandoned = true;
                Metrics::add(&metrics.checkpoint_failures, 1);
                tracing::error!(
                    "stopping with output still failing after the shutdown grace; it is not written, and no checkpoint after it is stored, so the next run reads its input again"
                );
            }
        }
        if let Some(barrier) = work.barrier.take() {
            if !abandoned {
                store_checkpoint(&mut sinks, &barrier, confirmed, &metrics).await;
            }
            barrier.settle();
        }
    }
    sinks
}

/// Why a unit of work was not wholly written.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Some output is lost for good (dead letters or routed events could not be written).
    Lost,
    /// A stop gave up on a write that kept failing.
    GaveUp,
}

/// What one sink's part of a unit of work came to: dead letters for what it refused, and
/// whether its output is lost or was given up on at a stop.
type Part = (Vec<DeadLetter>, Result<(), Outcome>);

/// Writes one unit of work to every sink. The raw store, the aggregates, the alerts and the
/// internal topics are independent, so they are written concurrently: a slow raw store does
/// not hold back the routed events the key groups' tasks wait for. Dead letters come last (the
/// stores' refusals are among them). The work counts as written only when every part is.
async fn write(
    sinks: &mut Sinks,
    work: &mut SinkWork,
    metrics: &Metrics,
    give_up: &mut GiveUp,
) -> Result<(), Outcome> {
    for table in &work.tables {
        if let Err(error) = retry!(
            metrics,
            give_up,
            "create table",
            sinks.aggregates.ensure_table(table)
        ) {
            if gave_up_on(&error) {
                return Err(Outcome::GaveUp);
            }
            tracing::error!(table = %table.name, %error, "cannot create aggregate table; its rows will be dead-lettered");
        }
    }
    let parts: [Part; 4] = {
        let work = &*work;
        let (raw, rows, alerts, routed) = tokio::join!(
            write_raw(sinks.raw.as_mut(), work, metrics, give_up.clone()),
            write_rows(sinks.aggregates.as_mut(), work, metrics, give_up.clone()),
            write_alerts(sinks.alerts.as_mut(), work, metrics, give_up.clone()),
            write_routed(sinks.routed.as_deref_mut(), work, metrics, give_up.clone()),
        );
        [raw, rows, alerts, routed]
    };
    let mut result = Ok(());
    for (dead, outcome) in parts {
        work.dead.extend(dead);
        match outcome {
            Err(Outcome::GaveUp) => return Err(Outcome::GaveUp),
            Err(Outcome::Lost) => result = Err(Outcome::Lost),
            Ok(()) => {}
        }
    }
    if !work.dead.is_empty() {
        let meter = metrics.sinks.meter("dead_letters");
        let started = Instant::now();
        match retry!(
            metrics,
            give_up,
            "dead letters",
            sinks.dead_letters.write(&work.dead),
            Some(&*meter)
        ) {
            Ok(()) => {
                Metrics::add(&metrics.dead_letters, work.dead.len() as u64);
                meter.wrote(work.dead.len() as u64, started.elapsed());
                metrics.count_dead_letters(work.dead.iter().map(|d| d.reason.as_str()));
            }
            Err(error) if gave_up_on(&error) => return Err(Outcome::GaveUp),
            Err(error) => {
                tracing::error!(%error, count = work.dead.len(), "dead letters could not be written; no later checkpoint is stored");
                result = Err(Outcome::Lost);
            }
        }
    }
    result
}

/// Whether a stop gave up on a write: a retryable error coming back from `retry!` means it did.
fn gave_up_on(error: &SinkError) -> bool {
    if error.retryable {
        tracing::warn!(sink = error.sink, %error, "write given up at shutdown");
    }
    error.retryable
}

/// A write that failed: given up on at a stop, or refused for good, when its records
/// (`payloads`) become dead letters.
fn failed(error: &SinkError, payloads: impl Iterator<Item = String>) -> Part {
    if gave_up_on(error) {
        return (Vec::new(), Err(Outcome::GaveUp));
    }
    (dead_letter_all(error, payloads), Ok(()))
}

async fn write_raw(
    raw: &mut dyn RawSink,
    work: &SinkWork,
    metrics: &Metrics,
    mut give_up: GiveUp,
) -> Part {
    if work.events.is_empty() {
        return (Vec::new(), Ok(()));
    }
    let meter = metrics.sinks.meter("raw");
    let started = Instant::now();
    let written = match retry!(
        metrics,
        give_up,
        "raw events",
        raw.write_with_sources(&work.events, &work.sources),
        Some(&*meter)
    ) {
        Ok(written) => written,
        Err(error) => return failed(&error, work.events.iter().map(crate::event::encode)),
    };
    Metrics::add(&metrics.raw_rows, written.stored);
    meter.wrote(
        (work.events.len() - written.rejected.len()) as u64,
        started.elapsed(),
    );
    Metrics::add(&meter.rejected, written.rejected.len() as u64);
    let located = work.sources.len() == work.events.len();
    let (sources, input) = (&work.sources, work.input.as_deref());
    let at = |i: usize| {
        located
            .then(|| sources.get(i).copied())
            .flatten()
            .zip(input)
    };
    let dead = rejected_letters(
        "raw store",
        written.rejected,
        |i| work.events.get(i).map(crate::event::encode),
        at,
    );
    (dead, Ok(()))
}

async fn write_rows(
    aggregates: &mut dyn AggregateSink,
    work: &SinkWork,
    metrics: &Metrics,
    mut give_up: GiveUp,
) -> Part {
    if work.rows.is_empty() {
        return (Vec::new(), Ok(()));
    }
    let json = |r: &AggregateRow| crate::json_text::to_json_text(r, "aggregate row");
    let meter = metrics.sinks.meter("aggregates");
    let started = Instant::now();
    let rejected = match retry!(
        metrics,
        give_up,
        "aggregate rows",
        aggregates.write(&work.rows),
        Some(&*meter)
    ) {
        Ok(rejected) => rejected,
        Err(error) => return failed(&error, work.rows.iter().map(json)),
    };
    let stored = (work.rows.len() - rejected.len()) as u64;
    Metrics::add(&metrics.aggregate_rows, stored);
    meter.wrote(stored, started.elapsed());
    Metrics::add(&meter.rejected, rejected.len() as u64);
    let dead = rejected_letters(
        "aggregate store",
        rejected,
        |i| work.rows.get(i).map(json),
        |_| None,
    );
    (dead, Ok(()))
}

async fn write_alerts(
    alerts: &mut dyn AlertSink,
    work: &SinkWork,
    metrics: &Metrics,
    mut give_up: GiveUp,
) -> Part {
    if work.alerts.is_empty() {
        return (Vec::new(), Ok(()));
    }
    let meter = metrics.sinks.meter("alerts");
    let started = Instant::now();
    if let Err(error) = retry!(
        metrics,
        give_up,
        "alerts",
        alerts.write(&work.alerts),
        Some(&*meter)
    ) {
        return failed(&error, work.alerts.iter().map(|a| a.to_json().to_string()));
    }
    Metrics::add(&metrics.alerts, work.alerts.len() as u64);
    meter.wrote(work.alerts.len() as u64, started.elapsed());
    metrics.count_alerts(work.alerts.iter().map(|a| a.detector.as_str()));
    metrics.log_alerts(&work.alerts);
    (Vec::new(), Ok(()))
}

async fn write_routed(
    routed: Option<&mut (dyn RoutedSink + '_)>,
    work: &SinkWork,
    metrics: &Metrics,
    mut give_up: GiveUp,
) -> Part {
    if work.routed.is_empty() {
        return (Vec::new(), Ok(()));
    }
    let Some(sink) = routed else {
        tracing::error!(
            records = work.routed.len(),
            "routed events without internal topics; no later checkpoint is stored"
        );
        return (Vec::new(), Err(Outcome::Lost));
    };
    let meter = metrics.sinks.meter("routed");
    let started = Instant::now();
    match retry!(
        metrics,
        give_up,
        "routed events",
        sink.write(&work.routed),
        Some(&*meter)
    ) {
        Ok(()) => {
            Metrics::add(&metrics.routed_records, work.routed.len() as u64);
            meter.wrote(work.routed.len() as u64, started.elapsed());
            let bytes = work.routed.iter().map(|r| r.bytes.len() as u64).sum();
            Metrics::add(&metrics.routed_bytes, bytes);
            (Vec::new(), Ok(()))
        }
        Err(error) if gave_up_on(&error) => (Vec::new(), Err(Outcome::GaveUp)),
        Err(error) => {
            // Only a broken producer fails for good; the input is not committed, so the next
            // owner routes these events again.
            tracing::error!(%error, records = work.routed.len(), "routed events could not be written; no later checkpoint is stored");
            (Vec::new(), Err(Outcome::Lost))
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
            metrics.last_checkpoint_ms.store(
                chrono::Utc::now().timestamp_millis(),
                std::sync::atomic::Ordering::Relaxed,
            );
            tracing::debug!(source = %barrier.source, "checkpoint stored");
        }
        Err(error) => {
            Metrics::add(&metrics.checkpoint_failures, 1);
            tracing::error!(%error, "checkpoint not stored; a restart resumes from the previous one");
        }
    }
}

/// Dead letters of the records a store refused one by one (`rejected`: index, reason), with
/// the input coordinates (`at`: (partition, offset) and topic) where the record has them.
fn rejected_letters<'a>(
    store: &str,
    rejected: Vec<(usize, String)>,
    payload: impl Fn(usize) -> Option<String>,
    at: impl Fn(usize) -> Option<((i32, i64), &'a str)>,
) -> Vec<DeadLetter> {
    let mut dead = Vec::with_capacity(rejected.len());
    for (index, reason) in rejected {
        tracing::warn!(store, %reason, "the store refused a record; it goes to the dead letters");
        let letter = DeadLetter {
            reason: "sink_rejected".into(),
            detail: reason,
            origin: store.into(),
            payload: payload(index).unwrap_or_default(),
            ..DeadLetter::default()
        };
        dead.push(match at(index) {
            Some(((partition, offset), topic)) => {
                let letter = letter.at(topic, partition, offset);
                let origin = format!("{} ({store})", letter.origin);
                DeadLetter { origin, ..letter }
            }
            None => letter,
        });
    }
    dead
}

fn dead_letter_all(error: &SinkError, payloads: impl Iterator<Item = String>) -> Vec<DeadLetter> {
    tracing::error!(%error, "sink refused a write permanently; its records go to the dead letters");
    payloads
        .map(|payload| DeadLetter {
            reason: "sink_rejected".into(),
            detail: error.to_string(),
            origin: error.sink.into(),
            payload,
            ..DeadLetter::default()
        })
        .collect()
}

#[cfg(test)]
mod tests;
