//! A shard's layout: the original's CID and size, its erasure parameters and its pieces' CIDs.
//!
//! A layout is a DAG-CBOR block of its own; its CID names a file together with the way it is
//! stored (`tessera put` prints it), and a manifest embeds one per shard.

use cid::Cid;
use serde::{Deserialize, Serialize};

use crate::{
    address::{AddressError, HashFn, RAW},
    block::{self, BlockError},
    erasure::{ErasureParams, ParamsError, PieceHeader},
};

/// The layout format version this code writes and reads.
pub const LAYOUT_VERSION: u64 = 1;
/// Largest layout block: 256 piece CIDs and a few fields fit in far less.
pub const MAX_LAYOUT_BYTES: usize = 64 * 1024;

/// A layout that is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// The block is malformed.
    #[error(transparent)]
    Block(#[from] BlockError),
    /// A layout version this code does not know.
    #[error("layout version {found}; this build reads version {LAYOUT_VERSION}")]
    Version {
        /// The version found.
        found: u64,
    },
    /// Unusable erasure parameters.
    #[error(transparent)]
    Params(#[from] ParamsError),
    /// The number of piece CIDs is not k + m.
    #[error("{found} piece CIDs for k + m = {expected}")]
    PieceCount {
        /// CIDs listed.
        found: usize,
        /// k + m.
        expected: usize,
    },
    /// A CID that cannot be verified, or that is not for raw bytes.
    #[error("{0}")]
    Address(String),
    /// A piece index outside the layout.
    #[error("no piece {index}: the layout has {total}")]
    NoSuchPiece {
        /// The index asked for.
        index: usize,
        /// k + m.
        total: usize,
    },
}

impl From<AddressError> for LayoutError {
    fn from(e: AddressError) -> Self {
        LayoutError::Address(e.to_string())
    }
}

/// How one shard is stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardLayout {
    /// Layout format version ([`LAYOUT_VERSION`]).
    pub version: u64,
    /// CID of the original bytes (raw codec).
    pub content: Cid,
    /// Length of the original in bytes.
    pub size: u64,
    /// Erasure parameters.
    pub erasure: ErasureParams,
    /// CIDs of the `k + m` pieces, data pieces first.
    pub pieces: Vec<Cid>,
}

impl ShardLayout {
    /// Checks version, parameters, piece count and every CID.
    pub fn validate(&self) -> Result<(), LayoutError> {
        if self.version != LAYOUT_VERSION {
            return Err(LayoutError::Version {
                found: self.version,
            });
        }
        self.erasure.validate()?;
        if self.pieces.len() != self.erasure.total() {
            return Err(LayoutError::PieceCount {
                found: self.pieces.len(),
                expected: self.erasure.total(),
            });
        }
        for cid in std::iter::once(&self.content).chain(&self.pieces) {
            HashFn::of(cid)?;
            if cid.codec() != RAW {
                return Err(LayoutError::Address(format!(
                    "CID {cid} has codec 0x{:x}; shards and pieces are raw bytes (0x55)",
                    cid.codec()
                )));
            }
        }
        Ok(())
    }

    /// The header piece `index` must carry.
    pub fn piece_header(&self, index: usize) -> Result<PieceHeader, LayoutError> {
        let total = self.erasure.total();
        let index = u16::try_from(index)
            .ok()
            .filter(|&i| usize::from(i) < total)
            .ok_or(LayoutError::NoSuchPiece { index, total })?;
        Ok(PieceHeader {
            params: self.erasure,
            index,
            original_len: self.size,
        })
    }

    /// The length of every piece, header included.
    pub fn piece_len(&self) -> u64 {
        PieceHeader {
            params: self.erasure,
            index: 0,
            original_len: self.size,
        }
        .piece_len()
    }

    /// Encodes the layout as a DAG-CBOR block; returns its CID and bytes.
    pub fn to_block(&self) -> Result<(Cid, Vec<u8>), LayoutError> {
        self.validate()?;
        Ok(block::encode_with_cid(self)?)
    }

    /// Decodes and validates a layout block.
    pub fn from_block(bytes: &[u8]) -> Result<Self, LayoutError> {
        let layout: Self = block::decode(bytes, MAX_LAYOUT_BYTES)?;
        layout.validate()?;
        Ok(layout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::erasure::encode_to_vecs;

    fn layout() -> ShardLayout {
        let params = ErasureParams::new(4, 2, 1024).unwrap();
        encode_to_vecs(params, b"some shard bytes").unwrap().0
    }

    #[test]
    fn round_trips_with_a_stable_cid() {
        let l = layout();
        let (cid, bytes) = l.to_block().unwrap();
        assert_eq!(cid.codec(), crate::address::DAG_CBOR);
        assert_eq!(ShardLayout::from_block(&bytes).unwrap(), l);
        assert_eq!(l.clone().to_block().unwrap().0, cid);
        // CIDs are IPLD links: CBOR tag 42 over a byte string with the 0x00 multibase prefix.
        let links = bytes
            .windows(4)
            .filter(|w| w == &[0xd8, 0x2a, 0x58, 0x25])
            .count();
        assert_eq!(links, 1 + l.pieces.len());
    }

    #[test]
    fn inconsistent_layouts_are_refused() {
        let mut l = layout();
        l.pieces.pop();
        assert_eq!(
            l.validate(),
            Err(LayoutError::PieceCount {
                found: 5,
                expected: 6
            })
        );
        let mut l = layout();
        l.version = 2;
        assert_eq!(l.validate(), Err(LayoutError::Version { found: 2 }));
        let mut l = layout();
        l.content = crate::address::dag_cbor_cid(b"x");
        assert!(matches!(l.validate(), Err(LayoutError::Address(_))));
        let mut l = layout();
        l.erasure.k = 0;
        assert!(matches!(l.validate(), Err(LayoutError::Params(_))));
        let l = layout();
        assert!(matches!(
            l.piece_header(6),
            Err(LayoutError::NoSuchPiece { index: 6, total: 6 })
        ));
    }
}
