//! When a holder counts as having lost a piece, and when a shard needs repair: rules over
//! what an auditor saw, with no clock or network of their own.
//!
//! ```text
//! (holder, piece) audits:  pass ─▶ good
//!                          failures in a row < threshold ─▶ suspect (still counted)
//!                          ≥ threshold, one of them a definite answer (bad proof,
//!                            refusal) ─▶ failed
//!                          ≥ threshold, all of them silence (timeout, unreachable) ─▶
//!                            suspect until `grace` after the first, then failed
//! shard: intact pieces = pieces with a good or suspect holder
//!        intact >= k + spare ─▶ healthy;  k <= intact < k + spare ─▶ repair;  < k ─▶ lost
//! ```
//!
//! A node that blinks (a restart, a flaky link) only ever stays silent, so the grace period
//! keeps it from starting a wave of repairs; a node that answers wrongly is failed at once
//! after the threshold, since waiting cannot bring its bytes back.

use std::{
    collections::HashMap,
    hash::{BuildHasher, Hash, RandomState},
};

use tessera_formats::AuditResult;

/// When a run of failures fails a holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Failures in a row that fail a holder (at least 1).
    pub threshold: u32,
    /// How long a holder that only stays silent is waited for, from its first failure.
    pub grace_ms: u64,
}

/// How a holder stands with one piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Its last audit passed, or it was never audited.
    Good,
    /// It is failing, but not yet past the threshold (and the grace): still counted.
    Suspect,
    /// It lost the piece, as far as audits can tell.
    Failed,
}

impl Standing {
    /// Whether the piece counts as held by this holder.
    pub fn counts(self) -> bool {
        self != Self::Failed
    }
}

/// A run of failures in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Streak {
    /// Failures so far.
    pub failures: u32,
    /// When the first of them happened (ms).
    pub since_ms: u64,
    /// Whether one of them was an answer (a bad proof or a refusal), not silence.
    pub definite: bool,
    /// Whether [`Standings::record`] has said that it failed.
    pub reported: bool,
}

/// The streaks of every (holder, piece) pair an auditor follows; a pass clears a pair. `S`
/// hashes the pairs: the default resists keys chosen by others; the simulator, whose keys are
/// its own, uses a faster one.
#[derive(Debug, Clone)]
pub struct Standings<K, S = RandomState> {
    rules: Rules,
    streaks: HashMap<K, Streak, S>,
}

impl<K: Eq + Hash + Clone> Standings<K> {
    /// No streaks yet.
    pub fn new(rules: Rules) -> Self {
        Self::with_hasher(rules)
    }
}

impl<K: Eq + Hash + Clone, S: BuildHasher + Default> Standings<K, S> {
    /// No streaks yet, the pairs hashed by `S`.
    pub fn with_hasher(rules: Rules) -> Self {
        Self {
            rules: Rules {
                threshold: rules.threshold.max(1),
                ..rules
            },
            streaks: HashMap::default(),
        }
    }

    /// Records one audit of `key` at `time_ms`; returns true for the first audit that finds
    /// the holder failed (once per streak).
    pub fn record(&mut self, key: K, result: AuditResult, time_ms: u64) -> bool {
        if result.passed() {
            self.streaks.remove(&key);
            return false;
        }
        let streak = self.streaks.entry(key.clone()).or_insert(Streak {
            failures: 0,
            since_ms: time_ms,
            definite: false,
            reported: false,
        });
        streak.failures = streak.failures.saturating_add(1);
        streak.definite |= matches!(result, AuditResult::BadProof | AuditResult::Refused);
        if self.standing(&key, time_ms) != Standing::Failed {
            return false;
        }
        let Some(streak) = self.streaks.get_mut(&key) else {
            return false;
        };
        !std::mem::replace(&mut streak.reported, true)
    }

    /// How `key` stands at `now_ms`.
    pub fn standing(&self, key: &K, now_ms: u64) -> Standing {
        let Some(streak) = self.streaks.get(key) else {
            return Standing::Good;
        };
        if streak.failures < self.rules.threshold {
            return Standing::Suspect;
        }
        let waited = now_ms.saturating_sub(streak.since_ms);
        if streak.definite || waited >= self.rules.grace_ms {
            Standing::Failed
        } else {
            Standing::Suspect
        }
    }

    /// The streak of `key`, if it is failing.
    pub fn streak(&self, key: &K) -> Option<&Streak> {
        self.streaks.get(key)
    }

    /// Every failing pair.
    pub fn failing(&self) -> impl Iterator<Item = (&K, &Streak)> {
        self.streaks.iter()
    }

    /// Forgets `key` (its node is no longer a holder).
    pub fn forget(&mut self, key: &K) {
        self.streaks.remove(key);
    }
}

/// What a shard needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Enough pieces are intact.
    Healthy,
    /// Fewer than the threshold are intact but at least `k`: rebuild these pieces.
    Repair(Vec<usize>),
    /// Fewer than `k` pieces are intact: the shard cannot be rebuilt from the network.
    Lost,
}

/// The intact pieces below which a shard of `k + m` pieces is repaired: `k + ceil(spare * m)`
/// with `spare` in `0..=1`, at least `k + 1` and at most `k + m`.
pub fn repair_below(k: usize, m: usize, spare: f64) -> usize {
    let spare = if spare.is_finite() {
        spare.clamp(0.0, 1.0)
    } else {
        1.0
    };
    // m <= 255, so the product is small and exact enough.
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let extra = (spare * m as f64).ceil() as usize;
    k + extra.clamp(1.min(m), m)
}

/// The verdict for a shard whose piece `i` is intact when `intact[i]`.
pub fn verdict(intact: &[bool], k: usize, m: usize, spare: f64) -> Verdict {
    let count = intact.iter().filter(|i| **i).count();
    if count < k {
        return Verdict::Lost;
    }
    if count >= repair_below(k, m, spare) {
        return Verdict::Healthy;
    }
    Verdict::Repair(
        intact
            .iter()
            .enumerate()
            .filter(|(_, i)| !**i)
            .map(|(index, _)| index)
            .collect(),
    )
}

/// The verdict for a shard whose piece `i` is intact when `intact[i]` and counts as an
/// independent copy when `independent[i]` (a subset: copies in one subnet count once). A
/// shard is lost only when too few pieces are intact at all; it is repaired when too few are
/// independent, the pieces that are not rebuilt elsewhere.
pub fn verdict_spread(
    intact: &[bool],
    independent: &[bool],
    k: usize,
    m: usize,
    spare: f64,
) -> Verdict {
    match verdict(intact, k, m, spare) {
        Verdict::Lost => Verdict::Lost,
        _ => match verdict(independent, k, m, spare) {
            Verdict::Lost => Verdict::Repair(
                independent
                    .iter()
                    .enumerate()
                    .filter(|(_, i)| !**i)
                    .map(|(index, _)| index)
                    .collect(),
            ),
            spread => spread,
        },
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const RULES: Rules = Rules {
        threshold: 3,
        grace_ms: 1_000,
    };

    #[test]
    fn copies_crowded_in_one_subnet_are_repaired_not_lost() {
        let all = [true; 5];
        // Every piece intact, three of them only as a second copy in a subnet.
        let spread = [true, true, false, false, false];
        assert_eq!(
            verdict_spread(&all, &spread, 3, 2, 1.0),
            Verdict::Repair(vec![2, 3, 4])
        );
        assert_eq!(verdict_spread(&all, &all, 3, 2, 1.0), Verdict::Healthy);
        let few = [true, true, false, false, false];
        assert_eq!(verdict_spread(&few, &few, 3, 2, 1.0), Verdict::Lost);
    }

    #[test]
    fn a_wrong_answer_fails_after_the_threshold() {
        let mut s = Standings::new(RULES);
        assert_eq!(s.standing(&"a", 0), Standing::Good);
        assert!(!s.record("a", AuditResult::BadProof, 0));
        assert!(!s.record("a", AuditResult::Timeout, 1));
        assert_eq!(s.standing(&"a", 1), Standing::Suspect);
        assert!(s.record("a", AuditResult::Refused, 2));
        assert_eq!(s.standing(&"a", 2), Standing::Failed);
        // Said once per streak.
        assert!(!s.record("a", AuditResult::BadProof, 3));
        // A pass starts over.
        assert!(!s.record("a", AuditResult::Passed, 4));
        assert_eq!(s.standing(&"a", 4), Standing::Good);
        assert!(s.streak(&"a").is_none());
    }

    #[test]
    fn silence_is_waited_for_until_the_grace_ends() {
        let mut s = Standings::new(RULES);
        for t in 0..3 {
            assert!(!s.record("a", AuditResult::Unreachable, t * 100));
        }
        assert_eq!(s.standing(&"a", 999), Standing::Suspect);
        assert_eq!(s.standing(&"a", 1_000), Standing::Failed);
        // The audit after the grace is the one that says so.
        assert!(s.record("a", AuditResult::Timeout, 1_000));
        let mut quick = Standings::new(Rules {
            threshold: 0,
            grace_ms: 0,
        });
        assert!(
            quick.record("b", AuditResult::Timeout, 5),
            "a threshold of 0 is 1"
        );
        quick.forget(&"b");
        assert_eq!(quick.standing(&"b", 5), Standing::Good);
    }

    #[test]
    fn shards_are_repaired_below_the_threshold() {
        assert_eq!(repair_below(3, 2, 0.5), 4);
        assert_eq!(repair_below(10, 4, 0.5), 12);
        assert_eq!(repair_below(3, 2, 1.0), 5);
        assert_eq!(repair_below(3, 2, 0.0), 4, "at least one spare");
        assert_eq!(repair_below(3, 2, f64::NAN), 5);
        let all = [true; 5];
        assert_eq!(verdict(&all, 3, 2, 1.0), Verdict::Healthy);
        let one_lost = [true, false, true, true, true];
        assert_eq!(verdict(&one_lost, 3, 2, 0.5), Verdict::Healthy);
        assert_eq!(verdict(&one_lost, 3, 2, 1.0), Verdict::Repair(vec![1]));
        let two_lost = [true, false, true, false, true];
        assert_eq!(verdict(&two_lost, 3, 2, 0.5), Verdict::Repair(vec![1, 3]));
        let three_lost = [false, false, true, false, true];
        assert_eq!(verdict(&three_lost, 3, 2, 0.5), Verdict::Lost);
    }

    proptest! {
        #[test]
        fn the_threshold_lies_between_k_and_k_plus_m(k in 1usize..200, m in 1usize..56, spare in -1.0f64..2.0) {
            let below = repair_below(k, m, spare);
            prop_assert!(below > k && below <= k + m);
        }
    }
}
