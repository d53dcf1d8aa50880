//! The plugin reload history the dashboard shows: loads, swaps (from which version, state
//! carried or not), refusals, parkings and unloads, newest last, bounded.

use std::collections::VecDeque;

use serde::Serialize;

/// Lifecycle events kept.
pub const KEPT: usize = 100;

/// What happened to a plugin file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// A plugin went live for the first time.
    Loaded,
    /// A new version replaced the live one.
    Swapped,
    /// The file was refused; the live version (if any) keeps running.
    Refused,
    /// The file provides a plugin another file already provides; it waits.
    Parked,
    /// The file was removed and its plugin unloaded.
    Unloaded,
}

/// One lifecycle event.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Reload {
    /// Wall clock, ms since the epoch.
    pub at_ms: i64,
    /// Plugin name (empty when a file was refused before its name was known).
    pub plugin: String,
    /// What happened.
    pub change: Change,
    /// The version live before, if any.
    pub from: Option<String>,
    /// The version of the file, if known.
    pub to: Option<String>,
    /// For a swap: whether the previous version's state was restored into the new one.
    pub restored: Option<bool>,
    /// The file.
    pub file: String,
    /// Why it was refused.
    pub reason: Option<String>,
}

impl Reload {
    /// An event happening now, with the optional fields empty.
    pub fn now(change: Change, plugin: &str, file: &str) -> Reload {
        Reload {
            at_ms: chrono::Utc::now().timestamp_millis(),
            plugin: plugin.to_owned(),
            change,
            from: None,
            to: None,
            restored: None,
            file: file.to_owned(),
            reason: None,
        }
    }

    /// A file refused before its plugin was known (it did not load or initialise).
    pub fn refused(file: &str, reason: String) -> Reload {
        Reload {
            reason: Some(reason),
            ..Reload::now(Change::Refused, "", file)
        }
    }
}

/// The bounded history.
#[derive(Debug, Default)]
pub struct History {
    events: VecDeque<Reload>,
}

impl History {
    /// Notes an event, forgetting the oldest past [`KEPT`].
    pub fn push(&mut self, event: Reload) {
        if self.events.len() == KEPT {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// Every event kept, oldest first.
    pub fn all(&self) -> Vec<Reload> {
        self.events.iter().cloned().collect()
    }
}
