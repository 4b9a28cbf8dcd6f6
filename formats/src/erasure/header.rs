//! The 24-byte header at the start of every piece.
//!
//! ```text
//! offset  size  field
//!      0     4  magic "TSPC"
//!      4     1  format version (1)
//!      5     1  flags (0; reserved)
//!      6     2  k             (little-endian)
//!      8     2  m
//!     10     2  piece index   (0..k are data, k..k+m parity)
//!     12     4  stripe size   (bytes per piece per stripe)
//!     16     8  original length of the shard
//! ```
//! The header is covered by the piece's CID like every other byte of the piece, so a piece
//! cannot be passed off under another index or another shard's parameters.

use super::params::{ErasureParams, ParamsError};

/// Header length in bytes.
pub const HEADER_LEN: usize = 24;
/// The piece format's magic bytes.
pub const MAGIC: [u8; 4] = *b"TSPC";
/// The piece format version this code writes and reads.
pub const FORMAT_VERSION: u8 = 1;

/// A header that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// Fewer than [`HEADER_LEN`] bytes.
    #[error("piece is {len} bytes, shorter than its {HEADER_LEN}-byte header")]
    Truncated {
        /// Bytes available.
        len: usize,
    },
    /// Not a Tessera piece.
    #[error("not a Tessera piece (magic {found:02x?})")]
    Magic {
        /// The first four bytes.
        found: [u8; 4],
    },
    /// A piece format this code does not know.
    #[error("piece format version {found}; this build reads version {FORMAT_VERSION}")]
    Version {
        /// The version byte.
        found: u8,
    },
    /// Reserved flags set.
    #[error("reserved piece flags 0x{found:02x} are set")]
    Flags {
        /// The flags byte.
        found: u8,
    },
    /// Parameters out of range.
    #[error("piece parameters: {0}")]
    Params(#[from] ParamsError),
    /// Index not below k + m.
    #[error("piece index {index} is not below k + m = {total}")]
    Index {
        /// The index.
        index: u16,
        /// k + m.
        total: usize,
    },
}

/// What a piece says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PieceHeader {
    /// The shard's erasure parameters.
    pub params: ErasureParams,
    /// This piece's index.
    pub index: u16,
    /// The shard's original length.
    pub original_len: u64,
}

impl PieceHeader {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4] = FORMAT_VERSION;
        b[5] = 0;
        b[6..8].copy_from_slice(&self.params.k.to_le_bytes());
        b[8..10].copy_from_slice(&self.params.m.to_le_bytes());
        b[10..12].copy_from_slice(&self.index.to_le_bytes());
        b[12..16].copy_from_slice(&self.params.stripe_size.to_le_bytes());
        b[16..24].copy_from_slice(&self.original_len.to_le_bytes());
        b
    }

    /// Reads and checks a header from the first bytes of a piece.
    pub fn decode(bytes: &[u8]) -> Result<Self, HeaderError> {
        let b: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(HeaderError::Truncated { len: bytes.len() })?;
        let magic = [b[0], b[1], b[2], b[3]];
        if magic != MAGIC {
            return Err(HeaderError::Magic { found: magic });
        }
        if b[4] != FORMAT_VERSION {
            return Err(HeaderError::Version { found: b[4] });
        }
        if b[5] != 0 {
            return Err(HeaderError::Flags { found: b[5] });
        }
        let params = ErasureParams::new(
            u16::from_le_bytes([b[6], b[7]]),
            u16::from_le_bytes([b[8], b[9]]),
            u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
        )?;
        let index = u16::from_le_bytes([b[10], b[11]]);
        if usize::from(index) >= params.total() {
            return Err(HeaderError::Index {
                index,
                total: params.total(),
            });
        }
        let original_len =
            u64::from_le_bytes([b[16], b[17], b[18], b[19], b[20], b[21], b[22], b[23]]);
        Ok(Self {
            params,
            index,
            original_len,
        })
    }

    /// The full length of this piece, header included.
    pub fn piece_len(&self) -> u64 {
        HEADER_LEN as u64 + self.params.geometry(self.original_len).piece_body_len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> PieceHeader {
        PieceHeader {
            params: ErasureParams::new(10, 4, 65536).unwrap(),
            index: 13,
            original_len: 123_456_789,
        }
    }

    #[test]
    fn round_trips() {
        let h = header();
        assert_eq!(PieceHeader::decode(&h.encode()).unwrap(), h);
    }

    #[test]
    fn every_bad_field_is_named() {
        let good = header().encode();
        let mut b = good;
        b[0] = b'X';
        assert!(matches!(
            PieceHeader::decode(&b),
            Err(HeaderError::Magic { .. })
        ));
        let mut b = good;
        b[4] = 2;
        assert_eq!(
            PieceHeader::decode(&b),
            Err(HeaderError::Version { found: 2 })
        );
        let mut b = good;
        b[5] = 1;
        assert_eq!(
            PieceHeader::decode(&b),
            Err(HeaderError::Flags { found: 1 })
        );
        let mut b = good;
        b[10] = 14;
        assert_eq!(
            PieceHeader::decode(&b),
            Err(HeaderError::Index {
                index: 14,
                total: 14
            })
        );
        let mut b = good;
        b[6] = 0;
        assert!(matches!(
            PieceHeader::decode(&b),
            Err(HeaderError::Params(_))
        ));
        assert_eq!(
            PieceHeader::decode(&good[..23]),
            Err(HeaderError::Truncated { len: 23 })
        );
    }
}
