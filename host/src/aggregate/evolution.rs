//! How a table may change between plugin versions: new nullable columns are fine, anything
//! that would break existing rows or queries is refused.

use super::TableSchema;

/// Why a new table declaration cannot replace the old one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SchemaError {
    /// A column changed type.
    #[error("table {table}: column {column} changes type from {old:?} to {new:?}")]
    TypeChanged {
        /// Table.
        table: String,
        /// Column.
        column: String,
        /// Previous type.
        old: super::ColumnType,
        /// New type.
        new: super::ColumnType,
    },
    /// A column disappeared.
    #[error("table {table}: column {column} is dropped (columns may only be added)")]
    ColumnDropped {
        /// Table.
        table: String,
        /// Column.
        column: String,
    },
    /// The key changed.
    #[error("table {table}: key changes from {old:?} to {new:?}")]
    KeyChanged {
        /// Table.
        table: String,
        /// Previous key.
        old: Vec<String>,
        /// New key.
        new: Vec<String>,
    },
    /// A new column is required, which existing rows cannot satisfy.
    #[error("table {table}: new column {column} must be nullable (existing rows have no value)")]
    NewColumnNotNullable {
        /// Table.
        table: String,
        /// Column.
        column: String,
    },
    /// A nullable column became required.
    #[error("table {table}: column {column} becomes NOT NULL")]
    BecameRequired {
        /// Table.
        table: String,
        /// Column.
        column: String,
    },
}

/// Checks that `new` can replace `old`. Returns the names of added columns.
pub fn check_evolution(old: &TableSchema, new: &TableSchema) -> Result<Vec<String>, SchemaError> {
    let table = || new.name.clone();
    if old.key != new.key {
        return Err(SchemaError::KeyChanged {
            table: table(),
            old: old.key.clone(),
            new: new.key.clone(),
        });
    }
    for column in &old.columns {
        match new.columns.iter().find(|c| c.name == column.name) {
            None => {
                return Err(SchemaError::ColumnDropped {
                    table: table(),
                    column: column.name.clone(),
                });
            }
            Some(c) if c.ty != column.ty => {
                return Err(SchemaError::TypeChanged {
                    table: table(),
                    column: c.name.clone(),
                    old: column.ty,
                    new: c.ty,
                });
            }
            Some(c) if column.nullable && !c.nullable => {
                return Err(SchemaError::BecameRequired {
                    table: table(),
                    column: c.name.clone(),
                });
            }
            Some(_) => {}
        }
    }
    let mut added = Vec::new();
    for column in &new.columns {
        if old.column_index(&column.name).is_none() {
            if !column.nullable {
                return Err(SchemaError::NewColumnNotNullable {
                    table: table(),
                    column: column.name.clone(),
                });
            }
            added.push(column.name.clone());
        }
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{ColumnSchema, ColumnType};

    fn table(columns: &[(&str, ColumnType, bool)], key: &[&str]) -> TableSchema {
        TableSchema {
            name: "t".into(),
            columns: columns
                .iter()
                .map(|(n, ty, nullable)| ColumnSchema {
                    name: (*n).into(),
                    ty: *ty,
                    nullable: *nullable,
                })
                .collect(),
            key: key.iter().map(|k| (*k).into()).collect(),
        }
    }

    #[test]
    fn adding_a_nullable_column_is_allowed() {
        let old = table(&[("k", ColumnType::Text, false)], &["k"]);
        let new = table(
            &[
                ("k", ColumnType::Text, false),
                ("n", ColumnType::Int64, true),
            ],
            &["k"],
        );
        assert_eq!(check_evolution(&old, &new).unwrap(), vec!["n".to_string()]);
    }

    #[test]
    fn breaking_changes_are_refused() {
        let old = table(
            &[
                ("k", ColumnType::Text, false),
                ("n", ColumnType::Int64, true),
            ],
            &["k"],
        );
        let cases = [
            (
                table(
                    &[
                        ("k", ColumnType::Text, false),
                        ("n", ColumnType::Float64, true),
                    ],
                    &["k"],
                ),
                "changes type",
            ),
            (table(&[("k", ColumnType::Text, false)], &["k"]), "dropped"),
            (
                table(
                    &[
                        ("k", ColumnType::Text, false),
                        ("n", ColumnType::Int64, false),
                    ],
                    &["k", "n"],
                ),
                "key changes",
            ),
            (
                table(
                    &[
                        ("k", ColumnType::Text, false),
                        ("n", ColumnType::Int64, false),
                    ],
                    &["k"],
                ),
                "NOT NULL",
            ),
            (
                table(
                    &[
                        ("k", ColumnType::Text, false),
                        ("n", ColumnType::Int64, true),
                        ("m", ColumnType::Int64, false),
                    ],
                    &["k"],
                ),
                "must be nullable",
            ),
        ];
        for (new, expected) in cases {
            let err = check_evolution(&old, &new).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
    }
}
