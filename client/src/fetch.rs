//! Fetching one piece or block from its providers, never trusting their bytes.
//!
//! A piece is read in ranges of [`RANGE_LEN`], a few at once. Every range comes with the
//! hashes that link it to the piece's CID and is checked before it is written. A provider that
//! is slow (no answer within the request timeout), gone, refuses, or sends a range that does
//! not check out is dropped for this piece and the range goes to the next provider. One that
//! answers `Busy` (its queue of requests is full) is asked again after a pause first.

use std::{
    collections::VecDeque,
    fs::File,
    os::unix::fs::FileExt as _,
    path::Path,
    sync::{Arc, Mutex},
};

use cid::Cid;
use tessera_formats::erasure::Geometry;
use tessera_net::{
    PeerId,
    protocol::{PieceRequest, PieceResponse},
};
use tessera_proofs::{ByteRange, MAX_RANGE_LEN, verify_range_in};
use tokio::task::JoinSet;
use tracing::debug;

use crate::{
    error::ClientError,
    lock,
    rpc::{self, unexpected},
    session::Session,
};

/// Bytes asked for in one range request.
pub const RANGE_LEN: u64 = 1024 * 1024;

/// Who may hold `cid`: its providers as the first DHT server to name any knows them or, when
/// the DHT knows none, the connected peers that say they hold it.
pub async fn providers(session: &Session, cid: Cid) -> Result<Vec<PeerId>, ClientError> {
    let net = session.net();
    let found = net.find_providers(cid).await?;
    if !found.is_empty() {
        return Ok(found.into_iter().collect());
    }
    // Ask every connected peer at once: an unresponsive one costs one deadline, not one each.
    let mut asks = JoinSet::new();
    for peer in net.info().await?.connected_peers {
        let session = session.clone_handle();
        asks.spawn(async move {
            let answer = request(&session, peer, PieceRequest::Has { piece: cid }).await;
            matches!(answer, Ok(PieceResponse::Has { piece, size: Some(_) }) if piece == cid)
                .then_some(peer)
        });
    }
    let mut holders = Vec::new();
    while let Some(answer) = asks.join_next().await {
        if let Ok(Some(peer)) = answer {
            holders.push(peer);
        }
    }
    Ok(holders)
}

/// Fetches a block (a layout, a manifest) of at most `max_len` bytes whole, every range
/// verified against its CID.
pub async fn fetch_block(
    session: &Session,
    cid: Cid,
    max_len: u64,
) -> Result<Vec<u8>, ClientError> {
    let mut attempts = Vec::new();
    for peer in providers(session, cid).await? {
        match block_from(session, peer, cid, max_len).await {
            Ok(bytes) => return Ok(bytes),
            Err(why) => {
                debug!(%peer, %cid, %why, "block not served");
                attempts.push((peer, why));
            }
        }
    }
    Err(ClientError::NotFound {
        cid: Box::new(cid),
        attempts,
    })
}

async fn block_from(
    session: &Session,
    peer: PeerId,
    cid: Cid,
    max_len: u64,
) -> Result<Vec<u8>, String> {
    let size = match request(session, peer, PieceRequest::Has { piece: cid }).await? {
        PieceResponse::Has {
            piece,
            size: Some(size),
        } if piece == cid => size,
        PieceResponse::Has { size: None, .. } => return Err("does not hold it".into()),
        other => return Err(unexpected(&other)),
    };
    // The size is the provider's claim: checked against the limit before memory is spent.
    if size == 0 || size > max_len {
        return Err(format!(
            "says it is {size} bytes; a block is 1 to {max_len}"
        ));
    }
    let mut block = Vec::with_capacity(usize::try_from(size).map_err(|e| e.to_string())?);
    for range in ByteRange::split(size, MAX_RANGE_LEN) {
        let (body, at) = get_range(session, peer, cid, size, range).await?;
        block.extend_from_slice(&body[at]);
    }
    Ok(block)
}

/// Where the verified ranges of a piece go.
pub trait Sink: Send + Sync + 'static {
    /// Writes the verified bytes at `offset` of the piece.
    fn put(&self, offset: u64, bytes: &[u8]) -> std::io::Result<()>;
}

/// A piece file: every range at its own offset.
impl Sink for File {
    fn put(&self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        self.write_all_at(bytes, offset)
    }
}

/// The original of a shard, written from its data pieces: a range of data piece `index` goes
/// where its bytes lie in the shard, and its header and padding go nowhere.
#[derive(Debug)]
pub struct Placed {
    /// The shard's file, as long as the original.
    pub file: Arc<File>,
    /// The shard's stripes.
    pub geometry: Geometry,
    /// The data piece.
    pub index: usize,
}

impl Sink for Placed {
    fn put(&self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        for run in self
            .geometry
            .data_runs(self.index, offset, bytes.len() as u64)
        {
            let (at, len) = (usize_of(run.at)?, usize_of(run.len)?);
            let run_bytes = bytes
                .get(at..at + len)
                .ok_or_else(|| std::io::Error::other("run outside its range"))?;
            self.file.write_all_at(run_bytes, run.original)?;
        }
        Ok(())
    }
}

fn usize_of(n: u64) -> std::io::Result<usize> {
    usize::try_from(n).map_err(std::io::Error::other)
}

/// Fetches the whole piece `cid` of `size` bytes from `providers` into a new file at `out`,
/// `in_flight` ranges at a time. On failure returns every provider tried and why it failed.
pub async fn fetch_piece(
    session: &Session,
    cid: Cid,
    size: u64,
    providers: Vec<PeerId>,
    out: &Path,
    in_flight: usize,
) -> Result<(), Vec<(PeerId, String)>> {
    let local = |e: std::io::Error| vec![(session.peer_id(), format!("{}: {e}", out.display()))];
    let file = File::create_new(out).map_err(local)?;
    file.set_len(size).map_err(local)?;
    fetch_piece_to(session, cid, size, providers, Arc::new(file), in_flight).await
}

/// Fetches the whole piece `cid` of `size` bytes from `providers` into `sink`, `in_flight`
/// ranges at a time, each written once verified. On failure returns every provider tried and
/// why it failed.
pub async fn fetch_piece_to<S: Sink>(
    session: &Session,
    cid: Cid,
    size: u64,
    providers: Vec<PeerId>,
    sink: Arc<S>,
    in_flight: usize,
) -> Result<(), Vec<(PeerId, String)>> {
    let shared = Arc::new(Shared {
        sink,
        ranges: Mutex::new(ByteRange::split(size, RANGE_LEN).collect()),
        providers: Mutex::new(providers),
        attempts: Mutex::new(Vec::new()),
    });
    let mut workers = JoinSet::new();
    for worker in 0..in_flight.max(1) {
        let (shared, session) = (shared.clone(), session.clone_handle());
        workers.spawn(async move { shared.work(&session, cid, size, worker).await });
    }
    let mut complete = true;
    while let Some(done) = workers.join_next().await {
        complete &= matches!(done, Ok(true));
    }
    if complete {
        return Ok(());
    }
    let mut attempts = lock(&shared.attempts).clone();
    if attempts.is_empty() {
        attempts.push((session.peer_id(), "no providers found".into()));
    }
    Err(attempts)
}

struct Shared<S> {
    sink: Arc<S>,
    ranges: Mutex<VecDeque<ByteRange>>,
    providers: Mutex<Vec<PeerId>>,
    attempts: Mutex<Vec<(PeerId, String)>>,
}

impl<S: Sink> Shared<S> {
    /// Takes ranges until none are left (true) or no provider is left (false).
    async fn work(&self, session: &Session, cid: Cid, size: u64, worker: usize) -> bool {
        loop {
            let Some(range) = lock(&self.ranges).pop_front() else {
                return true;
            };
            loop {
                // Workers start on different providers, spreading the load.
                let peer = {
                    let providers = lock(&self.providers);
                    if providers.is_empty() {
                        return false;
                    }
                    providers[worker % providers.len()]
                };
                let result = match get_range(session, peer, cid, size, range).await {
                    Ok((body, at)) => self
                        .sink
                        .put(range.start, &body[at])
                        .map_err(|e| format!("writing the piece locally: {e}")),
                    Err(why) => Err(why),
                };
                match result {
                    Ok(()) => break,
                    Err(why) => {
                        debug!(%peer, %cid, ?range, %why, "range failed; trying another provider");
                        lock(&self.providers).retain(|p| *p != peer);
                        lock(&self.attempts).push((peer, why));
                    }
                }
            }
        }
    }
}

/// One range from one provider, verified against the CID: the proof body, and where the
/// range's bytes lie in it.
async fn get_range(
    session: &Session,
    peer: PeerId,
    cid: Cid,
    size: u64,
    range: ByteRange,
) -> Result<(Vec<u8>, std::ops::Range<usize>), String> {
    match request(session, peer, PieceRequest::Get { piece: cid, range }).await? {
        PieceResponse::Range {
            piece,
            range: got,
            size: claimed,
            body,
        } if piece == cid && got == range => {
            if claimed != size {
                return Err(format!("says the piece is {claimed} bytes, not {size}"));
            }
            let at =
                verify_range_in(&cid, size, range, &body).map_err(|e| format!("bad range: {e}"))?;
            Ok((body, at))
        }
        other => Err(unexpected(&other)),
    }
}

/// Reads are safe to ask again: a busy provider is, before it is given up.
async fn request(
    session: &Session,
    peer: PeerId,
    request: PieceRequest,
) -> Result<PieceResponse, String> {
    rpc::request_patiently(session.net(), peer, request, session.timeouts().request).await
}
