//! Filling in the data pieces that a placed read lacks. A reader writes each data piece's
//! verified ranges straight to their places in the shard ([`super::Run`]); when some data
//! pieces are slow or gone and parity pieces came instead, only the missing blocks are rebuilt,
//! stripe by stripe, from the blocks already in place and the parity pieces, and written into
//! their places. Nothing placed is read twice from the network or written twice to disk.
//!
//! ```text
//! original: [b0][b1][  ][b3] [b0][b1][  ][b3] ...   (data piece 2 missing)
//! parity 4:  header [p0]      [p1]            ...
//!                  └── stripe s: b0 b1 b3 p_s ─▶ b2 ─▶ written at its place
//! ```

use std::io::{Read, Seek, SeekFrom, Write};

use super::{
    ErasureParams,
    decode::{DecodeError, changed, source_at},
    encode::{StripeCodec, usize_len},
    header::HEADER_LEN,
};
use crate::layout::LayoutError;

/// Rebuilds, in `original`, the blocks of every data piece that `placed` (one flag per data
/// piece) marks as not there, from the data pieces placed and the parity pieces in `parity`
/// (one slot per piece, `k + m`; data slots are ignored). `original` is `len` bytes, the
/// shard's length. The pieces are taken as checked: the caller hashes the result.
pub fn fill_placed<O: Read + Write + Seek, P: Read + Seek>(
    params: ErasureParams,
    len: u64,
    original: &mut O,
    placed: &[bool],
    parity: &mut [Option<P>],
) -> Result<(), DecodeError> {
    let codec = StripeCodec::new(params).map_err(LayoutError::from)?;
    let (k, total) = (params.data(), params.total());
    if placed.len() != k || parity.len() != total {
        return Err(DecodeError::Slots {
            given: placed.len() + parity.len(),
            expected: k + total,
        });
    }
    let missing: Vec<usize> = (0..k).filter(|&i| !placed[i]).collect();
    let given: Vec<usize> = (k..total).filter(|&i| parity[i].is_some()).collect();
    if missing.len() > given.len() {
        return Err(DecodeError::NotEnoughPieces {
            needed: k,
            intact: k - missing.len() + given.len(),
            missing: missing.len() - given.len(),
            corrupt: 0,
            faults: Vec::new(),
        });
    }
    if missing.is_empty() {
        return Ok(());
    }
    let used = &given[..missing.len()];
    let mut present: Vec<bool> = placed.to_vec();
    present.resize(total, false);
    for &index in used {
        present[index] = true;
        source_at(parity, index)?
            .seek(SeekFrom::Start(HEADER_LEN as u64))
            .map_err(|e| changed(index, e))?;
    }

    let geometry = params.geometry(len);
    let stripe_size = u64::from(params.stripe_size);
    let mut blocks = vec![0u8; total * usize_len(geometry.block_len(0))];
    for s in 0..geometry.stripes() {
        let (block, data_len) = (geometry.block_len(s), geometry.data_len(s));
        let base = s * params.data() as u64 * stripe_size;
        let b = usize_len(block);
        let blocks = &mut blocks[..total * b];
        blocks.fill(0);
        // The original's bytes of data block i; the last stripe's blocks end in padding.
        let valid = |i: usize| usize_len(data_len.saturating_sub(i as u64 * block).min(block));
        // A block of padding alone has no place: seeking to it and writing nothing would
        // still grow some writers (a `Cursor` pads up to the position).
        for i in (0..k).filter(|&i| placed[i] && valid(i) > 0) {
            original
                .seek(SeekFrom::Start(base + i as u64 * block))
                .and_then(|_| original.read_exact(&mut blocks[i * b..i * b + valid(i)]))
                .map_err(DecodeError::Write)?;
        }
        for &index in used {
            source_at(parity, index)?
                .read_exact(&mut blocks[index * b..(index + 1) * b])
                .map_err(|e| changed(index, e))?;
        }
        codec
            .reconstruct_data(blocks, &present, b)
            .map_err(DecodeError::Codec)?;
        for &i in missing.iter().filter(|&&i| valid(i) > 0) {
            original
                .seek(SeekFrom::Start(base + i as u64 * block))
                .and_then(|_| original.write_all(&blocks[i * b..i * b + valid(i)]))
                .map_err(DecodeError::Write)?;
        }
    }
    original.flush().map_err(DecodeError::Write)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use proptest::prelude::*;

    use super::*;
    use crate::erasure::encode_to_vecs;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// With any data pieces missing from their places (their bytes garbage) and as many
        /// parity pieces given, the original comes back whole.
        #[test]
        fn missing_data_blocks_are_rebuilt_in_place(
            k in 1u16..6,
            m in 1u16..4,
            stripe in prop::sample::select(vec![1024u32, 2048]),
            len in 1usize..30_000,
            lost in any::<u8>(),
            spare in any::<u8>(),
            seed in any::<u64>(),
        ) {
            let data: Vec<u8> = (0..len as u64).map(|i| seed.wrapping_mul(i + 1).to_le_bytes()[3]).collect();
            let params = ErasureParams::new(k, m, stripe).unwrap();
            let (_, pieces) = encode_to_vecs(params, &data).unwrap();
            let (k, total) = (params.data(), params.total());
            // Up to m data pieces lost, chosen by the bits of `lost`.
            let mut placed = vec![true; k];
            for i in (0..k).filter(|i| lost >> i & 1 == 1).take(usize::from(m)) {
                placed[i] = false;
            }
            let geometry = params.geometry(len as u64);
            let mut out = vec![0xAAu8; len];
            for (i, piece) in pieces.iter().enumerate().take(k).filter(|(i, _)| placed[*i]) {
                for run in geometry.data_runs(i, 0, piece.len() as u64) {
                    let (o, a, l) = (usize_len(run.original), usize_len(run.at), usize_len(run.len));
                    out[o..o + l].copy_from_slice(&piece[a..a + l]);
                }
            }
            let lost_count = placed.iter().filter(|p| !**p).count();
            // Parity pieces given: enough, the choice among them turned by `spare`.
            let mut parity: Vec<Option<Cursor<Vec<u8>>>> = (0..total).map(|_| None).collect();
            let parity_ids: Vec<usize> = (k..total).collect();
            for j in 0..lost_count {
                let index = parity_ids[(j + usize::from(spare)) % parity_ids.len()];
                parity[index] = Some(Cursor::new(pieces[index].clone()));
            }
            let mut original = Cursor::new(out);
            fill_placed(params, len as u64, &mut original, &placed, &mut parity).unwrap();
            prop_assert_eq!(original.into_inner(), data);
        }
    }

    #[test]
    fn too_few_parity_pieces_is_an_error_and_writes_nothing() {
        let params = ErasureParams::new(3, 2, 1024).unwrap();
        let data = vec![7u8; 5000];
        let (_, pieces) = encode_to_vecs(params, &data).unwrap();
        let mut parity: Vec<Option<Cursor<Vec<u8>>>> = (0..5).map(|_| None).collect();
        parity[3] = Some(Cursor::new(pieces[3].clone()));
        let mut original = Cursor::new(vec![0u8; 5000]);
        let err = fill_placed(
            params,
            5000,
            &mut original,
            &[false, true, false],
            &mut parity,
        )
        .unwrap_err();
        assert!(matches!(err, DecodeError::NotEnoughPieces { .. }), "{err}");
        assert!(original.into_inner().iter().all(|b| *b == 0));
    }

    #[test]
    fn a_missing_block_of_padding_alone_writes_nothing_past_the_end() {
        // Three full stripes and one byte: the last stripe's block of piece 2 is all padding.
        let params = ErasureParams::new(3, 1, 1024).unwrap();
        let data: Vec<u8> = (0..9217u32).map(|i| (i % 251) as u8).collect();
        let (_, pieces) = encode_to_vecs(params, &data).unwrap();
        let geometry = params.geometry(data.len() as u64);
        let mut out = vec![0u8; data.len()];
        for (i, piece) in pieces.iter().enumerate().take(2) {
            for run in geometry.data_runs(i, 0, piece.len() as u64) {
                let (o, a, l) = (
                    usize_len(run.original),
                    usize_len(run.at),
                    usize_len(run.len),
                );
                out[o..o + l].copy_from_slice(&piece[a..a + l]);
            }
        }
        let mut parity: Vec<Option<Cursor<Vec<u8>>>> = (0..4).map(|_| None).collect();
        parity[3] = Some(Cursor::new(pieces[3].clone()));
        let mut original = Cursor::new(out);
        fill_placed(
            params,
            9217,
            &mut original,
            &[true, true, false],
            &mut parity,
        )
        .unwrap();
        assert_eq!(original.into_inner(), data);
    }
}
