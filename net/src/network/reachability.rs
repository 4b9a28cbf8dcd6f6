//! Whether other peers can dial this node, from AutoNAT v2: a peer that runs the AutoNAT
//! server dials back an address this node was observed at, and only an address that
//! answered is confirmed as external (and then advertised). Pure: the network task feeds
//! in what AutoNAT and the swarm report.
//!
//! ```text
//! identify: "I see you at A"  ─▶ candidate A ─▶ AutoNAT server dials A back
//!   ─▶ answered: A confirmed external ─▶ Public
//!   ─▶ no answer, and none of the others answered ─▶ Private (behind a NAT or a firewall)
//!   ─▶ nothing tried yet ─▶ Unknown
//! ```

use std::collections::BTreeSet;

use libp2p::Multiaddr;
use serde::{Deserialize, Serialize};

/// What AutoNAT found about this node's reachability.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reachability {
    /// Nothing tested yet: no peer has reported an address, or no AutoNAT server answered.
    #[default]
    Unknown,
    /// At least one address was dialled back: peers can reach this node directly.
    Public,
    /// Every address tried failed to be dialled back: peers cannot dial this node.
    Private,
}

impl Reachability {
    /// The name used in status pages and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Reachability::Unknown => "unknown",
            Reachability::Public => "public",
            Reachability::Private => "private",
        }
    }
}

/// The AutoNAT outcomes so far.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    confirmed: BTreeSet<Multiaddr>,
    answered: BTreeSet<Multiaddr>,
    failed: BTreeSet<Multiaddr>,
    failures: u32,
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
        if !self.confirmed.is_empty() {
            Reachability::Public
        } else if self.failures > 0 && self.answered.is_empty() {
            Reachability::Private
        } else {
            Reachability::Unknown
        }
    }
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
}
