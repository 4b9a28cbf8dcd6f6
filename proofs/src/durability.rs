//! The durability defaults, chosen from the simulator's table (`docs/DURABILITY.md`,
//! `cargo run --release -p tessera-sim --example defaults`): how silence is judged, when a
//! shard is repaired, and which layout a dataset is published with on a network of a given
//! size. The target: at most [`TARGET_LOSS_PER_YEAR`] of shards lost per year at 10% monthly
//! churn, at the least repair traffic that reaches it.

use std::time::Duration;

/// Shards lost per shard-year the defaults aim under, at 10% of nodes leaving a month.
pub const TARGET_LOSS_PER_YEAR: f64 = 1e-9;

/// Every piece is challenged once in this time.
pub const AUDIT_PERIOD: Duration = Duration::from_secs(24 * 3600);

/// Failures in a row before a holder fails a piece. A failing holder is challenged again
/// every round (30 minutes), so silence is judged by the grace, not by this.
pub const AUDIT_FAILURES: u32 = 3;

/// How long a holder that does not answer is waited for, from its first failure. Shorter
/// gives up nodes that were only offline (2 h: five times the pieces lost to churn alone);
/// longer leaves shards short of pieces for longer.
pub const AUDIT_GRACE: Duration = Duration::from_secs(12 * 3600);

/// A shard is repaired below `k + ceil(REPAIR_SPARE * m)` intact pieces: 10+10 once three
/// pieces are lost, rebuilding them in one pass (4.3 bytes moved per byte rebuilt, against 11
/// for repairing each loss as it comes).
pub const REPAIR_SPARE: f64 = 0.75;

/// The layout (k, m) for a network of at least so many directly reachable storage nodes,
/// smallest network first: from 8 nodes on, the simulator's choice (the least repair traffic
/// meeting the target, or the least loss where none does: networks under [`DURABLE_FROM`]
/// nodes cannot meet it at 10% churn); below, every piece on its own node with one or two
/// nodes to spare.
/// Each layout leaves two nodes beyond its pieces where it can, to repair onto.
pub const LAYOUTS: &[(usize, u8, u8)] = &[
    (0, 1, 1),
    (4, 2, 1),
    (5, 2, 2),
    (12, 4, 4),
    (16, 6, 6),
    (22, 10, 10),
];

/// The fewest storage nodes whose layout meets the target in the table: with fewer, repairs
/// wait for one of the few nodes holding no piece of the shard.
pub const DURABLE_FROM: usize = 24;

/// The layout (k, m) for a network of `nodes` directly reachable storage nodes.
pub fn layout_for(nodes: usize) -> (u8, u8) {
    LAYOUTS
        .iter()
        .rev()
        .find(|(least, _, _)| nodes >= *least)
        .map_or((1, 1), |&(_, k, m)| (k, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_layout_fits_its_network() {
        for window in LAYOUTS.windows(2) {
            assert!(window[0].0 < window[1].0, "sorted by network size");
        }
        for &(least, k, m) in LAYOUTS {
            assert!(k >= 1 && m >= 1);
            if least >= 4 {
                assert!(
                    usize::from(k + m) < least,
                    "{least} nodes: {k}+{m} leaves no node to repair onto"
                );
            }
            if least >= 6 {
                assert!(usize::from(k + m) + 2 <= least, "{least} nodes: {k}+{m}");
            }
        }
        let (first, last) = (LAYOUTS[0], LAYOUTS[LAYOUTS.len() - 1]);
        assert_eq!(layout_for(0), (first.1, first.2));
        assert_eq!(layout_for(usize::MAX), (last.1, last.2));
    }
}
