//! Deterministic insert ids: the same row of the same table always gets the same id, so
//! BigQuery's best-effort de-duplication drops a row that a retry or a replay sends again. The
//! id covers the table, the key and every value: a row re-emitted with *different* values (an
//! updated window) is new data and must not be dropped as a duplicate.

use crate::aggregate::{AggregateRow, TableSchema, Value};

/// FNV-1a, 128-bit: stable across processes, platforms and releases (unlike std's hasher).
struct Fnv128(u128);

impl Fnv128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u128::from(b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    /// Writes a length-prefixed field, so ("ab","c") and ("a","bc") differ.
    fn field(&mut self, tag: u8, bytes: &[u8]) {
        self.write(&[tag]);
        self.write(&(bytes.len() as u64).to_le_bytes());
        self.write(bytes);
    }
}

fn value_bytes(v: &Value) -> (u8, Vec<u8>) {
    match v {
        Value::Null => (0, Vec::new()),
        Value::Int64(x) => (1, x.to_le_bytes().to_vec()),
        Value::Float64(x) => (2, x.to_bits().to_le_bytes().to_vec()),
        Value::Text(s) => (3, s.as_bytes().to_vec()),
        Value::Timestamp(x) => (4, x.to_le_bytes().to_vec()),
        Value::Boolean(b) => (5, vec![u8::from(*b)]),
    }
}

/// The insert id of `row` in `table`: 32 hex digits.
pub fn insert_id(table: &TableSchema, row: &AggregateRow) -> String {
    let mut h = Fnv128(Fnv128::OFFSET);
    h.field(b't', table.name.as_bytes());
    for key in &table.key {
        if let Some(v) = table.column_index(key).and_then(|i| row.values.get(i)) {
            let (tag, bytes) = value_bytes(v);
            h.field(b'k', key.as_bytes());
            h.field(tag, &bytes);
        }
    }
    for v in &row.values {
        let (tag, bytes) = value_bytes(v);
        h.field(tag, &bytes);
    }
    format!("{:032x}", h.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{ColumnSchema, ColumnType};

    fn table() -> TableSchema {
        TableSchema {
            name: "page_traffic".into(),
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
            ],
            key: vec!["window_start".into(), "url".into()],
        }
    }

    fn row(start: i64, url: &str, views: i64) -> AggregateRow {
        AggregateRow {
            table: "page_traffic".into(),
            values: vec![
                Value::Timestamp(start),
                Value::Text(url.into()),
                Value::Int64(views),
            ],
        }
    }

    #[test]
    fn the_same_row_always_gets_the_same_id() {
        let t = table();
        assert_eq!(
            insert_id(&t, &row(60_000, "/a", 3)),
            insert_id(&t, &row(60_000, "/a", 3))
        );
        // Pinned: the id must not change between releases, or replays after an upgrade would
        // not be de-duplicated.
        assert_eq!(
            insert_id(&t, &row(60_000, "/a", 3)),
            "679f2d772259791cc3dbae74a1387adf"
        );
    }

    #[test]
    fn different_windows_keys_values_or_tables_get_different_ids() {
        let t = table();
        let base = insert_id(&t, &row(60_000, "/a", 3));
        assert_ne!(base, insert_id(&t, &row(120_000, "/a", 3)));
        assert_ne!(base, insert_id(&t, &row(60_000, "/b", 3)));
        assert_ne!(base, insert_id(&t, &row(60_000, "/a", 4)));
        let mut other = table();
        other.name = "other".into();
        assert_ne!(base, insert_id(&other, &row(60_000, "/a", 3)));
        // Type matters: a timestamp and an integer with the same bits differ.
        let mut as_int = row(60_000, "/a", 3);
        as_int.values[0] = Value::Int64(60_000);
        assert_ne!(base, insert_id(&t, &as_int));
    }
}
