//! Tessera's wire protocols: names, messages and limits.
//!
//! ```text
//! /tessera/piece/1       client -> node
//!   Has { piece }                          -> Has { piece, size }
//!   Get { piece, range }                   -> Range { piece, range, size, body }   (verifiable)
//!   PutBegin { piece, size }               -> PutReady { piece, offset }
//!   PutChunk { piece, offset, bytes } ...  -> PutProgress { piece, offset }
//!   PutEnd { piece }                       -> Stored { piece }  (durable, hash checked)
//!   any                                    -> Error { piece, code, message }
//! /tessera/challenge/1   auditor -> node
//!   Challenge { piece, nonce, samples }    -> Proof { .. } | Error { .. }
//! ```
//! Every response names the piece (and range) it answers. Messages are DAG-CBOR, one per
//! stream direction, and the codec refuses any message over its limit before decoding it.

use cid::Cid;
use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};
use tessera_proofs::{ByteRange, Challenge, MAX_PROOF_BODY, MAX_RANGE_LEN, Proof};

/// The piece protocol.
pub const PIECE_PROTOCOL: StreamProtocol = StreamProtocol::new("/tessera/piece/1");
/// The storage challenge protocol.
pub const CHALLENGE_PROTOCOL: StreamProtocol = StreamProtocol::new("/tessera/challenge/1");
/// Tessera's own Kademlia DHT, apart from the public IPFS one.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/tessera/kad/1.0.0");

/// Most bytes one upload message carries.
pub const MAX_PUT_CHUNK: u64 = 1024 * 1024;
/// Room for a message's fields around its payload.
const ENVELOPE: u64 = 16 * 1024;
/// Largest piece request on the wire.
pub const MAX_PIECE_REQUEST: u64 = MAX_PUT_CHUNK + ENVELOPE;
/// Largest piece response on the wire: a full range and its sibling hashes.
pub const MAX_PIECE_RESPONSE: u64 = MAX_RANGE_LEN + 4096 + ENVELOPE;
/// Largest challenge request on the wire.
pub const MAX_CHALLENGE_REQUEST: u64 = ENVELOPE;
/// Largest challenge response on the wire.
pub const MAX_CHALLENGE_RESPONSE: u64 = MAX_PROOF_BODY as u64 + ENVELOPE;

/// A request of the piece protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PieceRequest {
    /// Does the node hold the piece?
    Has {
        /// The piece.
        piece: Cid,
    },
    /// A verifiable byte range of a piece.
    Get {
        /// The piece.
        piece: Cid,
        /// The range, at most [`MAX_RANGE_LEN`] bytes.
        range: ByteRange,
    },
    /// Start (or resume) uploading a piece of `size` bytes.
    PutBegin {
        /// The piece.
        piece: Cid,
        /// Its length.
        size: u64,
    },
    /// The next bytes of an upload.
    PutChunk {
        /// The piece.
        piece: Cid,
        /// Where the bytes go; must be where the upload stands.
        offset: u64,
        /// At most [`MAX_PUT_CHUNK`] bytes.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// Finish an upload: the node checks the bytes against the CID and stores them durably.
    PutEnd {
        /// The piece.
        piece: Cid,
    },
}

impl PieceRequest {
    /// The piece the request is about.
    pub fn piece(&self) -> &Cid {
        match self {
            PieceRequest::Has { piece }
            | PieceRequest::Get { piece, .. }
            | PieceRequest::PutBegin { piece, .. }
            | PieceRequest::PutChunk { piece, .. }
            | PieceRequest::PutEnd { piece } => piece,
        }
    }
}

/// A response of the piece protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PieceResponse {
    /// Whether the node holds the piece, and its size if so.
    Has {
        /// The piece.
        piece: Cid,
        /// Its size, if held.
        size: Option<u64>,
    },
    /// A range with the hashes that prove it.
    Range {
        /// The piece.
        piece: Cid,
        /// The range.
        range: ByteRange,
        /// The piece's size.
        size: u64,
        /// The range proof body (see `tessera_proofs::range`).
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
    },
    /// Ready to take bytes from `offset` on.
    PutReady {
        /// The piece.
        piece: Cid,
        /// Where the upload stands.
        offset: u64,
    },
    /// Bytes taken; the upload stands at `offset`.
    PutProgress {
        /// The piece.
        piece: Cid,
        /// Where the upload stands.
        offset: u64,
    },
    /// The piece is stored durably and matched its CID.
    Stored {
        /// The piece.
        piece: Cid,
    },
    /// The request failed.
    Error {
        /// The piece.
        piece: Cid,
        /// Why, for programs.
        code: ErrorCode,
        /// Why, for people.
        message: String,
    },
}

/// Why a request failed, for programs to branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The node does not hold the piece.
    NotFound,
    /// The node has no room for the piece.
    CapacityExceeded,
    /// The bytes do not hash to the piece's CID.
    HashMismatch,
    /// The request is malformed or breaks a limit.
    BadRequest,
    /// An upload message that does not fit the upload's state.
    UploadState,
    /// Too many requests or uploads at once; try later or elsewhere.
    Busy,
    /// The node failed (disk error); try elsewhere.
    Internal,
}

/// A response of the challenge protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChallengeResponse {
    /// The proof.
    Proof(Proof),
    /// The node cannot answer.
    Error {
        /// The piece challenged.
        piece: Cid,
        /// Why, for programs.
        code: ErrorCode,
        /// Why, for people.
        message: String,
    },
}

/// Re-exported so users of the protocol need not depend on `tessera-proofs` for the request.
pub type ChallengeRequest = Challenge;
