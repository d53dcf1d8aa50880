//! `clickwatch plugin new`: writes a plugin crate that builds to wasm and passes its own tests.

use std::path::{Path, PathBuf};

/// Why scaffolding failed.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// Bad plugin name.
    #[error("plugin name {0:?} must be lower-case letters, digits and '-', starting with a letter")]
    Name(String),
    /// The target exists.
    #[error("{} already exists; choose another name or folder", .0.display())]
    Exists(PathBuf),
    /// The SDK could not be found.
    #[error("cannot find the clickwatch SDK (plugins/sdk); pass --sdk PATH or set CLICKWATCH_SDK")]
    NoSdk,
    /// Writing failed.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Where the SDK is: an explicit path, `$CLICKWATCH_SDK`, or the source tree this binary was
/// built from.
pub fn find_sdk(explicit: Option<&Path>) -> Result<PathBuf, ScaffoldError> {
    let candidates = [
        explicit.map(Path::to_path_buf),
        std::env::var_os("CLICKWATCH_SDK").map(PathBuf::from),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.join("Cargo.toml").is_file())
        .map(|p| p.canonicalize().unwrap_or(p))
        .ok_or(ScaffoldError::NoSdk)
}

/// Writes a new plugin crate `name` under `parent`, depending on the SDK at `sdk`.
pub fn new_plugin(name: &str, parent: &Path, sdk: &Path) -> Result<PathBuf, ScaffoldError> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.len() <= 64;
    if !valid {
        return Err(ScaffoldError::Name(name.to_owned()));
    }
    let dir = parent.join(name);
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir));
    }
    let type_name: String = name
        .split('-')
        .map(|part| {
            let mut c = part.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    let files = [
        (
            "Cargo.toml",
            CARGO
                .replace("{name}", name)
                .replace("{sdk}", &sdk.display().to_string()),
        ),
        (
            "src/lib.rs",
            LIB.replace("{name}", name).replace("{Type}", &type_name),
        ),
        (".gitignore", "/target\n".to_owned()),
    ];
    for (file, text) in files {
        let path = dir.join(file);
        let io = |source| ScaffoldError::Io {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&path, text).map_err(io)?;
    }
    Ok(dir)
}

const CARGO: &str = r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

# Its own workspace, so it builds wherever it is put.
[workspace]

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
clickwatch-sdk = { path = "{sdk}" }
serde = { version = "1", features = ["derive"] }
serde_json = "1"

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
panic = "abort"
strip = "debuginfo"
"#;

const LIB: &str = r##"//! {name}: a Clickwatch detector. Flags sessions that view more than `max_views` pages.
//!
//! Test:  cargo test
//! Build: cargo build --release --target wasm32-unknown-unknown
//! Load:  copy target/wasm32-unknown-unknown/release/*.wasm into the host's plugins folder.

use std::collections::HashMap;

use clickwatch_sdk::prelude::*;
use serde::Deserialize;

/// Settings from `[plugins.settings.{name}]` in the host config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Page views per session before an alert (default 50).
    pub max_views: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { max_views: 50 }
    }
}

/// The detector.
pub struct {Type} {
    max_views: u32,
    views: HashMap<String, u32>,
}

impl Plugin for {Type} {
    type Settings = Settings;

    fn info() -> PluginInfo {
        // The state is per session: the host sends each session's events to one instance.
        PluginInfo::detector("{name}", env!("CARGO_PKG_VERSION")).keyed_by(StateKey::Session)
    }

    fn new(settings: Settings) -> Result<Self, String> {
        Ok({Type} { max_views: settings.max_views, views: HashMap::new() })
    }

    fn process(&mut self, batch: &Batch<'_>, out: &mut Output) -> Result<(), String> {
        for click in batch.iter().filter(|c| c.kind() == EventKind::PageView) {
            let n = self.views.entry(click.session().to_owned()).or_default();
            *n += 1;
            if *n == self.max_views + 1 {
                out.alert(
                    Alert::new("many-views", "session", click.session())
                        .window(click.time_ms(), click.time_ms())
                        .score(f64::from(*n))
                        .message(format!("more than {} page views", self.max_views)),
                );
            }
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<Vec<u8>, String> {
        clickwatch_sdk::state::encode(&self.views)
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        self.views = clickwatch_sdk::state::decode(state)?;
        Ok(())
    }
}

clickwatch_sdk::export_plugin!({Type});

#[cfg(test)]
mod tests {
    use super::*;
    use clickwatch_sdk::testing::{Harness, TestClick};

    #[test]
    fn alerts_once_past_the_limit_and_keeps_counts_across_reloads() {
        let mut h = Harness::<{Type}>::new(r#"{"max_views": 3}"#).unwrap();
        let views: Vec<_> = (0..3).map(|i| TestClick::page_view(i, "s1", "/")).collect();
        assert!(h.process(&views).unwrap().alerts.is_empty());
        h.reload().unwrap();
        let out = h.process(&views).unwrap();
        assert_eq!(out.alerts.len(), 1);
        assert_eq!(out.alerts[0].entity, "s1");
    }
}
"##;
