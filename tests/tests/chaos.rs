//! The chaos suite (issue 12): one stream through the `clickwatch` binary on a 4-partition
//! topic, raw events to PostgreSQL, aggregates to SQLite, alerts and dead letters to Kafka,
//! while the suite kills the host with SIGKILL again and again, restarts the broker on its
//! data, takes PostgreSQL away, feeds a poison record of every kind and runs a plugin that
//! loops forever beside the six shipped ones. Then the same topic is read by an uninterrupted
//! host without the looping plugin. Asserted: every valid event stored exactly once, every
//! poison record dead-lettered once with its reason and position, aggregates and alerts
//! equal to the uninterrupted run's, each recovery within a bound, SIGTERM honoured within
//! the grace period. The figures are printed.
//!
//! `cargo xtask test` runs the short form; `cargo xtask chaos` the full one
//! (`CLICKWATCH_CHAOS=full`: more events and 20 kills). Both need the real services.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use clickwatch_e2e::input::{BIG_NUMBER, Input, input};
use clickwatch_e2e::kafka::{create_topic, produce, producer, read_to_end};
use clickwatch_e2e::outcome::{aggregates, alerts, dead_letters};
use clickwatch_e2e::postgres::{raw_count, raw_ids};
use clickwatch_e2e::run::{Aggregates, Run};
use clickwatch_e2e::services::{script, unique};

const SHIPPED: [&str; 6] = [
    "page-traffic",
    "bot-detector",
    "session-engagement",
    "traffic-anomaly",
    "click-fraud",
    "funnel-drop",
];
const PARTITIONS: i32 = 4;
/// Longest a host may take, after a restart of itself or of a service, to store new rows
/// again. A killed member stays in the group until its session times out (6 s here).
const RECOVERY_BOUND: Duration = Duration::from_secs(60);
const GRACE: Duration = Duration::from_secs(30);

/// How hard to push.
struct Plan {
    events: usize,
    kills: usize,
    /// Produced per 100 ms while the chaos run reads (the stream is live, not a backlog).
    chunk: usize,
    postgres_outage: Duration,
}

fn plan() -> Plan {
    match std::env::var("CLICKWATCH_CHAOS").as_deref() {
        Ok("full") => Plan {
            events: 200_000,
            kills: 20,
            chunk: 150,
            postgres_outage: Duration::from_secs(30),
        },
        _ => Plan {
            events: 30_000,
            kills: 3,
            chunk: 60,
            // Longer than the raw sink's 5 s wait for a connection, so a write fails.
            postgres_outage: Duration::from_secs(8),
        },
    }
}

/// What one run stored, for the assertions.
struct Stored {
    aggregates: clickwatch_e2e::outcome::Aggregates,
    alerts: std::collections::BTreeMap<String, serde_json::Value>,
    dead: BTreeSet<(String, String)>,
    dead_records: usize,
    /// Alerts of the `chaos` fixture, left out of `alerts`.
    fixture_alerts: usize,
}

async fn stored(run: &Run, input: &Input) -> Stored {
    let ids = raw_ids(&run.db).await;
    let twice: Vec<_> = ids.iter().filter(|(_, n)| **n != 1).take(5).collect();
    assert!(
        twice.is_empty(),
        "{}: rows stored more than once: {twice:?}",
        run.name
    );
    let ids: BTreeSet<String> = ids.into_keys().collect();
    let missing: Vec<_> = input.stored_ids.difference(&ids).take(5).collect();
    let extra: Vec<_> = ids.difference(&input.stored_ids).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{}: raw store differs from the valid input: missing {missing:?}, extra {extra:?}",
        run.name
    );
    let pool = sqlx::PgPool::connect(&run.db).await.expect("connect");
    let properties: String =
        sqlx::query_scalar("SELECT properties::text FROM click_events WHERE event_id = $1")
            .bind(&input.big_number_id)
            .fetch_one(&pool)
            .await
            .expect("the big-number event");
    pool.close().await;
    assert!(
        properties.contains(BIG_NUMBER),
        "{}: properties not kept as sent: {properties}",
        run.name
    );
    let (a, d) = (run.alerts_topic.clone(), run.dead_topic.clone());
    let (alert_records, dead_records) =
        tokio::task::spawn_blocking(move || (read_to_end(&a), read_to_end(&d)))
            .await
            .expect("join");
    // The looping fixture's own alerts (one per batch before it loops) exist only in the
    // chaos run and depend on batching: counted apart, not compared.
    let mut alerts = alerts(&alert_records, input.cutoff_ms);
    let before = alerts.len();
    alerts.retain(|_, alert| alert["detector"] != "chaos");
    Stored {
        aggregates: aggregates(&run.dir.join("aggregates.db"), input.cutoff_ms).await,
        fixture_alerts: before - alerts.len(),
        alerts,
        dead: dead_letters(&dead_records),
        dead_records: dead_records.len(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_outages_poison_and_a_looping_plugin_lose_nothing_and_change_nothing() {
    let plan = plan();
    let input = input(61, plan.events);
    let topic = unique("chaos_in");
    create_topic(&topic, PARTITIONS).await;
    let root = tempfile::tempdir().expect("temp dir");

    let mut with_loop: Vec<&str> = SHIPPED.to_vec();
    with_loop.push("chaos");
    // The looping plugin behaves for 2 000 events, then spins in every call.
    let chaos = Run::new(
        "chaos",
        root.path(),
        &topic,
        &with_loop,
        "[plugins.settings.chaos]\nmode = \"loop\"\nafter_events = 2000\n",
        &Aggregates::Sqlite,
    )
    .await;
    let mut host = chaos.start();

    // The stream, live: a chunk every 100 ms while the host reads and the suite disrupts.
    let records = input.records.clone();
    let (chunk, producing_topic) = (plan.chunk, topic.clone());
    let producing = tokio::spawn(async move {
        let producer = producer();
        let mut landed = Vec::with_capacity(records.len());
        for part in records.chunks(chunk) {
            landed.extend(produce(&producer, &producing_topic, part).await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        landed
    });

    // Disruptions at evenly spaced points of the stream, by rows stored.
    let expected = input.stored_ids.len() as i64;
    let steps = plan.kills + 2;
    let mut figures: Vec<(String, Duration)> = Vec::new();
    let started = Instant::now();
    for step in 0..steps {
        let milestone = expected * (step as i64 + 1) / (steps as i64 + 1);
        chaos
            .rows_above(&mut host, milestone, Duration::from_secs(300), "the stream")
            .await;
        // Each figure counts from the moment the disruption is over (the host is gone and a
        // new one started, the broker is ready again, PostgreSQL is back) until the raw store
        // holds more rows than it did then, so rows written before the disruption bit do not
        // count as a recovery.
        if step < plan.kills {
            host.kill9();
            let at = raw_count(&chaos.db).await.expect("PostgreSQL is up here");
            host = chaos.start();
            let took = chaos
                .rows_above(&mut host, at, RECOVERY_BOUND, "a restart after kill -9")
                .await;
            figures.push((format!("kill -9 #{} at {at} rows", step + 1), took));
        } else if step == plan.kills {
            let restart = script("kafka", "restart", &[]);
            let at = raw_count(&chaos.db).await.expect("PostgreSQL is up here");
            let took = chaos
                .rows_above(&mut host, at, RECOVERY_BOUND, "a broker restart")
                .await;
            figures.push((
                format!(
                    "broker restart on its data ({:.1} s) at {at} rows",
                    restart.as_secs_f64()
                ),
                took,
            ));
        } else {
            let retries = |host: &clickwatch_e2e::host::Host| {
                std::fs::read_to_string(host.log())
                    .map(|log| log.matches("sink write failed").count())
                    .unwrap_or(0)
            };
            let retried_before = retries(&host);
            script("postgres", "stop", &[]);
            // The outage itself: the host must hold its input and retry meanwhile.
            tokio::time::sleep(plan.postgres_outage).await;
            script("postgres", "up", &[]);
            // Counted once the server is back: the recovery is the first write after that. If
            // the host wrote everything left before the count, it recovered at least that fast.
            let at = raw_count(&chaos.db).await.expect("PostgreSQL is back");
            let took = if at >= expected {
                Duration::ZERO
            } else {
                chaos
                    .rows_above(&mut host, at, RECOVERY_BOUND, "PostgreSQL coming back")
                    .await
            };
            // The outage outlasts the pool's 5 s wait for a connection, so a write must have
            // failed and been retried (it is logged before the write that succeeds).
            assert!(
                retries(&host) > retried_before,
                "the host did not notice the PostgreSQL outage (log: {})",
                host.log().display()
            );
            figures.push((
                format!(
                    "PostgreSQL down {} s at {at} rows",
                    plan.postgres_outage.as_secs()
                ),
                took,
            ));
        }
    }
    let landed = producing.await.expect("producer");
    chaos.finish(&mut host, &input).await;
    let chaos_seconds = started.elapsed();
    let log_path = host.log().to_path_buf();
    let (status, stop) = host.terminate(GRACE);
    assert!(
        status.success(),
        "the chaos host exits 0 on SIGTERM ({status})"
    );
    let log = std::fs::read_to_string(&log_path).expect("the chaos host's log");
    assert!(
        log.contains("plugin quarantined after repeated failures"),
        "the looping plugin was quarantined (log: {})",
        log_path.display()
    );

    // The uninterrupted run over the same topic, now a backlog, without the looping plugin.
    let reference = Run::new(
        "reference",
        root.path(),
        &topic,
        &SHIPPED,
        "",
        &Aggregates::Sqlite,
    )
    .await;
    let mut host = reference.start();
    let started = Instant::now();
    reference.finish(&mut host, &input).await;
    let reference_seconds = started.elapsed();
    let (status, _) = host.terminate(GRACE);
    assert!(
        status.success(),
        "the reference host exits 0 on SIGTERM ({status})"
    );

    let got = stored(&chaos, &input).await;
    let want = stored(&reference, &input).await;

    // Every poison record dead-lettered, with its reason and where it was, and nothing else.
    let mut poison_at = BTreeSet::new();
    let mut index = 0;
    for (i, record) in input.records.iter().enumerate() {
        if let Some(p) = input.poison.iter().find(|p| p.record == *record) {
            let (partition, offset) = landed[i];
            poison_at.insert((format!("{topic}/{partition}@{offset}"), p.reason.to_owned()));
            index += 1;
        }
    }
    assert_eq!(
        index,
        input.poison.len(),
        "every poison record was produced"
    );
    assert_eq!(
        want.dead, poison_at,
        "reference: dead letters are the poison records"
    );
    assert_eq!(
        got.dead, poison_at,
        "chaos: dead letters are the poison records"
    );

    assert!(
        want.aggregates.values().map(BTreeSet::len).sum::<usize>() > 0 && !want.alerts.is_empty(),
        "the reference produced aggregates and alerts"
    );
    assert!(
        got.fixture_alerts > 0,
        "the looping fixture ran in the chaos run"
    );
    assert_eq!(
        want.fixture_alerts, 0,
        "the uninterrupted run has no looping fixture"
    );
    // Every difference is collected before failing, so one run shows all of them.
    let mut differences = Vec::new();
    for (table, rows) in &want.aggregates {
        let other = got.aggregates.get(table).cloned().unwrap_or_default();
        let missing: Vec<_> = rows.difference(&other).collect();
        let extra: Vec<_> = other.difference(rows).collect();
        if !missing.is_empty() || !extra.is_empty() {
            differences.push(format!(
                "table {table} differs ({} rows vs {}; {} missing, {} extra): missing {:?}, extra {:?}",
                other.len(),
                rows.len(),
                missing.len(),
                extra.len(),
                &missing[..missing.len().min(3)],
                &extra[..extra.len().min(3)]
            ));
        }
    }
    if got.aggregates.keys().ne(want.aggregates.keys()) {
        differences.push(format!(
            "tables differ: {:?} vs {:?}",
            got.aggregates.keys().collect::<Vec<_>>(),
            want.aggregates.keys().collect::<Vec<_>>()
        ));
    }
    let only_chaos: Vec<_> = got
        .alerts
        .keys()
        .filter(|k| !want.alerts.contains_key(*k))
        .collect();
    let only_reference: Vec<_> = want
        .alerts
        .keys()
        .filter(|k| !got.alerts.contains_key(*k))
        .collect();
    if !only_chaos.is_empty() || !only_reference.is_empty() {
        differences.push(format!(
            "alerts differ: only in the chaos run {only_chaos:?}, only uninterrupted {only_reference:?}"
        ));
    }
    let changed: Vec<_> = got
        .alerts
        .iter()
        .filter(|(k, v)| want.alerts.get(*k).is_some_and(|w| w != *v))
        .map(|(k, v)| (k, v, &want.alerts[k]))
        .collect();
    if !changed.is_empty() {
        differences.push(format!(
            "alerts with other content (chaos, uninterrupted): {changed:?}"
        ));
    }
    assert!(
        differences.is_empty(),
        "the chaos run's output differs from the uninterrupted run's:\n{}",
        differences.join("\n")
    );

    eprintln!(
        "chaos suite ({} events on {PARTITIONS} partitions, {} poison records):",
        plan.events,
        input.poison.len()
    );
    for (what, took) in &figures {
        eprintln!(
            "  {what}: rows stored again after {:.2} s",
            took.as_secs_f64()
        );
    }
    let rows: usize = want.aggregates.values().map(BTreeSet::len).sum();
    eprintln!(
        "  chaos run {:.1} s, uninterrupted backlog run {:.1} s; SIGTERM to exit {:.2} s",
        chaos_seconds.as_secs_f64(),
        reference_seconds.as_secs_f64(),
        stop.as_secs_f64()
    );
    eprintln!(
        "  {} raw rows each stored once, {rows} aggregate rows and {} alerts equal to the uninterrupted run, \
         {} dead letters ({} records on the topic) for {} poison kinds",
        input.stored_ids.len(),
        want.alerts.len(),
        got.dead.len(),
        got.dead_records,
        input.poison.len()
    );
}
