//! The prover: answers a challenge from the stored piece and its outboard.

use std::io;

use blake3::hazmat::ChainingValue;
use cid::Cid;
use serde::{Deserialize, Serialize};

use crate::{
    challenge::{Challenge, ChallengeError, MAX_SAMPLES},
    outboard::{Outboard, PieceData},
    tree::{CHUNK, GROUP, Node, group_count, subtree_cv},
};

/// Largest proof body a verifier accepts: every sample a full chunk plus a sibling hash at every
/// level of the deepest possible tree.
pub const MAX_PROOF_BODY: usize = (MAX_SAMPLES as usize + 1) * (1024 + 64 * 32);

/// A proof of storage: the sampled chunks and the sibling hashes that link them to the root.
///
/// The body is a flat sequence in the tree's depth-first order: for every node on the way down
/// that holds no sample, its 32-byte chaining value; for every sampled chunk, its bytes. Both
/// sides derive the same walk from the piece size and the challenge, so nothing else is needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proof {
    /// The piece the proof is for.
    pub piece: Cid,
    /// The nonce of the challenge it answers.
    pub nonce: [u8; 32],
    /// The piece's length, authenticated by the last chunk, which every proof shows.
    pub size: u64,
    /// Chaining values and chunk bytes.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

/// A challenge this node cannot answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProveError {
    /// The challenge is malformed.
    #[error(transparent)]
    Challenge(#[from] ChallengeError),
    /// The outboard does not belong to these bytes.
    #[error("outboard describes {outboard} bytes, the piece has {piece}")]
    OutboardSize {
        /// Size in the outboard.
        outboard: u64,
        /// Size of the stored piece.
        piece: u64,
    },
    /// The outboard lacks a node the walk needs.
    #[error("outboard is missing node {0}")]
    OutboardNode(u64),
    /// Reading the piece failed.
    #[error("reading piece: {0}")]
    Io(#[from] io::Error),
}

/// Answers `challenge` from a stored piece and its outboard.
pub fn prove<D: PieceData + ?Sized>(
    challenge: &Challenge,
    data: &D,
    outboard: &Outboard,
) -> Result<Proof, ProveError> {
    challenge.validate()?;
    let size = data.len();
    let body = prove_chunks(data, outboard, &challenge.chunk_indices(size))?;
    Ok(Proof {
        piece: challenge.piece,
        nonce: challenge.nonce,
        size,
        body,
    })
}

/// The proof body for a sorted, distinct, non-empty set of chunk indices of a stored piece.
pub(crate) fn prove_chunks<D: PieceData + ?Sized>(
    data: &D,
    outboard: &Outboard,
    chunks: &[u64],
) -> Result<Vec<u8>, ProveError> {
    let size = data.len();
    if outboard.size() != size {
        return Err(ProveError::OutboardSize {
            outboard: outboard.size(),
            piece: size,
        });
    }
    let mut prover = Prover {
        data,
        outboard,
        chunks,
        body: Vec::with_capacity(chunks.len() * (1024 + 16)),
        buf: vec![0u8; usize::try_from(GROUP).unwrap_or(16 * 1024)],
        emitted_end: 0,
    };
    if !chunks.is_empty() {
        prover.walk(Node::root(size), chunks, Some(0))?;
    }
    Ok(prover.body)
}

struct Prover<'a, D: ?Sized> {
    data: &'a D,
    outboard: &'a Outboard,
    /// Every chunk the proof shows, sorted.
    chunks: &'a [u64],
    body: Vec<u8>,
    buf: Vec<u8>,
    /// End of the last run of consecutive sampled chunks whose bytes are in `body`.
    emitted_end: u64,
}

impl<D: PieceData + ?Sized> Prover<'_, D> {
    /// Emits the proof for the subtree `node`, which holds at least one of `samples`.
    /// `stored` is the node's pre-order position in the outboard when it has stored children.
    fn walk(&mut self, node: Node, samples: &[u64], stored: Option<u64>) -> Result<(), ProveError> {
        if node.is_chunk() {
            if node.start + node.len > self.emitted_end {
                self.emit_run(node)?;
            }
            return Ok(());
        }
        let (left, right) = node.children();
        let split = samples.partition_point(|&c| c < right.start / CHUNK);
        let (left_samples, right_samples) = samples.split_at(split);
        let pair = match (node.has_stored_children(), stored) {
            (true, Some(i)) => Some(*self.outboard.pair(i).ok_or(ProveError::OutboardNode(i))?),
            _ => None,
        };
        let children = [
            (left, left_samples, stored.map(|i| i + 1)),
            (
                right,
                right_samples,
                stored.map(|i| i + group_count(left.len)),
            ),
        ];
        for (side, (child, child_samples, child_stored)) in children.into_iter().enumerate() {
            if child_samples.is_empty() {
                let cv = match pair {
                    Some(pair) => pair[side],
                    None => self.hash_from_data(child)?,
                };
                self.body.extend_from_slice(&cv);
            } else {
                let child_stored = child_stored.filter(|_| child.has_stored_children());
                self.walk(child, child_samples, child_stored)?;
            }
        }
        Ok(())
    }

    /// Appends the bytes of the run of consecutive sampled chunks that starts with `node`, read
    /// straight into the body. Nothing comes between their bytes in the body: every node on
    /// the way from one chunk of the run to the next holds a sampled chunk, so no chaining
    /// value is emitted.
    fn emit_run(&mut self, node: Node) -> Result<(), ProveError> {
        let first = node.start / CHUNK;
        let at = self.chunks.partition_point(|&c| c < first);
        let run = self.chunks[at..]
            .iter()
            .zip(first..)
            .take_while(|(c, want)| **c == *want)
            .count()
            .max(1);
        let len = (run as u64 * CHUNK).min(self.data.len() - node.start);
        let at = self.body.len();
        self.body.resize(at + usize::try_from(len).unwrap_or(0), 0);
        self.data.read_at(node.start, &mut self.body[at..])?;
        self.emitted_end = node.start + len;
        Ok(())
    }

    /// Chaining value of a node inside a group, recomputed from the stored bytes.
    fn hash_from_data(&mut self, node: Node) -> Result<ChainingValue, ProveError> {
        let bytes = &mut self.buf[..usize::try_from(node.len).unwrap_or(0)];
        self.data.read_at(node.start, bytes)?;
        Ok(subtree_cv(node, bytes))
    }
}
