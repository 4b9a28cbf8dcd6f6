//! The stored part of a piece's hash tree: every node down to 16 KiB groups.
//!
//! Keeping the tree down to single 1 KiB chunks would cost 64 bytes per KiB (6.25% of the
//! piece); keeping it down to 16 KiB groups costs 64 bytes per 16 KiB (0.39%). The price is that
//! a prover re-hashes the 16 KiB group around each sampled chunk from the stored bytes. Proofs
//! stay at chunk granularity (1 KiB per sample), unlike a range encoding whose unit is the
//! group: the in-group hashes a proof needs are recomputed, not stored.
//!
//! Layout: the piece size (u64, little-endian), then for every node larger than a group, in
//! pre-order, its left and right children's chaining values (64 bytes).

use std::io;

use blake3::hazmat::{ChainingValue, Mode, merge_subtrees_non_root, merge_subtrees_root};

use crate::tree::{GROUP, Node, group_count, subtree_cv};

/// Random access to a piece's bytes.
pub trait PieceData {
    /// The piece's length.
    fn len(&self) -> u64;
    /// Whether the piece is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Fills `buf` from `offset`; fails if the piece is shorter.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

impl PieceData for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| eof())?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or_else(eof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

impl PieceData for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.as_slice().read_at(offset, buf)
    }
}

#[cfg(unix)]
impl PieceData for std::fs::File {
    fn len(&self) -> u64 {
        self.metadata().map(|m| m.len()).unwrap_or(0)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
}

fn eof() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "read past the end of the piece",
    )
}

/// An outboard that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboardError {
    /// The serialized outboard has the wrong length for the size it states.
    #[error("outboard of {len} bytes; a {size}-byte piece needs {expected}")]
    Length {
        /// Bytes given.
        len: usize,
        /// Piece size stated.
        size: u64,
        /// Bytes expected.
        expected: u64,
    },
    /// Reading the piece failed.
    #[error("reading piece: {0}")]
    Io(#[from] io::Error),
}

/// The hash tree of one piece down to 16 KiB groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outboard {
    size: u64,
    /// `(left, right)` chaining values of every node larger than a group, in pre-order.
    pairs: Vec<[ChainingValue; 2]>,
}

impl Outboard {
    /// Computes the outboard of a piece, reading it once, a group at a time. Returns it with
    /// the piece's BLAKE3 root hash, which the caller compares with the piece's CID.
    pub fn compute<D: PieceData + ?Sized>(data: &D) -> Result<(Self, blake3::Hash), OutboardError> {
        let size = data.len();
        let root = Node::root(size);
        let parents = usize::try_from(group_count(size) - 1).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "piece too large for this machine",
            )
        })?;
        let mut pairs = Vec::with_capacity(parents);
        let mut buf = vec![0u8; usize::try_from(GROUP).unwrap_or(16 * 1024)];
        let hash = if root.has_stored_children() {
            let [l, r] = build_children(data, root, &mut pairs, &mut buf)?;
            merge_subtrees_root(&l, &r, Mode::Hash)
        } else {
            let bytes = &mut buf[..usize::try_from(size).unwrap_or(0)];
            data.read_at(0, bytes)?;
            blake3::hash(bytes)
        };
        Ok((Self { size, pairs }, hash))
    }

    /// The piece size this outboard describes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The stored pair of the node at pre-order position `index`.
    pub(crate) fn pair(&self, index: u64) -> Option<&[ChainingValue; 2]> {
        self.pairs.get(usize::try_from(index).ok()?)
    }

    /// Serialized length for a piece of `size` bytes.
    pub fn serialized_len(size: u64) -> u64 {
        8 + 64 * (group_count(size) - 1)
    }

    /// The outboard's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 64 * self.pairs.len());
        out.extend_from_slice(&self.size.to_le_bytes());
        for [l, r] in &self.pairs {
            out.extend_from_slice(l);
            out.extend_from_slice(r);
        }
        out
    }

    /// Reads an outboard back; its length must match the size it states.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, OutboardError> {
        let len_err = |size, expected| OutboardError::Length {
            len: bytes.len(),
            size,
            expected,
        };
        let (head, rest) = bytes.split_first_chunk::<8>().ok_or(len_err(0, 8))?;
        let size = u64::from_le_bytes(*head);
        let expected = Self::serialized_len(size);
        if bytes.len() as u64 != expected {
            return Err(len_err(size, expected));
        }
        let pairs = rest
            .chunks_exact(64)
            .map(|c| {
                let mut l = [0u8; 32];
                let mut r = [0u8; 32];
                l.copy_from_slice(&c[..32]);
                r.copy_from_slice(&c[32..]);
                [l, r]
            })
            .collect();
        Ok(Self { size, pairs })
    }
}

/// Hashes the children of a node larger than a group, recording their pairs in pre-order.
fn build_children<D: PieceData + ?Sized>(
    data: &D,
    node: Node,
    pairs: &mut Vec<[ChainingValue; 2]>,
    buf: &mut [u8],
) -> io::Result<[ChainingValue; 2]> {
    let slot = pairs.len();
    pairs.push([[0; 32]; 2]);
    let (left, right) = node.children();
    let pair = [
        build(data, left, pairs, buf)?,
        build(data, right, pairs, buf)?,
    ];
    pairs[slot] = pair;
    Ok(pair)
}

/// The chaining value of a non-root node.
fn build<D: PieceData + ?Sized>(
    data: &D,
    node: Node,
    pairs: &mut Vec<[ChainingValue; 2]>,
    buf: &mut [u8],
) -> io::Result<ChainingValue> {
    if !node.has_stored_children() {
        let bytes = &mut buf[..usize::try_from(node.len).unwrap_or(0)];
        data.read_at(node.start, bytes)?;
        return Ok(subtree_cv(node, bytes));
    }
    let [l, r] = build_children(data, node, pairs, buf)?;
    Ok(merge_subtrees_non_root(&l, &r, Mode::Hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_matches_blake3_for_many_sizes() {
        for size in [
            0usize,
            1,
            1024,
            1025,
            16 * 1024,
            16 * 1024 + 1,
            33 * 1024,
            100_000,
            300_001,
        ] {
            let data: Vec<u8> = (0..size).map(|i| u8::try_from(i % 253).unwrap()).collect();
            let (ob, root) = Outboard::compute(&data).unwrap();
            assert_eq!(root, blake3::hash(&data), "size {size}");
            let bytes = ob.to_bytes();
            assert_eq!(bytes.len() as u64, Outboard::serialized_len(size as u64));
            assert_eq!(Outboard::from_bytes(&bytes).unwrap(), ob);
        }
    }

    #[test]
    fn wrong_length_outboards_are_refused() {
        let data = vec![1u8; 100_000];
        let (ob, _) = Outboard::compute(&data).unwrap();
        let mut bytes = ob.to_bytes();
        bytes.pop();
        assert!(matches!(
            Outboard::from_bytes(&bytes),
            Err(OutboardError::Length { .. })
        ));
        assert!(Outboard::from_bytes(&[1, 2, 3]).is_err());
        // A size that claims an enormous tree with no pairs behind it.
        assert!(Outboard::from_bytes(&u64::MAX.to_le_bytes()).is_err());
    }
}
