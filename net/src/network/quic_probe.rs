//! QUIC dials that fail at once when the port is closed. A QUIC dial to a node that is gone
//! gets no answer and runs to its handshake timeout, but the node's host usually answers the
//! first datagram with an ICMP "port unreachable", and quinn's sockets do not report it. So
//! beside each QUIC dial a one-byte datagram goes to the same address from a connected UDP
//! socket, on which the platform reports that ICMP answer as "connection refused"; the dial
//! fails with it. A live QUIC endpoint drops the datagram (too short to be a QUIC packet), and
//! where nothing comes back the dial runs as it would have.

use std::{
    future::pending,
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    task::{Context, Poll},
};

use futures::{
    FutureExt as _,
    future::{self, BoxFuture, Either},
};
use libp2p::{
    Multiaddr,
    core::transport::{DialOpts, ListenerId, Transport, TransportError, TransportEvent},
    multiaddr::Protocol,
    quic,
};

/// A QUIC transport whose dials also probe their address.
pub(crate) struct Probed<T>(pub(crate) T);

impl<T> Transport for Probed<T>
where
    T: Transport<Error = quic::Error> + Unpin,
    T::Dial: Send + 'static,
    T::Output: 'static,
{
    type Output = T::Output;
    type Error = quic::Error;
    type ListenerUpgrade = T::ListenerUpgrade;
    type Dial = BoxFuture<'static, Result<T::Output, quic::Error>>;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        self.0.listen_on(id, addr)
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        self.0.remove_listener(id)
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        let target = udp_target(&addr);
        let dial = self.0.dial(addr, opts)?;
        let Some(target) = target else {
            return Ok(dial.boxed());
        };
        Ok(async move {
            match future::select(Box::pin(dial), Box::pin(refused(target))).await {
                Either::Left((done, _)) => done,
                Either::Right((refused, _)) => Err(quic::Error::Io(refused)),
            }
        }
        .boxed())
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        Pin::new(&mut self.get_mut().0).poll(cx)
    }
}

/// The UDP address of a `/ip4|ip6/../udp/PORT/quic-v1` address.
fn udp_target(addr: &Multiaddr) -> Option<SocketAddr> {
    let mut parts = addr.iter();
    let ip = match parts.next()? {
        Protocol::Ip4(ip) => IpAddr::V4(ip),
        Protocol::Ip6(ip) => IpAddr::V6(ip),
        _ => return None,
    };
    match parts.next()? {
        Protocol::Udp(port) if port != 0 => Some(SocketAddr::new(ip, port)),
        _ => None,
    }
}

/// Resolves with the platform's "connection refused" once `target` answers a datagram with an
/// ICMP "port unreachable"; never, otherwise.
async fn refused(target: SocketAddr) -> io::Error {
    let any: SocketAddr = if target.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let Ok(socket) = tokio::net::UdpSocket::bind(any).await else {
        return pending().await;
    };
    if socket.connect(target).await.is_err() || socket.send(&[0]).await.is_err() {
        return pending().await;
    }
    let mut buf = [0u8; 1];
    loop {
        match socket.recv(&mut buf).await {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return e,
            Err(_) => return pending().await,
            // Whatever answers with a datagram is alive; the dial decides.
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_udp_addresses_with_a_port_are_probed() {
        let quic: Multiaddr = "/ip4/127.0.0.1/udp/4001/quic-v1".parse().unwrap();
        assert_eq!(udp_target(&quic), Some("127.0.0.1:4001".parse().unwrap()));
        let six: Multiaddr = "/ip6/::1/udp/7/quic-v1".parse().unwrap();
        assert_eq!(udp_target(&six), Some("[::1]:7".parse().unwrap()));
        for other in [
            "/ip4/127.0.0.1/tcp/4001",
            "/dns4/example.com/udp/1/quic-v1",
            "/ip4/1.2.3.4/udp/0/quic-v1",
        ] {
            assert_eq!(udp_target(&other.parse().unwrap()), None, "{other}");
        }
    }

    #[tokio::test]
    async fn a_closed_port_is_refused() {
        // A port that was just bound and released: nothing listens on it.
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let probe = refused(SocketAddr::from(([127, 0, 0, 1], port)));
        // Only a guard against hanging: Linux reports the refusal at once.
        let e = tokio::time::timeout(std::time::Duration::from_secs(30), probe)
            .await
            .expect("the closed port was never reported refused");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
    }
}
