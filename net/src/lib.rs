//! Network plumbing shared by every Tessera node and client.
//!
//! - [`network`]: one task owns the rust-libp2p `Swarm` (TCP and QUIC with Noise and Yamux,
//!   Identify, Ping, Tessera's Kademlia DHT with provider and value records, gossipsub for
//!   registry announcements and audit receipts, and the request-response protocols); a cloneable [`Client`]
//!   talks to it.
//! - [`protocol`]: the versioned protocol names, their messages and their size limits.
//! - [`codec`]: DAG-CBOR framing with limits enforced while reading.
//! - [`identity`]: the persistent Ed25519 node key.
//! - [`smoothed`]: waits that follow the times observed (RFC 6298's timer).

pub mod codec;
pub mod identity;
pub mod network;
pub mod protocol;
pub mod smoothed;

pub use libp2p::{
    Multiaddr, PeerId, identity::Keypair, multiaddr::Protocol, request_response::ResponseChannel,
};
pub use network::{
    Client, CrawlEvent, GossipMessage, InboundRequest, NetError, Network, NetworkConfig,
    NetworkInfo, PeerStatus, RegistryEvent, health::PeerDown, limits::ConnectionCaps, start,
};
