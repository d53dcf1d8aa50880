//! One watched rate (a page or the whole site): its open bucket counts, its online baseline and
//! the spike/drop episode it may be in.
//!
//! The baseline is a Holt (level + trend) exponential smoothing of the per-bucket count with a
//! robust scale: an EWMA of absolute residuals. Updates are winsorised (an observation is
//! clipped to `expected ± z·sigma` before it is learned) and suspended while an episode runs,
//! so an anomaly never teaches the baseline that it is normal, and its end is not mistaken for
//! an anomaly in the other direction.

pub(crate) use clickwatch_sdk::buckets::MAX_OPEN;
use clickwatch_sdk::detect::DropCusum;
use serde::{Deserialize, Serialize};

/// Which way the rate moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    /// Well above the baseline.
    Spike,
    /// Well below the baseline.
    Drop,
}

/// Thresholds for one entity type (pages and the site differ only in the spike ratio).
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub spike_ratio: f64,
    pub drop_ratio: f64,
    pub z: f64,
    pub drop_z: f64,
    pub cumulative_z: f64,
    pub cumulative_margin: f64,
    pub min_spike_count: f64,
    pub min_drop_baseline: f64,
    pub confirm: u32,
    pub alpha: f64,
    pub beta: f64,
    pub slow_alpha: f64,
    pub warmup: u32,
    pub cooldown_buckets: u32,
    pub max_episode_buckets: u32,
    pub bucket_ms: i64,
    /// The sequential drop test's alternative (`ρ`, see [`DropCusum::rho_for`]) and its
    /// threshold `ln(1/tail)` (infinite when disabled).
    pub rho: f64,
    pub seq_threshold: f64,
}

/// A run of consecutive anomalous buckets in one direction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Episode {
    pub dir: Direction,
    /// Start of its first bucket: the alert's window start, stable across re-reports.
    pub start_ms: i64,
    pub buckets: u32,
    /// Buckets that met the full threshold (the others only kept the episode alive).
    pub strong: u32,
    pub alerted: bool,
    /// Sums over the episode of `c − reference` and of `sigma²`: a slow, steady deviation that
    /// no single bucket proves is proven by their sum.
    #[serde(default)]
    pub sum_dev: f64,
    #[serde(default)]
    pub sum_var: f64,
    /// Sum over the episode of the reference counts, for the episode's overall ratio.
    #[serde(default)]
    pub sum_ref: f64,
}

/// What a confirmed episode looks like when it is reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub dir: Direction,
    pub start_ms: i64,
    /// End of the bucket that confirmed it: the event time at which the detector became sure.
    pub time_ms: i64,
    pub observed: f64,
    pub expected: f64,
    pub z: f64,
    pub buckets: u32,
}

/// State of one watched rate. About 120 bytes of fields; with the map entry, the entity name
/// and a few open buckets about 200 bytes per page (the figure in docs/detectors.md).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Series {
    /// Counts of buckets not yet closed: (bucket start, events). One or two entries, because
    /// the watermark trails event time by only the allowed lateness.
    pub open: Vec<(i64, u32)>,
    /// First bucket evaluated: the series did not exist before it.
    pub first_bucket_ms: i64,
    pub level: f64,
    pub trend: f64,
    /// EWMA of absolute residuals: the robust scale (about 0.8 sigma for normal noise).
    pub dev: f64,
    /// A slow EWMA of the level (`slow_alpha`): a spike must also stand out against it, so a
    /// page recovering from a long dip that its fast baseline learned is not a "spike".
    #[serde(default)]
    pub slow: f64,
    /// Buckets learned so far, capped at the warm-up length.
    pub learned: u32,
    pub episode: Option<Episode>,
    /// No new alert before this bucket start.
    pub quiet_until_ms: i64,
    pub last_seen_ms: i64,
    /// `(c + 1) / (expected + 1)` of the bucket closed last (1 while warming up): compared
    /// across series to tell whether one page drives a site-wide move.
    #[serde(skip)]
    pub last_ratio: f64,
    /// Count and expected count of the bucket closed last (for naming the most affected
    /// children of a level, and for the sequential test's comparisons within a bucket).
    #[serde(default)]
    pub last_count: f64,
    #[serde(default)]
    pub last_expected: f64,
    /// The sequential drop test (absent in 0.2.0 snapshots) and the event time it has reached.
    #[serde(default)]
    pub seq: DropCusum,
    #[serde(default)]
    pub seq_at_ms: i64,
    /// Events per second not yet seen by the sequential test: (second start, events). A
    /// batch may carry events past the watermark; the test must count each at its own time,
    /// not when it arrived, or the seconds after a batch would look empty.
    #[serde(default)]
    pub fine: Vec<(i64, u32)>,
    /// The common factor of this bucket (see [`Series::close`]).
    #[serde(skip)]
    factor_now: Option<f64>,
}

/// A drop bucket at most this share of its expected count (and 4 sigmas below it) confirms
/// the drop alone.
pub const NEAR_TOTAL_LOSS: f64 = 0.1;

/// A drop bucket at least this many sigmas below its baseline confirms the drop alone.
pub const SINGLE_BUCKET_Z: f64 = 6.0;

/// Resolution of the sequential test's counts, ms.
pub const FINE_MS: i64 = 1_000;

/// Seconds with events kept per series for the sequential test at most: events reach a key
/// group's instance ahead of its watermark by as much as its input partitions are apart in
/// event time (a partition read faster, after a restart or in a backlog), so this covers
/// over an hour of such lag; past it the oldest are dropped (bounded state for input far out
/// of order). A cap of minutes made the counts depend on read speed.
const MAX_FINE: usize = 4096;

impl Series {
    /// A series first seen in the bucket starting at `bucket_ms`.
    pub fn new(bucket_ms: i64) -> Self {
        Series {
            first_bucket_ms: bucket_ms,
            last_seen_ms: bucket_ms,
            ..Series::default()
        }
    }

    /// Counts one event at `time_ms` in the bucket starting at `bucket_ms`.
    pub fn count(&mut self, bucket_ms: i64, time_ms: i64) {
        self.last_seen_ms = self.last_seen_ms.max(time_ms);
        // The earliest bucket, not the first to arrive: events of one page come from several
        // input partitions, in an order that depends on read speed.
        self.first_bucket_ms = self.first_bucket_ms.min(bucket_ms);
        // From the back: nearly every event is in the newest bucket.
        match self.open.iter_mut().rev().find(|(b, _)| *b == bucket_ms) {
            Some((_, n)) => *n = n.saturating_add(1),
            None => {
                if self.open.len() >= MAX_OPEN {
                    self.open.sort_unstable();
                    self.open.remove(0);
                }
                self.open.push((bucket_ms, 1));
            }
        }
        // Kept in time order. Events come nearly in order: the newest second is almost
        // always the last entry.
        let second = time_ms.div_euclid(FINE_MS) * FINE_MS;
        match self.fine.last_mut() {
            Some((s, n)) if *s == second => *n = n.saturating_add(1),
            Some((s, _)) if *s > second => {
                match self.fine.binary_search_by_key(&second, |&(s, _)| s) {
                    Ok(i) => self.fine[i].1 = self.fine[i].1.saturating_add(1),
                    Err(i) => self.fine.insert(i, (second, 1)),
                }
            }
            _ => self.fine.push((second, 1)),
        }
        if self.fine.len() > MAX_FINE {
            self.fine.remove(0);
        }
    }

    /// Removes and returns the count of the bucket starting at `bucket_ms` (0 when empty), and
    /// drops any older leftovers.
    pub fn take(&mut self, bucket_ms: i64) -> u32 {
        let stale = self.fine.partition_point(|&(s, _)| s < bucket_ms);
        self.fine.drain(..stale);
        let mut n = 0;
        self.open.retain(|&(b, c)| {
            if b == bucket_ms {
                n = c;
            }
            b > bucket_ms
        });
        n
    }

    /// The count expected for the next bucket.
    pub fn expected(&self) -> f64 {
        self.holt() * self.factor_now.unwrap_or(1.0)
    }

    /// The count of the open bucket starting at `bucket_ms`, left in place.
    pub fn peek(&self, bucket_ms: i64) -> u32 {
        self.open
            .iter()
            .filter(|(b, _)| *b == bucket_ms)
            .map(|(_, n)| *n)
            .sum()
    }

    /// Whether the series has learned its warm-up.
    pub fn warm(&self, r: &Rules) -> bool {
        self.learned >= r.warmup
    }

    /// The Holt (level + trend) prediction of the count, before any common factor.
    pub fn holt(&self) -> f64 {
        (self.level + self.trend).max(0.0)
    }

    /// The noise scale used for z-scores: at least Poisson noise, at least the observed
    /// residual spread, at least one event.
    fn sigma(&self, expected: f64) -> f64 {
        expected.sqrt().max(1.25 * self.dev).max(1.0)
    }

    /// Variance over mean of the bucket counts (at least 1), from the robust scale: visits
    /// bring events in bursts, so counts are more variable than Poisson.
    pub fn dispersion(&self) -> f64 {
        let e = self.holt().max(1e-9);
        let s = self.sigma(e);
        (s * s / e).max(1.0)
    }

    /// Whether the sequential drop test may run now: warm, busy enough for a drop to be
    /// alerted, not quiet after an alert and not in an alerted episode.
    pub fn drop_testable(&self, r: &Rules, now_ms: i64) -> bool {
        self.warm(r)
            && self.holt() >= r.min_drop_baseline
            && now_ms >= self.quiet_until_ms
            && !self.episode.as_ref().is_some_and(|e| e.alerted)
    }

    /// Advances the sequential drop test to `until_ms` (whole seconds) inside the bucket
    /// starting at `bucket_ms`, counting each event at its own time; returns the statistic
    /// when time advanced (`None` otherwise, or while the series is not testable).
    pub fn advance_drop_test(&mut self, bucket_ms: i64, until_ms: i64, r: &Rules) -> Option<f64> {
        let stop = until_ms.div_euclid(FINE_MS) * FINE_MS;
        let from = self.seq_at_ms.max(bucket_ms);
        if stop <= from {
            return None;
        }
        // The seconds before `stop` are a prefix (kept in time order).
        let done = self.fine.partition_point(|&(s, _)| s < stop);
        let n = self.fine[..done]
            .iter()
            .filter(|&&(s, _)| s >= from)
            .fold(0u32, |n, &(_, c)| n.saturating_add(c));
        self.fine.drain(..done);
        self.seq_at_ms = stop;
        if !self.drop_testable(r, stop) {
            self.seq.reset();
            return None;
        }
        let expected = self.holt() * (stop - from) as f64 / r.bucket_ms as f64;
        Some(
            self.seq
                .add(from, expected, f64::from(n), self.dispersion(), r.rho),
        )
    }

    /// Count over expected count of the last closed bucket and the elapsed `frac` of the open
    /// one (smoothed by one event): how the series moved lately, for comparing a series with
    /// its ancestors and children within a bucket.
    pub fn recent_ratio(&self, bucket_ms: i64, frac: f64) -> f64 {
        let (c, e) = self.recent(bucket_ms, frac);
        (c + 1.0) / (e + 1.0)
    }

    /// Events and expected events of the last closed bucket and the elapsed `frac` of the open
    /// one.
    pub fn recent(&self, bucket_ms: i64, frac: f64) -> (f64, f64) {
        (
            self.last_count + f64::from(self.peek(bucket_ms)),
            self.last_expected + self.holt() * frac,
        )
    }

    /// Judges one closed bucket and learns from it when it looks normal. Returns a finding
    /// when this bucket confirms a new episode.
    ///
    /// With `freeze`, a normal-looking bucket is not learned either: pages do not learn while
    /// the whole site is in an episode, or they would take the site's incident as their normal
    /// and "drop" when it ends.
    ///
    /// With `factor`, the bucket's common factor (how the site's pages as a whole moved
    /// against their own baselines, see `lib.rs`), the series expects its baseline times that
    /// factor: a sale or an outage that moves every page alike is no page's anomaly, and what
    /// stands out is a page (or level) moving unlike the rest.
    pub fn close(
        &mut self,
        bucket_ms: i64,
        count: u32,
        r: &Rules,
        freeze: bool,
        factor: Option<f64>,
    ) -> Option<Finding> {
        self.factor_now = factor;
        let c = f64::from(count);
        self.last_ratio = 1.0;
        self.last_count = c;
        self.last_expected = self.expected();
        if self.learned < r.warmup {
            self.learn(c, r, f64::INFINITY);
            return None;
        }
        // The common factor only ever makes a drop less anomalous: it must be a drop against
        // the baseline and against the baseline times the factor (the end of a sale, or an
        // outage, moves every page down alike). Spikes are judged against the baseline (and
        // the slow reference) alone.
        let f = self.factor_now.unwrap_or(1.0);
        self.last_ratio = (c + 1.0) / (self.expected() + 1.0);
        let expected = self.holt() * f.min(1.0);
        let sigma = self.sigma(expected);
        let z = (c - expected) / sigma;
        let ratio = c / expected.max(0.5);
        let reference = self.holt().max(self.slow);
        let z_up = (c - reference) / self.sigma(reference);
        let spike_like =
            c >= r.min_spike_count && c / reference.max(0.5) >= r.spike_ratio && z_up >= r.z;
        // A drop on a quiet series is still kept out of the baseline (so its recovery is not
        // learned as a spike), it is just never alerted.
        let drop_like = ratio <= r.drop_ratio && z <= -r.drop_z;
        // Once an episode runs, a weaker deviation keeps it alive (halfway between normal and
        // the threshold), so one noisy bucket inside an incident neither ends it nor lets the
        // baseline learn from it; only strong buckets count towards confirmation.
        let running = self.episode.as_ref().map(|e| e.dir);
        let (dir, z, strong) = if spike_like {
            (Some(Direction::Spike), z_up, true)
        } else if drop_like {
            (Some(Direction::Drop), z, true)
        } else if running == Some(Direction::Spike)
            && c / reference.max(0.5) >= 1.0 + (r.spike_ratio - 1.0) / 2.0
        {
            (running, z_up, false)
        } else if running == Some(Direction::Drop) && ratio <= (1.0 + r.drop_ratio) / 2.0 {
            (running, z, false)
        } else {
            (None, z, false)
        };
        let alertable = dir == Some(Direction::Spike) || expected >= r.min_drop_baseline;
        let Some(dir) = dir else {
            if self.episode.take().is_some_and(|e| e.alerted) {
                self.quiet_until_ms =
                    bucket_ms.saturating_add(i64::from(r.cooldown_buckets) * r.bucket_ms);
            }
            if !freeze {
                self.learn(c, r, r.z * sigma);
            }
            return None;
        };
        let (reference_used, sigma_used) = match dir {
            Direction::Spike => (reference, self.sigma(reference)),
            Direction::Drop => (expected, sigma),
        };
        let episode = match &mut self.episode {
            Some(e) if e.dir == dir => e,
            other => other.insert(Episode {
                dir,
                start_ms: bucket_ms,
                buckets: 0,
                strong: 0,
                alerted: false,
                sum_dev: 0.0,
                sum_var: 0.0,
                sum_ref: 0.0,
            }),
        };
        if strong {
            episode.strong += 1;
        }
        episode.buckets += 1;
        episode.sum_dev += c - reference_used;
        episode.sum_var += sigma_used * sigma_used;
        episode.sum_ref += reference_used;
        let cumulative_z = episode.sum_dev / episode.sum_var.max(1.0).sqrt();
        // The episode as a whole must also clear the ratio, so a run of weak buckets (a surge
        // ending, traffic settling at 0.6x) cannot add up to a "drop".
        let cumulative_ratio = (episode.sum_ref + episode.sum_dev) / episode.sum_ref.max(0.5);
        // One drop bucket so far off that its own tail probability is below any per-bucket
        // false-alarm budget (z ≤ −SINGLE_BUCKET_Z, ~1e-9) proves the drop alone, and so does
        // a near-total loss (≤ NEAR_TOTAL_LOSS of expected) at 4 sigmas: the signature of an
        // outage, which noise on a series this busy does not produce.
        let decisive = dir == Direction::Drop
            && strong
            && (z <= -SINGLE_BUCKET_Z || (ratio <= NEAR_TOTAL_LOSS && z <= -4.0));
        let proven = decisive
            || episode.strong >= r.confirm
            || (episode.buckets > r.confirm
                && match dir {
                    // With a margin on the ratio: the sum is more certain about a modest
                    // shift than about its size, and a surge ending is a modest shift.
                    Direction::Spike => {
                        cumulative_z >= r.cumulative_z
                            && cumulative_ratio >= r.spike_ratio / r.cumulative_margin
                    }
                    Direction::Drop => {
                        cumulative_z <= -r.cumulative_z
                            && cumulative_ratio <= r.drop_ratio * r.cumulative_margin
                    }
                });
        if episode.buckets > r.max_episode_buckets {
            // Anomalous for longer than any incident we look for: this is the new normal.
            self.level = c;
            self.trend = 0.0;
            self.dev = c.sqrt();
            self.slow = c;
            self.episode = None;
            return None;
        }
        if !alertable || episode.alerted || !proven || bucket_ms < self.quiet_until_ms {
            return None;
        }
        episode.alerted = true;
        Some(Finding {
            dir,
            start_ms: episode.start_ms,
            time_ms: bucket_ms.saturating_add(r.bucket_ms),
            observed: c,
            expected,
            z,
            buckets: episode.buckets,
        })
    }

    /// Folds `c`, clipped to `expected ± clip`, into level, trend and scale.
    fn learn(&mut self, c: f64, r: &Rules, clip: f64) {
        if self.learned == 0 {
            self.level = c;
            self.trend = 0.0;
            self.dev = c.sqrt();
            self.slow = c;
            self.learned = 1;
            return;
        }
        // Clipped around what was expected (the baseline times the common factor); the
        // baseline itself learns from its own prediction.
        let expected = self.expected();
        let x = c.clamp(expected - clip, expected + clip);
        self.dev += r.alpha * ((x - expected).abs() - self.dev);
        let expected = self.holt();
        self.slow += r.slow_alpha * (x - self.slow);
        let previous = self.level;
        self.level = (r.alpha * x + (1.0 - r.alpha) * expected).max(0.0);
        // The trend follows the daily shape; bounded so that noise on a quiet page cannot make
        // it run away.
        let bound = 0.05 * self.level.max(1.0);
        self.trend =
            (r.beta * (self.level - previous) + (1.0 - r.beta) * self.trend).clamp(-bound, bound);
        self.learned = self.learned.saturating_add(1).min(r.warmup.max(1));
    }
}
