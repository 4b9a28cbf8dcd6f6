//! The analytic loss model where it applies: independent holders, each gone by the end with
//! probability `p`, no repair. A shard of `n = k + m` pieces is lost when more than `m` of its
//! holders are gone: a binomial tail.

// Simulation arithmetic on bounded counts and times: pieces are at most 1e8 (checked in
// `SimConfig::check`), times at most ten years in ms; f64 is the model's own precision.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

/// The probability that more than `m` of `n` independent holders are gone, each with
/// probability `p`.
pub fn loss_probability(n: u32, m: u32, p: f64) -> f64 {
    (m + 1..=n)
        .map(|j| binomial(n, j) * p.powi(j as i32) * (1.0 - p).powi((n - j) as i32))
        .sum()
}

/// The chance that a node leaving at `monthly` per month (exponential lifetimes) is gone
/// after `days`.
pub fn gone_after(monthly: f64, days: f64) -> f64 {
    1.0 - (-monthly * days / 30.0).exp()
}

fn binomial(n: u32, j: u32) -> f64 {
    (0..j).fold(1.0, |acc, i| acc * f64::from(n - i) / f64::from(i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binomial_tail_adds_up() {
        assert!((binomial(6, 2) - 15.0).abs() < 1e-12);
        let total: f64 = loss_probability(6, 0, 0.3) + (0.7f64).powi(6);
        assert!((total - 1.0).abs() < 1e-12, "{total}");
        assert!(loss_probability(6, 2, 0.0) == 0.0);
        assert!((loss_probability(6, 5, 1.0) - 1.0).abs() < 1e-12);
    }
}
