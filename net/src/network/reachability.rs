//! Whether other peers can dial this node, and if not, whether a hole punch can get through.
//! Pure: the network task feeds in what AutoNAT, identify, the router and the swarm report.
//!
//! AutoNAT v2: a peer that runs the AutoNAT server dials back an address this node was
//! observed at, and only an address that answered is confirmed as external (and then
//! advertised). Behind a NAT, how the router maps ports tells whether hole punching can work:
//! one public port for every peer (endpoint-independent mapping, as STUN calls it) is
//! punchable; a new port for each peer (symmetric) is not. Identify says which port each peer
//! sees; two peers agreeing on a port settle it, as do two that disagree and none that agree.
//!
//! ```text
//! identify: "I see you at A"  ─▶ candidate A ─▶ AutoNAT server dials A back
//!   ─▶ answered: A confirmed external ─▶ Public (Mapped where the router mapped A: UPnP)
//!   ─▶ no answer, and none of the others answered ─▶ behind a NAT or a firewall:
//!        two peers see one port ─▶ Punchable
//!        peers see a new port each ─▶ Symmetric (reachable through a relay only)
//!        not yet known ─▶ Private
//!   ─▶ nothing tried yet ─▶ Unknown
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};

use libp2p::{Multiaddr, PeerId, multiaddr::Protocol};
use serde::{Deserialize, Serialize};

/// What this node found about its reachability.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reachability {
    /// Nothing tested yet: no peer has reported an address, or no AutoNAT server answered.
    #[default]
    Unknown,
    /// At least one address of its own was dialled back: peers reach it directly.
    Public,
    /// Behind a NAT whose router mapped a port for it (UPnP), dialled back there.
    Mapped,
    /// Behind a NAT that gives it one public port for every peer: not dialled back, but a
    /// hole punch gets through.
    Punchable,
    /// Behind a NAT that gives it a new public port for each peer: neither dialled back nor
    /// punched; reachable through a relay only.
    Symmetric,
    /// Not dialled back, and the kind of NAT is not known yet.
    Private,
}

impl Reachability {
    /// The name used in status pages and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Reachability::Unknown => "unknown",
            Reachability::Public => "public",
            Reachability::Mapped => "mapped",
            Reachability::Punchable => "punchable",
            Reachability::Symmetric => "symmetric",
            Reachability::Private => "private",
        }
    }

    /// Whether peers can dial this node directly.
    pub fn dialable(self) -> bool {
        matches!(self, Reachability::Public | Reachability::Mapped)
    }

    /// Whether this node is known not to be dialable, so that it needs a relay.
    pub fn behind_nat(self) -> bool {
        matches!(
            self,
            Reachability::Punchable | Reachability::Symmetric | Reachability::Private
        )
    }
}

/// Most peers whose observations are kept, per transport.
const MAX_OBSERVERS: usize = 32;

/// The outcomes so far.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    confirmed: BTreeSet<Multiaddr>,
    answered: BTreeSet<Multiaddr>,
    failed: BTreeSet<Multiaddr>,
    mapped: BTreeSet<Multiaddr>,
    failures: u32,
    /// The public port each peer saw this node at, per transport (`tcp`, `udp`).
    seen: HashMap<&'static str, BTreeMap<PeerId, u16>>,
}

impl Tracker {
    /// An address was tested: answered or not.
    pub(crate) fn tested(&mut self, addr: &Multiaddr, answered: bool) {
        if answered {
            self.answered.insert(addr.clone());
        } else {
            self.failed.insert(addr.clone());
            self.failures = self.failures.saturating_add(1);
        }
    }

    /// Whether a dial-back to `addr` failed (AutoNAT does not try an address twice).
    pub(crate) fn failed(&self, addr: &Multiaddr) -> bool {
        self.failed.contains(addr)
    }

    /// The home router mapped `addr` to this node.
    pub(crate) fn mapped(&mut self, addr: &Multiaddr) {
        self.mapped.insert(addr.clone());
    }

    /// `peer` saw this node's connection come from `addr`. Relayed connections say nothing
    /// of the NAT and are left out.
    pub(crate) fn observed(&mut self, peer: PeerId, addr: &Multiaddr) {
        let Some((transport, port)) = public_port(addr) else {
            return;
        };
        let seen = self.seen.entry(transport).or_default();
        if seen.len() < MAX_OBSERVERS || seen.contains_key(&peer) {
            seen.insert(peer, port);
        }
    }

    /// The swarm confirmed `addr` as external.
    pub(crate) fn confirmed(&mut self, addr: &Multiaddr) {
        self.confirmed.insert(addr.clone());
    }

    /// The swarm no longer holds `addr` as external.
    pub(crate) fn expired(&mut self, addr: &Multiaddr) {
        self.confirmed.remove(addr);
    }

    /// The reachability the outcomes add up to.
    pub(crate) fn state(&self) -> Reachability {
        let own: Vec<&Multiaddr> = self.confirmed.iter().filter(|a| !is_relayed(a)).collect();
        if !own.is_empty() {
            if own.iter().all(|a| self.mapped.contains(*a)) {
                Reachability::Mapped
            } else {
                Reachability::Public
            }
        } else if self.failures > 0 && self.answered.is_empty() {
            match self.mapping() {
                Some(true) => Reachability::Punchable,
                Some(false) => Reachability::Symmetric,
                None => Reachability::Private,
            }
        } else {
            Reachability::Unknown
        }
    }

    /// Whether the NAT maps endpoint-independently: some transport's port was seen alike by
    /// two peers (true), or every transport's by two or more peers, all differently (false).
    fn mapping(&self) -> Option<bool> {
        let mut symmetric = false;
        for seen in self.seen.values() {
            let mut counts: BTreeMap<u16, usize> = BTreeMap::new();
            for port in seen.values() {
                *counts.entry(*port).or_default() += 1;
            }
            if counts.values().any(|n| *n >= 2) {
                return Some(true);
            }
            symmetric |= counts.len() >= 2;
        }
        symmetric.then_some(false)
    }
}

/// Whether `addr` runs through a relay.
pub(crate) fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// The transport and port of a direct address.
fn public_port(addr: &Multiaddr) -> Option<(&'static str, u16)> {
    if is_relayed(addr) {
        return None;
    }
    addr.iter().find_map(|p| match p {
        Protocol::Tcp(port) => Some(("tcp", port)),
        Protocol::Udp(port) => Some(("udp", port)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmed_addresses_make_a_node_public_and_failures_alone_private() {
        let a: Multiaddr = "/ip4/198.18.1.1/tcp/4001".parse().unwrap();
        let b: Multiaddr = "/ip4/198.18.1.1/tcp/50000".parse().unwrap();
        let mut t = Tracker::default();
        assert_eq!(t.state(), Reachability::Unknown);
        // AutoNAT tries each address once: behind a NAT the one address seen fails.
        t.tested(&a, false);
        assert_eq!(t.state(), Reachability::Private);
        t.tested(&b, false);
        t.confirmed(&b);
        assert_eq!(t.state(), Reachability::Public);
        t.expired(&b);
        assert_eq!(t.state(), Reachability::Private);
        let mut answered = Tracker::default();
        answered.tested(&a, true);
        answered.tested(&b, false);
        assert_eq!(
            answered.state(),
            Reachability::Unknown,
            "an address answered, not yet confirmed"
        );
    }

    #[test]
    fn the_ports_peers_see_tell_a_punchable_nat_from_a_symmetric_one() {
        let at =
            |port: u16| -> Multiaddr { format!("/ip4/198.18.1.1/tcp/{port}").parse().unwrap() };
        let (p1, p2, p3) = (PeerId::random(), PeerId::random(), PeerId::random());
        let mut cone = Tracker::default();
        cone.tested(&at(4001), false);
        cone.observed(p1, &at(4001));
        assert_eq!(
            cone.state(),
            Reachability::Private,
            "one peer says nothing of the NAT"
        );
        cone.observed(p2, &at(4001));
        // A liar seeing another port changes nothing: two peers agree.
        cone.observed(p3, &at(999));
        assert_eq!(cone.state(), Reachability::Punchable);

        let mut symmetric = Tracker::default();
        symmetric.tested(&at(4001), false);
        symmetric.observed(p1, &at(40123));
        symmetric.observed(p2, &at(51234));
        let relayed: Multiaddr = "/ip4/198.18.0.10/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit"
            .parse()
            .unwrap();
        symmetric.observed(p3, &relayed);
        symmetric.confirmed(&relayed);
        assert_eq!(
            symmetric.state(),
            Reachability::Symmetric,
            "a relayed address is no reachability of its own"
        );

        let mut mapped = Tracker::default();
        mapped.tested(&at(4001), false);
        mapped.mapped(&at(4001));
        mapped.confirmed(&at(4001));
        assert_eq!(mapped.state(), Reachability::Mapped);
        mapped.confirmed(&at(5000));
        assert_eq!(mapped.state(), Reachability::Public);
    }
}
