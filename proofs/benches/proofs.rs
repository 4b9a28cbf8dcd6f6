//! Proof of storage: outboard computation next to bare BLAKE3 over the same bytes, and the
//! time to prove and verify one default challenge (688 samples) on a 64 MiB piece, and a 1 MiB
//! range proof read from a file next to reading the same range bare.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tessera_formats::address::raw_cid;
use tessera_proofs::{
    ByteRange, Challenge, DEFAULT_SAMPLES, Outboard, prove, prove_range, verify, verify_range_in,
};

const LEN: usize = 64 << 20;

fn proofs(c: &mut Criterion) {
    let data: Vec<u8> = (0..LEN).map(|i| (i % 249) as u8).collect();
    let piece = raw_cid(&data);
    let (outboard, _) = Outboard::compute(&data).unwrap();
    let challenge = Challenge {
        piece,
        nonce: [7; 32],
        samples: DEFAULT_SAMPLES,
    };
    let proof = prove(&challenge, &data, &outboard).unwrap();
    eprintln!(
        "proof for a {} MiB piece with {} samples: {} bytes body, {} distinct chunks; outboard {} bytes",
        LEN >> 20,
        DEFAULT_SAMPLES,
        proof.body.len(),
        challenge.chunk_indices(LEN as u64).len(),
        outboard.to_bytes().len(),
    );

    let mut g = c.benchmark_group("outboard_64MiB");
    g.throughput(Throughput::Bytes(LEN as u64));
    g.sample_size(10);
    g.bench_function("blake3_bare", |b| b.iter(|| blake3::hash(black_box(&data))));
    g.bench_function("outboard_compute", |b| {
        b.iter(|| Outboard::compute(black_box(&data)).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("challenge_64MiB_688_samples");
    g.bench_function("prove", |b| {
        b.iter(|| prove(&challenge, &data, &outboard).unwrap())
    });
    g.bench_function("verify", |b| {
        b.iter(|| verify(&challenge, black_box(&proof)).unwrap())
    });
    g.finish();

    // What a node does for every 1 MiB range a reader asks for: from a file, as stored.
    let mut file = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut file, &data).unwrap();
    let range = ByteRange {
        start: 17 << 20,
        len: 1 << 20,
    };
    let body = prove_range(&file, &outboard, range).unwrap();
    let mut g = c.benchmark_group("range_1MiB_from_file");
    g.throughput(Throughput::Bytes(range.len));
    g.bench_function("pread_bare", |b| {
        let mut buf = vec![0u8; range.len as usize];
        b.iter(|| std::os::unix::fs::FileExt::read_exact_at(&file, &mut buf, range.start).unwrap())
    });
    g.bench_function("prove_range", |b| {
        b.iter(|| prove_range(&file, &outboard, range).unwrap())
    });
    g.bench_function("verify_range", |b| {
        b.iter(|| verify_range_in(&piece, LEN as u64, range, black_box(&body)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, proofs);
criterion_main!(benches);
