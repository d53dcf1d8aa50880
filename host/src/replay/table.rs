//! The human-readable form of a [`Report`]: one table row per detector and kind where
//! something happened, recall by variant under rows that have several.

use super::score::Report;

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{:.2}", v))
}

fn secs(v: Option<i64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{:.0}s", v as f64 / 1000.0))
}

impl std::fmt::Display for Report {
    /// A table of the rows where something happened (alerts or detections); detectors that
    /// raised nothing are listed below it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:.2} simulated hours, grace {} s, labels: {}",
            self.hours,
            self.grace_ms / 1000,
            self.labels
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
        writeln!(
            f,
            "{:<20} {:<16} {:>6} {:>9} {:>6} {:>6} {:>6} {:>8} {:>8} {:>8}",
            "detector",
            "kind",
            "alerts",
            "detected",
            "prec",
            "recall",
            "f1",
            "delay50",
            "delay95",
            "false/h"
        )?;
        for k in self.kinds.iter().filter(|k| k.alerts > 0 || k.detected > 0) {
            writeln!(
                f,
                "{:<20} {:<16} {:>6} {:>9} {:>6} {:>6} {:>6} {:>8} {:>8} {:>8.2}",
                k.detector,
                k.kind,
                k.alerts,
                format!("{}/{}", k.detected, k.labels),
                pct(k.precision),
                pct(k.recall),
                pct(k.f1),
                secs(k.delay_median_ms),
                secs(k.delay_p95_ms),
                k.false_per_hour
            )?;
            // Variants only say something when a kind has more than one.
            if k.variants.len() > 1 && k.labels > 0 {
                let parts: Vec<String> = k
                    .variants
                    .iter()
                    .map(|(v, (n, d))| format!("{v} {d}/{n}"))
                    .collect();
                writeln!(f, "{:<20}   by variant: {}", "", parts.join(", "))?;
            }
            if k.false_alerts > 0 {
                let parts: Vec<String> = k
                    .false_during
                    .iter()
                    .map(|(c, n)| format!("{c} {n}"))
                    .collect();
                writeln!(f, "{:<20}   false alerts during: {}", "", parts.join(", "))?;
            }
        }
        let silent: Vec<&str> = self
            .detectors
            .iter()
            .filter(|d| d.alerts == 0)
            .map(|d| d.detector.as_str())
            .collect();
        if !silent.is_empty() {
            writeln!(f, "no alerts from: {}", silent.join(", "))?;
        }
        Ok(())
    }
}
