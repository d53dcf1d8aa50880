//! Planning the extended anomaly variants (issue #11): a category's product pages failing, one
//! device class's checkout failing, slow ad fraud spread over a /24, a jittered bot farm, and a
//! real drop after a ramp slow enough to be learned. Ranges are wide on purpose and documented
//! in `docs/anomaly-labels.md`.

use rand::Rng;
use rand::rngs::StdRng;

use super::anomaly::{Effect, Item, OutageMode, Planned, minutes};
use super::spec::Kind;
use super::world::World;

/// A random public-looking /24 (`a.b.c`), outside 10/8, 127/8 and multicast.
pub(crate) fn subnet(rng: &mut StdRng) -> String {
    let a = loop {
        let a = rng.random_range(11..=223u8);
        if a != 127 && a != 100 && a != 172 && a != 192 {
            break a;
        }
    };
    format!(
        "{a}.{}.{}",
        rng.random_range(0..=255u8),
        rng.random_range(0..=255u8)
    )
}

/// Places extended variant `variant` of `kind` at `start_ms`.
pub(super) fn place(
    rng: &mut StdRng,
    kind: Kind,
    variant: &'static str,
    start_ms: i64,
    world: &World,
) -> Planned {
    let publisher = |rng: &mut StdRng| {
        format!(
            "https://ads.example.net/click?pub={:04x}",
            rng.random::<u16>()
        )
    };
    let (duration, effect, magnitude) = match variant {
        "category" | "category-404" => {
            let mode = if variant == "category" {
                OutageMode::Lost
            } else {
                OutageMode::NotFound
            };
            let category = rng.random_range(0..world.site.category_count());
            let e = Effect::CategoryOutage { category, mode };
            (minutes(rng, 5, 20), e, 0.0)
        }
        "device" => {
            let device = match rng.random_range(0..10) {
                0..6 => "mobile",
                6..9 => "desktop",
                _ => "tablet",
            };
            let e = Effect::DeviceCheckout { device };
            (minutes(rng, 20, 45), e, world.device_share(device))
        }
        "slow-subnet" => {
            let ips = rng.random_range(8..=40);
            let cap = rng.random_range(2..=4);
            let e = Effect::SlowFraud {
                subnet: subnet(rng),
                ips,
                cap,
                ramp_ms: minutes(rng, 5, 15),
                referrer: publisher(rng),
            };
            // Clicks per minute at the top rate, all IPs together.
            (minutes(rng, 20, 40), e, f64::from(ips * cap) / 10.0)
        }
        "farm" => {
            let ips = rng.random_range(8..=30);
            let e = Effect::Farm {
                subnet: subnet(rng),
                ips,
                median_ms: rng.random_range(3_000.0..15_000.0),
                cv: rng.random_range(0.1..0.9),
            };
            (minutes(rng, 10, 25), e, f64::from(ips))
        }
        // "after-ramp"
        _ => {
            let ramp = minutes(rng, 30, 60);
            let drop = minutes(rng, 10, 20);
            let keep = rng.random_range(0.1..0.5);
            let e = Effect::RampDrop {
                factor: rng.random_range(1.5..2.5),
                drop_start_ms: start_ms + ramp,
                drop_end_ms: start_ms + ramp + drop,
                keep,
            };
            // Back down to normal over ten minutes after the drop.
            (ramp + drop + 10 * 60_000, e, keep)
        }
    };
    Planned {
        item: Item::Anomaly(kind, Some(variant)),
        start_ms,
        end_ms: start_ms + duration,
        effect,
        magnitude,
        variant,
    }
}
