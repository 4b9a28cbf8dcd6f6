//! The network charter: the signed block that says which network a node is part of, whose
//! word counts in it (the validator committee and its threshold), and the rules its
//! validators apply (audit period and samples, validators per piece, who may publish and how
//! much, the reward unit).
//!
//! ```text
//! founding charter (epoch 0)   signed by t of its own committee
//!   └─ charter, epoch 1        previous = the founding charter's CID, same network,
//!        └─ charter, epoch 2   signed by t of the committee before it ...
//! ```
//!
//! A node starts from a charter (a file, or a CID fetched from a bootstrap peer) and accepts a
//! later one only when `t` members of the committee it already trusts signed it. The
//! network's id goes into every protocol name, so nodes of two networks never mix.
//!
//! Pure: where charters are kept and how they travel is the nodes' business.

use std::collections::BTreeSet;

use cid::Cid;
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::{
    block::{self, BlockError},
    record::PublisherKey,
    signed,
};

/// The charter format version this code writes and reads.
pub const CHARTER_VERSION: u64 = 1;
/// Largest charter block, checked before parsing.
pub const MAX_CHARTER_BYTES: usize = 64 * 1024;
/// Most validators a committee has.
pub const MAX_COMMITTEE: usize = 64;
/// Most publishers a charter lists by name.
pub const MAX_LISTED_PUBLISHERS: usize = 512;
/// Longest network id.
pub const MAX_NETWORK_ID: usize = 32;
/// Longest reward unit name.
pub const MAX_UNIT: usize = 32;
/// Prefix of the signed bytes: a signature over a charter is never valid for anything else.
const SIGNING_DOMAIN: &[u8] = b"tessera/network-charter/1\0";

/// A charter that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CharterError {
    /// The block is malformed (size, types, unknown fields, trailing bytes, non-canonical).
    #[error(transparent)]
    Block(#[from] BlockError),
    /// A charter format this code does not know.
    #[error("charter format {found}; this build reads format {CHARTER_VERSION}")]
    Format {
        /// The format found.
        found: u64,
    },
    /// A field breaks a rule.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Fewer valid signatures of the signing committee than its threshold.
    #[error("{valid} valid signatures of the committee; {needed} needed")]
    TooFewSignatures {
        /// Valid signatures by distinct members.
        valid: usize,
        /// The threshold.
        needed: usize,
    },
    /// The charter does not follow the one before it.
    #[error("does not follow the charter before it: {0}")]
    Succession(String),
}

fn invalid(field: &'static str, reason: impl Into<String>) -> CharterError {
    CharterError::Invalid {
        field,
        reason: reason.into(),
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The rules a network's validators apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CharterParams {
    /// Time in which every admitted piece is audited once, in milliseconds.
    pub audit_period_ms: u64,
    /// Chunks one challenge samples.
    pub audit_samples: u32,
    /// Validators assigned to audit each piece in a period.
    pub validators_per_piece: u32,
    /// The publishers whose datasets are admitted (audited, repaired, rewarded); empty admits
    /// every publisher, each up to the quota.
    pub publishers: Vec<PublisherKey>,
    /// Most bytes of pieces admitted per publisher; 0 is no limit.
    pub publisher_quota: u64,
    /// What rewards are counted in, for people (`GiB-month`).
    pub reward_unit: String,
    /// What one credited page (a validated row of a scraped dataset) is paid in settlement,
    /// in byte-milliseconds of proven storage; 0 pays pages nothing (written only when not 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub page_byte_ms: u64,
}

impl Default for CharterParams {
    fn default() -> Self {
        Self {
            audit_period_ms: 24 * 60 * 60 * 1000,
            audit_samples: 688,
            validators_per_piece: 2,
            publishers: Vec::new(),
            publisher_quota: 0,
            reward_unit: "GiB-month".into(),
            page_byte_ms: 0,
        }
    }
}

/// The unsigned content of a charter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Charter {
    /// Charter format ([`CHARTER_VERSION`]).
    pub format: u64,
    /// The network's id: lowercase letters, digits and `-`, at most [`MAX_NETWORK_ID`].
    pub network: String,
    /// 0 for the founding charter, one more for each charter after it.
    pub epoch: u64,
    /// The CID of the charter this one follows; none for the founding charter.
    pub previous: Option<Cid>,
    /// From when (ms since the Unix epoch) this charter is in force: receipts made from then on
    /// are judged by it. 0 for the founding charter (written only when not 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub starts_ms: u64,
    /// The validators' Ed25519 keys, sorted, each once.
    pub committee: Vec<PublisherKey>,
    /// Signatures of the committee a change needs (1..=committee size).
    pub threshold: u32,
    /// The rules.
    pub params: CharterParams,
}

impl Charter {
    /// A founding charter (epoch 0) for `network`, its committee sorted.
    pub fn found(
        network: &str,
        mut committee: Vec<PublisherKey>,
        threshold: u32,
        params: CharterParams,
    ) -> Self {
        committee.sort();
        committee.dedup();
        Self {
            format: CHARTER_VERSION,
            network: network.to_string(),
            epoch: 0,
            previous: None,
            starts_ms: 0,
            committee,
            threshold,
            params,
        }
    }

    /// The charter after `previous` (whose CID is `previous_cid`): the same network, the next
    /// epoch, in force from `starts_ms`, with this committee, threshold and rules.
    pub fn after(
        previous: &Charter,
        previous_cid: Cid,
        starts_ms: u64,
        committee: Vec<PublisherKey>,
        threshold: u32,
        params: CharterParams,
    ) -> Self {
        Self {
            epoch: previous.epoch.saturating_add(1),
            previous: Some(previous_cid),
            starts_ms,
            ..Self::found(&previous.network, committee, threshold, params)
        }
    }

    /// Checks every rule that needs nothing but the charter.
    pub fn validate(&self) -> Result<(), CharterError> {
        if self.format != CHARTER_VERSION {
            return Err(CharterError::Format { found: self.format });
        }
        check_network_id(&self.network)?;
        if self.epoch == 0 && self.starts_ms != 0 {
            return Err(invalid(
                "starts_ms",
                "the founding charter is in force from the start",
            ));
        }
        if (self.epoch == 0) != self.previous.is_none() {
            return Err(invalid(
                "previous",
                "the founding charter (epoch 0), and only it, follows no other",
            ));
        }
        if self.committee.is_empty() || self.committee.len() > MAX_COMMITTEE {
            return Err(invalid(
                "committee",
                format!("1 to {MAX_COMMITTEE} validators"),
            ));
        }
        if self.committee.windows(2).any(|w| w[0] >= w[1]) {
            return Err(invalid("committee", "keys sorted, each once"));
        }
        let size = u32::try_from(self.committee.len()).unwrap_or(u32::MAX);
        if self.threshold == 0 || self.threshold > size {
            return Err(invalid(
                "threshold",
                format!("{} of a committee of {size}", self.threshold),
            ));
        }
        let p = &self.params;
        if p.audit_period_ms < 60_000 {
            return Err(invalid("audit_period_ms", "at least a minute"));
        }
        if p.audit_samples == 0 {
            return Err(invalid("audit_samples", "at least one chunk"));
        }
        if p.validators_per_piece == 0 || p.validators_per_piece > size {
            return Err(invalid(
                "validators_per_piece",
                format!("1 to the committee's {size}"),
            ));
        }
        if p.publishers.len() > MAX_LISTED_PUBLISHERS {
            return Err(invalid(
                "publishers",
                format!("at most {MAX_LISTED_PUBLISHERS}"),
            ));
        }
        if p.publishers.windows(2).any(|w| w[0] >= w[1]) {
            return Err(invalid("publishers", "keys sorted, each once"));
        }
        if p.reward_unit.is_empty()
            || p.reward_unit.len() > MAX_UNIT
            || p.reward_unit.chars().any(char::is_control)
        {
            return Err(invalid(
                "reward_unit",
                format!("1 to {MAX_UNIT} printable characters"),
            ));
        }
        Ok(())
    }

    /// Whether `key` is one of the validators.
    pub fn is_validator(&self, key: &PublisherKey) -> bool {
        self.committee.binary_search(key).is_ok()
    }

    /// Whether datasets of `publisher` are admitted.
    pub fn admits_publisher(&self, publisher: &PublisherKey) -> bool {
        self.params.publishers.is_empty() || self.params.publishers.binary_search(publisher).is_ok()
    }

    /// One validator's signature of the charter.
    pub fn sign(&self, key: &SigningKey) -> Result<CharterSignature, CharterError> {
        self.validate()?;
        Ok(CharterSignature {
            signer: PublisherKey::of(key),
            signature: signed::sign(SIGNING_DOMAIN, self, key)?,
        })
    }

    /// The charter signed by each of `keys`.
    pub fn signed_by(self, keys: &[&SigningKey]) -> Result<SignedCharter, CharterError> {
        let signatures = keys
            .iter()
            .map(|key| self.sign(key))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SignedCharter {
            charter: self,
            signatures,
        })
    }
}

/// Checks a network id: 1 to [`MAX_NETWORK_ID`] of `a-z`, `0-9` and `-`, not starting or
/// ending with `-`, so that it goes into a protocol name as it is.
pub fn check_network_id(id: &str) -> Result<(), CharterError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_NETWORK_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "network",
            format!("{id:?}: 1 to {MAX_NETWORK_ID} of a-z, 0-9 and inner '-'"),
        ))
    }
}

/// One validator's signature of a charter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CharterSignature {
    /// The validator.
    pub signer: PublisherKey,
    /// Ed25519 signature (64 bytes) over the signing domain and the charter's DAG-CBOR.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// A charter with its validators' signatures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCharter {
    /// The charter.
    pub charter: Charter,
    /// Signatures by members of the committee that signs it (its own for the founding
    /// charter, the previous one's after that).
    pub signatures: Vec<CharterSignature>,
}

impl SignedCharter {
    /// Valid signatures by distinct members of `committee`.
    fn valid_signatures(&self, committee: &[PublisherKey]) -> Result<usize, CharterError> {
        let mut counted = BTreeSet::new();
        for s in &self.signatures {
            if committee.binary_search(&s.signer).is_ok()
                && !counted.contains(&s.signer)
                && signed::verifies(SIGNING_DOMAIN, &self.charter, &s.signer.0, &s.signature)?
            {
                counted.insert(s.signer);
            }
        }
        Ok(counted.len())
    }

    fn check_signed_by(
        &self,
        committee: &[PublisherKey],
        threshold: u32,
    ) -> Result<(), CharterError> {
        let needed = usize::try_from(threshold).unwrap_or(usize::MAX);
        let valid = self.valid_signatures(committee)?;
        if valid < needed {
            return Err(CharterError::TooFewSignatures { valid, needed });
        }
        Ok(())
    }

    /// Checks a founding charter: its rules, and `threshold` signatures of its own committee.
    pub fn verify_founding(&self) -> Result<(), CharterError> {
        self.charter.validate()?;
        if self.charter.epoch != 0 {
            return Err(CharterError::Succession(format!(
                "epoch {} is not a founding charter",
                self.charter.epoch
            )));
        }
        self.check_signed_by(&self.charter.committee, self.charter.threshold)
    }

    /// Checks a charter that follows `previous` (already trusted): its rules, the same
    /// network, the next epoch, `previous` named by its CID, and the threshold of the
    /// previous committee's signatures.
    pub fn verify_after(&self, previous: &SignedCharter) -> Result<(), CharterError> {
        self.charter.validate()?;
        let (now, before) = (&self.charter, &previous.charter);
        if now.network != before.network {
            return Err(CharterError::Succession(format!(
                "network {} is not {}",
                now.network, before.network
            )));
        }
        if now.starts_ms <= before.starts_ms {
            return Err(CharterError::Succession(format!(
                "it starts at {} ms, not after the charter before it ({} ms)",
                now.starts_ms, before.starts_ms
            )));
        }
        if Some(now.epoch) != before.epoch.checked_add(1) {
            return Err(CharterError::Succession(format!(
                "epoch {} does not follow epoch {}",
                now.epoch, before.epoch
            )));
        }
        let (previous_cid, _) = previous.to_block()?;
        if now.previous != Some(previous_cid) {
            return Err(CharterError::Succession(
                "it names another charter as the one before it".into(),
            ));
        }
        self.check_signed_by(&before.committee, before.threshold)
    }

    /// Encodes the signed charter as a DAG-CBOR block; returns its CID and bytes.
    pub fn to_block(&self) -> Result<(Cid, Vec<u8>), CharterError> {
        Ok(block::encode_bounded(self, MAX_CHARTER_BYTES)?)
    }

    /// Decodes a charter block and checks its rules (not its signatures, which need the
    /// committee that signs it: [`SignedCharter::verify_founding`],
    /// [`SignedCharter::verify_after`]).
    pub fn from_block(bytes: &[u8]) -> Result<Self, CharterError> {
        let signed: Self = block::decode(bytes, MAX_CHARTER_BYTES)?;
        signed.charter.validate()?;
        if signed.signatures.len() > MAX_COMMITTEE {
            return Err(invalid("signatures", format!("at most {MAX_COMMITTEE}")));
        }
        Ok(signed)
    }
}

/// Follows a network's charters from its founding one: each later charter must follow the one
/// before it. Returns the latest.
pub fn verify_chain<'a>(
    founding: &'a SignedCharter,
    later: &'a [SignedCharter],
) -> Result<&'a SignedCharter, CharterError> {
    founding.verify_founding()?;
    let mut current = founding;
    for next in later {
        next.verify_after(current)?;
        current = next;
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: u8) -> Vec<SigningKey> {
        (1..=n).map(|i| SigningKey::from_bytes(&[i; 32])).collect()
    }

    fn committee(keys: &[SigningKey]) -> Vec<PublisherKey> {
        keys.iter().map(PublisherKey::of).collect()
    }

    fn founding(keys: &[SigningKey], threshold: u32) -> Charter {
        Charter::found(
            "testnet",
            committee(keys),
            threshold,
            CharterParams::default(),
        )
    }

    #[test]
    fn a_founding_charter_needs_its_threshold_of_its_own_committee() {
        let k = keys(3);
        let two = founding(&k, 2).signed_by(&[&k[0], &k[2]]).unwrap();
        two.verify_founding().unwrap();
        let (cid, block) = two.to_block().unwrap();
        assert_eq!(cid.codec(), crate::address::DAG_CBOR);
        assert_eq!(SignedCharter::from_block(&block).unwrap(), two);

        // One signature, or one signature twice, is not two.
        let one = founding(&k, 2).signed_by(&[&k[0]]).unwrap();
        assert_eq!(
            one.verify_founding(),
            Err(CharterError::TooFewSignatures {
                valid: 1,
                needed: 2
            })
        );
        let twice = founding(&k, 2).signed_by(&[&k[0], &k[0]]).unwrap();
        assert!(twice.verify_founding().is_err());
        // A key outside the committee counts for nothing.
        let outsider = SigningKey::from_bytes(&[9; 32]);
        let outside = founding(&k, 2).signed_by(&[&k[0], &outsider]).unwrap();
        assert!(outside.verify_founding().is_err());
        // A signature over another charter does not carry over.
        let mut altered = two.clone();
        altered.charter.params.validators_per_piece = 3;
        assert!(altered.verify_founding().is_err());
    }

    #[test]
    fn the_committee_changes_only_with_the_threshold_of_the_one_before() {
        let old = keys(3);
        let new: Vec<SigningKey> = (20..23).map(|i| SigningKey::from_bytes(&[i; 32])).collect();
        let first = founding(&old, 2).signed_by(&[&old[0], &old[1]]).unwrap();
        let (first_cid, _) = first.to_block().unwrap();
        let next = Charter::after(
            &first.charter,
            first_cid,
            1_000,
            committee(&new),
            2,
            CharterParams::default(),
        );
        // Signed by the new committee alone: a takeover, refused.
        let takeover = next.clone().signed_by(&[&new[0], &new[1]]).unwrap();
        assert!(matches!(
            takeover.verify_after(&first),
            Err(CharterError::TooFewSignatures { .. })
        ));
        let handover = next.signed_by(&[&old[1], &old[2]]).unwrap();
        handover.verify_after(&first).unwrap();
        assert_eq!(
            verify_chain(&first, std::slice::from_ref(&handover)).unwrap(),
            &handover
        );
        assert!(handover.charter.is_validator(&PublisherKey::of(&new[0])));
        assert!(!handover.charter.is_validator(&PublisherKey::of(&old[0])));

        // A charter naming another predecessor, another network or skipping an epoch.
        let mut forked = handover.clone();
        forked.charter.previous = Some(crate::address::dag_cbor_cid(b"another"));
        assert!(matches!(
            forked.verify_after(&first),
            Err(CharterError::Succession(_))
        ));
        let mut other_net = handover.clone();
        other_net.charter.network = "othernet".into();
        assert!(other_net.verify_after(&first).is_err());
        let mut skipped = handover.clone();
        skipped.charter.epoch = 5;
        assert!(skipped.verify_after(&first).is_err());
        // A later charter starts after the one before it.
        let mut early = handover;
        early.charter.starts_ms = 0;
        assert!(early.verify_after(&first).is_err());
    }

    #[test]
    fn charters_that_break_a_rule_are_refused() {
        let k = keys(3);
        type Rule<'a> = (&'a str, &'a dyn Fn(&mut Charter));
        let rules: [Rule<'_>; 10] = [
            ("format", &|c| c.format = 2),
            ("network", &|c| c.network = "Test Net".into()),
            ("network", &|c| c.network = "-x".into()),
            ("previous", &|c| c.epoch = 1),
            ("committee", &|c| c.committee.reverse()),
            ("threshold", &|c| c.threshold = 4),
            ("threshold", &|c| c.threshold = 0),
            ("validators_per_piece", &|c| {
                c.params.validators_per_piece = 4
            }),
            ("audit_period_ms", &|c| c.params.audit_period_ms = 10),
            ("reward_unit", &|c| c.params.reward_unit = "\n".into()),
        ];
        for (field, break_it) in rules {
            let mut c = founding(&k, 2);
            break_it(&mut c);
            let err = c.sign(&k[0]).unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
        assert!(check_network_id(&"a".repeat(MAX_NETWORK_ID + 1)).is_err());
        assert!(check_network_id("tessera-main-1").is_ok());
    }

    #[test]
    fn damaged_blocks_are_refused_never_a_panic() {
        let k = keys(2);
        let signed = founding(&k, 1).signed_by(&[&k[0]]).unwrap();
        let (_, block) = signed.to_block().unwrap();
        for i in 0..block.len() {
            let mut bad = block.clone();
            bad[i] ^= 0x10;
            if let Ok(decoded) = SignedCharter::from_block(&bad) {
                // A flipped bit that still decodes changed what was signed.
                assert!(decoded.verify_founding().is_err(), "byte {i}");
            }
        }
        assert!(SignedCharter::from_block(&vec![0u8; MAX_CHARTER_BYTES + 1]).is_err());
    }

    #[test]
    fn publishers_are_admitted_by_the_list_or_all_when_it_is_empty() {
        let k = keys(1);
        let (a, b) = (PublisherKey([1; 32]), PublisherKey([2; 32]));
        let open = founding(&k, 1);
        assert!(open.admits_publisher(&a));
        let mut listed = founding(&k, 1);
        listed.params.publishers = vec![a];
        assert!(listed.admits_publisher(&a) && !listed.admits_publisher(&b));
    }
}
