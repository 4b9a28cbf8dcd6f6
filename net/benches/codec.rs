//! Writing and reading a 1 MiB piece range response, the message a serving node sends most:
//! Tessera's encoding and decoding next to serde's DAG-CBOR of the same message (the same
//! bytes).

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tessera_net::{
    codec::{Message as _, from_cbor, to_cbor},
    protocol::PieceResponse,
};
use tessera_proofs::ByteRange;

const LEN: usize = 1 << 20;

fn range_response(c: &mut Criterion) {
    let response = PieceResponse::Range {
        piece: tessera_formats::address::raw_cid(b"piece"),
        range: ByteRange {
            start: 24,
            len: LEN as u64,
        },
        size: 64 << 20,
        body: (0..LEN).map(|i| (i % 251) as u8).collect(),
    };
    assert_eq!(
        response.clone().into_cbor().unwrap(),
        to_cbor(&response).unwrap()
    );
    let mut g = c.benchmark_group("range_response_1MiB");
    g.throughput(Throughput::Bytes(LEN as u64));
    g.bench_function("serde", |b| {
        b.iter_batched(|| response.clone(), |r| to_cbor(&r), BatchSize::LargeInput)
    });
    g.bench_function("tessera", |b| {
        b.iter_batched(
            || response.clone(),
            |r| r.into_cbor_parts(),
            BatchSize::LargeInput,
        )
    });
    g.finish();

    let bytes = to_cbor(&response).unwrap();
    assert_eq!(
        PieceResponse::from_cbor(bytes.clone()).unwrap(),
        from_cbor::<PieceResponse>(&bytes).unwrap()
    );
    let mut g = c.benchmark_group("range_response_1MiB_read");
    g.throughput(Throughput::Bytes(LEN as u64));
    // Both are handed the received buffer; serde borrows it, Tessera takes it.
    g.bench_function("serde", |b| {
        b.iter_batched(
            || bytes.clone(),
            |bytes| from_cbor::<PieceResponse>(&bytes),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("tessera", |b| {
        b.iter_batched(
            || bytes.clone(),
            PieceResponse::from_cbor,
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, range_response);
criterion_main!(benches);
