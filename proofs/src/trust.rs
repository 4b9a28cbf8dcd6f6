//! Whose receipts count under a network's charter. A verified signature only says who signed:
//! a receipt counts when its auditor is a validator of the charter, was assigned the piece in
//! the receipt's period ([`crate::assignment`]), and names the size the piece's layout gives,
//! not a size of its own. Everything else credits nothing, whoever gossips it.
//!
//! ```text
//! receipt ─▶ auditor in the committee? ─▶ assigned the piece in its period? ─▶ piece known?
//!         ─▶ passed: size = the layout's piece size ─▶ counted
//! ```

use cid::Cid;
use tessera_formats::{PublisherKey, SignedReceipt, charter::Charter};

use crate::assignment::{is_auditor, period_of};

/// Why a receipt counts for nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotCounted {
    /// Its auditor is not a validator of the charter.
    #[error("auditor {0} is not a validator of the network's charter")]
    NotValidator(PublisherKey),
    /// Its auditor was not assigned the piece in the receipt's period.
    #[error("auditor {auditor} was not assigned piece {piece} in period {period}")]
    NotAssigned {
        /// The auditor.
        auditor: PublisherKey,
        /// The piece.
        piece: Box<Cid>,
        /// The period of the receipt's time.
        period: u64,
    },
    /// The piece is in no admitted dataset.
    #[error("piece {0} is in no admitted dataset")]
    UnknownPiece(Box<Cid>),
    /// A pass names another size than the piece's layout gives.
    #[error("the receipt says {claimed} bytes; the layout says {layout}")]
    WrongSize {
        /// The size the receipt names.
        claimed: u64,
        /// The size the layout gives.
        layout: u64,
    },
}

/// The rules receipts are judged by: a charter (with its CID), and the size of each piece of
/// the admitted datasets, from their layouts.
pub struct ReceiptRules<'a> {
    charter: &'a Charter,
    charter_cid: Cid,
    piece_size: &'a dyn Fn(&Cid) -> Option<u64>,
}

impl std::fmt::Debug for ReceiptRules<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiptRules")
            .field("network", &self.charter.network)
            .field("charter", &self.charter_cid)
            .finish_non_exhaustive()
    }
}

impl<'a> ReceiptRules<'a> {
    /// Rules of `charter` (whose block has the CID `charter_cid`), with the admitted pieces'
    /// sizes from `piece_size` (none for a piece in no admitted dataset).
    pub fn new(
        charter: &'a Charter,
        charter_cid: Cid,
        piece_size: &'a dyn Fn(&Cid) -> Option<u64>,
    ) -> Self {
        Self {
            charter,
            charter_cid,
            piece_size,
        }
    }

    /// Whether the receipt's auditor may have made it at all: a validator assigned the piece
    /// in the receipt's period. Needs no layout: what a node checks before it keeps a receipt.
    pub fn check_auditor(&self, receipt: &SignedReceipt) -> Result<(), NotCounted> {
        let r = &receipt.receipt;
        if !self.charter.is_validator(&r.auditor) {
            return Err(NotCounted::NotValidator(r.auditor));
        }
        let params = &self.charter.params;
        let period = period_of(r.time_ms, params.audit_period_ms);
        let n = usize::try_from(params.validators_per_piece).unwrap_or(usize::MAX);
        if !is_auditor(
            &r.auditor,
            &self.charter_cid,
            period,
            &r.piece,
            &r.node,
            &self.charter.committee,
            n,
        ) {
            return Err(NotCounted::NotAssigned {
                auditor: r.auditor,
                piece: Box::new(r.piece),
                period,
            });
        }
        Ok(())
    }

    /// Whether the receipt counts: [`ReceiptRules::check_auditor`], the piece admitted, and
    /// a pass naming the layout's size.
    pub fn check(&self, receipt: &SignedReceipt) -> Result<(), NotCounted> {
        self.check_auditor(receipt)?;
        let r = &receipt.receipt;
        let layout =
            (self.piece_size)(&r.piece).ok_or(NotCounted::UnknownPiece(Box::new(r.piece)))?;
        if r.result.passed() && r.size != layout {
            return Err(NotCounted::WrongSize {
                claimed: r.size,
                layout,
            });
        }
        Ok(())
    }

    /// The receipts that count, and for the others their position and why not.
    pub fn admit(
        &self,
        receipts: Vec<SignedReceipt>,
    ) -> (Vec<SignedReceipt>, Vec<(usize, NotCounted)>) {
        let (mut counted, mut refused) = (Vec::new(), Vec::new());
        for (index, receipt) in receipts.into_iter().enumerate() {
            match self.check(&receipt) {
                Ok(()) => counted.push(receipt),
                Err(why) => refused.push((index, why)),
            }
        }
        (counted, refused)
    }
}

#[cfg(test)]
mod tests {
    use tessera_formats::{
        AuditReceipt, AuditResult,
        address::{dag_cbor_cid, raw_cid},
        charter::CharterParams,
        receipt::RECEIPT_VERSION,
        record::SigningKey,
    };

    use super::*;
    use crate::{assignment::auditors, ledger};

    const PIECE_SIZE: u64 = 1 << 20;
    const HOLDER: PublisherKey = PublisherKey([200; 32]);
    const HOUR: u64 = 60 * 60 * 1000;

    struct Net {
        validators: Vec<SigningKey>,
        charter: Charter,
        cid: Cid,
    }

    fn net() -> Net {
        let validators: Vec<SigningKey> =
            (1..=5).map(|i| SigningKey::from_bytes(&[i; 32])).collect();
        let charter = Charter::found(
            "testnet",
            validators.iter().map(PublisherKey::of).collect(),
            3,
            CharterParams::default(),
        );
        Net {
            validators,
            charter,
            cid: dag_cbor_cid(b"the charter block"),
        }
    }

    fn receipt(by: &SigningKey, piece: Cid, size: u64, time_ms: u64) -> SignedReceipt {
        AuditReceipt {
            format: RECEIPT_VERSION,
            auditor: PublisherKey::of(by),
            node: HOLDER,
            piece,
            size,
            nonce: [1; 32],
            samples: 16,
            result: AuditResult::Passed,
            time_ms,
        }
        .sign(by)
        .unwrap()
    }

    #[test]
    fn only_assigned_validators_naming_the_layouts_size_are_counted() {
        let n = net();
        let piece = raw_cid(b"piece");
        let sizes = |p: &Cid| (*p == piece).then_some(PIECE_SIZE);
        let rules = ReceiptRules::new(&n.charter, n.cid, &sizes);
        let time = 10 * HOUR;
        let period = period_of(time, n.charter.params.audit_period_ms);
        let assigned = auditors(&n.cid, period, &piece, &HOLDER, &n.charter.committee, 2);
        let key_of = |k: &PublisherKey| {
            n.validators
                .iter()
                .find(|v| PublisherKey::of(v) == *k)
                .unwrap()
        };
        let (yes, no) = (
            key_of(&assigned[0]),
            n.validators
                .iter()
                .find(|v| !assigned.contains(&PublisherKey::of(v)))
                .unwrap(),
        );
        let outsider = SigningKey::from_bytes(&[99; 32]);

        assert_eq!(rules.check(&receipt(yes, piece, PIECE_SIZE, time)), Ok(()));
        assert!(matches!(
            rules.check(&receipt(no, piece, PIECE_SIZE, time)),
            Err(NotCounted::NotAssigned { .. })
        ));
        assert!(matches!(
            rules.check(&receipt(&outsider, piece, PIECE_SIZE, time)),
            Err(NotCounted::NotValidator(_))
        ));
        assert_eq!(
            rules.check(&receipt(yes, piece, 1 << 40, time)),
            Err(NotCounted::WrongSize {
                claimed: 1 << 40,
                layout: PIECE_SIZE
            })
        );
        let other = raw_cid(b"a piece nobody published");
        let other_auditor = auditors(&n.cid, period, &other, &HOLDER, &n.charter.committee, 1)[0];
        assert!(matches!(
            rules.check(&receipt(key_of(&other_auditor), other, PIECE_SIZE, time)),
            Err(NotCounted::UnknownPiece(_))
        ));
    }

    #[test]
    fn a_flood_of_receipts_from_others_credits_nothing_and_leaves_the_real_ones() {
        let n = net();
        let piece = raw_cid(b"piece");
        let sizes = |p: &Cid| (*p == piece).then_some(PIECE_SIZE);
        let rules = ReceiptRules::new(&n.charter, n.cid, &sizes);
        let period = |t| period_of(t, n.charter.params.audit_period_ms);
        let honest = |t: u64| {
            let assigned = auditors(&n.cid, period(t), &piece, &HOLDER, &n.charter.committee, 1)[0];
            let key = n
                .validators
                .iter()
                .find(|v| PublisherKey::of(v) == assigned)
                .unwrap();
            receipt(key, piece, PIECE_SIZE, t)
        };
        let mut all = vec![honest(HOUR), honest(2 * HOUR)];
        let liar = SigningKey::from_bytes(&[77; 32]);
        for i in 0..1000 {
            all.push(receipt(&liar, piece, 1 << 40, HOUR + i));
        }
        let (counted, refused) = rules.admit(all);
        assert_eq!(counted.len(), 2);
        assert_eq!(refused.len(), 1000);
        let proven = ledger::ledger(&counted, 0, 3 * HOUR, HOUR);
        let credited = proven.nodes[&HOLDER].byte_ms;
        // Two passes an hour apart: the second credits the hour since the first.
        assert_eq!(credited, u128::from(PIECE_SIZE) * u128::from(HOUR));
    }
}
