//! What a plugin declares about itself: name, version, kind, what its state is keyed by, and
//! the aggregate tables it writes.

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

/// What a plugin's state is about: the host hands every event with the same key to the same
/// instance, whatever input partition or host it arrived on. Declare the narrowest key your
/// state needs: a `Url` plugin's work is spread over many instances, a `Global` one has a
/// single instance that sees every event.
///
/// An event without the key's value (no IP, no such property) counts as the empty value, so
/// all such events meet in one instance.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StateKey {
    /// The session id.
    Session,
    /// The user id; anonymous visitors by their session id.
    User,
    /// The client IP address.
    Ip,
    /// The client's network: the IPv4 /24 or IPv6 /48 of its address.
    IpNetwork,
    /// The page URL.
    Url,
    /// The value of one top-level field of `properties`, as text.
    Property(String),
    /// One instance sees every event (the default: always exact, never the fastest).
    #[default]
    Global,
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
    /// What its state is keyed by; [`StateKey::Global`] unless set with
    /// [`PluginInfo::keyed_by`].
    pub key: StateKey,
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
            key: StateKey::Global,
            tables: Vec::new(),
        }
    }

    /// Declares what the plugin's state is keyed by: the host then sends every event with the
    /// same key to the same instance. Rows of a table keyed by something else than this key
    /// (say, per-device totals of a `Session` plugin) would be written by several instances:
    /// such a plugin must be `Global`.
    pub fn keyed_by(mut self, key: StateKey) -> Self {
        self.key = key;
        self
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
        if let StateKey::Property(name) = &self.key
            && !property_name_ok(name)
        {
            return Err(format!(
                "state key property {name:?} must be 1-64 letters, digits, '_', '-' or '.'"
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

/// The host's rule for a `Property` key's field name.
fn property_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_are_global_unless_they_say_otherwise() {
        let info = PluginInfo::detector("d", "1.0.0");
        assert_eq!(info.key, StateKey::Global);
        let info = info.keyed_by(StateKey::Url);
        assert_eq!(info.key, StateKey::Url);
        assert!(info.validate().is_ok());
    }

    #[test]
    fn a_property_key_needs_a_usable_field_name() {
        let bad = PluginInfo::detector("d", "1.0.0").keyed_by(StateKey::Property(String::new()));
        assert!(bad.validate().unwrap_err().contains("state key property"));
        let bad = PluginInfo::detector("d", "1.0.0").keyed_by(StateKey::Property("a b".into()));
        assert!(bad.validate().is_err());
        let good = PluginInfo::detector("d", "1.0.0").keyed_by(StateKey::Property("plan".into()));
        assert!(good.validate().is_ok());
    }
}
