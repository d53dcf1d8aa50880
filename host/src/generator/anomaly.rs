//! What to inject and when: the `--anomalies` / `--surges` spec grammar, and the seeded plan
//! that turns a spec into concrete windows, targets and magnitudes in simulated time.
//!
//! Grammar (documented in `docs/anomaly-labels.md`):
//! `SPEC := ITEM ("," ITEM)* | "all" | "none"`, `ITEM := KIND ["/" VARIANT] [":" COUNT]`.
//! Kinds and variants: `traffic-spike/page|site`, `traffic-drop/page|site`,
//! `bot/regular|crawler|swarm|headless`, `click-fraud`, `funnel-drop`. Surges (unlabelled):
//! `flash-sale`, `newsletter`, same `[":" COUNT]` suffix.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// An anomaly kind, as it appears in labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A page's or the site's rate rises.
    TrafficSpike,
    /// A page's or the site's rate falls.
    TrafficDrop,
    /// Automated sessions.
    Bot,
    /// Ad clicks without conversions from a few IPs and one referrer.
    ClickFraud,
    /// Checkout → purchase conversion collapses.
    FunnelDrop,
}

impl Kind {
    /// The label `kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::TrafficSpike => "traffic-spike",
            Kind::TrafficDrop => "traffic-drop",
            Kind::Bot => "bot",
            Kind::ClickFraud => "click-fraud",
            Kind::FunnelDrop => "funnel-drop",
        }
    }

    fn variants(self) -> &'static [&'static str] {
        match self {
            Kind::TrafficSpike | Kind::TrafficDrop => &["page", "site"],
            Kind::Bot => &["regular", "crawler", "swarm", "headless"],
            Kind::ClickFraud | Kind::FunnelDrop => &[],
        }
    }

    const ALL: [Kind; 5] = [
        Kind::TrafficSpike,
        Kind::TrafficDrop,
        Kind::Bot,
        Kind::ClickFraud,
        Kind::FunnelDrop,
    ];
}

/// A legitimate surge: more traffic that is *not* an anomaly and gets no label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surge {
    /// Site-wide ramp to ~x1.7 over ~10 min, more carts and purchases.
    FlashSale,
    /// ~x2 on a few landing pages from an email referrer, ramp ~5 min, decay ~30 min.
    Newsletter,
}

/// One requested injection, before planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// An anomaly, with a variant or one picked by the seed.
    Anomaly(Kind, Option<&'static str>),
    /// A legitimate surge.
    Surge(Surge),
}

/// A spec that does not parse, quoting the bad part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// Unknown kind or surge name.
    #[error("unknown {what} `{name}` (known: {known})")]
    Unknown {
        /// "anomaly kind", "variant" or "surge".
        what: &'static str,
        /// The bad name.
        name: String,
        /// What would have been accepted.
        known: String,
    },
    /// A count that is not a positive number.
    #[error("bad count in `{0}`: expected KIND[:COUNT] with COUNT ≥ 1")]
    Count(String),
}

fn split_count(item: &str) -> Result<(&str, usize), SpecError> {
    match item.split_once(':') {
        None => Ok((item, 1)),
        Some((name, n)) => match n.parse::<usize>() {
            Ok(n) if n >= 1 => Ok((name, n)),
            _ => Err(SpecError::Count(item.to_owned())),
        },
    }
}

/// Parses an `--anomalies` spec.
pub fn parse_anomalies(spec: &str) -> Result<Vec<Item>, SpecError> {
    let spec = spec.trim();
    if spec.is_empty() || spec == "none" {
        return Ok(Vec::new());
    }
    if spec == "all" {
        // Every kind in every variant, so one run exercises the whole contract.
        return Ok(Kind::ALL
            .iter()
            .flat_map(|k| {
                let v = k.variants();
                if v.is_empty() {
                    vec![Item::Anomaly(*k, None)]
                } else {
                    v.iter().map(|v| Item::Anomaly(*k, Some(*v))).collect()
                }
            })
            .collect());
    }
    let mut items = Vec::new();
    for raw in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, count) = split_count(raw)?;
        let (kind_name, variant) = match name.split_once('/') {
            Some((k, v)) => (k, Some(v)),
            None => (name, None),
        };
        let kind = Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == kind_name)
            .ok_or_else(|| SpecError::Unknown {
                what: "anomaly kind",
                name: kind_name.to_owned(),
                known: Kind::ALL.map(Kind::as_str).join(", "),
            })?;
        let variant = match variant {
            None => None,
            Some(v) => Some(
                *kind
                    .variants()
                    .iter()
                    .find(|known| **known == v)
                    .ok_or_else(|| SpecError::Unknown {
                        what: "variant",
                        name: format!("{kind_name}/{v}"),
                        known: kind.variants().join(", "),
                    })?,
            ),
        };
        items.extend(std::iter::repeat_n(Item::Anomaly(kind, variant), count));
    }
    Ok(items)
}

/// Parses a `--surges` spec: `flash-sale`, `newsletter`, `all`, `none`, with `:COUNT`.
pub fn parse_surges(spec: &str) -> Result<Vec<Item>, SpecError> {
    let spec = spec.trim();
    if spec.is_empty() || spec == "none" {
        return Ok(Vec::new());
    }
    if spec == "all" {
        return Ok(vec![
            Item::Surge(Surge::FlashSale),
            Item::Surge(Surge::Newsletter),
        ]);
    }
    let mut items = Vec::new();
    for raw in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, count) = split_count(raw)?;
        let surge = match name {
            "flash-sale" => Surge::FlashSale,
            "newsletter" => Surge::Newsletter,
            other => {
                return Err(SpecError::Unknown {
                    what: "surge",
                    name: other.to_owned(),
                    known: "flash-sale, newsletter".into(),
                });
            }
        };
        items.extend(std::iter::repeat_n(Item::Surge(surge), count));
    }
    Ok(items)
}

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
    fn specs_parse_with_variants_counts_and_all() {
        assert_eq!(
            parse_anomalies("traffic-spike,bot/swarm:2,funnel-drop").unwrap(),
            vec![
                Item::Anomaly(Kind::TrafficSpike, None),
                Item::Anomaly(Kind::Bot, Some("swarm")),
                Item::Anomaly(Kind::Bot, Some("swarm")),
                Item::Anomaly(Kind::FunnelDrop, None),
            ]
        );
        assert_eq!(parse_anomalies("all").unwrap().len(), 10);
        assert!(parse_anomalies("none").unwrap().is_empty());
        let e = parse_anomalies("bot/robot").unwrap_err().to_string();
        assert!(e.contains("bot/robot") && e.contains("swarm"), "{e}");
        assert!(parse_anomalies("spike").is_err());
        assert!(parse_anomalies("bot:0").is_err());
        assert_eq!(parse_surges("all").unwrap().len(), 2);
        assert!(parse_surges("black-friday").is_err());
    }

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
