//! Which addresses a scraper node may connect to: the public internet, and nothing of the
//! contributor's own network unless they ask for it.
//!
//! Pure: the resolver in `fetch` asks [`classify`] about every address a name resolves to,
//! and connects only to the addresses it allowed.

use parking_lot::RwLock;
use std::{net::IpAddr, sync::Arc};

pub use tessera_net::ip_class::{Reach, classify};

/// Which addresses a node connects to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkPolicy {
    /// Loopback, private, link-local and shared NAT addresses too (tests, the local demo).
    /// Off by default.
    pub allow_private: bool,
    /// Single addresses allowed whatever their kind (a site on the operator's own network).
    pub allowed: Vec<IpAddr>,
    /// The node's own public addresses, as the network learns them: refused like private
    /// ones. Clones share them.
    pub own: OwnAddresses,
}

/// The node's own public addresses, shared by every clone of a policy and updated as the
/// network learns them.
#[derive(Debug, Clone, Default)]
pub struct OwnAddresses(Arc<RwLock<Vec<IpAddr>>>);

impl OwnAddresses {
    /// Most addresses kept.
    pub const MAX: usize = 16;

    /// Replaces the addresses with the public ones of `ips` (at most [`Self::MAX`]).
    pub fn set(&self, ips: impl IntoIterator<Item = IpAddr>) {
        let mut public: Vec<IpAddr> = ips
            .into_iter()
            .map(|ip| ip.to_canonical())
            .filter(|ip| classify(*ip) == Reach::Public)
            .collect();
        public.sort();
        public.dedup();
        public.truncate(Self::MAX);
        *self.0.write() = public;
    }

    /// Whether `ip` is one of them.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.read().contains(&ip.to_canonical())
    }
}

impl PartialEq for OwnAddresses {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for OwnAddresses {}

impl NetworkPolicy {
    /// Public addresses only: the default.
    pub fn public_only() -> Self {
        Self::default()
    }

    /// Private networks allowed too.
    pub fn allow_private() -> Self {
        Self {
            allow_private: true,
            ..Self::default()
        }
    }

    /// Whether the node may connect to `ip`; if not, the kind of address that it is.
    pub fn admit(&self, ip: IpAddr) -> Result<(), Reach> {
        let ip = ip.to_canonical();
        if self.allowed.iter().any(|a| a.to_canonical() == ip) {
            return Ok(());
        }
        if self.own.contains(ip) {
            return Err(Reach::Own);
        }
        match classify(ip) {
            Reach::Public => Ok(()),
            reach if self.allow_private && reach.private_network() => Ok(()),
            reach => Err(reach),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_admits_what_it_should() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let public = NetworkPolicy::public_only();
        assert_eq!(public.admit(ip("8.8.8.8")), Ok(()));
        assert_eq!(public.admit(ip("127.0.0.1")), Err(Reach::Loopback));
        assert_eq!(public.admit(ip("169.254.169.254")), Err(Reach::LinkLocal));
        let one = NetworkPolicy {
            allowed: vec![ip("127.0.0.2")],
            ..NetworkPolicy::default()
        };
        assert_eq!(one.admit(ip("127.0.0.2")), Ok(()));
        assert_eq!(one.admit(ip("::ffff:127.0.0.2")), Ok(()));
        assert_eq!(one.admit(ip("127.0.0.1")), Err(Reach::Loopback));
        let private = NetworkPolicy::allow_private();
        assert_eq!(private.admit(ip("127.0.0.1")), Ok(()));
        assert_eq!(private.admit(ip("10.0.0.1")), Ok(()));
        assert_eq!(private.admit(ip("0.0.0.0")), Err(Reach::Special));
        assert_eq!(private.admit(ip("198.18.0.12")), Ok(()));
        assert_eq!(public.admit(ip("198.18.0.12")), Err(Reach::Benchmarking));
    }

    #[test]
    fn the_nodes_own_public_addresses_are_refused_in_every_clone() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let policy = NetworkPolicy::allow_private();
        let clone = policy.clone();
        assert_eq!(clone.admit(ip("93.184.215.14")), Ok(()));
        // Learned later, from what peers saw: private ones are no news, public ones count.
        policy
            .own
            .set([ip("93.184.215.14"), ip("192.168.1.7"), ip("::ffff:8.8.4.4")]);
        assert_eq!(clone.admit(ip("93.184.215.14")), Err(Reach::Own));
        assert_eq!(clone.admit(ip("8.8.4.4")), Err(Reach::Own));
        assert_eq!(clone.admit(ip("192.168.1.7")), Ok(()));
        assert_eq!(clone.admit(ip("8.8.8.8")), Ok(()));
        // An address the operator allows by name stays allowed.
        let allowed = NetworkPolicy {
            allowed: vec![ip("93.184.215.14")],
            ..policy.clone()
        };
        assert_eq!(allowed.admit(ip("93.184.215.14")), Ok(()));
        policy
            .own
            .set((0..100u8).map(|i| IpAddr::from([8, 8, 0, i])));
        assert!(policy.own.contains(ip("8.8.0.15")));
        assert!(!policy.own.contains(ip("8.8.0.16")), "at most 16 kept");
    }
}
