//! The sequential drop test between bucket closes: each watched series's Poisson CUSUM, and
//! the naming of the drops it proves in the site's tree.

use clickwatch_sdk::prelude::*;

use super::report::{Naming, Proof, alert};
use super::tree::NodeId;
use super::{MIN_PARTIAL_EXPECTED, SITE, TrafficAnomaly};
use crate::series::{Direction, Finding, Series};

impl TrafficAnomaly {
    /// The common factor (see [`Self::common_factor`]) over the elapsed `frac` of the open
    /// bucket.
    pub(crate) fn partial_factor(&self, bucket: i64, frac: f64) -> f64 {
        // Within a bucket most pages expect less than an event: their ratios are 0 or large,
        // and a median of them says nothing. Only pages expecting a few count.
        self.median_ratio(bucket, frac, MIN_PARTIAL_EXPECTED)
    }

    /// Advances the sequential drop test of every watched series to `until` in the open bucket
    /// starting at `bucket`, and alerts the drops it proves, named in the site's tree as the
    /// bucket report names them: not a node whose ancestor is moving down (naming a child
    /// that lost more is left to the bucket report), nor one whose drop one child carries.
    pub(crate) fn sequential(&mut self, bucket: i64, until: i64, out: &mut Output) {
        let r = self.page_rules;
        if !r.seq_threshold.is_finite() || self.watched.is_empty() {
            return;
        }
        let mut crossed = Vec::new();
        let watched = std::mem::take(&mut self.watched);
        for id in &watched {
            if let Some(s) = self.series_mut(id)
                && s.first_bucket_ms <= bucket
                && s.advance_drop_test(bucket, until, &r)
                    .is_some_and(|x| x >= r.seq_threshold)
            {
                crossed.push(id.clone());
            }
        }
        self.watched = watched;
        if crossed.is_empty() {
            return;
        }
        let len = self.bucket_ms();
        let frac = ((until - bucket) as f64 / len as f64).clamp(0.0, 1.0);
        let factor = self.partial_factor(bucket, frac).min(1.0);
        let drop_dominance = self.settings.drop_dominance;
        let moving_cut = (1.0 + r.drop_ratio) / 2.0;
        let moving = |s: &Series, ratio: f64| {
            s.episode.as_ref().is_some_and(|e| e.dir == Direction::Drop) || ratio <= moving_cut
        };
        for id in crossed {
            let Some(s) = self.series(&id) else { continue };
            // How the node's ancestors moved meanwhile, each over its own excursion (where its
            // drop, if any, began): only an excursion holding at least as many expected events
            // as the node's own counts (a shorter one is a blip of noise). The node's evidence
            // must hold against the lowest of them too: a page is named only when it falls
            // apart from its parents, not when it follows the site down (the site, 10 times
            // busier, may take longer to prove its own drop when its scale is wide).
            let parents = self
                .ancestors_of(&id)
                .iter()
                .filter_map(|a| self.series(a))
                .filter(|a| a.seq.statistic > 0.0 && a.seq.expected >= s.seq.expected)
                .map(|a| ((a.seq.observed + 1.0) / (a.seq.expected + 1.0)).min(1.0))
                .fold(1.0_f64, f64::min);
            let factor = factor.min(parents);
            // The same evidence against the baseline times the common factor: a drop every
            // page shares is no page's (or level's) drop.
            let shared = id != NodeId::Site
                && s.seq.statistic_scaled(factor, s.dispersion(), r.rho) < r.seq_threshold;
            let ratio = s.recent_ratio(bucket, frac);
            let carried = self.ancestors_of(&id).iter().any(|a| {
                self.series(a).is_some_and(|a| {
                    let ra = a.recent_ratio(bucket, frac);
                    // Within a bucket, ratios over windows of different starts are too
                    // noisy to tell a child that lost more: any ancestor moving down carries
                    // the drop, and naming a child is left to the bucket report.
                    a.holt() >= r.min_drop_baseline && moving(a, ra)
                })
            });
            let children = self.children_of(&id);
            let explained = children.iter().any(|c| {
                self.series(c).is_some_and(|c| {
                    // Only a child busy enough to be alerted itself can take the drop over.
                    let rc = c.recent_ratio(bucket, frac);
                    c.holt() >= r.min_drop_baseline
                        && moving(c, rc)
                        && (1.0 - rc) >= drop_dominance * (1.0 - ratio)
                })
            });
            if shared || carried || explained {
                if let Some(s) = self.series_mut(&id) {
                    if shared && !carried && !explained {
                        // Part of the move is every page's: keep only the evidence beyond it.
                        let phi = s.dispersion();
                        s.seq.rescale(factor, phi, r.rho);
                    } else {
                        // The evidence is another node's: start over.
                        s.seq.reset();
                    }
                }
                continue;
            }
            let mut affected: Vec<(String, f64, f64)> = children
                .iter()
                .filter_map(|c| {
                    let (count, expected) = self.series(c)?.recent(bucket, frac);
                    let name = match c {
                        NodeId::Page(u) | NodeId::Group(u) => u.clone(),
                        NodeId::Site => SITE.to_owned(),
                    };
                    Some((name, count, expected))
                })
                .collect();
            affected.sort_by(|a, b| {
                (b.2 - b.1)
                    .total_cmp(&(a.2 - a.1))
                    .then_with(|| a.0.cmp(&b.0))
            });
            affected.truncate(3);
            let naming = Naming::of(&id);
            // Reported per bucket, like the bucket test's findings.
            let span = (until - s.seq.start_ms).max(1) as f64;
            let per_bucket = len as f64 / span;
            let (o, e) = (s.seq.observed, s.seq.expected);
            let finding = Finding {
                dir: Direction::Drop,
                start_ms: s.seq.start_ms,
                time_ms: until,
                observed: o * per_bucket,
                expected: e * per_bucket,
                z: (o - e) / (s.dispersion() * e).max(1e-9).sqrt(),
                buckets: (span / len as f64).ceil() as u32,
            };
            out.alert(alert(
                &finding,
                &naming,
                self.settings.bucket_secs,
                &affected,
                None,
                &[],
                Proof::Sequential,
            ));
            if let Some(s) = self.series_mut(&id) {
                s.seq.reset();
                match &mut s.episode {
                    Some(e) if e.dir == Direction::Drop => e.alerted = true,
                    other => {
                        *other = Some(crate::series::Episode {
                            dir: Direction::Drop,
                            start_ms: bucket,
                            buckets: 0,
                            strong: 0,
                            alerted: true,
                            sum_dev: 0.0,
                            sum_var: 0.0,
                            sum_ref: 0.0,
                        })
                    }
                }
            }
        }
    }
}
