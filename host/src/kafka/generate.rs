//! `clickwatch generate --to kafka`: generated click events as JSON, keyed by session id, at a
//! paced rate, with a progress report.

use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::event::encode;
use crate::generator::Generator;

/// What a generate run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenerateReport {
    /// Records acknowledged by the broker.
    pub sent: u64,
    /// Records that could not be delivered.
    pub errors: u64,
}

/// Sends events from `generator` to `topic` at `rate` per second until `count` events or
/// `duration` (whichever comes first; at least one of them should be set). `progress` is called
/// about once a second with the report so far and the current rate.
pub async fn produce_generated(
    producer: &FutureProducer,
    topic: &str,
    generator: &mut Generator,
    rate: u32,
    count: Option<u64>,
    duration: Option<Duration>,
    mut progress: impl FnMut(GenerateReport, f64),
) -> GenerateReport {
    const STEP: Duration = Duration::from_millis(10);
    const IN_FLIGHT: usize = 10_000;
    let started = Instant::now();
    let mut report = GenerateReport::default();
    let mut queued = 0u64;
    let mut pending = futures_util::stream::FuturesUnordered::new();
    let mut ticker = tokio::time::interval(STEP);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let per_step = f64::from(rate.max(1)) * STEP.as_secs_f64();
    let mut budget = 0.0;
    let (mut last_report, mut last_sent) = (Instant::now(), 0u64);
    use futures_util::StreamExt;
    loop {
        let done =
            count.is_some_and(|c| queued >= c) || duration.is_some_and(|d| started.elapsed() >= d);
        if done {
            break;
        }
        ticker.tick().await;
        budget = (budget + per_step).min(per_step * 4.0);
        while budget >= 1.0 && count.is_none_or(|c| queued < c) && pending.len() < IN_FLIGHT {
            budget -= 1.0;
            let event = generator.next_event();
            let payload = encode(&event);
            // Enqueue now; the delivery future owns nothing borrowed. A full local queue is
            // waited out by collecting acknowledgements first.
            let mut record = FutureRecord::to(topic)
                .key(&event.session_id)
                .payload(&payload);
            let delivery = loop {
                match producer.send_result(record) {
                    Ok(delivery) => break Some(delivery),
                    Err((error, back)) => {
                        record = back;
                        match pending.next().await {
                            Some(result) => tally(&mut report, result),
                            None => {
                                report.errors += 1;
                                tracing::warn!(%error, "a generated event could not be queued");
                                break None;
                            }
                        }
                    }
                }
            };
            if let Some(delivery) = delivery {
                pending.push(delivery);
            }
            queued += 1;
        }
        // Collect acknowledgements that are ready without waiting for the rest.
        while let Some(Some(result)) = futures_util::FutureExt::now_or_never(pending.next()) {
            tally(&mut report, result);
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            let rate_now = (report.sent - last_sent) as f64 / last_report.elapsed().as_secs_f64();
            progress(report, rate_now);
            (last_report, last_sent) = (Instant::now(), report.sent);
        }
    }
    while let Some(result) = pending.next().await {
        tally(&mut report, result);
    }
    report
}

fn tally<E>(
    report: &mut GenerateReport,
    result: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, E>,
) {
    match result {
        Ok(Ok(_)) => report.sent += 1,
        Ok(Err((error, _))) => {
            report.errors += 1;
            tracing::warn!(%error, "a generated event could not be delivered");
        }
        Err(_) => {
            report.errors += 1;
            tracing::warn!("a delivery report was lost (producer dropped)");
        }
    }
}
