//! A keyed pseudo-random permutation of `0..n`, evaluated one index at a time.
//!
//! A balanced Feistel network over the smallest even-bit domain `4^h >= n`, with cycle walking
//! back into `0..n` (fewer than four steps on average, since `4^h < 4n`). Six rounds of a
//! SplitMix64 finalizer keyed from BLAKE3: far more mixing than a training shuffle needs, and
//! no table, so a position's sample is found in O(1) memory however large the block.

/// Rounds of the Feistel network.
const ROUNDS: usize = 6;

/// A permutation of `0..n`.
#[derive(Debug, Clone)]
pub struct Permutation {
    n: u64,
    half_bits: u32,
    mask: u64,
    keys: [u64; ROUNDS],
}

impl Permutation {
    /// The permutation of `0..n` that `key` (32 bytes, from BLAKE3) picks.
    pub fn new(n: u64, key: &[u8; 32]) -> Self {
        let mut xof = blake3::Hasher::new_keyed(key).finalize_xof();
        let mut keys = [0u64; ROUNDS];
        for k in &mut keys {
            let mut bytes = [0u8; 8];
            xof.fill(&mut bytes);
            *k = u64::from_le_bytes(bytes);
        }
        // The smallest h >= 1 with 4^h >= n; h <= 32 since n < 2^64.
        let bits = 64 - n.saturating_sub(1).leading_zeros();
        let half_bits = bits.div_ceil(2).max(1);
        Self {
            n,
            half_bits,
            mask: (1u64 << half_bits) - 1,
            keys,
        }
    }

    /// The image of `x`, for `x < n`; `x` itself otherwise.
    pub fn apply(&self, x: u64) -> u64 {
        if x >= self.n || self.n <= 1 {
            return x;
        }
        let mut y = self.encrypt(x);
        // Cycle walking: the first point of x's cycle back inside 0..n. It ends at x itself
        // at the latest, since the permutation of the larger domain has finite cycles.
        while y >= self.n {
            y = self.encrypt(y);
        }
        y
    }

    fn encrypt(&self, x: u64) -> u64 {
        let (mut left, mut right) = (x >> self.half_bits, x & self.mask);
        for key in self.keys {
            let next = left ^ (mix(right ^ key) & self.mask);
            left = right;
            right = next;
        }
        (left << self.half_bits) | right
    }
}

/// SplitMix64's finalizer.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn is_a_bijection(n in 0u64..3_000, seed in any::<u8>()) {
            let p = Permutation::new(n, &[seed; 32]);
            let mut seen = vec![false; usize::try_from(n).unwrap_or(0)];
            for x in 0..n {
                let y = p.apply(x);
                prop_assert!(y < n);
                let slot = &mut seen[usize::try_from(y).unwrap_or(0)];
                prop_assert!(!*slot, "{} twice", y);
                *slot = true;
            }
        }
    }

    #[test]
    fn large_domains_stay_in_range() {
        let p = Permutation::new(u64::MAX - 5, &[9; 32]);
        for x in [0, 1, u64::MAX - 6, 1 << 40] {
            assert!(p.apply(x) < u64::MAX - 5);
        }
    }

    #[test]
    fn keys_pick_different_orders() {
        let a: Vec<u64> = (0..100)
            .map(|x| Permutation::new(100, &[1; 32]).apply(x))
            .collect();
        let b: Vec<u64> = (0..100)
            .map(|x| Permutation::new(100, &[2; 32]).apply(x))
            .collect();
        assert_ne!(a, b);
        // Not the identity, and not close to it: few fixed points.
        let fixed = a
            .iter()
            .enumerate()
            .filter(|(i, y)| *i as u64 == **y)
            .count();
        assert!(fixed < 10, "{fixed} fixed points");
    }
}
