//! How long a reader waits for a piece to start arriving before it asks for another piece as
//! well: the times pieces took to start, smoothed as TCP smooths round trips. A holder that is
//! gone or frozen then costs a reader this delay once, not a timeout.

use std::time::Duration;

use tessera_net::smoothed::Smoothed;

/// The delay before any piece has started: a first DHT lookup, a dial and a range. Short
/// enough that a reader's first shards do not wait long on a silent holder; a hedge set off
/// too soon costs a parity piece's bytes, not correctness.
pub const FIRST_DELAY: Duration = Duration::from_millis(500);
/// The shortest delay: below it a busy machine's scheduling alone would set off hedges.
pub const MIN_DELAY: Duration = Duration::from_millis(200);
/// The longest: a holder this slow to start is as good as gone for a reader.
pub const MAX_DELAY: Duration = Duration::from_secs(5);

/// The smoothed start time of pieces.
#[derive(Debug, Clone, Copy, Default)]
pub struct HedgeTimer {
    starts: Smoothed,
}

impl HedgeTimer {
    /// A piece took `sample` from its request to its first verified range.
    pub fn observe(&mut self, sample: Duration) {
        self.starts.observe(sample);
    }

    /// How long to wait for a piece to start (or to go on) before asking another one as well.
    pub fn delay(&self) -> Duration {
        self.starts.wait(FIRST_DELAY, MIN_DELAY, MAX_DELAY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_starts_at_the_first_and_stays_within_its_bounds() {
        let mut timer = HedgeTimer::default();
        assert_eq!(timer.delay(), FIRST_DELAY);
        timer.observe(Duration::from_millis(1));
        assert_eq!(timer.delay(), MIN_DELAY);
        timer.observe(Duration::from_secs(600));
        assert_eq!(timer.delay(), MAX_DELAY);
    }
}
