//! Which node gets which piece: the sans-IO core of a put.
//!
//! Candidates come in preference order (the DHT's closest peers to the shard), each with the
//! subnet its connection runs to (an IPv4 /24 or an IPv6 /48; unknown for a relayed peer).
//! Every new assignment goes to a working node in a subnet holding no piece of this shard,
//! else to one holding none itself, then to the one whose subnet holds the fewest, the
//! earliest candidate on a tie: no subnet gets a second piece while a working node in another
//! has none, and no node while another working node has none. Identities on one machine or one home network therefore do not count as
//! independent copies while the network has other places to put them. A node that fails an
//! attempt is never chosen again for this shard.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
};

/// A network neighbourhood whose nodes may fail together: an IPv4 /24 or an IPv6 /48.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subnet {
    /// The first three bytes of an IPv4 address.
    V4([u8; 3]),
    /// The first 48 bits of an IPv6 address.
    V6([u16; 3]),
}

impl Subnet {
    /// The subnet of `ip` (an IPv4-mapped IPv6 address is taken as IPv4).
    pub fn of(ip: IpAddr) -> Self {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        match ip {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                Self::V4([o[0], o[1], o[2]])
            }
            IpAddr::V6(v6) => {
                let s = v6.segments();
                Self::V6([s[0], s[1], s[2]])
            }
        }
    }
}

/// Which intact pieces of a shard count as independent copies, given the subnets of each
/// piece's intact holders (empty: not intact; `None`: a holder whose subnet is unknown,
/// counted apart). Each piece is credited to a subnet not credited yet; a piece whose
/// holders all sit in subnets credited already counts only while no `free` subnet (one that
/// holds none of the shard) is left to move it to.
pub fn independent(holders: &[Vec<Option<Subnet>>], free: usize) -> Vec<bool> {
    // A shard has at most 255 pieces: a list is searched faster than a set is hashed.
    let mut credited: Vec<Subnet> = Vec::with_capacity(holders.len());
    let mut clustered = Vec::new();
    let mut out: Vec<bool> = holders
        .iter()
        .enumerate()
        .map(|(index, subnets)| {
            if subnets.is_empty() {
                return false;
            }
            if subnets.iter().any(Option::is_none) {
                return true;
            }
            match subnets.iter().flatten().find(|s| !credited.contains(*s)) {
                Some(subnet) => credited.push(*subnet),
                None => clustered.push(index),
            }
            true
        })
        .collect();
    for index in clustered.into_iter().take(free) {
        out[index] = false;
    }
    out
}

/// Placement state for the pieces of one shard.
#[derive(Debug, Clone)]
pub struct Placement<P> {
    candidates: Vec<P>,
    subnets: HashMap<P, Subnet>,
    load: HashMap<P, usize>,
    /// Pieces per known subnet: the sum of `load` over its nodes, kept as they change (each
    /// choice would otherwise add up every node's load for every candidate).
    subnet_loads: HashMap<Subnet, usize>,
    failed: HashSet<P>,
}

impl<P: Copy + Eq + std::hash::Hash> Placement<P> {
    /// Placement over `candidates`, most preferred first, their subnets unknown; repeated
    /// candidates count once.
    pub fn new(candidates: impl IntoIterator<Item = P>) -> Self {
        Self::with_subnets(candidates.into_iter().map(|c| (c, None)))
    }

    /// Placement over `candidates`, most preferred first, each with its subnet where known.
    pub fn with_subnets(candidates: impl IntoIterator<Item = (P, Option<Subnet>)>) -> Self {
        let mut seen = HashSet::new();
        let mut subnets = HashMap::new();
        let mut kept = Vec::new();
        for (c, subnet) in candidates {
            if seen.insert(c) {
                kept.push(c);
                if let Some(subnet) = subnet {
                    subnets.insert(c, subnet);
                }
            }
        }
        Self {
            candidates: kept,
            subnets,
            load: HashMap::new(),
            subnet_loads: HashMap::new(),
            failed: HashSet::new(),
        }
    }

    /// Adds `delta` pieces to `node`'s load and its subnet's.
    fn add_load(&mut self, node: P, delta: isize) {
        let load = self.load.entry(node).or_default();
        *load = load.saturating_add_signed(delta);
        if let Some(subnet) = self.subnets.get(&node) {
            let total = self.subnet_loads.entry(*subnet).or_default();
            *total = total.saturating_add_signed(delta);
        }
    }

    fn load_of(&self, node: &P) -> usize {
        self.load.get(node).copied().unwrap_or(0)
    }

    /// Pieces held in `node`'s subnet (its own when the subnet is unknown).
    fn subnet_load(&self, node: &P) -> usize {
        match self.subnets.get(node) {
            Some(subnet) => self.subnet_loads.get(subnet).copied().unwrap_or(0),
            None => self.load_of(node),
        }
    }

    /// The node for the next piece, or `None` when every candidate has failed.
    pub fn assign(&mut self) -> Option<P> {
        let node = self
            .candidates
            .iter()
            .filter(|c| !self.failed.contains(c))
            // A subnet holding none first, then a node holding none, then the emptiest
            // subnet; unknown subnets last on a tie: such a node may sit in a crowded one.
            .min_by_key(|c| {
                let subnet_load = self.subnet_load(c);
                (
                    subnet_load > 0,
                    self.load_of(c),
                    subnet_load,
                    !self.subnets.contains_key(*c),
                )
            })
            .copied()?;
        self.add_load(node, 1);
        Some(node)
    }

    /// The node for the next piece among those holding none yet, or `None` when none is
    /// left: for a repair, which never puts two pieces of a shard on one node.
    pub fn assign_fresh(&mut self) -> Option<P> {
        let node = self.assign()?;
        if self.load_of(&node) > 1 {
            self.fail(node);
            return None;
        }
        Some(node)
    }

    /// `node` already holds a piece of this shard (stored by an earlier, interrupted run).
    pub fn held(&mut self, node: P) {
        self.add_load(node, 1);
    }

    /// `node`, in `subnet` where known, holds a piece of this shard, whether or not it is a
    /// candidate: its subnet counts as taken.
    pub fn held_at(&mut self, node: P, subnet: Option<Subnet>) {
        if let Some(subnet) = subnet
            && self.subnets.get(&node) != Some(&subnet)
        {
            // What it already holds moves to its subnet's count.
            let load = self.load_of(&node);
            let signed = isize::try_from(load).unwrap_or(isize::MAX);
            self.add_load(node, -signed);
            self.subnets.insert(node, subnet);
            self.add_load(node, signed);
        }
        self.held(node);
    }

    /// An attempt on `node` failed: its assignment is taken back and it gets no other.
    pub fn fail(&mut self, node: P) {
        if self.load_of(&node) > 0 {
            self.add_load(node, -1);
        }
        self.failed.insert(node);
    }

    /// Working candidates left.
    pub fn working(&self) -> usize {
        self.candidates.len() - self.failed.len()
    }

    /// Whether any node holds more than one piece.
    pub fn shares_nodes(&self) -> bool {
        self.load.values().any(|&n| n > 1)
    }
}

/// How many node losses a shard with data pieces `k` survives when its pieces are held as
/// `holders` (one entry per piece): the losses of the nodes holding most pieces first,
/// counted while at least `k` pieces are left.
pub fn losses_survived<P: Eq + std::hash::Hash>(holders: &[P], k: usize) -> usize {
    let mut per_node: HashMap<&P, usize> = HashMap::new();
    for holder in holders {
        *per_node.entry(holder).or_default() += 1;
    }
    let mut counts: Vec<usize> = per_node.into_values().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let mut left = holders.len();
    let mut survived = 0;
    for count in counts {
        if left.saturating_sub(count) < k {
            break;
        }
        left -= count;
        survived += 1;
    }
    survived
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    #[test]
    fn losses_survived_count_the_nodes_holding_most_first() {
        // 4+2 on six nodes: any two may go.
        assert_eq!(losses_survived(&[1, 2, 3, 4, 5, 6], 4), 2);
        // 4+2 on two nodes, three each: losing either loses the shard.
        assert_eq!(losses_survived(&[1, 1, 1, 2, 2, 2], 4), 0);
        // 4+2 on five nodes, one holding two: one loss, the worst one.
        assert_eq!(losses_survived(&[1, 1, 2, 3, 4, 5], 4), 1);
        assert_eq!(losses_survived::<u8>(&[], 1), 0);
    }

    use super::*;

    #[test]
    fn distinct_nodes_in_preference_order() {
        let mut p = Placement::new([1, 2, 3, 4, 5, 6, 7]);
        let got: Vec<_> = (0..6).map(|_| p.assign().unwrap()).collect();
        assert_eq!(got, [1, 2, 3, 4, 5, 6]);
        assert!(!p.shares_nodes());
    }

    #[test]
    fn pieces_held_before_count_against_their_nodes() {
        let mut p = Placement::new([1, 2, 3, 4, 5]);
        p.held(2);
        p.held(4);
        let got: Vec<_> = (0..3).map(|_| p.assign().unwrap()).collect();
        assert_eq!(got, [1, 3, 5]);
        assert!(!p.shares_nodes());
    }

    #[test]
    fn a_failed_node_is_replaced_by_an_unused_one() {
        let mut p = Placement::new([1, 2, 3, 4]);
        assert_eq!(p.assign(), Some(1));
        assert_eq!(p.assign(), Some(2));
        p.fail(2);
        assert_eq!(p.assign(), Some(3));
        assert_eq!(p.assign(), Some(4));
        assert_eq!(p.working(), 3);
        // Fewer working nodes than pieces: only now does a node get a second piece.
        assert_eq!(p.assign(), Some(1));
        assert!(p.shares_nodes());
    }

    #[test]
    fn nothing_left_when_every_node_failed() {
        let mut p = Placement::new([1, 1, 2]);
        assert_eq!(p.working(), 2);
        p.fail(1);
        p.fail(2);
        assert_eq!(p.assign(), None);
    }

    #[test]
    fn subnets_are_told_apart_at_24_and_48_bits() {
        let of = |s: &str| Subnet::of(s.parse().unwrap());
        assert_eq!(of("203.0.113.7"), of("203.0.113.200"));
        assert_ne!(of("203.0.113.7"), of("203.0.114.7"));
        assert_eq!(of("::ffff:203.0.113.9"), of("203.0.113.7"));
        assert_eq!(of("2001:db8:1::1"), of("2001:db8:1:ffff::2"));
        assert_ne!(of("2001:db8:1::1"), of("2001:db8:2::1"));
    }

    #[test]
    fn a_second_identity_in_a_subnet_waits_until_every_other_subnet_has_a_piece() {
        let net = |i: u8| Some(Subnet::V4([127, 0, i]));
        // Nodes 1 and 2 share a subnet and come first in preference order.
        let mut p = Placement::with_subnets([(1, net(1)), (2, net(1)), (3, net(2)), (4, net(3))]);
        let got: Vec<_> = (0..4).map(|_| p.assign().unwrap()).collect();
        assert_eq!(got, [1, 3, 4, 2]);
        // A repair: subnet 2 already holds a piece through a node that is no candidate.
        let mut p = Placement::with_subnets([(3, net(2)), (4, net(3)), (5, None)]);
        p.held_at(9, net(2));
        assert_eq!(p.assign_fresh(), Some(4));
        assert_eq!(p.assign_fresh(), Some(5));
        assert_eq!(p.assign_fresh(), Some(3));
        assert_eq!(p.assign_fresh(), None);
        // Two subnets of two and four nodes, six pieces: once both subnets hold one, every
        // node still gets one before any gets a second.
        let mut p = Placement::with_subnets((1..=6).map(|n| (n, net(u8::from(n > 2)))));
        let mut got: Vec<_> = (0..6).map(|_| p.assign().unwrap()).collect();
        assert_eq!(got[..2], [1, 3]);
        got.sort_unstable();
        assert_eq!(got, [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn pieces_in_one_subnet_count_once_while_others_have_room() {
        let (a, b) = (Some(Subnet::V4([127, 0, 1])), Some(Subnet::V4([127, 0, 2])));
        let holders = vec![vec![a], vec![a], vec![b], vec![], vec![None, a]];
        // Room in two more subnets: the second piece in subnet a is to be moved.
        assert_eq!(independent(&holders, 2), [true, false, true, false, true]);
        // No room anywhere: what is there counts.
        assert_eq!(independent(&holders, 0), [true, true, true, false, true]);
        // A piece held in two subnets is credited to the one not taken yet.
        assert_eq!(independent(&[vec![a], vec![a, b]], 5), [true, true]);
    }

    proptest! {
        /// With at least as many working subnets as pieces, no subnet ever holds two.
        #[test]
        fn never_two_pieces_in_one_subnet_while_enough_exist(
            subnets in proptest::collection::vec(0u8..6, 1..20),
            pieces in 1usize..12,
        ) {
            let mut p = Placement::with_subnets(
                subnets.iter().enumerate().map(|(i, s)| (i, Some(Subnet::V4([10, 0, *s])))),
            );
            let placed: Vec<usize> = (0..pieces).map(|_| p.assign().unwrap()).collect();
            let mut distinct: Vec<u8> = subnets.clone();
            distinct.sort_unstable();
            distinct.dedup();
            let mut used: Vec<u8> = placed.iter().map(|i| subnets[*i]).collect();
            used.sort_unstable();
            let before = used.len();
            used.dedup();
            if distinct.len() >= pieces {
                prop_assert_eq!(used.len(), before);
            } else {
                prop_assert_eq!(used.len(), distinct.len());
            }
        }

        /// With at least as many working nodes as pieces, no node ever holds two.
        #[test]
        fn never_two_pieces_on_one_node_while_enough_exist(
            nodes in 1usize..20,
            pieces in 1usize..20,
            failures in proptest::collection::vec(0usize..20, 0..10),
        ) {
            let mut p = Placement::new(0..nodes);
            let mut placed: Vec<usize> = Vec::new();
            let mut failures = failures.into_iter();
            while placed.len() < pieces {
                let Some(node) = p.assign() else { break };
                // Some attempts fail; the piece is then placed again.
                if failures.next().is_some_and(|f| f % 3 == 0) {
                    p.fail(node);
                    continue;
                }
                placed.push(node);
            }
            let working = p.working();
            let mut distinct = placed.clone();
            distinct.sort_unstable();
            distinct.dedup();
            if working >= pieces {
                prop_assert_eq!(placed.len(), pieces);
                prop_assert_eq!(distinct.len(), pieces);
            } else if working > 0 {
                prop_assert_eq!(placed.len(), pieces);
                // Every working node got a piece before any got a second.
                prop_assert!(distinct.len() >= working);
            }
        }
    }
}
