//! The `--anomalies` / `--surges` spec grammar: what to inject, as parsed from the command
//! line (the plan in `anomaly.rs` turns it into windows in simulated time).
//!
//! Grammar (documented in `docs/anomaly-labels.md`):
//! `SPEC := ITEM ("," ITEM)* | "none"`, `ITEM := (KIND ["/" VARIANT] | "all" | "extended")
//! [":" COUNT]`. Kinds and variants: `traffic-spike/page|site`,
//! `traffic-drop/page|site|category|category-404|after-ramp`,
//! `bot/regular|crawler|swarm|headless|farm`, `click-fraud[/ads|slow-subnet]`,
//! `funnel-drop[/checkout|device]`. `all` is the ten classic items (unchanged since issue #6),
//! `extended` the six added for issue #11; a kind without a variant gets a classic one.
//! Surges (labelled `surge`, not anomalies): `flash-sale`, `newsletter`, same suffix.

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

    /// The classic variants: what `all` expands to, and what the seed picks from when a spec
    /// names no variant (empty: the kind has one classic form).
    pub(super) fn variants(self) -> &'static [&'static str] {
        match self {
            Kind::TrafficSpike | Kind::TrafficDrop => &["page", "site"],
            Kind::Bot => &["regular", "crawler", "swarm", "headless"],
            Kind::ClickFraud | Kind::FunnelDrop => &[],
        }
    }

    /// The variants added for issue #11 (what `extended` expands to); only used when named.
    pub(super) fn extended_variants(self) -> &'static [&'static str] {
        match self {
            Kind::TrafficSpike => &[],
            Kind::TrafficDrop => &["category", "category-404", "after-ramp"],
            Kind::Bot => &["farm"],
            Kind::ClickFraud => &["slow-subnet"],
            Kind::FunnelDrop => &["device"],
        }
    }

    /// Every variant a spec may name: classic, the label name of a kind's one classic form,
    /// and extended.
    fn named_variants(self) -> Vec<&'static str> {
        let single: &[&str] = match self {
            Kind::ClickFraud => &["ads"],
            Kind::FunnelDrop => &["checkout"],
            _ => &[],
        };
        [self.variants(), single, self.extended_variants()].concat()
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

/// Every classic kind in every classic variant (`all`), in a fixed order.
fn classic_items() -> Vec<Item> {
    Kind::ALL
        .iter()
        .flat_map(|k| {
            let v = k.variants();
            if v.is_empty() {
                vec![Item::Anomaly(*k, None)]
            } else {
                v.iter().map(|v| Item::Anomaly(*k, Some(*v))).collect()
            }
        })
        .collect()
}

/// Every extended variant once (`extended`), in a fixed order.
fn extended_items() -> Vec<Item> {
    Kind::ALL
        .iter()
        .flat_map(|k| {
            k.extended_variants()
                .iter()
                .map(|v| Item::Anomaly(*k, Some(*v)))
        })
        .collect()
}

/// Parses an `--anomalies` spec.
pub fn parse_anomalies(spec: &str) -> Result<Vec<Item>, SpecError> {
    let spec = spec.trim();
    if spec.is_empty() || spec == "none" {
        return Ok(Vec::new());
    }
    let mut items = Vec::new();
    for raw in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, count) = split_count(raw)?;
        let group = match name {
            "all" => Some(classic_items()),
            "extended" => Some(extended_items()),
            _ => None,
        };
        if let Some(group) = group {
            for _ in 0..count {
                items.extend(group.iter().cloned());
            }
            continue;
        }
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
            Some(v) => {
                let named = kind.named_variants();
                Some(*named.iter().find(|known| **known == v).ok_or_else(|| {
                    SpecError::Unknown {
                        what: "variant",
                        name: format!("{kind_name}/{v}"),
                        known: named.join(", "),
                    }
                })?)
            }
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
        let extended = parse_anomalies("extended").unwrap();
        assert_eq!(extended.len(), 6);
        assert!(extended.contains(&Item::Anomaly(Kind::Bot, Some("farm"))));
        assert_eq!(parse_anomalies("all,extended:2").unwrap().len(), 22);
        assert_eq!(
            parse_anomalies("click-fraud/ads,funnel-drop/device").unwrap(),
            vec![
                Item::Anomaly(Kind::ClickFraud, Some("ads")),
                Item::Anomaly(Kind::FunnelDrop, Some("device")),
            ]
        );
        assert!(parse_anomalies("none").unwrap().is_empty());
        let e = parse_anomalies("bot/robot").unwrap_err().to_string();
        assert!(e.contains("bot/robot") && e.contains("swarm"), "{e}");
        assert!(parse_anomalies("spike").is_err());
        assert!(parse_anomalies("bot:0").is_err());
        assert_eq!(parse_surges("all").unwrap().len(), 2);
        assert!(parse_surges("black-friday").is_err());
    }
}
