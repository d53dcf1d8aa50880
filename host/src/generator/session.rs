//! One simulated visit: who the visitor is, and the script of pages they go through.

use fake::Fake;
use fake::faker::internet::en::{IPv4, UserAgent};
use rand::Rng;
use rand::rngs::StdRng;

use super::browse;
use super::site::ORIGIN as SITE;
use super::world::{Navigation, World};
use crate::event::{ClickEvent, EventKind, Properties};

const COUNTRIES: [(&str, u32); 10] = [
    ("US", 30),
    ("DE", 12),
    ("GB", 10),
    ("FR", 9),
    ("IN", 8),
    ("BR", 7),
    ("JP", 6),
    ("CA", 6),
    ("ES", 6),
    ("NL", 6),
];
const REFERRERS: [(Option<&str>, u32); 6] = [
    (None, 35),
    (Some("https://www.google.com/"), 30),
    (Some("https://www.facebook.com/"), 10),
    (Some("https://news.shop.example/newsletter"), 8),
    (Some("https://ads.example.net/click"), 12),
    (Some("https://www.bing.com/"), 5),
];
pub(crate) const BOT_AGENTS: [&str; 3] = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0 Safari/537.36",
    "python-requests/2.31.0",
    "Mozilla/5.0 (compatible; scrapy/2.11)",
];

pub(crate) fn weighted<T: Copy>(rng: &mut StdRng, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut pick = rng.random_range(0..total);
    for (item, w) in items {
        if pick < *w {
            return *item;
        }
        pick -= w;
    }
    items[0].0
}

/// Who is browsing.
#[derive(Debug, Clone)]
pub struct Visitor {
    user_id: Option<String>,
    device: &'static str,
    country: &'static str,
    user_agent: String,
    ip: String,
}

impl Visitor {
    /// A returning, registered user on a device drawn from `devices`.
    pub fn random(rng: &mut StdRng, index: u32, devices: &[(&'static str, u32)]) -> Self {
        let mut v = Self::anonymous(rng, false, devices);
        v.user_id = Some(format!("u{index:06}"));
        v
    }

    /// A visitor with a given address and agent (injected bots and fraud).
    pub fn custom(rng: &mut StdRng, ip: String, user_agent: String, device: &'static str) -> Self {
        Visitor {
            user_id: None,
            device,
            country: weighted(rng, &COUNTRIES),
            user_agent,
            ip,
        }
    }

    /// The visitor's IP address.
    pub fn ip(&self) -> &str {
        &self.ip
    }

    /// A random IPv4 address.
    pub fn random_ip(rng: &mut StdRng) -> String {
        IPv4().fake_with_rng(rng)
    }

    /// A random human browser user agent.
    pub fn random_agent(rng: &mut StdRng) -> String {
        UserAgent().fake_with_rng(rng)
    }

    /// An anonymous visitor (or a bot) on a device drawn from `devices`.
    pub fn anonymous(rng: &mut StdRng, bot: bool, devices: &[(&'static str, u32)]) -> Self {
        let device = if bot {
            "desktop"
        } else {
            weighted(rng, devices)
        };
        let user_agent = if bot {
            BOT_AGENTS[rng.random_range(0..BOT_AGENTS.len())].to_owned()
        } else {
            UserAgent().fake_with_rng(rng)
        };
        Visitor {
            user_id: None,
            device,
            country: weighted(rng, &COUNTRIES),
            user_agent,
            ip: IPv4().fake_with_rng(rng),
        }
    }
}

/// How long a session waits between steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Seconds to a minute, log-normal-ish.
    Human,
    /// The ordinary scraper: every 50–300 ms.
    FastBot,
    /// Every `period_ms` ± `jitter` (a share of the period): a scripted timer.
    Regular {
        /// Mean gap.
        period_ms: i64,
        /// Relative jitter, e.g. 0.02.
        jitter: f64,
    },
    /// Uniform in `[lo, hi)` ms: no dwell, but not fast enough to trip a rate rule.
    Uniform(i64, i64),
    /// Log-normal: median `median_ms`, standard deviation of ln(gap) `sigma` (Markov
    /// browsing, and bot farms imitating it).
    LogNormal {
        /// Median gap, ms.
        median_ms: f64,
        /// Log-sd; the gaps' coefficient of variation is `sqrt(exp(sigma²) − 1)`.
        sigma: f64,
    },
}

/// A standard normal draw (Box–Muller).
pub(crate) fn standard_normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// How a human session deviates from the usual (injected traffic and surges).
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// First page (path) instead of the usual `/` or category page.
    pub landing: Option<String>,
    /// Referrer instead of the usual mix.
    pub referrer: Option<&'static str>,
    /// A sale: more add-to-carts and more purchases. 0 = none, 1 = the original flash sale.
    pub boost: f64,
}

impl SessionOptions {
    /// Add-to-cart and purchase probabilities of the funnel under this boost.
    pub(crate) fn funnel_odds(&self) -> (f64, f64) {
        if self.boost <= 0.0 {
            (0.35, 0.65)
        } else if self.boost == 1.0 {
            // The original flash sale's numbers, exactly.
            (0.55, 0.8)
        } else {
            (
                (0.35 + 0.2 * self.boost).min(0.9),
                (0.65 + 0.15 * self.boost).min(0.95),
            )
        }
    }
}

/// A session in progress: a queue of upcoming steps and the time of the next one.
#[derive(Debug)]
pub struct Session {
    id: String,
    visitor: Visitor,
    referrer: Option<String>,
    steps: Vec<(EventKind, String)>,
    pub next_time_ms: i64,
    pace: Pace,
    seed: u64,
}

impl Session {
    /// Plans a whole visit in `world`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        rng: &mut StdRng,
        seed: u64,
        id: u64,
        visitor: Visitor,
        start_ms: i64,
        bot: bool,
        options: &SessionOptions,
        world: &World,
    ) -> Self {
        let referrer = if bot {
            None
        } else {
            options.referrer.or_else(|| weighted(rng, &REFERRERS))
        };
        let site = &world.site;
        let mut steps = Vec::new();
        // Drawn for every session, bots included, as the original model did.
        let category = rng.random_range(0..site.category_count());
        let pace = if bot {
            // Scrapers walk the catalogue breadth-first, fast and without buying anything.
            for _ in 0..rng.random_range(60..200) {
                steps.push((EventKind::PageView, site.any_product(rng)));
            }
            Pace::FastBot
        } else {
            if referrer == Some("https://ads.example.net/click") {
                steps.push((EventKind::AdClick, site.category_page(category)));
            }
            let landing = match &options.landing {
                Some(page) => page.clone(),
                None if rng.random_bool(0.5) => "/".to_owned(),
                None => site.category_page(category),
            };
            let registered = visitor.user_id.is_some();
            match world.navigation {
                Navigation::Funnel => {
                    funnel_steps(
                        rng, &mut steps, landing, category, registered, options, world,
                    );
                    Pace::Human
                }
                Navigation::Markov {
                    dwell_median_ms,
                    dwell_sigma,
                } => {
                    browse::markov_steps(
                        rng, &mut steps, landing, category, registered, options, site,
                    );
                    Pace::LogNormal {
                        median_ms: dwell_median_ms,
                        sigma: dwell_sigma,
                    }
                }
            }
        };
        Self::scripted(
            seed,
            id,
            visitor,
            referrer.map(str::to_owned),
            steps,
            start_ms,
            pace,
        )
    }

    /// A session that walks exactly `steps` (in order) at `pace`.
    pub fn scripted(
        seed: u64,
        id: u64,
        visitor: Visitor,
        referrer: Option<String>,
        mut steps: Vec<(EventKind, String)>,
        start_ms: i64,
        pace: Pace,
    ) -> Self {
        steps.reverse();
        Session {
            id: Self::id_for(seed, id),
            visitor,
            referrer,
            steps,
            next_time_ms: start_ms,
            pace,
            seed,
        }
    }

    /// The session id the `id`-th session of generator `seed` gets.
    pub fn id_for(seed: u64, id: u64) -> String {
        format!("{seed:x}-s{id}")
    }

    /// Its id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its visitor.
    pub fn visitor(&self) -> &Visitor {
        &self.visitor
    }

    /// Whether the visit is over.
    pub fn finished(&self) -> bool {
        self.steps.is_empty()
    }

    /// Emits the next step and schedules the one after.
    pub fn next(&mut self, rng: &mut StdRng, seq: u64) -> ClickEvent {
        let (kind, path) = self
            .steps
            .pop()
            .unwrap_or((EventKind::Other, "/".to_owned()));
        let properties = match kind {
            EventKind::AddToCart | EventKind::Purchase => {
                let mut m = serde_json::Map::new();
                m.insert(
                    "price".into(),
                    serde_json::json!((rng.random_range(500..20_000) as f64) / 100.0),
                );
                Properties::from_map(&m)
            }
            EventKind::Click => {
                let mut m = serde_json::Map::new();
                m.insert(
                    "element_id".into(),
                    serde_json::json!(format!("btn-{}", rng.random_range(1..20))),
                );
                Properties::from_map(&m)
            }
            _ => None,
        };
        let event = ClickEvent {
            event_id: format!("{:x}-{seq}", self.seed),
            time_ms: self.next_time_ms,
            kind,
            session_id: self.id.clone(),
            user_id: self.visitor.user_id.clone(),
            url: format!("{SITE}{path}"),
            referrer: self.referrer.take(),
            ip: Some(self.visitor.ip.clone()),
            user_agent: Some(self.visitor.user_agent.clone()),
            device: Some(self.visitor.device.to_owned()),
            country: Some(self.visitor.country.to_owned()),
            properties,
        };
        let gap = match self.pace {
            Pace::Human => (rng.random_range(0.5f64..4.2).exp() * 1000.0) as i64,
            Pace::FastBot => rng.random_range(50..300),
            Pace::Regular { period_ms, jitter } => {
                let j = rng.random_range(-jitter..=jitter);
                ((period_ms as f64) * (1.0 + j)).round().max(1.0) as i64
            }
            Pace::Uniform(lo, hi) => rng.random_range(lo..hi.max(lo + 1)),
            Pace::LogNormal { median_ms, sigma } => {
                let z = standard_normal(rng);
                (median_ms * (sigma * z).exp())
                    .round()
                    .clamp(50.0, 3_600_000.0) as i64
            }
        };
        self.next_time_ms += gap;
        // The referrer only applies to the landing page (taken above).
        event
    }
}

/// The original scripted funnel: landing, maybe login and search, 0–5 products, maybe cart,
/// checkout and purchase (draws in the original order, so the legacy world is unchanged).
fn funnel_steps(
    rng: &mut StdRng,
    steps: &mut Vec<(EventKind, String)>,
    landing: String,
    category: usize,
    registered: bool,
    options: &SessionOptions,
    world: &World,
) {
    let site = &world.site;
    let name = site.categories[category];
    let (cart, purchase) = options.funnel_odds();
    steps.push((EventKind::PageView, landing));
    if registered && rng.random_bool(0.3) {
        steps.push((EventKind::Login, "/login".to_owned()));
    }
    if rng.random_bool(0.2) {
        steps.push((EventKind::Search, format!("/search?q={name}")));
    }
    let products = rng.random_range(0..6);
    let mut last_product = None;
    for _ in 0..products {
        let product = site.human_product(rng, category);
        steps.push((EventKind::PageView, product.clone()));
        if rng.random_bool(0.5) {
            steps.push((EventKind::Click, product.clone()));
        }
        last_product = Some(product);
    }
    if let Some(product) = last_product
        && rng.random_bool(cart)
    {
        steps.push((EventKind::AddToCart, product));
        if rng.random_bool(0.1) {
            steps.push((EventKind::RemoveFromCart, "/cart".to_owned()));
        } else if rng.random_bool(0.55) {
            steps.push((EventKind::PageView, "/cart".to_owned()));
            steps.push((EventKind::Checkout, "/checkout".to_owned()));
            if rng.random_bool(purchase) {
                steps.push((EventKind::Purchase, "/order/confirmed".to_owned()));
            }
        }
    }
    if registered && rng.random_bool(0.1) {
        steps.push((EventKind::Logout, "/logout".to_owned()));
    }
}
