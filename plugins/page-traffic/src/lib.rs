//! page-traffic: page views, unique sessions and unique users per page per tumbling window.
//!
//! Windows are closed by the host's event-time watermark (`tick`), so a quiet page still gets
//! its last window written. A window's row is keyed by (window_start, url): if it is ever
//! emitted again the sinks replace it instead of adding to it.

use std::collections::{BTreeMap, HashSet};

use clickwatch_sdk::prelude::*;
use serde::{Deserialize, Serialize};

/// Settings, from `[plugins.settings]` in the host config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Window length in seconds (default 60).
    pub window_secs: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { window_secs: 60 }
    }
}

/// Counts for one page in one window.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct PageCounts {
    views: u64,
    sessions: HashSet<String>,
    users: HashSet<String>,
}

/// The aggregator.
#[derive(Debug, Serialize, Deserialize)]
pub struct PageTraffic {
    window_ms: i64,
    /// Open windows by (window start, url).
    open: BTreeMap<(i64, String), PageCounts>,
}

/// The table this plugin writes.
pub const TABLE: &str = "page_traffic";

impl Plugin for PageTraffic {
    type Settings = Settings;

    fn info() -> PluginInfo {
        PluginInfo::aggregator("page-traffic", env!("CARGO_PKG_VERSION"))
            // Every row is about one URL: its views, sessions and users all meet here.
            .keyed_by(StateKey::Url)
            .table(Table::new(
                TABLE,
                vec![
                    Column::new("window_start", ColumnType::Timestamp),
                    Column::new("window_end", ColumnType::Timestamp),
                    Column::new("url", ColumnType::Text),
                    Column::new("views", ColumnType::Int64),
                    Column::new("unique_sessions", ColumnType::Int64),
                    Column::new("unique_users", ColumnType::Int64),
                ],
                &["window_start", "url"],
            ))
    }

    fn new(settings: Settings) -> Result<Self, String> {
        if settings.window_secs == 0 || settings.window_secs > 86_400 {
            return Err(format!(
                "window_secs must be between 1 and 86400, got {}",
                settings.window_secs
            ));
        }
        Ok(PageTraffic {
            window_ms: i64::from(settings.window_secs) * 1000,
            open: BTreeMap::new(),
        })
    }

    fn process(&mut self, batch: &Batch<'_>, _out: &mut Output) -> Result<(), String> {
        for click in batch.iter() {
            if click.kind() != EventKind::PageView {
                continue;
            }
            let start = click.time_ms().div_euclid(self.window_ms) * self.window_ms;
            let counts = match self.open.get_mut(&(start, click.url().to_owned())) {
                Some(c) => c,
                None => self
                    .open
                    .entry((start, click.url().to_owned()))
                    .or_default(),
            };
            counts.views += 1;
            if !counts.sessions.contains(click.session()) {
                counts.sessions.insert(click.session().to_owned());
            }
            if let Some(user) = click.user()
                && !counts.users.contains(user)
            {
                counts.users.insert(user.to_owned());
            }
        }
        Ok(())
    }

    fn tick(&mut self, watermark_ms: i64, out: &mut Output) -> Result<(), String> {
        // BTreeMap is ordered by window start: closed windows are a prefix.
        while let Some(entry) = self.open.first_entry() {
            let start = entry.key().0;
            if start + self.window_ms > watermark_ms {
                break;
            }
            let ((start, url), counts) = entry.remove_entry();
            out.row(
                TABLE,
                vec![
                    Value::Timestamp(start),
                    Value::Timestamp(start + self.window_ms),
                    url.into(),
                    Value::Int64(counts.views as i64),
                    Value::Int64(counts.sessions.len() as i64),
                    Value::Int64(counts.users.len() as i64),
                ],
            );
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<Vec<u8>, String> {
        clickwatch_sdk::state::encode(&self.open.iter().collect::<Vec<_>>())
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        let open: Vec<((i64, String), PageCounts)> = clickwatch_sdk::state::decode(state)?;
        self.open = open.into_iter().collect();
        Ok(())
    }
}

clickwatch_sdk::export_plugin!(PageTraffic);

#[cfg(test)]
mod tests {
    use super::*;
    use clickwatch_sdk::testing::{Harness, TestClick};

    fn row_for<'a>(out: &'a Output, url: &str) -> &'a [Value] {
        &out.rows
            .iter()
            .find(|r| r.values[2] == Value::Text(url.to_owned()))
            .expect("row for url")
            .values
    }

    #[test]
    fn counts_views_sessions_and_users_per_window() {
        let mut h = Harness::<PageTraffic>::new(r#"{"window_secs": 60}"#).unwrap();
        h.process(&[
            TestClick::page_view(1_000, "s1", "/a").user("u1"),
            TestClick::page_view(2_000, "s1", "/a").user("u1"),
            TestClick::page_view(3_000, "s2", "/a"),
            TestClick::click(3_500, "s2", "/a"),
            TestClick::page_view(4_000, "s2", "/b"),
            TestClick::page_view(61_000, "s3", "/a"),
        ])
        .unwrap();
        // Watermark inside the first window: nothing closes.
        assert!(h.tick(59_999).unwrap().rows.is_empty());
        let out = h.tick(60_000).unwrap();
        assert_eq!(out.rows.len(), 2);
        let a = row_for(&out, "/a");
        assert_eq!(a[0], Value::Timestamp(0));
        assert_eq!(a[1], Value::Timestamp(60_000));
        assert_eq!(
            &a[3..],
            &[Value::Int64(3), Value::Int64(2), Value::Int64(1)]
        );
        assert_eq!(
            &row_for(&out, "/b")[3..],
            &[Value::Int64(1), Value::Int64(1), Value::Int64(0)]
        );
        // The second window closes later, once.
        let out = h.tick(120_000).unwrap();
        assert_eq!(out.rows.len(), 1);
        assert!(h.tick(500_000).unwrap().rows.is_empty());
    }

    #[test]
    fn open_windows_survive_a_reload() {
        let mut h = Harness::<PageTraffic>::new("{}").unwrap();
        h.process(&[TestClick::page_view(1_000, "s1", "/a")])
            .unwrap();
        h.reload().unwrap();
        h.process(&[TestClick::page_view(2_000, "s2", "/a")])
            .unwrap();
        let out = h.tick(60_000).unwrap();
        assert_eq!(
            &row_for(&out, "/a")[3..5],
            &[Value::Int64(2), Value::Int64(2)]
        );
    }

    #[test]
    fn rejects_a_zero_window() {
        assert!(Harness::<PageTraffic>::new(r#"{"window_secs": 0}"#).is_err());
        assert!(
            Harness::<PageTraffic>::new(r#"{"window": 5}"#)
                .unwrap_err()
                .contains("unknown field")
        );
    }
}
