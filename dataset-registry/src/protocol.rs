//! The registry protocol, `/tessera/registry/1`, and the announcement topic.
//!
//! ```text
//! anyone -> registry node
//!   Submit { record }                      -> Accepted { record } | Error { code, message }
//!   Heads { after, limit }                 -> Records { records, more }   (latest per dataset)
//!   Chain { publisher, name, from, limit } -> Records { records, more }   (in version order)
//!   Find { publisher, name, version }      -> Records { records, more }
//!   Rotate { rotations }                   -> Rotations { rotations } | Error   (a key chain)
//!   Rotations { publisher }                -> Rotations { rotations }
//! gossipsub topic /tessera/registry/announce/1: signed record blocks, as they are accepted
//! ```

use serde::{Deserialize, Serialize};
use tessera_formats::{PublisherKey, record::MAX_RECORD_BYTES};
use tessera_net::{StreamProtocol, codec::Message, rpc::Protocol};

/// Room for a message's fields around its records.
const ENVELOPE: u64 = 16 * 1024;

/// The dataset registry protocol.
#[derive(Debug)]
pub struct RegistryProtocol;

impl Protocol for RegistryProtocol {
    const NAME: StreamProtocol = StreamProtocol::new("/tessera/registry/1");
    const MAX_REQUEST: u64 = MAX_REGISTRY_REQUEST;
    const MAX_RESPONSE: u64 = MAX_REGISTRY_RESPONSE;
    type Request = RegistryRequest;
    type Response = RegistryResponse;

    fn busy(_: &RegistryRequest) -> RegistryResponse {
        RegistryResponse::Error {
            code: RegistryErrorCode::Busy,
            message: "registry is busy".into(),
        }
    }
}

tessera_net::register_protocol!(RegistryProtocol);

/// The gossipsub topic on which registry nodes announce the records they accept.
pub const REGISTRY_TOPIC: &str = "/tessera/registry/announce/1";
/// Largest message on the announcement topic: one record block and room around it.
pub const MAX_ANNOUNCEMENT: usize = MAX_RECORD_BYTES + 1024;

/// Most records in one registry response.
pub const MAX_RECORDS_PER_RESPONSE: u32 = 64;
/// Largest registry request on the wire.
pub const MAX_REGISTRY_REQUEST: u64 = MAX_RECORD_BYTES as u64 + ENVELOPE;
/// Largest registry response on the wire.
pub const MAX_REGISTRY_RESPONSE: u64 =
    MAX_RECORDS_PER_RESPONSE as u64 * (MAX_RECORD_BYTES as u64 + 16) + ENVELOPE;

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
    /// Two records a publisher signed for one version: kept as evidence of the fork, and
    /// that dataset's reads refused from then on.
    Evidence {
        /// One signed record block.
        #[serde(with = "serde_bytes")]
        first: Vec<u8>,
        /// Another for the same version.
        #[serde(with = "serde_bytes")]
        second: Vec<u8>,
    },
    /// Keep a publisher's key rotations: its chain from the first, or from one the node
    /// already keeps.
    Rotate {
        /// Signed rotation blocks, in order.
        rotations: Vec<serde_bytes::ByteBuf>,
    },
    /// A publisher's key rotations, in order.
    Rotations {
        /// The publisher.
        publisher: PublisherKey,
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
    /// A publisher's key rotations as the node keeps them, in order.
    Rotations {
        /// Signed rotation blocks.
        rotations: Vec<serde_bytes::ByteBuf>,
    },
    /// The dataset asked for is forked: two records its publisher signed for one version,
    /// for the reader to check. No version of it is served.
    Forked {
        /// One signed record block.
        #[serde(with = "serde_bytes")]
        first: Vec<u8>,
        /// Another for the same version.
        #[serde(with = "serde_bytes")]
        second: Vec<u8>,
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
    /// The network's charter does not admit the record's publisher.
    NotAdmitted,
    /// The publisher signed two records for one version of the dataset: its history is
    /// forked, and no version of it is served.
    Equivocated,
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
            RegistryErrorCode::NotAdmitted => "not_admitted",
            RegistryErrorCode::Equivocated => "equivocated",
        }
    }
}

impl Message for RegistryRequest {}
impl Message for RegistryResponse {}
