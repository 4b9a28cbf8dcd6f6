//! Where a node's rewards are paid: an Ethereum-style address the operator names in the
//! node's config, declared in a block signed by the node's identity key. Settlement pays the
//! address of the latest declaration that verifies; nobody else can redirect a node's rewards.
//!
//! ```text
//! PayoutDeclaration { format, node, address (20 bytes), time_ms } + Ed25519 signature
//! ```
//!
//! Addresses are read as `0x` and 40 hex digits; mixed case must carry a valid EIP-55 checksum
//! (a typo in a payout address loses money), all-lower or all-upper case is taken as it is.

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use tiny_keccak::{Hasher as _, Keccak};

use crate::{
    block,
    charter::Charter,
    receipt::{NodeKey, ReceiptError},
    record::PublisherKey,
    signed,
};

/// The declaration format version this code writes and reads.
pub const PAYOUT_VERSION: u64 = 1;
/// Largest declaration block, checked before parsing.
pub const MAX_PAYOUT_BYTES: usize = 256;
const SIGNING_DOMAIN: &[u8] = b"tessera/payout/1\0";

/// Keccak-256, Ethereum's hash.
pub fn keccak256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    let mut k = Keccak::v256();
    k.update(bytes);
    k.finalize(&mut out);
    out
}

/// A 20-byte payout address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PayoutAddress(#[serde(with = "serde_bytes")] pub [u8; 20]);

/// A payout address that does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// Not `0x` and 40 hex digits.
    #[error("{0:?} is not an address: 0x and 40 hex digits")]
    Malformed(String),
    /// Mixed case whose EIP-55 checksum does not match.
    #[error(
        "{0} has a wrong EIP-55 checksum (a mistyped digit?); write it all in lower case to skip the check"
    )]
    Checksum(String),
}

impl PayoutAddress {
    /// The address with its EIP-55 checksum (mixed case).
    pub fn checksummed(&self) -> String {
        let lower = hex_lower(&self.0);
        let hash = keccak256(lower.as_bytes());
        let mut out = String::from("0x");
        for (i, c) in lower.chars().enumerate() {
            let nibble = (hash[i / 2] >> if i % 2 == 0 { 4 } else { 0 }) & 0xf;
            out.push(if nibble >= 8 {
                c.to_ascii_uppercase()
            } else {
                c
            });
        }
        out
    }

    /// The address in lower case, as ABI tools print it.
    pub fn lower(&self) -> String {
        format!("0x{}", hex_lower(&self.0))
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl std::str::FromStr for PayoutAddress {
    type Err = AddressError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let malformed = || AddressError::Malformed(text.chars().take(64).collect());
        let digits = text.strip_prefix("0x").ok_or_else(malformed)?;
        if digits.len() != 40 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(malformed());
        }
        let mut bytes = [0; 20];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).map_err(|_| malformed())?;
        }
        let address = Self(bytes);
        let mixed = digits.bytes().any(|b| b.is_ascii_lowercase())
            && digits.bytes().any(|b| b.is_ascii_uppercase());
        if mixed && address.checksummed() != text {
            return Err(AddressError::Checksum(text.to_string()));
        }
        Ok(address)
    }
}

impl std::fmt::Display for PayoutAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.checksummed())
    }
}

impl std::fmt::Debug for PayoutAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.checksummed())
    }
}

/// The unsigned content of a payout declaration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayoutDeclaration {
    /// Declaration format ([`PAYOUT_VERSION`]).
    pub format: u64,
    /// The node whose rewards are paid.
    pub node: NodeKey,
    /// Where.
    pub address: PayoutAddress,
    /// When it was declared, milliseconds since the Unix epoch: the latest one counts.
    pub time_ms: u64,
}

/// A payout declaration with the node's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedPayout {
    /// The declaration.
    pub declaration: PayoutDeclaration,
    /// Ed25519 signature (64 bytes) over the signing domain and the declaration's DAG-CBOR.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

impl PayoutDeclaration {
    /// Signs the declaration with the node's identity key.
    pub fn sign(self, node: &SigningKey) -> Result<SignedPayout, ReceiptError> {
        self.check_format()?;
        if PublisherKey::of(node) != self.node {
            return Err(ReceiptError::Invalid {
                field: "node",
                reason: "the signing key is not the node's".into(),
            });
        }
        let signature = signed::sign(SIGNING_DOMAIN, &self, node)?;
        Ok(SignedPayout {
            declaration: self,
            signature,
        })
    }

    fn check_format(&self) -> Result<(), ReceiptError> {
        if self.format != PAYOUT_VERSION {
            return Err(ReceiptError::Invalid {
                field: "format",
                reason: format!(
                    "payout format {}; this build reads {PAYOUT_VERSION}",
                    self.format
                ),
            });
        }
        Ok(())
    }
}

impl SignedPayout {
    /// Checks the format and the node's signature.
    pub fn verify(&self) -> Result<(), ReceiptError> {
        self.declaration.check_format()?;
        let node = self.declaration.node;
        if !signed::verifies(SIGNING_DOMAIN, &self.declaration, &node.0, &self.signature)? {
            return Err(ReceiptError::BadSignature { auditor: node });
        }
        Ok(())
    }

    /// The declaration as a DAG-CBOR block.
    pub fn to_block(&self) -> Result<Vec<u8>, ReceiptError> {
        self.verify()?;
        Ok(block::encode_bounded(self, MAX_PAYOUT_BYTES)?.1)
    }

    /// Decodes a declaration block and checks its signature.
    pub fn from_block(bytes: &[u8]) -> Result<Self, ReceiptError> {
        let signed: Self = block::decode(bytes, MAX_PAYOUT_BYTES)?;
        signed.verify()?;
        Ok(signed)
    }
}

/// The settlement format version this code writes and reads.
pub const SETTLEMENT_VERSION: u64 = 1;
/// Largest signed settlement block, checked before parsing.
pub const MAX_SETTLEMENT_BYTES: usize = 1024;
const SETTLEMENT_DOMAIN: &[u8] = b"tessera/settlement/1\0";

/// What a validator signs at the end of an epoch: the root of the Merkle tree of every
/// contributor's cumulative rewards (`proofs::settlement`), for one network and window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settlement {
    /// Settlement format ([`SETTLEMENT_VERSION`]).
    pub format: u64,
    /// The network's charter.
    pub charter: cid::Cid,
    /// The rewards counted, from this time (ms) ...
    pub from_ms: u64,
    /// ... to before this one.
    pub to_ms: u64,
    /// The tree's root.
    #[serde(with = "serde_bytes")]
    pub root: [u8; 32],
    /// Addresses paid.
    pub leaves: u64,
}

/// A settlement with one validator's signature; a contract takes the root once the charter's
/// threshold of its committee signed the same settlement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedSettlement {
    /// The settlement.
    pub settlement: Settlement,
    /// The validator.
    pub validator: PublisherKey,
    /// Ed25519 signature (64 bytes) over the signing domain and the settlement's DAG-CBOR.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

impl Settlement {
    /// Signs the settlement as `validator`.
    pub fn sign(self, validator: &SigningKey) -> Result<SignedSettlement, ReceiptError> {
        if self.format != SETTLEMENT_VERSION {
            return Err(ReceiptError::Invalid {
                field: "format",
                reason: format!("settlement format {}", self.format),
            });
        }
        let signature = signed::sign(SETTLEMENT_DOMAIN, &self, validator)?;
        Ok(SignedSettlement {
            settlement: self,
            validator: PublisherKey::of(validator),
            signature,
        })
    }
}

impl SignedSettlement {
    /// Checks the validator's signature (whether the validator is in the committee is the
    /// charter's business).
    pub fn verify(&self) -> Result<(), ReceiptError> {
        let v = self.validator;
        if !signed::verifies(SETTLEMENT_DOMAIN, &self.settlement, &v.0, &self.signature)? {
            return Err(ReceiptError::BadSignature { auditor: v });
        }
        Ok(())
    }

    /// The signed settlement as a DAG-CBOR block.
    pub fn to_block(&self) -> Result<Vec<u8>, ReceiptError> {
        self.verify()?;
        Ok(block::encode_bounded(self, MAX_SETTLEMENT_BYTES)?.1)
    }

    /// Decodes a signed settlement block and checks its signature.
    pub fn from_block(bytes: &[u8]) -> Result<Self, ReceiptError> {
        let signed: Self = block::decode(bytes, MAX_SETTLEMENT_BYTES)?;
        signed.verify()?;
        Ok(signed)
    }
}

/// Largest settlement certificate block, checked before parsing (a 64-key committee).
pub const MAX_CERTIFICATE_BYTES: usize = 16 * 1024;

/// One validator's signature of a settlement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitteeSignature {
    /// The validator.
    pub validator: PublisherKey,
    /// Its Ed25519 signature of the settlement.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// A settlement signed by at least its charter's threshold of the committee: what a payout
/// contract takes the root from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettlementCertificate {
    /// The settlement.
    pub settlement: Settlement,
    /// The validators' signatures, sorted by validator, each validator once.
    pub signatures: Vec<CommitteeSignature>,
}

impl SettlementCertificate {
    /// Gathers validators' signatures of `settlement`: each must verify and sign exactly it
    /// (another root, window or charter is refused, naming the validator); a validator that
    /// signed twice counts once.
    pub fn gather(
        settlement: &Settlement,
        signed: &[SignedSettlement],
    ) -> Result<Self, ReceiptError> {
        let mut signatures: Vec<CommitteeSignature> = Vec::new();
        for s in signed {
            s.verify()?;
            if s.settlement != *settlement {
                return Err(ReceiptError::Invalid {
                    field: "settlement",
                    reason: format!(
                        "validator {} signed another settlement (root, window or charter)",
                        s.validator
                    ),
                });
            }
            if signatures.iter().all(|c| c.validator != s.validator) {
                signatures.push(CommitteeSignature {
                    validator: s.validator,
                    signature: s.signature.clone(),
                });
            }
        }
        signatures.sort_by_key(|c| c.validator);
        Ok(Self {
            settlement: settlement.clone(),
            signatures,
        })
    }

    /// Checks the certificate against its charter (`charter_cid` must be the one it names):
    /// every signer a member of the committee, each once, every signature valid, and at
    /// least the threshold of them.
    pub fn verify(&self, charter: &Charter, charter_cid: &cid::Cid) -> Result<(), ReceiptError> {
        let invalid = |field, reason: String| ReceiptError::Invalid { field, reason };
        if self.settlement.charter != *charter_cid {
            return Err(invalid(
                "charter",
                format!(
                    "the settlement is under charter {}, not {charter_cid}",
                    self.settlement.charter
                ),
            ));
        }
        if !self
            .signatures
            .windows(2)
            .all(|w| w[0].validator < w[1].validator)
        {
            return Err(invalid(
                "signatures",
                "not sorted by validator, each once".into(),
            ));
        }
        for c in &self.signatures {
            if !charter.is_validator(&c.validator) {
                return Err(invalid(
                    "signatures",
                    format!("{} is not in the committee", c.validator),
                ));
            }
            let v = c.validator;
            if !signed::verifies(SETTLEMENT_DOMAIN, &self.settlement, &v.0, &c.signature)? {
                return Err(ReceiptError::BadSignature { auditor: v });
            }
        }
        if (self.signatures.len() as u64) < u64::from(charter.threshold) {
            return Err(invalid(
                "signatures",
                format!(
                    "{} of the committee signed; the charter needs {}",
                    self.signatures.len(),
                    charter.threshold
                ),
            ));
        }
        Ok(())
    }

    /// The certificate as a DAG-CBOR block.
    pub fn to_block(&self) -> Result<Vec<u8>, ReceiptError> {
        Ok(block::encode_bounded(self, MAX_CERTIFICATE_BYTES)?.1)
    }

    /// Decodes a certificate block and checks it against its charter.
    pub fn from_block(
        bytes: &[u8],
        charter: &Charter,
        charter_cid: &cid::Cid,
    ) -> Result<Self, ReceiptError> {
        let certificate: Self = block::decode(bytes, MAX_CERTIFICATE_BYTES)?;
        certificate.verify(charter, charter_cid)?;
        Ok(certificate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_read_in_any_one_case_and_mixed_case_must_carry_its_checksum() {
        // EIP-55's own examples.
        for good in [
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
            "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        ] {
            let address: PayoutAddress = good.parse().unwrap();
            assert_eq!(address.to_string(), good);
            assert_eq!(
                good.to_lowercase().parse::<PayoutAddress>().unwrap(),
                address
            );
        }
        assert!(matches!(
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD".parse::<PayoutAddress>(),
            Err(AddressError::Checksum(_))
        ));
        for bad in [
            "",
            "0x",
            "5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
            "0x5aaeb6053f",
            "0xzz",
        ] {
            assert!(matches!(
                bad.parse::<PayoutAddress>(),
                Err(AddressError::Malformed(_))
            ));
        }
    }

    #[test]
    fn a_declaration_round_trips_and_only_the_node_can_make_one() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let declaration = PayoutDeclaration {
            format: PAYOUT_VERSION,
            node: PublisherKey::of(&key),
            address: "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"
                .parse()
                .unwrap(),
            time_ms: 1_790_000_000_000,
        };
        let signed = declaration.clone().sign(&key).unwrap();
        let block = signed.to_block().unwrap();
        assert!(block.len() <= MAX_PAYOUT_BYTES);
        assert_eq!(SignedPayout::from_block(&block).unwrap(), signed);
        let mut redirected = signed.clone();
        redirected.declaration.address = PayoutAddress([7; 20]);
        assert!(redirected.verify().is_err());
        assert!(declaration.sign(&SigningKey::from_bytes(&[4; 32])).is_err());
        assert!(SignedPayout::from_block(&block[..block.len() - 1]).is_err());
    }

    #[test]
    fn a_signed_settlement_round_trips_and_an_altered_root_is_refused() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let signed = Settlement {
            format: SETTLEMENT_VERSION,
            charter: crate::address::dag_cbor_cid(b"charter"),
            from_ms: 0,
            to_ms: 1_790_000_000_000,
            root: [9; 32],
            leaves: 3,
        }
        .sign(&key)
        .unwrap();
        let block = signed.to_block().unwrap();
        assert_eq!(SignedSettlement::from_block(&block).unwrap(), signed);
        let mut altered = signed;
        altered.settlement.root[0] ^= 1;
        assert!(altered.verify().is_err());
    }

    #[test]
    fn a_certificate_needs_the_threshold_of_the_committee_on_one_settlement() {
        use crate::charter::{Charter, CharterParams};
        let keys: Vec<SigningKey> = (1..=3).map(|i| SigningKey::from_bytes(&[i; 32])).collect();
        let charter = Charter::found(
            "paynet",
            keys.iter().map(PublisherKey::of).collect(),
            2,
            CharterParams::default(),
        );
        let cid = crate::address::dag_cbor_cid(b"the charter block");
        let settlement = Settlement {
            format: SETTLEMENT_VERSION,
            charter: cid,
            from_ms: 0,
            to_ms: 1_790_000_000_000,
            root: [9; 32],
            leaves: 3,
        };
        let sign = |k: &SigningKey| settlement.clone().sign(k).unwrap();

        let one =
            SettlementCertificate::gather(&settlement, &[sign(&keys[0]), sign(&keys[0])]).unwrap();
        assert_eq!(one.signatures.len(), 1, "a validator counts once");
        let err = one.verify(&charter, &cid).unwrap_err();
        assert!(err.to_string().contains("needs 2"), "{err}");

        let two =
            SettlementCertificate::gather(&settlement, &[sign(&keys[2]), sign(&keys[0])]).unwrap();
        two.verify(&charter, &cid).unwrap();
        let block = two.to_block().unwrap();
        assert_eq!(
            SettlementCertificate::from_block(&block, &charter, &cid).unwrap(),
            two
        );
        let other = crate::address::dag_cbor_cid(b"another charter");
        assert!(two.verify(&charter, &other).is_err());

        // Another root, a stranger, or an altered signature.
        let mut moved = settlement.clone();
        moved.root = [8; 32];
        let err = SettlementCertificate::gather(
            &settlement,
            &[sign(&keys[0]), moved.sign(&keys[1]).unwrap()],
        )
        .unwrap_err();
        assert!(err.to_string().contains("another settlement"), "{err}");
        let stranger = SigningKey::from_bytes(&[9; 32]);
        let with_stranger =
            SettlementCertificate::gather(&settlement, &[sign(&keys[0]), sign(&stranger)]).unwrap();
        assert!(with_stranger.verify(&charter, &cid).is_err());
        let mut forged = two.clone();
        forged.signatures[0].signature[0] ^= 1;
        assert!(forged.verify(&charter, &cid).is_err());
    }
}
