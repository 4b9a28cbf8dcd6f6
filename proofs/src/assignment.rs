//! Who audits a piece and who repairs a shard, in a period: rendezvous hashing of the subject,
//! the period and the charter over the validator committee. Every node computes the same
//! answer from public facts, so a receipt from a validator that was not assigned, or a repair
//! claim from one that is not the repairer, is recognised and ignored: nobody can audit
//! everything to flood receipts, or claim a repair to block it.
//!
//! ```text
//! score(member) = BLAKE3(domain ‖ charter CID ‖ period ‖ subject CID ‖ member key)
//! auditors(piece, holder) = the n members with the highest scores, the holder left out
//!                           (n = validators per piece; nobody audits its own copy)
//! repairer(shard)  = the member with the highest score        (its own domain)
//! ```
//!
//! Rendezvous hashing moves only what it must: when a member leaves the committee, only the
//! subjects it was assigned move, each to the member next in its order.

use cid::Cid;
use tessera_formats::PublisherKey;

const AUDIT_DOMAIN: &[u8] = b"tessera/audit-assignment/1\0";
const REPAIR_DOMAIN: &[u8] = b"tessera/repair-assignment/1\0";

/// The period that `time_ms` falls in, periods being `period_ms` long from the Unix epoch (a
/// zero length is taken as one millisecond).
pub fn period_of(time_ms: u64, period_ms: u64) -> u64 {
    time_ms / period_ms.max(1)
}

fn score(
    domain: &[u8],
    charter: &Cid,
    period: u64,
    subject: &Cid,
    member: &PublisherKey,
) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(domain);
    h.update(&charter.to_bytes());
    h.update(&period.to_be_bytes());
    h.update(&subject.to_bytes());
    h.update(&member.0);
    *h.finalize().as_bytes()
}

/// The `n` members with the highest scores for `subject`, `left_out` (if any) not among them.
fn highest(
    domain: &[u8],
    charter: &Cid,
    period: u64,
    subject: &Cid,
    committee: &[PublisherKey],
    n: usize,
    left_out: Option<&PublisherKey>,
) -> Vec<PublisherKey> {
    let mut scored: Vec<([u8; 32], PublisherKey)> = committee
        .iter()
        .filter(|member| Some(*member) != left_out)
        .map(|member| (score(domain, charter, period, subject, member), *member))
        .collect();
    // Highest score first; the key breaks a tie (two equal BLAKE3 outputs will not happen).
    scored.sort_unstable_by(|a, b| b.cmp(a));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored
        .into_iter()
        .take(n)
        .map(|(_, member)| member)
        .collect()
}

/// The `n` validators of `committee` assigned to audit `holder`'s copy of `piece` in
/// `period` under the charter `charter` (fewer when the committee is smaller). The holder is
/// never among them: a validator's own copies are audited by others. The order does not
/// depend on the holder otherwise, so a piece's holders share their auditors.
pub fn auditors(
    charter: &Cid,
    period: u64,
    piece: &Cid,
    holder: &PublisherKey,
    committee: &[PublisherKey],
    n: usize,
) -> Vec<PublisherKey> {
    highest(
        AUDIT_DOMAIN,
        charter,
        period,
        piece,
        committee,
        n,
        Some(holder),
    )
}

/// Whether `validator` is one of the `n` assigned to audit `holder`'s copy of `piece` in
/// `period`.
pub fn is_auditor(
    validator: &PublisherKey,
    charter: &Cid,
    period: u64,
    piece: &Cid,
    holder: &PublisherKey,
    committee: &[PublisherKey],
    n: usize,
) -> bool {
    auditors(charter, period, piece, holder, committee, n).contains(validator)
}

/// The validator that repairs `shard` in `period`; none for an empty committee.
pub fn repairer(
    charter: &Cid,
    period: u64,
    shard: &Cid,
    committee: &[PublisherKey],
) -> Option<PublisherKey> {
    repair_order(charter, period, shard, committee)
        .into_iter()
        .next()
}

/// The whole committee in the order it takes over `shard`'s repair in `period`: the first
/// repairs; the next steps in only when the shard has waited for the ones before it.
pub fn repair_order(
    charter: &Cid,
    period: u64,
    shard: &Cid,
    committee: &[PublisherKey],
) -> Vec<PublisherKey> {
    highest(
        REPAIR_DOMAIN,
        charter,
        period,
        shard,
        committee,
        committee.len(),
        None,
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use tessera_formats::address::{dag_cbor_cid, raw_cid};

    use super::*;

    /// A holder outside every committee here.
    const OUTSIDER: PublisherKey = PublisherKey([200; 32]);

    fn committee(n: u8) -> Vec<PublisherKey> {
        (1..=n).map(|i| PublisherKey([i; 32])).collect()
    }

    fn pieces(n: u32) -> Vec<Cid> {
        (0..n).map(|i| raw_cid(&i.to_le_bytes())).collect()
    }

    #[test]
    fn everyone_computes_the_same_distinct_auditors() {
        let (charter, c) = (dag_cbor_cid(b"charter"), committee(7));
        let piece = raw_cid(b"piece");
        let a = auditors(&charter, 3, &piece, &OUTSIDER, &c, 2);
        assert_eq!(a.len(), 2);
        assert_ne!(a[0], a[1]);
        let mut reversed = c.clone();
        reversed.reverse();
        assert_eq!(auditors(&charter, 3, &piece, &OUTSIDER, &reversed, 2), a);
        assert!(is_auditor(&a[1], &charter, 3, &piece, &OUTSIDER, &c, 2));
        assert_eq!(
            auditors(&charter, 3, &piece, &OUTSIDER, &c[..1], 2).len(),
            1
        );
        assert!(repairer(&charter, 3, &piece, &[]).is_none());
    }

    #[test]
    fn a_validator_never_audits_its_own_copy() {
        let (charter, c) = (dag_cbor_cid(b"charter"), committee(3));
        for p in pieces(200) {
            let others = auditors(&charter, 0, &p, &OUTSIDER, &c, 2);
            for holder in &c {
                let assigned = auditors(&charter, 0, &p, holder, &c, 2);
                assert_eq!(assigned.len(), 2);
                assert!(!assigned.contains(holder));
                // The others keep their places: the next one steps in for the holder.
                if !others.contains(holder) {
                    assert_eq!(assigned, others);
                }
            }
        }
    }

    #[test]
    fn work_spreads_evenly_and_changes_with_the_period_and_the_charter() {
        let (charter, c) = (dag_cbor_cid(b"charter"), committee(8));
        let all = pieces(8000);
        let mut load: HashMap<PublisherKey, usize> = HashMap::new();
        for p in &all {
            for member in auditors(&charter, 0, p, &OUTSIDER, &c, 2) {
                *load.entry(member).or_default() += 1;
            }
        }
        // 16000 assignments over 8 members: 2000 each, within 10%.
        for member in &c {
            let n = load[member];
            assert!((1800..=2200).contains(&n), "{member}: {n}");
        }
        let moved = |other: &dyn Fn(&Cid) -> Vec<PublisherKey>| {
            all.iter()
                .filter(|p| other(p) != auditors(&charter, 0, p, &OUTSIDER, &c, 2))
                .count()
        };
        assert!(moved(&|p| auditors(&charter, 1, p, &OUTSIDER, &c, 2)) > 7000);
        let other_charter = dag_cbor_cid(b"another charter");
        assert!(moved(&|p| auditors(&other_charter, 0, p, &OUTSIDER, &c, 2)) > 7000);
    }

    #[test]
    fn a_member_leaving_moves_only_what_it_held() {
        let (charter, c) = (dag_cbor_cid(b"charter"), committee(8));
        let gone = c[3];
        let rest: Vec<PublisherKey> = c.iter().copied().filter(|m| *m != gone).collect();
        for p in pieces(2000) {
            let before = auditors(&charter, 0, &p, &OUTSIDER, &c, 2);
            let after = auditors(&charter, 0, &p, &OUTSIDER, &rest, 2);
            if !before.contains(&gone) {
                assert_eq!(before, after);
            } else {
                let kept: Vec<_> = before.iter().filter(|m| **m != gone).collect();
                assert!(kept.iter().all(|m| after.contains(m)));
            }
            let repair_before = repairer(&charter, 0, &p, &c);
            if repair_before != Some(gone) {
                assert_eq!(repairer(&charter, 0, &p, &rest), repair_before);
            }
        }
    }

    #[test]
    fn the_repair_order_starts_with_the_repairer_and_names_everyone_once() {
        let (charter, c) = (dag_cbor_cid(b"charter"), committee(6));
        let shard = dag_cbor_cid(b"shard");
        let order = repair_order(&charter, 4, &shard, &c);
        assert_eq!(order.len(), 6);
        assert_eq!(Some(order[0]), repairer(&charter, 4, &shard, &c));
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, c);
    }

    #[test]
    fn periods_count_from_the_epoch() {
        assert_eq!(period_of(0, 1000), 0);
        assert_eq!(period_of(2999, 1000), 2);
        assert_eq!(period_of(5, 0), 5);
    }
}
