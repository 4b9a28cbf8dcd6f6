//! How long a reader waits for a piece to start arriving before it asks for another piece as
//! well. The delay follows the times pieces took to start, the way TCP's retransmission timer
//! follows round trips (RFC 6298): the smoothed time plus four times its smoothed deviation.
//! A holder that is gone or frozen then costs a reader this delay once, not a timeout.

use std::time::Duration;

/// The delay before any piece has started: a first DHT lookup, a dial and a range. Short
/// enough that a reader's first shards do not wait long on a silent holder; a hedge set off
/// too soon costs a parity piece's bytes, not correctness.
pub const FIRST_DELAY: Duration = Duration::from_millis(500);
/// The shortest delay: below it a busy machine's scheduling alone would set off hedges.
pub const MIN_DELAY: Duration = Duration::from_millis(200);
/// The longest: a holder this slow to start is as good as gone for a reader.
pub const MAX_DELAY: Duration = Duration::from_secs(5);

/// The smoothed start time of pieces and its deviation.
#[derive(Debug, Clone, Copy, Default)]
pub struct HedgeTimer {
    smoothed: Option<(Duration, Duration)>,
}

impl HedgeTimer {
    /// A piece took `sample` from its request to its first verified range.
    pub fn observe(&mut self, sample: Duration) {
        self.smoothed = Some(match self.smoothed {
            None => (sample, sample / 2),
            Some((srtt, var)) => {
                let gap = srtt.abs_diff(sample);
                (srtt * 7 / 8 + sample / 8, var * 3 / 4 + gap / 4)
            }
        });
    }

    /// How long to wait for a piece to start (or to go on) before asking another one as well.
    pub fn delay(&self) -> Duration {
        match self.smoothed {
            None => FIRST_DELAY,
            Some((srtt, var)) => (srtt + var * 4).clamp(MIN_DELAY, MAX_DELAY),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_follows_the_start_times_within_its_bounds() {
        let mut timer = HedgeTimer::default();
        assert_eq!(timer.delay(), FIRST_DELAY);
        for _ in 0..50 {
            timer.observe(Duration::from_millis(20));
        }
        assert_eq!(timer.delay(), MIN_DELAY, "fast starts: the floor");
        for _ in 0..50 {
            timer.observe(Duration::from_millis(400));
        }
        let steady = timer.delay();
        assert!(
            steady >= Duration::from_millis(400) && steady < Duration::from_millis(600),
            "{steady:?}"
        );
        // Start times that swing widely widen the delay.
        for i in 0..50 {
            timer.observe(Duration::from_millis(if i % 2 == 0 { 100 } else { 900 }));
        }
        assert!(
            timer.delay() > Duration::from_secs(1),
            "{:?}",
            timer.delay()
        );
        for _ in 0..50 {
            timer.observe(Duration::from_secs(60));
        }
        assert_eq!(timer.delay(), MAX_DELAY, "slow starts: the ceiling");
    }
}
