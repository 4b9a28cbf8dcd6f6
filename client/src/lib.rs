//! Tessera's client side, used by the `tessera` CLI and by anything that stores or reads
//! shards (publishers, training jobs). It needs no RocksDB: it only talks to storage nodes.
//!
//! - [`session`]: join the network as a short-lived peer through bootstrap addresses.
//! - [`placement`]: which node gets which piece (sans-IO): distinct nodes while there are
//!   enough, failed nodes skipped.
//! - [`upload`]: one piece to one node over `/tessera/piece/1`, resuming where the node stands.
//! - [`put`]: erasure-code a file, store its pieces and its layout block.
//! - [`fetch`]: one piece or block from its providers, range by range, every range verified
//!   against the CID, falling back to another provider on a slow, missing or lying one.
//! - [`get`]: a shard back from its layout CID, with up to `m` pieces lost; a piece slow to
//!   start is hedged with another ([`hedge`]), so a frozen holder costs a short delay.
//! - [`repair`]: rebuild a shard's lost pieces from any `k` others onto new nodes.
//! - [`audit`]: challenge a holder and verify its proof against the piece CID alone.
//!
//! See `docs/ARCHITECTURE.md`.

pub mod audit;
pub mod error;
pub mod fetch;
pub mod get;
pub mod hedge;
pub mod local;
pub use tessera_proofs::placement;
pub mod put;
pub mod repair;
mod rpc;
pub mod session;
pub mod upload;

pub use audit::{AuditError, audit};
pub use error::ClientError;
pub use get::{GetOptions, GetReport, get_file};
pub use put::{PutOptions, PutReport, put_file, store_block};
pub use rpc::{Backoff, busy_policy};
pub use session::Session;
