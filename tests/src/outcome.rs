//! What a run leaves behind, read back for comparison with another run: every aggregate row
//! (SQLite aggregate store, all tables, without the write-time column), every alert by id
//! (from the alert topic), and the dead letters (from their topic).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Aggregate rows by table, each row as JSON text of its columns (without `ingest_time`).
pub type Aggregates = BTreeMap<String, BTreeSet<String>>;

/// Every aggregate row whose window (if it has a `window_start` column, ms) starts before
/// `cutoff_ms`.
pub async fn aggregates(db: &Path, cutoff_ms: i64) -> Aggregates {
    let url = format!("sqlite://{}?mode=ro", db.display());
    let pool = sqlx::SqlitePool::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", db.display()));
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    )
    .fetch_all(&pool)
    .await
    .expect("list tables");
    let mut out = Aggregates::new();
    for (table,) in tables {
        let columns: Vec<(String,)> =
            sqlx::query_as(&format!("SELECT name FROM pragma_table_info('{table}')"))
                .fetch_all(&pool)
                .await
                .expect("columns");
        let columns: Vec<String> = columns
            .into_iter()
            .map(|(c,)| c)
            .filter(|c| c != "ingest_time")
            .collect();
        let object = columns
            .iter()
            .map(|c| format!("'{c}', \"{c}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let filter = if columns.iter().any(|c| c == "window_start") {
            format!("WHERE window_start < {cutoff_ms}")
        } else {
            String::new()
        };
        let rows: Vec<(String,)> = sqlx::query_as(&format!(
            "SELECT json_object({object}) FROM \"{table}\" {filter}"
        ))
        .fetch_all(&pool)
        .await
        .unwrap_or_else(|e| panic!("read {table}: {e}"));
        out.insert(table, rows.into_iter().map(|(r,)| r).collect());
    }
    pool.close().await;
    out
}

/// Alerts by `alert_id`, from the records of an alert topic, keeping those whose window
/// starts before `cutoff_ms`. An id seen twice with different content fails: a replay must
/// raise the same alert, not another one under the same id.
pub fn alerts(records: &[Vec<u8>], cutoff_ms: i64) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    for bytes in records {
        let alert: serde_json::Value = serde_json::from_slice(bytes)
            .unwrap_or_else(|e| panic!("an alert that is not JSON ({e})"));
        let start = alert["window_start"].as_str().unwrap_or_default();
        let before = chrono::DateTime::parse_from_rfc3339(start)
            .map(|t| t.timestamp_millis() < cutoff_ms)
            .unwrap_or_else(|e| panic!("alert window_start {start:?}: {e}"));
        if !before {
            continue;
        }
        let id = alert["alert_id"]
            .as_str()
            .expect("an alert has an alert_id")
            .to_owned();
        if let Some(old) = out.insert(id.clone(), alert.clone()) {
            assert_eq!(old, alert, "alert {id} raised twice with different content");
        }
    }
    out
}

/// Dead letters as distinct (origin, reason) pairs: a record dead-lettered again after a
/// crash is the same pair.
pub fn dead_letters(records: &[Vec<u8>]) -> BTreeSet<(String, String)> {
    records
        .iter()
        .map(|bytes| {
            let letter: serde_json::Value = serde_json::from_slice(bytes)
                .unwrap_or_else(|e| panic!("a dead letter that is not JSON ({e})"));
            let origin = match (
                letter["topic"].as_str(),
                letter["partition"].as_i64(),
                letter["offset"].as_i64(),
            ) {
                (Some(t), Some(p), Some(o)) => format!("{t}/{p}@{o}"),
                _ => panic!("a dead letter without its source position: {letter}"),
            };
            (
                origin,
                letter["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}
