//! Carrying out a plan inside the simulation: extra session streams (page spikes, newsletters,
//! bots, click fraud, farms), rate factors on the ordinary arrivals (site spikes, flash sales,
//! slow ramps), event filters (`outage.rs`), and the labels that record all of it (`cast.rs`).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::anomaly::{BotStyle, Effect, Planned};
use super::cast::{Open, cast};
use super::labels::{Entity, Label};
use super::session::{Pace, Session, SessionOptions, Visitor};
use super::world::World;
use crate::event::{ClickEvent, EventKind};

/// A source of extra sessions for one planned item.
#[derive(Debug)]
struct Stream {
    planned: usize,
    /// Time of the next session start; `i64::MAX` once the stream is over.
    next_ms: i64,
    /// Upper bound of the stream's rate, sessions per ms (for thinning).
    rate_max: f64,
    started: u32,
    /// Scheduled starts (time, visitor) of per-IP streams (slow fraud, farms).
    queue: BinaryHeap<Reverse<(i64, usize)>>,
}

/// Injection state of one generator.
#[derive(Debug)]
pub(crate) struct Injector {
    plan: Vec<Planned>,
    world: Arc<World>,
    rng: StdRng,
    seed: u64,
    mean_rate: f64,
    streams: Vec<Stream>,
    labels: Vec<Open>,
    surges: Vec<Label>,
    /// Label of each planned item, if it has one.
    label_of_plan: Vec<Option<usize>>,
    /// Labelled sessions (injected bots, ordinary bots) → their label.
    label_of_session: HashMap<String, usize>,
    /// Visitors of injected bot and fraud items, by plan index.
    visitors: HashMap<usize, Vec<Visitor>>,
    /// Farm sessions in progress → (stream, visitor): the IP's next session starts after.
    farm_sessions: HashMap<String, (usize, usize)>,
}

/// Linear ramp in over `ramp_ms`, then flat or exponential decay.
fn envelope(p: &Planned, ramp_ms: i64, decay_ms: i64, t: i64) -> f64 {
    if t < p.start_ms || t > p.end_ms {
        return 0.0;
    }
    let since = (t - p.start_ms) as f64;
    if since < ramp_ms as f64 {
        return since / ramp_ms.max(1) as f64;
    }
    if decay_ms > 0 {
        (-(since - ramp_ms as f64) / decay_ms as f64).exp()
    } else {
        1.0
    }
}

/// Ad-click times of one slow-fraud IP: it starts in the first third of the window, clicks
/// half as often at first and speeds up over `ramp_ms`, but consecutive clicks are always
/// more than 10 min / `cap` apart, so no 10 minutes ever hold more than `cap` of its clicks.
fn slow_fraud_times(rng: &mut StdRng, p: &Planned, cap: u32, ramp_ms: i64) -> Vec<i64> {
    let min_gap = 600_000.0 / f64::from(cap.max(1)) * 1.02;
    let first = p.start_ms + rng.random_range(0..=(p.end_ms - p.start_ms) / 3);
    let mut t = first;
    let mut out = Vec::new();
    while t <= p.end_ms {
        out.push(t);
        let progress = ((t - first) as f64 / ramp_ms.max(1) as f64).min(1.0);
        let gap = min_gap * (2.0 - progress) * rng.random_range(1.0..1.3);
        t += gap.ceil() as i64;
    }
    out
}

impl Injector {
    pub(crate) fn new(plan: Vec<Planned>, seed: u64, mean_rate: f64, world: Arc<World>) -> Self {
        let mut inj = Injector {
            rng: StdRng::seed_from_u64(seed ^ 0x1a7e_c7ed_0000_0002),
            seed,
            mean_rate,
            world,
            streams: Vec::new(),
            labels: Vec::new(),
            surges: Vec::new(),
            label_of_plan: Vec::new(),
            label_of_session: HashMap::new(),
            visitors: HashMap::new(),
            farm_sessions: HashMap::new(),
            plan: Vec::new(),
        };
        let peak = inj.sessions_per_ms_at_peak();
        for (i, p) in plan.iter().enumerate() {
            let c = cast(&mut inj.rng, p, &inj.world);
            inj.label_of_plan.push(c.anomaly.map(|mut open| {
                open.label.id = format!("a-{}", inj.labels.len());
                inj.labels.push(open);
                inj.labels.len() - 1
            }));
            for mut s in c.surges {
                s.id = format!("s-{}", inj.surges.len());
                inj.surges.push(s);
            }
            if !c.visitors.is_empty() {
                inj.visitors.insert(i, c.visitors);
            }
            let mut queue = BinaryHeap::new();
            let rate_max = match &p.effect {
                Effect::PageStream { pages, factor, .. } => {
                    let share: f64 = pages.iter().map(|pg| inj.landing_share(pg)).sum();
                    (factor - 1.0).max(0.0) * share * peak
                }
                Effect::Fraud { per_minute, .. } => per_minute / 60_000.0,
                Effect::Bots { .. } => 0.0,
                Effect::SlowFraud { cap, ramp_ms, .. } => {
                    for v in 0..inj.visitors.get(&i).map_or(0, Vec::len) {
                        for t in slow_fraud_times(&mut inj.rng, p, *cap, *ramp_ms) {
                            queue.push(Reverse((t, v)));
                        }
                    }
                    0.0
                }
                Effect::Farm { .. } => {
                    for v in 0..inj.visitors.get(&i).map_or(0, Vec::len) {
                        let t = p.start_ms + inj.rng.random_range(0..=180_000);
                        queue.push(Reverse((t, v)));
                    }
                    0.0
                }
                _ => continue,
            };
            inj.streams.push(Stream {
                planned: i,
                next_ms: p.start_ms,
                rate_max,
                started: 0,
                queue,
            });
        }
        inj.plan = plan;
        let n = inj.streams.len();
        for s in 0..n {
            inj.advance(s);
        }
        inj
    }

    /// Ordinary sessions per ms at the daily mean shape for the mean rate.
    fn sessions_per_ms(&self, time_ms: i64) -> f64 {
        self.mean_rate * self.world.shape.factor(time_ms) / super::EVENTS_PER_SESSION / 1000.0
    }

    fn sessions_per_ms_at_peak(&self) -> f64 {
        self.mean_rate * self.world.shape.peak() / super::EVENTS_PER_SESSION / 1000.0
    }

    fn landing_share(&self, path: &str) -> f64 {
        self.world
            .site
            .landing_pages()
            .iter()
            .find(|(p, _)| p == path)
            .map_or(0.0, |(_, s)| *s)
    }

    /// Moves stream `s` to its next session start.
    fn advance(&mut self, s: usize) {
        let stream = &self.streams[s];
        let p = &self.plan[stream.planned];
        let mut t = stream.next_ms;
        let next = match &p.effect {
            Effect::Bots { sessions, .. } => {
                // Evenly spread: the first at the start of the window.
                let k = i64::from(stream.started);
                if k >= i64::from(*sessions) {
                    i64::MAX
                } else {
                    p.start_ms + (p.end_ms - p.start_ms) * k / i64::from(*sessions).max(1)
                }
            }
            Effect::SlowFraud { .. } | Effect::Farm { .. } => {
                stream.queue.peek().map_or(i64::MAX, |Reverse((t, _))| *t)
            }
            _ if stream.rate_max <= 0.0 => i64::MAX,
            _ => loop {
                // Thinning: candidates at the peak rate, kept with probability rate/peak.
                let u: f64 = self.rng.random_range(f64::EPSILON..1.0);
                t += (-u.ln() / stream.rate_max).ceil() as i64;
                if t > p.end_ms {
                    break i64::MAX;
                }
                let rate = self.rate(stream.planned, t);
                if self
                    .rng
                    .random_bool((rate / stream.rate_max).clamp(0.0, 1.0))
                {
                    break t;
                }
            },
        };
        self.streams[s].next_ms = next;
    }

    fn rate(&self, planned: usize, t: i64) -> f64 {
        let p = &self.plan[planned];
        match &p.effect {
            Effect::PageStream {
                pages,
                factor,
                ramp_ms,
                decay_ms,
                ..
            } => {
                let share: f64 = pages.iter().map(|pg| self.landing_share(pg)).sum();
                (factor - 1.0).max(0.0)
                    * share
                    * self.sessions_per_ms(t)
                    * envelope(p, *ramp_ms, *decay_ms, t)
            }
            Effect::Fraud { per_minute, .. } => per_minute / 60_000.0,
            _ => 0.0,
        }
    }

    /// Factor on the ordinary session arrival rate at `t`.
    pub(crate) fn site_factor(&self, t: i64) -> f64 {
        self.plan
            .iter()
            .filter(|p| t >= p.start_ms && t <= p.end_ms)
            .map(|p| match p.effect {
                Effect::SiteRate {
                    factor, ramp_ms, ..
                } => {
                    let ramp_in = envelope(p, ramp_ms, 0, t);
                    let ramp_out = ((p.end_ms - t) as f64 / ramp_ms.max(1) as f64).min(1.0);
                    1.0 + (factor - 1.0) * ramp_in.min(ramp_out)
                }
                Effect::RampDrop {
                    factor,
                    drop_start_ms,
                    drop_end_ms,
                    ..
                } => {
                    let up = (t - p.start_ms) as f64 / (drop_start_ms - p.start_ms).max(1) as f64;
                    let down = (p.end_ms - t) as f64 / (p.end_ms - drop_end_ms).max(1) as f64;
                    1.0 + (factor - 1.0) * up.min(down).clamp(0.0, 1.0)
                }
                _ => 1.0,
            })
            .product()
    }

    /// How much sessions starting at `t` shop beyond the usual (a sale is on): 0 = no sale.
    pub(crate) fn boost(&self, t: i64) -> f64 {
        self.plan
            .iter()
            .filter(|p| t >= p.start_ms && t <= p.end_ms)
            .filter_map(|p| match p.effect {
                Effect::SiteRate { boost, .. } => Some(boost),
                _ => None,
            })
            .fold(0.0, f64::max)
    }

    /// When the next injected session starts.
    pub(crate) fn next_ms(&self) -> Option<i64> {
        self.streams
            .iter()
            .map(|s| s.next_ms)
            .filter(|t| *t != i64::MAX)
            .min()
    }

    /// Starts the earliest injected session as session number `id`.
    pub(crate) fn start_next(&mut self, id: u64) -> Option<Session> {
        let s = (0..self.streams.len())
            .filter(|s| self.streams[*s].next_ms != i64::MAX)
            .min_by_key(|s| self.streams[*s].next_ms)?;
        let (planned, t) = (self.streams[s].planned, self.streams[s].next_ms);
        self.streams[s].started += 1;
        let who = self.streams[s].queue.pop().map(|Reverse((_, v))| v);
        let session = self.make_session(planned, id, t, who);
        if matches!(self.plan[planned].effect, Effect::Farm { .. }) {
            self.farm_sessions
                .insert(session.id().to_owned(), (s, who.unwrap_or(0)));
        }
        self.advance(s);
        if let Some(label) = self.label_of_plan[planned] {
            let l = &mut self.labels[label].label;
            if matches!(
                self.plan[planned].effect,
                Effect::Bots { .. } | Effect::Farm { .. }
            ) {
                l.entities.push(Entity::new("session", session.id()));
            }
            self.label_of_session.insert(session.id().to_owned(), label);
        }
        Some(session)
    }

    fn make_session(&mut self, planned: usize, id: u64, t: i64, who: Option<usize>) -> Session {
        let rng = &mut self.rng;
        let p = &self.plan[planned];
        let world = &*self.world;
        let landing = world.site.landing_pages();
        let page = |rng: &mut StdRng| {
            if rng.random_bool(0.3) {
                landing[rng.random_range(1..landing.len())].0.clone()
            } else {
                world.site.random_human_product(rng)
            }
        };
        let vs = self.visitors.get(&planned);
        let visitor = |rng: &mut StdRng| match (vs, who) {
            (Some(vs), Some(i)) if i < vs.len() => vs[i].clone(),
            (Some(vs), _) if !vs.is_empty() => vs[rng.random_range(0..vs.len())].clone(),
            _ => Visitor::anonymous(rng, false, &world.devices),
        };
        let duration = p.end_ms - p.start_ms;
        let ad_click = |rng: &mut StdRng, v: Visitor, referrer: &str| {
            let landing = &landing[rng.random_range(0..landing.len())].0;
            let mut steps = vec![(EventKind::AdClick, landing.clone())];
            // Most fraudulent clicks exit at once; some load the landing page first.
            if rng.random_bool(0.3) {
                steps.push((EventKind::PageView, landing.clone()));
            }
            let pace = Pace::Uniform(200, 900);
            Session::scripted(self.seed, id, v, Some(referrer.to_owned()), steps, t, pace)
        };
        match &p.effect {
            Effect::PageStream {
                pages, referrer, ..
            } => {
                let options = SessionOptions {
                    landing: Some(pages[rng.random_range(0..pages.len())].clone()),
                    referrer: *referrer,
                    boost: 0.0,
                };
                let v = Visitor::anonymous(rng, false, &world.devices);
                Session::new(rng, self.seed, id, v, t, false, &options, world)
            }
            Effect::Bots { style, .. } => {
                let v = visitor(rng);
                let (steps, pace) = match style {
                    BotStyle::Regular => {
                        let n = (duration / 2_000).max(10);
                        let steps = (0..n).map(|_| (EventKind::PageView, page(rng))).collect();
                        let pace = Pace::Regular {
                            period_ms: 2_000,
                            jitter: 0.02,
                        };
                        (steps, pace)
                    }
                    BotStyle::Crawler => {
                        let n = (duration / 550).max(20);
                        // Drawn as i64, as the original model did: the same draw keeps the
                        // legacy world's events as they were.
                        let first = rng.random_range(1..i64::from(world.site.catalogue_len()));
                        let steps = (0..n)
                            .map(|k| {
                                let i = u32::try_from(first + k).unwrap_or(0);
                                (EventKind::PageView, world.site.catalogue_product(i))
                            })
                            .collect();
                        (steps, Pace::Uniform(200, 900))
                    }
                    BotStyle::Swarm => {
                        let n = rng.random_range(3..=10);
                        let steps = (0..n).map(|_| (EventKind::PageView, page(rng))).collect();
                        (steps, Pace::Human)
                    }
                    BotStyle::Headless => {
                        let n = rng.random_range(20..=60);
                        let steps = (0..n).map(|_| (EventKind::PageView, page(rng))).collect();
                        (steps, Pace::Human)
                    }
                };
                Session::scripted(self.seed, id, v, None, steps, t, pace)
            }
            Effect::Farm { median_ms, cv, .. } => {
                let v = visitor(rng);
                let n = rng.random_range(8..=30);
                let steps = (0..n).map(|_| (EventKind::PageView, page(rng))).collect();
                let pace = Pace::LogNormal {
                    median_ms: *median_ms,
                    // A log-normal's cv is sqrt(exp(sigma²) − 1).
                    sigma: (1.0 + cv * cv).ln().sqrt(),
                };
                Session::scripted(self.seed, id, v, None, steps, t, pace)
            }
            Effect::Fraud { referrer, .. } | Effect::SlowFraud { referrer, .. } => {
                let v = visitor(rng);
                ad_click(rng, v, referrer)
            }
            // Only the effects above have streams; anything else is an ordinary visit.
            _ => {
                let v = Visitor::anonymous(rng, false, &world.devices);
                let options = SessionOptions::default();
                Session::new(rng, self.seed, id, v, t, false, &options, world)
            }
        }
    }

    /// Labels one of the generator's ordinary bot sessions.
    pub(crate) fn label_ordinary_bot(&mut self, session: &Session) {
        self.labels.push(Open {
            label: Label {
                id: format!("a-{}", self.labels.len()),
                kind: "bot".into(),
                variant: Some("ordinary".into()),
                start_ms: i64::MAX,
                end_ms: i64::MIN,
                entities: vec![
                    Entity::new("ip", session.visitor().ip()),
                    Entity::new("session", session.id()),
                ],
                magnitude: 1.0,
                note: "scraper session".into(),
            },
            observed: true,
        });
        self.label_of_session
            .insert(session.id().to_owned(), self.labels.len() - 1);
    }

    /// Applies drops, outages and broken checkouts to `event`; false when it is lost.
    pub(crate) fn filter(&mut self, event: &mut ClickEvent) -> bool {
        super::outage::filter(&self.plan, &self.world.site, &mut self.rng, event)
    }

    /// Records an emitted event against the label of its session.
    pub(crate) fn observe(&mut self, event: &ClickEvent) {
        if let Some(&l) = self.label_of_session.get(&event.session_id) {
            let label = &mut self.labels[l].label;
            label.start_ms = label.start_ms.min(event.time_ms);
            label.end_ms = label.end_ms.max(event.time_ms);
        }
    }

    /// Forgets the session → label link of a session that ended at `last_ms` (labels stay);
    /// a farm IP starts its next session a little later, while its window lasts.
    pub(crate) fn finished(&mut self, session_id: &str, last_ms: i64) {
        self.label_of_session.remove(session_id);
        if let Some((s, v)) = self.farm_sessions.remove(session_id) {
            let end = self.plan[self.streams[s].planned].end_ms;
            let next = last_ms + self.rng.random_range(2_000..=30_000);
            if next <= end {
                self.streams[s].queue.push(Reverse((next, v)));
                self.advance(s);
            }
        }
    }

    /// The labels of everything that showed up in events up to `last_ms`, by start time:
    /// anomalies (and ordinary bots) first, then surges.
    pub(crate) fn labels(&self, last_ms: i64) -> Vec<Label> {
        let mut out: Vec<Label> = self
            .labels
            .iter()
            .filter(|o| {
                if o.observed {
                    o.label.start_ms <= o.label.end_ms
                } else {
                    o.label.start_ms <= last_ms
                }
            })
            .map(|o| {
                let mut l = o.label.clone();
                if !o.observed {
                    l.end_ms = l.end_ms.min(last_ms);
                }
                l
            })
            .collect();
        out.extend(
            self.surges
                .iter()
                .filter(|s| s.start_ms <= last_ms)
                .map(|s| Label {
                    end_ms: s.end_ms.min(last_ms),
                    ..s.clone()
                }),
        );
        out.sort_by_key(|l| (l.start_ms, l.id.clone()));
        out
    }
}
