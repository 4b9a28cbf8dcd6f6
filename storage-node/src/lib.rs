//! Tessera's storage node.
//!
//! - [`store`]: the piece store: piece files indexed by RocksDB, durable before acknowledged,
//!   consistent after a crash at any point, bounded by a capacity.
//!
//! - [`service`]: answers the piece and challenge protocols of `tessera-net` from the store and
//!   announces stored pieces on the DHT.
//! - [`metrics`]: the node's counters in Prometheus text format.
//!
//! Not built yet: the `tessera storage-node` command with its config file, the HTTP port
//! (`/status`, `/metrics`), and re-announcing held pieces after a restart. See
//! `docs/ARCHITECTURE.md`.

pub mod metrics;
pub mod service;
pub mod store;

pub use store::{
    PieceMeta, PieceStore, StartupReport, StoreConfig, StoreError, StoredPiece, Upload, Usage,
};
