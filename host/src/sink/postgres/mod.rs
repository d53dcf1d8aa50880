//! The PostgreSQL raw store: batched COPY into a per-connection staging table, then
//! `INSERT … ON CONFLICT (event_id) DO NOTHING`, in one transaction. A replay stores nothing
//! twice; a row the server rejects is isolated by bisection and handed back with the server's
//! reason while the rest of its batch is stored; connection failures are retryable, so an
//! outage becomes backpressure in the sink stage.

mod copy;
mod schema;

pub use schema::{MIGRATOR, SchemaState, check as check_schema, latest_version, migrate};

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::{RawSink, RawWrite, SinkError};
use crate::event::ClickEvent;

const SINK: &str = "postgres";

/// Connection settings.
#[derive(Debug, Clone)]
pub struct PgSettings {
    /// `postgres://user@host:port/db`.
    pub url: String,
    /// Password, when not in the URL (set it from the environment).
    pub password: Option<String>,
    /// How long start-up waits for the server.
    pub startup_timeout: Duration,
}

/// Builds a pool (connections are opened lazily and re-opened after an outage).
pub fn pool(settings: &PgSettings) -> Result<PgPool, SinkError> {
    let mut options: PgConnectOptions = settings
        .url
        .parse()
        .map_err(|e| SinkError::permanent(SINK, format!("invalid url: {e}")))?;
    if let Some(password) = &settings.password {
        options = options.password(password);
    }
    Ok(PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options))
}

/// Whether a database error is about the data (never fixed by a retry) rather than the server.
fn is_data_error(e: &sqlx::Error) -> bool {
    match e {
        // SQLSTATE class 22: data exception; 23: integrity constraint violation.
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("22") || c.starts_with("23")),
        _ => false,
    }
}

/// Text `COPY` of encoded `rows` into `table` within `tx`; returns the rows copied.
async fn copy_into(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    table: &str,
    rows: &[u8],
) -> Result<u64, sqlx::Error> {
    let mut copy = tx
        .copy_in_raw(&format!("COPY {table} ({}) FROM STDIN", copy::COLUMNS))
        .await?;
    copy.send(rows).await?;
    copy.finish().await
}

/// SQLSTATE 23505: a row with the same key is already stored.
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().is_some_and(|c| c == "23505"))
}

fn error(e: sqlx::Error) -> SinkError {
    // Anything that is not about the data is worth retrying: connection loss, server shutdown,
    // too many connections, serialization failures, timeouts.
    let retryable = !is_data_error(&e)
        && !matches!(&e, sqlx::Error::Database(d) if d.code().is_some_and(|c| c.starts_with("42")));
    SinkError {
        sink: SINK,
        message: e.to_string(),
        retryable,
    }
}

/// The server's message with its SQLSTATE, for dead letters.
fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => format!(
            "{} (SQLSTATE {})",
            d.message(),
            d.code().unwrap_or_default()
        ),
        other => other.to_string(),
    }
}

/// The sink.
#[derive(Debug, Clone)]
pub struct PostgresRawSink {
    pool: PgPool,
}

impl PostgresRawSink {
    /// Connects (waiting up to `startup_timeout` for the server) and checks that the schema is
    /// current, saying what to run when it is not.
    pub async fn open(settings: &PgSettings) -> Result<Self, SinkError> {
        let pool = pool(settings)?;
        let deadline = tokio::time::Instant::now() + settings.startup_timeout;
        let state = loop {
            match check_schema(&pool).await {
                Ok(state) => break state,
                Err(e) if tokio::time::Instant::now() < deadline && !is_data_error(&e) => {
                    tracing::warn!(error = %e, "waiting for PostgreSQL");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => {
                    return Err(SinkError::permanent(
                        SINK,
                        format!("cannot reach the database: {e}"),
                    ));
                }
            }
        };
        match state {
            SchemaState::Current => Ok(PostgresRawSink { pool }),
            SchemaState::Behind { at, needed } => Err(SinkError::permanent(
                SINK,
                format!(
                    "the database schema is at version {at}, this clickwatch needs {needed}: run `clickwatch db migrate --config <file>`"
                ),
            )),
            SchemaState::Ahead { at, known } => Err(SinkError::permanent(
                SINK,
                format!(
                    "the database schema is at version {at}, newer than this clickwatch knows ({known}): upgrade clickwatch"
                ),
            )),
        }
    }

    /// The pool, for tools and tests.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Stores `events`, each attempt one transaction; returns rows newly stored. First a `COPY` straight
    /// into the table: when none of the events is stored yet (every write but those repeated
    /// after a crash or a rebalance) that is all, and the server neither writes nor reads a
    /// staging table. When some are (the key is violated), the same rows go through a staging
    /// table and `INSERT … ON CONFLICT DO NOTHING`, which skips them.
    async fn write_once(
        &self,
        events: &[ClickEvent],
        sources: &[(i32, i64)],
    ) -> Result<u64, sqlx::Error> {
        let rows = copy::encode(events, sources);
        match self.copy_direct(&rows).await {
            Err(e) if is_unique_violation(&e) => self.copy_staged(&rows).await,
            done => done,
        }
    }

    /// `COPY` into the table itself; fails as a whole if any event is already stored.
    async fn copy_direct(&self, rows: &[u8]) -> Result<u64, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let stored = copy_into(&mut tx, "click_events", rows).await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// `COPY` into a staging table, then `INSERT … ON CONFLICT DO NOTHING` into the table.
    async fn copy_staged(&self, rows: &[u8]) -> Result<u64, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "CREATE TEMP TABLE IF NOT EXISTS click_events_stage (LIKE click_events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
        )
        .execute(&mut *tx)
        .await?;
        copy_into(&mut tx, "click_events_stage", rows).await?;
        let stored = sqlx::query("INSERT INTO click_events SELECT * FROM click_events_stage ON CONFLICT (event_id) DO NOTHING")
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(stored)
    }

    /// Writes `events` (with `sources`, empty or one per event); on a data error splits the
    /// batch until the bad rows are isolated.
    async fn write_isolating(
        &self,
        events: &[ClickEvent],
        sources: &[(i32, i64)],
        offset: usize,
        out: &mut RawWrite,
    ) -> Result<(), SinkError> {
        let sources = if sources.len() == events.len() {
            sources
        } else {
            &[]
        };
        let mut stack = vec![(offset, events, sources)];
        while let Some((start, part, part_sources)) = stack.pop() {
            match self.write_once(part, part_sources).await {
                Ok(stored) => out.stored += stored,
                Err(e) if is_data_error(&e) && part.len() == 1 => {
                    out.rejected.push((start, describe(&e)))
                }
                Err(e) if is_data_error(&e) => {
                    let mid = part.len() / 2;
                    let (left, right) = if part_sources.is_empty() {
                        (&[][..], &[][..])
                    } else {
                        part_sources.split_at(mid)
                    };
                    stack.push((start + mid, &part[mid..], right));
                    stack.push((start, &part[..mid], left));
                }
                Err(e) => return Err(error(e)),
            }
        }
        Ok(())
    }
}

/// Batches at least this large are split across [`WRITERS`] connections.
const PARALLEL_MIN: usize = 2_000;
/// Concurrent writers for a large batch. Index maintenance dominates ingest time (see
/// docs/benchmarks.md); two server backends maintain indexes on two cores.
const WRITERS: usize = 2;

#[async_trait]
impl RawSink for PostgresRawSink {
    async fn write(&mut self, events: &[ClickEvent]) -> Result<RawWrite, SinkError> {
        self.write_with_sources(events, &[]).await
    }

    async fn write_with_sources(
        &mut self,
        events: &[ClickEvent],
        sources: &[(i32, i64)],
    ) -> Result<RawWrite, SinkError> {
        let mut out = RawWrite::default();
        let sources = if sources.len() == events.len() {
            sources
        } else {
            &[]
        };
        if events.len() < PARALLEL_MIN {
            self.write_isolating(events, sources, 0, &mut out).await?;
            return Ok(out);
        }
        // Parts are independent (the store is idempotent per event), so they may commit in any
        // order; the write is acknowledged only when all have committed.
        let part = events.len().div_ceil(WRITERS);
        let this = &*self;
        let parts = events
            .chunks(part)
            .enumerate()
            .map(|(i, chunk)| async move {
                let start = i * part;
                let chunk_sources = sources.get(start..start + chunk.len()).unwrap_or(&[]);
                let mut out = RawWrite::default();
                this.write_isolating(chunk, chunk_sources, start, &mut out)
                    .await
                    .map(|()| out)
            });
        for result in futures_util::future::join_all(parts).await {
            let part = result?;
            out.stored += part.stored;
            out.rejected.extend(part.rejected);
        }
        Ok(out)
    }
}
