//! Two-proportion tests: did a conversion rate fall, with the volume behind each rate
//! accounted for?
//!
//! [`drop_tail`] is the one-sided likelihood-ratio (G) test of `x1/n1` (now) against `x0/n0`
//! (the baseline): it is exact enough at small counts where the normal approximation is not,
//! and it is 1 when there is no drop. [`wilson`] gives the Wilson score interval of one
//! proportion (Wilson 1927), for reporting how sure a rate is.

use super::tail::normal_sf;

/// `x ln(x / e)` with the `0 ln 0 = 0` convention.
fn xlogx_over(x: f64, e: f64) -> f64 {
    if x <= 0.0 || e <= 0.0 {
        0.0
    } else {
        x * (x / e).ln()
    }
}

/// Probability, under "same rate", of a fall from `x0/n0` to `x1/n1` at least this large.
/// One-sided: a rise gives 1. Invalid counts (negative, non-finite, successes above trials,
/// an empty side) give 1: no evidence.
pub fn drop_tail(x1: f64, n1: f64, x0: f64, n0: f64) -> f64 {
    let valid = |x: f64, n: f64| x.is_finite() && n.is_finite() && x >= 0.0 && n > 0.0 && x <= n;
    if !valid(x1, n1) || !valid(x0, n0) {
        return 1.0;
    }
    if x1 / n1 >= x0 / n0 {
        return 1.0;
    }
    let n = n0 + n1;
    let p = (x0 + x1) / n;
    let cells = [
        (x1, n1 * p),
        (n1 - x1, n1 * (1.0 - p)),
        (x0, n0 * p),
        (n0 - x0, n0 * (1.0 - p)),
    ];
    let g = 2.0 * cells.iter().map(|&(o, e)| xlogx_over(o, e)).sum::<f64>();
    // G is chi-square with one degree of freedom; its signed root is standard normal.
    normal_sf(g.max(0.0).sqrt())
}

/// The Wilson score interval `(low, high)` for `x` successes in `n` trials at normal quantile
/// `z` (1.96 for 95 %). `(0, 1)` when there are no trials or the input is invalid.
pub fn wilson(x: f64, n: f64, z: f64) -> (f64, f64) {
    if !(x.is_finite() && n.is_finite() && z.is_finite()) || n <= 0.0 || x < 0.0 || x > n {
        return (0.0, 1.0);
    }
    let p = x / n;
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_decides_how_sure_a_drop_is() {
        // Same halving of a 10 % rate: convincing on 2000 sessions, not on 20.
        assert!(drop_tail(100.0, 2000.0, 2000.0, 20_000.0) < 1e-6);
        assert!(drop_tail(1.0, 20.0, 2000.0, 20_000.0) > 0.05);
        // A rise or no change is no evidence of a drop.
        assert_eq!(drop_tail(300.0, 2000.0, 2000.0, 20_000.0), 1.0);
        assert_eq!(drop_tail(200.0, 2000.0, 2000.0, 20_000.0), 1.0);
        // A fall to zero with volume is certain; with none it is no evidence.
        assert!(drop_tail(0.0, 500.0, 2000.0, 20_000.0) < 1e-9);
        assert_eq!(drop_tail(0.0, 0.0, 2000.0, 20_000.0), 1.0);
    }

    #[test]
    fn odd_inputs_give_no_evidence() {
        assert_eq!(drop_tail(f64::NAN, 10.0, 1.0, 10.0), 1.0);
        assert_eq!(drop_tail(11.0, 10.0, 1.0, 10.0), 1.0);
        assert_eq!(drop_tail(1.0, 10.0, -1.0, 10.0), 1.0);
        assert_eq!(wilson(f64::INFINITY, 10.0, 1.96), (0.0, 1.0));
    }

    #[test]
    fn wilson_matches_a_known_interval() {
        // 8 of 10 at 95 %: (0.490, 0.943).
        let (lo, hi) = wilson(8.0, 10.0, 1.96);
        assert!(
            (lo - 0.4902).abs() < 1e-3 && (hi - 0.9433).abs() < 1e-3,
            "{lo} {hi}"
        );
    }
}
