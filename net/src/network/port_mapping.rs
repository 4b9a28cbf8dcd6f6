//! A port on the home router: a node listening on a private address asks the router (UPnP
//! IGD, as `miniupnpd` and most home routers offer it) to forward its TCP port, and hands the
//! mapped public address to AutoNAT as a candidate. Only once a peer has dialled it back is it
//! confirmed and advertised: a router that maps a port but sits behind another NAT (carrier-
//! grade NAT) gives an address nobody can reach, and that address is never shared.
//!
//! ```text
//! listening on 10.1.0.2:4001 ─▶ SSDP search on the LAN ─▶ gateway ─▶ external IP 198.18.1.1
//!   ─▶ AddPortMapping(TCP 4001 ─▶ 10.1.0.2:4001, 1 h) ─▶ candidate /ip4/198.18.1.1/tcp/4001
//!   ─▶ AutoNAT dial-back ─▶ confirmed ─▶ public; renewed every 30 min
//! ```

use std::{
    collections::VecDeque,
    convert::Infallible,
    net::{IpAddr, SocketAddr},
    task::{Context, Poll, Waker},
    time::Duration,
};

use igd_next::{PortMappingProtocol, SearchOptions, aio::tokio::search_gateway};
use libp2p::{
    Multiaddr, PeerId,
    core::{Endpoint, transport::PortUse},
    multiaddr::Protocol,
    swarm::{
        ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
        THandlerOutEvent, ToSwarm, dummy,
    },
};
use tracing::{debug, info};

/// How long a mapping is leased for; renewed at half of it.
const LEASE: Duration = Duration::from_secs(60 * 60);
/// How long the search for a gateway waits.
const SEARCH: Duration = Duration::from_secs(5);

/// Hands addresses to the swarm as external address candidates, for AutoNAT to test.
#[derive(Debug, Default)]
pub(crate) struct Candidates {
    queue: VecDeque<Multiaddr>,
    waker: Option<Waker>,
}

impl Candidates {
    /// Queues `addr` as a candidate.
    pub(crate) fn push(&mut self, addr: Multiaddr) {
        self.queue.push_back(addr);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

impl NetworkBehaviour for Candidates {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        match self.queue.pop_front() {
            Some(addr) => Poll::Ready(ToSwarm::NewExternalAddrCandidate(addr)),
            None => {
                self.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// The TCP socket of a listen address on a private IPv4 network: the one a router can map.
pub(crate) fn mappable(addr: &Multiaddr) -> Option<SocketAddr> {
    let mut parts = addr.iter();
    let (Some(Protocol::Ip4(ip)), Some(Protocol::Tcp(port))) = (parts.next(), parts.next()) else {
        return None;
    };
    ip.is_private()
        .then(|| SocketAddr::new(IpAddr::V4(ip), port))
}

/// Maps `local` on the LAN's gateway, renewing the lease, and sends each mapped address to
/// `found`; returns when no gateway answers or the receiver is gone.
pub(crate) async fn keep_mapped(local: SocketAddr, found: tokio::sync::mpsc::Sender<Multiaddr>) {
    let options = SearchOptions {
        bind_addr: SocketAddr::new(local.ip(), 0),
        timeout: Some(SEARCH),
        ..SearchOptions::default()
    };
    let gateway = match search_gateway(options).await {
        Ok(gateway) => gateway,
        Err(e) => {
            debug!(%local, error = %e, "no UPnP gateway on the LAN");
            return;
        }
    };
    let lease = u32::try_from(LEASE.as_secs()).unwrap_or(u32::MAX);
    loop {
        let mapped = async {
            let external = gateway.get_external_ip().await.map_err(|e| e.to_string())?;
            gateway
                .add_port(
                    PortMappingProtocol::TCP,
                    local.port(),
                    local,
                    lease,
                    "tessera",
                )
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(
                Multiaddr::empty()
                    .with(external.into())
                    .with(Protocol::Tcp(local.port())),
            )
        }
        .await;
        match mapped {
            Ok(addr) => {
                info!(%local, %addr, "port mapped on the router (UPnP)");
                if found.send(addr).await.is_err() {
                    return;
                }
            }
            Err(e) => debug!(%local, error = %e, "the router did not map the port"),
        }
        tokio::time::sleep(LEASE / 2).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tcp_on_a_private_ipv4_address_is_mapped() {
        let m = |a: &str| mappable(&a.parse().unwrap());
        assert_eq!(
            m("/ip4/10.1.0.2/tcp/4001"),
            Some("10.1.0.2:4001".parse().unwrap())
        );
        assert_eq!(
            m("/ip4/192.168.1.5/tcp/4001/p2p/12D3KooWGBoeb3G2aapcTod8AhWdG8jAgaR6e2nt3zboXwk8mhRn"),
            Some("192.168.1.5:4001".parse().unwrap())
        );
        assert_eq!(m("/ip4/198.18.0.10/tcp/4001"), None);
        assert_eq!(m("/ip4/10.1.0.2/udp/4001/quic-v1"), None);
        assert_eq!(m("/ip4/127.0.0.1/tcp/4001"), None);
    }
}
