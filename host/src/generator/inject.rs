//! Carrying out a plan inside the simulation: extra session streams (page spikes, newsletters,
//! bots, click fraud), rate factors on the ordinary arrivals (site spikes, flash sales), event
//! filters (drops, a broken checkout), and the labels that record all of it.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::anomaly::{BotStyle, Effect, Item, LANDING_PAGES, Planned};
use super::labels::{Entity, Label};
use super::session::{BOT_AGENTS, Pace, Session, SessionOptions, Visitor};
use crate::event::{ClickEvent, EventKind};

pub(crate) const SITE: &str = "https://shop.example";

/// A source of extra sessions for one planned item.
#[derive(Debug)]
struct Stream {
    planned: usize,
    /// Time of the next session start; `i64::MAX` once the stream is over.
    next_ms: i64,
    /// Upper bound of the stream's rate, sessions per ms (for thinning).
    rate_max: f64,
    started: u32,
}

/// A label under construction: times follow the events its sessions emit.
#[derive(Debug)]
struct Open {
    label: Label,
    /// Times come from emitted events rather than from the plan.
    observed: bool,
}

/// Injection state of one generator.
#[derive(Debug)]
pub(crate) struct Injector {
    plan: Vec<Planned>,
    rng: StdRng,
    seed: u64,
    mean_rate: f64,
    streams: Vec<Stream>,
    labels: Vec<Open>,
    /// Label of each planned item, if it has one.
    label_of_plan: Vec<Option<usize>>,
    /// Labelled sessions (injected bots, ordinary bots) → their label.
    label_of_session: HashMap<String, usize>,
    /// Visitors of injected bot and fraud items, by plan index.
    visitors: HashMap<usize, Vec<Visitor>>,
}

/// Sessions per second at the daily mean shape for `mean_rate` events per second.
fn sessions_per_ms(mean_rate: f64, time_ms: i64) -> f64 {
    mean_rate * super::daily_shape(time_ms) / super::EVENTS_PER_SESSION / 1000.0
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

impl Injector {
    pub(crate) fn new(plan: Vec<Planned>, seed: u64, mean_rate: f64) -> Self {
        let mut inj = Injector {
            rng: StdRng::seed_from_u64(seed ^ 0x1a7e_c7ed_0000_0002),
            seed,
            mean_rate,
            streams: Vec::new(),
            labels: Vec::new(),
            label_of_plan: Vec::new(),
            label_of_session: HashMap::new(),
            visitors: HashMap::new(),
            plan: Vec::new(),
        };
        for (i, p) in plan.iter().enumerate() {
            let label = inj.open_label(i, p);
            inj.label_of_plan.push(label);
            let rate_max = match &p.effect {
                Effect::PageStream { pages, factor, .. } => {
                    let share: f64 = pages.iter().map(|pg| landing_share(pg)).sum();
                    // Daily shape peaks at 1.65.
                    (factor - 1.0).max(0.0) * share * sessions_per_ms(mean_rate, 16 * 3_600_000)
                }
                Effect::Fraud { per_minute, .. } => per_minute / 60_000.0,
                Effect::Bots { .. } => 0.0,
                _ => continue,
            };
            inj.streams.push(Stream {
                planned: i,
                next_ms: p.start_ms,
                rate_max,
                started: 0,
            });
        }
        inj.plan = plan;
        let n = inj.streams.len();
        for s in 0..n {
            inj.advance(s);
        }
        inj
    }

    fn open_label(&mut self, i: usize, p: &Planned) -> Option<usize> {
        let Item::Anomaly(kind, _) = p.item else {
            return None;
        };
        let mut entities = Vec::new();
        let mut observed = false;
        let note;
        match &p.effect {
            Effect::SiteRate { factor, .. } => {
                entities.push(Entity::new("site", "*"));
                note = format!("site x{factor:.1}");
            }
            Effect::Suppress { page, keep } => {
                entities.push(match page {
                    Some(pg) => Entity::new("page", format!("{SITE}{pg}")),
                    None => Entity::new("site", "*"),
                });
                note = format!("{} x{keep:.2}", page.unwrap_or("site"));
            }
            Effect::PageStream { pages, factor, .. } => {
                for pg in pages {
                    entities.push(Entity::new("page", format!("{SITE}{pg}")));
                }
                note = format!("{} x{factor:.1}", pages.join(" "));
            }
            Effect::Funnel { keep } => {
                entities.push(Entity::new("site", "*"));
                note = format!("purchases x{keep:.2}");
            }
            Effect::Bots { style, sessions } => {
                observed = true;
                let ip = Visitor::random_ip(&mut self.rng);
                let agent = match style {
                    BotStyle::Headless => BOT_AGENTS[0].to_owned(),
                    _ => Visitor::random_agent(&mut self.rng),
                };
                entities.push(Entity::new("ip", ip.clone()));
                let v = Visitor::custom(&mut self.rng, ip, agent, "desktop");
                self.visitors.insert(i, vec![v]);
                note = format!("{style:?} bot, {sessions} session(s)").to_lowercase();
            }
            Effect::Fraud {
                ips,
                per_minute,
                referrer,
            } => {
                observed = true;
                let mut vs = Vec::new();
                for _ in 0..*ips {
                    let ip = Visitor::random_ip(&mut self.rng);
                    entities.push(Entity::new("ip", ip.clone()));
                    let agent = Visitor::random_agent(&mut self.rng);
                    let device = if self.rng.random_bool(0.5) {
                        "desktop"
                    } else {
                        "mobile"
                    };
                    vs.push(Visitor::custom(&mut self.rng, ip, agent, device));
                }
                entities.push(Entity::new("referrer", referrer.clone()));
                self.visitors.insert(i, vs);
                note = format!("{per_minute:.0} ad clicks/min from {ips} IP(s)");
            }
        }
        self.labels.push(Open {
            label: Label {
                id: format!("a-{}", self.labels.len()),
                kind: kind.as_str().to_owned(),
                variant: Some(p.variant.to_owned()),
                start_ms: if observed { i64::MAX } else { p.start_ms },
                end_ms: if observed { i64::MIN } else { p.end_ms },
                entities,
                magnitude: p.magnitude,
                note,
            },
            observed,
        });
        Some(self.labels.len() - 1)
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
                let share: f64 = pages.iter().map(|pg| landing_share(pg)).sum();
                (factor - 1.0).max(0.0)
                    * share
                    * sessions_per_ms(self.mean_rate, t)
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
                _ => 1.0,
            })
            .product()
    }

    /// Whether sessions starting at `t` shop more (a sale is on).
    pub(crate) fn boost(&self, t: i64) -> bool {
        self.plan.iter().any(|p| {
            t >= p.start_ms
                && t <= p.end_ms
                && matches!(p.effect, Effect::SiteRate { boost, .. } if boost)
        })
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
        let session = self.make_session(planned, id, t);
        self.advance(s);
        if let Some(label) = self.label_of_plan[planned] {
            let l = &mut self.labels[label].label;
            if matches!(self.plan[planned].effect, Effect::Bots { .. }) {
                l.entities.push(Entity::new("session", session.id()));
            }
            self.label_of_session.insert(session.id().to_owned(), label);
        }
        Some(session)
    }

    fn make_session(&mut self, planned: usize, id: u64, t: i64) -> Session {
        let rng = &mut self.rng;
        let p = &self.plan[planned];
        let page = |rng: &mut StdRng| {
            if rng.random_bool(0.3) {
                LANDING_PAGES[rng.random_range(1..LANDING_PAGES.len())]
                    .0
                    .to_owned()
            } else {
                format!("/product/{}", rng.random_range(1..500))
            }
        };
        let visitor = |rng: &mut StdRng, vs: Option<&Vec<Visitor>>| match vs {
            Some(vs) if !vs.is_empty() => vs[rng.random_range(0..vs.len())].clone(),
            _ => Visitor::anonymous(rng, false),
        };
        let duration = p.end_ms - p.start_ms;
        match &p.effect {
            Effect::PageStream {
                pages, referrer, ..
            } => {
                let options = SessionOptions {
                    landing: Some(pages[rng.random_range(0..pages.len())]),
                    referrer: *referrer,
                    boost: false,
                };
                let v = Visitor::anonymous(rng, false);
                Session::new(rng, self.seed, id, v, t, false, &options)
            }
            Effect::Bots { style, .. } => {
                let v = visitor(rng, self.visitors.get(&planned));
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
                        let first = rng.random_range(1..5_000);
                        let steps = (0..n)
                            .map(|k| {
                                let product = (first + k) % 5_000 + 1;
                                (EventKind::PageView, format!("/product/{product}"))
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
            Effect::Fraud { referrer, .. } => {
                let v = visitor(rng, self.visitors.get(&planned));
                let landing = LANDING_PAGES[rng.random_range(0..LANDING_PAGES.len())].0;
                let mut steps = vec![(EventKind::AdClick, landing.to_owned())];
                // Most fraudulent clicks exit at once; some load the landing page first.
                if rng.random_bool(0.3) {
                    steps.push((EventKind::PageView, landing.to_owned()));
                }
                Session::scripted(
                    self.seed,
                    id,
                    v,
                    Some(referrer.clone()),
                    steps,
                    t,
                    Pace::Uniform(200, 900),
                )
            }
            // Only the effects above have streams; anything else is an ordinary visit.
            _ => {
                let v = Visitor::anonymous(rng, false);
                Session::new(rng, self.seed, id, v, t, false, &SessionOptions::default())
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

    /// Applies drops and the broken checkout to `event`; false when it is lost.
    pub(crate) fn filter(&mut self, event: &mut ClickEvent) -> bool {
        let t = event.time_ms;
        for p in &self.plan {
            if t < p.start_ms || t > p.end_ms {
                continue;
            }
            match &p.effect {
                Effect::Suppress { page, keep } => {
                    let hit = page.is_none_or(|pg| {
                        event.url.strip_prefix(SITE).is_some_and(|path| path == pg)
                    });
                    if hit && !self.rng.random_bool(keep.clamp(0.0, 1.0)) {
                        return false;
                    }
                }
                // The order never goes through. Dropping the event rather than turning it into
                // an error page view keeps every other page's traffic as it was.
                Effect::Funnel { keep }
                    if event.kind == EventKind::Purchase
                        && !self.rng.random_bool(keep.clamp(0.0, 1.0)) =>
                {
                    return false;
                }
                _ => {}
            }
        }
        true
    }

    /// Records an emitted event against the label of its session.
    pub(crate) fn observe(&mut self, event: &ClickEvent) {
        if let Some(&l) = self.label_of_session.get(&event.session_id) {
            let label = &mut self.labels[l].label;
            label.start_ms = label.start_ms.min(event.time_ms);
            label.end_ms = label.end_ms.max(event.time_ms);
        }
    }

    /// Forgets the session → label link of a finished session (labels stay).
    pub(crate) fn finished(&mut self, session_id: &str) {
        self.label_of_session.remove(session_id);
    }

    /// The labels of everything that showed up in events up to `last_ms`, by start time.
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
        out.sort_by_key(|l| (l.start_ms, l.id.clone()));
        out
    }
}

fn landing_share(path: &str) -> f64 {
    LANDING_PAGES
        .iter()
        .find(|(p, _)| *p == path)
        .map_or(0.0, |(_, s)| *s)
}
