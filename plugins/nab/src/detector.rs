//! Runs the SDK's detector core over one NAB series, as NAB's harness runs a detector: every
//! row in order, one anomaly score per row.

use clickwatch_sdk::detect::{Detector, DetectorConfig};

use crate::corpus::Series;

/// The cooldown as a share of the series' length: a fifth of NAB's probationary period (15 %
/// of the rows). NAB's harness hands every detector the series' length (its probationary
/// period); a re-alert within this span is almost always a repeat of the same incident or a
/// false positive, since NAB's windows together cover about 10 % of a series.
pub const COOLDOWN_SHARE: f64 = 0.03;

/// The core's settings for `series`: `config` with the cooldown set to [`COOLDOWN_SHARE`] of
/// the series' rows (one rule for every series).
pub fn config_for(series: &Series, config: &DetectorConfig) -> DetectorConfig {
    let mut config = config.clone();
    config.cooldown = (COOLDOWN_SHARE * series.values.len() as f64).round() as u32;
    config
}

/// The core's score for every row of `series` (its surprise `−log10 p`, 0 during warm-up and
/// cooldown), and the rows where it alerts at its own threshold (`config.alert_tail`). The
/// cooldown is [`config_for`]'s, whatever `config.cooldown` says.
pub fn run(series: &Series, config: &DetectorConfig) -> Result<(Vec<f64>, Vec<bool>), String> {
    let mut detector = Detector::new(config_for(series, config))?;
    let mut scores = Vec::with_capacity(series.values.len());
    let mut alerts = Vec::with_capacity(series.values.len());
    for (&t, &v) in series.timestamps.iter().zip(&series.values) {
        let verdict = detector.observe(t.saturating_mul(1000), v);
        scores.push(verdict.map_or(0.0, |v| v.score));
        alerts.push(verdict.is_some_and(|v| v.alert));
    }
    Ok((scores, alerts))
}
