//! Structured logging into the host's log. In native tests lines go to stderr.

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Very detailed.
    Trace,
    /// Detailed.
    Debug,
    /// Normal.
    Info,
    /// Something looks wrong.
    Warn,
    /// Something is wrong.
    Error,
}

/// Writes a log line with extra `fields`.
pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
    crate::__private::emit_log(level, message, fields);
}

/// Logs at info level.
pub fn info(message: &str) {
    log(Level::Info, message, &[]);
}

/// Logs at warn level.
pub fn warn(message: &str) {
    log(Level::Warn, message, &[]);
}

/// Logs at debug level.
pub fn debug(message: &str) {
    log(Level::Debug, message, &[]);
}
