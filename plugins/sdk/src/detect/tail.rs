//! Tail probabilities of the standard normal distribution, and the *surprise* scale
//! (`−log10 p`) every score of this module is reported on.
//!
//! A threshold stated as a tail probability means the same thing on every series: `1e-4` is
//! "one alert per 10 000 normal observations", whatever the units or the noise level.

/// `P(Z ≥ z)` for a standard normal `Z`. Accurate to a relative 1.2e-7 over the whole range
/// (Numerical Recipes' Chebyshev fit of `erfc`), so deep tails keep their ordering; NaN gives 1.
pub fn normal_sf(z: f64) -> f64 {
    if z.is_nan() {
        return 1.0;
    }
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// `P(|Z| ≥ |z|)`: the two-sided tail.
pub fn normal_two_sided(z: f64) -> f64 {
    (2.0 * normal_sf(z.abs())).min(1.0)
}

/// The complementary error function.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// Smallest tail probability reported: below it, floating point says nothing more.
pub const MIN_TAIL: f64 = 1e-300;

/// `−log10 p`: 2 is one in a hundred, 4 one in ten thousand. Clamped to [0, 300].
pub fn surprise(p: f64) -> f64 {
    if p.is_nan() {
        return 0.0;
    }
    -p.clamp(MIN_TAIL, 1.0).log10()
}

/// The tail probability a surprise stands for (the inverse of [`surprise`]).
pub fn tail_of_surprise(s: f64) -> f64 {
    10f64.powf(-s.clamp(0.0, 300.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_known_normal_tails() {
        for (z, p) in [
            (0.0, 0.5),
            (1.0, 0.158_655_25),
            (3.0, 1.349_898e-3),
            (6.0, 9.865_876e-10),
        ] {
            assert!(
                (normal_sf(z) - p).abs() / p < 1e-6,
                "z={z}: {}",
                normal_sf(z)
            );
        }
        assert!((normal_sf(-1.0) - (1.0 - 0.158_655_25)).abs() < 1e-7);
        assert!((normal_two_sided(-3.0) - 2.0 * 1.349_898e-3).abs() < 1e-8);
        assert!(normal_sf(30.0) > 0.0 && normal_sf(30.0) < 1e-190);
    }

    #[test]
    fn odd_inputs_are_harmless() {
        assert_eq!(normal_sf(f64::NAN), 1.0);
        assert_eq!(normal_sf(f64::INFINITY), 0.0);
        assert_eq!(normal_sf(f64::NEG_INFINITY), 1.0);
        assert_eq!(surprise(f64::NAN), 0.0);
        assert_eq!(surprise(0.0), 300.0);
        assert!((surprise(1e-4) - 4.0).abs() < 1e-12);
        assert!((tail_of_surprise(surprise(3e-5)) - 3e-5).abs() < 1e-15);
    }
}
