//! A plugin call's output in host terms: alerts and rows converted from the contract's types,
//! checked against what the plugin declared and against the host's output caps. What fails a
//! check is refused, not lost: the caller dead-letters it with the reason and counts it.
//!
//! The caps bound what one call can make the host hold and write. Lifting itself (wasmtime
//! copying the output out of the guest) is bounded by the guest's memory cap: the output
//! lived in that memory.

use super::bindings;
use super::info::PluginInfo;
use crate::aggregate::{AggregateRow, Value};
use crate::alert::{Alert, Severity};

/// Most alerts one call may emit; the rest are refused.
pub const MAX_ALERTS_PER_CALL: usize = 100_000;
/// Most rows one call may emit; the rest are refused.
pub const MAX_ROWS_PER_CALL: usize = 1_000_000;
/// Longest text one alert field, alert details or row value may hold, bytes.
pub const MAX_TEXT_BYTES: usize = 64 << 10;

/// An alert or row the host refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    /// The plugin that emitted it.
    pub plugin: String,
    /// Its version.
    pub version: String,
    /// `plugin_row_invalid`, `plugin_alert_invalid` or `plugin_output_over_cap`.
    pub reason: &'static str,
    /// What was wrong, naming the plugin's table or field.
    pub problem: String,
    /// The refused item as JSON (empty for the count of items over a cap).
    pub payload: String,
}

impl Refused {
    fn new(info: &PluginInfo, reason: &'static str, problem: String, payload: String) -> Refused {
        Refused {
            plugin: info.name.clone(),
            version: info.version.clone(),
            reason,
            problem,
            payload,
        }
    }
}

/// Converts a plugin's output into host alerts and rows, returning what it refused: rows
/// for tables the plugin did not declare or that do not fit their table (a plugin bug must
/// not reach a sink as a bad write), text over [`MAX_TEXT_BYTES`], and items past the
/// per-call caps.
pub fn convert_output(
    info: &PluginInfo,
    out: bindings::Output,
    alerts: &mut Vec<Alert>,
    rows: &mut Vec<AggregateRow>,
) -> Vec<Refused> {
    let mut refused = Vec::new();
    let (alert_count, row_count) = (out.alerts.len(), out.rows.len());
    for a in out.alerts.into_iter().take(MAX_ALERTS_PER_CALL) {
        // Sizes as the plugin sent them (details as its JSON text), before any conversion.
        let oversized = oversized_alert_field(&a);
        let alert = alert(info, a);
        match oversized {
            None => alerts.push(alert),
            Some(field) => refused.push(Refused::new(
                info,
                "plugin_alert_invalid",
                format!(
                    "alert {} of {} has a {field} longer than {MAX_TEXT_BYTES} bytes",
                    alert.kind, info.name
                ),
                alert.to_json().to_string(),
            )),
        }
    }
    over_cap(
        &mut refused,
        info,
        "alerts",
        alert_count,
        MAX_ALERTS_PER_CALL,
    );
    for r in out.rows.into_iter().take(MAX_ROWS_PER_CALL) {
        let row = AggregateRow {
            table: r.table,
            values: r.values.into_iter().map(value).collect(),
        };
        let problem = match info.tables.iter().find(|t| t.name == row.table) {
            None => Some(format!(
                "row for table {}, which {} did not declare",
                row.table, info.name
            )),
            Some(schema) => crate::aggregate::check_row(schema, &row).err().or_else(|| {
                row.values
                    .iter()
                    .any(|v| matches!(v, Value::Text(t) if t.len() > MAX_TEXT_BYTES))
                    .then(|| {
                        format!(
                            "row for table {} has a text value longer than {MAX_TEXT_BYTES} bytes",
                            row.table
                        )
                    })
            }),
        };
        match problem {
            None => rows.push(row),
            Some(problem) => refused.push(Refused::new(
                info,
                "plugin_row_invalid",
                problem,
                json(&row),
            )),
        }
    }
    over_cap(&mut refused, info, "rows", row_count, MAX_ROWS_PER_CALL);
    refused
}

fn alert(info: &PluginInfo, a: bindings::Alert) -> Alert {
    let details = if a.details.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&a.details).unwrap_or(serde_json::Value::String(a.details))
    };
    Alert {
        detector: info.name.clone(),
        detector_version: info.version.clone(),
        kind: a.kind,
        severity: match a.severity {
            bindings::Severity::Info => Severity::Info,
            bindings::Severity::Warning => Severity::Warning,
            bindings::Severity::Critical => Severity::Critical,
        },
        entity_type: a.entity_type,
        entity: a.entity,
        time_ms: a.time_ms,
        window_start_ms: a.window_start_ms,
        score: if a.score.is_finite() { a.score } else { 0.0 },
        message: a.message,
        details,
    }
}

fn value(v: bindings::Value) -> Value {
    match v {
        bindings::Value::None => Value::Null,
        bindings::Value::Int64(x) => Value::Int64(x),
        bindings::Value::Float64(x) => Value::Float64(x),
        bindings::Value::Text(x) => Value::Text(x),
        bindings::Value::Timestamp(x) => Value::Timestamp(x),
        bindings::Value::Boolean(x) => Value::Boolean(x),
    }
}

/// The first text field of an alert over [`MAX_TEXT_BYTES`].
fn oversized_alert_field(alert: &bindings::Alert) -> Option<&'static str> {
    [
        ("kind", alert.kind.len()),
        ("entity type", alert.entity_type.len()),
        ("entity", alert.entity.len()),
        ("message", alert.message.len()),
        ("details", alert.details.len()),
    ]
    .into_iter()
    .find(|(_, len)| *len > MAX_TEXT_BYTES)
    .map(|(name, _)| name)
}

fn over_cap(refused: &mut Vec<Refused>, info: &PluginInfo, what: &str, n: usize, cap: usize) {
    if n > cap {
        let problem = format!(
            "{} emitted {n} {what} in one call; the host keeps at most {cap}, the other {} were refused",
            info.name,
            n - cap
        );
        refused.push(Refused::new(
            info,
            "plugin_output_over_cap",
            problem,
            String::new(),
        ));
    }
}

fn json(item: &impl serde::Serialize) -> String {
    crate::json_text::to_json_text(item, "plugin output")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{ColumnSchema, ColumnType, TableSchema};
    use crate::keyed::StateKey;
    use crate::plugin::PluginKind;

    fn info() -> PluginInfo {
        PluginInfo {
            name: "p".into(),
            version: "1.0.0".into(),
            kind: PluginKind::Both,
            key: StateKey::Global,
            tables: vec![TableSchema {
                name: "t".into(),
                columns: vec![ColumnSchema {
                    name: "n".into(),
                    ty: ColumnType::Text,
                    nullable: false,
                }],
                key: vec!["n".into()],
            }],
            contract_version: crate::plugin::CONTRACT_VERSION.into(),
        }
    }

    fn row(
        table: &str,
        value: bindings::Value,
    ) -> bindings::clickwatch::plugin::types::AggregateRow {
        bindings::clickwatch::plugin::types::AggregateRow {
            table: table.into(),
            values: vec![value],
        }
    }

    fn alert(entity: String) -> bindings::Alert {
        bindings::Alert {
            kind: "k".into(),
            severity: bindings::Severity::Warning,
            entity_type: "ip".into(),
            entity,
            time_ms: 1,
            window_start_ms: 0,
            score: 1.0,
            message: "m".into(),
            details: String::new(),
        }
    }

    #[test]
    fn rows_that_do_not_fit_are_refused_with_their_payload() {
        let out = bindings::Output {
            alerts: vec![],
            rows: vec![
                row("t", bindings::Value::Text("ok".into())),
                row("t", bindings::Value::Int64(3)),
                row("elsewhere", bindings::Value::Text("x".into())),
                row("t", bindings::Value::Text("x".repeat(MAX_TEXT_BYTES + 1))),
            ],
        };
        let (mut alerts, mut rows) = (vec![], vec![]);
        let refused = convert_output(&info(), out, &mut alerts, &mut rows);
        assert_eq!(rows.len(), 1);
        assert_eq!(refused.len(), 3);
        assert!(refused.iter().all(|r| r.reason == "plugin_row_invalid"));
        assert!(refused[0].problem.contains("does not fit column n"));
        assert!(
            refused[0].payload.contains("\"values\":[3]"),
            "{}",
            refused[0].payload
        );
        assert!(refused[1].problem.contains("elsewhere"));
        assert!(refused[2].problem.contains("longer than"));
    }

    #[test]
    fn output_past_the_caps_is_refused_and_counted() {
        let out = bindings::Output {
            alerts: (0..MAX_ALERTS_PER_CALL + 7)
                .map(|i| alert(i.to_string()))
                .chain(std::iter::once(alert("e".repeat(MAX_TEXT_BYTES + 1))))
                .collect(),
            rows: vec![],
        };
        let (mut alerts, mut rows) = (vec![], vec![]);
        let refused = convert_output(&info(), out, &mut alerts, &mut rows);
        assert_eq!(alerts.len(), MAX_ALERTS_PER_CALL);
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].reason, "plugin_output_over_cap");
        assert!(refused[0].problem.contains("the other 8 were refused"));
        let out = bindings::Output {
            alerts: vec![alert("e".repeat(MAX_TEXT_BYTES + 1))],
            rows: vec![],
        };
        let refused = convert_output(&info(), out, &mut alerts, &mut rows);
        assert_eq!(refused[0].reason, "plugin_alert_invalid");
        assert!(refused[0].problem.contains("entity longer than"));
    }
}
