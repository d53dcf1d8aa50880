//! An event's free-form properties, kept as the JSON text it was sent in: a number such as
//! `123456789012345678901234567890` or `0.1000` is stored and handed to plugins exactly as
//! written (parsed into doubles it would come back as `1.2345678901234568e29` or `0.1`), and
//! the per-event path never builds a map it does not need.

use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// A JSON object's text, checked to be valid JSON and an object.
#[derive(Clone)]
pub struct Properties(Box<RawValue>);

impl Properties {
    /// The object text as sent.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// Whether the object has no member (`{}`, whatever the spacing).
    pub fn is_empty(&self) -> bool {
        let inner = self.as_str().trim();
        inner
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .is_some_and(|s| s.trim().is_empty())
    }

    /// The value of member `name`, parsed (only for the few callers that need one value).
    pub fn get(&self, name: &str) -> Option<serde_json::Value> {
        let mut map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(self.as_str()).ok()?;
        map.remove(name)
    }

    /// The properties of a map (the generator builds its events this way); `None` only if
    /// the map cannot be encoded.
    pub fn from_map(map: &serde_json::Map<String, serde_json::Value>) -> Option<Self> {
        serde_json::value::to_raw_value(map).ok().map(Properties)
    }

    /// Properties from JSON text; an error unless it is one JSON object.
    pub fn parse(text: &str) -> Result<Self, String> {
        let raw = RawValue::from_string(text.to_owned()).map_err(|e| e.to_string())?;
        Properties::checked(raw)
    }

    fn checked(raw: Box<RawValue>) -> Result<Self, String> {
        if raw.get().trim_start().starts_with('{') {
            Ok(Properties(raw))
        } else {
            Err("expected a JSON object".to_owned())
        }
    }
}

impl PartialEq for Properties {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Properties {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Properties {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        Properties::checked(raw).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_kept_as_written_and_non_objects_refused() {
        let text = r#"{"big":123456789012345678901234567890,"price":0.1000,"n":{"a":[1,2]}}"#;
        let p = Properties::parse(text).unwrap();
        assert_eq!(p.as_str(), text);
        assert_eq!(serde_json::to_string(&p).unwrap(), text);
        assert_eq!(p.get("price").and_then(|v| v.as_f64()), Some(0.1));
        assert!(!p.is_empty());
        assert!(Properties::parse("{ \n }").unwrap().is_empty());
        assert!(Properties::parse("[1]").is_err());
        assert!(Properties::parse("12").is_err());
        assert!(Properties::parse("{\"a\":").is_err());
    }
}
