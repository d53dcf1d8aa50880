//! The cast of one planned injection: the visitors its sessions come from (bot and fraud IPs,
//! agents, devices) and the labels that name them — the anomaly's label, and `surge` labels
//! for legitimate traffic (flash sales, newsletters, the slow ramp before a poisoned drop).

use rand::Rng;
use rand::rngs::StdRng;

use super::anomaly::{BotStyle, Effect, Item, OutageMode, Planned};
use super::labels::{Entity, Label, SURGE_KIND};
use super::session::{BOT_AGENTS, Visitor};
use super::site::ORIGIN as SITE;
use super::world::World;

/// A label under construction: times follow the events its sessions emit when `observed`.
#[derive(Debug)]
pub(crate) struct Open {
    pub(crate) label: Label,
    /// Times come from emitted events rather than from the plan.
    pub(crate) observed: bool,
}

/// Who an injection sends and what its labels say.
#[derive(Debug, Default)]
pub(crate) struct Cast {
    /// The anomaly's label (its sessions are recorded against it), if it is an anomaly.
    pub(crate) anomaly: Option<Open>,
    /// Legitimate traffic of the item, labelled `surge`.
    pub(crate) surges: Vec<Label>,
    /// Visitors of injected bot and fraud sessions (one per IP).
    pub(crate) visitors: Vec<Visitor>,
}

fn planned_label(p: &Planned, kind: &str, entities: Vec<Entity>, note: String) -> Label {
    Label {
        id: String::new(),
        kind: kind.to_owned(),
        variant: Some(p.variant.to_owned()),
        start_ms: p.start_ms,
        end_ms: p.end_ms,
        entities,
        magnitude: p.magnitude,
        note,
    }
}

/// Distinct host numbers of a /24 for `n` IPs.
fn hosts(rng: &mut StdRng, subnet: &str, n: u32) -> Vec<String> {
    let mut picked: Vec<u8> = Vec::new();
    while picked.len() < n.min(250) as usize {
        let h = rng.random_range(2..=254u8);
        if !picked.contains(&h) {
            picked.push(h);
        }
    }
    picked.iter().map(|h| format!("{subnet}.{h}")).collect()
}

/// Casts planned item `p`.
pub(crate) fn cast(rng: &mut StdRng, p: &Planned, world: &World) -> Cast {
    let page = |pg: &str| Entity::new("page", format!("{SITE}{pg}"));
    let site = || Entity::new("site", "*");
    let kind = match p.item {
        Item::Anomaly(kind, _) => kind.as_str(),
        Item::Surge(_) => SURGE_KIND,
    };
    let mut out = Cast::default();
    let mut observed = false;
    let mut entities = Vec::new();
    let note;
    match &p.effect {
        Effect::SiteRate { factor, boost, .. } => {
            entities.push(site());
            note = if kind == SURGE_KIND {
                format!("site x{factor:.1}, conversion boost {boost:.2}")
            } else {
                format!("site x{factor:.1}")
            };
        }
        Effect::Suppress { page: pg, keep } => {
            entities.push(match pg {
                Some(pg) => page(pg),
                None => site(),
            });
            note = format!("{} x{keep:.2}", pg.as_deref().unwrap_or("site"));
        }
        Effect::PageStream { pages, factor, .. } => {
            entities.extend(pages.iter().map(|pg| page(pg)));
            note = format!("{} x{factor:.1}", pages.join(" "));
        }
        Effect::Funnel { keep } => {
            entities.push(site());
            note = format!("purchases x{keep:.2}");
        }
        Effect::Bots { style, sessions } => {
            observed = true;
            let ip = Visitor::random_ip(rng);
            let agent = match style {
                BotStyle::Headless => BOT_AGENTS[0].to_owned(),
                _ => Visitor::random_agent(rng),
            };
            entities.push(Entity::new("ip", ip.clone()));
            out.visitors
                .push(Visitor::custom(rng, ip, agent, "desktop"));
            note = format!("{style:?} bot, {sessions} session(s)").to_lowercase();
        }
        Effect::Fraud {
            ips,
            per_minute,
            referrer,
        } => {
            observed = true;
            for _ in 0..*ips {
                let ip = Visitor::random_ip(rng);
                entities.push(Entity::new("ip", ip.clone()));
                let agent = Visitor::random_agent(rng);
                let device = if rng.random_bool(0.5) {
                    "desktop"
                } else {
                    "mobile"
                };
                out.visitors.push(Visitor::custom(rng, ip, agent, device));
            }
            entities.push(Entity::new("referrer", referrer.clone()));
            note = format!("{per_minute:.0} ad clicks/min from {ips} IP(s)");
        }
        Effect::CategoryOutage { category, mode } => {
            let name = world.site.categories[*category];
            entities.push(Entity::new("category", name));
            entities.extend(world.site.products_of(*category).iter().map(|pg| page(pg)));
            let what = match mode {
                OutageMode::Lost => "lost",
                OutageMode::NotFound => "answer /404",
            };
            note = format!("every product page of {name} {what}");
        }
        Effect::DeviceCheckout { device } => {
            entities.push(site());
            entities.push(Entity::new("device", *device));
            note = format!("checkout and purchase fail on {device}");
        }
        Effect::SlowFraud {
            subnet,
            ips,
            cap,
            referrer,
            ..
        } => {
            observed = true;
            for ip in hosts(rng, subnet, *ips) {
                entities.push(Entity::new("ip", ip.clone()));
                let agent = Visitor::random_agent(rng);
                let device = world.devices[rng.random_range(0..2)].0;
                out.visitors.push(Visitor::custom(rng, ip, agent, device));
            }
            entities.push(Entity::new("subnet", format!("{subnet}.0/24")));
            entities.push(Entity::new("referrer", referrer.clone()));
            note = format!("{ips} IPs of {subnet}.0/24, each at most {cap} ad clicks per 10 min");
        }
        Effect::Farm {
            subnet,
            ips,
            median_ms,
            cv,
        } => {
            observed = true;
            for ip in hosts(rng, subnet, *ips) {
                entities.push(Entity::new("ip", ip.clone()));
                let agent = Visitor::random_agent(rng);
                out.visitors
                    .push(Visitor::custom(rng, ip, agent, "desktop"));
            }
            entities.push(Entity::new("subnet", format!("{subnet}.0/24")));
            note = format!(
                "farm of {ips} IPs of {subnet}.0/24, gaps median {:.1} s, cv {cv:.2}",
                median_ms / 1000.0
            );
        }
        Effect::RampDrop {
            factor,
            drop_start_ms,
            drop_end_ms,
            keep,
        } => {
            // The ramp and the way back down are legitimate traffic: surges, so alerts on them
            // are counted as surge alerts; the drop between them is the anomaly.
            let ramp = |start_ms, end_ms, what: &str| Label {
                id: String::new(),
                kind: SURGE_KIND.to_owned(),
                variant: Some("slow-ramp".into()),
                start_ms,
                end_ms,
                entities: vec![site()],
                magnitude: *factor,
                note: format!("site ramps {what} x{factor:.2}"),
            };
            out.surges
                .push(ramp(p.start_ms, drop_start_ms - 1, "up to"));
            out.surges
                .push(ramp(drop_end_ms + 1, p.end_ms, "down from"));
            let mut label = planned_label(
                p,
                kind,
                vec![site()],
                format!("site x{keep:.2} after a ramp to x{factor:.2}"),
            );
            label.start_ms = *drop_start_ms;
            label.end_ms = *drop_end_ms;
            out.anomaly = Some(Open {
                label,
                observed: false,
            });
            return out;
        }
    }
    let mut label = planned_label(p, kind, entities, note);
    if observed {
        label.start_ms = i64::MAX;
        label.end_ms = i64::MIN;
    }
    if kind == SURGE_KIND {
        out.surges.push(label);
    } else {
        out.anomaly = Some(Open { label, observed });
    }
    out
}
