//! The in-process generator source, paced in wall time at a fixed event rate.

use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::SourceMsg;
use crate::generator::Generator;
use crate::metrics::Metrics;

/// How the generator source paces and batches.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    /// Events per wall-clock second.
    pub rate: u32,
    /// Stop after this many events.
    pub max_events: Option<u64>,
    /// Most events per batch.
    pub batch_size: usize,
    /// Longest a partial batch waits.
    pub linger: Duration,
}

/// Sends generated events at `rate` per second in batches of `batch_size` (or whatever is ready
/// after `linger`), until `max_events` or until `stop` turns true. Returns events sent.
pub async fn run_generator(
    mut generator: Generator,
    pacing: Pacing,
    tx: mpsc::Sender<SourceMsg>,
    mut stop: watch::Receiver<bool>,
    metrics: &Metrics,
) -> u64 {
    let Pacing {
        rate,
        max_events,
        batch_size,
        linger,
    } = pacing;
    const STEP: Duration = Duration::from_millis(10);
    let mut ticker = tokio::time::interval(STEP);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let per_step = f64::from(rate) * STEP.as_secs_f64();
    let mut budget = 0.0;
    let mut batch = Vec::with_capacity(batch_size);
    let mut last_send = tokio::time::Instant::now();
    let mut sent = 0u64;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => break,
        }
        budget += per_step;
        while budget >= 1.0 && max_events.is_none_or(|m| sent + (batch.len() as u64) < m) {
            batch.push(generator.next_event());
            budget -= 1.0;
            if batch.len() >= batch_size {
                break;
            }
        }
        // Do not bank an unbounded budget while blocked on a full channel.
        budget = budget.min(per_step * 2.0 + batch_size as f64);
        let done = max_events.is_some_and(|m| sent + batch.len() as u64 >= m);
        if batch.len() >= batch_size
            || (!batch.is_empty() && last_send.elapsed() >= linger)
            || (done && !batch.is_empty())
        {
            let n = batch.len() as u64;
            let events = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
            Metrics::add(&metrics.events_in, n);
            if tx
                .send(SourceMsg::Batch {
                    events,
                    dead: Vec::new(),
                    from: None,
                })
                .await
                .is_err()
            {
                return sent;
            }
            sent += n;
            last_send = tokio::time::Instant::now();
        }
        if done {
            let _ = tx.send(SourceMsg::Exhausted).await;
            return sent;
        }
    }
    if !batch.is_empty() {
        let n = batch.len() as u64;
        Metrics::add(&metrics.events_in, n);
        if tx
            .send(SourceMsg::Batch {
                events: batch,
                dead: Vec::new(),
                from: None,
            })
            .await
            .is_ok()
        {
            sent += n;
        }
    }
    sent
}
