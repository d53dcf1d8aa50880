//! Runs the SDK's detector core over one NAB series, as NAB's harness runs a detector: every
//! row in order, one anomaly score per row.

use clickwatch_sdk::detect::{Detector, DetectorConfig};

use crate::corpus::Series;

/// The core's score for every row of `series` (its surprise `−log10 p`, 0 during warm-up and
/// cooldown), and the rows where it alerts at its own threshold (`config.alert_tail`).
pub fn run(series: &Series, config: &DetectorConfig) -> Result<(Vec<f64>, Vec<bool>), String> {
    let mut detector = Detector::new(config.clone())?;
    let mut scores = Vec::with_capacity(series.values.len());
    let mut alerts = Vec::with_capacity(series.values.len());
    for (&t, &v) in series.timestamps.iter().zip(&series.values) {
        let verdict = detector.observe(t.saturating_mul(1000), v);
        scores.push(verdict.map_or(0.0, |v| v.score));
        alerts.push(verdict.is_some_and(|v| v.alert));
    }
    Ok((scores, alerts))
}
