//! The embedded store: raw events and aggregate tables in one SQLite file (WAL mode).
//! Raw inserts are `INSERT OR IGNORE` on the event id, aggregate writes upsert on the table key,
//! so replays and retries never count twice.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};

use super::{AggregateSink, RawSink, RawWrite, SinkError};
use crate::aggregate::{AggregateRow, ColumnType, TableSchema, Value};
use crate::event::ClickEvent;

const RAW_COLUMNS: usize = 13;
/// Rows per INSERT statement, under SQLite's bound-parameter limit.
const CHUNK: usize = 32_000 / RAW_COLUMNS;

/// A SQLite database used as raw and/or aggregate sink.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    tables: HashMap<String, TableSchema>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn sql_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Int64 | ColumnType::Timestamp | ColumnType::Boolean => "INTEGER",
        ColumnType::Float64 => "REAL",
        ColumnType::Text => "TEXT",
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and the raw events table.
    pub async fn open(path: &Path) -> Result<Self, SinkError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                SinkError::permanent("sqlite", format!("{}: {e}", parent.display()))
            })?;
        }
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(|e| SinkError::permanent("sqlite", e))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL survives process crashes (not power loss) at a fraction of FULL's cost.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|e| SinkError::permanent("sqlite", format!("{}: {e}", path.display())))?;
        for ddl in [
            "CREATE TABLE IF NOT EXISTS click_events (
                event_id TEXT PRIMARY KEY,
                event_time_ms INTEGER NOT NULL,
                event_type TEXT NOT NULL,
                session_id TEXT NOT NULL,
                user_id TEXT,
                url TEXT NOT NULL,
                referrer TEXT,
                ip TEXT,
                user_agent TEXT,
                device TEXT,
                country TEXT,
                properties TEXT,
                ingest_time_ms INTEGER NOT NULL
            )",
            "CREATE INDEX IF NOT EXISTS click_events_time ON click_events (event_time_ms)",
            "CREATE INDEX IF NOT EXISTS click_events_session ON click_events (session_id)",
        ] {
            sqlx::query(ddl)
                .execute(&pool)
                .await
                .map_err(|e| SinkError::permanent("sqlite", e))?;
        }
        Ok(SqliteStore {
            pool,
            tables: HashMap::new(),
        })
    }

    /// The connection pool, for queries in tests and tools.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

fn error(e: sqlx::Error) -> SinkError {
    // Busy/locked databases and I/O errors are worth retrying; constraint and SQL errors are not.
    let retryable = match &e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        // SQLite reports extended codes (e.g. 778 = IOERR_WRITE); the primary code is the low byte.
        // 5 BUSY, 6 LOCKED, 10 IOERR, 13 FULL.
        sqlx::Error::Database(d) => d
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(|c| matches!(c & 0xff, 5 | 6 | 10 | 13)),
        _ => false,
    };
    SinkError {
        sink: "sqlite",
        message: e.to_string(),
        retryable,
    }
}

#[async_trait]
impl RawSink for SqliteStore {
    async fn write(&mut self, events: &[ClickEvent]) -> Result<RawWrite, SinkError> {
        let ingest = now_ms();
        let mut tx = self.pool.begin().await.map_err(error)?;
        let mut stored = 0;
        for chunk in events.chunks(CHUNK) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT OR IGNORE INTO click_events (event_id, event_time_ms, event_type, session_id, user_id, url, \
                 referrer, ip, user_agent, device, country, properties, ingest_time_ms) ",
            );
            q.push_values(chunk, |mut b, e| {
                b.push_bind(&e.event_id)
                    .push_bind(e.time_ms)
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
                    .push_bind(ingest);
            });
            stored += q
                .build()
                .execute(&mut *tx)
                .await
                .map_err(error)?
                .rows_affected();
        }
        tx.commit().await.map_err(error)?;
        Ok(RawWrite {
            stored,
            rejected: Vec::new(),
        })
    }
}

#[async_trait]
impl AggregateSink for SqliteStore {
    async fn ensure_table(&mut self, table: &TableSchema) -> Result<(), SinkError> {
        let name = quote(&table.name);
        let mut ddl = format!("CREATE TABLE IF NOT EXISTS {name} (");
        for c in &table.columns {
            ddl.push_str(&format!(
                "{} {}{}, ",
                quote(&c.name),
                sql_type(c.ty),
                if c.nullable { "" } else { " NOT NULL" }
            ));
        }
        let key: Vec<String> = table.key.iter().map(|k| quote(k)).collect();
        ddl.push_str(&format!(
            "ingest_time INTEGER NOT NULL, PRIMARY KEY ({}))",
            key.join(", ")
        ));
        sqlx::query(&ddl).execute(&self.pool).await.map_err(error)?;
        let existing = sqlx::query(&format!("PRAGMA table_info({name})"))
            .fetch_all(&self.pool)
            .await
            .map_err(error)?;
        // The table may predate this run (or this plugin version): its key and NOT NULL
        // columns must agree with the declaration, or every upsert would fail.
        let mut db_key: Vec<(i64, String)> = existing
            .iter()
            .filter(|r| r.get::<i64, _>("pk") > 0)
            .map(|r| (r.get::<i64, _>("pk"), r.get::<String, _>("name")))
            .collect();
        db_key.sort();
        let db_key: Vec<String> = db_key.into_iter().map(|(_, n)| n).collect();
        if db_key != table.key {
            return Err(SinkError::permanent(
                "sqlite",
                format!(
                    "table {} has key {db_key:?} in the database, the plugin declares {:?}",
                    table.name, table.key
                ),
            ));
        }
        for r in &existing {
            let (column, not_null) = (r.get::<String, _>("name"), r.get::<i64, _>("notnull") != 0);
            let declared = table.columns.iter().find(|c| c.name == column);
            let refused = match declared {
                Some(c) => not_null && c.nullable,
                None => not_null && column != "ingest_time",
            };
            if refused {
                return Err(SinkError::permanent(
                    "sqlite",
                    format!(
                        "table {} column {column} is NOT NULL in the database, the plugin leaves it empty",
                        table.name
                    ),
                ));
            }
        }
        let existing: HashMap<String, String> = existing
            .iter()
            .map(|r| (r.get::<String, _>("name"), r.get::<String, _>("type")))
            .collect();
        for c in &table.columns {
            match existing.get(&c.name) {
                Some(ty) if ty.eq_ignore_ascii_case(sql_type(c.ty)) => {}
                Some(ty) => {
                    return Err(SinkError::permanent(
                        "sqlite",
                        format!(
                            "table {} column {} is {ty} in the database, the plugin declares {:?}",
                            table.name, c.name, c.ty
                        ),
                    ));
                }
                None => {
                    // Evolution rules guarantee added columns are nullable.
                    let alter = format!(
                        "ALTER TABLE {name} ADD COLUMN {} {}",
                        quote(&c.name),
                        sql_type(c.ty)
                    );
                    sqlx::query(&alter)
                        .execute(&self.pool)
                        .await
                        .map_err(error)?;
                    tracing::info!(table = %table.name, column = %c.name, "added column to aggregate table");
                }
            }
        }
        self.tables.insert(table.name.clone(), table.clone());
        Ok(())
    }

    async fn write(&mut self, rows: &[AggregateRow]) -> Result<Vec<(usize, String)>, SinkError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let ingest = now_ms();
        let mut tx = self.pool.begin().await.map_err(error)?;
        let mut rejected = Vec::new();
        // Consecutive rows of one table go in multi-row upserts: one statement per row costs a
        // round trip to SQLite's worker thread each, which dominated aggregate-heavy runs.
        // SQLite applies the rows of one statement in order, so a key repeated in a chunk
        // still ends with its last value.
        let mut start = 0;
        while start < rows.len() {
            let table = &rows[start].table;
            let end = rows[start..]
                .iter()
                .position(|r| r.table != *table)
                .map_or(rows.len(), |n| start + n);
            let run = start..end;
            start = end;
            // A row for a table that could not be created is refused alone; the other
            // plugins' rows are still written.
            let Some(schema) = self.tables.get(table) else {
                for index in run {
                    rejected.push((
                        index,
                        format!("table {table} is not available in this store"),
                    ));
                }
                continue;
            };
            let columns: Vec<String> = schema.columns.iter().map(|c| quote(&c.name)).collect();
            let updates: Vec<String> = columns
                .iter()
                .map(|c| format!("{c} = excluded.{c}"))
                .collect();
            let key: Vec<String> = schema.key.iter().map(|k| quote(k)).collect();
            // SQLite allows 32 766 bound parameters per statement.
            let per_chunk = (32_000 / (columns.len() + 1)).max(1);
            for chunk in rows[run].chunks(per_chunk) {
                let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
                    "INSERT INTO {} ({}, ingest_time) ",
                    quote(table),
                    columns.join(", ")
                ));
                q.push_values(chunk, |mut values, row| {
                    for value in &row.values {
                        match value {
                            Value::Null => values.push_bind(None::<i64>),
                            Value::Int64(v) | Value::Timestamp(v) => values.push_bind(*v),
                            Value::Float64(v) => values.push_bind(*v),
                            Value::Text(v) => values.push_bind(v.clone()),
                            Value::Boolean(v) => values.push_bind(i64::from(*v)),
                        };
                    }
                    values.push_bind(ingest);
                });
                q.push(format!(
                    " ON CONFLICT ({}) DO UPDATE SET {}, ingest_time = excluded.ingest_time",
                    key.join(", "),
                    updates.join(", ")
                ));
                q.build().execute(&mut *tx).await.map_err(error)?;
            }
        }
        tx.commit().await.map_err(error)?;
        Ok(rejected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::ColumnSchema;

    fn table(key: &[&str], nullable_n: bool) -> TableSchema {
        TableSchema {
            name: "t".into(),
            columns: vec![
                ColumnSchema {
                    name: "k".into(),
                    ty: ColumnType::Text,
                    nullable: false,
                },
                ColumnSchema {
                    name: "n".into(),
                    ty: ColumnType::Int64,
                    nullable: nullable_n,
                },
            ],
            key: key.iter().map(|k| (*k).to_owned()).collect(),
        }
    }

    #[tokio::test]
    async fn an_existing_table_with_another_key_or_stricter_columns_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(&dir.path().join("a.db")).await.unwrap();
        store.ensure_table(&table(&["k"], false)).await.unwrap();
        // Same declaration again, and an added nullable column: fine.
        store.ensure_table(&table(&["k"], false)).await.unwrap();
        let err = store
            .ensure_table(&table(&["k", "n"], false))
            .await
            .unwrap_err();
        assert!(
            err.message.contains("has key [\"k\"] in the database"),
            "{err}"
        );
        let err = store.ensure_table(&table(&["k"], true)).await.unwrap_err();
        assert!(err.message.contains("column n is NOT NULL"), "{err}");
        // Rows for a table that is not available are refused one by one, not the whole batch.
        let rows = vec![
            AggregateRow {
                table: "t".into(),
                values: vec![Value::Text("a".into()), Value::Int64(1)],
            },
            AggregateRow {
                table: "missing".into(),
                values: vec![Value::Int64(1)],
            },
        ];
        let rejected = AggregateSink::write(&mut store, &rows).await.unwrap();
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].0, 1);
    }
}
