//! Publisher key rotation: a publisher keeps its id (the key its datasets are named under)
//! and moves the signing of new versions to another key, with a block signed by the key in
//! force and by the new one.
//!
//! ```text
//! publisher P (its first key) ─rotation 1 {from P, to K1, time t1}─▶ K1 ─rotation 2 {from K1, to K2, t2}─▶ K2
//! a record of P made at time t is signed by the key in force at t: P before t1, K1 from t1,
//! K2 from t2; a record signed by another key than P names it (`SignedRecord::signer`)
//! ```
//!
//! Rotations are numbered from 1 and each names the key it replaces, so a publisher's
//! rotations form one chain that anyone can check from P alone. Two different rotations with
//! one number are a fork: a registry keeps the first and refuses the other. Rotation moves
//! signing to a new key while the old one is still the owner's; it cannot take a publisher
//! back from someone who already holds its key, who could rotate first.

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::{
    block::{self, BlockError},
    record::PublisherKey,
    signed,
};

/// The rotation format version this code writes and reads.
pub const ROTATION_VERSION: u64 = 1;
/// Largest rotation block, checked before parsing.
pub const MAX_ROTATION_BYTES: usize = 512;
/// Most rotations one publisher may make: bounds what a registry keeps and sends per publisher.
pub const MAX_ROTATIONS: u64 = 16;
const SIGNING_DOMAIN: &[u8] = b"tessera/key-rotation/1\0";

/// A rotation that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RotationError {
    /// The block is malformed.
    #[error(transparent)]
    Block(#[from] BlockError),
    /// A field breaks a rule.
    #[error("key rotation: {0}")]
    Invalid(String),
    /// A signature does not verify.
    #[error(
        "key rotation {sequence} of publisher {publisher}: the {which} key's signature does not verify"
    )]
    BadSignature {
        /// The publisher.
        publisher: PublisherKey,
        /// The rotation's number.
        sequence: u64,
        /// `old` or `new`.
        which: &'static str,
    },
    /// It does not follow the publisher's previous rotation.
    #[error("key rotation {sequence} of publisher {publisher} does not follow: {reason}")]
    BrokenChain {
        /// The publisher.
        publisher: PublisherKey,
        /// The rotation's number.
        sequence: u64,
        /// Why.
        reason: String,
    },
}

/// The unsigned content of a rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRotation {
    /// Rotation format ([`ROTATION_VERSION`]).
    pub format: u64,
    /// The publisher id: its first key, under which its datasets are named.
    pub publisher: PublisherKey,
    /// 1 for the publisher's first rotation, one more for each after it.
    pub sequence: u64,
    /// The key in force until now (the publisher's own key for rotation 1).
    pub old: PublisherKey,
    /// The key that signs from `time_ms` on.
    pub new: PublisherKey,
    /// From when the new key signs, milliseconds since the Unix epoch.
    pub time_ms: u64,
}

/// A rotation signed by its old and its new key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedRotation {
    /// The rotation.
    pub rotation: KeyRotation,
    /// The old key's signature.
    #[serde(with = "serde_bytes")]
    pub old_signature: Vec<u8>,
    /// The new key's signature: whoever rotates holds the key it rotates to.
    #[serde(with = "serde_bytes")]
    pub new_signature: Vec<u8>,
}

impl KeyRotation {
    /// Checks the rules that need nothing but the rotation.
    pub fn validate(&self) -> Result<(), RotationError> {
        let bad = |why: &str| Err(RotationError::Invalid(why.into()));
        if self.format != ROTATION_VERSION {
            return Err(RotationError::Invalid(format!(
                "format {}; this build reads format {ROTATION_VERSION}",
                self.format
            )));
        }
        if self.sequence == 0 || self.sequence > MAX_ROTATIONS {
            return Err(RotationError::Invalid(format!(
                "rotations are numbered 1 to {MAX_ROTATIONS}"
            )));
        }
        if self.sequence == 1 && self.old != self.publisher {
            return bad("the first rotation replaces the publisher's own key");
        }
        if self.new == self.old || self.new == self.publisher {
            return bad("the new key must be one the publisher has not signed with");
        }
        Ok(())
    }

    /// Signs the rotation with the old key in force and the new key.
    pub fn sign(self, old: &SigningKey, new: &SigningKey) -> Result<SignedRotation, RotationError> {
        self.validate()?;
        if PublisherKey::of(old) != self.old || PublisherKey::of(new) != self.new {
            return Err(RotationError::Invalid(
                "the signing keys are not the rotation's old and new keys".into(),
            ));
        }
        Ok(SignedRotation {
            old_signature: signed::sign(SIGNING_DOMAIN, &self, old)?,
            new_signature: signed::sign(SIGNING_DOMAIN, &self, new)?,
            rotation: self,
        })
    }

    /// Checks that this rotation follows `previous` (`None`: it is the publisher's first).
    pub fn check_follows(&self, previous: Option<&KeyRotation>) -> Result<(), RotationError> {
        let broken = |reason: String| RotationError::BrokenChain {
            publisher: self.publisher,
            sequence: self.sequence,
            reason,
        };
        match previous {
            None if self.sequence == 1 => Ok(()),
            None => Err(broken(format!(
                "rotation {} is not known",
                self.sequence - 1
            ))),
            Some(p) if p.publisher != self.publisher => Err(broken(format!(
                "rotation of another publisher {}",
                p.publisher
            ))),
            Some(p) if p.sequence.checked_add(1) != Some(self.sequence) => {
                Err(broken(format!("it cannot follow rotation {}", p.sequence)))
            }
            Some(p) if p.new != self.old => Err(broken(format!(
                "it replaces {}, but the key in force is {}",
                self.old, p.new
            ))),
            Some(p) if self.time_ms <= p.time_ms => Err(broken(format!(
                "it starts at {} ms, not after rotation {} at {} ms",
                self.time_ms, p.sequence, p.time_ms
            ))),
            Some(_) => Ok(()),
        }
    }
}

impl SignedRotation {
    /// Checks the rules and both signatures.
    pub fn verify(&self) -> Result<(), RotationError> {
        let r = &self.rotation;
        r.validate()?;
        for (which, key, signature) in [
            ("old", &r.old, &self.old_signature),
            ("new", &r.new, &self.new_signature),
        ] {
            if !signed::verifies(SIGNING_DOMAIN, r, &key.0, signature)? {
                return Err(RotationError::BadSignature {
                    publisher: r.publisher,
                    sequence: r.sequence,
                    which,
                });
            }
        }
        Ok(())
    }

    /// Encodes the rotation as a DAG-CBOR block.
    pub fn to_block(&self) -> Result<Vec<u8>, RotationError> {
        self.verify()?;
        Ok(block::encode_bounded(self, MAX_ROTATION_BYTES)?.1)
    }

    /// Decodes a rotation block and checks its rules and signatures.
    pub fn from_block(bytes: &[u8]) -> Result<Self, RotationError> {
        let signed: Self = block::decode(bytes, MAX_ROTATION_BYTES)?;
        signed.verify()?;
        Ok(signed)
    }
}

/// Checks that `rotations` are one publisher's chain from its first, in order.
pub fn check_chain(
    publisher: &PublisherKey,
    rotations: &[SignedRotation],
) -> Result<(), RotationError> {
    let mut previous: Option<&KeyRotation> = None;
    for signed in rotations {
        signed.verify()?;
        let r = &signed.rotation;
        if r.publisher != *publisher {
            return Err(RotationError::Invalid(format!(
                "a rotation of {}, not of {publisher}",
                r.publisher
            )));
        }
        r.check_follows(previous)?;
        previous = Some(r);
    }
    Ok(())
}

/// The key that signs `publisher`'s records made at `time_ms`, given its rotation chain
/// (checked with [`check_chain`]).
pub fn key_at(
    publisher: &PublisherKey,
    rotations: &[SignedRotation],
    time_ms: u64,
) -> PublisherKey {
    rotations
        .iter()
        .take_while(|r| r.rotation.time_ms <= time_ms)
        .last()
        .map_or(*publisher, |r| r.rotation.new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn rotation(sequence: u64, old: &SigningKey, new: &SigningKey, time_ms: u64) -> SignedRotation {
        KeyRotation {
            format: ROTATION_VERSION,
            publisher: PublisherKey::of(&key(1)),
            sequence,
            old: PublisherKey::of(old),
            new: PublisherKey::of(new),
            time_ms,
        }
        .sign(old, new)
        .unwrap()
    }

    #[test]
    fn a_chain_of_rotations_says_which_key_signs_when() {
        let p = PublisherKey::of(&key(1));
        let first = rotation(1, &key(1), &key(2), 1000);
        let second = rotation(2, &key(2), &key(3), 2000);
        let chain = [first.clone(), second.clone()];
        check_chain(&p, &chain).unwrap();
        assert_eq!(key_at(&p, &chain, 999), p);
        assert_eq!(key_at(&p, &chain, 1000), PublisherKey::of(&key(2)));
        assert_eq!(key_at(&p, &chain, 5000), PublisherKey::of(&key(3)));
        assert_eq!(key_at(&p, &[], 5000), p);

        let block = second.to_block().unwrap();
        assert_eq!(SignedRotation::from_block(&block).unwrap(), second);

        // Out of order, skipping one, or from a key not in force.
        assert!(check_chain(&p, std::slice::from_ref(&second)).is_err());
        assert!(check_chain(&p, &[second, first.clone()]).is_err());
        let stale = rotation(2, &key(1), &key(4), 3000);
        let err = check_chain(&p, &[first.clone(), stale]).unwrap_err();
        assert!(err.to_string().contains("key in force"), "{err}");
        let earlier = rotation(2, &key(2), &key(4), 500);
        assert!(check_chain(&p, &[first.clone(), earlier]).is_err());
    }

    #[test]
    fn a_rotation_needs_both_keys_and_its_rules() {
        let mut forged = rotation(1, &key(1), &key(2), 1000);
        forged.rotation.new = PublisherKey::of(&key(9));
        assert!(matches!(
            forged.verify(),
            Err(RotationError::BadSignature { which: "old", .. })
        ));
        let mut unheld = rotation(1, &key(1), &key(2), 1000);
        unheld.new_signature = unheld.old_signature.clone();
        assert!(matches!(
            unheld.verify(),
            Err(RotationError::BadSignature { which: "new", .. })
        ));
        let r = |sequence, old: &SigningKey, new: &SigningKey| KeyRotation {
            format: ROTATION_VERSION,
            publisher: PublisherKey::of(&key(1)),
            sequence,
            old: PublisherKey::of(old),
            new: PublisherKey::of(new),
            time_ms: 1,
        };
        assert!(r(0, &key(1), &key(2)).sign(&key(1), &key(2)).is_err());
        assert!(r(1, &key(5), &key(2)).sign(&key(5), &key(2)).is_err());
        assert!(r(2, &key(2), &key(1)).sign(&key(2), &key(1)).is_err());
        assert!(r(1, &key(1), &key(2)).sign(&key(1), &key(3)).is_err());
        assert!(SignedRotation::from_block(&[0xff; 600]).is_err());
    }
}
