//! `clickwatch-nab [corpus dir]`: scores the SDK's detector core on NAB at its default
//! threshold and with thresholds optimised per profile, and checks the scorer by reproducing
//! the published Windowed Gaussian scores. The corpus defaults to `$CLICKWATCH_NAB_DIR` or
//! `<repo>/../shared/nab`. An optional second argument is a JSON `DetectorConfig` override;
//! `CLICKWATCH_NAB_PER_SERIES=1` adds the standard profile's per-series breakdown.

use std::path::PathBuf;
use std::process::ExitCode;

use clickwatch_nab::{Corpus, corpus, detector, published, report, scorer};
use clickwatch_sdk::detect::{DetectorConfig, tail::surprise};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("clickwatch-nab: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().map_or_else(corpus::locate, PathBuf::from);
    let config: DetectorConfig = match args.next() {
        Some(json) => serde_json::from_str(&json).map_err(|e| format!("config: {e}"))?,
        None => DetectorConfig::default(),
    };
    let corpus = Corpus::load(&dir).map_err(|e| e.to_string())?;
    println!(
        "NAB corpus {}: {} series, {} windows",
        dir.display(),
        corpus.series.len(),
        corpus.window_count()
    );

    let wg = published::load(&corpus, "windowedGaussian").map_err(|e| e.to_string())?;
    let wg: Vec<Vec<f64>> = wg.into_iter().map(|p| p.scores).collect();
    report::print(
        "Windowed Gaussian (published output), thresholds optimised",
        &report::optimised(&corpus, &wg),
    );

    let scores = corpus
        .series
        .iter()
        .map(|s| detector::run(s, &config).map(|(scores, _)| scores))
        .collect::<Result<Vec<_>, _>>()?;
    report::print(
        &format!(
            "clickwatch_sdk::detect::Detector, default threshold (alert_tail {:e})",
            config.alert_tail
        ),
        &report::fixed(&corpus, &scores, surprise(config.alert_tail)),
    );
    let optimised = report::optimised(&corpus, &scores);
    report::print(
        "clickwatch_sdk::detect::Detector, thresholds optimised per profile",
        &optimised,
    );
    if std::env::var_os("CLICKWATCH_NAB_PER_SERIES").is_some() {
        // Where the standard profile's points are won and lost, series by series.
        if let (Some(line), Some(profile)) = (optimised.first(), corpus.profiles.first()) {
            println!(
                "\n| series | windows | detected | false positives | raw |\n|---|---|---|---|---|"
            );
            for (series, s) in corpus.series.iter().zip(&scores) {
                let t = scorer::score_series(series, s, line.threshold, profile, None);
                println!(
                    "| {} | {} | {} | {} | {:.2} |",
                    series.name,
                    series.windows.len(),
                    t.tp,
                    t.fp,
                    t.raw
                );
            }
        }
    }
    Ok(())
}
