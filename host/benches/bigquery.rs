//! Rows/s into the BigQuery API emulator through the aggregate sink (insertAll, 500-row
//! chunks). The emulator is the bottleneck: this measures it, not BigQuery.
//!
//! Run: cargo xtask services up bigquery &&
//!      BIGQUERY_EMULATOR=http://127.0.0.1:19050 cargo bench --profile dev -p clickwatch --bench bigquery

use std::time::Instant;

use clickwatch::aggregate::{AggregateRow, ColumnSchema, ColumnType, TableSchema, Value};
use clickwatch::sink::AggregateSink;
use clickwatch::sink::bigquery::{BigQuerySettings, BigQuerySink, Credentials};

fn main() {
    let base = std::env::var("BIGQUERY_EMULATOR")
        .expect("set BIGQUERY_EMULATOR (cargo xtask services up bigquery)");
    let n: usize = std::env::var("ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let table = TableSchema {
        name: "bench_page_traffic".into(),
        columns: vec![
            ColumnSchema {
                name: "window_start".into(),
                ty: ColumnType::Timestamp,
                nullable: false,
            },
            ColumnSchema {
                name: "url".into(),
                ty: ColumnType::Text,
                nullable: false,
            },
            ColumnSchema {
                name: "views".into(),
                ty: ColumnType::Int64,
                nullable: false,
            },
            ColumnSchema {
                name: "unique_sessions".into(),
                ty: ColumnType::Int64,
                nullable: false,
            },
        ],
        key: vec!["window_start".into(), "url".into()],
    };
    let rows: Vec<AggregateRow> = (0..n)
        .map(|i| AggregateRow {
            table: table.name.clone(),
            values: vec![
                Value::Timestamp(1_790_000_000_000 + (i / 100) as i64 * 60_000),
                Value::Text(format!("https://shop.example/product/{}", i % 100)),
                Value::Int64((i % 37) as i64),
                Value::Int64((i % 11) as i64),
            ],
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let settings = BigQuerySettings {
            project: "test-project".into(),
            dataset: format!("bench_{}", std::process::id()),
            location: None,
            credentials: Credentials::StaticToken("bench".into()),
            endpoint: Some(format!("{}/bigquery/v2", base.trim_end_matches('/'))),
        };
        let mut sink = BigQuerySink::open(settings).await.unwrap();
        sink.ensure_table(&table).await.unwrap();
        let started = Instant::now();
        for batch in rows.chunks(2_000) {
            let rejected = sink.write(batch).await.unwrap();
            assert!(rejected.is_empty());
        }
        let secs = started.elapsed().as_secs_f64();
        println!("{n} rows in {secs:.2} s = {:.0} rows/s into the emulator (insertAll, 500-row requests)", n as f64 / secs);
    });
}
