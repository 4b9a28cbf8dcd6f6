//! The request-response codec of Tessera's protocols: one DAG-CBOR message per stream
//! direction, with a size limit per direction that is enforced while reading, before the
//! message is decoded (by the protocol's own crate, through [`Message`]).

use std::io;

use futures::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use libp2p::{StreamProtocol, request_response};
use serde::{Serialize, de::DeserializeOwned};

/// A message of one of Tessera's protocols, written as DAG-CBOR: by serde, unless the type
/// knows a faster way to the same bytes.
pub trait Message: Serialize + DeserializeOwned + Send {
    /// The message's DAG-CBOR bytes, in the parts they are written in.
    fn into_cbor_parts(self) -> Result<Encoded, String>
    where
        Self: Sized,
    {
        to_cbor(&self).map(Encoded::from)
    }

    /// The message's DAG-CBOR bytes, in one buffer.
    fn into_cbor(self) -> Result<Vec<u8>, String>
    where
        Self: Sized,
    {
        self.into_cbor_parts().map(Encoded::concat)
    }

    /// The message read from its DAG-CBOR bytes.
    fn from_cbor(bytes: Vec<u8>) -> Result<Self, String>
    where
        Self: Sized,
    {
        from_cbor(&bytes)
    }
}

/// A message's encoding as parts written one after another, so that a large byte string is
/// written from where it lies and not first copied beside the bytes around it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Encoded(Vec<Vec<u8>>);

impl Encoded {
    /// Adds `part` at the end.
    pub fn push(&mut self, part: Vec<u8>) {
        self.0.push(part);
    }

    /// Bytes in all.
    pub fn len(&self) -> usize {
        self.0.iter().map(Vec::len).sum()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The parts, in order.
    pub fn parts(&self) -> impl Iterator<Item = &[u8]> {
        self.0.iter().map(Vec::as_slice)
    }

    /// The bytes in one buffer.
    pub fn concat(mut self) -> Vec<u8> {
        if self.0.len() == 1 {
            return self.0.pop().unwrap_or_default();
        }
        self.0.concat()
    }
}

impl From<Vec<u8>> for Encoded {
    fn from(bytes: Vec<u8>) -> Self {
        Self(vec![bytes])
    }
}

/// DAG-CBOR by serde.
pub fn to_cbor<M: Serialize>(message: &M) -> Result<Vec<u8>, String> {
    serde_ipld_dagcbor::to_vec(message).map_err(|e| e.to_string())
}

/// A message read from DAG-CBOR by serde.
pub fn from_cbor<M: DeserializeOwned>(bytes: &[u8]) -> Result<M, String> {
    serde_ipld_dagcbor::from_slice(bytes).map_err(|e| e.to_string())
}

/// Carries one protocol's messages as bytes, refusing a request over `max_request` or a
/// response over `max_response` bytes before reading further. The protocol's own crate encodes
/// and decodes them ([`Message`]), on its own tasks.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    max_request: u64,
    max_response: u64,
}

impl FrameCodec {
    /// A codec with these limits.
    pub fn new(max_request: u64, max_response: u64) -> Self {
        Self {
            max_request,
            max_response,
        }
    }
}

/// The most memory set aside before a message's bytes arrive.
const PRESIZE_MAX: u64 = 4 << 20;
/// Bytes read at a time.
const READ_STEP: usize = 64 * 1024;

/// A message's bytes, refused once they pass `max`.
pub async fn read_limited<T>(io: &mut T, max: u64) -> io::Result<Vec<u8>>
where
    T: AsyncRead + Unpin + Send,
{
    // Room for the largest message up front, so a 1 MiB range is not copied again at every
    // doubling; only the part bytes arrive in is zeroed and touched, and each byte once: a
    // read returns one multiplexer frame or less, so the zeroed step is filled over several.
    let limit = max.saturating_add(1);
    let mut buf = Vec::with_capacity(usize::try_from(limit.min(PRESIZE_MAX)).unwrap_or(0));
    let mut filled = 0;
    let mut io = io.take(limit);
    loop {
        if filled == buf.len() {
            // No more than the limit lets through, so a small message never outgrows its room.
            let left = usize::try_from(limit.saturating_sub(filled as u64)).unwrap_or(READ_STEP);
            if left == 0 {
                break;
            }
            buf.resize(filled + READ_STEP.min(left), 0);
        }
        let n = io.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    buf.truncate(filled);
    if buf.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message exceeds the {max}-byte limit"),
        ));
    }
    Ok(buf)
}

fn within(bytes: Encoded, max: u64) -> io::Result<Encoded> {
    if bytes.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "message of {} bytes exceeds the {max}-byte limit",
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

async fn write_bytes<T: AsyncWrite + Unpin + Send>(io: &mut T, bytes: Encoded) -> io::Result<()> {
    for part in bytes.parts() {
        io.write_all(part).await?;
    }
    io.close().await
}

impl request_response::Codec for FrameCodec {
    type Protocol = StreamProtocol;
    type Request = Encoded;
    type Response = Encoded;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Encoded>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_limited(io, self.max_request).await.map(Encoded::from)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Encoded>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_limited(io, self.max_response).await.map(Encoded::from)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Encoded,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_bytes(io, within(req, self.max_request)?).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Encoded,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_bytes(io, within(res, self.max_response)?).await
    }
}

#[cfg(test)]
mod tests {
    use std::{
        pin::Pin,
        task::{Context, Poll},
    };

    use futures::executor::block_on;
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Blob {
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    }

    impl Message for Blob {}

    /// A stream that hands out at most `chunk` bytes per read, as a multiplexer hands out a
    /// frame, and counts what was taken from it.
    struct Chunked {
        data: Vec<u8>,
        at: usize,
        chunk: usize,
    }

    impl AsyncRead for Chunked {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.chunk).min(self.data.len() - self.at);
            let at = self.at;
            buf[..n].copy_from_slice(&self.data[at..at + n]);
            self.at += n;
            Poll::Ready(Ok(n))
        }
    }

    fn encoded(len: usize) -> (Blob, Vec<u8>) {
        let blob = Blob {
            bytes: (0u8..=250).cycle().take(len).collect(),
        };
        let bytes = to_cbor(&blob).unwrap();
        (blob, bytes)
    }

    fn read(bytes: &[u8], chunk: usize, max: u64) -> (io::Result<Blob>, usize) {
        let mut io = Chunked {
            data: bytes.to_vec(),
            at: 0,
            chunk,
        };
        let result = block_on(read_limited(&mut io, max))
            .and_then(|bytes| Blob::from_cbor(bytes).map_err(io::Error::other));
        (result, io.at)
    }

    #[test]
    fn a_message_arrives_whole_however_the_stream_cuts_it() {
        for len in [0, 1, 100, READ_STEP - 3, READ_STEP, 3 * READ_STEP + 17] {
            let (blob, bytes) = encoded(len);
            for chunk in [1, 7, 16 * 1024, READ_STEP, READ_STEP + 1, usize::MAX] {
                let (got, taken) = read(&bytes, chunk, bytes.len() as u64);
                assert_eq!(got.unwrap(), blob, "{len} bytes in reads of {chunk}");
                assert_eq!(taken, bytes.len());
            }
        }
    }

    #[test]
    fn a_message_over_the_limit_is_refused_after_one_byte_past_it() {
        let (_, bytes) = encoded(2 * READ_STEP);
        for max in [0, 10, READ_STEP as u64, bytes.len() as u64 - 1] {
            for chunk in [7, 16 * 1024, usize::MAX] {
                let (got, taken) = read(&bytes, chunk, max);
                let err = got.unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::InvalidData);
                assert!(err.to_string().contains("exceeds"), "{err}");
                assert_eq!(taken as u64, max + 1, "read no further than the limit");
            }
        }
    }

    #[test]
    fn a_cut_or_garbled_message_is_an_error() {
        let (_, bytes) = encoded(1000);
        let (got, _) = read(&bytes[..bytes.len() - 1], 16 * 1024, 1 << 20);
        assert!(got.is_err());
        let (got, _) = read(&[], 16 * 1024, 1 << 20);
        assert!(got.is_err());
    }
}
