//! Erasure coding through the public API: any k of k + m pieces give back the exact bytes, and
//! corrupt, swapped or missing pieces are detected by CID and counted.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::io::Cursor;

use proptest::prelude::*;
use tessera_formats::{
    address::raw_cid,
    erasure::{
        DecodeError, ErasureParams, HEADER_LEN, PieceFault, Pieces, decode, decode_with, encode,
        encode_to_vecs, verify_piece,
    },
};

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

fn decode_vec(
    layout: &tessera_formats::ShardLayout,
    pieces: Vec<Option<Vec<u8>>>,
) -> Result<(Vec<u8>, tessera_formats::erasure::DecodeReport), DecodeError> {
    let mut sources: Vec<Option<Cursor<Vec<u8>>>> =
        pieces.into_iter().map(|p| p.map(Cursor::new)).collect();
    let mut out = Vec::new();
    let report = decode(layout, &mut sources, &mut out)?;
    Ok((out, report))
}

#[test]
fn edge_sizes_round_trip_with_and_without_reconstruction() {
    let params = ErasureParams::new(4, 2, 1024).unwrap();
    for len in [0, 1, 2, 1023, 1024, 4095, 4096, 4097, 3 * 4096 + 1, 10_000] {
        let original = data(len, 3);
        let (layout, pieces) = encode_to_vecs(params, &original).unwrap();
        assert_eq!(layout.content, raw_cid(&original));
        assert_eq!(layout.size, len as u64);
        for p in &pieces {
            assert_eq!(p.len() as u64, layout.piece_len());
        }

        // All pieces: data pieces are used, nothing is reconstructed.
        let all = pieces.iter().cloned().map(Some).collect();
        let (out, report) = decode_vec(&layout, all).unwrap();
        assert_eq!(out, original);
        assert!(!report.reconstructed);
        assert_eq!(report.used, vec![0, 1, 2, 3]);

        // Two data pieces lost: rebuilt from parity.
        let mut some: Vec<_> = pieces.iter().cloned().map(Some).collect();
        some[0] = None;
        some[2] = None;
        let (out, report) = decode_vec(&layout, some).unwrap();
        assert_eq!(out, original, "len {len}");
        assert!(report.reconstructed);
        assert_eq!(report.missing, vec![0, 2]);
    }
}

#[test]
fn data_pieces_hold_the_original_as_is() {
    let params = ErasureParams::new(3, 2, 1024).unwrap();
    let original = data(3 * 1024 * 2 + 5, 9);
    let (_, pieces) = encode_to_vecs(params, &original).unwrap();
    // Stripe 0, block 1 of piece 1 is original bytes 1024..2048.
    assert_eq!(
        &pieces[1][HEADER_LEN..HEADER_LEN + 1024],
        &original[1024..2048]
    );
    // Stripe 1, block 0 of piece 0 is original bytes 3072..4096.
    assert_eq!(
        &pieces[0][HEADER_LEN + 1024..HEADER_LEN + 2048],
        &original[3072..4096]
    );
}

#[test]
fn too_few_intact_pieces_is_a_named_error() {
    let params = ErasureParams::new(4, 2, 1024).unwrap();
    let original = data(9000, 1);
    let (layout, pieces) = encode_to_vecs(params, &original).unwrap();
    let mut some: Vec<_> = pieces.into_iter().map(Some).collect();
    some[1] = None;
    some[4] = None;
    if let Some(p) = some[0].as_mut() {
        p[HEADER_LEN + 5] ^= 1;
    }
    let err = decode_vec(&layout, some).unwrap_err();
    match err {
        DecodeError::NotEnoughPieces {
            needed,
            intact,
            missing,
            corrupt,
            ref faults,
        } => {
            assert_eq!((needed, intact, missing, corrupt), (4, 3, 2, 1));
            assert_eq!(faults, &vec![(0, PieceFault::HashMismatch)]);
        }
        other => panic!("unexpected {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("3 of the 4 needed"), "{text}");
    assert!(text.contains("2 missing, 1 corrupt"), "{text}");
}

#[test]
fn swapped_truncated_and_extended_pieces_are_detected() {
    let params = ErasureParams::new(4, 2, 1024).unwrap();
    let original = data(5000, 2);
    let (layout, pieces) = encode_to_vecs(params, &original).unwrap();

    // Piece 1's bytes offered as piece 0: its header names index 1.
    assert!(matches!(
        verify_piece(&layout, 0, &pieces[1][..]),
        Err(PieceFault::Header(_))
    ));
    let mut short = pieces[2].clone();
    short.pop();
    assert!(matches!(
        verify_piece(&layout, 2, &short[..]),
        Err(PieceFault::Length { .. })
    ));
    let mut long = pieces[2].clone();
    long.push(0);
    assert!(matches!(
        verify_piece(&layout, 2, &long[..]),
        Err(PieceFault::Length { .. })
    ));

    // Swap two pieces: each is refused in the other's slot, and the rest still decode.
    let mut some: Vec<_> = pieces.iter().cloned().map(Some).collect();
    some.swap(0, 5);
    assert!(verify_piece(&layout, 5, &some[5].clone().unwrap()[..]).is_err());
    let (out, report) = decode_vec(&layout, some).unwrap();
    assert_eq!(out, original);
    let bad: Vec<usize> = report.corrupt.iter().map(|(i, _)| *i).collect();
    // Verification stops once k pieces are intact, so slot 5 is never needed.
    assert_eq!(bad, vec![0]);
    assert_eq!(report.used, vec![1, 2, 3, 4]);
}

#[test]
fn announced_length_must_match_the_input() {
    let params = ErasureParams::new(2, 1, 1024).unwrap();
    let mut sinks = vec![Vec::new(); 3];
    assert!(encode(params, 10, &[0u8; 9][..], &mut sinks).is_err());
    let mut sinks = vec![Vec::new(); 3];
    assert!(encode(params, 10, &[0u8; 11][..], &mut sinks).is_err());
    let mut sinks = vec![Vec::new(); 2];
    assert!(encode(params, 10, &[0u8; 10][..], &mut sinks).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any k of the k + m pieces reconstruct the exact bytes, whichever are lost or corrupt.
    #[test]
    fn any_k_pieces_reconstruct(
        len in 0usize..20_000,
        k in 1u16..7,
        m in 1u16..5,
        stripe in prop::sample::select(vec![1024u32, 1536, 4096]),
        seed in any::<u8>(),
        lose in any::<u64>(),
        corrupt_at in any::<u32>(),
    ) {
        let params = ErasureParams::new(k, m, stripe).unwrap();
        let original = data(len, seed);
        let (layout, pieces) = encode_to_vecs(params, &original).unwrap();
        let total = params.total();

        // Choose m pieces to take away: some missing, one possibly corrupted instead.
        let mut order: Vec<usize> = (0..total).collect();
        let mut state = lose;
        for i in (1..total).rev() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            order.swap(i, (state >> 33) as usize % (i + 1));
        }
        let gone = &order[..usize::from(m)];
        let mut slots: Vec<Option<Vec<u8>>> = pieces.into_iter().map(Some).collect();
        for (n, &i) in gone.iter().enumerate() {
            if n == 0 {
                // Corrupt one byte somewhere in this piece (header or body).
                if let Some(p) = slots[i].as_mut() {
                    let at = corrupt_at as usize % p.len();
                    p[at] ^= 0x01;
                }
            } else {
                slots[i] = None;
            }
        }
        let (out, report) = decode_vec(&layout, slots).unwrap();
        prop_assert_eq!(out, original);
        prop_assert_eq!(report.used.len(), usize::from(k));
        prop_assert!(report.used.iter().all(|i| !gone.contains(i)));
    }
}

/// A piece source whose bytes change after it was verified (a disk going bad between reads).
struct ChangesAfterVerify {
    inner: Cursor<Vec<u8>>,
    seeks: u32,
}

impl std::io::Read for ChangesAfterVerify {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.seeks >= 2 {
            buf[..n].iter_mut().for_each(|b| *b ^= 0x10);
        }
        Ok(n)
    }
}

impl std::io::Seek for ChangesAfterVerify {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.seeks += 1;
        self.inner.seek(pos)
    }
}

#[test]
fn a_piece_that_changes_after_verification_is_caught() {
    let params = ErasureParams::new(3, 1, 1024).unwrap();
    let original = data(7000, 4);
    let (layout, pieces) = encode_to_vecs(params, &original).unwrap();
    let mut sources: Vec<Option<ChangesAfterVerify>> = pieces
        .into_iter()
        .map(|p| {
            Some(ChangesAfterVerify {
                inner: Cursor::new(p),
                seeks: 0,
            })
        })
        .collect();
    let err = decode(&layout, &mut sources, std::io::sink()).unwrap_err();
    assert!(matches!(err, DecodeError::OutputMismatch { .. }), "{err:?}");
}

#[test]
fn a_layout_whose_content_cid_is_wrong_is_caught() {
    let params = ErasureParams::new(3, 1, 1024).unwrap();
    let (mut layout, pieces) = encode_to_vecs(params, &data(5000, 1)).unwrap();
    layout.content = raw_cid(b"something else");
    let err = decode_vec(&layout, pieces.into_iter().map(Some).collect()).unwrap_err();
    assert!(matches!(err, DecodeError::OutputMismatch { .. }), "{err:?}");
}

#[test]
fn checked_pieces_decode_without_a_second_check_and_the_output_hash_still_guards() {
    let params = ErasureParams::new(3, 2, 1024).unwrap();
    let original = data(9000, 6);
    let (layout, pieces) = encode_to_vecs(params, &original).unwrap();
    let run = |pieces: Vec<Option<Vec<u8>>>| {
        let mut sources: Vec<Option<Cursor<Vec<u8>>>> =
            pieces.into_iter().map(|p| p.map(Cursor::new)).collect();
        let mut out = Vec::new();
        decode_with(&layout, &mut sources, &mut out, Pieces::Checked).map(|report| (out, report))
    };

    let (out, report) = run(pieces.iter().cloned().map(Some).collect()).unwrap();
    assert_eq!(out, original);
    assert_eq!(report.used, vec![0, 1, 2]);

    let mut some: Vec<_> = pieces.iter().cloned().map(Some).collect();
    some[1] = None;
    let (out, report) = run(some).unwrap();
    assert_eq!(out, original);
    assert!(report.reconstructed);

    // A byte that changed in a piece the caller vouched for is caught by the output hash.
    let mut bad: Vec<_> = pieces.iter().cloned().map(Some).collect();
    bad[0].as_mut().unwrap()[HEADER_LEN + 10] ^= 1;
    let err = run(bad).unwrap_err();
    assert!(matches!(err, DecodeError::OutputMismatch { .. }), "{err:?}");
}
