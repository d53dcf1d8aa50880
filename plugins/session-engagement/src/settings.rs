//! Settings of `session-engagement`, from `[plugins.settings.session-engagement]`.

use serde::Deserialize;

/// Settings. Unknown keys are refused; missing keys take the defaults listed on each field.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// A session closes after this much event time without events (default 1800, the usual
    /// web-analytics session timeout).
    pub inactivity_timeout_secs: u32,
    /// Segment windows are this long, by the session's last event (default 900).
    pub window_secs: u32,
    /// Write one `engagement_sessions` row per closed session (default true). Segments are
    /// always written.
    pub emit_sessions: bool,
    /// A user id seen within this many days counts the next session as `returning`
    /// (default 30).
    pub returning_window_days: u32,
    /// At most this many user ids are remembered; the oldest are forgotten first
    /// (default 100000).
    pub max_known_users: u32,
    /// At most this many sessions are open at once; events of further new sessions are
    /// ignored and counted (default 200000).
    pub max_sessions: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            inactivity_timeout_secs: 1_800,
            window_secs: 900,
            emit_sessions: true,
            returning_window_days: 30,
            max_known_users: 100_000,
            max_sessions: 200_000,
        }
    }
}

impl Settings {
    /// Checks value ranges; the message names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("inactivity_timeout_secs", self.inactivity_timeout_secs),
            ("window_secs", self.window_secs),
            ("returning_window_days", self.returning_window_days),
            ("max_known_users", self.max_known_users),
            ("max_sessions", self.max_sessions),
        ] {
            if v == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        Ok(())
    }
}
