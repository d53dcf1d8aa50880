//! session-engagement: how visits go — per closed session, and per window by segment.
//!
//! # What it writes
//! - `engagement_sessions` (key `session_id`, `session_start`): one row per closed session:
//!   start, end, duration, page views, events, bounce (a single-event visit), whether it
//!   reached the cart (`add_to_cart`) and a purchase, visitor type, device and country.
//!   Switch off with `emit_sessions = false`.
//! - `engagement_segments` (key `window_start`, `dimension`, `segment`): per `window_secs`
//!   window (by the session's last event), one row per segment of each dimension: `all`
//!   (`*`), `device`, `country` (absent values are `unknown`) and `visitor` — with sessions,
//!   bounces, bounce rate, mean duration, mean pages, cart and purchase sessions, purchase
//!   rate.
//!
//! # Sessions and visitors
//! A session closes when the watermark is `inactivity_timeout_secs` (1800) past its last
//! event, so closing follows event time, never the wall clock. A window is written once every
//! session ending in it must have closed: when the watermark passes its end plus the timeout.
//! The visitor type is `anonymous` when no event of the session carries a user id; otherwise
//! it is `returning` if that user id was seen in an earlier session within
//! `returning_window_days` (30) before this one started, and `new` if not. It is decided when
//! the session closes, from the sightings of the user by then (see [`visitors`]), so it does
//! not depend on the order in which sessions of one user were read (different partitions,
//! read at different speeds, restarts). The set of known users is bounded
//! (`max_known_users`; once it is reached, users beyond the window are forgotten first, then
//! the least recently seen; and at most [`visitors::MAX_SIGHTINGS`] sightings per user), so
//! "new" means "not seen in the recent, remembered past" — in particular every user counts as
//! new right after a cold start.
//!
//! A tick costs what it closes, not what is open (ticks come once per step of event time):
//! sessions wait in a queue by the earliest time they can time out, and the returning window
//! is applied where a user is looked up; users beyond it are swept out once an hour of
//! event time.
//!
//! # State
//! Per open session about 120 bytes plus its id, device and country; per known user about
//! 60 bytes plus the id; per open window a few hundred bytes per segment. Open sessions are
//! capped by `max_sessions`.
//!
//! # Layout
//! - [`settings`]: the documented settings.
//! - [`summary`]: per-session and per-segment state, the table declarations and rows.
//! - [`visitors`]: known users and their sightings (new or returning).
//! - this file: the plugin (routing events, closing sessions and windows, snapshots).

pub mod settings;
pub mod summary;
pub mod visitors;

#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use clickwatch_sdk::prelude::*;
use serde::{Deserialize, Serialize};

pub use settings::Settings;
use summary::{SEGMENTS, SESSIONS, Segment, Session, Window};
use visitors::KnownUsers;

/// One window's segments as pairs: ((dimension, segment), totals).
type SavedWindow = Vec<((String, String), Segment)>;

/// Everything that survives a reload. Windows are stored as pairs because JSON object keys
/// must be strings.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    sessions: HashMap<String, Session>,
    known_users: KnownUsers,
    windows: Vec<(i64, SavedWindow)>,
    untracked: u64,
}

/// The aggregator.
#[derive(Debug)]
pub struct SessionEngagement {
    settings: Settings,
    sessions: HashMap<String, Session>,
    /// When each open session may time out at the earliest (its last event then, plus the
    /// timeout), soonest first: a tick looks only at sessions due, not at every open one
    /// (ticks come once per step of event time, so a scan of all would cost open sessions x
    /// steps). One entry per open session; a due session that had events since is pushed
    /// again at its new deadline. Not saved: rebuilt from the sessions on restore.
    deadlines: BinaryHeap<Reverse<(i64, String)>>,
    /// User id -> when it was sighted.
    known_users: KnownUsers,
    /// When users beyond the returning window are next swept out (not saved: a restored
    /// instance sweeps at its first tick).
    next_sweep_ms: i64,
    /// Open windows by start.
    windows: BTreeMap<i64, Window>,
    untracked: u64,
}

/// Event time between two sweeps of the known users: they stay at most this much longer
/// than the returning window in memory, and a tick (one per step of event time) does not
/// pay for every known user.
const SWEEP_MS: i64 = 3_600_000;

impl SessionEngagement {
    fn timeout_ms(&self) -> i64 {
        i64::from(self.settings.inactivity_timeout_secs) * 1000
    }

    fn window_ms(&self) -> i64 {
        i64::from(self.settings.window_secs) * 1000
    }

    /// Open sessions and known users.
    pub fn tracked(&self) -> (usize, usize) {
        (self.sessions.len(), self.known_users.len())
    }

    fn returning_window_ms(&self) -> i64 {
        i64::from(self.settings.returning_window_days) * 86_400_000
    }

    /// Forgets sightings no open or later session can look back to (swept once per
    /// [`SWEEP_MS`] of event time, not every tick) and, past the cap, the least recently
    /// seen users. A session still open may have started long before the watermark, so the
    /// horizon is the returning window before the earliest open start.
    fn trim_known_users(&mut self, watermark_ms: i64) {
        let cap = self.settings.max_known_users as usize;
        if watermark_ms >= self.next_sweep_ms || self.known_users.len() > cap {
            let earliest = self
                .sessions
                .values()
                .map(|s| s.first_ms)
                .min()
                .map_or(watermark_ms, |first| first.min(watermark_ms));
            self.known_users
                .forget_before(earliest.saturating_sub(self.returning_window_ms()));
            self.next_sweep_ms = watermark_ms.saturating_add(SWEEP_MS);
        }
        self.known_users.trim(cap);
    }
}

impl Plugin for SessionEngagement {
    type Settings = Settings;

    fn info() -> PluginInfo {
        let [sessions, segments] = summary::tables();
        PluginInfo::aggregator("session-engagement", env!("CARGO_PKG_VERSION"))
            // Segment rows sum over all sessions.
            .keyed_by(StateKey::Global)
            .table(sessions)
            .table(segments)
    }

    fn new(settings: Settings) -> Result<Self, String> {
        settings.validate()?;
        Ok(SessionEngagement {
            settings,
            sessions: HashMap::new(),
            deadlines: BinaryHeap::new(),
            known_users: KnownUsers::default(),
            next_sweep_ms: i64::MIN,
            windows: BTreeMap::new(),
            untracked: 0,
        })
    }

    fn process(&mut self, batch: &Batch<'_>, _out: &mut Output) -> Result<(), String> {
        let max = self.settings.max_sessions as usize;
        let timeout = self.timeout_ms();
        for click in batch.iter() {
            let t = click.time_ms();
            if !self.sessions.contains_key(click.session()) {
                if self.sessions.len() >= max {
                    self.untracked += 1;
                    continue;
                }
                let id = click.session().to_owned();
                self.deadlines
                    .push(Reverse((t.saturating_add(timeout), id.clone())));
                self.sessions.insert(id, Session::new(t));
            }
            let Some(s) = self.sessions.get_mut(click.session()) else {
                continue;
            };
            s.first_ms = s.first_ms.min(t);
            s.last_ms = s.last_ms.max(t);
            s.events = s.events.saturating_add(1);
            match click.kind() {
                EventKind::PageView => s.pages = s.pages.saturating_add(1),
                EventKind::AddToCart => s.cart = true,
                EventKind::Purchase => s.purchase = true,
                _ => {}
            }
            if s.device.is_none() {
                s.device = click.device().map(str::to_owned);
            }
            if s.country.is_none() {
                s.country = click.country().map(str::to_owned);
            }
            if s.user.is_none()
                && s.returning.is_none()
                && let Some(user) = click.user()
            {
                s.user = Some(user.to_owned());
                self.known_users.saw(user, t);
            }
        }
        Ok(())
    }

    fn tick(&mut self, watermark_ms: i64, out: &mut Output) -> Result<(), String> {
        let timeout = self.timeout_ms();
        let len = self.window_ms();
        let mut closed = Vec::new();
        while self
            .deadlines
            .peek()
            .is_some_and(|Reverse((due, _))| *due <= watermark_ms)
        {
            let Some(Reverse((_, id))) = self.deadlines.pop() else {
                break;
            };
            let Some(s) = self.sessions.get(&id) else {
                continue;
            };
            let due = s.last_ms.saturating_add(timeout);
            if due <= watermark_ms {
                closed.push(id);
            } else {
                self.deadlines.push(Reverse((due, id)));
            }
        }
        let window = self.returning_window_ms();
        for id in closed {
            let Some(mut s) = self.sessions.remove(&id) else {
                continue;
            };
            if s.returning.is_none()
                && let Some(user) = &s.user
            {
                s.returning = Some(self.known_users.seen_before(user, s.first_ms, window));
            }
            if self.settings.emit_sessions {
                out.row(SESSIONS, s.row(&id));
            }
            let start = s.last_ms.div_euclid(len) * len;
            summary::add(self.windows.entry(start).or_default(), &s);
        }
        // A window is final once every session ending in it has timed out.
        while let Some(entry) = self.windows.first_entry() {
            let start = *entry.key();
            if start.saturating_add(len).saturating_add(timeout) > watermark_ms {
                break;
            }
            let window = entry.remove();
            for row in summary::rows(start, start + len, &window) {
                out.row(SEGMENTS, row);
            }
        }
        self.trim_known_users(watermark_ms);
        Ok(())
    }

    fn snapshot(&self) -> Result<Vec<u8>, String> {
        let saved = Saved {
            sessions: self.sessions.clone(),
            known_users: self.known_users.clone(),
            windows: self
                .windows
                .iter()
                .map(|(start, w)| (*start, w.iter().map(|(k, v)| (k.clone(), *v)).collect()))
                .collect(),
            untracked: self.untracked,
        };
        clickwatch_sdk::state::encode(&saved)
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        if state.is_empty() {
            return Ok(());
        }
        let saved: Saved = clickwatch_sdk::state::decode(state)?;
        self.sessions = saved.sessions;
        let timeout = self.timeout_ms();
        self.deadlines = self
            .sessions
            .iter()
            .map(|(id, s)| Reverse((s.last_ms.saturating_add(timeout), id.clone())))
            .collect();
        self.known_users = saved.known_users;
        self.windows = saved
            .windows
            .into_iter()
            .map(|(start, w)| (start, w.into_iter().collect()))
            .collect();
        self.untracked = saved.untracked;
        Ok(())
    }
}

clickwatch_sdk::export_plugin!(SessionEngagement);
