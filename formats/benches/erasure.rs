//! Erasure coding throughput at 10+4 and 4+2 with several stripe sizes: Tessera's streaming
//! encoder and verifying decoder, next to reed-solomon-erasure's calls made bare on the same
//! stripes. The wrapper also hashes the original and every piece (and, decoding, verifies each
//! piece before use and re-hashes it while reading), which is where its overhead goes.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::{hint::black_box, io::Cursor};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use reed_solomon_erasure::{ReedSolomon, galois_8};
use tessera_formats::erasure::{ErasureParams, decode, encode, encode_to_vecs};

const LEN: usize = 40 << 20;

fn erasure(c: &mut Criterion) {
    let data: Vec<u8> = (0..LEN)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for (k, m) in [(10u16, 4u16), (4, 2)] {
        let mut g = c.benchmark_group(format!("erasure_{k}+{m}_40MiB"));
        g.throughput(Throughput::Bytes(LEN as u64));
        g.sample_size(10);
        for stripe in [64u32 << 10, 256 << 10, 1 << 20] {
            let params = ErasureParams::new(k, m, stripe).unwrap();
            let (k, m, s) = (usize::from(k), usize::from(m), stripe as usize);
            let rs = ReedSolomon::<galois_8::Field>::new(k, m).unwrap();
            let stripe_bytes = k * s;
            // Bare calls over the full stripes of the same input (the short tail is skipped).
            let full = LEN / stripe_bytes;

            g.bench_with_input(BenchmarkId::new("encode_bare", stripe), &stripe, |b, _| {
                let mut parity = vec![vec![0u8; s]; m];
                b.iter(|| {
                    for st in 0..full {
                        let blocks: Vec<&[u8]> = data[st * stripe_bytes..(st + 1) * stripe_bytes]
                            .chunks(s)
                            .collect();
                        let mut par: Vec<&mut [u8]> =
                            parity.iter_mut().map(|p| p.as_mut_slice()).collect();
                        rs.encode_sep(&blocks, &mut par).unwrap();
                    }
                    black_box(&parity);
                })
            });
            g.bench_with_input(
                BenchmarkId::new("encode_tessera", stripe),
                &stripe,
                |b, _| {
                    b.iter(|| {
                        let mut sinks: Vec<std::io::Sink> =
                            (0..k + m).map(|_| std::io::sink()).collect();
                        encode(params, LEN as u64, &data[..], &mut sinks).unwrap()
                    })
                },
            );

            // Rebuild with m data pieces lost.
            let (layout, pieces) = encode_to_vecs(params, &data).unwrap();
            g.bench_with_input(BenchmarkId::new("rebuild_bare", stripe), &stripe, |b, _| {
                let mut blocks = vec![0u8; (k + m) * s];
                let mut present = vec![true; k + m];
                present[..m].fill(false);
                b.iter(|| {
                    for st in 0..full {
                        for (i, p) in pieces.iter().enumerate().skip(m) {
                            let from = 24 + st * s;
                            blocks[i * s..(i + 1) * s].copy_from_slice(&p[from..from + s]);
                        }
                        let mut shards: Vec<(&mut [u8], bool)> =
                            blocks.chunks_mut(s).zip(present.iter().copied()).collect();
                        rs.reconstruct_data(&mut shards).unwrap();
                    }
                    black_box(&blocks);
                })
            });
            g.bench_with_input(
                BenchmarkId::new("rebuild_tessera", stripe),
                &stripe,
                |b, _| {
                    b.iter(|| {
                        let mut sources: Vec<Option<Cursor<&[u8]>>> = pieces
                            .iter()
                            .enumerate()
                            .map(|(i, p)| (i >= m).then(|| Cursor::new(p.as_slice())))
                            .collect();
                        decode(&layout, &mut sources, std::io::sink()).unwrap()
                    })
                },
            );
            g.bench_with_input(
                BenchmarkId::new("read_all_data_tessera", stripe),
                &stripe,
                |b, _| {
                    b.iter(|| {
                        let mut sources: Vec<Option<Cursor<&[u8]>>> = pieces
                            .iter()
                            .map(|p| Some(Cursor::new(p.as_slice())))
                            .collect();
                        decode(&layout, &mut sources, std::io::sink()).unwrap()
                    })
                },
            );
        }
        g.finish();
    }
}

criterion_group!(benches, erasure);
criterion_main!(benches);
