//! Event filters of a plan: what a broken tracker, page, checkout or category does to the
//! events the simulation emits (lose them, or send the visitor to `/404`).

use rand::Rng;
use rand::rngs::StdRng;

use super::anomaly::{Effect, OutageMode, Planned};
use super::site::{ORIGIN as SITE, Site};
use crate::event::{ClickEvent, EventKind};

/// Applies every active filter of `plan` to `event`; false when it is lost.
pub(crate) fn filter(
    plan: &[Planned],
    site: &Site,
    rng: &mut StdRng,
    event: &mut ClickEvent,
) -> bool {
    let t = event.time_ms;
    for p in plan {
        if t < p.start_ms || t > p.end_ms {
            continue;
        }
        match &p.effect {
            Effect::Suppress { page, keep } => {
                let hit = page
                    .as_deref()
                    .is_none_or(|pg| event.url.strip_prefix(SITE).is_some_and(|path| path == pg));
                if hit && !rng.random_bool(keep.clamp(0.0, 1.0)) {
                    return false;
                }
            }
            // The order never goes through. Dropping the event rather than turning it into
            // an error page view keeps every other page's traffic as it was.
            Effect::Funnel { keep }
                if event.kind == EventKind::Purchase && !rng.random_bool(keep.clamp(0.0, 1.0)) =>
            {
                return false;
            }
            Effect::CategoryOutage { category, mode } => {
                let path = event.url.strip_prefix(SITE).unwrap_or(&event.url);
                if site.category_of(path) == Some(*category) {
                    if *mode == OutageMode::NotFound && event.kind == EventKind::PageView {
                        event.url = format!("{SITE}/404");
                    } else {
                        // Lost page, or a click / cart on a page that did not load.
                        return false;
                    }
                }
            }
            Effect::DeviceCheckout { device }
                if matches!(event.kind, EventKind::Checkout | EventKind::Purchase)
                    && event.device.as_deref() == Some(*device) =>
            {
                return false;
            }
            Effect::RampDrop {
                drop_start_ms,
                drop_end_ms,
                keep,
                ..
            } if t >= *drop_start_ms
                && t <= *drop_end_ms
                && !rng.random_bool(keep.clamp(0.0, 1.0)) =>
            {
                return false;
            }
            _ => {}
        }
    }
    true
}
