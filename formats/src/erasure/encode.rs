//! Streaming encoder: an original of any length in, `k + m` pieces out, a stripe at a time.

use std::io::{self, Read, Write};

use reed_solomon_erasure::{ReedSolomon, galois_8};

use super::{
    header::{HEADER_LEN, PieceHeader},
    params::{ErasureParams, ParamsError},
};
use crate::{
    address::ContentHasher,
    layout::{LAYOUT_VERSION, ShardLayout},
};

/// Encoding failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The parameters are unusable.
    #[error(transparent)]
    Params(#[from] ParamsError),
    /// The caller passed the wrong number of piece sinks.
    #[error("{given} piece outputs given for k + m = {expected} pieces")]
    Sinks {
        /// Sinks given.
        given: usize,
        /// k + m.
        expected: usize,
    },
    /// The input ended before its announced length.
    #[error("input ended after {read} of {expected} bytes")]
    ShortInput {
        /// Bytes read.
        read: u64,
        /// Bytes announced.
        expected: u64,
    },
    /// The input had more bytes than announced.
    #[error("input is longer than the {expected} bytes announced")]
    LongInput {
        /// Bytes announced.
        expected: u64,
    },
    /// Reading the input failed.
    #[error("reading input: {0}")]
    Read(#[source] io::Error),
    /// Writing piece `index` failed.
    #[error("writing piece {index}: {source}")]
    Write {
        /// The piece.
        index: usize,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The Reed-Solomon codec refused the stripe (a bug: the geometry is checked before).
    #[error("erasure codec: {0:?}")]
    Codec(reed_solomon_erasure::Error),
}

/// The Reed-Solomon code for one set of parameters: the sans-IO core shared by encoder and
/// decoder.
#[derive(Debug)]
pub struct StripeCodec {
    params: ErasureParams,
    rs: ReedSolomon<galois_8::Field>,
}

impl StripeCodec {
    /// The codec for `params`.
    pub fn new(params: ErasureParams) -> Result<Self, ParamsError> {
        params.validate()?;
        // Parameters were validated, so the codec accepts them.
        let rs = ReedSolomon::new(params.data(), usize::from(params.m)).map_err(|_| {
            ParamsError::TooManyPieces {
                total: params.total(),
            }
        })?;
        Ok(Self { params, rs })
    }

    /// The parameters.
    pub fn params(&self) -> ErasureParams {
        self.params
    }

    /// Computes the parity blocks of one stripe. `data` holds the `k` data blocks back to back
    /// and `parity` the `m` parity blocks, all of `block_len` bytes.
    pub fn encode(
        &self,
        data: &[u8],
        parity: &mut [u8],
        block_len: usize,
    ) -> Result<(), reed_solomon_erasure::Error> {
        if block_len == 0 {
            return Ok(());
        }
        let data: Vec<&[u8]> = data.chunks(block_len).collect();
        let mut parity: Vec<&mut [u8]> = parity.chunks_mut(block_len).collect();
        self.rs.encode_sep(&data, &mut parity)
    }

    /// Rebuilds the missing data blocks of one stripe in place. `blocks` holds all `k + m`
    /// blocks of `block_len` bytes back to back; `present[i]` says whether block `i` is valid.
    pub fn reconstruct_data(
        &self,
        blocks: &mut [u8],
        present: &[bool],
        block_len: usize,
    ) -> Result<(), reed_solomon_erasure::Error> {
        if block_len == 0 {
            return Ok(());
        }
        let mut shards: Vec<(&mut [u8], bool)> = blocks
            .chunks_mut(block_len)
            .zip(present.iter().copied())
            .collect();
        self.rs.reconstruct_data(&mut shards)
    }
}

/// Erasure-codes `len` bytes read from `input` into `k + m` pieces written to `sinks`, holding
/// one stripe in memory. Returns the shard's layout: the CID of the original and of each piece.
pub fn encode<R: Read, W: Write>(
    params: ErasureParams,
    len: u64,
    mut input: R,
    sinks: &mut [W],
) -> Result<ShardLayout, EncodeError> {
    let codec = StripeCodec::new(params)?;
    if sinks.len() != params.total() {
        return Err(EncodeError::Sinks {
            given: sinks.len(),
            expected: params.total(),
        });
    }
    let geometry = params.geometry(len);
    let mut original = ContentHasher::raw();
    let mut piece_hashers = vec![ContentHasher::raw(); params.total()];

    for (index, (sink, hasher)) in sinks.iter_mut().zip(&mut piece_hashers).enumerate() {
        let header = PieceHeader {
            params,
            index: u16::try_from(index).unwrap_or(u16::MAX),
            original_len: len,
        }
        .encode();
        hasher.update(&header);
        sink.write_all(&header)
            .map_err(|source| EncodeError::Write { index, source })?;
    }

    let first_block = usize_len(geometry.block_len(0));
    let mut data = vec![0u8; params.data() * first_block];
    let mut parity = vec![0u8; usize::from(params.m) * first_block];
    let mut read = 0u64;
    for s in 0..geometry.stripes() {
        let block = usize_len(geometry.block_len(s));
        let data_len = usize_len(geometry.data_len(s));
        let data = &mut data[..params.data() * block];
        let parity = &mut parity[..usize::from(params.m) * block];
        read_full(&mut input, &mut data[..data_len], &mut read, len)?;
        data[data_len..].fill(0);
        original.update(&data[..data_len]);
        codec
            .encode(data, parity, block)
            .map_err(EncodeError::Codec)?;
        let blocks = data.chunks(block).chain(parity.chunks(block));
        for (index, ((sink, hasher), bytes)) in sinks
            .iter_mut()
            .zip(&mut piece_hashers)
            .zip(blocks)
            .enumerate()
        {
            hasher.update(bytes);
            sink.write_all(bytes)
                .map_err(|source| EncodeError::Write { index, source })?;
        }
    }
    ensure_eof(&mut input, len)?;
    for (index, sink) in sinks.iter_mut().enumerate() {
        sink.flush()
            .map_err(|source| EncodeError::Write { index, source })?;
    }
    debug_assert!(
        piece_hashers
            .iter()
            .all(|h| h.len() == HEADER_LEN as u64 + geometry.piece_body_len())
    );
    Ok(ShardLayout {
        version: LAYOUT_VERSION,
        content: original.finish(),
        size: len,
        erasure: params,
        pieces: piece_hashers.iter().map(ContentHasher::finish).collect(),
    })
}

/// Erasure-codes bytes held in memory into `k + m` pieces held in memory.
pub fn encode_to_vecs(
    params: ErasureParams,
    data: &[u8],
) -> Result<(ShardLayout, Vec<Vec<u8>>), EncodeError> {
    let piece_len = HEADER_LEN as u64 + params.geometry(data.len() as u64).piece_body_len();
    let mut pieces = vec![Vec::with_capacity(usize_len(piece_len)); params.total()];
    let layout = encode(params, data.len() as u64, data, &mut pieces)?;
    Ok((layout, pieces))
}

fn read_full<R: Read>(
    input: &mut R,
    buf: &mut [u8],
    read: &mut u64,
    expected: u64,
) -> Result<(), EncodeError> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => {
                return Err(EncodeError::ShortInput {
                    read: *read,
                    expected,
                });
            }
            Ok(n) => {
                filled += n;
                *read += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(EncodeError::Read(e)),
        }
    }
    Ok(())
}

fn ensure_eof<R: Read>(input: &mut R, expected: u64) -> Result<(), EncodeError> {
    let mut probe = [0u8; 1];
    loop {
        match input.read(&mut probe) {
            Ok(0) => return Ok(()),
            Ok(_) => return Err(EncodeError::LongInput { expected }),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(EncodeError::Read(e)),
        }
    }
}

/// A length that is bounded by the stripe limits, as a `usize`.
pub(crate) fn usize_len(n: u64) -> usize {
    // Block and stripe lengths are at most MAX_STRIPE_BYTES, far below usize::MAX on the 64-bit
    // targets Tessera supports.
    usize::try_from(n).unwrap_or(usize::MAX)
}
