//! Raw-store ingest into a local PostgreSQL: the sink's COPY path at two batch sizes, beside a
//! multi-row INSERT baseline measured in the same run, plus the whole pipeline (file source →
//! two plugins → PostgreSQL raw store).
//!
//! Run: cargo xtask services up postgres && cargo xtask plugins &&
//!      CLICKWATCH_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:15432/clickwatch \
//!      cargo bench --profile dev -p clickwatch --bench postgres

use std::sync::Arc;
use std::time::Instant;

use clickwatch::event::{ClickEvent, encode};
use clickwatch::generator::{Generator, GeneratorSettings};
use clickwatch::metrics::Metrics;
use clickwatch::pipeline::{self, Ending};
use clickwatch::sink::RawSink;
use clickwatch::sink::postgres::PostgresRawSink;
use sqlx::{Postgres, QueryBuilder};

#[path = "../tests/common/mod.rs"]
mod common;
use common::{fresh_postgres, pg_settings as settings};

async fn fresh(server: &str, name: &str) -> String {
    fresh_postgres(server, name, true).await
}

async fn copy_path(server: &str, events: &[ClickEvent], batch: usize) -> f64 {
    let url = fresh(server, &format!("bench_copy_{batch}")).await;
    let mut sink = PostgresRawSink::open(&settings(&url)).await.unwrap();
    let started = Instant::now();
    for chunk in events.chunks(batch) {
        sink.write(chunk).await.unwrap();
    }
    events.len() as f64 / started.elapsed().as_secs_f64()
}

async fn insert_baseline(server: &str, events: &[ClickEvent], batch: usize) -> f64 {
    let url = fresh(server, "bench_insert").await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let started = Instant::now();
    for chunk in events.chunks(batch) {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
            "INSERT INTO click_events (event_id, event_time, event_type, session_id, user_id, url, referrer, ip_raw, \
             user_agent, device, country, properties) ",
        );
        q.push_values(chunk, |mut b, e| {
            b.push_bind(&e.event_id)
                .push_bind(clickwatch::event::format_time(e.time_ms))
                .push_unseparated("::timestamptz")
                .push_bind(e.kind.as_str())
                .push_bind(&e.session_id)
                .push_bind(&e.user_id)
                .push_bind(&e.url)
                .push_bind(&e.referrer)
                .push_bind(&e.ip)
                .push_bind(&e.user_agent)
                .push_bind(&e.device)
                .push_bind(&e.country)
                .push_bind(e.properties.as_ref().map(|p| p.as_str()))
                .push_unseparated("::jsonb");
        });
        q.push(" ON CONFLICT (event_id) DO NOTHING");
        q.build().execute(&pool).await.unwrap();
    }
    events.len() as f64 / started.elapsed().as_secs_f64()
}

async fn whole_pipeline(server: &str, events: &[ClickEvent]) -> (f64, u64) {
    let url = fresh(server, "bench_pipeline").await;
    let dir = tempfile::tempdir().unwrap();
    let wasm = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    for name in ["page-traffic", "bot-detector"] {
        std::fs::copy(
            wasm.join(format!("{name}.wasm")),
            plugins.join(format!("{name}.wasm")),
        )
        .expect("cargo xtask plugins first");
    }
    let input = dir.path().join("events.jsonl");
    std::fs::write(
        &input,
        events.iter().map(encode).collect::<Vec<_>>().join("\n"),
    )
    .unwrap();
    let out = dir.path().display();
    let text = format!(
        "[source]\ntype = \"file\"\npath = \"{}\"\n[pipeline]\nbatch_size = 5000\n[plugins]\ndir = \"{}\"\nwatch = false\n\
         [sinks.raw]\ntype = \"postgres\"\nurl = \"{url}\"\n[sinks.aggregates]\ntype = \"sqlite\"\npath = \"{out}/agg.db\"\n\
         [sinks.alerts]\ntype = \"file\"\npath = \"{out}/alerts.jsonl\"\nstdout = false\n\
         [sinks.dead_letters]\ntype = \"file\"\npath = \"{out}/dead.jsonl\"\n",
        input.display(),
        plugins.display()
    );
    let config = clickwatch::config::parse(std::path::Path::new("bench.toml"), &text, []).unwrap();
    let summary = pipeline::run(
        config,
        Arc::new(Metrics::default()),
        std::future::pending::<Ending>(),
    )
    .await
    .unwrap();
    (
        summary.raw_rows as f64 / summary.elapsed.as_secs_f64(),
        summary.raw_rows,
    )
}

fn main() {
    let server = std::env::var("CLICKWATCH_TEST_POSTGRES_URL")
        .expect("set CLICKWATCH_TEST_POSTGRES_URL (cargo xtask services up postgres)");
    let n: usize = std::env::var("EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let events = Generator::new(GeneratorSettings {
        seed: 21,
        mean_rate: 500.0,
        ..GeneratorSettings::default()
    })
    .take(n);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let insert = insert_baseline(&server, &events, 1_000).await;
        let copy_1k = copy_path(&server, &events, 1_000).await;
        let copy_5k = copy_path(&server, &events, 5_000).await;
        let (pipeline, rows) = whole_pipeline(&server, &events).await;
        println!("{n} events, table with the real schema (PK, BRIN on time, session and partial user btrees)");
        println!("multi-row INSERT ... ON CONFLICT, 1000 rows/statement: {insert:>9.0} rows/s");
        println!("sink: COPY (staged + ON CONFLICT on a key clash), batch 1000:   {copy_1k:>9.0} rows/s");
        println!("sink: COPY (staged + ON CONFLICT on a key clash), batch 5000:   {copy_5k:>9.0} rows/s");
        println!("whole pipeline (file → 2 plugins → PostgreSQL), batch 5000: {pipeline:>9.0} rows/s ({rows} rows)");
    });
}
