//! The storage node service: answers the piece and challenge protocols from the piece store.
//!
//! ```text
//!  network task ──Inbound<Piece|Challenge>──▶ service loop ──spawn──▶ request task ──blocking──▶ store
//!        ▲                                                             │
//!        └──────────────────────── Responder::respond ◀────────────────┘
//! ```
//! The loop only dispatches; every request runs in its own task, with disk work on blocking
//! threads, so one slow disk read never stalls the others. Uploads in progress are keyed by
//! (peer, piece), limited per peer and in total, and dropped (their room given back) when idle.

use parking_lot::Mutex;
use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};
use tessera_node::blocking::BlockingError;

use cid::Cid;
use tessera_net::{Client, Inbound, PeerId, Request};
use tessera_proofs::{Challenge, prove, prove_range};
use tessera_storage_protocol::{
    ChallengeProtocol, ChallengeResponse, ErrorCode, MAX_PUT_CHUNK, PieceProtocol, PieceRequest,
    PieceResponse,
};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::{
    bandwidth::Bandwidth,
    metrics::Metrics,
    store::{PieceStore, StoreError, Upload},
};

/// Limits of the service.
#[derive(Debug, Clone)]
pub struct ServiceLimits {
    /// Uploads one peer may have in progress.
    pub uploads_per_peer: usize,
    /// Uploads in progress in total.
    pub uploads_total: usize,
    /// An upload with no message for this long is dropped.
    pub upload_idle: Duration,
    /// Requests handled at once; further ones wait in the network's bounded queue, and past
    /// that are answered `Busy`.
    pub concurrent_requests: usize,
    /// The operator's rates and monthly cap: ranges sent wait for the upload rate, chunks
    /// received for the download rate, and past the cap both are refused `Busy`.
    pub bandwidth: Arc<Bandwidth>,
}

impl Default for ServiceLimits {
    fn default() -> Self {
        Self {
            uploads_per_peer: 16,
            uploads_total: 128,
            upload_idle: Duration::from_secs(20),
            concurrent_requests: 64,
            bandwidth: Arc::new(Bandwidth::unlimited()),
        }
    }
}

/// How long an acknowledgement waits for the piece's provider record to go out.
const ANNOUNCE_WAIT: Duration = Duration::from_secs(5);

type Slot = Arc<Mutex<Option<Upload>>>;

#[derive(Debug, Default)]
struct Uploads {
    slots: HashMap<(PeerId, Cid), (Slot, Instant)>,
}

impl Uploads {
    /// Drops the upload quiet longest, if it has been quiet for `quiet`: peers cost nothing,
    /// so holding every slot must cost a chunk every few seconds, not nothing.
    fn evict_quiet(&mut self, quiet: Duration) -> bool {
        let quietest = self
            .slots
            .iter()
            .min_by_key(|(_, (_, last))| *last)
            .map(|(key, (_, last))| (*key, *last));
        match quietest {
            Some((key, last)) if last.elapsed() >= quiet => {
                debug!(peer = %key.0, piece = %key.1, "quiet upload dropped for a new one");
                self.slots.remove(&key);
                true
            }
            _ => false,
        }
    }
}

/// A request of either protocol the service answers.
enum Asked {
    Piece(Request<PieceProtocol>),
    Challenge(Request<ChallengeProtocol>),
}

/// Serves piece and challenge requests until the network stops.
pub async fn serve(
    client: Client,
    store: PieceStore,
    metrics: Arc<Metrics>,
    limits: ServiceLimits,
    mut pieces: Inbound<PieceProtocol>,
    mut challenges: Inbound<ChallengeProtocol>,
) {
    let uploads = Arc::new(Mutex::new(Uploads::default()));
    let permits = Arc::new(Semaphore::new(limits.concurrent_requests.max(1)));
    let mut sweep = tokio::time::interval(limits.upload_idle / 2);
    loop {
        // Take a request only when there is room to handle it: the rest wait in the network's
        // bounded queue, which answers Busy when full.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let request = loop {
            tokio::select! {
                request = pieces.recv() => break request.map(Asked::Piece),
                request = challenges.recv() => break request.map(Asked::Challenge),
                _ = sweep.tick() => drop_idle(&uploads, limits.upload_idle),
            }
        };
        let Some(request) = request else { break };
        let ctx = Ctx {
            client: client.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
            uploads: uploads.clone(),
            limits: limits.clone(),
        };
        tokio::spawn(async move {
            ctx.handle(request).await;
            drop(permit);
        });
    }
}

/// Drops uploads that have been idle too long, giving their room back.
fn drop_idle(uploads: &Mutex<Uploads>, idle: Duration) {
    let mut u = uploads.lock();
    let before = u.slots.len();
    u.slots.retain(|_, (_, last)| last.elapsed() < idle);
    if u.slots.len() < before {
        debug!(dropped = before - u.slots.len(), "idle uploads dropped");
    }
}

#[derive(Clone)]
struct Ctx {
    client: Client,
    store: PieceStore,
    metrics: Arc<Metrics>,
    uploads: Arc<Mutex<Uploads>>,
    limits: ServiceLimits,
}

impl Ctx {
    async fn handle(self, request: Asked) {
        match request {
            Asked::Piece(Request {
                peer,
                request,
                responder,
            }) => {
                let piece = *request.piece();
                let kind = request_kind(&request);
                self.metrics.request(kind);
                let response = match self.piece(peer, request).await {
                    Ok(r) => r,
                    Err((code, message)) => {
                        self.metrics.error(code);
                        debug!(%peer, %piece, ?code, %message, "piece request refused");
                        PieceResponse::Error {
                            piece,
                            code,
                            message,
                        }
                    }
                };
                let response = match response {
                    PieceResponse::Range {
                        piece, ref body, ..
                    } => {
                        // The range goes out at the operator's upload rate, or not at all.
                        match self.limits.bandwidth.send(body.len() as u64).await {
                            Ok(()) => {
                                self.metrics.bytes_out(body.len() as u64);
                                response
                            }
                            Err(over) => {
                                self.metrics.error(ErrorCode::Busy);
                                PieceResponse::Error {
                                    piece,
                                    code: ErrorCode::Busy,
                                    message: over.to_string(),
                                }
                            }
                        }
                    }
                    other => other,
                };
                let _ = responder.respond(response).await;
            }
            Asked::Challenge(Request {
                peer,
                request,
                responder,
            }) => {
                self.metrics.request("challenge");
                let piece = request.piece;
                let response = match self.challenge(request.0).await {
                    Ok(proof) => {
                        self.metrics.challenge_answered();
                        self.metrics.proof_bytes(proof.body.len() as u64);
                        self.limits.bandwidth.count_sent(proof.body.len() as u64);
                        ChallengeResponse::Proof(proof)
                    }
                    Err((code, message)) => {
                        self.metrics.error(code);
                        debug!(%peer, %piece, ?code, %message, "challenge not answered");
                        ChallengeResponse::Error {
                            piece,
                            code,
                            message,
                        }
                    }
                };
                let _ = responder.respond(response).await;
            }
        }
    }

    async fn piece(&self, peer: PeerId, request: PieceRequest) -> Result<PieceResponse, Refusal> {
        match request {
            PieceRequest::Has { piece } => {
                let store = self.store.clone();
                let size = blocking(move || store.has(&piece)).await?;
                Ok(PieceResponse::Has { piece, size })
            }
            PieceRequest::Get { piece, range } => {
                let store = self.store.clone();
                blocking(move || {
                    let stored = store.open_piece(&piece)?;
                    let body = prove_range(&stored.file, &stored.outboard, range).map_err(|e| {
                        StoreError::Io {
                            what: format!("reading range of {piece}"),
                            source: std::io::Error::new(
                                std::io::ErrorKind::InvalidInput,
                                e.to_string(),
                            ),
                        }
                    })?;
                    Ok(PieceResponse::Range {
                        piece,
                        range,
                        size: stored.size,
                        body,
                    })
                })
                .await
            }
            PieceRequest::PutBegin { piece, size } => {
                self.limits
                    .bandwidth
                    .check()
                    .map_err(|over| (ErrorCode::Busy, over.to_string()))?;
                self.put_begin(peer, piece, size).await
            }
            PieceRequest::PutChunk {
                piece,
                offset,
                bytes,
            } => {
                if bytes.len() as u64 > MAX_PUT_CHUNK {
                    return Err((ErrorCode::BadRequest, "chunk over the limit".into()));
                }
                let slot = self.slot(peer, piece)?;
                // Answered at the operator's download rate: the sender's next chunk waits.
                self.limits
                    .bandwidth
                    .receive(bytes.len() as u64)
                    .await
                    .map_err(|over| (ErrorCode::Busy, over.to_string()))?;
                self.metrics.bytes_in(bytes.len() as u64);
                let written = blocking(move || {
                    let mut guard = slot.lock();
                    let upload = guard.as_mut().ok_or(StoreError::Ended)?;
                    let result = upload.write(offset, &bytes);
                    if result.is_err() {
                        // A failed write ends the upload; the client starts again.
                        guard.take();
                    }
                    result
                })
                .await;
                if written.is_err() {
                    self.uploads.lock().slots.remove(&(peer, piece));
                }
                Ok(PieceResponse::PutProgress {
                    piece,
                    offset: written?,
                })
            }
            PieceRequest::PutEnd { piece } => {
                let slot = self
                    .uploads
                    .lock()
                    .slots
                    .remove(&(peer, piece))
                    .map(|(slot, _)| slot)
                    .ok_or((
                        ErrorCode::UploadState,
                        "no upload of this piece in progress".into(),
                    ))?;
                blocking(move || {
                    let upload = slot.lock().take().ok_or(StoreError::Ended)?;
                    upload.finish()
                })
                .await?;
                self.metrics.stored();
                info!(%piece, from = %peer, "piece stored");
                // Acknowledge after the provider record is out (or a short wait), so a reader
                // that starts when the put returns finds the piece; the piece is durable
                // either way and is re-announced later if this fails.
                let announce = self.client.start_providing(piece);
                match tokio::time::timeout(ANNOUNCE_WAIT, announce).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        warn!(%piece, error = %e, "announcing a stored piece failed; it is re-announced later");
                    }
                    Err(_) => debug!(%piece, "announcement still running; acknowledging"),
                }
                Ok(PieceResponse::Stored { piece })
            }
        }
    }

    async fn put_begin(
        &self,
        peer: PeerId,
        piece: Cid,
        size: u64,
    ) -> Result<PieceResponse, Refusal> {
        let store = self.store.clone();
        if blocking(move || store.has(&piece)).await?.is_some() {
            return Ok(PieceResponse::Stored { piece });
        }
        {
            let mut u = self.uploads.lock();
            if let Some((slot, _)) = u.slots.get(&(peer, piece)) {
                let offset = slot.lock().as_ref().map(Upload::written).unwrap_or(0);
                return Ok(PieceResponse::PutReady { piece, offset });
            }
            let from_peer = u.slots.keys().filter(|(p, _)| *p == peer).count();
            if from_peer >= self.limits.uploads_per_peer {
                return Err((ErrorCode::Busy, "too many uploads in progress".into()));
            }
            if u.slots.len() >= self.limits.uploads_total
                && !u.evict_quiet(self.limits.upload_idle / 4)
            {
                return Err((ErrorCode::Busy, "too many uploads in progress".into()));
            }
        }
        let store = self.store.clone();
        let upload = blocking(move || store.begin_upload(piece, size)).await?;
        self.uploads.lock().slots.insert(
            (peer, piece),
            (Arc::new(Mutex::new(Some(upload))), Instant::now()),
        );
        Ok(PieceResponse::PutReady { piece, offset: 0 })
    }

    fn slot(&self, peer: PeerId, piece: Cid) -> Result<Slot, Refusal> {
        let mut u = self.uploads.lock();
        let (slot, last) = u.slots.get_mut(&(peer, piece)).ok_or((
            ErrorCode::UploadState,
            "no upload of this piece in progress".into(),
        ))?;
        *last = Instant::now();
        Ok(slot.clone())
    }

    async fn challenge(&self, challenge: Challenge) -> Result<tessera_proofs::Proof, Refusal> {
        challenge
            .validate()
            .map_err(|e| (ErrorCode::BadRequest, e.to_string()))?;
        let store = self.store.clone();
        blocking(move || {
            let stored = store.open_piece(&challenge.piece)?;
            prove(&challenge, &stored.file, &stored.outboard).map_err(|e| StoreError::Io {
                what: format!("proving {}", challenge.piece),
                source: std::io::Error::other(e.to_string()),
            })
        })
        .await
    }
}

type Refusal = (ErrorCode, String);

fn refusal(e: StoreError) -> Refusal {
    let code = match &e {
        StoreError::CapacityExceeded { .. } => ErrorCode::CapacityExceeded,
        StoreError::TooLarge { .. } | StoreError::BadCid(_) => ErrorCode::BadRequest,
        StoreError::HashMismatch { .. } => ErrorCode::HashMismatch,
        StoreError::OutOfOrder { .. }
        | StoreError::Overflow { .. }
        | StoreError::Incomplete { .. } => ErrorCode::UploadState,
        StoreError::NotFound(_) => ErrorCode::NotFound,
        // The message names what is missing; the uploader goes elsewhere.
        StoreError::Unhealthy(_) => ErrorCode::Internal,
        StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::InvalidInput => {
            ErrorCode::BadRequest
        }
        _ => ErrorCode::Internal,
    };
    (code, e.to_string())
}

/// Runs store work on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Refusal> {
    tessera_node::blocking::blocking(f)
        .await
        .map_err(|e| match e {
            BlockingError::Failed(e) => refusal(e),
            BlockingError::Task(e) => (ErrorCode::Internal, format!("store task failed: {e}")),
        })
}

fn request_kind(request: &PieceRequest) -> &'static str {
    match request {
        PieceRequest::Has { .. } => "has",
        PieceRequest::Get { .. } => "get",
        PieceRequest::PutBegin { .. } => "put_begin",
        PieceRequest::PutChunk { .. } => "put_chunk",
        PieceRequest::PutEnd { .. } => "put_end",
    }
}
