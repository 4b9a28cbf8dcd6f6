//! Tessera's dataset registry.
//!
//! Not built yet. The registry will keep signed version records (publisher key, dataset name,
//! version, manifest CID, parent record) as a chain per publisher and name, learn new records
//! over gossipsub, catch up over request-response, and resolve `NAME@VERSION` to a manifest
//! CID. Manifests themselves are defined in `tessera-formats`. See `docs/ARCHITECTURE.md`.
