//! Proofs verify against the CID alone, and every kind of tampering fails.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use proptest::prelude::*;
use tessera_formats::address::raw_cid;
use tessera_proofs::{
    Challenge, Outboard, Proof, ProofError, pass_probability, prove, tree::GROUP, verify,
};

fn piece(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u8).wrapping_mul(17).wrapping_add(seed) ^ (i >> 10) as u8)
        .collect()
}

fn challenge(data: &[u8], nonce: u8, samples: u32) -> Challenge {
    Challenge {
        piece: raw_cid(data),
        nonce: [nonce; 32],
        samples,
    }
}

fn honest(data: &[u8], c: &Challenge) -> Proof {
    let (outboard, root) = Outboard::compute(data).unwrap();
    assert_eq!(root, blake3::hash(data));
    prove(c, data, &outboard).unwrap()
}

#[test]
fn honest_proofs_verify_for_many_sizes() {
    for size in [
        0,
        1,
        1023,
        1024,
        1025,
        16 * 1024,
        16 * 1024 + 1,
        100_000,
        1_048_579,
    ] {
        let data = piece(size, 5);
        for samples in [1, 7, 688] {
            let c = challenge(&data, 9, samples);
            let proof = honest(&data, &c);
            let v = verify(&c, &proof).unwrap_or_else(|e| panic!("size {size}: {e}"));
            assert_eq!(v.size, size as u64);
        }
    }
}

#[test]
fn proof_size_is_about_a_chunk_per_sample() {
    let data = piece(4 << 20, 1);
    let c = challenge(&data, 3, 688);
    let proof = honest(&data, &c);
    let chunks = c.chunk_indices(data.len() as u64).len();
    // Each distinct sample shows 1 KiB; sibling hashes add the rest.
    assert!(proof.body.len() >= chunks * 1024);
    assert!(
        proof.body.len() < chunks * (1024 + 14 * 32),
        "{}",
        proof.body.len()
    );
}

#[test]
fn tampered_proofs_fail() {
    let data = piece(300_000, 2);
    let c = challenge(&data, 4, 50);
    let proof = honest(&data, &c);
    verify(&c, &proof).unwrap();

    // A proof for another nonce does not answer this challenge, even with the nonce rewritten.
    let other = honest(&data, &challenge(&data, 5, 50));
    assert_eq!(verify(&c, &other), Err(ProofError::WrongNonce));
    let relabeled = Proof {
        nonce: c.nonce,
        ..other
    };
    assert!(verify(&c, &relabeled).is_err());

    // Another piece.
    let mut p = proof.clone();
    p.piece = raw_cid(b"another piece");
    assert!(matches!(verify(&c, &p), Err(ProofError::WrongPiece { .. })));

    // A wrong size changes the walk.
    for size in [299_999u64, 300_001, 150_000, 600_000, 0] {
        let mut p = proof.clone();
        p.size = size;
        assert!(verify(&c, &p).is_err(), "size {size}");
    }

    // Cut or extended bodies.
    let mut p = proof.clone();
    p.body.pop();
    assert!(verify(&c, &p).is_err());
    let mut p = proof.clone();
    p.body.push(0);
    assert_eq!(verify(&c, &p), Err(ProofError::TrailingBytes(1)));
}

#[test]
fn every_flipped_byte_fails() {
    let data = piece(70_000, 8);
    let c = challenge(&data, 1, 6);
    let proof = honest(&data, &c);
    for i in 0..proof.body.len() {
        let mut p = proof.clone();
        p.body[i] ^= 0x80;
        assert_eq!(verify(&c, &p), Err(ProofError::RootMismatch), "byte {i}");
    }
}

#[test]
fn a_node_whose_bytes_changed_cannot_prove() {
    let data = piece(200_000, 3);
    let c = challenge(&data, 7, 20);
    let (outboard, _) = Outboard::compute(&data).unwrap();
    let sampled = c.chunk_indices(data.len() as u64);

    // A flipped bit in a sampled chunk.
    let mut altered = data.clone();
    altered[usize::try_from(sampled[0] * 1024).unwrap()] ^= 1;
    let proof = prove(&c, &altered, &outboard).unwrap();
    assert_eq!(verify(&c, &proof), Err(ProofError::RootMismatch));

    // A flipped bit in an unsampled chunk of a sampled chunk's group: the prover re-hashes
    // the group from its bytes, so this is caught too.
    let group_chunks = GROUP / 1024;
    let target = sampled
        .iter()
        .find_map(|&s| {
            let g = s / group_chunks;
            (g * group_chunks..(g + 1) * group_chunks)
                .find(|n| !sampled.contains(n) && (n + 1) * 1024 <= data.len() as u64)
        })
        .unwrap();
    let mut altered = data.clone();
    altered[usize::try_from(target * 1024).unwrap()] ^= 1;
    let proof = prove(&c, &altered, &outboard).unwrap();
    assert_eq!(verify(&c, &proof), Err(ProofError::RootMismatch));
}

/// The detection math, checked by experiment: a node that lost a fraction f of a piece's
/// 16 KiB groups passes a c-sample challenge with probability (1-f)^c.
#[test]
fn pass_rate_matches_the_detection_math() {
    let groups = 64usize;
    let data = piece(groups * GROUP as usize, 6);
    let (outboard, _) = Outboard::compute(&data).unwrap();
    // Lose 8 of 64 groups: f = 1/8.
    let mut damaged = data.clone();
    for g in (0..groups).step_by(8) {
        let start = g * GROUP as usize + 100;
        damaged[start] ^= 0xff;
    }
    let (f, samples, trials) = (1.0 / 8.0, 10u32, 1500u32);
    let expected = pass_probability(f, samples);
    let mut passed = 0u32;
    for t in 0..trials {
        let mut nonce = [0u8; 32];
        nonce[..4].copy_from_slice(&t.to_le_bytes());
        let c = Challenge {
            piece: raw_cid(&data),
            nonce,
            samples,
        };
        let proof = prove(&c, &damaged, &outboard).unwrap();
        // The last chunk is always shown; it is in an undamaged group here, so it does not
        // change the odds.
        if verify(&c, &proof).is_ok() {
            passed += 1;
        }
    }
    let rate = f64::from(passed) / f64::from(trials);
    let sd = (expected * (1.0 - expected) / f64::from(trials)).sqrt();
    assert!(
        (rate - expected).abs() < 5.0 * sd,
        "pass rate {rate:.4}, expected {expected:.4} +- {:.4}",
        5.0 * sd
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_single_bit_flip_fails(
        size in 0usize..200_000,
        samples in 1u32..40,
        nonce in any::<u8>(),
        at in any::<usize>(),
        bit in 0u8..8,
    ) {
        let data = piece(size, nonce);
        let c = challenge(&data, nonce, samples);
        let proof = honest(&data, &c);
        prop_assert!(verify(&c, &proof).is_ok());
        let mut p = proof.clone();
        let i = at % p.body.len().max(1);
        if let Some(b) = p.body.get_mut(i) {
            *b ^= 1 << bit;
            prop_assert!(verify(&c, &p).is_err());
        }
    }
}
