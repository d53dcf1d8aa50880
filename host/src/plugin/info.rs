//! A plugin's declared info in host terms, validated.

use serde::Serialize;

use super::bindings;
use crate::aggregate::{ColumnSchema, ColumnType, TableSchema};
use crate::keyed::StateKey;

/// What a plugin does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginKind {
    /// Emits alerts.
    Detector,
    /// Emits rows.
    Aggregator,
    /// Both.
    Both,
}

/// Validated plugin info.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginInfo {
    /// Identity across versions.
    pub name: String,
    /// Its own version.
    pub version: String,
    /// Detector, aggregator or both.
    pub kind: PluginKind,
    /// What its state is keyed by.
    pub key: StateKey,
    /// Tables it writes.
    pub tables: Vec<TableSchema>,
    /// Contract it was built against.
    pub contract_version: String,
}

fn is_ident(s: &str, sep: char) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == sep)
}

/// Converts and validates what `info()` returned.
pub fn convert_info(raw: bindings::PluginInfo) -> Result<PluginInfo, String> {
    if !is_ident(&raw.name, '-') {
        return Err(format!(
            "plugin name {:?} must be lower-case letters, digits and '-'",
            raw.name
        ));
    }
    let mut tables = Vec::new();
    for t in raw.tables {
        if !is_ident(&t.name, '_') {
            return Err(format!(
                "table name {:?} must be lower-case snake_case",
                t.name
            ));
        }
        let mut columns: Vec<ColumnSchema> = Vec::new();
        for c in t.columns {
            if !is_ident(&c.name, '_') || c.name == "ingest_time" {
                return Err(format!(
                    "column {:?} of table {} must be snake_case and not `ingest_time`",
                    c.name, t.name
                ));
            }
            if columns.iter().any(|x| x.name == c.name) {
                return Err(format!(
                    "column {} appears twice in table {}",
                    c.name, t.name
                ));
            }
            let ty = match c.ty {
                bindings::ColumnType::Int64 => ColumnType::Int64,
                bindings::ColumnType::Float64 => ColumnType::Float64,
                bindings::ColumnType::Text => ColumnType::Text,
                bindings::ColumnType::Timestamp => ColumnType::Timestamp,
                bindings::ColumnType::Boolean => ColumnType::Boolean,
            };
            columns.push(ColumnSchema {
                name: c.name,
                ty,
                nullable: c.nullable,
            });
        }
        if columns.is_empty() || t.key.is_empty() {
            return Err(format!(
                "table {} needs at least one column and one key column",
                t.name
            ));
        }
        for k in &t.key {
            match columns.iter().find(|c| &c.name == k) {
                Some(c) if !c.nullable => {}
                Some(_) => {
                    return Err(format!(
                        "key column {k} of table {} must not be nullable",
                        t.name
                    ));
                }
                None => {
                    return Err(format!(
                        "key column {k} is not a column of table {}",
                        t.name
                    ));
                }
            }
        }
        if tables.iter().any(|x: &TableSchema| x.name == t.name) {
            return Err(format!("table {} is declared twice", t.name));
        }
        tables.push(TableSchema {
            name: t.name,
            columns,
            key: t.key,
        });
    }
    let kind = match raw.kind {
        bindings::PluginKind::Detector => PluginKind::Detector,
        bindings::PluginKind::Aggregator => PluginKind::Aggregator,
        bindings::PluginKind::Both => PluginKind::Both,
    };
    let key = match raw.key {
        bindings::StateKey::Session => StateKey::Session,
        bindings::StateKey::User => StateKey::User,
        bindings::StateKey::Ip => StateKey::Ip,
        bindings::StateKey::IpNetwork => StateKey::IpNetwork,
        bindings::StateKey::Url => StateKey::Url,
        bindings::StateKey::Property(name) => StateKey::Property(name),
        bindings::StateKey::Global => StateKey::Global,
    };
    key.validate()?;
    Ok(PluginInfo {
        name: raw.name,
        version: raw.version,
        kind,
        key,
        tables,
        contract_version: raw.contract_version,
    })
}
