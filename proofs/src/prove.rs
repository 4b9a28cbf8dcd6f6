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
        ahead: Vec::new(),
        ahead_start: 0,
    };
    if !chunks.is_empty() {
        prover.walk(Node::root(size), chunks, Some(0))?;
    }
    Ok(prover.body)
}

/// Most chunks read from the piece in one call: a range proof reads its bytes in runs this
/// long instead of one read per 1 KiB chunk.
const READ_AHEAD_CHUNKS: usize = 256;

struct Prover<'a, D: ?Sized> {
    data: &'a D,
    outboard: &'a Outboard,
    /// Every chunk the proof shows, sorted.
    chunks: &'a [u64],
    body: Vec<u8>,
    buf: Vec<u8>,
    /// Bytes of the piece from `ahead_start`, read for a run of consecutive sampled chunks.
    ahead: Vec<u8>,
    ahead_start: u64,
}

impl<D: PieceData + ?Sized> Prover<'_, D> {
    /// Emits the proof for the subtree `node`, which holds at least one of `samples`.
    /// `stored` is the node's pre-order position in the outboard when it has stored children.
    fn walk(&mut self, node: Node, samples: &[u64], stored: Option<u64>) -> Result<(), ProveError> {
        if node.is_chunk() {
            self.read_ahead(node)?;
            let from = usize::try_from(node.start - self.ahead_start).unwrap_or(0);
            let to = from + usize::try_from(node.len).unwrap_or(0);
            self.body.extend_from_slice(&self.ahead[from..to]);
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

    /// Makes sure the chunk `node` is in the read-ahead buffer: if not, reads the run of
    /// consecutive sampled chunks that starts with it.
    fn read_ahead(&mut self, node: Node) -> Result<(), ProveError> {
        let held = self.ahead_start + self.ahead.len() as u64;
        if node.start >= self.ahead_start && node.start + node.len <= held {
            return Ok(());
        }
        let first = node.start / CHUNK;
        let at = self.chunks.partition_point(|&c| c < first);
        let run = self.chunks[at..]
            .iter()
            .zip(first..)
            .take(READ_AHEAD_CHUNKS)
            .take_while(|(c, want)| **c == *want)
            .count()
            .max(1);
        let len = (run as u64 * CHUNK).min(self.data.len() - node.start);
        self.ahead.resize(usize::try_from(len).unwrap_or(0), 0);
        self.data.read_at(node.start, &mut self.ahead)?;
        self.ahead_start = node.start;
        Ok(())
    }

    /// Chaining value of a node inside a group, recomputed from the stored bytes.
    fn hash_from_data(&mut self, node: Node) -> Result<ChainingValue, ProveError> {
        let bytes = &mut self.buf[..usize::try_from(node.len).unwrap_or(0)];
        self.data.read_at(node.start, bytes)?;
        Ok(subtree_cv(node, bytes))
    }
}
