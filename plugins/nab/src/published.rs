//! A published detector's output as NAB ships it (`results/<detector>/<family>/<detector>_<file>`):
//! its anomaly scores and the per-row score contributions `S(t)` per profile, to check the
//! scorer against.

use std::path::Path;

use crate::corpus::{Corpus, PROFILE_NAMES};
use crate::error::{NabError, format_error, read};

/// One published result file.
#[derive(Debug, Clone)]
pub struct Published {
    /// The detector's anomaly score per row.
    pub scores: Vec<f64>,
    /// `S(t)` per row, per profile in [`PROFILE_NAMES`] order.
    pub contributions: [Vec<f64>; 3],
}

/// Reads `detector`'s published output for every series of `corpus`, in series order.
pub fn load(corpus: &Corpus, detector: &str) -> Result<Vec<Published>, NabError> {
    corpus
        .series
        .iter()
        .map(|s| {
            let (family, file) = s.name.split_once('/').unwrap_or(("", &s.name));
            let path = corpus
                .dir
                .join("results")
                .join(detector)
                .join(family)
                .join(format!("{detector}_{file}"));
            load_file(&path, s.values.len())
        })
        .collect()
}

fn load_file(path: &Path, rows: usize) -> Result<Published, NabError> {
    let text = read(path)?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| format_error(path, format!("no column {name}")))
    };
    let score_col = col("anomaly_score")?;
    let mut s_cols = [0; 3];
    for (slot, profile) in s_cols.iter_mut().zip(PROFILE_NAMES) {
        *slot = col(&format!("S(t)_{profile}"))?;
    }
    let mut scores = Vec::with_capacity(rows);
    let mut contributions: [Vec<f64>; 3] = Default::default();
    for (n, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split(',').collect();
        let num = |c: usize| {
            cells
                .get(c)
                .and_then(|v| v.trim().parse::<f64>().ok())
                .ok_or_else(|| format_error(path, format!("line {}: bad number", n + 2)))
        };
        scores.push(num(score_col)?);
        for (out, &c) in contributions.iter_mut().zip(&s_cols) {
            out.push(num(c)?);
        }
    }
    if scores.len() != rows {
        return Err(format_error(
            path,
            format!("{} rows, the series has {rows}", scores.len()),
        ));
    }
    Ok(Published {
        scores,
        contributions,
    })
}
