//! A keyed pseudo-random permutation of `0..n`, evaluated one index at a time.
//!
//! A balanced Feistel network over the smallest even-bit domain `4^h >= n`, with cycle walking
//! back into `0..n` (fewer than four steps on average, since `4^h < 4n`). Six rounds of a
//! SplitMix64 finalizer keyed from BLAKE3: far more mixing than a training shuffle needs, and
//! no table, so a position's sample is found in O(1) memory however large the block.

/// Rounds of the Feistel network.
const ROUNDS: usize = 6;
/// Inputs encrypted together by [`Permutation::apply_run`].
const LANES: usize = 8;

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

    /// The images of `start..end`, in order, each handed to `out`: the same as [`Self::apply`]
    /// of each, computed several at a time so that their rounds overlap in the CPU.
    pub fn apply_run(&self, start: u64, end: u64, mut out: impl FnMut(u64)) {
        let mut x = start;
        if self.n > 1 && end <= self.n {
            while x + LANES as u64 <= end {
                let mut ys: [u64; LANES] = std::array::from_fn(|lane| x + lane as u64);
                self.encrypt_lanes(&mut ys);
                // Most lanes are back inside 0..n after a step or two of cycle walking: those
                // steps are taken for all lanes together, the rare longer walks one by one.
                for _ in 0..2 {
                    if ys.iter().all(|&y| y < self.n) {
                        break;
                    }
                    let mut next = ys;
                    self.encrypt_lanes(&mut next);
                    for (y, next) in ys.iter_mut().zip(next) {
                        if *y >= self.n {
                            *y = next;
                        }
                    }
                }
                for mut y in ys {
                    while y >= self.n {
                        y = self.encrypt(y);
                    }
                    out(y);
                }
                x += LANES as u64;
            }
        }
        for x in x..end {
            out(self.apply(x));
        }
    }

    /// The Feistel network on each of `L` inputs, their rounds interleaved.
    fn encrypt_lanes<const L: usize>(&self, xs: &mut [u64; L]) {
        let mut left = xs.map(|x| x >> self.half_bits);
        let mut right = xs.map(|x| x & self.mask);
        for key in self.keys {
            for lane in 0..L {
                let next = left[lane] ^ (mix(right[lane] ^ key) & self.mask);
                left[lane] = right[lane];
                right[lane] = next;
            }
        }
        for lane in 0..L {
            xs[lane] = (left[lane] << self.half_bits) | right[lane];
        }
    }

    fn encrypt(&self, x: u64) -> u64 {
        let mut one = [x];
        self.encrypt_lanes(&mut one);
        one[0]
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

    proptest! {
        /// A run gives what each index gives alone, wherever it starts and ends.
        #[test]
        fn a_run_is_each_index_applied(
            n in 0u64..5_000,
            start in 0u64..5_100,
            len in 0u64..200,
            seed in any::<u8>(),
        ) {
            let p = Permutation::new(n, &[seed; 32]);
            let mut run = Vec::new();
            p.apply_run(start, start + len, |y| run.push(y));
            let each: Vec<u64> = (start..start + len).map(|x| p.apply(x)).collect();
            prop_assert_eq!(run, each);
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
