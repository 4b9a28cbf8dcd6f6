//! Fetching one piece or block from its providers, never trusting their bytes.
//!
//! A piece is read in ranges of [`RANGE_LEN`], a few at once. Every range comes with the
//! hashes that link it to the piece's CID and is checked before it is written. A provider that
//! is slow (no answer within the request timeout), gone, refuses, or sends a range that does
//! not check out is dropped for this piece and the range goes to the next provider. One that
//! answers `Busy` (its queue of requests is full) is asked again after a pause first. Providers
//! the network found down or stalled are asked last or not at all ([`Holders`]). A block's
//! providers are all asked at once whether they hold it, and it is read from the first to say
//! yes, the next one too when that read is slow.

use parking_lot::Mutex;
use std::{collections::VecDeque, fs::File, os::unix::fs::FileExt as _, path::Path, sync::Arc};

use cid::Cid;
use tessera_formats::erasure::Geometry;
use tessera_net::{PeerId, PeerStatus};
use tessera_proofs::{ByteRange, MAX_RANGE_LEN, verify_range_in};
use tessera_storage_protocol::{PieceRequest, PieceResponse};
use tokio::task::JoinSet;
use tracing::debug;

use crate::{
    error::ClientError,
    rpc::{self, unexpected},
    session::Session,
};

/// Bytes asked for in one range request.
pub const RANGE_LEN: u64 = 1024 * 1024;

/// Providers asked at once whether they hold a block.
const BLOCK_ASKS: usize = 8;

/// Who may hold `cid`: its providers as the first DHT server to name any knows them or, when
/// the DHT knows none, the connected peers that say they hold it.
pub async fn providers(session: &Session, cid: Cid) -> Result<Vec<PeerId>, ClientError> {
    Ok(first_providers(session, cid).await?.0)
}

/// [`providers`], and whether the DHT lookup ended at a first answer, so that a complete one
/// might find more. One that found nobody but this node ran to its end already.
async fn first_providers(session: &Session, cid: Cid) -> Result<(Vec<PeerId>, bool), ClientError> {
    let net = session.net();
    let found = net.find_providers(cid).await?;
    if !found.is_empty() {
        let cut_short = found.iter().any(|p| *p != session.peer_id());
        return Ok((found.into_iter().collect(), cut_short));
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
    Ok((holders, false))
}

/// Runs `fetch` over `first` (the providers the first DHT answer named) and, if it fails with
/// every one of them, once more over the providers that `more` (a lookup that asks every server
/// it finds) adds: a record can outlive its provider, and the first server to answer need not
/// know of a newer holder. On failure returns the attempts of both runs.
async fn with_more_providers<P, T, F, Fut, M, MFut>(
    first: Vec<P>,
    more: M,
    mut fetch: F,
) -> Result<T, Vec<(P, String)>>
where
    P: Clone + PartialEq,
    F: FnMut(Vec<P>) -> Fut,
    Fut: Future<Output = Result<T, Vec<(P, String)>>>,
    M: FnOnce() -> MFut,
    MFut: Future<Output = Vec<P>>,
{
    let tried = first.clone();
    let mut attempts = match fetch(first).await {
        Ok(done) => return Ok(done),
        Err(attempts) => attempts,
    };
    let rest: Vec<P> = more()
        .await
        .into_iter()
        .filter(|p| !tried.contains(p))
        .collect();
    if rest.is_empty() {
        return Err(attempts);
    }
    match fetch(rest).await {
        Ok(done) => Ok(done),
        Err(more_attempts) => {
            attempts.extend(more_attempts);
            Err(attempts)
        }
    }
}

/// Fetches a block (a layout, a manifest) of at most `max_len` bytes whole, every range
/// verified against its CID.
pub async fn fetch_block(
    session: &Session,
    cid: Cid,
    max_len: u64,
) -> Result<Vec<u8>, ClientError> {
    let (first, cut_short) = first_providers(session, cid).await?;
    let fetch = |peers: Vec<PeerId>| block_hedged(session, cid, max_len, peers);
    with_more_providers(first, || more_providers(session, cid, cut_short), fetch)
        .await
        .map_err(|attempts| ClientError::NotFound {
            cid: Box::new(cid),
            attempts,
        })
}

/// How a piece read treats holders that failed lately or have stopped answering (as every
/// request of the process has found them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holders {
    /// Ask them too, after the others.
    Patient,
    /// Leave them out, and fail at once when only they hold the piece: a reader with other
    /// pieces to choose from reads one of those instead.
    Avoid,
}

/// Fetches the whole piece `cid` of `size` bytes into `sink` from its providers on the DHT
/// (those the first answer names, then, when it is [`Holders::Patient`], any others a complete
/// lookup finds), `in_flight` ranges at a time. On failure returns every provider tried and why
/// it failed.
pub async fn fetch_piece_found<S: Sink>(
    session: &Session,
    cid: Cid,
    size: u64,
    sink: Arc<S>,
    in_flight: usize,
    holders: Holders,
) -> Result<(), Vec<(PeerId, String)>> {
    let (first, cut_short) = first_providers(session, cid)
        .await
        .map_err(|e| vec![(session.peer_id(), format!("looking up providers: {e}"))])?;
    let fetch = |peers: Vec<PeerId>| {
        let sink = sink.clone();
        async move {
            let peers = screen(session, peers, holders).await?;
            fetch_piece_to(session, cid, size, peers, sink, in_flight).await
        }
    };
    // A reader that avoids holders has other pieces to read at once; a complete lookup, which
    // waits on every DHT server it asks, is for the patient try.
    let look_further = cut_short && holders == Holders::Patient;
    with_more_providers(first, || more_providers(session, cid, look_further), fetch).await
}

/// `peers` in the order to ask them: those with nothing against them first. With
/// [`Holders::Avoid`] the others are left out, and named with why when no other is left.
async fn screen(
    session: &Session,
    peers: Vec<PeerId>,
    holders: Holders,
) -> Result<Vec<PeerId>, Vec<(PeerId, String)>> {
    let Ok(statuses) = session.net().peer_status(peers.clone()).await else {
        return Ok(peers);
    };
    // A peer whose requests have gone unanswered for longer than a piece takes to start.
    let stalled = session.hedge_delay();
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for (peer, status) in peers.into_iter().zip(statuses) {
        match status {
            PeerStatus::Stalled(quiet) if quiet > stalled => {
                bad.push((peer, format!("has answered nothing for {quiet:.1?}")));
            }
            PeerStatus::Unreachable(dialling) => {
                bad.push((peer, format!("not connected after {dialling:.1?}")));
            }
            PeerStatus::Down(retry_in) => {
                bad.push((peer, format!("failed lately; not asked for {retry_in:.1?}")));
            }
            PeerStatus::Up | PeerStatus::Stalled(_) => good.push(peer),
        }
    }
    match holders {
        Holders::Patient => {
            good.extend(bad.into_iter().map(|(peer, _)| peer));
            Ok(good)
        }
        Holders::Avoid if good.is_empty() && !bad.is_empty() => Err(bad),
        Holders::Avoid => Ok(good),
    }
}

/// Every provider of `cid` a complete DHT lookup finds, this node aside; none if it fails.
/// Only asked when the first lookup was `cut_short`: otherwise it was complete already.
async fn more_providers(session: &Session, cid: Cid, cut_short: bool) -> Vec<PeerId> {
    if !cut_short {
        return Vec::new();
    }
    match session.net().get_providers(cid).await {
        Ok(found) => found
            .into_iter()
            .filter(|p| *p != session.peer_id())
            .collect(),
        Err(e) => {
            debug!(%cid, error = %e, "complete provider lookup failed");
            Vec::new()
        }
    }
}

/// Asks every one of `peers` (at most [`BLOCK_ASKS`]) at once whether it holds the block, a
/// small question whose answer says who is alive, and reads the block from the first to say
/// yes; when that read has not finished within the hedge delay, or fails, the next to say yes
/// is read as well. The first whole, verified block wins and the other asks are dropped.
async fn block_hedged(
    session: &Session,
    cid: Cid,
    max_len: u64,
    peers: Vec<PeerId>,
) -> Result<Vec<u8>, Vec<(PeerId, String)>> {
    let peers = screen(session, peers, Holders::Patient).await?;
    let (mut sizes, mut reads, mut attempts) = (JoinSet::new(), JoinSet::new(), Vec::new());
    for peer in peers.into_iter().take(BLOCK_ASKS) {
        let session = session.clone_handle();
        sizes.spawn(async move { (peer, block_size(&session, peer, cid, max_len).await) });
    }
    let mut holders = VecDeque::new();
    let read = |reads: &mut JoinSet<(PeerId, Result<Vec<u8>, String>)>, (peer, size)| {
        let session = session.clone_handle();
        reads.spawn(async move { (peer, block_body(&session, peer, cid, size).await) });
    };
    loop {
        if reads.is_empty() {
            match holders.pop_front() {
                Some(holder) => read(&mut reads, holder),
                None if sizes.is_empty() => return Err(attempts),
                None => {}
            }
        }
        tokio::select! {
            Some(joined) = sizes.join_next() => match joined {
                Ok((peer, Ok(size))) => holders.push_back((peer, size)),
                Ok((peer, Err(why))) => attempts.push((peer, why)),
                Err(e) => attempts.push((session.peer_id(), e.to_string())),
            },
            Some(joined) = reads.join_next() => match joined {
                Ok((_, Ok(bytes))) => return Ok(bytes),
                Ok((peer, Err(why))) => {
                    debug!(%peer, %cid, %why, "block not served");
                    attempts.push((peer, why));
                }
                Err(e) => attempts.push((session.peer_id(), e.to_string())),
            },
            () = tokio::time::sleep(session.hedge_delay()), if !reads.is_empty() => {
                if let Some(holder) = holders.pop_front() {
                    debug!(peer = %holder.0, %cid, "block slow to come; reading it from another provider too");
                    read(&mut reads, holder);
                }
            }
        }
    }
}

/// The size of the block `peer` says it holds, checked against the limit before any memory
/// is spent on it.
async fn block_size(
    session: &Session,
    peer: PeerId,
    cid: Cid,
    max_len: u64,
) -> Result<u64, String> {
    let size = match request(session, peer, PieceRequest::Has { piece: cid }).await? {
        PieceResponse::Has {
            piece,
            size: Some(size),
        } if piece == cid => size,
        PieceResponse::Has { size: None, .. } => return Err("does not hold it".into()),
        other => return Err(unexpected(&other)),
    };
    if size == 0 || size > max_len {
        return Err(format!(
            "says it is {size} bytes; a block is 1 to {max_len}"
        ));
    }
    Ok(size)
}

/// The block of `size` bytes from `peer`, every range verified.
async fn block_body(
    session: &Session,
    peer: PeerId,
    cid: Cid,
    size: u64,
) -> Result<Vec<u8>, String> {
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

    /// The next range is asked of `peer`: a reader that watches its pieces learns whom each
    /// waits on.
    fn asking(&self, _peer: PeerId) {}
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
    let file = new_piece_file(out, size).map_err(|e| vec![(session.peer_id(), e)])?;
    fetch_piece_to(session, cid, size, providers, Arc::new(file), in_flight).await
}

/// A new file at `out`, `size` bytes long, for a piece's ranges to be written into.
pub fn new_piece_file(out: &Path, size: u64) -> Result<File, String> {
    let local = |e: std::io::Error| format!("{}: {e}", out.display());
    let file = File::create_new(out).map_err(local)?;
    file.set_len(size).map_err(local)?;
    Ok(file)
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
    let mut attempts = shared.attempts.lock().clone();
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
            let Some(range) = self.ranges.lock().pop_front() else {
                return true;
            };
            loop {
                // Workers start on different providers, spreading the load.
                let peer = {
                    let providers = self.providers.lock();
                    if providers.is_empty() {
                        return false;
                    }
                    providers[worker % providers.len()]
                };
                self.sink.asking(peer);
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
                        self.providers.lock().retain(|p| *p != peer);
                        self.attempts.lock().push((peer, why));
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

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// What a run gave: the peer that served or every failure, the peers of each fetch, and
    /// whether the complete lookup was made.
    type Outcome = (Result<u8, Vec<(u8, String)>>, Vec<Vec<u8>>, bool);

    /// Runs `with_more_providers` over peers named by numbers: `works` are the ones that serve,
    /// `complete` what the complete lookup finds.
    fn run(first: Vec<u8>, complete: Vec<u8>, works: &[u8]) -> Outcome {
        let runs = RefCell::new(Vec::new());
        let looked = RefCell::new(false);
        let fetch = |peers: Vec<u8>| {
            runs.borrow_mut().push(peers.clone());
            let served = peers.iter().copied().find(|p| works.contains(p));
            let failed: Vec<(u8, String)> = peers
                .iter()
                .take_while(|p| Some(**p) != served)
                .map(|&p| (p, "gone".to_string()))
                .collect();
            async move { served.ok_or(failed) }
        };
        let more = || {
            *looked.borrow_mut() = true;
            async move { complete }
        };
        let result = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(with_more_providers(first, more, fetch));
        (result, runs.into_inner(), looked.into_inner())
    }

    #[test]
    fn the_first_providers_serve_and_nothing_more_is_looked_up() {
        let (result, runs, looked) = run(vec![1, 2], vec![1, 2, 3], &[2]);
        assert_eq!(result, Ok(2));
        assert_eq!(runs, vec![vec![1, 2]]);
        assert!(!looked);
    }

    #[test]
    fn when_the_first_all_fail_the_ones_a_complete_lookup_adds_are_tried() {
        let (result, runs, looked) = run(vec![1, 2], vec![2, 3, 1, 4], &[4]);
        assert_eq!(result, Ok(4));
        assert_eq!(runs, vec![vec![1, 2], vec![3, 4]]);
        assert!(looked);
    }

    #[test]
    fn nothing_new_from_the_complete_lookup_keeps_the_first_failures() {
        let (result, runs, _) = run(vec![1, 2], vec![2, 1], &[]);
        assert_eq!(result, Err(vec![(1, "gone".into()), (2, "gone".into())]));
        assert_eq!(runs, vec![vec![1, 2]]);
    }

    #[test]
    fn failures_of_both_runs_are_reported() {
        let (result, runs, _) = run(vec![], vec![5], &[]);
        assert_eq!(result, Err(vec![(5, "gone".into())]));
        assert_eq!(runs, vec![vec![], vec![5]]);
        let (result, _, _) = run(vec![1], vec![1, 5], &[]);
        assert_eq!(result, Err(vec![(1, "gone".into()), (5, "gone".into())]));
    }
}
