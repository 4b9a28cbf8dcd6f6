//! The shuffle's index arithmetic for one block of 2 M samples: each position's image alone,
//! next to a run of them computed several at a time (the same images).

#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tessera_stream::permutation::Permutation;

const N: u64 = 2_025_924;

fn block_permutation(c: &mut Criterion) {
    let p = Permutation::new(N, &[7; 32]);
    let mut g = c.benchmark_group("permutation_2M");
    g.throughput(Throughput::Elements(N));
    g.bench_function("apply_each", |b| {
        b.iter(|| (0..N).fold(0u64, |acc, x| acc ^ p.apply(black_box(x))))
    });
    g.bench_function("apply_run", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            p.apply_run(0, black_box(N), |y| acc ^= y);
            acc
        })
    });
    g.finish();
}

criterion_group!(benches, block_permutation);
criterion_main!(benches);
