//! The NAB corpus on disk: series (timestamps and values), their label windows as row ranges,
//! and the cost profiles.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{NabError, format_error, read};

/// Environment variable naming the corpus folder (the one holding `data/`, `labels/`, `config/`).
pub const DIR_ENV: &str = "CLICKWATCH_NAB_DIR";

/// The corpus folder: `$CLICKWATCH_NAB_DIR`, or else `<repo root>/../shared/nab`, where the repo
/// root is two levels above this crate. Not checked for existence: loading names it if missing.
pub fn locate() -> PathBuf {
    match std::env::var_os(DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/nab"),
    }
}

/// One series of the corpus.
#[derive(Debug, Clone)]
pub struct Series {
    /// `<family>/<file>.csv`, the key NAB uses in its label and result files.
    pub name: String,
    /// Seconds since the Unix epoch (NAB timestamps are naive; read as UTC).
    pub timestamps: Vec<i64>,
    /// The observed values.
    pub values: Vec<f64>,
    /// Label windows as inclusive row ranges `(first, last)`, in time order.
    pub windows: Vec<(usize, usize)>,
}

/// One cost profile of `config/profiles.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// `standard`, `reward_low_FP_rate` or `reward_low_FN_rate`.
    pub name: String,
    /// Weight of a detected window.
    pub tp_weight: f64,
    /// Weight of a false positive.
    pub fp_weight: f64,
    /// Cost of a missed window.
    pub fn_weight: f64,
}

/// The three NAB profiles in the order the scoreboard prints them.
pub const PROFILE_NAMES: [&str; 3] = ["standard", "reward_low_FP_rate", "reward_low_FN_rate"];

/// The corpus: every labelled series and the cost profiles.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// The folder it was read from.
    pub dir: PathBuf,
    /// Series in name order.
    pub series: Vec<Series>,
    /// Profiles in [`PROFILE_NAMES`] order.
    pub profiles: Vec<Profile>,
}

impl Corpus {
    /// Reads the corpus in `dir`; every error names the file.
    pub fn load(dir: &Path) -> Result<Corpus, NabError> {
        let labels_path = dir.join("labels/combined_windows.json");
        let labels: BTreeMap<String, Vec<[String; 2]>> = serde_json::from_str(&read(&labels_path)?)
            .map_err(|e| format_error(&labels_path, e.to_string()))?;
        let mut series = Vec::with_capacity(labels.len());
        for (name, windows) in &labels {
            let path = dir.join("data").join(name);
            let (timestamps, values) = read_series(&path)?;
            let mut rows = Vec::with_capacity(windows.len());
            for [start, end] in windows {
                let (s, e) = (parse_time(start), parse_time(end));
                let (Some(s), Some(e)) = (s, e) else {
                    return Err(format_error(
                        &labels_path,
                        format!("bad window time in {name}"),
                    ));
                };
                let first = timestamps.partition_point(|&t| t < s);
                let last = timestamps.partition_point(|&t| t <= e);
                if last == 0 || first >= last {
                    return Err(format_error(
                        &labels_path,
                        format!("empty window in {name}"),
                    ));
                }
                rows.push((first, last - 1));
            }
            series.push(Series {
                name: name.clone(),
                timestamps,
                values,
                windows: rows,
            });
        }
        let profiles = read_profiles(&dir.join("config/profiles.json"))?;
        Ok(Corpus {
            dir: dir.to_path_buf(),
            series,
            profiles,
        })
    }

    /// Number of label windows over the corpus.
    pub fn window_count(&self) -> usize {
        self.series.iter().map(|s| s.windows.len()).sum()
    }
}

fn read_profiles(path: &Path) -> Result<Vec<Profile>, NabError> {
    let raw: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(&read(path)?).map_err(|e| format_error(path, e.to_string()))?;
    PROFILE_NAMES
        .iter()
        .map(|&name| {
            let m = raw
                .get(name)
                .and_then(|p| p.get("CostMatrix"))
                .ok_or_else(|| format_error(path, format!("no CostMatrix for {name}")))?;
            let w = |key: &str| {
                m.get(key)
                    .and_then(serde_json::Value::as_f64)
                    .ok_or_else(|| format_error(path, format!("{name}: no {key}")))
            };
            Ok(Profile {
                name: name.to_string(),
                tp_weight: w("tpWeight")?,
                fp_weight: w("fpWeight")?,
                fn_weight: w("fnWeight")?,
            })
        })
        .collect()
}

/// Reads a `timestamp,value[,...]` CSV with a header line; returns times and values.
pub(crate) fn read_series(path: &Path) -> Result<(Vec<i64>, Vec<f64>), NabError> {
    let text = read(path)?;
    let mut times = Vec::new();
    let mut values = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let mut cols = line.split(',');
        let t = cols.next().and_then(parse_time);
        let v = cols.next().and_then(|v| v.trim().parse::<f64>().ok());
        let (Some(t), Some(v)) = (t, v) else {
            return Err(format_error(
                path,
                format!("line {}: bad row {line:?}", n + 1),
            ));
        };
        times.push(t);
        values.push(v);
    }
    Ok((times, values))
}

/// Parses `YYYY-MM-DD HH:MM:SS[.ffffff]` to seconds since the epoch (fraction dropped).
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, time) = s.split_once(' ')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    let time = time.split('.').next()?;
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, mi, se) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) {
        return None;
    }
    Some(days_from_civil(y, mo, da) * 86_400 + h * 3600 + mi * 60 + se)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nab_timestamps() {
        assert_eq!(parse_time("1970-01-01 00:00:00"), Some(0));
        assert_eq!(parse_time("2014-07-01 00:30:00"), Some(1_404_174_600));
        assert_eq!(
            parse_time("2014-02-19 10:50:00.000000"),
            parse_time("2014-02-19 10:50:00")
        );
        assert_eq!(parse_time("2014-13-01 00:00:00"), None);
        assert_eq!(parse_time("garbage"), None);
    }
}
