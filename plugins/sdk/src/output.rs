//! What a plugin hands back: alerts and aggregate rows.

/// How bad an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Worth a look.
    Info,
    /// Probably wrong.
    Warning,
    /// Act now.
    Critical,
}

/// An anomaly a detector found. Build one with [`Alert::new`] and the setters.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Short machine-readable kind, e.g. `fast-clicker`.
    pub kind: String,
    /// How bad it is.
    pub severity: Severity,
    /// What it is about: `session`, `ip`, `page`, `site`, ...
    pub entity_type: String,
    /// Which one.
    pub entity: String,
    /// Event time it was observed at, ms since the Unix epoch.
    pub time_ms: i64,
    /// Start of the evidence window, ms since the Unix epoch.
    pub window_start_ms: i64,
    /// Strength of the evidence (detector-specific scale).
    pub score: f64,
    /// One line for humans.
    pub message: String,
    /// Extra evidence as a JSON object, or empty.
    pub details: String,
}

impl Alert {
    /// A warning about `entity` (of type `entity_type`), with everything else empty.
    pub fn new(kind: &str, entity_type: &str, entity: &str) -> Self {
        Alert {
            kind: kind.to_owned(),
            severity: Severity::Warning,
            entity_type: entity_type.to_owned(),
            entity: entity.to_owned(),
            time_ms: 0,
            window_start_ms: 0,
            score: 0.0,
            message: String::new(),
            details: String::new(),
        }
    }

    /// Sets the severity.
    pub fn severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    /// Sets the evidence window: from `window_start_ms` to the observation at `time_ms`.
    pub fn window(mut self, window_start_ms: i64, time_ms: i64) -> Self {
        self.window_start_ms = window_start_ms;
        self.time_ms = time_ms;
        self
    }

    /// Sets the score.
    pub fn score(mut self, score: f64) -> Self {
        self.score = score;
        self
    }

    /// Sets the human message.
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// Sets the details from any JSON value (an object is expected).
    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details.to_string();
        self
    }
}

/// A value in an aggregate row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// NULL.
    None,
    /// A 64-bit integer.
    Int64(i64),
    /// A 64-bit float.
    Float64(f64),
    /// Text.
    Text(String),
    /// ms since the Unix epoch.
    Timestamp(i64),
    /// A boolean.
    Boolean(bool),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int64(v)
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int64(i64::from(v))
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float64(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Boolean(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::None, Into::into)
    }
}

/// One row of an aggregate table; values follow the table's column order.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The table it belongs to.
    pub table: String,
    /// Values in column order.
    pub values: Vec<Value>,
}

/// Alerts and rows produced by one call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    /// Alerts, in the order emitted.
    pub alerts: Vec<Alert>,
    /// Aggregate rows, in the order emitted.
    pub rows: Vec<Row>,
}

impl Output {
    /// Emits an alert.
    pub fn alert(&mut self, alert: Alert) {
        self.alerts.push(alert);
    }

    /// Emits a row for `table`.
    pub fn row(&mut self, table: &str, values: Vec<Value>) {
        self.rows.push(Row {
            table: table.to_owned(),
            values,
        });
    }

    /// Whether nothing was emitted.
    pub fn is_empty(&self) -> bool {
        self.alerts.is_empty() && self.rows.is_empty()
    }
}
