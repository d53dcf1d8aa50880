//! The world a clickstream is simulated in: the site (URL scheme, categories, catalogue), the
//! audience's device mix, the daily traffic shape, how visitors navigate, and how big legitimate
//! surges get. `World::legacy()` is the original model exactly (same seed, same events);
//! `World::random(seed)` draws every part from wide ranges, so detectors tuned to one world are
//! caught out by the next.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::site::Site;

/// Traffic relative to the daily mean over the day.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DailyShape {
    /// The original curve: 0.35 at 04:00, 1.65 at 16:00 (UTC).
    Legacy,
    /// A raised cosine: `night` at `trough_hour`, mean 1, repeating every `period_hours`
    /// (24 for a normal day, 6 for a day compressed 4×). `evening` squares the curve, so the
    /// low lasts longer and the peak is sharper (an evening-heavy audience).
    Cosine {
        /// Length of one "day", hours.
        period_hours: f64,
        /// Hour (within the period) of the low.
        trough_hour: f64,
        /// Traffic at the low, relative to the mean.
        night: f64,
        /// Sharper peak, longer low.
        evening: bool,
    },
    /// No daily variation.
    Flat,
}

impl DailyShape {
    /// Factor on the mean rate at `time_ms` (UTC).
    pub fn factor(&self, time_ms: i64) -> f64 {
        match *self {
            DailyShape::Legacy => super::daily_shape(time_ms),
            DailyShape::Flat => 1.0,
            DailyShape::Cosine {
                period_hours,
                trough_hour,
                night,
                evening,
            } => {
                let hour = time_ms.rem_euclid(86_400_000) as f64 / 3_600_000.0;
                let phase = (hour - trough_hour) / period_hours * std::f64::consts::TAU;
                // 0 at the low, 1 at the peak.
                let c = (1.0 - phase.cos()) / 2.0;
                // Mean of c is 1/2, of c² 3/8: the peak is set so the mean factor is 1.
                let (c, mean) = if evening { (c * c, 0.375) } else { (c, 0.5) };
                night + (1.0 - night) / mean * c
            }
        }
    }

    /// The highest factor of the curve (for thinning injected streams).
    pub fn peak(&self) -> f64 {
        match *self {
            // Computed, not written out: thinning in the legacy world must stay bit-identical.
            DailyShape::Legacy => super::daily_shape(16 * 3_600_000),
            DailyShape::Flat => 1.0,
            DailyShape::Cosine { night, evening, .. } => {
                night + (1.0 - night) / if evening { 0.375 } else { 0.5 }
            }
        }
    }

    /// Short name for summaries.
    pub fn describe(&self) -> String {
        match *self {
            DailyShape::Legacy => "legacy day".into(),
            DailyShape::Flat => "flat".into(),
            DailyShape::Cosine {
                period_hours,
                night,
                evening,
                ..
            } => {
                let what = if evening {
                    "evening-heavy"
                } else if period_hours < 24.0 {
                    "compressed day"
                } else {
                    "normal day"
                };
                format!("{what} (period {period_hours:.0} h, night x{night:.2})")
            }
        }
    }
}

/// How a human session moves through the site.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Navigation {
    /// The original scripted funnel (landing, a few products, maybe cart, checkout,
    /// purchase), dwell `exp(U(0.5, 4.2))` s.
    Funnel,
    /// A Markov chain over page types (home, category, product, search, cart, checkout) with
    /// log-normal dwell: median `dwell_median_ms`, log-sd `dwell_sigma`.
    Markov {
        /// Median dwell between steps, ms.
        dwell_median_ms: f64,
        /// Standard deviation of ln(dwell).
        dwell_sigma: f64,
    },
}

/// How big legitimate surges get in a drawn world (each surge draws its own size).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SurgeSizes {
    /// Flash sale peak factor on site arrivals, drawn from this range.
    pub flash_sale: (f64, f64),
    /// Flash sale conversion boost drawn from this range (0 = converts as usual, 1 = the
    /// original sale, more = better still).
    pub boost: (f64, f64),
    /// Newsletter peak factor on its landing pages.
    pub newsletter: (f64, f64),
}

/// Everything about the simulated shop and audience that is not an anomaly.
#[derive(Debug, Clone, PartialEq)]
pub struct World {
    /// `legacy` or `random-<seed>`.
    pub name: String,
    /// URL scheme and catalogue.
    pub site: Site,
    /// Device classes and their weights.
    pub devices: [(&'static str, u32); 3],
    /// Traffic over the day.
    pub shape: DailyShape,
    /// How humans browse.
    pub navigation: Navigation,
    /// Surge sizes; None = the original fixed sizes (flash sale ×1.7 with the original boost,
    /// newsletter ×2).
    pub surges: Option<SurgeSizes>,
}

impl Default for World {
    fn default() -> Self {
        World::legacy()
    }
}

impl World {
    /// The original model.
    pub fn legacy() -> Self {
        World {
            name: "legacy".into(),
            site: Site::legacy(),
            devices: [("desktop", 55), ("mobile", 38), ("tablet", 7)],
            shape: DailyShape::Legacy,
            navigation: Navigation::Funnel,
            surges: None,
        }
    }

    /// A world drawn from `seed` (a stream of its own: the traffic's seed is separate).
    pub fn random(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x0077_0e1d_5eed_0003);
        let site = Site::random(&mut rng);
        let mobile = rng.random_range(20..=60);
        let tablet = rng.random_range(3..=12);
        let devices = [
            ("desktop", 100 - mobile - tablet),
            ("mobile", mobile),
            ("tablet", tablet),
        ];
        let night = rng.random_range(0.15..0.6);
        let shape = match rng.random_range(0..4) {
            0 => DailyShape::Cosine {
                period_hours: 24.0,
                trough_hour: rng.random_range(2.0..6.0),
                night,
                evening: false,
            },
            1 => DailyShape::Cosine {
                period_hours: 6.0,
                trough_hour: rng.random_range(0.0..6.0),
                night,
                evening: false,
            },
            2 => DailyShape::Cosine {
                period_hours: 24.0,
                // Low in the morning, peak twelve hours later (evening).
                trough_hour: rng.random_range(7.0..10.0),
                night,
                evening: true,
            },
            _ => DailyShape::Flat,
        };
        let navigation = if rng.random_bool(0.5) {
            Navigation::Funnel
        } else {
            Navigation::Markov {
                dwell_median_ms: rng.random_range(4_000.0..20_000.0),
                dwell_sigma: rng.random_range(0.6..1.3),
            }
        };
        World {
            name: format!("random-{seed}"),
            site,
            devices,
            shape,
            navigation,
            surges: Some(SurgeSizes {
                flash_sale: (1.5, 4.0),
                boost: (0.0, 1.5),
                newsletter: (1.5, 4.5),
            }),
        }
    }

    /// Share of sessions on `device` (0..1).
    pub fn device_share(&self, device: &str) -> f64 {
        let total: u32 = self.devices.iter().map(|(_, w)| w).sum();
        let w = self
            .devices
            .iter()
            .find(|(d, _)| *d == device)
            .map_or(0, |(_, w)| *w);
        f64::from(w) / f64::from(total.max(1))
    }

    /// One line describing the world (printed by `generate` and the scenario suite).
    pub fn describe(&self) -> String {
        let nav = match self.navigation {
            Navigation::Funnel => "funnel".to_owned(),
            Navigation::Markov {
                dwell_median_ms,
                dwell_sigma,
            } => format!(
                "markov (dwell median {:.1} s, sigma {dwell_sigma:.2})",
                dwell_median_ms / 1000.0
            ),
        };
        format!(
            "world {}: urls {}, {} categories x {} products, devices desktop {}% mobile {}% tablet {}%, {}, {nav}",
            self.name,
            self.site.scheme.as_str(),
            self.site.category_count(),
            self.site.per_category,
            self.devices[0].1,
            self.devices[1].1,
            self.devices[2].1,
            self.shape.describe(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_average_one_and_stay_positive() {
        for seed in 0..40 {
            let w = World::random(seed);
            let n = 24 * 60;
            let mean: f64 = (0..n).map(|m| w.shape.factor(m * 60_000)).sum::<f64>() / n as f64;
            assert!((mean - 1.0).abs() < 0.02, "{}: mean {mean}", w.describe());
            for m in 0..n {
                let f = w.shape.factor(m * 60_000);
                assert!(f > 0.1 && f <= w.shape.peak() + 1e-9, "{f}");
            }
        }
        let legacy = DailyShape::Legacy;
        assert_eq!(
            legacy.factor(4 * 3_600_000),
            super::super::daily_shape(4 * 3_600_000)
        );
    }

    #[test]
    fn worlds_differ_across_seeds() {
        let worlds: Vec<World> = (1..=12).map(World::random).collect();
        assert_eq!(World::random(5), World::random(5));
        let schemes: std::collections::HashSet<_> = worlds.iter().map(|w| w.site.scheme).collect();
        assert!(schemes.len() >= 3, "{schemes:?}");
        let mobile: Vec<f64> = worlds.iter().map(|w| w.device_share("mobile")).collect();
        let (lo, hi) = mobile
            .iter()
            .fold((1.0f64, 0.0f64), |(l, h), m| (l.min(*m), h.max(*m)));
        assert!(lo >= 0.2 && hi <= 0.6 && hi - lo > 0.15, "{mobile:?}");
        let navs = worlds
            .iter()
            .filter(|w| matches!(w.navigation, Navigation::Markov { .. }))
            .count();
        assert!(navs > 0 && navs < worlds.len());
        let cats: std::collections::HashSet<_> =
            worlds.iter().map(|w| w.site.category_count()).collect();
        assert!(cats.len() >= 4, "{cats:?}");
        assert!(worlds.iter().all(|w| w != &World::legacy()));
    }
}
