//! The shape of BLAKE3's hash tree over a piece, and the hashing of its nodes.
//!
//! BLAKE3 splits its input into 1 KiB chunks; a subtree of more than one chunk has a left child
//! of the largest power-of-two number of chunks smaller than it and a right child with the rest.
//! The root hash of that tree is the digest a BLAKE3 CID carries, so any node's chaining value
//! can be checked against the CID alone.

use blake3::{
    CHUNK_LEN, Hasher,
    hazmat::{ChainingValue, HasherExt, left_subtree_len},
};

/// BLAKE3's chunk: the smallest piece of data a proof can show.
pub const CHUNK: u64 = CHUNK_LEN as u64;
/// Chunks per group: the outboard keeps hashes down to groups of this many chunks, and a prover
/// re-hashes one group (16 KiB) from the stored bytes for every sampled chunk.
pub const GROUP_CHUNKS: u64 = 16;
/// Bytes per group.
pub const GROUP: u64 = CHUNK * GROUP_CHUNKS;

/// A subtree: `len` bytes of the piece starting at `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Node {
    pub(crate) start: u64,
    pub(crate) len: u64,
}

impl Node {
    pub(crate) fn root(size: u64) -> Self {
        Self {
            start: 0,
            len: size,
        }
    }

    /// Whether this node is a single chunk (a leaf of the tree).
    pub(crate) fn is_chunk(&self) -> bool {
        self.len <= CHUNK
    }

    /// Whether the outboard stores this node's children's hashes.
    pub(crate) fn has_stored_children(&self) -> bool {
        self.len > GROUP
    }

    pub(crate) fn children(&self) -> (Node, Node) {
        let left = left_subtree_len(self.len);
        (
            Node {
                start: self.start,
                len: left,
            },
            Node {
                start: self.start + left,
                len: self.len - left,
            },
        )
    }
}

/// Chunks in a piece of `size` bytes (an empty piece is one empty chunk).
pub fn chunk_count(size: u64) -> u64 {
    size.div_ceil(CHUNK).max(1)
}

/// Groups in a subtree of `len` bytes.
pub(crate) fn group_count(len: u64) -> u64 {
    len.div_ceil(GROUP).max(1)
}

/// The chaining value of a non-root subtree from its bytes.
pub(crate) fn subtree_cv(node: Node, bytes: &[u8]) -> ChainingValue {
    let mut hasher = Hasher::new();
    hasher.set_input_offset(node.start);
    hasher.update(bytes);
    hasher.finalize_non_root()
}
