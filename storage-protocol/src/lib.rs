//! The protocols a storage node answers: their names, messages and limits.
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
//! Every piece response names the piece (and range) it answers. Messages are DAG-CBOR, one per
//! stream direction, and the codec refuses any message over its limit before decoding it.

use cid::Cid;
use serde::{Deserialize, Serialize};
use tessera_proofs::{ByteRange, Challenge, MAX_PROOF_BODY, MAX_RANGE_LEN, Proof};

use tessera_net::{
    StreamProtocol,
    codec::{Encoded, Message, from_cbor, to_cbor},
    rpc::Protocol,
};

/// The piece protocol.
#[derive(Debug)]
pub struct PieceProtocol;

impl Protocol for PieceProtocol {
    const NAME: StreamProtocol = StreamProtocol::new("/tessera/piece/1");
    const MAX_REQUEST: u64 = MAX_PIECE_REQUEST;
    const MAX_RESPONSE: u64 = MAX_PIECE_RESPONSE;
    type Request = PieceRequest;
    type Response = PieceResponse;

    fn busy(request: &PieceRequest) -> PieceResponse {
        PieceResponse::Error {
            piece: *request.piece(),
            code: ErrorCode::Busy,
            message: "node is busy".into(),
        }
    }
}

tessera_net::register_protocol!(PieceProtocol);

/// The storage challenge protocol.
#[derive(Debug)]
pub struct ChallengeProtocol;

impl Protocol for ChallengeProtocol {
    const NAME: StreamProtocol = StreamProtocol::new("/tessera/challenge/1");
    const MAX_REQUEST: u64 = MAX_CHALLENGE_REQUEST;
    const MAX_RESPONSE: u64 = MAX_CHALLENGE_RESPONSE;
    type Request = ChallengeRequest;
    type Response = ChallengeResponse;

    fn busy(request: &ChallengeRequest) -> ChallengeResponse {
        ChallengeResponse::Error {
            piece: request.piece,
            code: ErrorCode::Busy,
            message: "node is busy".into(),
        }
    }
}

tessera_net::register_protocol!(ChallengeProtocol);

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

impl PieceResponse {
    /// Whether the node was too busy to act on the request: asking again later is safe.
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            Self::Error {
                code: ErrorCode::Busy,
                ..
            }
        )
    }
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

impl ChallengeResponse {
    /// Whether the node was too busy to take the challenge: it did not act on it.
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            Self::Error {
                code: ErrorCode::Busy,
                ..
            }
        )
    }
}

/// A request of the challenge protocol: a challenge as `tessera_proofs` defines it, written
/// as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChallengeRequest(pub Challenge);

impl From<Challenge> for ChallengeRequest {
    fn from(challenge: Challenge) -> Self {
        Self(challenge)
    }
}

impl std::ops::Deref for ChallengeRequest {
    type Target = Challenge;

    fn deref(&self) -> &Challenge {
        &self.0
    }
}

impl Message for PieceRequest {}
impl Message for ChallengeRequest {}
impl Message for ChallengeResponse {}

/// How serde writes a `Range` response whose body is empty, up to and with that body: the
/// variant's map, whose keys sort `body` first (DAG-CBOR orders keys by length, then bytes).
const EMPTY_RANGE_HEAD: &[u8] = b"\xa1\x65Range\xa4\x64body\x40";

impl Message for PieceResponse {
    /// A `Range` is the one large message a node sends over and over: serde would copy its
    /// body into a buffer per map entry and again into the output. It is written as serde
    /// writes it with no body, with the body itself as a part in place of the empty one.
    fn into_cbor_parts(mut self) -> Result<Encoded, String> {
        let Self::Range { body, .. } = &mut self else {
            return to_cbor(&self).map(Encoded::from);
        };
        let body = std::mem::take(body);
        let head = to_cbor(&self)?;
        match splice_body(&head, body) {
            Ok(parts) => Ok(parts),
            Err(body) => {
                if let Self::Range { body: slot, .. } = &mut self {
                    *slot = body;
                }
                to_cbor(&self).map(Encoded::from)
            }
        }
    }

    /// The inverse: a `Range` laid out as serde writes it is read as its encoding with an empty
    /// body, and the body is the received buffer, moved down in place, instead of a copy.
    /// Anything else, or a body header not in its shortest form, is read by serde.
    fn from_cbor(mut bytes: Vec<u8>) -> Result<Self, String> {
        let Some((start, end)) = range_body(&bytes) else {
            return from_cbor(&bytes);
        };
        let rest = &bytes[end..];
        let mut head = Vec::with_capacity(EMPTY_RANGE_HEAD.len() + rest.len());
        head.extend_from_slice(EMPTY_RANGE_HEAD);
        head.extend_from_slice(rest);
        let mut message: Self = from_cbor(&head)?;
        if let Self::Range { body, .. } = &mut message {
            bytes.truncate(end);
            bytes.drain(..start);
            *body = bytes;
        }
        Ok(message)
    }
}

/// Where the body of a `Range` response lies in its encoding, `start..end`: after the variant's
/// map header and the `body` key, a byte string whose header is in its shortest form.
fn range_body(bytes: &[u8]) -> Option<(usize, usize)> {
    let before = &EMPTY_RANGE_HEAD[..EMPTY_RANGE_HEAD.len() - 1];
    let rest = bytes.strip_prefix(before)?;
    let (&first, rest) = rest.split_first()?;
    let (len, header) = match first {
        0x40..=0x57 => (u64::from(first - 0x40), 1),
        0x58 => (u64::from(*rest.first()?), 2),
        0x59 => (u64::from(u16::from_be_bytes(*rest.first_chunk()?)), 3),
        0x5a => (u64::from(u32::from_be_bytes(*rest.first_chunk()?)), 5),
        0x5b => (u64::from_be_bytes(*rest.first_chunk()?), 9),
        _ => return None,
    };
    let shortest = match header {
        1 => true,
        2 => len >= 24,
        3 => len > 0xff,
        5 => len > 0xffff,
        _ => len > 0xffff_ffff,
    };
    let start = before.len() + header;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    (shortest && end <= bytes.len()).then_some((start, end))
}

/// The encoding of a `Range` response from `head`, its encoding with an empty body, and the
/// body, as three parts: up to the body's header, the body, the rest. The body comes back if
/// `head` is not laid out as expected.
fn splice_body(head: &[u8], body: Vec<u8>) -> Result<Encoded, Vec<u8>> {
    let Some(rest) = head.strip_prefix(EMPTY_RANGE_HEAD) else {
        return Err(body);
    };
    let before = &EMPTY_RANGE_HEAD[..EMPTY_RANGE_HEAD.len() - 1];
    let mut out = Vec::with_capacity(before.len() + 9);
    out.extend_from_slice(before);
    // A byte string's header (major type 2) in its shortest form, as DAG-CBOR requires.
    let len = body.len() as u64;
    match len {
        0..=23 => out.push(0x40 | len.to_be_bytes()[7]),
        24..=0xff => out.extend_from_slice(&[0x58, len.to_be_bytes()[7]]),
        0x100..=0xffff => {
            out.push(0x59);
            out.extend_from_slice(&len.to_be_bytes()[6..]);
        }
        0x1_0000..=0xffff_ffff => {
            out.push(0x5a);
            out.extend_from_slice(&len.to_be_bytes()[4..]);
        }
        _ => {
            out.push(0x5b);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    let mut parts = Encoded::from(out);
    parts.push(body);
    parts.push(rest.to_vec());
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The spliced encoding of a `Range` is serde's, byte for byte, at every length class
        /// of the body's header, and it reads back.
        #[test]
        fn a_range_is_written_as_serde_writes_it(
            len in prop::sample::select(vec![0usize, 1, 23, 24, 255, 256, 65_535, 65_536, 300_000]),
            start in any::<u64>(),
            size in any::<u64>(),
            seed in any::<u8>(),
        ) {
            let body: Vec<u8> = (0..len).map(|i| i.to_le_bytes()[0].wrapping_mul(seed)).collect();
            let response = PieceResponse::Range {
                piece: tessera_formats::address::raw_cid(&[seed]),
                range: ByteRange { start, len: len as u64 },
                size,
                body,
            };
            let expected = to_cbor(&response).unwrap();
            let mut empty = response.clone();
            if let PieceResponse::Range { body, .. } = &mut empty {
                body.clear();
            }
            let head = to_cbor(&empty).unwrap();
            let PieceResponse::Range { body, .. } = &response else { unreachable!() };
            let spliced = splice_body(&head, body.clone()).map(Encoded::concat);
            prop_assert_eq!(spliced.as_ref(), Ok(&expected));
            // Three parts: the body is not copied beside its neighbours.
            let parts = response.clone().into_cbor_parts().unwrap();
            prop_assert_eq!(parts.parts().nth(1), Some(body.as_slice()));
            prop_assert_eq!(response.clone().into_cbor().unwrap(), expected.clone());
            let back: PieceResponse = serde_ipld_dagcbor::from_slice(&expected).unwrap();
            prop_assert_eq!(&back, &response);
            prop_assert_eq!(PieceResponse::from_cbor(expected).unwrap(), response);
        }

        /// Whatever the bytes, reading a response with the body moved in place gives what
        /// serde gives: the same message, or an error.
        #[test]
        fn a_range_is_read_as_serde_reads_it(
            len in prop::sample::select(vec![0usize, 5, 24, 300, 70_000]),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            cut in prop::option::of(any::<prop::sample::Index>()),
        ) {
            let response = PieceResponse::Range {
                piece: tessera_formats::address::raw_cid(b"p"),
                range: ByteRange { start: 7, len: len as u64 },
                size: 1 << 20,
                body: vec![9; len],
            };
            let mut bytes = to_cbor(&response).unwrap();
            // Edits land mostly in the first bytes: the headers and the fields after a short body.
            for (at, value) in edits {
                let at = at.index(bytes.len().min(64));
                bytes[at] = value;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            let by_serde: Result<PieceResponse, _> = from_cbor(&bytes);
            let read = PieceResponse::from_cbor(bytes);
            prop_assert_eq!(read.ok(), by_serde.ok());
        }
    }

    #[test]
    fn a_body_header_longer_than_needed_is_left_to_serde() {
        let response = PieceResponse::Range {
            piece: tessera_formats::address::raw_cid(b"p"),
            range: ByteRange { start: 0, len: 3 },
            size: 3,
            body: vec![1, 2, 3],
        };
        let bytes = to_cbor(&response).unwrap();
        let at = EMPTY_RANGE_HEAD.len() - 1;
        assert_eq!(bytes[at], 0x43);
        // The same length in a two-byte header: not DAG-CBOR.
        let mut long = bytes[..at].to_vec();
        long.extend_from_slice(&[0x58, 3]);
        long.extend_from_slice(&bytes[at + 1..]);
        assert!(range_body(&long).is_none());
        assert_eq!(
            PieceResponse::from_cbor(long.clone()).ok(),
            from_cbor::<PieceResponse>(&long).ok()
        );
        assert_eq!(range_body(&bytes), Some((at + 1, at + 4)));
    }

    #[test]
    fn other_responses_are_written_by_serde() {
        let response = PieceResponse::Has {
            piece: tessera_formats::address::raw_cid(b"x"),
            size: Some(3),
        };
        assert_eq!(
            response.clone().into_cbor().unwrap(),
            to_cbor(&response).unwrap()
        );
    }
}
