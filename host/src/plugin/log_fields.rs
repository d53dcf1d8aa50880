//! A plugin's log line as a `tracing` event whose fields are the plugin's own key/value pairs,
//! so a JSON log shipper sees `{"plugin": "...", "session": "...", ...}`, not one flattened
//! string. `tracing` fixes field names at compile time; the names a plugin uses are only known
//! at run time, so each distinct (level, field names) gets a callsite made (and leaked) once,
//! at most [`MAX_CALLSITES`] in all: the memory they hold is bounded whatever plugins log.
//! Past that, or for names that cannot be fields, the caller falls back to one `fields` string.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use tracing_core::callsite::{Callsite, Identifier};
use tracing_core::field::{FieldSet, Value};
use tracing_core::{Event, Interest, Kind, Level, Metadata};

/// Distinct (level, field names) combinations given their own callsite.
pub const MAX_CALLSITES: usize = 256;
/// Most plugin fields in one structured line.
pub const MAX_FIELDS: usize = 12;

/// The names every line carries besides the plugin's.
const FIXED: [&str; 2] = ["message", "plugin"];

struct DynCallsite {
    meta: OnceLock<Metadata<'static>>,
}

impl Callsite for DynCallsite {
    fn set_interest(&self, _: Interest) {}

    fn metadata(&self) -> &Metadata<'_> {
        // Set right after the callsite is made, before it is registered or used.
        self.meta.get().expect("callsite metadata set at creation")
    }
}

type Key = (Level, Vec<String>);

fn callsites() -> &'static Mutex<HashMap<Key, &'static DynCallsite>> {
    static SITES: OnceLock<Mutex<HashMap<Key, &'static DynCallsite>>> = OnceLock::new();
    SITES.get_or_init(|| Mutex::new(HashMap::new()))
}

fn callsite(level: Level, names: &[&str]) -> Option<&'static DynCallsite> {
    let key: Key = (level, names.iter().map(|n| (*n).to_owned()).collect());
    let mut sites = callsites().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(site) = sites.get(&key) {
        return Some(site);
    }
    if sites.len() >= MAX_CALLSITES {
        return None;
    }
    let site: &'static DynCallsite = Box::leak(Box::new(DynCallsite {
        meta: OnceLock::new(),
    }));
    let all: Vec<&'static str> = FIXED
        .iter()
        .copied()
        .chain(
            names
                .iter()
                .map(|n| &*Box::leak(n.to_string().into_boxed_str())),
        )
        .collect();
    let fields = FieldSet::new(Box::leak(all.into_boxed_slice()), Identifier(site));
    let meta = Metadata::new(
        "plugin log",
        "clickwatch::plugin",
        level,
        None,
        None,
        None,
        fields,
        Kind::EVENT,
    );
    if site.meta.set(meta).is_err() {
        return None;
    }
    tracing_core::callsite::register(site);
    sites.insert(key, site);
    Some(site)
}

/// Whether `name` can be a field of its own: a plain identifier-like key that is not one of
/// the fixed names.
fn usable(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !FIXED.contains(&name)
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
}

macro_rules! dispatch_len {
    ($meta:expr, $values:expr, $($n:literal)*) => {
        match $values.len() {
            $($n => {
                let values: [_; $n] = $values.try_into().ok()?;
                Event::dispatch($meta, &$meta.fields().value_set(&values));
            })*
            _ => return None,
        }
    };
}

/// Emits the line with the plugin's fields as fields of their own. `None` when it could not
/// (too many fields, unusable or repeated names, the callsite budget spent): the caller then
/// writes the fields as one string.
pub fn emit(level: Level, plugin: &str, message: &str, fields: &[(String, String)]) -> Option<()> {
    if fields.len() > MAX_FIELDS || !fields.iter().all(|(k, _)| usable(k)) {
        return None;
    }
    let mut names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return None;
    }
    let site = callsite(level, &names)?;
    let meta = site.metadata();
    let enabled = tracing_core::dispatcher::get_default(|d| d.enabled(meta));
    if !enabled {
        return Some(());
    }
    let set = meta.fields();
    let message = format_args!("{message}");
    let mut values: Vec<(&tracing_core::Field, Option<&dyn Value>)> = Vec::new();
    let (message_field, plugin_field) = (set.field("message")?, set.field("plugin")?);
    let named: Vec<(tracing_core::Field, &str)> = fields
        .iter()
        .map(|(k, v)| set.field(k).map(|f| (f, v.as_str())))
        .collect::<Option<_>>()?;
    values.push((&message_field, Some(&message as &dyn Value)));
    values.push((&plugin_field, Some(&plugin as &dyn Value)));
    for (field, value) in &named {
        values.push((field, Some(value as &dyn Value)));
    }
    dispatch_len!(meta, values, 2 3 4 5 6 7 8 9 10 11 12 13 14);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_cannot_be_fields_fall_back() {
        let f = |k: &str| vec![(k.to_owned(), "v".to_owned())];
        assert!(emit(Level::INFO, "p", "m", &f("session")).is_some());
        assert!(emit(Level::INFO, "p", "m", &f("message")).is_none());
        assert!(emit(Level::INFO, "p", "m", &f("a b")).is_none());
        let repeated = vec![
            ("k".to_owned(), "1".to_owned()),
            ("k".to_owned(), "2".to_owned()),
        ];
        assert!(emit(Level::INFO, "p", "m", &repeated).is_none());
        let many: Vec<(String, String)> = (0..=MAX_FIELDS)
            .map(|i| (format!("k{i}"), "v".to_owned()))
            .collect();
        assert!(emit(Level::INFO, "p", "m", &many).is_none());
    }
}
