//! Tessera's storage node.
//!
//! Not built yet. The node will keep erasure-coded pieces durably (RocksDB for state and
//! indexes), serve them and byte ranges of them by CID, announce them on the DHT, and answer
//! proof-of-storage challenges with `tessera-proofs`. See `docs/ARCHITECTURE.md`.
