//! The sink stage: writes each unit of work to every sink, retrying failures with backoff until
//! they succeed. A long outage therefore fills the bounded queues and slows the source
//! (backpressure); nothing is dropped. Only a write that can never succeed (bad data) is
//! dead-lettered instead.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

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

/// When a stop the user asked for gives up on output that still cannot be written: retrying
/// forever is right while running (backpressure, nothing lost), but a host told to stop must
/// stop. Output given up on is not lost: no checkpoint after it is stored, so the input is
/// read again by the next run.
pub struct GiveUp {
    stop: watch::Receiver<bool>,
    grace: Duration,
    since: Option<std::time::Instant>,
}

impl GiveUp {
    /// Gives up `grace` after `stop` turns true.
    pub fn after(stop: watch::Receiver<bool>, grace: Duration) -> Self {
        GiveUp {
            stop,
            grace,
            since: None,
        }
    }

    /// Never gives up.
    pub fn never() -> Self {
        GiveUp::after(watch::channel(false).1, Duration::MAX)
    }

    /// Whether the grace after a stop has run out.
    fn due(&mut self) -> bool {
        if !*self.stop.borrow() {
            return false;
        }
        let since = *self.since.get_or_insert_with(std::time::Instant::now);
        since.elapsed() >= self.grace
    }
}

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Retries an async write expression until it succeeds, fails permanently, or a stop gives up
/// on it (then the error is still `retryable`); logs what it waits for. (A macro rather than a
/// closure-taking fn: async closures borrowing the work are not `Send` on stable.)
macro_rules! retry {
    ($metrics:expr, $give_up:expr, $what:expr, $op:expr) => {{
        let mut backoff = FIRST_BACKOFF;
        loop {
            match $op.await {
                Ok(v) => break Ok(v),
                Err(e) if !e.retryable => break Err(e),
                Err(e) if $give_up.due() => break Err(e),
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
    while let Some(mut work) = rx.recv().await {
        if abandoned {
            // Waiters on the barrier (a revoke) are released; nothing is stored.
            if let Some(barrier) = work.barrier.take() {
                barrier.settle();
            }
            continue;
        }
        if let Err(outcome) = write(&mut sinks, &mut work, &metrics, &mut give_up).await {
            confirmed = false;
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

/// Writes one unit of work to every sink, in order.
async fn write(
    sinks: &mut Sinks,
    work: &mut SinkWork,
    metrics: &Metrics,
    give_up: &mut GiveUp,
) -> Result<(), Outcome> {
    let mut result = Ok(());
    // A retryable error coming back means a stop gave up on it: the rest is not tried.
    macro_rules! gave_up {
        ($error:expr) => {
            if $error.retryable {
                tracing::warn!(sink = $error.sink, error = %$error, "write given up at shutdown");
                return Err(Outcome::GaveUp);
            }
        };
    }
    for table in &work.tables {
        if let Err(error) = retry!(
            metrics,
            give_up,
            "create table",
            sinks.aggregates.ensure_table(table)
        ) {
            gave_up!(error);
            tracing::error!(table = %table.name, %error, "cannot create aggregate table; its rows will be dead-lettered");
        }
    }
    if !work.events.is_empty() {
        match retry!(
            metrics,
            give_up,
            "raw events",
            sinks.raw.write_with_sources(&work.events, &work.sources)
        ) {
            Ok(written) => {
                Metrics::add(&metrics.raw_rows, written.stored);
                let located = work.sources.len() == work.events.len();
                let (sources, input) = (&work.sources, work.input.as_deref());
                let at = |i: usize| {
                    located
                        .then(|| sources.get(i).copied())
                        .flatten()
                        .zip(input)
                };
                for letter in rejected_letters(
                    "raw store",
                    written.rejected,
                    |i| work.events.get(i).map(crate::event::encode),
                    at,
                ) {
                    work.dead.push(letter);
                }
            }
            Err(error) => {
                gave_up!(error);
                dead_letter_all(
                    &mut work.dead,
                    &error,
                    work.events.iter().map(crate::event::encode),
                );
            }
        }
    }
    if !work.rows.is_empty() {
        match retry!(
            metrics,
            give_up,
            "aggregate rows",
            sinks.aggregates.write(&work.rows)
        ) {
            Ok(rejected) => {
                Metrics::add(
                    &metrics.aggregate_rows,
                    (work.rows.len() - rejected.len()) as u64,
                );
                let letters = rejected_letters(
                    "aggregate store",
                    rejected,
                    |i| {
                        work.rows
                            .get(i)
                            .map(|r| serde_json::to_string(r).unwrap_or_default())
                    },
                    |_| None,
                );
                work.dead.extend(letters);
            }
            Err(error) => {
                gave_up!(error);
                dead_letter_all(
                    &mut work.dead,
                    &error,
                    work.rows
                        .iter()
                        .map(|r| serde_json::to_string(r).unwrap_or_default()),
                );
            }
        }
    }
    if !work.alerts.is_empty() {
        match retry!(metrics, give_up, "alerts", sinks.alerts.write(&work.alerts)) {
            Ok(()) => {
                Metrics::add(&metrics.alerts, work.alerts.len() as u64);
                metrics.count_alerts(work.alerts.iter().map(|a| a.detector.as_str()));
            }
            Err(error) => {
                gave_up!(error);
                dead_letter_all(
                    &mut work.dead,
                    &error,
                    work.alerts.iter().map(|a| a.to_json().to_string()),
                );
            }
        }
    }
    if !work.routed.is_empty() {
        match &mut sinks.routed {
            Some(sink) => match retry!(metrics, give_up, "routed events", sink.write(&work.routed))
            {
                Ok(()) => {
                    Metrics::add(&metrics.routed_records, work.routed.len() as u64);
                    let bytes = work.routed.iter().map(|r| r.bytes.len() as u64).sum();
                    Metrics::add(&metrics.routed_bytes, bytes);
                }
                Err(error) => {
                    gave_up!(error);
                    // Only a broken producer fails for good; the input is not committed,
                    // so the next owner routes these events again.
                    tracing::error!(%error, records = work.routed.len(), "routed events could not be written; no later checkpoint is stored");
                    result = Err(Outcome::Lost);
                }
            },
            None => {
                tracing::error!(
                    records = work.routed.len(),
                    "routed events without internal topics; no later checkpoint is stored"
                );
                result = Err(Outcome::Lost);
            }
        }
    }
    if !work.dead.is_empty() {
        match retry!(
            metrics,
            give_up,
            "dead letters",
            sinks.dead_letters.write(&work.dead)
        ) {
            Ok(()) => Metrics::add(&metrics.dead_letters, work.dead.len() as u64),
            Err(error) => {
                gave_up!(error);
                tracing::error!(%error, count = work.dead.len(), "dead letters could not be written; no later checkpoint is stored, so their input is read again");
                result = Err(Outcome::Lost);
            }
        }
    }
    result
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::sink::RawWrite;
    use crate::source::PartitionState;

    /// What the fake sinks saw, shared with the test.
    #[derive(Default)]
    struct Seen {
        dead: Vec<DeadLetter>,
        checkpoints: Vec<i64>,
    }

    /// Refuses the event at index 1 of every write.
    struct PickyRaw;
    #[async_trait]
    impl RawSink for PickyRaw {
        async fn write(&mut self, events: &[ClickEvent]) -> Result<RawWrite, SinkError> {
            Ok(RawWrite {
                stored: events.len() as u64 - 1,
                rejected: vec![(1, "NUL in properties".into())],
            })
        }
    }
    struct NoRows;
    #[async_trait]
    impl AggregateSink for NoRows {
        async fn ensure_table(&mut self, _: &TableSchema) -> Result<(), SinkError> {
            Ok(())
        }
        async fn write(&mut self, _: &[AggregateRow]) -> Result<Vec<(usize, String)>, SinkError> {
            Ok(Vec::new())
        }
    }
    struct NoAlerts;
    #[async_trait]
    impl AlertSink for NoAlerts {
        async fn write(&mut self, _: &[Alert]) -> Result<(), SinkError> {
            Ok(())
        }
    }
    /// Keeps dead letters; refuses for good once `broken` is set.
    struct Letters(Arc<Mutex<Seen>>, Arc<std::sync::atomic::AtomicBool>);
    #[async_trait]
    impl DeadLetterSink for Letters {
        async fn write(&mut self, letters: &[DeadLetter]) -> Result<(), SinkError> {
            if self.1.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(SinkError::permanent("test", "broken"));
            }
            self.0.lock().unwrap().dead.extend_from_slice(letters);
            Ok(())
        }
    }
    struct Store(Arc<Mutex<Seen>>);
    #[async_trait]
    impl Checkpointer for Store {
        async fn store(
            &mut self,
            barrier: &Barrier,
        ) -> Result<(), super::super::checkpoint::CheckpointError> {
            let mut seen = self.0.lock().unwrap();
            seen.checkpoints
                .extend(barrier.states.iter().map(|s| s.next_offset));
            Ok(())
        }
    }

    fn barrier(next_offset: i64) -> Option<Barrier> {
        Some(Barrier::new(
            "test",
            vec![PartitionState {
                topic: "embedded".into(),
                partition: 0,
                next_offset,
                watermark: 0,
                max_event_ms: 0,
                plugins: Vec::new(),
                origins: None,
            }],
        ))
    }

    #[tokio::test]
    async fn refused_rows_keep_their_coordinates_and_checkpoints_follow_written_work_only() {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let broken = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sinks = Sinks {
            raw: Box::new(PickyRaw),
            aggregates: Box::new(NoRows),
            alerts: Box::new(NoAlerts),
            dead_letters: Box::new(Letters(seen.clone(), broken.clone())),
            routed: None,
            checkpoints: Some(Box::new(Store(seen.clone()))),
        };
        let (tx, rx) = mpsc::channel(1);
        let metrics = Arc::new(Metrics::default());
        let stage = tokio::spawn(run_sinks(sinks, rx, metrics.clone(), GiveUp::never()));
        let events: Vec<ClickEvent> = (0..3)
            .map(|i| crate::event::decode(format!(r#"{{"event_id":"e{i}","session_id":"s","event_type":"page_view","url":"/","event_time":"2026-01-01T00:00:0{i}Z"}}"#).as_bytes()).expect("event"))
            .collect();
        tx.send(SinkWork {
            events,
            sources: vec![(2, 10), (2, 11), (2, 12)],
            input: Some("clicks".into()),
            barrier: barrier(13),
            ..SinkWork::default()
        })
        .await
        .unwrap();
        // Once a write is lost (the dead letters of the next work), no later checkpoint may
        // be stored. The sink is broken only after the first work was handled.
        while Metrics::get(&metrics.checkpoints) < 1 {
            tokio::task::yield_now().await;
        }
        broken.store(true, std::sync::atomic::Ordering::Relaxed);
        tx.send(SinkWork {
            dead: vec![DeadLetter {
                reason: "late".into(),
                ..DeadLetter::default()
            }],
            ..SinkWork::default()
        })
        .await
        .unwrap();
        tx.send(SinkWork {
            barrier: barrier(20),
            ..SinkWork::default()
        })
        .await
        .unwrap();
        drop(tx);
        stage.await.unwrap();

        let seen = seen.lock().unwrap();
        assert_eq!(
            seen.checkpoints,
            vec![13],
            "only the checkpoint after written work"
        );
        assert_eq!(Metrics::get(&metrics.checkpoint_failures), 1);
        let refused = &seen.dead[0];
        assert_eq!(refused.reason, "sink_rejected");
        assert_eq!(
            (refused.topic.as_deref(), refused.partition, refused.offset),
            (Some("clicks"), Some(2), Some(11))
        );
        assert!(refused.payload.contains("\"e1\""), "{}", refused.payload);
    }

    /// A raw store that is down (every write fails, retryably) and counts the attempts.
    struct DownRaw(Arc<std::sync::atomic::AtomicU64>);
    #[async_trait]
    impl RawSink for DownRaw {
        async fn write(&mut self, _: &[ClickEvent]) -> Result<RawWrite, SinkError> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err(SinkError::transient("raw", "connection refused"))
        }
    }

    #[tokio::test]
    async fn a_stop_gives_up_on_a_sink_that_stays_down_without_storing_a_checkpoint() {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let attempts = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let sinks = Sinks {
            raw: Box::new(DownRaw(attempts.clone())),
            aggregates: Box::new(NoRows),
            alerts: Box::new(NoAlerts),
            dead_letters: Box::new(Letters(seen.clone(), Default::default())),
            routed: None,
            checkpoints: Some(Box::new(Store(seen.clone()))),
        };
        let (tx, rx) = mpsc::channel(4);
        let (stop_tx, stop_rx) = watch::channel(false);
        let metrics = Arc::new(Metrics::default());
        let give_up = GiveUp::after(stop_rx, Duration::ZERO);
        let stage = tokio::spawn(run_sinks(sinks, rx, metrics.clone(), give_up));
        let event = crate::event::decode(br#"{"event_id":"e","session_id":"s","event_type":"page_view","url":"/","event_time":"2026-01-01T00:00:00Z"}"#).expect("event");
        let (done, waiting) = std::sync::mpsc::sync_channel::<()>(1);
        let mut revoke = barrier(1).unwrap();
        revoke.done.push(done);
        tx.send(SinkWork {
            events: vec![event.clone()],
            barrier: Some(revoke),
            ..SinkWork::default()
        })
        .await
        .unwrap();
        // Retrying while running: the outage is waited out, not given up.
        while attempts.load(std::sync::atomic::Ordering::Relaxed) < 3 {
            tokio::task::yield_now().await;
        }
        assert!(!stage.is_finished());
        stop_tx.send(true).unwrap();
        tx.send(SinkWork {
            events: vec![event],
            barrier: barrier(2),
            ..SinkWork::default()
        })
        .await
        .unwrap();
        drop(tx);
        let stage = tokio::time::timeout(Duration::from_secs(60), stage).await;
        assert!(stage.is_ok(), "the stage ends once the grace is over");
        assert_eq!(
            waiting.recv(),
            Err(std::sync::mpsc::RecvError),
            "a revoke waiting on an abandoned barrier is released"
        );
        let seen = seen.lock().unwrap();
        assert!(
            seen.checkpoints.is_empty(),
            "no checkpoint after unwritten output"
        );
        assert!(
            seen.dead.is_empty(),
            "events given up on are not dead letters: they are read again"
        );
    }
}
