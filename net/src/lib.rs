//! Network plumbing shared by every Tessera node.
//!
//! Not built yet. This crate will own the rust-libp2p `Swarm` (TCP and QUIC with Noise and
//! Yamux, Identify, Ping, a Kademlia DHT, gossipsub and Tessera's versioned request-response
//! protocols) behind one event loop and a cloneable client handle, and the persistent Ed25519
//! node identity. See `docs/ARCHITECTURE.md`.
