//! Wall-clock time as Tessera's records carry it: milliseconds since the Unix epoch.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    ms_of(SystemTime::now())
}

/// `t` in milliseconds since the Unix epoch: 0 for a time before 1970, `u64::MAX` for one too
/// far ahead to count.
pub fn ms_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn times_before_the_epoch_are_zero_and_after_count_in_ms() {
        assert_eq!(ms_of(UNIX_EPOCH - Duration::from_secs(1)), 0);
        assert_eq!(ms_of(UNIX_EPOCH + Duration::from_millis(1_700)), 1_700);
        assert!(now_ms() > 1_700_000_000_000);
    }
}
