//! Verified byte ranges: a reader that trusts only a piece's CID (and knows its size from the
//! shard layout) fetches any range of the piece from an untrusted node and checks it.
//!
//! ```text
//!  reader                                     holder
//!    |  piece CID, byte range                   |
//!    |----------------------------------------->|  chunks covering the range, and the
//!    |  body: sibling hashes + covering chunks  |  sibling hashes linking them to the root
//!    |<-----------------------------------------|
//!    |  rebuild root == CID digest? then cut the range out of the covering chunks
//! ```
//! A range costs its covering chunks plus at most two sibling hashes per tree level, so a
//! whole piece can be streamed range by range in bounded memory, each range checked before it
//! is used.

use cid::Cid;
use serde::{Deserialize, Serialize};
use tessera_formats::address::blake3_digest;

use crate::{
    outboard::{Outboard, PieceData},
    prove::{ProveError, prove_chunks},
    tree::{CHUNK, chunk_count},
    verify::{ProofError, verify_chunks},
};

/// Longest range one request may cover.
pub const MAX_RANGE_LEN: u64 = 4 * 1024 * 1024;

/// A byte range of a piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// Number of bytes.
    pub len: u64,
}

/// A range that cannot be served or checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RangeError {
    /// Empty, too long, or past the end of the piece.
    #[error(
        "range {start}+{len} is not within a {size}-byte piece, or is empty or over {MAX_RANGE_LEN} bytes"
    )]
    OutOfBounds {
        /// First byte asked for.
        start: u64,
        /// Bytes asked for.
        len: u64,
        /// The piece's size.
        size: u64,
    },
    /// The piece CID is not a BLAKE3 CID.
    #[error("piece CID {0} is not a BLAKE3 CID")]
    NotBlake3(String),
}

impl ByteRange {
    /// The whole of a piece of `size` bytes, split into ranges of at most `max` bytes.
    pub fn split(size: u64, max: u64) -> impl Iterator<Item = ByteRange> {
        let max = max.clamp(CHUNK, MAX_RANGE_LEN);
        (0..size.div_ceil(max)).map(move |i| ByteRange {
            start: i * max,
            len: max.min(size - i * max),
        })
    }

    /// The chunk indices that cover this range in a piece of `size` bytes.
    pub fn chunks(&self, size: u64) -> Result<Vec<u64>, RangeError> {
        let end = self.start.checked_add(self.len);
        if self.len == 0 || self.len > MAX_RANGE_LEN || end.is_none_or(|e| e > size) {
            return Err(RangeError::OutOfBounds {
                start: self.start,
                len: self.len,
                size,
            });
        }
        let first = self.start / CHUNK;
        let last = (self.start + self.len - 1) / CHUNK;
        debug_assert!(last < chunk_count(size));
        Ok((first..=last).collect())
    }
}

/// The proof body for `range` of a stored piece.
pub fn prove_range<D: PieceData + ?Sized>(
    data: &D,
    outboard: &Outboard,
    range: ByteRange,
) -> Result<Vec<u8>, RangeProveError> {
    let chunks = range.chunks(data.len())?;
    Ok(prove_chunks(data, outboard, &chunks)?)
}

/// Checks a range proof body against the piece CID and its known size; returns exactly the
/// bytes of the range.
pub fn verify_range(
    piece: &Cid,
    size: u64,
    range: ByteRange,
    body: &[u8],
) -> Result<Vec<u8>, RangeVerifyError> {
    let at = verify_range_in(piece, size, range, body)?;
    Ok(body[at].to_vec())
}

/// Like [`verify_range`], but returns where the range's bytes lie in `body` instead of a copy
/// of them: the covering chunks lie back to back in a range proof.
pub fn verify_range_in(
    piece: &Cid,
    size: u64,
    range: ByteRange,
    body: &[u8],
) -> Result<std::ops::Range<usize>, RangeVerifyError> {
    let root = blake3_digest(piece).ok_or_else(|| RangeError::NotBlake3(piece.to_string()))?;
    let chunks = range.chunks(size)?;
    let shown = verify_chunks(&root, size, &chunks, body)?;
    if shown.span.len() != shown.bytes {
        return Err(ProofError::Scattered.into());
    }
    // The covering chunks start at a chunk boundary; cut the range out of them.
    let skip = usize::try_from(range.start % CHUNK).unwrap_or(usize::MAX);
    let len = usize::try_from(range.len).unwrap_or(usize::MAX);
    let start = shown.span.start.saturating_add(skip);
    let end = start.saturating_add(len);
    if end > shown.span.end {
        return Err(ProofError::Truncated.into());
    }
    Ok(start..end)
}

/// A range that cannot be proven.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RangeProveError {
    /// The range is invalid for this piece.
    #[error(transparent)]
    Range(#[from] RangeError),
    /// Reading the piece or its outboard failed.
    #[error(transparent)]
    Prove(#[from] ProveError),
}

/// A range response that does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RangeVerifyError {
    /// The range is invalid for this piece.
    #[error(transparent)]
    Range(#[from] RangeError),
    /// The body does not lead to the piece's root.
    #[error(transparent)]
    Proof(#[from] ProofError),
}

#[cfg(test)]
mod tests {
    use tessera_formats::address::raw_cid;

    use super::*;

    fn piece(size: usize) -> Vec<u8> {
        (0..size).map(|i| u8::try_from(i % 239).unwrap()).collect()
    }

    #[test]
    fn ranges_verify_and_return_exact_bytes() {
        for size in [1usize, 1000, 1024, 5000, 70_000, 300_001] {
            let data = piece(size);
            let cid = raw_cid(&data);
            let (ob, _) = Outboard::compute(&data).unwrap();
            let s = size as u64;
            for range in [
                ByteRange { start: 0, len: s },
                ByteRange {
                    start: s - 1,
                    len: 1,
                },
                ByteRange {
                    start: s / 3,
                    len: (s / 2).max(1),
                },
            ] {
                if range.len > MAX_RANGE_LEN || range.start + range.len > s {
                    continue;
                }
                let body = prove_range(&data, &ob, range).unwrap();
                let bytes = verify_range(&cid, s, range, &body).unwrap();
                let a = usize::try_from(range.start).unwrap();
                let b = usize::try_from(range.start + range.len).unwrap();
                assert_eq!(bytes, &data[a..b], "size {size} range {range:?}");
            }
            // Every split range of the whole piece verifies and they concatenate to the piece.
            let mut whole = Vec::new();
            for r in ByteRange::split(s, 64 * 1024) {
                let body = prove_range(&data, &ob, r).unwrap();
                whole.extend(verify_range(&cid, s, r, &body).unwrap());
            }
            assert_eq!(whole, data);
        }
    }

    /// Every range of pieces of up to nine chunks, at every chunk offset: the chunks lie back
    /// to back in the body, and the range found there is the piece's bytes.
    #[test]
    fn every_range_lies_in_one_span_of_its_body() {
        for size in (1..=9 * CHUNK).step_by(511) {
            let data = piece(usize::try_from(size).unwrap());
            let cid = raw_cid(&data);
            let (ob, _) = Outboard::compute(&data).unwrap();
            for start in (0..size).step_by(512) {
                for end in (start + 1..=size).step_by(341) {
                    let range = ByteRange {
                        start,
                        len: end - start,
                    };
                    let body = prove_range(&data, &ob, range).unwrap();
                    let at = verify_range_in(&cid, size, range, &body).unwrap();
                    let want =
                        &data[usize::try_from(start).unwrap()..usize::try_from(end).unwrap()];
                    assert_eq!(&body[at], want, "size {size} range {range:?}");
                }
            }
        }
    }

    #[test]
    fn tampering_and_bad_ranges_fail() {
        let data = piece(100_000);
        let cid = raw_cid(&data);
        let (ob, _) = Outboard::compute(&data).unwrap();
        let range = ByteRange {
            start: 40_000,
            len: 5000,
        };
        let body = prove_range(&data, &ob, range).unwrap();
        for i in [0, body.len() / 2, body.len() - 1] {
            let mut b = body.clone();
            b[i] ^= 1;
            assert!(verify_range(&cid, 100_000, range, &b).is_err());
        }
        // The right bytes claimed for another range, another size or another piece.
        let other = ByteRange {
            start: 50_000,
            len: 5000,
        };
        assert!(verify_range(&cid, 100_000, other, &body).is_err());
        // A size that changes the tree's shape (the size comes from the layout, so a reader
        // never has a wrong one; a different shape cannot reach the root).
        assert!(verify_range(&cid, 200_000, range, &body).is_err());
        assert!(verify_range(&cid, 45_000, range, &body).is_err());
        assert!(verify_range(&raw_cid(b"x"), 100_000, range, &body).is_err());
        for bad in [
            ByteRange { start: 0, len: 0 },
            ByteRange {
                start: 99_999,
                len: 2,
            },
            ByteRange {
                start: u64::MAX,
                len: 2,
            },
            ByteRange {
                start: 0,
                len: MAX_RANGE_LEN + 1,
            },
        ] {
            assert!(prove_range(&data, &ob, bad).is_err());
            assert!(verify_range(&cid, 100_000, bad, &body).is_err());
        }
    }
}
