//! What to inject and when: the seeded plan that turns a parsed spec (`spec.rs`) into concrete
//! windows, targets and magnitudes in simulated time.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use super::spec::{Item, Kind, SpecError, Surge, parse_anomalies, parse_surges};

/// What to inject, and the spacing of the schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Anomalies and surges, in the order given (the plan shuffles them with the seed).
    pub items: Vec<Item>,
    /// Normal traffic before the first injection, so detectors can learn a baseline.
    pub warmup_ms: i64,
    /// Normal traffic between injections (longer than the scoring grace, so an alert on one
    /// injection cannot be credited to the previous one).
    pub gap_ms: i64,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            items: Vec::new(),
            warmup_ms: 60 * 60_000,
            gap_ms: 20 * 60_000,
        }
    }
}

/// Landing pages whose baseline rate the generator knows (share of session landings), so a
/// page spike or newsletter can be sized against it.
pub(crate) const LANDING_PAGES: [(&str, f64); 9] = [
    ("/", 0.5),
    ("/category/shoes", 0.0625),
    ("/category/shirts", 0.0625),
    ("/category/bags", 0.0625),
    ("/category/watches", 0.0625),
    ("/category/toys", 0.0625),
    ("/category/books", 0.0625),
    ("/category/garden", 0.0625),
    ("/category/kitchen", 0.0625),
];

/// A bot behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BotStyle {
    /// One session clicking every 2 s ± 2 %.
    Regular,
    /// One session walking many distinct pages with no dwell.
    Crawler,
    /// Many short sessions from one IP.
    Swarm,
    /// A few sessions with a headless user agent at a human pace.
    Headless,
}

/// The concrete effect of one planned injection.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Session arrivals site-wide × `factor` (reached after `ramp_ms`, back at the end).
    /// `boost` raises cart and purchase probabilities (a sale).
    SiteRate {
        /// Peak factor.
        factor: f64,
        /// Linear ramp up at the start and down at the end.
        ramp_ms: i64,
        /// More carts and purchases.
        boost: bool,
    },
    /// Extra sessions landing on `pages` so their landing rate becomes × `factor`.
    PageStream {
        /// Paths of the landing pages.
        pages: Vec<&'static str>,
        /// Peak factor of each page's landing rate.
        factor: f64,
        /// Linear ramp up.
        ramp_ms: i64,
        /// Exponential decay time constant after the peak (0 = flat until the end).
        decay_ms: i64,
        /// Referrer of the extra sessions (None = the usual mix).
        referrer: Option<&'static str>,
    },
    /// Events (of one page, or all) are lost with probability 1 − `keep`.
    Suppress {
        /// Path of the page, or None for the whole site.
        page: Option<&'static str>,
        /// Share of events kept.
        keep: f64,
    },
    /// Purchases are lost with probability 1 − `keep` (a broken checkout).
    Funnel {
        /// Share of purchases kept.
        keep: f64,
    },
    /// Automated sessions.
    Bots {
        /// Behaviour.
        style: BotStyle,
        /// Sessions to start, spread over the window.
        sessions: u32,
    },
    /// Fraudulent ad clicks.
    Fraud {
        /// Number of IPs (1–5).
        ips: u32,
        /// Total clicks per minute.
        per_minute: f64,
        /// Publisher referrer.
        referrer: String,
    },
}

/// One injection placed in simulated time.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// What was asked for.
    pub item: Item,
    /// Start, ms.
    pub start_ms: i64,
    /// End, ms.
    pub end_ms: i64,
    /// How.
    pub effect: Effect,
    /// Label magnitude.
    pub magnitude: f64,
    /// Label variant.
    pub variant: &'static str,
}

/// Places every item of `scenario` after the warm-up, one after another with gaps, with
/// durations, targets and magnitudes drawn from the documented ranges by `seed`.
pub fn plan(scenario: &Scenario, seed: u64, start_ms: i64) -> Vec<Planned> {
    // A stream of its own, so the plan does not shift the ordinary traffic's random draws.
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_a11a_0a1e_0001);
    let mut items = scenario.items.clone();
    // Fisher–Yates by hand: the order depends on the seed only.
    for i in (1..items.len()).rev() {
        let j = rng.random_range(0..=i);
        items.swap(i, j);
    }
    let mut t = start_ms + scenario.warmup_ms;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let p = place(&mut rng, item, t);
        t = p.end_ms + scenario.gap_ms;
        out.push(p);
    }
    out
}

fn minutes(rng: &mut StdRng, lo: i64, hi: i64) -> i64 {
    rng.random_range(lo * 60_000..=hi * 60_000)
}

fn place(rng: &mut StdRng, item: Item, start_ms: i64) -> Planned {
    let pick = |rng: &mut StdRng, kind: Kind, v: Option<&'static str>| {
        v.unwrap_or_else(|| {
            let all = kind.variants();
            all[rng.random_range(0..all.len())]
        })
    };
    let page = |rng: &mut StdRng| LANDING_PAGES[rng.random_range(0..LANDING_PAGES.len())].0;
    let (duration, effect, magnitude, variant) = match item {
        Item::Anomaly(Kind::TrafficSpike, v) => {
            let variant = pick(rng, Kind::TrafficSpike, v);
            let duration = minutes(rng, 10, 30);
            let (effect, magnitude) = if variant == "site" {
                let factor = rng.random_range(2.7..3.3);
                let e = Effect::SiteRate {
                    factor,
                    ramp_ms: 60_000,
                    boost: false,
                };
                (e, factor)
            } else {
                let factor = rng.random_range(4.0..8.0);
                // A category page, not `/`: half of all visits land on `/`, so ×4–8 there
                // would be a site-wide spike wearing a page's name.
                let category = LANDING_PAGES[rng.random_range(1..LANDING_PAGES.len())].0;
                let e = Effect::PageStream {
                    pages: vec![category],
                    factor,
                    ramp_ms: 60_000,
                    decay_ms: 0,
                    referrer: None,
                };
                (e, factor)
            };
            (duration, effect, magnitude, variant)
        }
        Item::Anomaly(Kind::TrafficDrop, v) => {
            let variant = pick(rng, Kind::TrafficDrop, v);
            let keep = rng.random_range(0.0..0.3);
            let page = (variant == "page").then(|| page(rng));
            (
                minutes(rng, 15, 30),
                Effect::Suppress { page, keep },
                keep,
                variant,
            )
        }
        Item::Anomaly(Kind::Bot, v) => {
            let variant = pick(rng, Kind::Bot, v);
            let (style, sessions, duration) = match variant {
                "regular" => (BotStyle::Regular, 1, minutes(rng, 5, 13)),
                "crawler" => (BotStyle::Crawler, 1, minutes(rng, 3, 8)),
                "swarm" => (
                    BotStyle::Swarm,
                    rng.random_range(20..=60),
                    minutes(rng, 15, 30),
                ),
                _ => (
                    BotStyle::Headless,
                    rng.random_range(1..=3),
                    minutes(rng, 5, 15),
                ),
            };
            let effect = Effect::Bots { style, sessions };
            (duration, effect, f64::from(sessions), variant)
        }
        Item::Anomaly(Kind::ClickFraud, _) => {
            let per_minute = rng.random_range(10.0..60.0);
            let effect = Effect::Fraud {
                ips: rng.random_range(1..=5),
                per_minute,
                referrer: format!(
                    "https://ads.example.net/click?pub={:04x}",
                    rng.random::<u16>()
                ),
            };
            (minutes(rng, 20, 40), effect, per_minute, "ads")
        }
        Item::Anomaly(Kind::FunnelDrop, _) => {
            let keep = rng.random_range(0.0..0.2);
            (
                minutes(rng, 30, 60),
                Effect::Funnel { keep },
                keep,
                "checkout",
            )
        }
        Item::Surge(Surge::FlashSale) => (
            minutes(rng, 40, 60),
            Effect::SiteRate {
                factor: 1.7,
                ramp_ms: 10 * 60_000,
                boost: true,
            },
            1.7,
            "flash-sale",
        ),
        Item::Surge(Surge::Newsletter) => {
            let mut pages = Vec::new();
            while pages.len() < 3 {
                // Categories only: "/" is half of all landings, not "a few landing pages".
                let p = LANDING_PAGES[rng.random_range(1..LANDING_PAGES.len())].0;
                if !pages.contains(&p) {
                    pages.push(p);
                }
            }
            let effect = Effect::PageStream {
                pages,
                factor: 2.0,
                ramp_ms: 5 * 60_000,
                decay_ms: 10 * 60_000,
                referrer: Some("https://news.shop.example/newsletter"),
            };
            (35 * 60_000, effect, 2.0, "newsletter")
        }
    };
    Planned {
        item,
        start_ms,
        end_ms: start_ms + duration,
        effect,
        magnitude,
        variant,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_seeded_sequential_and_in_range() {
        let scenario = Scenario {
            items: [
                parse_anomalies("all").unwrap(),
                parse_surges("all").unwrap(),
            ]
            .concat(),
            ..Scenario::default()
        };
        let a = plan(&scenario, 7, 0);
        assert_eq!(a, plan(&scenario, 7, 0));
        assert_ne!(a, plan(&scenario, 8, 0));
        assert_eq!(a[0].start_ms, scenario.warmup_ms);
        for w in a.windows(2) {
            assert_eq!(w[1].start_ms, w[0].end_ms + scenario.gap_ms);
        }
        for p in &a {
            match &p.effect {
                Effect::Suppress { keep, .. } => assert!(*keep < 0.3),
                Effect::Funnel { keep } => assert!(*keep <= 0.2),
                Effect::Fraud {
                    ips, per_minute, ..
                } => assert!((1..=5).contains(ips) && (10.0..=60.0).contains(per_minute)),
                _ => {}
            }
        }
    }
}
