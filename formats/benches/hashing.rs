//! Hashing throughput: BLAKE3 and SHA-256 through Tessera's address module, next to the same
//! library calls made bare, so the wrapper's overhead is visible.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sha2::Digest as _;
use tessera_formats::address::{HashFn, hash_reader};

const LEN: usize = 64 << 20;

fn hashing(c: &mut Criterion) {
    let data: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
    let mut g = c.benchmark_group("hash_64MiB");
    g.throughput(Throughput::Bytes(LEN as u64));
    g.sample_size(10);
    g.bench_function("blake3_bare", |b| b.iter(|| blake3::hash(black_box(&data))));
    g.bench_function("blake3_tessera_stream", |b| {
        b.iter(|| hash_reader(black_box(&data[..]), HashFn::Blake3))
    });
    g.bench_function("sha256_bare", |b| {
        b.iter(|| sha2::Sha256::digest(black_box(&data)))
    });
    g.bench_function("sha256_tessera_stream", |b| {
        b.iter(|| hash_reader(black_box(&data[..]), HashFn::Sha2_256))
    });
    g.finish();
}

criterion_group!(benches, hashing);
criterion_main!(benches);
