//! Which node gets which piece: the sans-IO core of a put.
//!
//! Candidates come in preference order (the DHT's closest peers to the shard). Every new
//! assignment goes to a working node holding the fewest pieces of this shard, the earliest
//! candidate on a tie, so no node gets a second piece while another working node has none.
//! A node that fails an attempt is never chosen again for this shard.

use std::collections::{HashMap, HashSet};

/// Placement state for the pieces of one shard.
#[derive(Debug, Clone)]
pub struct Placement<P> {
    candidates: Vec<P>,
    load: HashMap<P, usize>,
    failed: HashSet<P>,
}

impl<P: Copy + Eq + std::hash::Hash> Placement<P> {
    /// Placement over `candidates`, most preferred first; repeated candidates count once.
    pub fn new(candidates: impl IntoIterator<Item = P>) -> Self {
        let mut seen = HashSet::new();
        let candidates: Vec<P> = candidates.into_iter().filter(|c| seen.insert(*c)).collect();
        Self {
            candidates,
            load: HashMap::new(),
            failed: HashSet::new(),
        }
    }

    /// The node for the next piece, or `None` when every candidate has failed.
    pub fn assign(&mut self) -> Option<P> {
        let node = self
            .candidates
            .iter()
            .filter(|c| !self.failed.contains(c))
            .min_by_key(|c| self.load.get(c).copied().unwrap_or(0))
            .copied()?;
        *self.load.entry(node).or_default() += 1;
        Some(node)
    }

    /// `node` already holds a piece of this shard (stored by an earlier, interrupted run).
    pub fn held(&mut self, node: P) {
        *self.load.entry(node).or_default() += 1;
    }

    /// An attempt on `node` failed: its assignment is taken back and it gets no other.
    pub fn fail(&mut self, node: P) {
        if let Some(n) = self.load.get_mut(&node) {
            *n = n.saturating_sub(1);
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

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

    proptest! {
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
