//! What audit receipts prove: per node, the storage it held over a window, in byte-hours,
//! computed by anyone from the receipts alone.
//!
//! The receipts of one (node, piece) pair, from every auditor, are put in time order. A passed
//! audit at time `t` credits the piece's size for the time since the pair's previous receipt,
//! or since the piece was uploaded when there is none, but never more than `cap` (a node is
//! not paid for months on one audit) and never before the window's start; a failed audit
//! credits nothing, and the next pass counts only from it. A pass with neither a receipt
//! before it nor a known upload time credits nothing: only time that receipts show is paid.
//! Receipts up to `cap` before the window are read as the previous receipts of the first ones
//! in it, and count for nothing themselves.
//!
//! ```text
//! pair's receipts:   pass(t1)      pass(t2)      fail(t3)      pass(t4)
//! credited:          (upload,t1]   (t1,t2]       —             (t3,t4]     each clipped to the
//!                    or nothing                                            window and to `cap`
//! ```
//!
//! Receipts that do not verify are counted apart and credit nothing. Merging several
//! auditors' receipts this way never counts the same hour twice.

use std::collections::BTreeMap;

use cid::Cid;
use tessera_formats::{
    SignedReceipt,
    receipt::{NodeKey, ReceiptError},
};

/// What one node proved in a window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Proven {
    /// Byte-milliseconds of pieces it proved it held.
    pub byte_ms: u128,
    /// Audits it passed.
    pub passed: u64,
    /// Audits it failed.
    pub failed: u64,
}

impl Proven {
    /// The proven storage in GiB-hours.
    pub fn gib_hours(&self) -> f64 {
        // Precision is not at stake at these magnitudes.
        #[allow(clippy::cast_precision_loss)]
        let byte_ms = self.byte_ms as f64;
        byte_ms / f64::from(1u32 << 30) / 3_600_000.0
    }
}

/// The ledger of a window: what every node proved, and how many receipts did not verify.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ledger {
    /// Per audited node.
    pub nodes: BTreeMap<NodeKey, Proven>,
    /// Receipts whose signature or rules failed; they count for nothing.
    pub invalid: usize,
}

/// Receipt blocks decoded and checked: every receipt that verifies with its position, once
/// however often it was given, and for each block that does not, its position and why.
#[allow(clippy::type_complexity)]
pub fn decode_blocks(
    blocks: &[Vec<u8>],
) -> (Vec<(usize, SignedReceipt)>, Vec<(usize, ReceiptError)>) {
    let mut seen = std::collections::BTreeSet::new();
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for (index, block) in blocks.iter().enumerate() {
        if !seen.insert(*blake3::hash(block).as_bytes()) {
            continue;
        }
        match SignedReceipt::from_block(block) {
            Ok(receipt) => good.push((index, receipt)),
            Err(e) => bad.push((index, e)),
        }
    }
    (good, bad)
}

/// Computes the ledger of the window `[from_ms, to_ms)` from `receipts` (any order, any
/// auditors, duplicates allowed, those up to `cap_ms` before the window included), crediting
/// at most `cap_ms` per pass; no upload times are known.
pub fn ledger(receipts: &[SignedReceipt], from_ms: u64, to_ms: u64, cap_ms: u64) -> Ledger {
    ledger_since(receipts, from_ms, to_ms, cap_ms, &|_| None)
}

/// [`ledger`], with `uploaded` giving when a piece was uploaded, where that is known: a
/// pair's first pass credits the time since then.
pub fn ledger_since(
    receipts: &[SignedReceipt],
    from_ms: u64,
    to_ms: u64,
    cap_ms: u64,
    uploaded: &dyn Fn(&Cid) -> Option<u64>,
) -> Ledger {
    let mut out = Ledger::default();
    let read_from = from_ms.saturating_sub(cap_ms);
    // Per (node, piece): (time, passed, size) of each audit.
    type Audits = Vec<(u64, bool, u64)>;
    let mut pairs: BTreeMap<(NodeKey, Cid), Audits> = BTreeMap::new();
    for signed in receipts {
        if signed.verify().is_err() {
            out.invalid += 1;
            continue;
        }
        let r = &signed.receipt;
        if r.time_ms < read_from || r.time_ms >= to_ms {
            continue;
        }
        pairs
            .entry((r.node, r.piece))
            .or_default()
            .push((r.time_ms, r.result.passed(), r.size));
    }
    for ((node, piece), mut audits) in pairs {
        audits.sort_unstable();
        audits.dedup();
        let mut previous: Option<u64> = None;
        for (time, passed, size) in audits {
            if time >= from_ms {
                let proven = out.nodes.entry(node).or_default();
                if passed {
                    let since = previous
                        .or_else(|| uploaded(&piece))
                        .unwrap_or(time)
                        .max(time.saturating_sub(cap_ms))
                        .max(from_ms);
                    proven.byte_ms += u128::from(size) * u128::from(time.saturating_sub(since));
                    proven.passed += 1;
                } else {
                    proven.failed += 1;
                }
            }
            previous = Some(time);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use tessera_formats::{
        AuditReceipt, AuditResult, PublisherKey, address::raw_cid, receipt::RECEIPT_VERSION,
        record::SigningKey,
    };

    use super::*;

    const HOUR: u64 = 3_600_000;
    const GIB: u64 = 1 << 30;

    fn receipt(
        auditor: &SigningKey,
        node: NodeKey,
        piece: &[u8],
        time_ms: u64,
        passed: bool,
    ) -> SignedReceipt {
        AuditReceipt {
            format: RECEIPT_VERSION,
            auditor: PublisherKey::of(auditor),
            node,
            piece: raw_cid(piece),
            size: if passed { GIB } else { 0 },
            nonce: [1; 32],
            samples: 10,
            result: if passed {
                AuditResult::Passed
            } else {
                AuditResult::Timeout
            },
            time_ms,
        }
        .sign(auditor)
        .unwrap()
    }

    #[test]
    fn passes_credit_the_time_since_the_last_audit_and_failures_reset_it() {
        let (a1, a2) = (
            SigningKey::from_bytes(&[1; 32]),
            SigningKey::from_bytes(&[2; 32]),
        );
        let (n, m) = (PublisherKey([7; 32]), PublisherKey([8; 32]));
        let receipts = vec![
            // Node n, piece x: passes at 10 h and 12 h (two auditors), fails at 14 h, passes
            // at 15 h.
            receipt(&a1, n, b"x", 10 * HOUR, true),
            receipt(&a2, n, b"x", 12 * HOUR, true),
            receipt(&a1, n, b"x", 14 * HOUR, false),
            receipt(&a2, n, b"x", 15 * HOUR, true),
            // The same receipt again counts once.
            receipt(&a2, n, b"x", 15 * HOUR, true),
            // Node m, piece y: one pass at 30 h, long after the window starts.
            receipt(&a1, m, b"y", 30 * HOUR, true),
        ];
        let l = ledger(&receipts, 0, 100 * HOUR, 4 * HOUR);
        // n: nothing for the first pass (no time before it is known) + 2 h + 1 h (since the
        // failure) = 3 GiB-hours.
        let proven = l.nodes[&n];
        assert!((proven.gib_hours() - 3.0).abs() < 1e-9, "{proven:?}");
        assert_eq!((proven.passed, proven.failed), (3, 1));
        assert!(l.nodes[&m].gib_hours().abs() < 1e-9);
        assert_eq!(l.invalid, 0);

        // Where the upload time is known, a first pass credits the time since it, capped.
        let y = raw_cid(b"y");
        let uploaded = |p: &Cid| (*p == y).then_some(29 * HOUR + HOUR / 2);
        let since = ledger_since(&receipts, 0, 100 * HOUR, 4 * HOUR, &uploaded);
        assert!((since.nodes[&m].gib_hours() - 0.5).abs() < 1e-9);

        // A window that starts at 11 h: the pass at 12 h counts from 11 h (the one at 10 h
        // before the window shows it was held then, and counts for nothing itself).
        let late = ledger(&receipts, 11 * HOUR, 20 * HOUR, 4 * HOUR);
        assert!((late.nodes[&n].gib_hours() - 2.0).abs() < 1e-9, "{late:?}");
        assert_eq!((late.nodes[&n].passed, late.nodes[&n].failed), (2, 1));
        assert!(!late.nodes.contains_key(&m));
    }

    #[test]
    fn receipts_that_do_not_verify_count_for_nothing() {
        let auditor = SigningKey::from_bytes(&[1; 32]);
        let n = PublisherKey([7; 32]);
        let mut forged = receipt(&auditor, n, b"x", 5 * HOUR, true);
        forged.receipt.size = 100 * GIB;
        let mut failed_made_passed = receipt(&auditor, n, b"x", 6 * HOUR, false);
        failed_made_passed.receipt.result = AuditResult::Passed;
        let l = ledger(&[forged, failed_made_passed], 0, 10 * HOUR, HOUR);
        assert_eq!(l.invalid, 2);
        assert!(l.nodes.is_empty());
    }

    #[test]
    fn blocks_are_decoded_once_and_bad_ones_named() {
        let auditor = SigningKey::from_bytes(&[1; 32]);
        let n = PublisherKey([7; 32]);
        let good = receipt(&auditor, n, b"x", HOUR, true);
        let (_, block) = good.to_block().unwrap();
        let mut altered = good.clone();
        altered.receipt.time_ms += 1;
        let altered = tessera_formats::block::encode(&altered).unwrap();
        let mut resigned = block.clone();
        let last = resigned.len() - 1;
        resigned[last] ^= 1;
        let blocks = vec![block.clone(), altered, block, resigned, b"junk".to_vec()];
        let (receipts, bad) = decode_blocks(&blocks);
        assert_eq!(receipts, [(0, good)]);
        assert_eq!(bad.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [1, 3, 4]);
        assert!(matches!(bad[0].1, ReceiptError::BadSignature { .. }));
    }
}
