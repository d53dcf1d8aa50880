//! The sink stage against fake sinks: coordinates of refused rows, checkpoints only after
//! written work, and a stop that gives up on a sink that stays down.

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
    // With checkpoints the lost dead letter's input is read again: not lost for good.
    assert_eq!(Metrics::get(&metrics.output_lost), 0);
    let refused = &seen.dead[0];
    assert_eq!(refused.reason, "sink_rejected");
    assert_eq!(
        (refused.topic.as_deref(), refused.partition, refused.offset),
        (Some("clicks"), Some(2), Some(11))
    );
    assert!(refused.payload.contains("\"e1\""), "{}", refused.payload);
}

#[tokio::test]
async fn output_that_cannot_be_written_without_checkpoints_is_counted_as_lost() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let broken = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sinks = Sinks {
        raw: Box::new(PickyRaw),
        aggregates: Box::new(NoRows),
        alerts: Box::new(NoAlerts),
        dead_letters: Box::new(Letters(seen.clone(), broken)),
        routed: None,
        checkpoints: None,
    };
    let (tx, rx) = mpsc::channel(1);
    let metrics = Arc::new(Metrics::default());
    let stage = tokio::spawn(run_sinks(sinks, rx, metrics.clone(), GiveUp::never()));
    for _ in 0..2 {
        tx.send(SinkWork {
            dead: vec![DeadLetter {
                reason: "late".into(),
                ..DeadLetter::default()
            }],
            ..SinkWork::default()
        })
        .await
        .unwrap();
    }
    drop(tx);
    stage.await.unwrap();
    assert!(seen.lock().unwrap().dead.is_empty());
    assert_eq!(Metrics::get(&metrics.output_lost), 2);
    assert_eq!(Metrics::get(&metrics.dead_letters), 0);
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
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
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
