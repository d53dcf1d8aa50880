//! Closing a bucket: the site's and every segment's funnel judged, the drop named at the
//! segment that explains it or at the site, and the baselines learned.

use clickwatch_sdk::prelude::*;

use crate::FunnelDrop;
use crate::funnel::{self, Series};
use crate::segment;

impl FunnelDrop {
    pub(crate) fn close_bucket(&mut self, bucket: i64, counts: [u32; 4], out: &mut Output) {
        let len = self.bucket_ms();
        let s = &self.settings;
        let st = &mut self.state;
        let mut seg_counts = vec![[0u32; 4]; st.segments.len()];
        st.open_segments.retain(|&(b, slot, c)| {
            if b == bucket
                && let Some(x) = seg_counts.get_mut(slot as usize)
            {
                *x = c;
            }
            b > bucket
        });
        let site_sums = st.site.push(counts, s.window_buckets);
        let seg_sums: Vec<[u64; 4]> = st
            .segments
            .iter_mut()
            .zip(&seg_counts)
            .map(|(g, c)| g.series.push(*c, s.window_buckets))
            .collect();
        // Traffic far below normal (an outage) cuts sessions short: conversions fall for a
        // reason that is not the funnel's, so nothing is judged until it is back.
        let traffic = &st.site.transitions[0];
        let sessions_ok = !traffic.initialised
            || site_sums[0] as f64
                >= s.min_traffic_ratio * traffic.den * st.site.window.len() as f64;
        let traffic_ok = st.traffic.close(bucket, s) && sessions_ok;
        let warmup = s.warmup_buckets;
        for k in 0..3 {
            if !traffic_ok {
                break;
            }
            // Bonferroni: every series with a baseline and entries this window is a test.
            let judged = |series: &Series, sums: &[u64; 4]| {
                series.learned >= warmup
                    && series.transitions[k].baseline().is_some()
                    && sums[k] > 0
            };
            let tests = usize::from(judged(&st.site, &site_sums))
                + st.segments
                    .iter()
                    .zip(&seg_sums)
                    .filter(|(g, sums)| judged(&g.series, sums))
                    .count();
            let site_learned = st.site.learned;
            // The site is the primary hypothesis, tested alone; the segments are a family and
            // share one false-alarm budget (Bonferroni over the segments judged).
            let segment_tests = tests.saturating_sub(usize::from(judged(&st.site, &site_sums)));
            let site_t = &mut st.site.transitions[k];
            let threshold = funnel::sequential_threshold(s);
            let proven = site_t.sequential(
                bucket,
                counts[k],
                counts[k + 1],
                site_learned >= warmup,
                threshold,
                s,
            );
            let site_finding = site_t
                .judge(
                    bucket,
                    len,
                    site_learned >= warmup,
                    site_sums[k],
                    site_sums[k + 1],
                    1,
                    site_learned,
                    s.min_window_volume,
                    s,
                )
                .or_else(|| {
                    // The sequential test proved what the window does not show yet. Judged
                    // with the segments' floor of entries in the window, not the site
                    // window's: the test's evidence already counts the entries, and a quiet
                    // site's break would otherwise never be alerted (it was proven, but never
                    // reached `min_window_volume` checkouts in five minutes).
                    if !proven {
                        return None;
                    }
                    site_t.sequential_finding(
                        bucket,
                        len,
                        site_sums[k],
                        site_sums[k + 1],
                        s.min_segment_volume,
                    )
                });
            let site_seq = st.site.transitions[k].seq;
            // The segments' sequential tests share the site's budget: threshold + ln(tests).
            let segment_threshold = threshold + (segment_tests.max(1) as f64).ln();
            let mut found = Vec::new();
            for (i, (g, sums)) in st.segments.iter_mut().zip(&seg_sums).enumerate() {
                let learned = g.series.learned;
                let t = &mut g.series.transitions[k];
                // A small segment's break (a tenth of the sessions) rarely shows in one
                // window; its evidence adds up over the buckets.
                let c = seg_counts[i];
                let proven = t.sequential(
                    bucket,
                    c[k],
                    c[k + 1],
                    learned >= warmup,
                    segment_threshold,
                    s,
                );
                let finding = t
                    .judge(
                        bucket,
                        len,
                        learned >= warmup,
                        sums[k],
                        sums[k + 1],
                        segment_tests,
                        learned,
                        s.min_segment_volume,
                        s,
                    )
                    .or_else(|| {
                        // Not while the site's own evidence is half-way to proof: a site-wide
                        // break shows in a segment too, and the site, with more entries,
                        // proves it a bucket or two later (the window's remainder check
                        // cannot tell, its window has not filled with the break yet).
                        if !proven || site_seq >= 0.5 * threshold {
                            return None;
                        }
                        t.sequential_finding(
                            bucket,
                            len,
                            sums[k],
                            sums[k + 1],
                            s.min_segment_volume,
                        )
                    });
                if let Some(f) = finding {
                    found.push((i, f));
                }
            }
            if st.incident[k] {
                let active = st.site.transitions[k].episode.is_some()
                    || st
                        .segments
                        .iter()
                        .any(|g| g.series.transitions[k].episode.is_some());
                st.incident[k] = active;
                // What the series see during an alerted incident is the incident's: no
                // evidence carries over to be "proven" after it.
                for g in &mut st.segments {
                    g.series.transitions[k].seq = 0.0;
                }
                continue;
            }
            // The segment that best explains the drop: the rest of the site converts closest
            // to its own baseline without it.
            let site_t = &st.site.transitions[k];
            let remainder = |i: usize| {
                let g = &st.segments[i];
                let t = &g.series.transitions[k];
                let n = site_sums[k].saturating_sub(seg_sums[i][k]) as f64;
                let x = site_sums[k + 1].saturating_sub(seg_sums[i][k + 1]) as f64;
                let (den, num) = (site_t.den - t.den, site_t.num - t.num);
                if n < f64::from(s.min_segment_volume) || den <= 0.0 || num <= 0.0 {
                    return 0.0;
                }
                (x / n) / (num / den)
            };
            let best = found
                .iter()
                .map(|(i, f)| (*i, f, remainder(*i)))
                .max_by(|a, b| a.2.total_cmp(&b.2));
            // A segment already drop-like but not yet confirmed that explains the site's drop
            // (smaller, so slower to prove): wait for it rather than alert the site.
            let pending = site_finding.is_some()
                && best.is_none_or(|b| b.2 < s.remainder_ratio)
                && st.site.transitions[k]
                    .episode
                    .as_ref()
                    .is_some_and(|e| e.buckets <= s.confirm_buckets + s.window_buckets)
                && (0..st.segments.len()).any(|i| {
                    let t = &st.segments[i].series.transitions[k];
                    let low = t.baseline().is_some_and(|p0| {
                        let (n, x) = (seg_sums[i][k], seg_sums[i][k + 1]);
                        n > 0 && (x as f64 / n as f64) <= s.drop_ratio * p0
                    });
                    low && t.episode.as_ref().is_none_or(|e| !e.alerted)
                        && remainder(i) >= s.remainder_ratio
                });
            if pending {
                if let Some(e) = st.site.transitions[k].episode.as_mut() {
                    e.alerted = false;
                }
                continue;
            }
            let alert = match (best, &site_finding) {
                // Named only when the rest of the site converts near its own baseline without
                // it, also before the site's own drop is confirmed: a segment that confirms
                // first while everyone's conversion fell is part of the site's incident, and the
                // site's alert follows.
                (Some((i, f, rem)), _) if rem >= s.remainder_ratio => {
                    let g = &st.segments[i];
                    Some(funnel::segment_alert(
                        k,
                        f,
                        s.window_buckets,
                        segment::DIMENSIONS[g.dim as usize],
                        &g.value,
                        rem,
                    ))
                }
                (_, Some(f)) => {
                    // Name the most affected segments.
                    let mut worst: Vec<_> = st
                        .segments
                        .iter()
                        .zip(&seg_sums)
                        .filter_map(|(g, sums)| {
                            let p0 = g.series.transitions[k].baseline()?;
                            (sums[k] >= u64::from(s.min_segment_volume) && p0 > 0.0).then(|| {
                                let ratio = sums[k + 1] as f64 / sums[k] as f64 / p0;
                                (ratio, g, sums[k], sums[k + 1])
                            })
                        })
                        .collect();
                    worst.sort_by(|a, b| a.0.total_cmp(&b.0));
                    let named: Vec<_> = worst
                        .iter()
                        .take(5)
                        .map(|(ratio, g, n, x)| {
                            serde_json::json!({
                                "dimension": segment::DIMENSIONS[g.dim as usize],
                                "segment": g.value,
                                "ratio": ratio,
                                "entered": n,
                                "converted": x,
                            })
                        })
                        .collect();
                    Some(funnel::alert(k, f, s.window_buckets, named))
                }
                _ => None,
            };
            if let Some(a) = alert {
                out.alert(a);
                st.incident[k] = true;
                // Every series now in an episode belongs to this incident.
                for t in std::iter::once(&mut st.site.transitions[k])
                    .chain(st.segments.iter_mut().map(|g| &mut g.series.transitions[k]))
                {
                    if let Some(e) = t.episode.as_mut() {
                        e.alerted = true;
                    }
                    t.seq = 0.0;
                }
            }
        }
        let learn = |series: &mut Series, c: &[u32; 4]| {
            for (k, t) in series.transitions.iter_mut().enumerate() {
                t.learn_unless_in_episode(c[k], c[k + 1], s.baseline_alpha);
            }
            series.learned = series.learned.saturating_add(1);
        };
        learn(&mut st.site, &counts);
        for (g, c) in st.segments.iter_mut().zip(&seg_counts) {
            learn(&mut g.series, c);
        }
    }
}
