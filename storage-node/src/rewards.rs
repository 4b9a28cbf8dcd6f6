//! Storage proven over a period, from receipt blocks whoever supplied them: a block counts only
//! if it decodes and its auditor's signature verifies; the rest are named with their source.
//! What `/v1/rewards` answers and what `tessera rewards` prints.
//!
//! ```text
//! blocks (a node's store, its /v1/receipts pages, a file) ─▶ Tally (bounded, each with its source)
//!   ─▶ decoded, signatures checked ─▶ proofs::ledger ─▶ GiB-hours, passed, failed per node
//! ```

use std::collections::HashMap;

use cid::Cid;
use serde::{Deserialize, Serialize};
use tessera_dataset_registry::AuditSet;
use tessera_formats::SignedReceipt;
use tessera_proofs::{Ledger, decode_blocks, ledger, trust::NotCounted};

use crate::{
    api_client::NodeClient,
    http::{ReceiptPage, RewardRow},
};
use tessera_node::api_client::CallError;

/// A receipt that was not counted, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// Where it came from (a node's address, a file).
    pub source: String,
    /// Its position there.
    pub index: usize,
    /// Why.
    pub reason: String,
}

/// Storage proven in a period.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Proven {
    /// Receipts that verified.
    pub receipts: usize,
    /// Receipts that did not.
    pub rejected: Vec<Rejected>,
    /// Per audited node, in key order.
    pub nodes: Vec<RewardRow>,
}

/// Gathering receipts went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TallyError {
    /// More receipts than the tally holds.
    #[error("more than {0} receipts: ask for a shorter period")]
    TooMany(usize),
    /// A node did not answer.
    #[error(transparent)]
    Call(#[from] CallError),
}

/// Receipt blocks gathered from several sources, at most `max`, each with where it came from.
#[derive(Debug)]
pub struct Tally {
    blocks: Vec<(String, usize, Result<Vec<u8>, String>)>,
    max: usize,
}

impl Tally {
    /// An empty tally of at most `max` receipts.
    pub fn new(max: usize) -> Self {
        Self {
            blocks: Vec::new(),
            max,
        }
    }

    /// Adds `source`'s blocks.
    pub fn add_blocks(
        &mut self,
        source: &str,
        blocks: impl IntoIterator<Item = Result<Vec<u8>, String>>,
    ) -> Result<(), TallyError> {
        let first = self.blocks.iter().filter(|b| b.0 == source).count();
        for (index, block) in (first..).zip(blocks) {
            if self.blocks.len() == self.max {
                return Err(TallyError::TooMany(self.max));
            }
            self.blocks.push((source.to_string(), index, block));
        }
        Ok(())
    }

    /// Adds a page of `GET /v1/receipts` (hex blocks) from `source`.
    pub fn add_page(&mut self, source: &str, page: ReceiptPage) -> Result<(), TallyError> {
        self.add_blocks(
            source,
            page.receipts
                .iter()
                .map(|text| hex::decode(text).map_err(|e| format!("not hex: {e}"))),
        )
    }

    /// Adds every receipt `node` holds from `from_ms` to before `to_ms`, page by page.
    pub async fn add_node(
        &mut self,
        node: &NodeClient,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<(), TallyError> {
        let mut after: Option<String> = None;
        loop {
            let page = node.receipts(from_ms, to_ms, after.as_deref()).await?;
            let next = page.next.clone();
            self.add_page(node.base(), page)?;
            match next {
                Some(next) => after = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// The storage proven from `from_ms` to before `to_ms`, one passed audit crediting at
    /// most `cap_ms`, every verified receipt counted (the unnamed network's rule).
    pub fn proven(self, from_ms: u64, to_ms: u64, cap_ms: u64) -> Proven {
        self.proven_under(from_ms, to_ms, cap_ms, |_| Ok(()))
    }

    /// [`Tally::proven`] counting only the receipts `judge` admits: under a charter,
    /// [`ReceiptRules::check`] (an assigned validator, naming the layout's size). The others
    /// are listed as rejected with the reason.
    pub fn proven_under(
        self,
        from_ms: u64,
        to_ms: u64,
        cap_ms: u64,
        judge: impl Fn(&SignedReceipt) -> Result<(), NotCounted>,
    ) -> Proven {
        let mut rejected = Vec::new();
        let mut decoded = Vec::new();
        let mut origin = Vec::new();
        for (source, index, block) in self.blocks {
            match block {
                Ok(block) => {
                    decoded.push(block);
                    origin.push((source, index));
                }
                Err(reason) => rejected.push(Rejected {
                    source,
                    index,
                    reason,
                }),
            }
        }
        let (decoded, bad) = decode_blocks(&decoded);
        for (i, e) in bad {
            let (source, index) = origin[i].clone();
            rejected.push(Rejected {
                source,
                index,
                reason: e.to_string(),
            });
        }
        let receipts: Vec<SignedReceipt> = decoded
            .into_iter()
            .filter_map(|(i, receipt)| match judge(&receipt) {
                Ok(()) => Some(receipt),
                Err(why) => {
                    let (source, index) = origin[i].clone();
                    rejected.push(Rejected {
                        source,
                        index,
                        reason: format!("not counted: {why}"),
                    });
                    None
                }
            })
            .collect();
        Proven {
            receipts: receipts.len(),
            rejected,
            nodes: reward_rows(&ledger(&receipts, from_ms, to_ms, cap_ms)),
        }
    }
}

/// The size of every piece of an audit set, from its layouts: what a receipt under a charter
/// must name.
pub fn piece_sizes(set: &AuditSet) -> HashMap<Cid, u64> {
    set.shards
        .iter()
        .flat_map(|(_, layout)| layout.pieces.iter().map(|p| (*p, layout.piece_len())))
        .collect()
}

/// A ledger's rows, one per audited node, in key order.
pub fn reward_rows(ledger: &Ledger) -> Vec<RewardRow> {
    ledger
        .nodes
        .iter()
        .map(|(key, proven)| RewardRow {
            node: key.to_string(),
            peer_id: crate::audit::peer_of(key).map_or_else(|| "-".into(), |p| p.to_string()),
            gib_hours: proven.gib_hours(),
            byte_ms: proven.byte_ms,
            gib_months: proven.gib_hours() / HOURS_PER_MONTH,
            passed: proven.passed,
            failed: proven.failed,
            own: false,
        })
        .collect()
}

/// Hours in an average month (365.25 days / 12).
pub const HOURS_PER_MONTH: f64 = 730.5;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_that_do_not_decode_are_named_with_their_source_and_count_for_nothing() {
        let mut tally = Tally::new(3);
        tally
            .add_page(
                "node-a",
                ReceiptPage {
                    receipts: vec!["zz".into(), "00".into()],
                    next: None,
                },
            )
            .unwrap();
        tally.add_blocks("file", [Ok(vec![1, 2, 3])]).unwrap();
        assert!(matches!(
            tally.add_blocks("file", [Ok(vec![])]),
            Err(TallyError::TooMany(3))
        ));
        let proven = tally.proven(0, u64::MAX, 1000);
        assert_eq!(proven.receipts, 0);
        assert!(proven.nodes.is_empty());
        let named: Vec<(&str, usize)> = proven
            .rejected
            .iter()
            .map(|r| (r.source.as_str(), r.index))
            .collect();
        assert_eq!(named, [("node-a", 0), ("node-a", 1), ("file", 0)]);
        assert!(proven.rejected[0].reason.contains("not hex"));
    }
}
