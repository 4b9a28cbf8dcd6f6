//! Signed audit receipts: what an auditor saw when it challenged a node to prove it holds a
//! piece.
//!
//! A receipt names the auditor and the audited node by their Ed25519 identity keys (the key
//! a libp2p peer id of an Ed25519 identity carries), the piece and its size, the challenge's
//! nonce and sample count, the result and the time. The auditor signs a domain tag and the
//! receipt's canonical DAG-CBOR, so anyone holding the receipt checks it with nothing else,
//! and a receipt's CID (of the signed block) names it wherever it travels.
//!
//! ```text
//! auditor ──challenge(piece, nonce, samples)──▶ node ──proof──▶ auditor verifies
//!         ──▶ AuditReceipt { auditor, node, piece, size, nonce, samples, result, time }
//!         ──▶ signed ──▶ kept, shared, counted (GiB-hours proven per node)
//! ```
//!
//! Pure: the auditor's loop, the store and the gossip are the nodes' business.

use cid::Cid;
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::{
    address::{BLAKE3, RAW},
    block::{self, BlockError},
    record::PublisherKey,
    signed,
};

/// The receipt format version this code writes and reads.
pub const RECEIPT_VERSION: u64 = 1;
/// Largest receipt block, checked before parsing.
pub const MAX_RECEIPT_BYTES: usize = 1024;
/// Prefix of the signed bytes: a signature over a receipt is never valid for anything else.
const SIGNING_DOMAIN: &[u8] = b"tessera/audit-receipt/1\0";

/// A node's Ed25519 identity key: the 32 bytes inside the peer id of an Ed25519 libp2p
/// identity, written as 64 hex digits like a publisher key.
pub type NodeKey = PublisherKey;

/// What came of one challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditResult {
    /// The proof verified against the piece's CID.
    Passed,
    /// The proof did not verify: other bytes, another nonce, missing chunks.
    BadProof,
    /// The node answered that it does not hold the piece, or refused to prove.
    Refused,
    /// No answer in time.
    Timeout,
    /// The node could not be reached.
    Unreachable,
}

impl AuditResult {
    /// Whether the node proved it holds the piece.
    pub fn passed(self) -> bool {
        self == Self::Passed
    }
}

/// A receipt that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    /// The block is malformed (size, types, unknown fields, trailing bytes, non-canonical).
    #[error(transparent)]
    Block(#[from] BlockError),
    /// A receipt format this code does not know.
    #[error("receipt format {found}; this build reads format {RECEIPT_VERSION}")]
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
    /// The signature does not verify against the auditor's key.
    #[error("the signature does not verify against auditor {auditor}")]
    BadSignature {
        /// The claimed auditor.
        auditor: NodeKey,
    },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ReceiptError {
    ReceiptError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// The unsigned content of an audit receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditReceipt {
    /// Receipt format ([`RECEIPT_VERSION`]).
    pub format: u64,
    /// Who challenged.
    pub auditor: NodeKey,
    /// Who was challenged.
    pub node: NodeKey,
    /// The piece (a raw BLAKE3 CID).
    pub piece: Cid,
    /// The piece's size in bytes, as the proof showed it (0 when there was no proof).
    pub size: u64,
    /// The challenge's nonce.
    #[serde(with = "serde_bytes")]
    pub nonce: [u8; 32],
    /// Chunks the challenge sampled.
    pub samples: u32,
    /// What came of it.
    pub result: AuditResult,
    /// When the auditor decided, milliseconds since the Unix epoch.
    pub time_ms: u64,
}

impl AuditReceipt {
    /// Checks every rule that needs nothing but the receipt.
    pub fn validate(&self) -> Result<(), ReceiptError> {
        if self.format != RECEIPT_VERSION {
            return Err(ReceiptError::Format { found: self.format });
        }
        if self.auditor == self.node {
            return Err(invalid("node", "a node does not audit itself"));
        }
        if self.piece.codec() != RAW || self.piece.hash().code() != BLAKE3 {
            return Err(invalid(
                "piece",
                format!("{} is not a raw BLAKE3 CID", self.piece),
            ));
        }
        if self.samples == 0 {
            return Err(invalid("samples", "a challenge samples at least one chunk"));
        }
        if self.result.passed() == (self.size == 0) {
            return Err(invalid(
                "size",
                "a passed audit shows the piece's size, a failed one none",
            ));
        }
        Ok(())
    }

    /// Signs the receipt with the auditor's identity key, which must be the receipt's
    /// auditor.
    pub fn sign(self, auditor: &SigningKey) -> Result<SignedReceipt, ReceiptError> {
        self.validate()?;
        if PublisherKey::of(auditor) != self.auditor {
            return Err(invalid(
                "auditor",
                "the signing key is not the receipt's auditor",
            ));
        }
        let signature = signed::sign(SIGNING_DOMAIN, &self, auditor)?;
        Ok(SignedReceipt {
            receipt: self,
            signature,
        })
    }
}

/// An audit receipt with its auditor's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedReceipt {
    /// The receipt.
    pub receipt: AuditReceipt,
    /// Ed25519 signature (64 bytes) over the signing domain and the receipt's DAG-CBOR.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

impl SignedReceipt {
    /// Checks the receipt's rules and its signature.
    pub fn verify(&self) -> Result<(), ReceiptError> {
        self.receipt.validate()?;
        let auditor = self.receipt.auditor;
        if !signed::verifies(SIGNING_DOMAIN, &self.receipt, &auditor.0, &self.signature)? {
            return Err(ReceiptError::BadSignature { auditor });
        }
        Ok(())
    }

    /// Encodes the signed receipt as a DAG-CBOR block; returns its CID and bytes.
    pub fn to_block(&self) -> Result<(Cid, Vec<u8>), ReceiptError> {
        self.verify()?;
        Ok(block::encode_bounded(self, MAX_RECEIPT_BYTES)?)
    }

    /// Decodes a receipt block and checks its rules and signature.
    pub fn from_block(bytes: &[u8]) -> Result<Self, ReceiptError> {
        let signed: Self = block::decode(bytes, MAX_RECEIPT_BYTES)?;
        signed.verify()?;
        Ok(signed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::{dag_cbor_cid, raw_cid};

    fn receipt(auditor: &SigningKey, result: AuditResult) -> AuditReceipt {
        AuditReceipt {
            format: RECEIPT_VERSION,
            auditor: PublisherKey::of(auditor),
            node: PublisherKey::of(&SigningKey::from_bytes(&[2; 32])),
            piece: raw_cid(b"a piece"),
            size: if result.passed() { 1 << 20 } else { 0 },
            nonce: [9; 32],
            samples: 688,
            result,
            time_ms: 1_790_000_000_000,
        }
    }

    #[test]
    fn a_signed_receipt_round_trips_and_anyone_verifies_it() {
        let auditor = SigningKey::from_bytes(&[1; 32]);
        for result in [
            AuditResult::Passed,
            AuditResult::BadProof,
            AuditResult::Refused,
            AuditResult::Timeout,
            AuditResult::Unreachable,
        ] {
            let signed = receipt(&auditor, result).sign(&auditor).unwrap();
            let (cid, block) = signed.to_block().unwrap();
            assert_eq!(cid.codec(), crate::address::DAG_CBOR);
            assert_eq!(SignedReceipt::from_block(&block).unwrap(), signed);
            assert!(block.len() < MAX_RECEIPT_BYTES);
        }
    }

    #[test]
    fn altered_receipts_and_forged_signatures_are_refused() {
        let auditor = SigningKey::from_bytes(&[1; 32]);
        let signed = receipt(&auditor, AuditResult::Passed)
            .sign(&auditor)
            .unwrap();
        let alter = |f: &dyn Fn(&mut AuditReceipt)| {
            let mut s = signed.clone();
            f(&mut s.receipt);
            s.verify()
        };
        // Every field the signature covers.
        assert!(alter(&|r| r.result = AuditResult::BadProof).is_err());
        assert!(alter(&|r| r.size += 1).is_err());
        assert!(alter(&|r| r.time_ms += 1).is_err());
        assert!(alter(&|r| r.nonce[0] ^= 1).is_err());
        assert!(alter(&|r| r.samples += 1).is_err());
        assert!(alter(&|r| r.piece = raw_cid(b"another piece")).is_err());
        assert!(alter(&|r| r.node = PublisherKey([7; 32])).is_err());
        // Another key claiming to be the auditor.
        let other = SigningKey::from_bytes(&[3; 32]);
        let mut claimed = receipt(&auditor, AuditResult::Passed);
        claimed.auditor = PublisherKey::of(&other);
        let forged = SignedReceipt {
            signature: signed.signature.clone(),
            receipt: claimed,
        };
        assert!(matches!(
            forged.verify(),
            Err(ReceiptError::BadSignature { .. })
        ));
        assert!(receipt(&auditor, AuditResult::Passed).sign(&other).is_err());
        // A flipped bit anywhere in the block is refused, never a panic.
        let (_, block) = signed.to_block().unwrap();
        for i in 0..block.len() {
            let mut bad = block.clone();
            bad[i] ^= 0x10;
            assert!(SignedReceipt::from_block(&bad).is_err(), "byte {i}");
        }
        assert!(SignedReceipt::from_block(&block[..block.len() - 1]).is_err());
        assert!(SignedReceipt::from_block(&vec![0u8; MAX_RECEIPT_BYTES + 1]).is_err());
    }

    #[test]
    fn receipts_that_break_a_rule_are_not_signed() {
        let auditor = SigningKey::from_bytes(&[1; 32]);
        type Rule<'a> = (&'a str, &'a dyn Fn(&mut AuditReceipt));
        let rules: [Rule<'_>; 5] = [
            ("format", &|r| r.format = 2),
            ("node", &|r| r.node = r.auditor),
            ("piece", &|r| r.piece = dag_cbor_cid(b"a block")),
            ("samples", &|r| r.samples = 0),
            ("size", &|r| r.size = 0),
        ];
        for (field, break_it) in rules {
            let mut r = receipt(&auditor, AuditResult::Passed);
            break_it(&mut r);
            let err = r.sign(&auditor).unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
        let mut failed = receipt(&auditor, AuditResult::Timeout);
        failed.size = 5;
        assert!(failed.sign(&auditor).is_err());
    }
}
