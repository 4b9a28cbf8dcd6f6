//! Signed repair claims: "this node is rebuilding this shard's lost pieces until then".
//!
//! A node about to repair a shard stores its claim on the DHT under the shard's key and reads
//! it back; another node that finds a live claim by someone else leaves the shard alone. The
//! claim is signed by the claimer's identity key, so no node can block repairs in another's
//! name, and it expires, so a claimer that dies frees the shard.
//!
//! Pure: storing, reading and deciding are the storage node's business.

use cid::Cid;
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::{
    address::{BLAKE3, DAG_CBOR},
    block,
    receipt::{NodeKey, ReceiptError},
    record::PublisherKey,
    signed,
};

/// The claim format version this code writes and reads.
pub const CLAIM_VERSION: u64 = 1;
/// Largest claim block, checked before parsing.
pub const MAX_CLAIM_BYTES: usize = 512;
const SIGNING_DOMAIN: &[u8] = b"tessera/repair-claim/1\0";

/// The unsigned content of a repair claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepairClaim {
    /// Claim format ([`CLAIM_VERSION`]).
    pub format: u64,
    /// Who repairs.
    pub claimer: NodeKey,
    /// The shard, by its layout's CID.
    pub shard: Cid,
    /// Until when, milliseconds since the Unix epoch.
    pub expires_ms: u64,
}

/// A repair claim with its claimer's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedClaim {
    /// The claim.
    pub claim: RepairClaim,
    /// Ed25519 signature (64 bytes) over the signing domain and the claim's DAG-CBOR.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

impl RepairClaim {
    /// Checks the rules that need nothing but the claim.
    pub fn validate(&self) -> Result<(), ReceiptError> {
        if self.format != CLAIM_VERSION {
            return Err(ReceiptError::Invalid {
                field: "format",
                reason: format!(
                    "claim format {}; this build reads {CLAIM_VERSION}",
                    self.format
                ),
            });
        }
        if self.shard.codec() != DAG_CBOR || self.shard.hash().code() != BLAKE3 {
            return Err(ReceiptError::Invalid {
                field: "shard",
                reason: format!("{} is not a BLAKE3 DAG-CBOR layout CID", self.shard),
            });
        }
        Ok(())
    }

    /// Signs the claim with the claimer's identity key.
    pub fn sign(self, claimer: &SigningKey) -> Result<SignedClaim, ReceiptError> {
        self.validate()?;
        if PublisherKey::of(claimer) != self.claimer {
            return Err(ReceiptError::Invalid {
                field: "claimer",
                reason: "the signing key is not the claimer".into(),
            });
        }
        let signature = signed::sign(SIGNING_DOMAIN, &self, claimer)?;
        Ok(SignedClaim {
            claim: self,
            signature,
        })
    }
}

impl SignedClaim {
    /// Checks the claim's rules and its signature.
    pub fn verify(&self) -> Result<(), ReceiptError> {
        self.claim.validate()?;
        let claimer = self.claim.claimer;
        if !signed::verifies(SIGNING_DOMAIN, &self.claim, &claimer.0, &self.signature)? {
            return Err(ReceiptError::BadSignature { auditor: claimer });
        }
        Ok(())
    }

    /// The claim as a DAG-CBOR block.
    pub fn to_block(&self) -> Result<Vec<u8>, ReceiptError> {
        self.verify()?;
        Ok(block::encode_bounded(self, MAX_CLAIM_BYTES)?.1)
    }

    /// Decodes a claim block and checks its rules and signature.
    pub fn from_block(bytes: &[u8]) -> Result<Self, ReceiptError> {
        let signed: Self = block::decode(bytes, MAX_CLAIM_BYTES)?;
        signed.verify()?;
        Ok(signed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::dag_cbor_cid;

    #[test]
    fn a_claim_round_trips_and_a_forged_one_is_refused() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let claim = RepairClaim {
            format: CLAIM_VERSION,
            claimer: PublisherKey::of(&key),
            shard: dag_cbor_cid(b"a layout"),
            expires_ms: 1_790_000_000_000,
        };
        let signed = claim.clone().sign(&key).unwrap();
        let block = signed.to_block().unwrap();
        assert!(block.len() <= MAX_CLAIM_BYTES);
        assert_eq!(SignedClaim::from_block(&block).unwrap(), signed);

        let mut later = signed.clone();
        later.claim.expires_ms += 1;
        assert!(later.verify().is_err());
        let mut other = signed.clone();
        other.claim.claimer = PublisherKey([9; 32]);
        assert!(other.verify().is_err());
        assert!(
            claim
                .clone()
                .sign(&SigningKey::from_bytes(&[4; 32]))
                .is_err()
        );
        assert!(SignedClaim::from_block(&block[..block.len() - 1]).is_err());
        let raw = RepairClaim {
            shard: crate::address::raw_cid(b"x"),
            ..claim
        };
        assert!(raw.sign(&key).is_err());
    }
}
