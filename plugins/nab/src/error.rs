//! The one error type of the NAB crate: what went wrong reading the corpus, and where.

use std::fmt;
use std::path::PathBuf;

/// Reading the corpus failed. Every variant names the file, so a missing or malformed corpus
/// is fixed without a debugger.
#[derive(Debug)]
pub enum NabError {
    /// A file could not be read (missing corpus, permissions).
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file was read but its content is not what NAB publishes.
    Format {
        /// The file.
        path: PathBuf,
        /// What was wrong, with the line when there is one.
        message: String,
    },
}

impl fmt::Display for NabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NabError::Io { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            NabError::Format { path, message } => write!(f, "{}: {message}", path.display()),
        }
    }
}

impl std::error::Error for NabError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NabError::Io { source, .. } => Some(source),
            NabError::Format { .. } => None,
        }
    }
}

/// Reads a whole file, naming it in the error.
pub(crate) fn read(path: &std::path::Path) -> Result<String, NabError> {
    std::fs::read_to_string(path).map_err(|source| NabError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// A format error about `path`.
pub(crate) fn format_error(path: &std::path::Path, message: impl Into<String>) -> NabError {
    NabError::Format {
        path: path.to_path_buf(),
        message: message.into(),
    }
}
