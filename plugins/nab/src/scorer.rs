//! NAB's scoring rules, implemented from the NAB whitepaper (Lavin & Ahmad 2015) and the rules
//! in the corpus README: the probationary period, the scaled sigmoid over and after label
//! windows (in-window credit normalised by its value at the window start), the profile weights, normalisation against the null and perfect detectors, and the
//! corpus-wide threshold sweep the scoreboard uses.
//!
//! A detection is a scored row whose anomaly score is at or above the threshold. In a window
//! only the earliest detection counts, weighted `tp_weight × σ(position)`, where position runs
//! from −1 at the window's first row to about 0 at its last; a window without one costs
//! `fn_weight`. A detection outside every window costs `fp_weight × σ(position)`, position
//! measured in window widths after the preceding window (just after a window is almost free,
//! three widths on it is a full false positive; before the first window it is always full).

use crate::corpus::{Corpus, Profile, Series};

/// Share of each series (at most 15 % of 5000 rows) that is not scored.
pub const PROBATION_SHARE: f64 = 0.15;

/// NAB's scaled sigmoid: `2σ(−5x) − 1`, and −1 beyond three widths past a window.
pub fn scaled_sigmoid(x: f64) -> f64 {
    if x > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * x).exp()) - 1.0
    }
}

/// Rows at the start of a series of `len` rows that are not scored.
pub fn probation_rows(len: usize) -> usize {
    let share = (PROBATION_SHARE * len as f64).floor();
    share.min(PROBATION_SHARE * 5000.0) as usize
}

/// What one row of a series is worth to a detection there, before profile weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Row {
    /// In the probationary period: ignored.
    Probation,
    /// In window `window` (index within the series): a detection earns `tp_weight × value`.
    Window {
        /// Window index within the series.
        window: usize,
        /// The scaled sigmoid of the row's position in the window over its value at the
        /// window's start, in (0, 1].
        value: f64,
    },
    /// Outside every window: a detection costs `fp_weight × value`, `value` in [−1, 0).
    Outside {
        /// The scaled sigmoid of the distance after the preceding window (−1 before any).
        value: f64,
    },
}

/// The worth of every row of `series`.
pub fn rows(series: &Series) -> Vec<Row> {
    let n = series.values.len();
    let probation = probation_rows(n);
    let mut out = Vec::with_capacity(n);
    let mut next = 0;
    // Last row and width of the window most recently left.
    let mut previous: Option<(usize, usize)> = None;
    for i in 0..n {
        while next < series.windows.len() && series.windows[next].1 < i {
            let (s, e) = series.windows[next];
            previous = Some((e, e - s + 1));
            next += 1;
        }
        let row = match series.windows.get(next) {
            Some(&(s, e)) if s <= i => {
                let width = (e - s + 1) as f64;
                let position = -((e - i + 1) as f64) / width;
                Row::Window {
                    window: next,
                    // Normalised so that a detection on the window's first row earns exactly
                    // `tp_weight`, which is what the perfect detector is credited with.
                    value: scaled_sigmoid(position) / scaled_sigmoid(-1.0),
                }
            }
            _ => match previous {
                None => Row::Outside { value: -1.0 },
                Some((end, width)) => {
                    let past = (i - end) as f64 / (width.saturating_sub(1).max(1)) as f64;
                    Row::Outside {
                        value: scaled_sigmoid(past),
                    }
                }
            },
        };
        out.push(if i < probation { Row::Probation } else { row });
    }
    out
}

/// Counts and raw score of one series (or the corpus) at one threshold.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    /// Profile-weighted raw score.
    pub raw: f64,
    /// Windows detected.
    pub tp: usize,
    /// Windows missed.
    pub fn_: usize,
    /// Detections outside windows.
    pub fp: usize,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.raw += other.raw;
        self.tp += other.tp;
        self.fn_ += other.fn_;
        self.fp += other.fp;
    }
}

/// Scores one series at `threshold`. With `per_row`, also the contribution of every row (NAB's
/// `S(t)` column: a window's credit or cost sits on its first scored row).
pub fn score_series(
    series: &Series,
    scores: &[f64],
    threshold: f64,
    profile: &Profile,
    mut per_row: Option<&mut Vec<f64>>,
) -> Tally {
    let kinds = rows(series);
    let mut best: Vec<Option<(usize, f64)>> = vec![None; series.windows.len()];
    let mut first_row: Vec<Option<usize>> = vec![None; series.windows.len()];
    let mut tally = Tally::default();
    if let Some(p) = per_row.as_deref_mut() {
        p.clear();
        p.resize(kinds.len(), 0.0);
    }
    for (i, kind) in kinds.iter().enumerate() {
        let detected = scores.get(i).is_some_and(|&s| s >= threshold);
        match *kind {
            Row::Probation => {}
            Row::Window { window, value } => {
                if let Some(f) = first_row.get_mut(window) {
                    f.get_or_insert(i);
                }
                if detected && let Some(b) = best.get_mut(window) {
                    b.get_or_insert((i, value));
                }
            }
            Row::Outside { value } => {
                if detected {
                    let cost = profile.fp_weight * value;
                    tally.raw += cost;
                    tally.fp += 1;
                    if let Some(p) = per_row.as_deref_mut() {
                        p[i] = cost;
                    }
                }
            }
        }
    }
    for (w, b) in best.iter().enumerate() {
        // A window wholly inside the probationary period has no scored row: NAB still counts it
        // against the null and perfect detectors, so it counts as missed here too.
        let (row, part) = match *b {
            Some((_, value)) => {
                tally.tp += 1;
                (first_row[w], profile.tp_weight * value)
            }
            None => {
                tally.fn_ += 1;
                (first_row[w], -profile.fn_weight)
            }
        };
        tally.raw += part;
        if let (Some(p), Some(i)) = (per_row.as_deref_mut(), row) {
            p[i] = part;
        }
    }
    tally
}

/// Scores the corpus at one threshold; `scores[k]` belongs to `corpus.series[k]`.
pub fn score_corpus(
    corpus: &Corpus,
    scores: &[Vec<f64>],
    threshold: f64,
    profile: &Profile,
) -> Tally {
    let mut total = Tally::default();
    for (series, s) in corpus.series.iter().zip(scores) {
        total.add(score_series(series, s, threshold, profile, None));
    }
    total
}

/// `100 × (raw − null) / (perfect − null)`: the null detector misses every window, the perfect
/// one earns the full `tp_weight` on each.
pub fn normalise(raw: f64, windows: usize, profile: &Profile) -> f64 {
    let null = -profile.fn_weight * windows as f64;
    let perfect = profile.tp_weight * windows as f64;
    100.0 * (raw - null) / (perfect - null)
}

/// The threshold that maximises the corpus raw score for `profile`, and that score, found by
/// sweeping every distinct anomaly score from the highest down (as the scoreboard does).
/// Among equal scores the highest threshold wins.
pub fn optimise(corpus: &Corpus, scores: &[Vec<f64>], profile: &Profile) -> (f64, f64) {
    let mut points: Vec<(f64, usize, Row)> = Vec::new();
    let mut windows = 0;
    for (series, s) in corpus.series.iter().zip(scores) {
        for (i, kind) in rows(series).into_iter().enumerate() {
            let score = s.get(i).copied().unwrap_or(f64::NAN);
            if kind != Row::Probation && score.is_finite() {
                points.push((score, windows, kind));
            }
        }
        windows += series.windows.len();
    }
    points.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut best_per_window = vec![-profile.fn_weight; windows];
    let mut total = -profile.fn_weight * windows as f64;
    let (mut best_threshold, mut best_raw) = (f64::INFINITY, total);
    let mut k = 0;
    while k < points.len() {
        let threshold = points[k].0;
        while k < points.len() && points[k].0 == threshold {
            match points[k].2 {
                Row::Window { window, value } => {
                    let slot = &mut best_per_window[points[k].1 + window];
                    let tp = profile.tp_weight * value;
                    if tp > *slot {
                        total += tp - *slot;
                        *slot = tp;
                    }
                }
                Row::Outside { value } => total += profile.fp_weight * value,
                Row::Probation => {}
            }
            k += 1;
        }
        if total > best_raw {
            best_raw = total;
            best_threshold = threshold;
        }
    }
    (best_threshold, best_raw)
}
