//! Tessera's dataset registry.
//!
//! - [`protocol`]: `/tessera/registry/1`'s messages and limits, and the announcement topic.
//! - [`store`]: verified version records in RocksDB, one chain per (publisher, name), with
//!   the manifests they name.
//! - [`service`]: the registry role of a node: admits records (signature, chain, manifest),
//!   answers `/tessera/registry/1`, announces over gossipsub and catches up with other
//!   registry nodes.
//! - [`remote`]: what clients call: submit a record, list datasets, read a log, resolve
//!   `[PUBLISHER/]NAME[@VERSION]` to a manifest CID.
//! - [`http`]: the read-only HTTP API and shard gateway of a registry node.
//!
//! Records and manifests are defined in `tessera-formats`; publishing and fetching whole
//! versions is `tessera-dataset`'s. See `docs/ARCHITECTURE.md`.

pub mod http;
pub mod protocol;
pub mod publisher_key;
pub mod remote;
pub mod service;
pub mod store;

pub use service::{Registry, RegistryConfig, run};
pub use store::{
    Admission, AdmitError, AuditScope, AuditSet, DatasetShards, Entry, QuotaMeter, RecordStore,
};
