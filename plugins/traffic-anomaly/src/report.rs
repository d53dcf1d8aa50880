//! Naming a closed bucket's confirmed episodes in the site's tree, and the alert each one
//! becomes.

use std::collections::HashMap;

use clickwatch_sdk::prelude::*;

use super::tree::{Node, NodeId};
use super::{SITE, TrafficAnomaly};
use crate::series::{Direction, Finding};
use crate::{levels, surge};

impl TrafficAnomaly {
    /// Names each confirmed episode once: at the highest level that moved the same way and is
    /// not merely carried by one of its children.
    pub(crate) fn report(&self, _bucket: i64, secs: u32, nodes: &[Node], out: &mut Output) {
        let (dominance, drop_dominance) = (self.settings.dominance, self.settings.drop_dominance);
        // Whether a child moved much more than its ancestor: then the ancestor's move is that
        // child's doing (extra visitors landing on one page lift the whole site), and the child
        // is the anomaly to name. Drops compare the share lost, not ratios: near zero, ratios
        // of ratios are noise.
        let dominant = |dir: Direction, child: f64, ancestor: f64| match dir {
            Direction::Spike => child >= dominance * ancestor,
            Direction::Drop => (1.0 - child) >= drop_dominance * (1.0 - ancestor),
        };
        let index: HashMap<&NodeId, usize> =
            nodes.iter().enumerate().map(|(i, n)| (&n.id, i)).collect();
        let ancestors = |i: usize| {
            let mut chain = Vec::new();
            let mut at = nodes[i].parent.as_ref();
            if at.is_none() && nodes[i].id != NodeId::Site {
                at = Some(&NodeId::Site);
            }
            while let Some(p) = at {
                let Some(&j) = index.get(p) else { break };
                chain.push(j);
                at = nodes[j].parent.as_ref();
                if at.is_none() && nodes[j].id != NodeId::Site {
                    at = Some(&NodeId::Site);
                }
            }
            chain
        };
        let mut explained = vec![false; nodes.len()];
        let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, n) in nodes.iter().enumerate() {
            let chain = ancestors(i);
            if let Some(&p) = chain.first() {
                children.entry(p).or_default().push(i);
            }
            let Some(d) = n.dir else { continue };
            for j in chain {
                if nodes[j].dir == Some(d) && dominant(d, n.ratio, nodes[j].ratio) {
                    explained[j] = true;
                }
            }
        }
        // Error pages rising: evidence of breakage for the drops reported in this bucket.
        let errors: Vec<&str> = nodes
            .iter()
            .filter_map(|n| match &n.id {
                NodeId::Page(u) if n.dir == Some(Direction::Spike) && levels::is_error_page(u) => {
                    Some(u.as_str())
                }
                _ => None,
            })
            .collect();
        for (i, n) in nodes.iter().enumerate() {
            let Some(f) = &n.finding else { continue };
            if explained[i] {
                continue;
            }
            let carried = ancestors(i).into_iter().any(|j| {
                let a = &nodes[j];
                a.dir == Some(f.dir)
                    && (a.alertable || f.dir == Direction::Spike)
                    && !dominant(f.dir, n.ratio, a.ratio)
            });
            if carried {
                continue;
            }
            match &n.id {
                // A rise of an error page is a symptom (of pages now answering it), not demand,
                // and its fall is good news.
                NodeId::Page(u) if levels::is_error_page(u) => continue,
                // Levels are watched for outages spread over many pages. A rise of one is
                // one crawler walking its pages, or demand that its landing page shows.
                NodeId::Group(_) if f.dir == Direction::Spike => continue,
                _ => {}
            }
            let mut affected: Vec<(String, f64, f64)> = children
                .get(&i)
                .into_iter()
                .flatten()
                .map(|&c| {
                    let name = match &nodes[c].id {
                        NodeId::Page(u) | NodeId::Group(u) => u.clone(),
                        NodeId::Site => SITE.to_owned(),
                    };
                    (name, nodes[c].count, nodes[c].expected)
                })
                .collect();
            let moved = |(_, c, e): &(String, f64, f64)| match f.dir {
                Direction::Drop => e - c,
                Direction::Spike => c - e,
            };
            affected.sort_by(|a, b| moved(b).total_cmp(&moved(a)).then_with(|| a.0.cmp(&b.0)));
            affected.truncate(3);
            let naming = Naming::of(&n.id);
            let surge = (n.id == NodeId::Site && f.dir == Direction::Spike)
                .then(|| self.state.conversion.surge(self.settings.surge_tail));
            let error_pages = if f.dir == Direction::Drop {
                &errors[..]
            } else {
                &[]
            };
            out.alert(alert(
                f,
                &naming,
                secs,
                &affected,
                surge,
                error_pages,
                Proof::Bucket,
            ));
        }
    }
}

/// What an alert is about.
pub(crate) struct Naming {
    pub(crate) entity_type: &'static str,
    pub(crate) entity: String,
    /// The level's pattern (`/p/books-*`), for a level.
    pub(crate) level: Option<String>,
}

impl Naming {
    /// What a node's alert is about.
    pub(crate) fn of(id: &NodeId) -> Naming {
        match id {
            NodeId::Site => Naming {
                entity_type: "site",
                entity: SITE.to_owned(),
                level: None,
            },
            NodeId::Group(level) => {
                let (entity_type, entity) = levels::name(level);
                Naming {
                    entity_type,
                    entity,
                    level: Some(level.clone()),
                }
            }
            NodeId::Page(url) => Naming {
                entity_type: "page",
                entity: url.clone(),
                level: None,
            },
        }
    }
}

/// Which test proved a finding: the bucket test when a bucket closed, or the sequential drop
/// test between closes (named in the alert's details as `test`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proof {
    Bucket,
    Sequential,
}

impl Proof {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Proof::Bucket => "bucket",
            Proof::Sequential => "sequential",
        }
    }
}

// The finding, what it is about and the evidence beside it; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
pub(crate) fn alert(
    f: &Finding,
    naming: &Naming,
    bucket_secs: u32,
    affected: &[(String, f64, f64)],
    surge: Option<surge::Verdict>,
    error_pages: &[&str],
    proof: Proof,
) -> Alert {
    let ratio = f.observed / f.expected.max(0.5);
    let is_surge = surge.as_ref().is_some_and(|v| v.surge);
    let (kind, word) = match f.dir {
        Direction::Spike if is_surge => ("traffic-surge", "above"),
        Direction::Spike => ("traffic-spike", "above"),
        Direction::Drop => ("traffic-drop", "below"),
    };
    let severity = match naming.entity_type {
        _ if is_surge => Severity::Info,
        "site" => Severity::Critical,
        _ => Severity::Warning,
    };
    let subject = match (naming.entity_type, &naming.level) {
        ("site", _) => "site-wide traffic".to_owned(),
        (_, Some(level)) => format!("traffic under {level}"),
        _ => format!("traffic on {}", naming.entity),
    };
    let most: Vec<String> = affected
        .iter()
        .map(|(name, c, e)| format!("{name} ({c:.0} vs {e:.1})"))
        .collect();
    let mut message = format!(
        "{subject} {ratio:.2}x the expected rate ({:.0} vs {:.1} events per {bucket_secs} s), \
         {word} baseline for {} buckets",
        f.observed, f.expected, f.buckets
    );
    if proof == Proof::Sequential {
        message.push_str(" (sequential test)");
    }
    if naming.level.is_some() && !most.is_empty() {
        message.push_str(&format!("; most affected: {}", most.join(", ")));
    }
    if let Some(v) = &surge
        && v.surge
    {
        message.push_str(&format!(
            "; conversion share {:.2}x its baseline: a demand surge",
            v.ratio
        ));
    }
    let children: Vec<serde_json::Value> = affected
        .iter()
        .map(|(name, c, e)| serde_json::json!({"name": name, "observed": c, "expected": e}))
        .collect();
    Alert::new(kind, naming.entity_type, &naming.entity)
        .severity(severity)
        .window(f.start_ms, f.time_ms)
        .score(f.z.abs())
        .message(message)
        .details(serde_json::json!({
            "observed": f.observed,
            "expected": f.expected,
            "ratio": ratio,
            "z": f.z,
            "buckets": f.buckets,
            "bucket_secs": bucket_secs,
            "level": naming.level,
            "most_affected": children,
            "conversion_ratio": surge.as_ref().map(|v| v.ratio),
            "conversion_drop_tail": surge.as_ref().map(|v| v.tail),
            "error_pages_rising": error_pages,
            "test": proof.name(),
        }))
}
