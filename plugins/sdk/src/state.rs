//! Helpers to snapshot and restore state that implements serde's traits.
//!
//! JSON is used on purpose: it is self-describing, so a newer plugin version can restore an
//! older snapshot when it adds fields with `#[serde(default)]`.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Serialises `state` for [`crate::Plugin::snapshot`].
pub fn encode<T: Serialize>(state: &T) -> Result<Vec<u8>, String> {
    serde_json::to_vec(state).map_err(|e| format!("cannot encode state: {e}"))
}

/// Deserialises bytes written by [`encode`], for [`crate::Plugin::restore`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("cannot decode state: {e}"))
}
