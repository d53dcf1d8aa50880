//! A native test harness: drive a [`Plugin`] with hand-made clicks under plain `cargo test`,
//! no wasm runtime involved.
//!
//! ```
//! use clickwatch_sdk::prelude::*;
//! use clickwatch_sdk::testing::{Harness, TestClick};
//! # struct Echo;
//! # impl Plugin for Echo {
//! #     type Settings = serde_json::Value;
//! #     fn info() -> PluginInfo { PluginInfo::detector("echo", "0") }
//! #     fn new(_: serde_json::Value) -> Result<Self, String> { Ok(Echo) }
//! #     fn process(&mut self, b: &Batch<'_>, out: &mut Output) -> Result<(), String> {
//! #         for c in b.iter() { out.alert(Alert::new("seen", "session", c.session())); }
//! #         Ok(())
//! #     }
//! # }
//! let mut h = Harness::<Echo>::new("{}").unwrap();
//! let out = h.process(&[TestClick::page_view(1_000, "s1", "/home")]).unwrap();
//! assert_eq!(out.alerts[0].entity, "s1");
//! ```

use std::collections::HashMap;

use serde::de::DeserializeOwned;

use crate::Plugin;
use crate::batch::{BatchData, EventKind};
use crate::output::Output;

/// Parses settings JSON as the host passes them (an empty string counts as `{}`).
pub fn parse_settings<S: DeserializeOwned>(json: &str) -> Result<S, String> {
    let json = if json.trim().is_empty() { "{}" } else { json };
    serde_json::from_str(json).map_err(|e| format!("invalid settings: {e}"))
}

/// A click event for tests, with owned fields. Start from [`TestClick::page_view`] or
/// [`TestClick::new`] and adjust fields directly.
#[derive(Debug, Clone, PartialEq)]
pub struct TestClick {
    /// Event time, ms since the Unix epoch.
    pub time_ms: i64,
    /// Event kind.
    pub kind: EventKind,
    /// Event id; empty means "generate one".
    pub event_id: String,
    /// Session id.
    pub session: String,
    /// User id.
    pub user: Option<String>,
    /// Page URL.
    pub url: String,
    /// Referrer.
    pub referrer: Option<String>,
    /// Client IP.
    pub ip: Option<String>,
    /// User agent.
    pub user_agent: Option<String>,
    /// Device class.
    pub device: Option<String>,
    /// Country code.
    pub country: Option<String>,
    /// Properties JSON object.
    pub properties: Option<String>,
}

impl TestClick {
    /// An event of `kind` in `session` on `url` at `time_ms`.
    pub fn new(kind: EventKind, time_ms: i64, session: &str, url: &str) -> Self {
        TestClick {
            time_ms,
            kind,
            event_id: String::new(),
            session: session.to_owned(),
            user: None,
            url: url.to_owned(),
            referrer: None,
            ip: None,
            user_agent: None,
            device: None,
            country: None,
            properties: None,
        }
    }

    /// A page view.
    pub fn page_view(time_ms: i64, session: &str, url: &str) -> Self {
        Self::new(EventKind::PageView, time_ms, session, url)
    }

    /// A click.
    pub fn click(time_ms: i64, session: &str, url: &str) -> Self {
        Self::new(EventKind::Click, time_ms, session, url)
    }

    /// Sets the user.
    pub fn user(mut self, user: &str) -> Self {
        self.user = Some(user.to_owned());
        self
    }

    /// Sets the IP.
    pub fn ip(mut self, ip: &str) -> Self {
        self.ip = Some(ip.to_owned());
        self
    }
}

/// Builds the columnar [`BatchData`] the host would send, interning strings the same way.
#[derive(Debug)]
pub struct BatchBuilder {
    data: BatchData,
    index: HashMap<String, u32>,
    next_id: u64,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchBuilder {
    /// An empty batch (string 0 is the empty string, as on the wire).
    pub fn new() -> Self {
        let mut data = BatchData::default();
        data.starts.push(0);
        data.starts.push(0);
        let mut index = HashMap::new();
        index.insert(String::new(), 0);
        BatchBuilder {
            data,
            index,
            next_id: 0,
        }
    }

    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        self.data.text.extend_from_slice(s.as_bytes());
        let id = (self.data.starts.len() - 1) as u32;
        self.data.starts.push(self.data.text.len() as u32);
        self.index.insert(s.to_owned(), id);
        id
    }

    fn intern_opt(&mut self, s: &Option<String>) -> u32 {
        s.as_deref().map_or(0, |s| self.intern(s))
    }

    /// Appends one event.
    pub fn push(&mut self, click: &TestClick) -> &mut Self {
        let event_id = if click.event_id.is_empty() {
            self.next_id += 1;
            format!("test-{}", self.next_id)
        } else {
            click.event_id.clone()
        };
        let ids = [
            self.intern(&event_id),
            self.intern(&click.session),
            self.intern_opt(&click.user),
            self.intern(&click.url),
            self.intern_opt(&click.referrer),
            self.intern_opt(&click.ip),
            self.intern_opt(&click.user_agent),
            self.intern_opt(&click.device),
            self.intern_opt(&click.country),
            self.intern_opt(&click.properties),
        ];
        let d = &mut self.data;
        d.time_ms.push(click.time_ms);
        d.kind.push(click.kind.code());
        for (column, id) in [
            &mut d.event_id,
            &mut d.session,
            &mut d.user,
            &mut d.url,
            &mut d.referrer,
            &mut d.ip,
            &mut d.user_agent,
            &mut d.device,
            &mut d.country,
            &mut d.properties,
        ]
        .into_iter()
        .zip(ids)
        {
            column.push(id);
        }
        self
    }

    /// The finished batch.
    pub fn build(&self) -> BatchData {
        self.data.clone()
    }

    /// Builds a batch from a slice of clicks.
    pub fn from_clicks(clicks: &[TestClick]) -> BatchData {
        let mut b = BatchBuilder::new();
        for c in clicks {
            b.push(c);
        }
        b.build()
    }
}

/// Runs a plugin natively the way the host does: settings JSON in, batches and ticks through,
/// snapshots across "reloads".
pub struct Harness<P: Plugin> {
    plugin: P,
    settings: String,
}

impl<P: Plugin> std::fmt::Debug for Harness<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<P: Plugin> Harness<P> {
    /// Validates `P::info()` and builds the plugin from `settings` JSON.
    pub fn new(settings: &str) -> Result<Self, String> {
        P::info().validate()?;
        let plugin = P::new(parse_settings(settings)?)?;
        Ok(Harness {
            plugin,
            settings: settings.to_owned(),
        })
    }

    /// Sends one batch.
    pub fn process(&mut self, clicks: &[TestClick]) -> Result<Output, String> {
        let data = BatchBuilder::from_clicks(clicks);
        let mut out = Output::default();
        self.plugin.process(&data.view()?, &mut out)?;
        Ok(out)
    }

    /// Advances the watermark.
    pub fn tick(&mut self, watermark_ms: i64) -> Result<Output, String> {
        let mut out = Output::default();
        self.plugin.tick(watermark_ms, &mut out)?;
        Ok(out)
    }

    /// Does what a hot reload does: snapshot, build a fresh instance from the same settings,
    /// restore into it, and carry on with the fresh one.
    pub fn reload(&mut self) -> Result<(), String> {
        let state = self.plugin.snapshot()?;
        let mut fresh = P::new(parse_settings(&self.settings)?)?;
        fresh.restore(&state)?;
        self.plugin = fresh;
        Ok(())
    }

    /// The plugin's snapshot, as the host would store it.
    pub fn snapshot(&self) -> Result<Vec<u8>, String> {
        self.plugin.snapshot()
    }

    /// Does what an upgrade does: a fresh instance from the same settings restores `state`
    /// (say, a snapshot an older version wrote) and carries on.
    pub fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        let mut fresh = P::new(parse_settings(&self.settings)?)?;
        fresh.restore(state)?;
        self.plugin = fresh;
        Ok(())
    }

    /// The plugin itself, for assertions on its state.
    pub fn plugin(&self) -> &P {
        &self.plugin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_round_trips_through_the_view() {
        let clicks = vec![
            TestClick::page_view(5, "s1", "/a").user("u1"),
            TestClick::click(6, "s1", "/a").ip("10.0.0.1"),
            TestClick::new(EventKind::Purchase, 7, "s2", "/checkout"),
        ];
        let data = BatchBuilder::from_clicks(&clicks);
        let batch = data.view().unwrap();
        assert_eq!(batch.len(), 3);
        let got: Vec<_> = batch
            .iter()
            .map(|c| {
                (
                    c.time_ms(),
                    c.kind(),
                    c.session(),
                    c.url(),
                    c.user(),
                    c.ip(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (5, EventKind::PageView, "s1", "/a", Some("u1"), None),
                (6, EventKind::Click, "s1", "/a", None, Some("10.0.0.1")),
                (7, EventKind::Purchase, "s2", "/checkout", None, None),
            ]
        );
        // "/a" and "s1" are interned once.
        assert_eq!(data.url[0], data.url[1]);
    }

    #[test]
    fn bad_indices_read_as_empty_instead_of_panicking() {
        let mut data = BatchBuilder::from_clicks(&[TestClick::page_view(1, "s", "/")]);
        data.url[0] = 9_999;
        let batch = data.view().unwrap();
        assert_eq!(batch.get(0).unwrap().url(), "");
        assert!(batch.get(1).is_none());
    }

    #[test]
    fn mismatched_columns_are_rejected() {
        let mut data = BatchBuilder::from_clicks(&[TestClick::page_view(1, "s", "/")]);
        data.kind.push(0);
        assert!(data.view().unwrap_err().contains("disagree"));
    }

    #[test]
    fn unknown_kind_codes_read_as_other() {
        assert_eq!(EventKind::from_code(77), EventKind::Other);
        for k in EventKind::ALL {
            assert_eq!(EventKind::from_code(k.code()), k);
        }
    }
}
