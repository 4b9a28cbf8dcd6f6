//! Tessera's storage node.
//!
//! - [`store`]: the piece store: piece files indexed by RocksDB, durable before acknowledged,
//!   consistent after a crash at any point, bounded by a capacity.
//!
//! - [`service`]: answers the piece and challenge protocols of `tessera-net` from the store and
//!   announces stored pieces on the DHT.
//! - [`metrics`]: the node's counters in Prometheus text format.
//! - [`audit`]: the auditor role: challenges the holders of known pieces on a schedule, signs
//!   a receipt for every answer and shares it, and rebuilds the pieces of shards whose
//!   redundancy fell below the threshold (claimed on the DHT first); [`receipts`] keeps its
//!   own receipts and those shared by others in RocksDB.
//! - [`local`]: a network of real nodes on 127.0.0.1 in one process (the demo, tests).
//! - [`node`]: a whole node assembled from its roles (storage, registry, receipts, auditor) on
//!   `tessera-node`'s builder and started with one call; held pieces are re-announced at
//!   every start.
//! - [`config`]: the node's settings, described once (file, flags, `--print-config`).
//! - [`rewards`]: storage proven over a period from receipt blocks, each verified, whoever
//!   supplied them (`/v1/rewards`, `tessera rewards`); the address a node's rewards are
//!   paid to is declared by `tessera_node::payout`.
//! - [`http`]: its HTTP routes: `/status`, `/metrics`, the dashboard, audits, receipts, rewards.
//!
//! See `docs/ARCHITECTURE.md`.

pub mod api_client;
pub mod audit;
pub mod bandwidth;
pub mod config;
pub mod http;
pub mod local;
pub mod metrics;
pub mod node;
pub mod receipts;
pub mod rewards;
pub mod service;
pub mod store;

pub use config::NodeConfig;
pub use http::Status;
pub use local::LocalNetwork;
pub use node::{NodeError, StorageNode};
pub use store::{
    PieceMeta, PieceStore, ScrubReport, StartupReport, StoreConfig, StoreError, StoredPiece,
    Upload, Usage,
};
