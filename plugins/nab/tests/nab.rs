//! NAB as an outside yardstick: the scorer reproduces a published detector's scores, and the
//! SDK's detector core stays at or above the scores measured when it was written.
//!
//! The corpus is `$CLICKWATCH_NAB_DIR` or `<repo>/../shared/nab`; without it these tests fail
//! (naming the path) rather than pass without checking anything.

use std::collections::BTreeMap;

use clickwatch_nab::{Corpus, corpus, detector, published, report, scorer};
use clickwatch_sdk::detect::{DetectorConfig, tail::surprise};

/// Measured optimised standard score of the core at its defaults (62.72), rounded down.
const CORE_OPTIMISED_STANDARD_FLOOR: f64 = 62.0;
/// Measured standard score at the default threshold (`alert_tail`, 62.48), rounded down.
const CORE_DEFAULT_STANDARD_FLOOR: f64 = 62.0;
/// Measured optimised scores of the other two profiles (45.81, 70.26), rounded down.
const CORE_OPTIMISED_LOW_FP_FLOOR: f64 = 45.0;
const CORE_OPTIMISED_LOW_FN_FLOOR: f64 = 70.0;

fn load() -> Corpus {
    let dir = corpus::locate();
    assert!(
        dir.join("labels/combined_windows.json").is_file(),
        "NAB corpus not found at {} (set {} to the folder holding data/, labels/, config/)",
        dir.display(),
        corpus::DIR_ENV
    );
    Corpus::load(&dir).unwrap_or_else(|e| panic!("{e}"))
}

fn published_scores(corpus: &Corpus, detector: &str) -> BTreeMap<String, f64> {
    let path = corpus.dir.join("results/final_results.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let all: BTreeMap<String, BTreeMap<String, f64>> =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    all.get(detector).cloned().unwrap_or_default()
}

#[test]
fn corpus_has_the_published_shape() {
    let c = load();
    assert_eq!(c.series.len(), 58);
    assert_eq!(c.window_count(), 116);
    assert_eq!(c.profiles.len(), 3);
}

#[test]
fn windowed_gaussian_scores_are_reproduced_per_profile_and_row() {
    let c = load();
    let wg = published::load(&c, "windowedGaussian").unwrap_or_else(|e| panic!("{e}"));
    let scores: Vec<Vec<f64>> = wg.iter().map(|p| p.scores.clone()).collect();
    let expected = published_scores(&c, "windowedGaussian");
    for (k, line) in report::optimised(&c, &scores).iter().enumerate() {
        let want = expected
            .get(&line.profile)
            .unwrap_or_else(|| panic!("no published {} score", line.profile));
        assert!(
            (line.score - want).abs() <= 0.5,
            "{}: {:.3}, published {want:.3}",
            line.profile,
            line.score
        );
        // Row by row: every S(t) of the published output at the optimised threshold.
        let profile = &c.profiles[k];
        let mut rows = Vec::new();
        for ((series, s), p) in c.series.iter().zip(&scores).zip(&wg) {
            scorer::score_series(series, s, line.threshold, profile, Some(&mut rows));
            for (i, (mine, theirs)) in rows.iter().zip(&p.contributions[k]).enumerate() {
                assert!(
                    (mine - theirs).abs() < 1e-6,
                    "{} {} row {i}: {mine} vs published {theirs}",
                    profile.name,
                    series.name
                );
            }
        }
    }
}

#[test]
fn the_detector_core_holds_its_measured_nab_scores() {
    let c = load();
    let config = DetectorConfig::default();
    let scores: Vec<Vec<f64>> = c
        .series
        .iter()
        .map(|s| detector::run(s, &config).unwrap().0)
        .collect();
    let optimised = report::optimised(&c, &scores);
    let fixed = report::fixed(&c, &scores, surprise(config.alert_tail));
    let score = |lines: &[report::Line], profile: &str| {
        lines
            .iter()
            .find(|l| l.profile == profile)
            .map(|l| l.score)
            .unwrap_or(f64::NAN)
    };
    let (opt, def) = (score(&optimised, "standard"), score(&fixed, "standard"));
    assert!(
        opt >= CORE_OPTIMISED_STANDARD_FLOOR,
        "optimised standard {opt:.2}"
    );
    assert!(
        def >= CORE_DEFAULT_STANDARD_FLOOR,
        "default-threshold standard {def:.2}"
    );
    let low_fp = score(&optimised, "reward_low_FP_rate");
    assert!(
        low_fp >= CORE_OPTIMISED_LOW_FP_FLOOR,
        "optimised low-FP {low_fp:.2}"
    );
    let low_fn = score(&optimised, "reward_low_FN_rate");
    assert!(
        low_fn >= CORE_OPTIMISED_LOW_FN_FLOOR,
        "optimised low-FN {low_fn:.2}"
    );
    // The optimum can never be worse than any fixed threshold, the default included.
    assert!(opt >= def - 1e-9);
}
