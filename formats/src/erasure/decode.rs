//! Streaming decoder: any `k` intact pieces in, the exact original out, a stripe at a time.
//!
//! Every candidate piece is verified against its CID (and its header against the layout)
//! before it is used. Data pieces are preferred: with all of them intact, decoding only copies.
//! While decoding, the output is hashed against the layout's content CID, so bytes that change
//! on disk between the two passes are caught too.

use std::{
    fmt,
    io::{self, Read, Seek, SeekFrom, Write},
};

use super::{
    encode::{StripeCodec, usize_len},
    header::{HEADER_LEN, PieceHeader},
};
use crate::{
    address::{ContentHasher, HashFn, feed},
    layout::{LayoutError, ShardLayout},
};

/// Why one piece was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PieceFault {
    /// Its bytes do not hash to its CID.
    HashMismatch,
    /// Its header disagrees with the layout.
    Header(String),
    /// It is longer or shorter than the layout implies.
    Length {
        /// Bytes found (capped at one past the expected length).
        found: u64,
        /// Bytes expected.
        expected: u64,
    },
    /// Reading it failed.
    Io(String),
}

impl fmt::Display for PieceFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PieceFault::HashMismatch => write!(f, "bytes do not match the piece CID"),
            PieceFault::Header(why) => write!(f, "bad header: {why}"),
            PieceFault::Length { found, expected } => {
                write!(f, "{found} bytes where {expected} were expected")
            }
            PieceFault::Io(e) => write!(f, "read error: {e}"),
        }
    }
}

/// Decoding failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The layout itself is unusable.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The caller passed the wrong number of piece slots.
    #[error("{given} piece slots given for k + m = {expected} pieces")]
    Slots {
        /// Slots given.
        given: usize,
        /// k + m.
        expected: usize,
    },
    /// Fewer than `k` pieces are intact.
    #[error(
        "not enough intact pieces: {intact} of the {needed} needed ({missing} missing, {corrupt} corrupt)"
    )]
    NotEnoughPieces {
        /// k.
        needed: usize,
        /// Pieces that verified.
        intact: usize,
        /// Pieces not supplied.
        missing: usize,
        /// Pieces that failed verification.
        corrupt: usize,
        /// Each failed piece with its fault.
        faults: Vec<(usize, PieceFault)>,
    },
    /// A piece that verified could not be read again for decoding.
    #[error("piece {index} failed while it was being decoded: {fault}")]
    Changed {
        /// The piece.
        index: usize,
        /// What was wrong the second time.
        fault: PieceFault,
    },
    /// The decoded bytes do not hash to the layout's content CID: a piece changed after it was
    /// verified, or the layout's content CID does not belong to its pieces.
    #[error("decoded bytes do not match the shard CID {expected}")]
    OutputMismatch {
        /// The layout's content CID.
        expected: Box<cid::Cid>,
    },
    /// Writing the output failed.
    #[error("writing output: {0}")]
    Write(#[source] io::Error),
    /// The Reed-Solomon codec refused the stripe.
    #[error("erasure codec: {0:?}")]
    Codec(reed_solomon_erasure::Error),
}

/// What a successful decode used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeReport {
    /// Indices of the pieces the output was built from.
    pub used: Vec<usize>,
    /// Pieces that were not supplied.
    pub missing: Vec<usize>,
    /// Pieces that were supplied but failed verification.
    pub corrupt: Vec<(usize, PieceFault)>,
    /// Whether Reed-Solomon reconstruction ran (false when all data pieces were intact).
    pub reconstructed: bool,
    /// Bytes written.
    pub bytes: u64,
}

/// Checks one piece against its slot in the layout: header, length and CID, reading it once
/// in bounded memory. The source is left at an unspecified position.
pub fn verify_piece<R: Read>(
    layout: &ShardLayout,
    index: usize,
    source: R,
) -> Result<(), PieceFault> {
    let expected_header = layout
        .piece_header(index)
        .map_err(|e| PieceFault::Header(e.to_string()))?;
    let cid = layout
        .pieces
        .get(index)
        .ok_or_else(|| PieceFault::Header(format!("no piece {index} in the layout")))?;
    let hash = HashFn::of(cid).map_err(|e| PieceFault::Header(e.to_string()))?;
    let expected_len = expected_header.piece_len();
    let mut hasher = ContentHasher::new(cid.codec(), hash);
    let mut source = source.take(expected_len + 1);

    let mut header = [0u8; HEADER_LEN];
    source.read_exact(&mut header).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => PieceFault::Length {
            found: 0,
            expected: expected_len,
        },
        _ => PieceFault::Io(e.to_string()),
    })?;
    let found = PieceHeader::decode(&header).map_err(|e| PieceFault::Header(e.to_string()))?;
    if found != expected_header {
        return Err(PieceFault::Header(format!(
            "piece says {found:?}, layout says {expected_header:?}"
        )));
    }
    hasher.update(&header);
    feed(&mut source, &mut hasher).map_err(|e| PieceFault::Io(e.to_string()))?;
    if hasher.len() != expected_len {
        return Err(PieceFault::Length {
            found: hasher.len(),
            expected: expected_len,
        });
    }
    if hasher.finish().hash() != cid.hash() {
        return Err(PieceFault::HashMismatch);
    }
    Ok(())
}

/// Rebuilds the original bytes of a shard from its pieces and writes them to `out`.
///
/// `sources` has one slot per piece (`k + m`); `None` marks a piece that is not available.
/// Pieces are verified first, data pieces before parity pieces, until `k` are intact.
///
/// Output is written as it is decoded. If an error is returned after writing began (a piece
/// changed between the two reads), the output is not the shard: write to a temporary file and
/// give it its final name only on success.
pub fn decode<R: Read + Seek, W: Write>(
    layout: &ShardLayout,
    sources: &mut [Option<R>],
    out: W,
) -> Result<DecodeReport, DecodeError> {
    decode_with(layout, sources, out, Pieces::Unchecked)
}

/// Whether the pieces given to [`decode_with`] still need checking against their CIDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pieces {
    /// Check each piece before using it, and pass over the ones that fail.
    Unchecked,
    /// The caller checked every piece against its CID as it received it (a fetch verifies
    /// each range), so the first `k` present are used as they are. The output is still hashed
    /// against the content CID, which catches a piece that changed since.
    Checked,
}

/// [`decode`], saying whether the pieces were checked already: a whole read and hash of
/// every piece is saved where they were.
pub fn decode_with<R: Read + Seek, W: Write>(
    layout: &ShardLayout,
    sources: &mut [Option<R>],
    mut out: W,
    pieces: Pieces,
) -> Result<DecodeReport, DecodeError> {
    layout.validate()?;
    let params = layout.erasure;
    let (k, total) = (params.data(), params.total());
    if sources.len() != total {
        return Err(DecodeError::Slots {
            given: sources.len(),
            expected: total,
        });
    }

    let mut used = Vec::with_capacity(k);
    let mut missing = Vec::new();
    let mut corrupt = Vec::new();
    for (index, slot) in sources.iter_mut().enumerate() {
        if used.len() == k {
            break;
        }
        let Some(source) = slot else {
            missing.push(index);
            continue;
        };
        let verdict = match pieces {
            Pieces::Checked => Ok(()),
            Pieces::Unchecked => source
                .seek(SeekFrom::Start(0))
                .map_err(|e| PieceFault::Io(e.to_string()))
                .and_then(|_| verify_piece(layout, index, &mut *source)),
        };
        match verdict {
            Ok(()) => used.push(index),
            Err(fault) => corrupt.push((index, fault)),
        }
    }
    if used.len() < k {
        return Err(DecodeError::NotEnoughPieces {
            needed: k,
            intact: used.len(),
            missing: missing.len(),
            corrupt: corrupt.len(),
            faults: corrupt,
        });
    }

    let reconstructed = used.iter().any(|&i| i >= k);
    let codec = StripeCodec::new(params).map_err(LayoutError::from)?;
    let geometry = params.geometry(layout.size);
    for &index in &used {
        source_at(sources, index)?
            .seek(SeekFrom::Start(HEADER_LEN as u64))
            .map_err(|e| changed(index, e))?;
    }

    let first_block = usize_len(geometry.block_len(0));
    let mut blocks = vec![0u8; total * first_block];
    let mut present = vec![false; total];
    for &i in &used {
        present[i] = true;
    }
    // The output is a function of the chosen pieces, so hashing it catches any of them changing
    // after it was verified without hashing each piece a second time.
    let mut output = ContentHasher::new(
        layout.content.codec(),
        HashFn::of(&layout.content).map_err(|e| LayoutError::Address(e.to_string()))?,
    );
    for s in 0..geometry.stripes() {
        let block = usize_len(geometry.block_len(s));
        let blocks = &mut blocks[..total * block];
        for &index in &used {
            source_at(sources, index)?
                .read_exact(&mut blocks[index * block..(index + 1) * block])
                .map_err(|e| changed(index, e))?;
        }
        if reconstructed {
            codec
                .reconstruct_data(blocks, &present, block)
                .map_err(DecodeError::Codec)?;
        }
        let data = &blocks[..usize_len(geometry.data_len(s))];
        output.update(data);
        out.write_all(data).map_err(DecodeError::Write)?;
    }
    out.flush().map_err(DecodeError::Write)?;
    if output.finish().hash() != layout.content.hash() {
        return Err(DecodeError::OutputMismatch {
            expected: Box::new(layout.content),
        });
    }
    Ok(DecodeReport {
        used,
        missing,
        corrupt,
        reconstructed,
        bytes: layout.size,
    })
}

pub(super) fn source_at<R>(sources: &mut [Option<R>], index: usize) -> Result<&mut R, DecodeError> {
    sources
        .get_mut(index)
        .and_then(Option::as_mut)
        .ok_or_else(|| changed(index, io::Error::other("source went away")))
}

pub(super) fn changed(index: usize, e: io::Error) -> DecodeError {
    DecodeError::Changed {
        index,
        fault: PieceFault::Io(e.to_string()),
    }
}
