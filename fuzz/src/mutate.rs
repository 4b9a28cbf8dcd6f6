//! Mutations of seed inputs: the bit flips, boundary numbers, deletions, repetitions, splices
//! and dictionary words that find decoder bugs without coverage feedback.

use rand::{Rng, RngCore};

/// Largest input a mutation makes.
pub const MAX_INPUT: usize = 1 << 20;

/// Numbers at the edges of integer types, as little- and big-endian bytes are written.
const INTERESTING: [u64; 12] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
];

/// `seed` changed by one to eight stacked mutations; `dictionary` words may be inserted and
/// `others` spliced in.
pub fn mutate(
    rng: &mut impl RngCore,
    seed: &[u8],
    others: &[Vec<u8>],
    dictionary: &[&[u8]],
) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..rng.random_range(1..=8) {
        one(rng, &mut data, others, dictionary);
        data.truncate(MAX_INPUT);
    }
    data
}

fn one(rng: &mut impl RngCore, data: &mut Vec<u8>, others: &[Vec<u8>], dictionary: &[&[u8]]) {
    let len = data.len();
    let at = |rng: &mut dyn RngCore, extra: usize| rng.random_range(0..len + extra);
    match rng.random_range(0..10) {
        0 if len > 0 => {
            let i = at(rng, 0);
            data[i] ^= 1 << rng.random_range(0..8);
        }
        1 if len > 0 => {
            let i = at(rng, 0);
            data[i] = rng.random();
        }
        2 => {
            let v = INTERESTING[rng.random_range(0..INTERESTING.len())];
            let width = [1usize, 2, 4, 8][rng.random_range(0..4)];
            let bytes: Vec<u8> = if rng.random() {
                v.to_le_bytes()[..width].to_vec()
            } else {
                v.to_be_bytes()[8 - width..].to_vec()
            };
            let i = if len >= width {
                rng.random_range(0..=len - width)
            } else {
                0
            };
            let end = (i + width).min(len);
            data.splice(i..end, bytes);
        }
        3 if len > 0 => {
            let i = at(rng, 0);
            let n = rng.random_range(1..=(len - i).min(64));
            data.drain(i..i + n);
        }
        4 => {
            let i = at(rng, 1);
            let n = rng.random_range(1..=16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            data.splice(i..i, bytes);
        }
        // A range repeated many times: deep nesting, long lists, huge counts.
        5 if len > 0 => {
            let i = at(rng, 0);
            let n = rng.random_range(1..=(len - i).min(32));
            let times = [2usize, 16, 256, 4096][rng.random_range(0..4)];
            let chunk = data[i..i + n].to_vec();
            let repeated: Vec<u8> = chunk
                .iter()
                .copied()
                .cycle()
                .take((n * times).min(MAX_INPUT))
                .collect();
            data.splice(i..i, repeated);
        }
        6 if !others.is_empty() => {
            let other = &others[rng.random_range(0..others.len())];
            if !other.is_empty() {
                let from = rng.random_range(0..other.len());
                let to = rng.random_range(from..=other.len());
                let i = at(rng, 1);
                data.splice(i..i, other[from..to].iter().copied());
            }
        }
        7 | 8 if !dictionary.is_empty() => {
            let word = dictionary[rng.random_range(0..dictionary.len())];
            let i = at(rng, 1);
            data.splice(i..i, word.iter().copied());
        }
        9 if len > 1 => {
            let i = at(rng, 0);
            data.truncate(i);
        }
        _ => {
            let i = at(rng, 1);
            data.insert(i, rng.random());
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{SeedableRng, rngs::StdRng};

    use super::*;

    #[test]
    fn mutations_stay_bounded_and_change_the_input() {
        let mut rng = StdRng::seed_from_u64(7);
        let seed = b"<html><body><p>hello</p></body></html>".to_vec();
        let mut changed = 0;
        for _ in 0..2000 {
            let m = mutate(&mut rng, &seed, &[b"other".to_vec()], &[b"<div>"]);
            assert!(m.len() <= MAX_INPUT);
            changed += usize::from(m != seed);
        }
        assert!(changed > 1900, "{changed}");
        // Empty seeds are mutated too.
        let m = mutate(&mut rng, &[], &[], &[]);
        assert!(m.len() <= MAX_INPUT);
    }
}
