//! A duration smoothed the way TCP smooths round trips (RFC 6298): an estimate of the typical
//! time, and how far times stray from it. "Typical plus four deviations" is a wait past which
//! something is most likely wrong, not merely slow; the network uses it for dials, readers for
//! the start of a piece.

use std::time::Duration;

/// The smoothed time and its smoothed deviation; nothing before the first sample.
#[derive(Debug, Clone, Copy, Default)]
pub struct Smoothed {
    estimate: Option<(Duration, Duration)>,
}

impl Smoothed {
    /// One more time taken.
    pub fn observe(&mut self, sample: Duration) {
        self.estimate = Some(match self.estimate {
            None => (sample, sample / 2),
            Some((typical, deviation)) => {
                let gap = typical.abs_diff(sample);
                (typical * 7 / 8 + sample / 8, deviation * 3 / 4 + gap / 4)
            }
        });
    }

    /// How long to wait before taking a thing for lost: `first` before any sample, then the
    /// typical time plus four deviations, within `min..=max`.
    pub fn wait(&self, first: Duration, min: Duration, max: Duration) -> Duration {
        match self.estimate {
            None => first,
            Some((typical, deviation)) => (typical + deviation * 4).clamp(min, max),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_wait_follows_the_samples_within_its_bounds() {
        let wait = |s: &Smoothed| s.wait(500 * MS, 200 * MS, 5000 * MS);
        let mut times = Smoothed::default();
        assert_eq!(wait(&times), 500 * MS, "before any sample");
        for _ in 0..50 {
            times.observe(20 * MS);
        }
        assert_eq!(wait(&times), 200 * MS, "fast: the floor");
        for _ in 0..50 {
            times.observe(400 * MS);
        }
        let steady = wait(&times);
        assert!(steady >= 400 * MS && steady < 600 * MS, "{steady:?}");
        // Times that swing widely widen the wait.
        for i in 0..50 {
            times.observe(if i % 2 == 0 { 100 * MS } else { 900 * MS });
        }
        assert!(wait(&times) > 1000 * MS, "{:?}", wait(&times));
        for _ in 0..50 {
            times.observe(60_000 * MS);
        }
        assert_eq!(wait(&times), 5000 * MS, "slow: the ceiling");
    }
}
