//! Where the bytes of a data piece lie in the original, so that a reader with every data piece
//! writes each verified range straight to its place in the shard instead of spooling pieces
//! and decoding them.
//!
//! ```text
//! piece i < k:  [header][block i of stripe 0][block i of stripe 1]...
//!                          │                    │
//! original:     [stripe 0: block 0 .. block i .. block k-1][stripe 1: ..]...
//! ```
//! The header and the zero padding of the last stripe have no place in the original.

use super::{header::HEADER_LEN, params::Geometry};

/// A run of a piece's bytes that is a run of the original.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Offset in the original.
    pub original: u64,
    /// Offset of the run in the piece range it was cut from.
    pub at: u64,
    /// Length.
    pub len: u64,
}

impl Geometry {
    /// The runs of the original in bytes `start..start + len` of data piece `index`, in order.
    /// Empty for a parity piece; bytes past the piece's end have no run.
    pub fn data_runs(&self, index: usize, start: u64, len: u64) -> Vec<Run> {
        let mut runs = Vec::new();
        let index = index as u64;
        if index >= self.k {
            return runs;
        }
        let header = HEADER_LEN as u64;
        let end = start
            .saturating_add(len)
            .min(header + self.piece_body_len());
        let full_body = self.full_stripes * self.stripe_size;
        let mut at = start.max(header);
        while at < end {
            let body = at - header;
            let (stripe, offset) = if body < full_body {
                (body / self.stripe_size, body % self.stripe_size)
            } else {
                (self.full_stripes, body - full_body)
            };
            let block = self.block_len(stripe);
            // The last stripe's blocks are padded: only the original's bytes have a place.
            let valid = self
                .data_len(stripe)
                .saturating_sub(index * block)
                .min(block);
            let step = (block - offset).min(end - at);
            if offset < valid {
                runs.push(Run {
                    original: stripe * self.k * self.stripe_size + index * block + offset,
                    at: at - start,
                    len: step.min(valid - offset),
                });
            }
            at += step;
        }
        runs
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::erasure::{ErasureParams, encode_to_vecs};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Placing every data piece's bytes, cut into ranges anywhere, rebuilds the original,
        /// every byte written once.
        #[test]
        fn data_runs_rebuild_the_original(
            k in 1u16..6,
            m in 1u16..3,
            stripe in prop::sample::select(vec![1024u32, 2048, 4096]),
            len in 1usize..40_000,
            cut in 1u64..9_000,
            seed in any::<u64>(),
        ) {
            let data: Vec<u8> = (0..len as u64).map(|i| seed.wrapping_mul(i + 1).to_le_bytes()[2]).collect();
            let params = ErasureParams::new(k, m, stripe).unwrap();
            let (_, pieces) = encode_to_vecs(params, &data).unwrap();
            let geometry = params.geometry(len as u64);
            let mut out = vec![0u8; len];
            let mut written = vec![0u8; len];
            for (index, piece) in pieces.iter().enumerate() {
                let mut start = 0u64;
                while start < piece.len() as u64 {
                    let n = cut.min(piece.len() as u64 - start);
                    let at = |x: u64| usize::try_from(x).unwrap();
                    let bytes = &piece[at(start)..at(start + n)];
                    for run in geometry.data_runs(index, start, n) {
                        let (o, a, l) = (at(run.original), at(run.at), at(run.len));
                        out[o..o + l].copy_from_slice(&bytes[a..a + l]);
                        for w in &mut written[o..o + l] {
                            *w += 1;
                        }
                    }
                    start += n;
                }
                if index >= usize::from(k) {
                    prop_assert!(geometry.data_runs(index, 0, piece.len() as u64).is_empty());
                }
            }
            prop_assert!(written.iter().all(|&w| w == 1));
            prop_assert_eq!(out, data);
        }
    }

    #[test]
    fn header_and_bytes_past_the_end_have_no_place() {
        let params = ErasureParams::new(2, 1, 1024).unwrap();
        let geometry = params.geometry(3000);
        assert!(geometry.data_runs(0, 0, HEADER_LEN as u64).is_empty());
        let piece_len = HEADER_LEN as u64 + geometry.piece_body_len();
        assert!(geometry.data_runs(1, piece_len, 100).is_empty());
        assert!(geometry.data_runs(1, u64::MAX - 1, 100).is_empty());
    }
}
