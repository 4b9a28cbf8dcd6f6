//! Which addresses a peer reports are worth keeping in the DHT: the routing table hands them to
//! every peer that asks, so an address that only works inside the peer's own network (its
//! home LAN behind a router) would send others dialling somebody else's 10.0.0.2.
//!
//! ```text
//! global (198.18.0.10 of the testbeds, 2606:4700::1111, a DNS name) ─▶ kept
//! loopback (127.0.0.1)  ─▶ kept only by a node that itself listens on loopback (one machine)
//! private (10/8, 172.16/12, 192.168/16, 100.64/10 CGNAT, fc00::/7)
//!                       ─▶ kept only by a node listening in the same /24 (/64): one LAN
//! link-local, documentation, reserved, unspecified ─▶ never
//! ```
//!
//! Two homes that both number their LAN 192.168.1.0/24 still look like one LAN: a dial to
//! such an address reaches the wrong host, whose peer id does not match, and fails.

use std::net::IpAddr;

use libp2p::{Multiaddr, multiaddr::Protocol};

use crate::ip_class::{Reach, classify};

/// Whether `addr`, reported by a peer, may go into the DHT of a node listening on `own`.
pub(crate) fn shareable(addr: &Multiaddr, own: &[Multiaddr]) -> bool {
    let Some(ip) = ip_of(addr) else {
        // DNS names and other transports are for their owner to get right.
        return true;
    };
    match class(ip) {
        Class::Global => true,
        Class::Never => false,
        Class::Loopback => own
            .iter()
            .filter_map(ip_of)
            .any(|mine| class(mine) == Class::Loopback),
        Class::Private => own
            .iter()
            .filter_map(ip_of)
            .any(|mine| same_segment(ip, mine)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Global,
    Loopback,
    Private,
    Never,
}

fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

/// What sharing `ip` comes to: the benchmarking range is the testbeds' internet, so global.
fn class(ip: IpAddr) -> Class {
    match classify(ip) {
        Reach::Public | Reach::Benchmarking => Class::Global,
        Reach::Loopback => Class::Loopback,
        Reach::Private | Reach::SharedNat => Class::Private,
        _ => Class::Never,
    }
}

/// Whether two addresses are on one LAN segment: the same /24 (IPv4) or /64 (IPv6).
fn same_segment(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => a.octets()[..3] == b.octets()[..3],
        (IpAddr::V6(a), IpAddr::V6(b)) => a.segments()[..4] == b.segments()[..4],
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(text: &[&str]) -> Vec<Multiaddr> {
        text.iter().map(|t| t.parse().unwrap()).collect()
    }

    #[test]
    fn only_addresses_others_can_dial_are_shared() {
        let home = addrs(&["/ip4/10.1.0.2/tcp/4001"]);
        let public = addrs(&["/ip4/198.18.0.10/tcp/4001"]);
        let local = addrs(&["/ip4/127.0.0.1/tcp/4001"]);
        let ok = |a: &str, own: &[Multiaddr]| shareable(&a.parse().unwrap(), own);

        assert!(ok("/ip4/198.18.1.1/tcp/4001", &home));
        assert!(ok("/dns4/node.example.org/tcp/4001", &home));
        // Another home's LAN address, seen from a public node or from another home.
        assert!(!ok("/ip4/10.2.0.2/tcp/4001", &public));
        assert!(!ok("/ip4/10.2.0.2/tcp/4001", &home));
        // A neighbour on the same LAN.
        assert!(ok("/ip4/10.1.0.7/tcp/4001", &home));
        // CGNAT and link-local.
        assert!(!ok("/ip4/100.64.3.4/tcp/4001", &public));
        assert!(!ok("/ip4/169.254.1.1/tcp/4001", &home));
        // Loopback only among nodes of one machine.
        assert!(ok("/ip4/127.0.0.1/tcp/5000", &local));
        assert!(!ok("/ip4/127.0.0.1/tcp/5000", &public));
        assert!(!ok("/ip6/fe80::1/tcp/4001", &public));
        assert!(!ok("/ip6/fd00::1/tcp/4001", &public));
        assert!(ok("/ip6/2606:4700::1111/tcp/4001", &public));
    }
}
