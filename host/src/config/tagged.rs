//! Sections selected by a `type` key. serde's internally tagged enums buffer their content and
//! lose the key path of errors inside them; this reads `type` by hand and deserialises the rest
//! into the variant's struct, keeping the full path (`source.rate`, not just `source`).

use serde::de::{DeserializeOwned, Error};

/// Separates an inner key path from its message inside a serde error message; `load` splits it
/// back out to name the full key.
pub(crate) const PATH_MARK: char = '\u{1}';

/// Deserialises `table` into `T`, carrying the inner key path in the error message.
pub(crate) fn variant<T: DeserializeOwned, E: Error>(table: toml::Table) -> Result<T, E> {
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().message().to_owned();
        // An error from a nested tagged section already carries its path: prepend ours.
        match inner.split_once(PATH_MARK) {
            Some((nested, message)) if path != "." => {
                E::custom(format!("{path}.{nested}{PATH_MARK}{message}"))
            }
            Some((nested, message)) => E::custom(format!("{nested}{PATH_MARK}{message}")),
            None => E::custom(format!("{path}{PATH_MARK}{inner}")),
        }
    })
}

/// Reads and removes the `type` key.
pub(crate) fn take_type<E: Error>(table: &mut toml::Table, expected: &[&str]) -> Result<String, E> {
    match table.remove("type") {
        Some(toml::Value::String(s)) if expected.contains(&s.as_str()) => Ok(s),
        Some(toml::Value::String(s)) => Err(E::custom(format!(
            "type{PATH_MARK}unknown type {s:?}, expected one of {}",
            expected.join(", ")
        ))),
        Some(other) => Err(E::custom(format!(
            "type{PATH_MARK}expected a string, got {}",
            other.type_str()
        ))),
        None => Err(E::custom(format!(
            "type{PATH_MARK}missing; expected one of {}",
            expected.join(", ")
        ))),
    }
}

/// Implements `Deserialize` for an enum whose variants each wrap one struct, chosen by `type`.
macro_rules! tagged_enum {
    ($enum:ident { $($tag:literal => $variant:ident($inner:ty)),+ $(,)? }) => {
        impl<'de> serde::Deserialize<'de> for $enum {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let mut table = <toml::Table as serde::Deserialize>::deserialize(d)?;
                let ty: String = $crate::config::tagged::take_type(&mut table, &[$($tag),+])?;
                match ty.as_str() {
                    $($tag => $crate::config::tagged::variant::<$inner, D::Error>(table).map($enum::$variant),)+
                    _ => unreachable!("take_type only returns expected tags"),
                }
            }
        }
    };
}
pub(crate) use tagged_enum;
