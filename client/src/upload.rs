//! One piece to one node: `PutBegin`, `PutChunk`s from where the node stands, `PutEnd`.
//!
//! The node checks the bytes against the CID before it acknowledges, so a `Stored` answer
//! means the piece is durable there and matched.

use std::{io::SeekFrom, path::Path, time::Duration};

use cid::Cid;
use tessera_net::{Client, PeerId};
use tessera_storage_protocol::{MAX_PUT_CHUNK, PieceRequest, PieceResponse};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use crate::{
    rpc::{self, Backoff},
    session::Timeouts,
};

/// Why one attempt to store a piece on one node failed; the caller tries another node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AttemptError(pub String);

/// Where the piece's bytes come from.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// A file holding exactly the piece.
    File(&'a Path),
    /// Bytes in memory (blocks).
    Bytes(&'a [u8]),
}

/// Stores `piece` (of `size` bytes) on `peer`. A node that answers a chunk or the end `Busy`
/// (its queue of requests full) is asked where it stands after a pause, and the upload goes on
/// from there.
pub async fn upload(
    net: &Client,
    peer: PeerId,
    piece: Cid,
    size: u64,
    source: Source<'_>,
    timeouts: Timeouts,
) -> Result<(), AttemptError> {
    let begin = PieceRequest::PutBegin { piece, size };
    // A node at its limit of uploads answers `Busy` here: the caller tries another node.
    let mut answer = rpc::request(net, peer, begin.clone(), timeouts.request)
        .await
        .map_err(AttemptError)?;
    let mut backoff = Backoff::new();
    let mut from = None;
    loop {
        let offset = match answer {
            PieceResponse::Stored { piece: p } if p == piece => return Ok(()),
            PieceResponse::PutReady { piece: p, offset } if p == piece && offset <= size => offset,
            other => return Err(unexpected(other)),
        };
        // A busy spell after chunks went through is a new one: its pauses start again. Each
        // needs progress, so this ends.
        if from.is_some_and(|from| offset > from) {
            backoff = Backoff::new();
        }
        from = Some(offset);
        match send(net, peer, piece, size, source, offset, timeouts).await? {
            Sent::Stored => return Ok(()),
            Sent::Busy(answer) => {
                if !backoff.wait().await {
                    return Err(unexpected(answer));
                }
            }
        }
        // The node keeps this upload open, so asking again cannot meet its limit of uploads:
        // a `Busy` now is its queue, and is asked again.
        answer = rpc::request_patiently(net, peer, begin.clone(), timeouts.request)
            .await
            .map_err(AttemptError)?;
    }
}

/// How sending the chunks from an offset, and the end, ended.
enum Sent {
    Stored,
    /// The node answered `Busy` to a chunk or the end.
    Busy(PieceResponse),
}

/// Sends the piece's bytes from `offset` on, then the end.
async fn send(
    net: &Client,
    peer: PeerId,
    piece: Cid,
    size: u64,
    source: Source<'_>,
    mut offset: u64,
    timeouts: Timeouts,
) -> Result<Sent, AttemptError> {
    let mut file = match source {
        Source::File(path) => Some(
            tokio::fs::File::open(path)
                .await
                .map_err(|e| AttemptError(format!("opening {}: {e}", path.display())))?,
        ),
        Source::Bytes(_) => None,
    };
    if let Some(file) = file.as_mut() {
        file.seek(SeekFrom::Start(offset))
            .await
            .map_err(|e| AttemptError(format!("reading the piece: {e}")))?;
    }
    let mut buf = Vec::new();
    while offset < size {
        let len = usize::try_from((size - offset).min(MAX_PUT_CHUNK))
            .map_err(|_| AttemptError("chunk too large".into()))?;
        let bytes = match (source, file.as_mut()) {
            (Source::Bytes(all), _) => {
                let start = usize::try_from(offset)
                    .map_err(|_| AttemptError("offset past the block".into()))?;
                all.get(start..start + len)
                    .ok_or_else(|| AttemptError("block shorter than its size".into()))?
                    .to_vec()
            }
            (Source::File(_), Some(file)) => {
                buf.resize(len, 0);
                file.read_exact(&mut buf)
                    .await
                    .map_err(|e| AttemptError(format!("reading the piece: {e}")))?;
                std::mem::take(&mut buf)
            }
            (Source::File(_), None) => return Err(AttemptError("file not open".into())),
        };
        let chunk = PieceRequest::PutChunk {
            piece,
            offset,
            bytes,
        };
        let end = offset + len as u64;
        match request(net, peer, chunk, timeouts.request).await? {
            PieceResponse::PutProgress { piece: p, offset } if p == piece && offset == end => {}
            busy if busy.is_busy() => return Ok(Sent::Busy(busy)),
            other => return Err(unexpected(other)),
        }
        offset = end;
    }
    match request(net, peer, PieceRequest::PutEnd { piece }, timeouts.finish).await? {
        PieceResponse::Stored { piece: p } if p == piece => Ok(Sent::Stored),
        busy if busy.is_busy() => Ok(Sent::Busy(busy)),
        other => Err(unexpected(other)),
    }
}

async fn request(
    net: &Client,
    peer: PeerId,
    request: PieceRequest,
    timeout: Duration,
) -> Result<PieceResponse, AttemptError> {
    rpc::request(net, peer, request, timeout)
        .await
        .map_err(AttemptError)
}

fn unexpected(response: PieceResponse) -> AttemptError {
    AttemptError(rpc::unexpected(&response))
}
