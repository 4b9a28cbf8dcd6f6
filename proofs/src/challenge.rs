//! Challenges: which chunks of a piece a prover must show, and how often loss goes unnoticed.
//!
//! A challenge names a piece CID, a fresh 32-byte nonce and a sample count `c`. The sampled
//! chunk indices come from BLAKE3 in key-derivation mode over the CID and the nonce, so the
//! prover cannot choose them, and without the nonce it cannot know them in advance. The last
//! chunk is always shown too: it pins the piece's length, which the sample positions depend on.
//!
//! Detection: a node that lost a fraction `f` of a piece's chunks answers one challenge only if
//! none of the `c` independent samples falls on a lost chunk, which happens with probability
//! `(1 - f)^c`. That is the bound against the strongest cheater, one who kept every chunk-level
//! hash; one who kept only the group-level outboard also fails when a lost chunk shares a 16 KiB
//! group with a sample.

use cid::Cid;
use serde::{Deserialize, Serialize};
use tessera_formats::address::{BLAKE3, blake3_digest};

use crate::tree::chunk_count;

/// Default samples per challenge: the smallest `c` with `(1 - 0.01)^c <= 0.001`, so that losing
/// 1% of a piece is caught with at least 99.9% probability by a single challenge.
pub const DEFAULT_SAMPLES: u32 = 688;
/// Most samples one challenge may ask for; bounds the work and the proof size.
pub const MAX_SAMPLES: u32 = 4096;

const SAMPLE_CONTEXT: &str = "tessera proofs v1 2026-11 challenge sample positions";

/// A challenge that cannot be answered or checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChallengeError {
    /// The piece CID does not carry a BLAKE3 root.
    #[error("piece CID {0} is not a BLAKE3 CID: its hash is not a tree root a proof can reach")]
    NotBlake3(String),
    /// The sample count is out of range.
    #[error("{0} samples; a challenge asks for 1 to {MAX_SAMPLES}")]
    Samples(u32),
}

/// What a verifier asks of a prover.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Challenge {
    /// The piece to prove.
    pub piece: Cid,
    /// Fresh randomness from the verifier.
    pub nonce: [u8; 32],
    /// How many chunks to sample.
    pub samples: u32,
}

impl Challenge {
    /// A challenge with a fresh random nonce and the default sample count.
    pub fn random(piece: Cid) -> Self {
        Self {
            piece,
            nonce: rand::random(),
            samples: DEFAULT_SAMPLES,
        }
    }

    /// Checks the challenge can be answered; returns the piece's BLAKE3 root.
    pub fn validate(&self) -> Result<[u8; 32], ChallengeError> {
        if !(1..=MAX_SAMPLES).contains(&self.samples) {
            return Err(ChallengeError::Samples(self.samples));
        }
        if self.piece.hash().code() != BLAKE3 {
            return Err(ChallengeError::NotBlake3(self.piece.to_string()));
        }
        blake3_digest(&self.piece).ok_or_else(|| ChallengeError::NotBlake3(self.piece.to_string()))
    }

    /// The sorted, distinct chunk indices to show for a piece of `size` bytes: `samples` draws
    /// with replacement, plus the last chunk.
    pub fn chunk_indices(&self, size: u64) -> Vec<u64> {
        let chunks = chunk_count(size);
        let mut hasher = blake3::Hasher::new_derive_key(SAMPLE_CONTEXT);
        hasher.update(&self.piece.to_bytes());
        hasher.update(&self.nonce);
        hasher.update(&size.to_le_bytes());
        let mut xof = hasher.finalize_xof();
        let mut indices = Vec::with_capacity(self.samples as usize + 1);
        let mut word = [0u8; 8];
        for _ in 0..self.samples.min(MAX_SAMPLES) {
            xof.fill(&mut word);
            // Multiply-shift maps 64 random bits onto 0..chunks with negligible bias.
            let wide = u128::from(u64::from_le_bytes(word)) * u128::from(chunks);
            indices.push(u64::try_from(wide >> 64).unwrap_or(0));
        }
        indices.push(chunks - 1);
        indices.sort_unstable();
        indices.dedup();
        indices
    }
}

/// The probability that a node which lost a fraction `lost` of a piece passes one challenge of
/// `samples` samples: `(1 - lost)^samples`.
pub fn pass_probability(lost: f64, samples: u32) -> f64 {
    (1.0 - lost.clamp(0.0, 1.0)).powi(i32::try_from(samples).unwrap_or(i32::MAX))
}

/// The fewest samples that catch the loss of a fraction `lost` with at least probability
/// `detect`.
pub fn samples_for(lost: f64, detect: f64) -> u32 {
    if lost <= 0.0 {
        return MAX_SAMPLES;
    }
    if lost >= 1.0 || detect <= 0.0 {
        return 1;
    }
    let c = ((1.0 - detect).ln() / (1.0 - lost).ln()).ceil();
    if c.is_finite() && c >= 1.0 {
        // Clamped to 1..=MAX_SAMPLES first, so the cast is exact.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let c = c.min(f64::from(MAX_SAMPLES)) as u32;
        c
    } else {
        MAX_SAMPLES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece() -> Cid {
        tessera_formats::address::raw_cid(b"piece")
    }

    #[test]
    fn default_samples_meet_the_target() {
        assert_eq!(samples_for(0.01, 0.999), DEFAULT_SAMPLES);
        assert!(pass_probability(0.01, DEFAULT_SAMPLES) <= 0.001);
        assert!(pass_probability(0.01, DEFAULT_SAMPLES - 1) > 0.001);
    }

    #[test]
    fn indices_depend_on_the_nonce_and_stay_in_range() {
        let a = Challenge {
            piece: piece(),
            nonce: [1; 32],
            samples: 100,
        };
        let b = Challenge {
            nonce: [2; 32],
            ..a.clone()
        };
        let size = 10 * 1024 * 1024;
        let ia = a.chunk_indices(size);
        assert_eq!(ia, a.chunk_indices(size));
        assert_ne!(ia, b.chunk_indices(size));
        assert!(ia.iter().all(|&i| i < 10 * 1024));
        assert_eq!(ia.last(), Some(&(10 * 1024 - 1)));
        assert!(ia.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(a.chunk_indices(0), vec![0]);
    }

    #[test]
    fn bad_challenges_are_refused() {
        let mut c = Challenge::random(piece());
        c.samples = 0;
        assert_eq!(c.validate(), Err(ChallengeError::Samples(0)));
        c.samples = MAX_SAMPLES + 1;
        assert!(c.validate().is_err());
        let sha = tessera_formats::address::parse(
            "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4",
        )
        .unwrap();
        assert!(matches!(
            Challenge::random(sha).validate(),
            Err(ChallengeError::NotBlake3(_))
        ));
    }
}
