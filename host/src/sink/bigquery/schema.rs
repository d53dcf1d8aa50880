//! Creating and extending BigQuery tables from declared table schemas.

use gcp_bigquery_client::Client;
use gcp_bigquery_client::model::field_type::FieldType;
use gcp_bigquery_client::model::query_request::QueryRequest;
use gcp_bigquery_client::model::table::Table;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use gcp_bigquery_client::model::table_schema::TableSchema as BqSchema;

use super::{SINK, error, is_not_found};
use crate::aggregate::{ColumnType, TableSchema};
use crate::sink::SinkError;

/// The column every table gets: when the row was written.
pub const INGEST_TIME: &str = "ingest_time";

fn field_type(ty: ColumnType) -> FieldType {
    match ty {
        ColumnType::Int64 => FieldType::Integer,
        ColumnType::Float64 => FieldType::Float,
        ColumnType::Text => FieldType::String,
        ColumnType::Timestamp => FieldType::Timestamp,
        ColumnType::Boolean => FieldType::Boolean,
    }
}

fn ddl_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Int64 => "INT64",
        ColumnType::Float64 => "FLOAT64",
        ColumnType::Text => "STRING",
        ColumnType::Timestamp => "TIMESTAMP",
        ColumnType::Boolean => "BOOL",
    }
}

/// Whether two BigQuery type names mean the same (INTEGER = INT64, FLOAT = FLOAT64, ...).
fn same_type(a: &FieldType, b: &FieldType) -> bool {
    use FieldType::*;
    let canon = |t: &FieldType| match t {
        Integer | Int64 => 1,
        Float | Float64 => 2,
        Boolean | Bool => 3,
        String => 4,
        Timestamp => 5,
        _ => 0,
    };
    canon(a) != 0 && canon(a) == canon(b)
}

fn field(name: &str, ty: FieldType, nullable: bool) -> TableFieldSchema {
    let mut f = TableFieldSchema::new(name, ty);
    f.mode = Some(if nullable { "NULLABLE" } else { "REQUIRED" }.to_owned());
    f
}

fn fields(table: &TableSchema) -> Vec<TableFieldSchema> {
    let mut fields: Vec<TableFieldSchema> = table
        .columns
        .iter()
        .map(|c| field(&c.name, field_type(c.ty), c.nullable))
        .collect();
    fields.push(field(INGEST_TIME, FieldType::Timestamp, false));
    fields
}

/// Creates `table` if missing; adds declared columns it lacks (as NULLABLE); refuses a column
/// whose type differs. Idempotent.
pub async fn ensure_table(
    client: &Client,
    project: &str,
    dataset: &str,
    table: &TableSchema,
) -> Result<(), SinkError> {
    let existing = match client
        .table()
        .get(project, dataset, &table.name, None)
        .await
    {
        Ok(t) => t,
        Err(e) if is_not_found(&e) => {
            let new = Table::new(project, dataset, &table.name, BqSchema::new(fields(table)));
            client
                .table()
                .create(new)
                .await
                .map_err(|e| error(&format!("create table {}", table.name), e))?;
            tracing::info!(table = %table.name, "created BigQuery table");
            return Ok(());
        }
        Err(e) => return Err(error(&format!("get table {}", table.name), e)),
    };
    let mut current: Vec<TableFieldSchema> = existing.schema.fields.clone().unwrap_or_default();
    let mut added = Vec::new();
    for column in &table.columns {
        let want = field_type(column.ty);
        match current.iter().find(|f| f.name == column.name) {
            Some(f) if same_type(&f.r#type, &want) => {}
            Some(f) => {
                return Err(SinkError::permanent(
                    SINK,
                    format!(
                        "table {} column {} is {:?} in BigQuery, the plugin declares {:?}",
                        table.name, column.name, f.r#type, column.ty
                    ),
                ));
            }
            None => {
                current.push(field(&column.name, want, true));
                added.push(column.name.clone());
            }
        }
    }
    if !added.is_empty() {
        // DDL adds the column to the stored table; the patch then makes the table metadata say
        // so. Real BigQuery needs only one of them (either is a no-op after the other); the
        // emulator needs both.
        for name in &added {
            let Some(column) = table.columns.iter().find(|c| &c.name == name) else {
                continue;
            };
            let ddl = format!(
                "ALTER TABLE `{project}.{dataset}.{}` ADD COLUMN IF NOT EXISTS `{name}` {}",
                table.name,
                ddl_type(column.ty)
            );
            client
                .job()
                .query(project, QueryRequest::new(ddl))
                .await
                .map_err(|e| error(&format!("add column {name} to {}", table.name), e))?;
        }
        let mut patched = existing;
        patched.schema = BqSchema::new(current);
        client
            .table()
            .patch(project, dataset, &table.name, patched)
            .await
            .map_err(|e| error(&format!("extend table {}", table.name), e))?;
        tracing::info!(table = %table.name, ?added, "added columns to BigQuery table");
    }
    Ok(())
}
