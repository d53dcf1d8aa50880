//! The fake clickstream: realistic sessions (returning and anonymous visitors, device, country
//! and referrer mixes, browse → product → cart → checkout → purchase funnels, a daily traffic
//! shape) plus a share of bot sessions, deterministic for a given seed.
//!
//! It is a discrete-event simulation in *simulated* time: sessions arrive as a Poisson process
//! whose rate follows the daily shape, and each session acts with human dwell times. Pacing in
//! wall time is the caller's business (see `source::generator`), so the same generator feeds
//! the live demo, files and benchmarks. Everything about the shop that is not an anomaly (URL
//! scheme, catalogue, device mix, daily shape, navigation, surge sizes) is its `World`: the
//! original one by default, or one drawn from a seed.

pub mod anomaly;
mod browse;
mod cast;
mod extended;
mod inject;
pub mod labels;
mod outage;
#[cfg(test)]
mod scenario_tests;
mod session;
pub mod site;
mod spec;
pub mod world;
#[cfg(test)]
mod world_tests;

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::event::ClickEvent;
pub use anomaly::{Scenario, SpecError, parse_anomalies, parse_surges};
use inject::Injector;
pub use labels::{
    Entity, Label, LabelsError, SURGE_KIND, default_labels_path, read_labels, write_labels,
};
use session::{Session, SessionOptions, Visitor};
pub use world::World;

/// Knobs of the simulation.
#[derive(Debug, Clone)]
pub struct GeneratorSettings {
    /// Seed: the same seed gives the same events.
    pub seed: u64,
    /// Simulated start time, ms since the epoch.
    pub start_ms: i64,
    /// Events per simulated second at the daily mean.
    pub mean_rate: f64,
    /// Size of the returning-user population.
    pub users: u32,
    /// Share of sessions that are bots (0..1).
    pub bot_fraction: f64,
    /// Anomalies and surges to inject (none by default).
    pub scenario: Scenario,
    /// The site, audience and traffic shape (the original model by default).
    pub world: World,
}

impl Default for GeneratorSettings {
    fn default() -> Self {
        GeneratorSettings {
            seed: 1,
            start_ms: 1_790_000_000_000,
            mean_rate: 50.0,
            users: 5_000,
            bot_fraction: 0.01,
            scenario: Scenario::default(),
            world: World::legacy(),
        }
    }
}

/// Mean events per human session, used to turn an event rate into a session arrival rate.
const EVENTS_PER_SESSION: f64 = 9.0;

/// Traffic relative to the daily mean at `time_ms` (UTC) in the legacy world: low at night,
/// peaks in the afternoon. Other worlds have their own shape (`World::shape`).
pub fn daily_shape(time_ms: i64) -> f64 {
    let hour = (time_ms.rem_euclid(86_400_000)) as f64 / 3_600_000.0;
    // 0.35 at 04:00, ~1.65 at 16:00.
    1.0 - 0.65 * ((hour - 4.0) / 24.0 * std::f64::consts::TAU).cos()
}

/// The generator: an endless, ordered stream of click events.
pub struct Generator {
    settings: GeneratorSettings,
    rng: StdRng,
    world: std::sync::Arc<World>,
    /// Active sessions by the time of their next event.
    active: BinaryHeap<Reverse<(i64, u64)>>,
    sessions: std::collections::HashMap<u64, Session>,
    next_session: u64,
    next_arrival_ms: f64,
    next_event: u64,
    visitors: Vec<Visitor>,
    injector: Injector,
    /// End of the last planned injection (the start when nothing is planned).
    plan_end_ms: i64,
    last_time_ms: i64,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("settings", &self.settings)
            .field("events", &self.next_event)
            .finish()
    }
}

impl Generator {
    /// A generator with `settings`.
    pub fn new(settings: GeneratorSettings) -> Self {
        let mut rng = StdRng::seed_from_u64(settings.seed);
        let world = std::sync::Arc::new(settings.world.clone());
        let visitors = (0..settings.users.max(1))
            .map(|i| Visitor::random(&mut rng, i, &world.devices))
            .collect();
        let plan = anomaly::plan(&settings.scenario, settings.seed, settings.start_ms, &world);
        let plan_end_ms = plan
            .iter()
            .map(|p| p.end_ms)
            .fold(settings.start_ms, i64::max);
        Generator {
            injector: Injector::new(plan, settings.seed, settings.mean_rate, world.clone()),
            world,
            plan_end_ms,
            last_time_ms: settings.start_ms,
            next_arrival_ms: settings.start_ms as f64,
            settings,
            rng,
            active: BinaryHeap::new(),
            sessions: std::collections::HashMap::new(),
            next_session: 0,
            next_event: 0,
            visitors,
        }
    }

    /// The world being simulated.
    pub fn world(&self) -> &World {
        &self.world
    }

    /// Events generated so far.
    pub fn generated(&self) -> u64 {
        self.next_event
    }

    /// End of the last planned injection, ms (the start time when nothing is planned): run
    /// at least a little past it so the labels are complete.
    pub fn plan_end_ms(&self) -> i64 {
        self.plan_end_ms
    }

    /// Event time of the last event returned, ms.
    pub fn last_time_ms(&self) -> i64 {
        self.last_time_ms
    }

    /// Ground truth for the events returned so far: injected anomalies and the ordinary bot
    /// sessions, ordered by start.
    pub fn labels(&self) -> Vec<Label> {
        self.injector.labels(self.last_time_ms)
    }

    fn arrival_gap_ms(&mut self) -> f64 {
        let t = self.next_arrival_ms as i64;
        let sessions_per_sec =
            self.settings.mean_rate * self.world.shape.factor(t) * self.injector.site_factor(t)
                / EVENTS_PER_SESSION;
        let u: f64 = self.rng.random_range(f64::EPSILON..1.0);
        -u.ln() / sessions_per_sec.max(1e-6) * 1000.0
    }

    fn start_session(&mut self) {
        let id = self.next_session;
        self.next_session += 1;
        let bot = self
            .rng
            .random_bool(self.settings.bot_fraction.clamp(0.0, 1.0));
        let visitor = if bot || self.rng.random_bool(0.45) {
            Visitor::anonymous(&mut self.rng, bot, &self.world.devices)
        } else {
            let i = self.rng.random_range(0..self.visitors.len());
            self.visitors[i].clone()
        };
        let start = self.next_arrival_ms as i64;
        let options = SessionOptions {
            boost: self.injector.boost(start),
            ..SessionOptions::default()
        };
        let session = Session::new(
            &mut self.rng,
            self.settings.seed,
            id,
            visitor,
            start,
            bot,
            &options,
            &self.world,
        );
        if bot {
            self.injector.label_ordinary_bot(&session);
        }
        self.active.push(Reverse((session.next_time_ms, id)));
        self.sessions.insert(id, session);
        let gap = self.arrival_gap_ms();
        self.next_arrival_ms += gap;
    }

    /// The next event in event-time order.
    pub fn next_event(&mut self) -> ClickEvent {
        loop {
            let next_active = self.active.peek().map(|Reverse((t, _))| *t);
            let injected = self.injector.next_ms();
            if let Some(at) = injected
                && at as f64 <= self.next_arrival_ms
                && next_active.is_none_or(|t| at <= t)
            {
                let id = self.next_session;
                if let Some(session) = self.injector.start_next(id) {
                    self.next_session += 1;
                    self.active.push(Reverse((session.next_time_ms, id)));
                    self.sessions.insert(id, session);
                }
                continue;
            }
            if next_active.is_none_or(|t| self.next_arrival_ms <= t as f64) {
                self.start_session();
                continue;
            }
            let Some(Reverse((_, id))) = self.active.pop() else {
                continue;
            };
            let Some(session) = self.sessions.get_mut(&id) else {
                continue;
            };
            let seq = self.next_event;
            self.next_event += 1;
            let mut event = session.next(&mut self.rng, seq);
            let done = session.finished();
            if done {
                self.sessions.remove(&id);
            } else {
                self.active.push(Reverse((session.next_time_ms, id)));
            }
            let keep = self.injector.filter(&mut event);
            if keep {
                self.injector.observe(&event);
            }
            if done {
                self.injector.finished(&event.session_id, event.time_ms);
            }
            if !keep {
                continue;
            }
            self.last_time_ms = event.time_ms;
            return event;
        }
    }

    /// The next `n` events.
    pub fn take(&mut self, n: usize) -> Vec<ClickEvent> {
        (0..n).map(|_| self.next_event()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventKind, decode, encode};

    #[test]
    fn same_seed_same_events_and_times_are_ordered() {
        let a = Generator::new(GeneratorSettings::default()).take(2_000);
        let b = Generator::new(GeneratorSettings::default()).take(2_000);
        assert_eq!(a, b);
        assert!(a.windows(2).all(|w| w[0].time_ms <= w[1].time_ms));
        let c = Generator::new(GeneratorSettings {
            seed: 2,
            ..Default::default()
        })
        .take(10);
        assert_ne!(a[..10], c[..]);
    }

    #[test]
    fn events_are_valid_and_cover_the_funnel() {
        let events = Generator::new(GeneratorSettings {
            mean_rate: 200.0,
            ..Default::default()
        })
        .take(20_000);
        for e in events.iter().take(500) {
            assert_eq!(&decode(encode(e).as_bytes()).unwrap(), e);
        }
        let count = |k: EventKind| events.iter().filter(|e| e.kind == k).count();
        assert!(count(EventKind::PageView) > count(EventKind::AddToCart));
        assert!(count(EventKind::AddToCart) > count(EventKind::Purchase));
        assert!(count(EventKind::Purchase) > 0, "some sessions must convert");
        let ids: std::collections::HashSet<_> = events.iter().map(|e| &e.event_id).collect();
        assert_eq!(ids.len(), events.len(), "event ids are unique");
        assert!(
            events.iter().any(|e| e.user_id.is_none())
                && events.iter().any(|e| e.user_id.is_some())
        );
    }

    #[test]
    fn the_daily_shape_is_low_at_night_and_high_in_the_afternoon() {
        let h = |hour: i64| daily_shape(hour * 3_600_000);
        assert!(h(4) < 0.4 && h(16) > 1.6);
    }
}
