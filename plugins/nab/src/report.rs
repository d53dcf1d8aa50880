//! The NAB table: a detector's normalised score per profile, at a fixed threshold and with
//! the threshold optimised per profile over the corpus (as the scoreboard does).

use crate::corpus::{Corpus, Profile};
use crate::scorer::{Tally, normalise, optimise, score_corpus};

/// One profile's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// The profile.
    pub profile: String,
    /// The threshold used.
    pub threshold: f64,
    /// The normalised score (0 = null detector, 100 = perfect).
    pub score: f64,
    /// Raw score and counts at that threshold.
    pub tally: Tally,
}

/// Scores at a fixed `threshold` for every profile.
pub fn fixed(corpus: &Corpus, scores: &[Vec<f64>], threshold: f64) -> Vec<Line> {
    corpus
        .profiles
        .iter()
        .map(|p| line(corpus, scores, threshold, p))
        .collect()
}

/// Scores with the threshold optimised separately for every profile.
pub fn optimised(corpus: &Corpus, scores: &[Vec<f64>]) -> Vec<Line> {
    corpus
        .profiles
        .iter()
        .map(|p| {
            let (threshold, _) = optimise(corpus, scores, p);
            line(corpus, scores, threshold, p)
        })
        .collect()
}

fn line(corpus: &Corpus, scores: &[Vec<f64>], threshold: f64, profile: &Profile) -> Line {
    let tally = score_corpus(corpus, scores, threshold, profile);
    Line {
        profile: profile.name.clone(),
        threshold,
        score: normalise(tally.raw, corpus.window_count(), profile),
        tally,
    }
}

/// Prints lines as a Markdown table under `title`.
pub fn print(title: &str, lines: &[Line]) {
    println!("\n{title}\n");
    println!("| profile | threshold | score | detected windows | false positives |");
    println!("|---|---|---|---|---|");
    for l in lines {
        println!(
            "| {} | {:.3} | {:.2} | {}/{} | {} |",
            l.profile,
            l.threshold,
            l.score,
            l.tally.tp,
            l.tally.tp + l.tally.fn_,
            l.tally.fp
        );
    }
}
