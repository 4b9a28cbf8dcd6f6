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
//! /tessera/registry/1   anyone -> registry node
//!   Submit { record }                      -> Accepted { record } | Error { code, message }
//!   Heads { after, limit }                 -> Records { records, more }   (latest per dataset)
//!   Chain { publisher, name, from, limit } -> Records { records, more }   (in version order)
//!   Find { publisher, name, version }      -> Records { records, more }
//! gossipsub topic /tessera/registry/announce/1: signed record blocks, as they are accepted
//! /tessera/crawl/1      scraper node -> crawl coordinator
//!   CrawlRequest { body }                  -> CrawlResponse { body }
//!   (bodies are the scraper's DAG-CBOR messages: lease, complete, shard; see scraper-node)
//! ```
//! Every piece response names the piece (and range) it answers. Messages are DAG-CBOR, one per
//! stream direction, and the codec refuses any message over its limit before decoding it.

use cid::Cid;
use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};
use tessera_formats::{PublisherKey, record::MAX_RECORD_BYTES};
use tessera_proofs::{ByteRange, Challenge, MAX_PROOF_BODY, MAX_RANGE_LEN, Proof};

use crate::codec::{Message, to_cbor};

/// The piece protocol.
pub const PIECE_PROTOCOL: StreamProtocol = StreamProtocol::new("/tessera/piece/1");
/// The storage challenge protocol.
pub const CHALLENGE_PROTOCOL: StreamProtocol = StreamProtocol::new("/tessera/challenge/1");
/// The dataset registry protocol.
pub const REGISTRY_PROTOCOL: StreamProtocol = StreamProtocol::new("/tessera/registry/1");
/// The gossipsub topic on which registry nodes announce the records they accept.
pub const REGISTRY_TOPIC: &str = "/tessera/registry/announce/1";
/// The gossipsub topic on which auditors share their signed receipts.
pub const RECEIPT_TOPIC: &str = "/tessera/audit/receipts/1";
/// The crawl protocol between scraper nodes and a crawl coordinator.
pub const CRAWL_PROTOCOL: StreamProtocol = StreamProtocol::new("/tessera/crawl/1");
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

/// Most records in one registry response.
pub const MAX_RECORDS_PER_RESPONSE: u32 = 64;
/// Largest registry request on the wire.
pub const MAX_REGISTRY_REQUEST: u64 = MAX_RECORD_BYTES as u64 + ENVELOPE;
/// Largest registry response on the wire.
pub const MAX_REGISTRY_RESPONSE: u64 =
    MAX_RECORDS_PER_RESPONSE as u64 * (MAX_RECORD_BYTES as u64 + 16) + ENVELOPE;
/// Largest crawl message body either way: a lease of 1,000 URLs, or a report of one with
/// their links.
pub const MAX_CRAWL_BODY: u64 = 4 * 1024 * 1024;
/// Largest crawl message on the wire.
pub const MAX_CRAWL_MESSAGE: u64 = MAX_CRAWL_BODY + ENVELOPE;
/// Largest gossip message: one record block (a receipt block is smaller).
pub const MAX_GOSSIP_MESSAGE: usize = MAX_RECORD_BYTES + 1024;

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

/// A request of the registry protocol. Records travel as signed DAG-CBOR blocks
/// (`tessera_formats::SignedRecord`), which the receiver verifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegistryRequest {
    /// Store and announce a new record.
    Submit {
        /// The signed record block.
        #[serde(with = "serde_bytes")]
        record: Vec<u8>,
    },
    /// The latest record of every dataset, ordered by (publisher, name), after `after`.
    Heads {
        /// Where the previous page ended.
        after: Option<(PublisherKey, String)>,
        /// Most records wanted (at most [`MAX_RECORDS_PER_RESPONSE`]).
        limit: u32,
    },
    /// One dataset's records from version `from` on, in version order.
    Chain {
        /// The publisher.
        publisher: PublisherKey,
        /// The dataset.
        name: String,
        /// The first version wanted.
        from: u64,
        /// Most records wanted (at most [`MAX_RECORDS_PER_RESPONSE`]).
        limit: u32,
    },
    /// The records of datasets called `name`: one per publisher whose key starts with
    /// `publisher` (any publisher if none), the given version or the latest.
    Find {
        /// A publisher key prefix, lowercase hex.
        publisher: Option<String>,
        /// The dataset.
        name: String,
        /// The version; the latest if none.
        version: Option<u64>,
    },
}

/// A response of the registry protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegistryResponse {
    /// The record was accepted (or was already known).
    Accepted {
        /// Its CID.
        record: cid::Cid,
    },
    /// Signed record blocks.
    Records {
        /// The blocks.
        records: Vec<serde_bytes::ByteBuf>,
        /// Whether more match than were sent.
        more: bool,
    },
    /// The request failed or the record was refused.
    Error {
        /// Why, for programs.
        code: RegistryErrorCode,
        /// Why, for people.
        message: String,
    },
}

/// Why a registry request failed, for programs to branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RegistryErrorCode {
    /// The record is malformed, breaks a rule or its signature does not verify.
    BadRecord,
    /// The record does not follow the chain it names.
    BrokenChain,
    /// Another record already has this publisher, name and version.
    VersionReused,
    /// The record's manifest could not be fetched or is not a valid manifest.
    ManifestUnresolved,
    /// The request is malformed or breaks a limit.
    BadRequest,
    /// Too many requests at once; try later or elsewhere.
    Busy,
    /// The node failed; try elsewhere.
    Internal,
}

impl RegistryErrorCode {
    /// A stable lowercase name, for JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            RegistryErrorCode::BadRecord => "bad_record",
            RegistryErrorCode::BrokenChain => "broken_chain",
            RegistryErrorCode::VersionReused => "version_reused",
            RegistryErrorCode::ManifestUnresolved => "manifest_unresolved",
            RegistryErrorCode::BadRequest => "bad_request",
            RegistryErrorCode::Busy => "busy",
            RegistryErrorCode::Internal => "internal",
        }
    }
}

/// A request of the crawl protocol: one of the scraper's messages, as DAG-CBOR, which the
/// coordinator decodes within its own limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrawlRequest {
    /// The message.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

/// A response of the crawl protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrawlResponse {
    /// The message.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

impl Message for PieceRequest {}
impl Message for ChallengeRequest {}
impl Message for ChallengeResponse {}
impl Message for RegistryRequest {}
impl Message for RegistryResponse {}
impl Message for CrawlRequest {}
impl Message for CrawlResponse {}

/// How serde writes a `Range` response whose body is empty, up to and with that body: the
/// variant's map, whose keys sort `body` first (DAG-CBOR orders keys by length, then bytes).
const EMPTY_RANGE_HEAD: &[u8] = b"\xa1\x65Range\xa4\x64body\x40";

impl Message for PieceResponse {
    /// A `Range` is the one large message a node sends over and over: serde would copy its
    /// body into a buffer per map entry and again into the output. It is written as serde
    /// writes it with no body, with the body's bytes put in place of the empty one.
    fn into_cbor(mut self) -> Result<Vec<u8>, String> {
        let Self::Range { body, .. } = &mut self else {
            return to_cbor(&self);
        };
        let body = std::mem::take(body);
        let head = to_cbor(&self)?;
        match splice_body(&head, &body) {
            Some(bytes) => Ok(bytes),
            None => {
                if let Self::Range { body: slot, .. } = &mut self {
                    *slot = body;
                }
                to_cbor(&self)
            }
        }
    }
}

/// The encoding of a `Range` response from `head`, its encoding with an empty body, and the
/// body; `None` if `head` is not laid out as expected.
fn splice_body(head: &[u8], body: &[u8]) -> Option<Vec<u8>> {
    let rest = head.strip_prefix(EMPTY_RANGE_HEAD)?;
    let before = &EMPTY_RANGE_HEAD[..EMPTY_RANGE_HEAD.len() - 1];
    let mut out = Vec::with_capacity(head.len() + 9 + body.len());
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
    out.extend_from_slice(body);
    out.extend_from_slice(rest);
    Some(out)
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
            let spliced = splice_body(&head, body);
            prop_assert_eq!(spliced.as_ref(), Some(&expected));
            prop_assert_eq!(response.clone().into_cbor().unwrap(), expected.clone());
            let back: PieceResponse = serde_ipld_dagcbor::from_slice(&expected).unwrap();
            prop_assert_eq!(back, response);
        }
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
