//! Circuit relay v2 both ways. A node peers can dial serves as a relay within its budget; a
//! node behind a NAT reserves a slot on a few relays and advertises the relayed addresses, so
//! that peers can reach it at all and then punch a hole to it (DCUtR).
//!
//! go-libp2p's relays allow 128 KiB and 2 minutes per circuit: enough to set up a hole
//! punch, not to carry content. Tessera's default allows a little more, so that audits and
//! small requests to a node that cannot be punched still get through, and no more: pieces
//! go over direct connections or not at all (see `paths`).

use std::{collections::HashMap, time::Duration};

use libp2p::{Multiaddr, PeerId, core::transport::ListenerId, multiaddr::Protocol, relay};
use serde::{Deserialize, Serialize};

/// What a relay serves, at most (a storage node's `[relay]` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayBudget {
    /// Whether to serve as a relay at all (only ever while peers can dial this node).
    pub enabled: bool,
    /// Reservations held at once, over all peers.
    pub reservations: usize,
    /// Reservations one peer may hold.
    pub reservations_per_peer: usize,
    /// How long a reservation lasts before the peer must renew it.
    pub reservation_duration: Duration,
    /// Circuits open at once, over all peers.
    pub circuits: usize,
    /// Circuits open at once to or from one peer.
    pub circuits_per_peer: usize,
    /// How long one circuit may stay open.
    pub circuit_duration: Duration,
    /// Bytes one circuit may carry, each way.
    pub circuit_bytes: u64,
}

impl Default for RelayBudget {
    fn default() -> Self {
        Self {
            enabled: true,
            reservations: 128,
            reservations_per_peer: 4,
            reservation_duration: Duration::from_secs(60 * 60),
            circuits: 16,
            circuits_per_peer: 4,
            circuit_duration: Duration::from_secs(2 * 60),
            circuit_bytes: 1 << 20,
        }
    }
}

impl RelayBudget {
    /// No relay service.
    pub fn off() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    /// The relay server's configuration, with libp2p's default rate limits per peer and IP.
    pub(crate) fn config(&self) -> relay::Config {
        relay::Config {
            max_reservations: self.reservations,
            max_reservations_per_peer: self.reservations_per_peer,
            reservation_duration: self.reservation_duration,
            max_circuits: self.circuits,
            max_circuits_per_peer: self.circuits_per_peer,
            max_circuit_duration: self.circuit_duration,
            max_circuit_bytes: self.circuit_bytes,
            ..relay::Config::default()
        }
    }
}

/// What the relay service did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayStats {
    /// Whether this node offers itself as a relay now (it must be dialable).
    pub serving: bool,
    /// Reservations held by peers now.
    pub reservations: u64,
    /// Circuits accepted so far.
    pub circuits: u64,
    /// Circuits and reservations refused (over budget or rate limit).
    pub denied: u64,
    /// Circuits ended by their budget (time or bytes) or an error.
    pub cut: u64,
}

/// Relays wanted by a node behind a NAT: one may go away.
pub(crate) const RELAYS_WANTED: usize = 2;

/// The relays this node reserves on: chosen among peers it dialled directly that offer the
/// relay protocol, as long as it is behind a NAT.
#[derive(Debug, Default)]
pub(crate) struct RelayChoice {
    /// Relays peers dialled, by peer: the address this node reached each at.
    offered: HashMap<PeerId, Multiaddr>,
    /// Reservations asked for or held: the listener of each.
    reserved: HashMap<PeerId, ListenerId>,
}

impl RelayChoice {
    /// `peer` offers relaying, and this node reached it at `addr` (dialled, not relayed).
    pub(crate) fn offered(&mut self, peer: PeerId, addr: Multiaddr) {
        if !super::reachability::is_relayed(&addr) {
            self.offered.insert(peer, addr);
        }
    }

    /// `peer` is gone: neither a relay to choose nor one reserved on.
    pub(crate) fn gone(&mut self, peer: &PeerId) -> Option<ListenerId> {
        self.offered.remove(peer);
        self.reserved.remove(peer)
    }

    /// A reservation's listener closed (refused, expired, relay gone).
    pub(crate) fn listener_closed(&mut self, listener: ListenerId) {
        self.reserved.retain(|_, l| *l != listener);
    }

    /// The relay addresses to listen on now, at most enough to hold [`RELAYS_WANTED`].
    pub(crate) fn wanted(&self) -> Vec<(PeerId, Multiaddr)> {
        let missing = RELAYS_WANTED.saturating_sub(self.reserved.len());
        let mut free: Vec<(&PeerId, &Multiaddr)> = self
            .offered
            .iter()
            .filter(|(p, _)| !self.reserved.contains_key(p))
            .collect();
        free.sort();
        free.into_iter()
            .take(missing)
            .map(|(peer, addr)| {
                let circuit = without_peer(addr)
                    .with(Protocol::P2p(*peer))
                    .with(Protocol::P2pCircuit);
                (*peer, circuit)
            })
            .collect()
    }

    /// A reservation on `peer` was asked for through `listener`.
    pub(crate) fn reserving(&mut self, peer: PeerId, listener: ListenerId) {
        self.reserved.insert(peer, listener);
    }

    /// Every reservation's listener, to close when this node becomes dialable.
    pub(crate) fn drain(&mut self) -> Vec<ListenerId> {
        self.reserved.drain().map(|(_, l)| l).collect()
    }
}

/// `addr` without a trailing `/p2p/PEER`.
fn without_peer(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_behind_nat_reserves_on_two_directly_reached_relays() {
        let mut choice = RelayChoice::default();
        let relays: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        for (i, relay) in relays.iter().enumerate() {
            choice.offered(
                *relay,
                format!("/ip4/198.18.0.{}/tcp/4001", 10 + i)
                    .parse()
                    .unwrap(),
            );
        }
        // One reached through a relay is no relay to reserve on.
        let relayed: Multiaddr = format!("/ip4/198.18.0.10/tcp/4001/p2p/{}/p2p-circuit", relays[0])
            .parse()
            .unwrap();
        choice.offered(PeerId::random(), relayed);
        let wanted = choice.wanted();
        assert_eq!(wanted.len(), RELAYS_WANTED);
        for (peer, addr) in &wanted {
            assert!(
                addr.to_string()
                    .ends_with(&format!("/p2p/{peer}/p2p-circuit"))
            );
        }
        let ids = [ListenerId::next(), ListenerId::next()];
        for ((peer, _), id) in wanted.iter().zip(ids) {
            choice.reserving(*peer, id);
        }
        assert!(choice.wanted().is_empty());
        // A refused reservation frees its slot for the third relay.
        choice.listener_closed(ids[0]);
        choice.gone(&wanted[0].0);
        let again = choice.wanted();
        assert_eq!(again.len(), 1);
        assert!(!wanted.iter().any(|(p, _)| *p == again[0].0));
        assert_eq!(choice.drain(), vec![ids[1]]);
    }
}
