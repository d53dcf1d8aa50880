//! The wasm side of the glue: generated bindings, the one plugin instance, and conversions
//! between WIT types and SDK types.

use std::any::Any;
use std::cell::RefCell;

use crate::Plugin;
use crate::batch::BatchData;
use crate::info::{ColumnType, PluginKind, StateKey};
use crate::log::Level;
use crate::output::{Output, Severity, Value};

#[allow(missing_docs, unsafe_code)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "clickwatch-plugin",
        pub_export_macro: true,
        default_bindings_module: "clickwatch_sdk::__private::bindings",
        runtime_path: "clickwatch_sdk::__private::wit_bindgen::rt",
    });
}

use bindings::clickwatch::plugin::host as wit_host;
use bindings::clickwatch::plugin::types as wit;

thread_local! {
    // The plugin value of this instance. A wasm instance is single-threaded and holds exactly
    // one plugin, so a thread-local is the whole state store.
    static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

pub(crate) fn host_log(level: Level, message: &str, fields: &[(&str, &str)]) {
    let level = match level {
        Level::Trace => wit_host::Level::Trace,
        Level::Debug => wit_host::Level::Debug,
        Level::Info => wit_host::Level::Info,
        Level::Warn => wit_host::Level::Warn,
        Level::Error => wit_host::Level::Error,
    };
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    wit_host::log(level, message, &fields);
}

/// A panic aborts the wasm instance and its message would be lost; send it to the host log
/// first, tagged so the host can attach it to the trap it sees next.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let message = match info.payload().downcast_ref::<&str>() {
                Some(s) => (*s).to_owned(),
                None => info
                    .payload()
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| "panic".to_owned()),
            };
            let location = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            host_log(
                Level::Error,
                &message,
                &[("panic", "true"), ("location", &location)],
            );
        }));
    });
}

fn with_plugin<P: Plugin, R>(f: impl FnOnce(&mut P) -> Result<R, String>) -> Result<R, String> {
    INSTANCE.with(|cell| {
        let mut slot = cell.borrow_mut();
        match slot.as_mut().and_then(|b| b.downcast_mut::<P>()) {
            Some(plugin) => f(plugin),
            None => Err("plugin called before init".to_owned()),
        }
    })
}

pub fn info<P: Plugin>() -> wit::PluginInfo {
    install_panic_hook();
    let info = P::info();
    wit::PluginInfo {
        name: info.name,
        version: info.version,
        kind: match info.kind {
            PluginKind::Detector => wit::PluginKind::Detector,
            PluginKind::Aggregator => wit::PluginKind::Aggregator,
            PluginKind::Both => wit::PluginKind::Both,
        },
        key: match info.key {
            StateKey::Session => wit::StateKey::Session,
            StateKey::User => wit::StateKey::User,
            StateKey::Ip => wit::StateKey::Ip,
            StateKey::IpNetwork => wit::StateKey::IpNetwork,
            StateKey::Url => wit::StateKey::Url,
            StateKey::Property(name) => wit::StateKey::Property(name),
            StateKey::Global => wit::StateKey::Global,
        },
        tables: info
            .tables
            .into_iter()
            .map(|t| wit::Table {
                name: t.name,
                columns: t
                    .columns
                    .into_iter()
                    .map(|c| wit::Column {
                        name: c.name,
                        ty: match c.ty {
                            ColumnType::Int64 => wit::ColumnType::Int64,
                            ColumnType::Float64 => wit::ColumnType::Float64,
                            ColumnType::Text => wit::ColumnType::Text,
                            ColumnType::Timestamp => wit::ColumnType::Timestamp,
                            ColumnType::Boolean => wit::ColumnType::Boolean,
                        },
                        nullable: c.nullable,
                    })
                    .collect(),
                key: t.key,
            })
            .collect(),
        contract_version: crate::CONTRACT_VERSION.to_owned(),
    }
}

pub fn init<P: Plugin>(settings: &str) -> Result<(), String> {
    install_panic_hook();
    let settings: P::Settings = crate::testing::parse_settings(settings)?;
    let plugin = P::new(settings)?;
    INSTANCE.with(|cell| *cell.borrow_mut() = Some(Box::new(plugin)));
    Ok(())
}

pub fn process<P: Plugin>(batch: wit::ClickBatch) -> Result<wit::Output, String> {
    let data = BatchData {
        text: batch.text,
        starts: batch.starts,
        time_ms: batch.time_ms,
        kind: batch.kind,
        event_id: batch.event_id,
        session: batch.session,
        user: batch.user,
        url: batch.url,
        referrer: batch.referrer,
        ip: batch.ip,
        user_agent: batch.user_agent,
        device: batch.device,
        country: batch.country,
        properties: batch.properties,
    };
    let view = data.view()?;
    let mut out = Output::default();
    with_plugin::<P, _>(|p| p.process(&view, &mut out))?;
    Ok(to_wit_output(out))
}

pub fn tick<P: Plugin>(watermark_ms: i64) -> Result<wit::Output, String> {
    let mut out = Output::default();
    with_plugin::<P, _>(|p| p.tick(watermark_ms, &mut out))?;
    Ok(to_wit_output(out))
}

pub fn snapshot<P: Plugin>() -> Result<Vec<u8>, String> {
    with_plugin::<P, _>(|p| p.snapshot())
}

pub fn restore<P: Plugin>(state: &[u8]) -> Result<(), String> {
    with_plugin::<P, _>(|p| p.restore(state))
}

fn to_wit_output(out: Output) -> wit::Output {
    wit::Output {
        alerts: out
            .alerts
            .into_iter()
            .map(|a| wit::Alert {
                kind: a.kind,
                severity: match a.severity {
                    Severity::Info => wit::Severity::Info,
                    Severity::Warning => wit::Severity::Warning,
                    Severity::Critical => wit::Severity::Critical,
                },
                entity_type: a.entity_type,
                entity: a.entity,
                time_ms: a.time_ms,
                window_start_ms: a.window_start_ms,
                score: a.score,
                message: a.message,
                details: a.details,
            })
            .collect(),
        rows: out
            .rows
            .into_iter()
            .map(|r| wit::AggregateRow {
                table: r.table,
                values: r
                    .values
                    .into_iter()
                    .map(|v| match v {
                        Value::None => wit::Value::None,
                        Value::Int64(x) => wit::Value::Int64(x),
                        Value::Float64(x) => wit::Value::Float64(x),
                        Value::Text(x) => wit::Value::Text(x),
                        Value::Timestamp(x) => wit::Value::Timestamp(x),
                        Value::Boolean(x) => wit::Value::Boolean(x),
                    })
                    .collect(),
            })
            .collect(),
    }
}
