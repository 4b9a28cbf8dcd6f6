//! Writing and reading a 1 MiB piece range response, the message a serving node sends most:
//! Tessera's encoding and decoding next to serde's DAG-CBOR of the same message (the same
//! bytes), and the codec's read of it from a stream that hands it over in 16 KiB frames next
//! to a plain read of the same stream to its end.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use futures::{AsyncRead, AsyncReadExt as _, executor::block_on};
use tessera_net::codec::{Message as _, from_cbor, read_limited, to_cbor};
use tessera_proofs::ByteRange;
use tessera_storage_protocol::{MAX_PIECE_RESPONSE, PieceResponse};

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

    let mut g = c.benchmark_group("range_response_1MiB_from_stream");
    g.throughput(Throughput::Bytes(LEN as u64));
    let frames = || Frames {
        data: bytes.clone(),
        at: 0,
    };
    // The least a read can cost: the bytes copied out of the stream into one buffer.
    g.bench_function("read_to_end", |b| {
        b.iter_batched(
            frames,
            |mut io| {
                let mut buf = Vec::with_capacity(MAX_PIECE_RESPONSE as usize);
                block_on(io.read_to_end(&mut buf)).map(|_| buf)
            },
            BatchSize::LargeInput,
        )
    });
    // The codec's read within the limit, then the decoding its caller does.
    g.bench_function("codec", |b| {
        b.iter_batched(
            frames,
            |mut io| {
                block_on(read_limited(&mut io, MAX_PIECE_RESPONSE)).map(PieceResponse::from_cbor)
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// A stream that hands out at most one 16 KiB frame per read, as yamux does.
struct Frames {
    data: Vec<u8>,
    at: usize,
}

impl AsyncRead for Frames {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let n = buf.len().min(16 * 1024).min(self.data.len() - self.at);
        let at = self.at;
        buf[..n].copy_from_slice(&self.data[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(n))
    }
}

criterion_group!(benches, range_response);
criterion_main!(benches);
