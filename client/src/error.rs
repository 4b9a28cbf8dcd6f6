//! What can go wrong on the client side.

use std::{io, path::PathBuf};

use cid::Cid;
use tessera_formats::{
    erasure::{DecodeError, EncodeError, ParamsError},
    layout::LayoutError,
};
use tessera_net::{NetError, PeerId};

/// A client operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No bootstrap address was given.
    #[error("no bootstrap peer: pass --bootstrap /ip4/…/tcp/…/p2p/PEER_ID or set it in the config")]
    NoBootstrap,
    /// None of the bootstrap peers could be reached.
    #[error(
        "could not reach any bootstrap peer ({0}): check that the node is running and that the \
         address, with its /p2p/ id, is the one it prints"
    )]
    Unreachable(String),
    /// The network failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The network has no storage node to put pieces on.
    #[error("no storage nodes found in the network")]
    NoNodes,
    /// Reading or writing a local file failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The erasure parameters are unusable.
    #[error(transparent)]
    Params(#[from] ParamsError),
    /// Encoding the file failed.
    #[error("encoding: {0}")]
    Encode(#[from] EncodeError),
    /// Too few distinct working nodes for the shard's pieces: it would survive fewer node
    /// losses than its parity promises.
    #[error(
        "only {nodes} working storage nodes for {pieces} pieces: the shard would survive the loss of \
         {survives} nodes, not {m}; start more nodes, choose fewer pieces (--k, --m), or pass \
         --degraded to store it anyway"
    )]
    Degraded {
        /// Distinct nodes found (before) or holding pieces (after).
        nodes: usize,
        /// The shard's pieces.
        pieces: usize,
        /// Node losses it would survive.
        survives: usize,
        /// Its parity pieces: the losses it should survive.
        m: usize,
    },
    /// Every node tried refused or failed to store a piece.
    #[error("piece {index} could not be stored on any node: {}", attempts_text(.attempts))]
    Unplaced {
        /// The piece's index in the shard (or 0 for a block).
        index: usize,
        /// Every node tried, and why it failed.
        attempts: Vec<(PeerId, String)>,
    },
    /// A CID that is not what the operation reads.
    #[error("{cid} is not a shard layout (a DAG-CBOR block); `tessera put` prints a layout CID")]
    NotALayout {
        /// The CID.
        cid: Box<Cid>,
    },
    /// No provider served a block or piece that checked out.
    #[error("{cid}: no provider served it ({})", attempts_text(.attempts))]
    NotFound {
        /// The block or piece.
        cid: Box<Cid>,
        /// Every provider tried, and why it failed.
        attempts: Vec<(PeerId, String)>,
    },
    /// A layout block that does not parse or validate.
    #[error("layout {cid}: {source}")]
    Layout {
        /// The layout CID.
        cid: Box<Cid>,
        /// Why.
        #[source]
        source: LayoutError,
    },
    /// Fewer than k pieces could be fetched.
    #[error("only {fetched} of the {needed} pieces needed could be fetched: {}", failures_text(.failures))]
    NotEnoughPieces {
        /// k.
        needed: usize,
        /// Pieces fetched intact.
        fetched: usize,
        /// Each piece that failed, and why.
        failures: Vec<(usize, String)>,
    },
    /// The fetched pieces did not decode to the shard.
    #[error("decoding: {0}")]
    Decode(#[from] DecodeError),
    /// A rebuilt piece does not have the CID its layout names (the layout lies about its
    /// encoding, or this build encodes differently).
    #[error("shard {shard}: piece {index} rebuilds to {got}, not {want}")]
    RebuiltMismatch {
        /// The shard's content CID.
        shard: Box<Cid>,
        /// The piece's index.
        index: usize,
        /// What the rebuild gave.
        got: Box<Cid>,
        /// What the layout names.
        want: Box<Cid>,
    },
    /// The output file exists.
    #[error("{} exists; remove it or pick another name", .0.display())]
    OutputExists(PathBuf),
}

impl ClientError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let what = what.into();
        move |source| ClientError::Io { what, source }
    }
}

pub(crate) fn attempts_text(attempts: &[(PeerId, String)]) -> String {
    if attempts.is_empty() {
        return "no providers found".into();
    }
    attempts
        .iter()
        .map(|(peer, why)| format!("{peer}: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn failures_text(failures: &[(usize, String)]) -> String {
    failures
        .iter()
        .map(|(index, why)| format!("piece {index}: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}
