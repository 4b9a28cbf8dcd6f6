//! Bounds on the connections a node holds, so that nobody from outside can exhaust its file
//! descriptors or memory by connecting.
//!
//! ```text
//! inbound connection ─▶ pending inbound ≤ max ─▶ memory below the cap ─▶ established:
//!                       inbound ≤ max, per peer ≤ max, per remote IP ≤ max ─▶ accepted
//!                       (any bound crossed: denied, the connection closed at once)
//! ```
//!
//! libp2p's `connection_limits` counts by peer id, which costs an attacker nothing to change;
//! [`PerIpLimit`] counts inbound connections by the address they come from.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::IpAddr,
    task::{Context, Poll},
};

use libp2p::{
    Multiaddr, PeerId,
    core::{Endpoint, transport::PortUse},
    multiaddr::Protocol,
    swarm::{
        ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler,
        THandlerInEvent, THandlerOutEvent, ToSwarm, behaviour::ConnectionEstablished, dummy,
    },
};

/// The bounds, in [`crate::NetworkConfig`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectionCaps {
    /// Inbound connections still in their handshake.
    pub pending_incoming: u32,
    /// Inbound connections established.
    pub established_incoming: u32,
    /// Connections with one peer, both ways.
    pub per_peer: u32,
    /// Inbound connections from one IP address.
    pub per_ip: u32,
    /// New connections are refused while the process uses more than this share of the
    /// machine's memory.
    pub max_memory_fraction: f64,
}

impl Default for ConnectionCaps {
    fn default() -> Self {
        Self {
            pending_incoming: 64,
            established_incoming: 512,
            per_peer: 4,
            per_ip: 64,
            max_memory_fraction: 0.9,
        }
    }
}

/// Denied: too many inbound connections from one address.
#[derive(Debug, thiserror::Error)]
#[error("{count} inbound connections from {ip} already; at most {max}")]
pub struct TooManyFromIp {
    /// The address.
    pub ip: IpAddr,
    /// Connections from it now.
    pub count: u32,
    /// The bound.
    pub max: u32,
}

/// Counts inbound connections by remote IP address and denies those past the bound.
#[derive(Debug)]
pub(crate) struct PerIpLimit {
    max: u32,
    by_ip: HashMap<IpAddr, u32>,
    connections: HashMap<ConnectionId, IpAddr>,
}

impl PerIpLimit {
    pub(crate) fn new(max: u32) -> Self {
        Self {
            max,
            by_ip: HashMap::new(),
            connections: HashMap::new(),
        }
    }

    /// Counts a connection from `remote`, or denies it.
    fn admit(&mut self, id: ConnectionId, remote: &Multiaddr) -> Result<(), TooManyFromIp> {
        let Some(ip) = ip_of(remote) else {
            return Ok(());
        };
        let count = self.by_ip.get(&ip).copied().unwrap_or(0);
        if count >= self.max {
            return Err(TooManyFromIp {
                ip,
                count,
                max: self.max,
            });
        }
        self.by_ip.insert(ip, count + 1);
        self.connections.insert(id, ip);
        Ok(())
    }

    fn release(&mut self, id: ConnectionId) {
        let Some(ip) = self.connections.remove(&id) else {
            return;
        };
        if let Some(count) = self.by_ip.get_mut(&ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.by_ip.remove(&ip);
            }
        }
    }
}

fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

impl NetworkBehaviour for PerIpLimit {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _peer: PeerId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.admit(connection_id, remote_addr)
            .map_err(ConnectionDenied::new)?;
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        if let FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) = event {
            self.release(connection_id);
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

/// A relayed connection was refused: the peer is connected directly.
#[derive(Debug, thiserror::Error)]
#[error("{0} is connected directly; no relayed connection beside it")]
pub struct RelayedBesideDirect(PeerId);

/// Refuses relayed connections to peers already connected directly, before any other
/// behaviour sees them: request-response spreads requests over every connection to a peer,
/// and a relay carries only a few hundred KiB. (A dial tries a peer's addresses at once, so
/// one through a relay may finish after a direct one.)
#[derive(Debug, Default)]
pub(crate) struct DirectFirst {
    direct: HashMap<PeerId, u32>,
}

impl DirectFirst {
    fn admit(
        &self,
        peer: PeerId,
        relayed: bool,
    ) -> Result<dummy::ConnectionHandler, ConnectionDenied> {
        if relayed && self.direct.contains_key(&peer) {
            return Err(ConnectionDenied::new(RelayedBesideDirect(peer)));
        }
        Ok(dummy::ConnectionHandler)
    }
}

impl NetworkBehaviour for DirectFirst {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        _remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.admit(peer, super::reachability::is_relayed(local_addr))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.admit(peer, super::reachability::is_relayed(addr))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id, endpoint, ..
            }) if !endpoint.is_relayed() => {
                *self.direct.entry(peer_id).or_default() += 1;
            }
            FromSwarm::ConnectionClosed(ConnectionClosed {
                peer_id, endpoint, ..
            }) if !endpoint.is_relayed() => {
                if let Some(count) = self.direct.get_mut(&peer_id) {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        self.direct.remove(&peer_id);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_by_address_and_released_when_closed() {
        let mut limit = PerIpLimit::new(2);
        let a: Multiaddr = "/ip4/198.18.0.1/tcp/5000".parse().unwrap();
        let a2: Multiaddr = "/ip4/198.18.0.1/udp/7/quic-v1".parse().unwrap();
        let b: Multiaddr = "/ip6/2001:db8::1/tcp/1".parse().unwrap();
        let ids: Vec<ConnectionId> = (0..5).map(ConnectionId::new_unchecked).collect();
        assert!(limit.admit(ids[0], &a).is_ok());
        assert!(limit.admit(ids[1], &a2).is_ok());
        let denied = limit.admit(ids[2], &a).unwrap_err();
        assert_eq!((denied.count, denied.max), (2, 2));
        assert!(
            limit.admit(ids[3], &b).is_ok(),
            "another address has its own count"
        );
        limit.release(ids[0]);
        limit.release(ids[0]);
        assert!(limit.admit(ids[4], &a).is_ok());
        assert_eq!(limit.by_ip.len(), 2);
    }
}
