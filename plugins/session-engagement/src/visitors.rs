//! Known users and when they were seen: what decides whether a closing session is `new` or
//! `returning`, the same whatever order sessions of one user were read in.
//!
//! A session's user is sighted once, at the time of its first event that carries the user id.
//! When the session closes it is `returning` if another sighting of that user lies in the
//! returning window before the session's start. Deciding at close rather than at the first
//! event matters: sessions of one user arrive on different input partitions, interleaved in
//! an order that depends on read speed, restarts and rebalances, and a later session read
//! first would otherwise count as `new` and the earlier one too. At close the watermark is
//! past the session's start, so every sighting before it has been read (later records are
//! late and never processed): the answer depends on the events only.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Sightings kept per user; past it the oldest go first. A user with more sessions than this
/// within the returning window (a shared or automated id) keeps only its latest, which can
/// make an old session of it count as `new`.
pub const MAX_SIGHTINGS: usize = 64;

/// When one user was sighted, ascending, without repeats.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "Saved")]
pub struct Sightings(Vec<i64>);

/// The saved form: a list, or (snapshots before sightings were kept) the one time the user
/// was last seen.
#[derive(Deserialize)]
#[serde(untagged)]
enum Saved {
    Times(Vec<i64>),
    LastSeen(i64),
}

impl From<Saved> for Sightings {
    fn from(saved: Saved) -> Self {
        match saved {
            Saved::Times(mut times) => {
                times.sort_unstable();
                times.dedup();
                Sightings(times)
            }
            Saved::LastSeen(t) => Sightings(vec![t]),
        }
    }
}

impl Sightings {
    fn add(&mut self, t: i64) {
        if let Err(at) = self.0.binary_search(&t) {
            self.0.insert(at, t);
            if self.0.len() > MAX_SIGHTINGS {
                self.0.remove(0);
            }
        }
    }

    fn latest(&self) -> i64 {
        self.0.last().copied().unwrap_or(i64::MIN)
    }
}

/// Known users: id -> sightings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KnownUsers(HashMap<String, Sightings>);

impl KnownUsers {
    /// Users known.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no user is known.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A session's user sighted at `t`.
    pub fn saw(&mut self, user: &str, t: i64) {
        match self.0.get_mut(user) {
            Some(sightings) => sightings.add(t),
            None => {
                self.0.insert(user.to_owned(), Sightings(vec![t]));
            }
        }
    }

    /// Whether `user` was sighted in `[start - window, start)`: by an earlier session, as a
    /// session's own sighting is never before its start.
    pub fn seen_before(&self, user: &str, start: i64, window: i64) -> bool {
        let Some(Sightings(times)) = self.0.get(user) else {
            return false;
        };
        let before = times.partition_point(|&t| t < start);
        before > 0 && times[before - 1] >= start.saturating_sub(window)
    }

    /// Forgets sightings before `horizon`, and users left with none.
    pub fn forget_before(&mut self, horizon: i64) {
        self.0.retain(|_, Sightings(times)| {
            let old = times.partition_point(|&t| t < horizon);
            times.drain(..old);
            !times.is_empty()
        });
    }

    /// Past `cap` users, keeps the 90 % most recently sighted (at once, so the sort runs
    /// rarely).
    pub fn trim(&mut self, cap: usize) {
        if self.0.len() <= cap {
            return;
        }
        let mut latest: Vec<i64> = self.0.values().map(Sightings::latest).collect();
        latest.sort_unstable();
        let keep = (cap - cap / 10).max(1);
        let cut = latest[latest.len() - keep];
        self.0.retain(|_, s| s.latest() >= cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_sightings_arrive_in_does_not_change_the_answer() {
        let (mut a, mut b) = (KnownUsers::default(), KnownUsers::default());
        a.saw("u", 100);
        a.saw("u", 500);
        b.saw("u", 500);
        b.saw("u", 100);
        assert_eq!(a, b);
        assert!(a.seen_before("u", 500, 1_000));
        assert!(
            !a.seen_before("u", 100, 1_000),
            "its own sighting does not count"
        );
        assert!(!a.seen_before("u", 500, 300), "outside the window");
        assert!(!a.seen_before("v", 500, 1_000));
    }

    #[test]
    fn old_snapshots_with_one_last_seen_time_still_load() {
        let users: KnownUsers = serde_json::from_str(r#"{"u":42,"v":[7,3,7]}"#).unwrap();
        assert!(users.seen_before("u", 43, 10));
        assert_eq!(users.0["v"], Sightings(vec![3, 7]));
    }

    #[test]
    fn sightings_are_capped_and_swept() {
        let mut users = KnownUsers::default();
        for t in 0..(MAX_SIGHTINGS as i64 + 10) {
            users.saw("u", t);
        }
        assert_eq!(users.0["u"].0.len(), MAX_SIGHTINGS);
        assert_eq!(users.0["u"].0[0], 10, "the oldest went first");
        users.forget_before(1_000);
        assert!(users.is_empty());
    }
}
