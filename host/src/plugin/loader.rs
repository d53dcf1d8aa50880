//! Loading one plugin file into a [`Prepared`] plugin: read, compile, validate, `init` with the
//! plugin's settings. Shared by start-up, hot reload and `clickwatch plugin check`.

use std::path::{Path, PathBuf};

use super::component::{LoadError, PluginModule};
use super::engine::Runtime;
use super::set::Prepared;

/// Why a plugin file was refused, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("plugin file {}: {reason}", path.display())]
pub struct PrepareError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: PrepareReason,
}

/// The reason behind a [`PrepareError`].
#[derive(Debug, thiserror::Error)]
pub enum PrepareReason {
    /// Could not read it.
    #[error("cannot read: {0}")]
    Read(#[from] std::io::Error),
    /// Not a valid plugin.
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// Whether a path looks like a plugin file (`*.wasm`, not hidden).
pub fn is_plugin_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "wasm")
        && path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| !n.starts_with('.'))
}

/// Loads `path` and initialises it with the settings `settings_for` gives for its name.
/// Blocking (compiles): call from a blocking thread.
pub fn prepare(
    runtime: &Runtime,
    path: &Path,
    settings_for: &dyn Fn(&str) -> String,
) -> Result<Prepared, PrepareError> {
    let fail = |reason: PrepareReason| PrepareError {
        path: path.to_owned(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(e.into()))?;
    let module = PluginModule::load(runtime, &bytes).map_err(|e| fail(e.into()))?;
    let settings = settings_for(&module.info.name);
    let instance = module
        .instantiate(&settings)
        .map_err(|e| fail(LoadError::Init(e).into()))?;
    Ok(Prepared {
        path: path.to_owned(),
        module,
        settings,
        instance,
    })
}

/// Every plugin file in `dir`, sorted by name.
pub fn plugin_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_plugin_file(p) && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}
