//! The verifier: checks a proof against the piece CID and the challenge alone.

use blake3::hazmat::{ChainingValue, Mode, merge_subtrees_non_root, merge_subtrees_root};

use crate::{
    challenge::{Challenge, ChallengeError},
    prove::{MAX_PROOF_BODY, Proof},
    tree::{CHUNK, Node, subtree_cv},
};

/// Why a proof was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The challenge is malformed.
    #[error(transparent)]
    Challenge(#[from] ChallengeError),
    /// The proof is for another piece.
    #[error("proof is for piece {found}, the challenge named {expected}")]
    WrongPiece {
        /// The challenged piece.
        expected: String,
        /// The piece the proof names.
        found: String,
    },
    /// The proof answers another challenge.
    #[error("proof answers another nonce")]
    WrongNonce,
    /// The body is larger than any honest proof.
    #[error("proof body of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// The body ended early.
    #[error("proof body ends early")]
    Truncated,
    /// The body has bytes left over.
    #[error("proof body has {0} bytes left over")]
    TrailingBytes(usize),
    /// The hashes do not lead to the piece's root: a chunk or hash is wrong.
    #[error("proof does not hash to the piece CID")]
    RootMismatch,
    /// A range's chunks were not back to back in its proof. The walk lays any set of
    /// neighbouring chunks out that way, whatever the body holds, so this is a bug in it.
    #[error("proof shows the range's chunks apart")]
    Scattered,
}

/// A proof that passed, with what it established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The piece's authenticated length.
    pub size: u64,
    /// Distinct chunks shown.
    pub chunks: usize,
}

/// Checks `proof` against `challenge`. Needs nothing but the two: the root comes from the CID.
pub fn verify(challenge: &Challenge, proof: &Proof) -> Result<Verified, ProofError> {
    let root = challenge.validate()?;
    if proof.piece != challenge.piece {
        return Err(ProofError::WrongPiece {
            expected: challenge.piece.to_string(),
            found: proof.piece.to_string(),
        });
    }
    if proof.nonce != challenge.nonce {
        return Err(ProofError::WrongNonce);
    }
    if proof.body.len() > MAX_PROOF_BODY {
        return Err(ProofError::TooLarge(proof.body.len()));
    }
    let samples = challenge.chunk_indices(proof.size);
    verify_chunks(&root, proof.size, &samples, &proof.body)?;
    Ok(Verified {
        size: proof.size,
        chunks: samples.len(),
    })
}

/// Checks a proof body for a sorted, distinct, non-empty set of chunk indices of a piece of
/// `size` bytes against its BLAKE3 `root`; returns where the shown chunks' bytes lie in the
/// body, from the first one's start to the last one's end.
pub(crate) fn verify_chunks(
    root: &[u8; 32],
    size: u64,
    chunks: &[u64],
    body: &[u8],
) -> Result<Shown, ProofError> {
    let mut body = Body { bytes: body, at: 0 };
    let mut shown = Shown::default();
    let computed = walk(Node::root(size), chunks, &mut body, true, &mut shown)?;
    let left = body.bytes.len() - body.at;
    if left > 0 {
        return Err(ProofError::TrailingBytes(left));
    }
    if &computed != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(shown)
}

/// Where a proof's shown chunks lie in its body.
#[derive(Debug, Default)]
pub(crate) struct Shown {
    /// From the first shown byte to the end of the last.
    pub span: std::ops::Range<usize>,
    /// Shown bytes: the span's length when nothing lies between them.
    pub bytes: usize,
}

struct Body<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Body<'a> {
    fn take(&mut self, n: u64) -> Result<&'a [u8], ProofError> {
        let n = usize::try_from(n).map_err(|_| ProofError::Truncated)?;
        let end = self.at.checked_add(n).ok_or(ProofError::Truncated)?;
        let taken = self.bytes.get(self.at..end).ok_or(ProofError::Truncated)?;
        self.at = end;
        Ok(taken)
    }

    fn cv(&mut self) -> Result<ChainingValue, ProofError> {
        let mut cv = [0u8; 32];
        cv.copy_from_slice(self.take(32)?);
        Ok(cv)
    }
}

/// Rebuilds the hash of `node` from the body; the root's hash when `is_root`.
fn walk(
    node: Node,
    samples: &[u64],
    body: &mut Body<'_>,
    is_root: bool,
    shown: &mut Shown,
) -> Result<[u8; 32], ProofError> {
    // A chunk, or a subtree whose every chunk is shown (inside a range): its bytes lie in the
    // body back to back, and hashing them as one subtree lets BLAKE3 use its SIMD paths.
    if node.is_chunk() || samples.len() as u64 == node.len.div_ceil(CHUNK) {
        let at = body.at;
        let bytes = body.take(node.len)?;
        if shown.bytes == 0 {
            shown.span.start = at;
        }
        shown.span.end = body.at;
        shown.bytes += bytes.len();
        return Ok(if is_root {
            *blake3::hash(bytes).as_bytes()
        } else {
            subtree_cv(node, bytes)
        });
    }
    let (left, right) = node.children();
    let split = samples.partition_point(|&c| c < right.start / CHUNK);
    let (left_samples, right_samples) = samples.split_at(split);
    let mut child = |n: Node, s: &[u64]| {
        if s.is_empty() {
            body.cv()
        } else {
            walk(n, s, body, false, shown)
        }
    };
    let l = child(left, left_samples)?;
    let r = child(right, right_samples)?;
    Ok(if is_root {
        *merge_subtrees_root(&l, &r, Mode::Hash).as_bytes()
    } else {
        merge_subtrees_non_root(&l, &r, Mode::Hash)
    })
}
