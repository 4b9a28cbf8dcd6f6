//! Network plumbing shared by every Tessera node and client.
//!
//! - [`network`]: one task owns the rust-libp2p `Swarm` (TCP and QUIC with Noise and Yamux,
//!   Identify, Ping, AutoNAT, UPnP, circuit relay and hole punching, Tessera's Kademlia DHT with provider and value records, gossipsub for the
//!   topics nodes follow, and the request-response protocols); a cloneable [`Client`]
//!   talks to it.
//! - [`rpc`]: request-response protocols as their crates define them, and how a node asks
//!   and answers them.
//! - [`codec`]: DAG-CBOR framing with limits enforced while reading.
//! - [`identity`]: the persistent Ed25519 node key.
//! - [`smoothed`]: waits that follow the times observed (RFC 6298's timer).
//! - [`ip_class`]: what kind of network an IP address belongs to.

pub mod codec;
pub mod identity;
pub mod ip_class;
pub mod network;
pub mod rpc;
pub mod smoothed;

#[doc(hidden)]
pub use inventory;

pub use libp2p::{
    Multiaddr, PeerId, StreamProtocol, identity::Keypair, multiaddr::Protocol,
    request_response::ResponseChannel,
};
pub use network::{
    Client, NetError, Network, NetworkConfig, NetworkInfo, PathStats, PeerPath, PeerStatus,
    ProtocolTraffic, Reachability, RelayBudget, RelayStats, Topic, TopicEvent, health::PeerDown,
    limits::ConnectionCaps, start,
};
pub use rpc::{Inbound, Request, Responder};
