//! What every Tessera node process shares, whatever its roles.
//!
//! - [`builder`]: a node put together from its roles (identity, network, database, tasks,
//!   one HTTP port) and stopped in order.
//! - [`charter`]: the network charter a node starts from, read and verified.
//! - [`config`]: what every role's settings share (durations, the data directory, errors).
//! - [`db`]: one RocksDB per node, a column family per role, and the import of the
//!   databases that roles once kept apart.
//! - [`http`]: the one shape of an error answered by a node's HTTP APIs.
//! - [`api_client`]: calling a node's HTTP API from elsewhere, its refusals in that shape.
//! - [`blocking`]: blocking work off the async threads, its task's failure as an error.
//! - [`identity`]: the Ed25519 key inside a node's libp2p identity, and back.
//! - [`payout`]: where a node's rewards are paid, declared on the DHT under its key.

pub mod api_client;
pub mod blocking;
pub mod builder;
pub mod charter;
pub mod config;
pub mod db;
pub mod http;
pub mod identity;
pub mod payout;
