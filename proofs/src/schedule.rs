//! Which pieces an auditor challenges, and when.
//!
//! An auditor works in periods of `period`, each cut into rounds of `interval`. At a
//! period's start it draws a secret seed and orders the pieces it knows by a keyed hash of
//! (seed, piece); round `r` of the period takes the `r`-th slice of that order. So every piece
//! known at the period's start is challenged once in the period, and a node cannot tell
//! which round its piece falls in: the order depends on a seed only the auditor knows.
//!
//! ```text
//! rounds per period R = ceil(period / interval)
//! pieces per round    = ceil(pieces / R)
//! round r: order[r * per_round .. (r + 1) * per_round]
//! ```

use std::time::Duration;

use cid::Cid;

/// An auditor's rounds and periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Time between two rounds.
    pub interval: Duration,
    /// Every piece is challenged once in this time.
    pub period: Duration,
}

impl Schedule {
    /// Rounds in a period: at least one.
    pub fn rounds_per_period(&self) -> u64 {
        let interval = self.interval.as_millis().max(1);
        u64::try_from(self.period.as_millis().div_ceil(interval))
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Pieces challenged in one round when `pieces` are known.
    pub fn per_round(&self, pieces: usize) -> usize {
        let rounds = usize::try_from(self.rounds_per_period()).unwrap_or(usize::MAX);
        pieces.div_ceil(rounds)
    }

    /// The pieces to challenge in round `round` (counted from 0 within the period) of the
    /// period whose secret seed is `seed`.
    pub fn round<'a>(&self, pieces: &'a [Cid], seed: &[u8; 32], round: u64) -> Vec<&'a Cid> {
        let order = Self::order(pieces, seed);
        order[self.slice(pieces.len(), round)]
            .iter()
            .map(|&i| &pieces[i])
            .collect()
    }

    /// The period's order of `pieces` under `seed`, as indices: the keyed hash of each CID,
    /// smallest first. Computed once a period, it gives every round its slice.
    pub fn order(pieces: &[Cid], seed: &[u8; 32]) -> Vec<usize> {
        // One buffer for every CID's bytes: a period of a million pieces allocates once.
        let mut bytes = Vec::with_capacity(64);
        let mut order: Vec<([u8; 32], usize)> = pieces
            .iter()
            .enumerate()
            .map(|(i, p)| {
                bytes.clear();
                // Writing into a Vec cannot fail; the bytes are `to_bytes`'s.
                let _ = p.write_bytes(&mut bytes);
                let mut h = blake3::Hasher::new_keyed(seed);
                h.update(&bytes);
                (*h.finalize().as_bytes(), i)
            })
            .collect();
        order.sort_unstable();
        order.into_iter().map(|(_, i)| i).collect()
    }

    /// The positions in a period's order that round `round` takes, of `pieces` pieces.
    pub fn slice(&self, pieces: usize, round: u64) -> std::ops::Range<usize> {
        let per_round = self.per_round(pieces);
        let start = usize::try_from(round)
            .unwrap_or(usize::MAX)
            .saturating_mul(per_round)
            .min(pieces);
        start..start.saturating_add(per_round).min(pieces)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;
    use tessera_formats::address::raw_cid;

    use super::*;

    fn pieces(n: usize) -> Vec<Cid> {
        (0..n).map(|i| raw_cid(&(i as u64).to_le_bytes())).collect()
    }

    proptest! {
        #[test]
        fn every_piece_is_challenged_once_per_period(
            n in 0usize..300,
            interval_min in 1u64..120,
            period_min in 1u64..2000,
            seed in any::<[u8; 32]>(),
        ) {
            let schedule = Schedule {
                interval: Duration::from_secs(interval_min * 60),
                period: Duration::from_secs(period_min * 60),
            };
            let all = pieces(n);
            let mut seen = Vec::new();
            for r in 0..schedule.rounds_per_period() {
                let round = schedule.round(&all, &seed, r);
                prop_assert!(round.len() <= schedule.per_round(n));
                seen.extend(round.into_iter().cloned());
            }
            prop_assert_eq!(seen.len(), n);
            let distinct: BTreeSet<_> = seen.iter().map(|c| c.to_bytes()).collect();
            prop_assert_eq!(distinct.len(), n);
        }
    }

    #[test]
    fn the_order_depends_on_the_seed() {
        let schedule = Schedule {
            interval: Duration::from_secs(30 * 60),
            period: Duration::from_secs(24 * 3600),
        };
        assert_eq!(schedule.rounds_per_period(), 48);
        assert_eq!(schedule.per_round(1000), 21);
        let all = pieces(1000);
        let a = schedule.round(&all, &[1; 32], 0);
        let b = schedule.round(&all, &[2; 32], 0);
        assert_eq!(a, schedule.round(&all, &[1; 32], 0));
        assert_ne!(a, b);
        // A period shorter than a round is one round of everything.
        let short = Schedule {
            interval: Duration::from_secs(3600),
            period: Duration::from_secs(60),
        };
        assert_eq!(short.rounds_per_period(), 1);
        assert_eq!(short.round(&all, &[1; 32], 0).len(), 1000);
        assert!(short.round(&all, &[1; 32], 1).is_empty());
    }
}
