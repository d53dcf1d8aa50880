//! What to inject and when: the seeded plan that turns a parsed spec (`spec.rs`) into concrete
//! windows, targets and magnitudes in simulated time.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use super::spec::{Item, Kind, SpecError, Surge, parse_anomalies, parse_surges};
use super::world::World;

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

/// What a category outage does to the category's product pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutageMode {
    /// Their events are lost (the pages are gone from the tracker).
    Lost,
    /// Their page views land on `/404` instead; clicks and carts on them are lost.
    NotFound,
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
        /// More carts and purchases (0 = as usual, 1 = the original flash sale).
        boost: f64,
    },
    /// Extra sessions landing on `pages` so their landing rate becomes × `factor`.
    PageStream {
        /// Paths of the landing pages.
        pages: Vec<String>,
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
        page: Option<String>,
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
    /// Every product page of one category fails.
    CategoryOutage {
        /// Category index in the world's site.
        category: usize,
        /// Lost or 404.
        mode: OutageMode,
    },
    /// Checkout and purchase fail for one device class only.
    DeviceCheckout {
        /// `desktop`, `mobile` or `tablet`.
        device: &'static str,
    },
    /// Ad clicks from many IPs of one /24, each ramping up slowly and staying under
    /// `cap` clicks in any 10 minutes.
    SlowFraud {
        /// The /24, `a.b.c`.
        subnet: String,
        /// IPs of the subnet taking part.
        ips: u32,
        /// Most ad clicks of one IP in any 10 minutes.
        cap: u32,
        /// How long each IP takes to reach its top rate.
        ramp_ms: i64,
        /// Publisher referrer.
        referrer: String,
    },
    /// Many IPs of one /24, one session at a time each, log-normal gaps.
    Farm {
        /// The /24, `a.b.c`.
        subnet: String,
        /// IPs taking part.
        ips: u32,
        /// Median gap, ms.
        median_ms: f64,
        /// Coefficient of variation of the gaps.
        cv: f64,
    },
    /// Site arrivals ramp up slowly to `factor` (slow enough to be learned), then events
    /// are lost with probability 1 − `keep` in `[drop_start_ms, drop_end_ms]`, then the
    /// factor ramps back to 1 by the end.
    RampDrop {
        /// Factor reached at the end of the ramp.
        factor: f64,
        /// Start of the real drop (end of the ramp).
        drop_start_ms: i64,
        /// End of the real drop.
        drop_end_ms: i64,
        /// Share of events kept during the drop.
        keep: f64,
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
pub fn plan(scenario: &Scenario, seed: u64, start_ms: i64, world: &World) -> Vec<Planned> {
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
        let p = place(&mut rng, item, t, world);
        t = p.end_ms + scenario.gap_ms;
        out.push(p);
    }
    out
}

pub(super) fn minutes(rng: &mut StdRng, lo: i64, hi: i64) -> i64 {
    rng.random_range(lo * 60_000..=hi * 60_000)
}

fn place(rng: &mut StdRng, item: Item, start_ms: i64, world: &World) -> Planned {
    if let Item::Anomaly(kind, Some(v)) = item
        && kind.extended_variants().contains(&v)
    {
        return super::extended::place(rng, kind, v, start_ms, world);
    }
    let landing = world.site.landing_pages();
    let pick = |rng: &mut StdRng, kind: Kind, v: Option<&'static str>| {
        v.unwrap_or_else(|| {
            let all = kind.variants();
            all[rng.random_range(0..all.len())]
        })
    };
    let page = |rng: &mut StdRng| landing[rng.random_range(0..landing.len())].0.clone();
    let (duration, effect, magnitude, variant) = match item {
        Item::Anomaly(Kind::TrafficSpike, v) => {
            let variant = pick(rng, Kind::TrafficSpike, v);
            let duration = minutes(rng, 10, 30);
            let (effect, magnitude) = if variant == "site" {
                let factor = rng.random_range(2.7..3.3);
                let e = Effect::SiteRate {
                    factor,
                    ramp_ms: 60_000,
                    boost: 0.0,
                };
                (e, factor)
            } else {
                let factor = rng.random_range(4.0..8.0);
                // A category page, not `/`: half of all visits land on `/`, so ×4–8 there
                // would be a site-wide spike wearing a page's name.
                let category = landing[rng.random_range(1..landing.len())].0.clone();
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
        Item::Surge(Surge::FlashSale) => {
            let duration = minutes(rng, 40, 60);
            // A drawn world sizes each sale; the legacy one keeps the original x1.7.
            let (factor, ramp_ms, boost) = match world.surges {
                None => (1.7, 10 * 60_000, 1.0),
                Some(s) => (
                    rng.random_range(s.flash_sale.0..s.flash_sale.1),
                    minutes(rng, 5, 15),
                    rng.random_range(s.boost.0..s.boost.1),
                ),
            };
            let effect = Effect::SiteRate {
                factor,
                ramp_ms,
                boost,
            };
            (duration, effect, factor, "flash-sale")
        }
        Item::Surge(Surge::Newsletter) => {
            let (factor, count) = match world.surges {
                None => (2.0, 3),
                Some(s) => (
                    rng.random_range(s.newsletter.0..s.newsletter.1),
                    rng.random_range(1..=4usize),
                ),
            };
            let count = count.min(landing.len() - 1);
            let mut pages = Vec::new();
            while pages.len() < count {
                // Categories only: "/" is half of all landings, not "a few landing pages".
                let p = landing[rng.random_range(1..landing.len())].0.clone();
                if !pages.contains(&p) {
                    pages.push(p);
                }
            }
            let effect = Effect::PageStream {
                pages,
                factor,
                ramp_ms: 5 * 60_000,
                decay_ms: 10 * 60_000,
                referrer: Some("https://news.shop.example/newsletter"),
            };
            (35 * 60_000, effect, factor, "newsletter")
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
        let w = World::legacy();
        let a = plan(&scenario, 7, 0, &w);
        assert_eq!(a, plan(&scenario, 7, 0, &w));
        assert_ne!(a, plan(&scenario, 8, 0, &w));
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
