//! What a plugin declares about itself: name, version, kind and the aggregate tables it writes.

/// What a plugin does with the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    /// Emits alerts.
    Detector,
    /// Emits aggregate rows.
    Aggregator,
    /// Emits both.
    Both,
}

/// Type of an aggregate column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// Signed 64-bit integer.
    Int64,
    /// 64-bit float.
    Float64,
    /// UTF-8 text.
    Text,
    /// Milliseconds since the Unix epoch, UTC.
    Timestamp,
    /// true or false.
    Boolean,
}

/// One column of an aggregate table.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Lower-case snake_case, unique in its table.
    pub name: String,
    /// The column's type.
    pub ty: ColumnType,
    /// Whether rows may leave it empty.
    pub nullable: bool,
}

impl Column {
    /// A required column.
    pub fn new(name: &str, ty: ColumnType) -> Self {
        Column {
            name: name.to_owned(),
            ty,
            nullable: false,
        }
    }

    /// A column rows may leave empty.
    pub fn nullable(name: &str, ty: ColumnType) -> Self {
        Column {
            name: name.to_owned(),
            ty,
            nullable: true,
        }
    }
}

/// An aggregate table a plugin writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Lower-case snake_case, unique across the loaded plugins.
    pub name: String,
    /// Columns in row order.
    pub columns: Vec<Column>,
    /// Columns identifying a row; a row with an existing key replaces the old one.
    pub key: Vec<String>,
}

impl Table {
    /// A table with the given columns and key column names.
    pub fn new(name: &str, columns: Vec<Column>, key: &[&str]) -> Self {
        Table {
            name: name.to_owned(),
            columns,
            key: key.iter().map(|k| (*k).to_owned()).collect(),
        }
    }
}

/// What a plugin says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginInfo {
    /// Lower-case, `-` separated: the plugin's identity across versions.
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// Detector, aggregator or both.
    pub kind: PluginKind,
    /// Aggregate tables it writes.
    pub tables: Vec<Table>,
}

impl PluginInfo {
    /// A detector (emits alerts only).
    pub fn detector(name: &str, version: &str) -> Self {
        Self::new(name, version, PluginKind::Detector)
    }

    /// An aggregator; add its tables with [`PluginInfo::table`].
    pub fn aggregator(name: &str, version: &str) -> Self {
        Self::new(name, version, PluginKind::Aggregator)
    }

    /// A plugin of any kind.
    pub fn new(name: &str, version: &str, kind: PluginKind) -> Self {
        PluginInfo {
            name: name.to_owned(),
            version: version.to_owned(),
            kind,
            tables: Vec::new(),
        }
    }

    /// Adds an aggregate table.
    pub fn table(mut self, table: Table) -> Self {
        self.tables.push(table);
        self
    }

    /// Checks the declaration the way the host will, so mistakes show up in `cargo test`.
    pub fn validate(&self) -> Result<(), String> {
        let ident = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.starts_with(|c: char| c.is_ascii_lowercase())
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        let plugin_name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self.name.starts_with(|c: char| c.is_ascii_lowercase())
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !plugin_name_ok {
            return Err(format!(
                "plugin name {:?} must be lower-case letters, digits and '-'",
                self.name
            ));
        }
        for table in &self.tables {
            if !ident(&table.name) {
                return Err(format!(
                    "table name {:?} must be lower-case snake_case",
                    table.name
                ));
            }
            if table.columns.is_empty() {
                return Err(format!("table {:?} has no columns", table.name));
            }
            for (i, column) in table.columns.iter().enumerate() {
                if !ident(&column.name) || column.name == "ingest_time" {
                    return Err(format!(
                        "column {:?} of table {:?} must be lower-case snake_case",
                        column.name, table.name
                    ));
                }
                if table.columns[..i].iter().any(|c| c.name == column.name) {
                    return Err(format!(
                        "column {:?} appears twice in table {:?}",
                        column.name, table.name
                    ));
                }
            }
            if table.key.is_empty() {
                return Err(format!("table {:?} declares no key columns", table.name));
            }
            for key in &table.key {
                match table.columns.iter().find(|c| &c.name == key) {
                    None => {
                        return Err(format!(
                            "key column {key:?} is not a column of table {:?}",
                            table.name
                        ));
                    }
                    Some(c) if c.nullable => {
                        return Err(format!(
                            "key column {key:?} of table {:?} must not be nullable",
                            table.name
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(())
    }
}
