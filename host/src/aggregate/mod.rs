//! Aggregate tables and rows as the host and its sinks see them: plain data, no plugin types.
//! Also the rule for how a table's schema may change between plugin versions.

mod evolution;

pub use evolution::{SchemaError, check_evolution};

use serde::Serialize;

/// Type of an aggregate column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// Signed 64-bit integer.
    Int64,
    /// 64-bit float.
    Float64,
    /// UTF-8 text.
    Text,
    /// ms since the Unix epoch, UTC.
    Timestamp,
    /// Boolean.
    Boolean,
}

/// One column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnSchema {
    /// snake_case name.
    pub name: String,
    /// Its type.
    pub ty: ColumnType,
    /// Whether it may be NULL.
    pub nullable: bool,
}

/// A table some plugin writes: sinks create it and upsert rows by `key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableSchema {
    /// snake_case name, unique across plugins.
    pub name: String,
    /// Columns in row order.
    pub columns: Vec<ColumnSchema>,
    /// Key column names.
    pub key: Vec<String>,
}

impl TableSchema {
    /// Index of a column by name.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

/// A value in a row.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    /// NULL.
    Null,
    /// Integer.
    Int64(i64),
    /// Float.
    Float64(f64),
    /// Text.
    Text(String),
    /// ms since the epoch.
    Timestamp(i64),
    /// Boolean.
    Boolean(bool),
}

impl Value {
    /// Whether the value fits a column of type `ty` (NULL fits nullable columns only).
    pub fn fits(&self, column: &ColumnSchema) -> bool {
        matches!(
            (self, column.ty),
            (Value::Int64(_), ColumnType::Int64)
                | (Value::Float64(_), ColumnType::Float64)
                | (Value::Text(_), ColumnType::Text)
                | (Value::Timestamp(_), ColumnType::Timestamp)
                | (Value::Boolean(_), ColumnType::Boolean)
        ) || (matches!(self, Value::Null) && column.nullable)
    }
}

/// One row for a table, values in the table's column order at the time it was emitted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AggregateRow {
    /// The table.
    pub table: String,
    /// Values in column order.
    pub values: Vec<Value>,
}

/// Checks a row against its table's schema.
pub fn check_row(schema: &TableSchema, row: &AggregateRow) -> Result<(), String> {
    if row.values.len() != schema.columns.len() {
        return Err(format!(
            "row for table {} has {} values, the table has {} columns",
            schema.name,
            row.values.len(),
            schema.columns.len()
        ));
    }
    for (value, column) in row.values.iter().zip(&schema.columns) {
        if !value.fits(column) {
            return Err(format!(
                "value {value:?} does not fit column {} ({:?}) of table {}",
                column.name, column.ty, schema.name
            ));
        }
    }
    Ok(())
}
