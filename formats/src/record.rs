//! Signed dataset-version records: the registry's unit of history.
//!
//! A record says that a publisher (an Ed25519 key) names a manifest as version `n` of one of
//! its datasets, following record `parent`. Records of one (publisher, name) form a chain:
//!
//! ```text
//!   v1 {parent: none} ◀── v2 {parent: CID(v1)} ◀── v3 {parent: CID(v2)} ...
//! ```
//!
//! The signature covers a domain tag and the canonical DAG-CBOR of the unsigned record, so a
//! record cannot be replayed as anything else, and the record's CID (of the signed block) is
//! what the next version names as its parent. Everything here is pure: whether a manifest CID
//! resolves is the registry's business.

use std::{fmt, str::FromStr};

use cid::Cid;
pub use ed25519_dalek::SigningKey;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{
    address::{DAG_CBOR, HashFn},
    block::{self, BlockError},
    signed,
};

/// The record format version this code writes and reads.
pub const RECORD_VERSION: u64 = 1;
/// Largest record block, checked before parsing.
pub const MAX_RECORD_BYTES: usize = 8 * 1024;
/// Longest dataset name.
pub const MAX_DATASET_NAME: usize = 64;
/// Longest version message, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// Prefix of the signed bytes: a signature over a record is never valid for anything else.
const SIGNING_DOMAIN: &[u8] = b"tessera/version-record/1\0";

/// A record that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The block is malformed (size, types, unknown fields, trailing bytes, non-canonical).
    #[error(transparent)]
    Block(#[from] BlockError),
    /// A record format this code does not know.
    #[error("record format {found}; this build reads format {RECORD_VERSION}")]
    Format {
        /// The format found.
        found: u64,
    },
    /// A field breaks a rule or a limit.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The signature does not verify against the publisher key.
    #[error("the signature does not verify against publisher {publisher}")]
    BadSignature {
        /// The claimed publisher.
        publisher: PublisherKey,
    },
    /// The record does not follow the one it names as its parent.
    #[error("broken chain: {0}")]
    BrokenChain(String),
    /// The record is signed by a key that does not sign for its publisher at its time.
    #[error("{0}")]
    WrongKey(String),
}

fn invalid(field: &'static str, reason: impl Into<String>) -> RecordError {
    RecordError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// A publisher's Ed25519 public key; written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublisherKey(pub [u8; 32]);

impl PublisherKey {
    /// The key that `signer` signs for.
    pub fn of(signer: &SigningKey) -> Self {
        Self(signer.verifying_key().to_bytes())
    }

    /// Whether the hex form starts with `prefix` (lowercase hex).
    pub fn has_prefix(&self, prefix: &str) -> bool {
        self.to_string().starts_with(prefix)
    }
}

impl fmt::Display for PublisherKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for PublisherKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublisherKey({self})")
    }
}

impl FromStr for PublisherKey {
    type Err = RecordError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || invalid("publisher", format!("{s:?} is not 64 hex digits"));
        if s.len() != 64 || !s.is_ascii() {
            return Err(bad());
        }
        let mut key = [0u8; 32];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Self(key))
    }
}

impl Serialize for PublisherKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serde_bytes::Bytes::new(&self.0).serialize(s)
    }
}

impl<'de> Deserialize<'de> for PublisherKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(d)?;
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            serde::de::Error::invalid_length(bytes.len(), &"a 32-byte Ed25519 public key")
        })?;
        Ok(Self(key))
    }
}

/// A key and the publisher whose records it signs: the publisher's own key, or one the
/// publisher rotated to.
#[derive(Clone)]
pub struct Signer {
    /// The signing key.
    pub key: SigningKey,
    /// The publisher it signs for.
    pub publisher: PublisherKey,
}

impl Signer {
    /// A publisher signing with its own key.
    pub fn own(key: SigningKey) -> Self {
        Self {
            publisher: PublisherKey::of(&key),
            key,
        }
    }
}

impl From<&SigningKey> for Signer {
    fn from(key: &SigningKey) -> Self {
        Self::own(key.clone())
    }
}

impl From<&Signer> for Signer {
    fn from(signer: &Signer) -> Self {
        signer.clone()
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Signer {{ publisher: {}, key: {} }}",
            self.publisher,
            PublisherKey::of(&self.key)
        )
    }
}

/// Checks a dataset name: 1 to 64 bytes of `a-z 0-9 . _ -`, starting with a letter or digit.
/// Names become path components and URL segments, so nothing else is allowed.
pub fn check_name(name: &str) -> Result<(), RecordError> {
    if name.is_empty() || name.len() > MAX_DATASET_NAME {
        return Err(invalid(
            "name",
            format!("{name:?}: 1 to {MAX_DATASET_NAME} bytes"),
        ));
    }
    let ok_first = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let ok_rest = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'));
    if !ok_first || !ok_rest {
        return Err(invalid(
            "name",
            format!("{name:?}: use a-z, 0-9, '.', '_' and '-', starting with a letter or digit"),
        ));
    }
    Ok(())
}

/// The unsigned content of a version record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionRecord {
    /// Record format ([`RECORD_VERSION`]).
    pub format: u64,
    /// Who publishes the dataset.
    pub publisher: PublisherKey,
    /// The dataset's name, unique per publisher.
    pub name: String,
    /// The version number: 1 for the first, one more than the parent's after that.
    pub version: u64,
    /// CID of the version's manifest.
    pub manifest: Cid,
    /// CID of the previous version's record; none for version 1.
    pub parent: Option<Cid>,
    /// When the publisher made the record, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// What changed, for people.
    pub message: String,
}

impl VersionRecord {
    /// Checks every rule that needs nothing but the record.
    pub fn validate(&self) -> Result<(), RecordError> {
        if self.format != RECORD_VERSION {
            return Err(RecordError::Format { found: self.format });
        }
        check_name(&self.name)?;
        if self.version == 0 {
            return Err(invalid("version", "versions count from 1"));
        }
        match (self.version, &self.parent) {
            (1, Some(_)) => return Err(invalid("parent", "version 1 has no parent")),
            (n, None) if n > 1 => {
                return Err(invalid(
                    "parent",
                    format!("version {n} needs a parent record"),
                ));
            }
            _ => {}
        }
        check_block_cid("manifest", &self.manifest)?;
        if let Some(parent) = &self.parent {
            check_block_cid("parent", parent)?;
        }
        if self.message.len() > MAX_MESSAGE_BYTES {
            return Err(invalid(
                "message",
                format!("{} bytes; at most {MAX_MESSAGE_BYTES}", self.message.len()),
            ));
        }
        if self
            .message
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(invalid(
                "message",
                "control characters other than newline and tab",
            ));
        }
        Ok(())
    }

    /// Signs the record with the publisher's key, which must be the record's publisher.
    pub fn sign(self, signer: &SigningKey) -> Result<SignedRecord, RecordError> {
        if PublisherKey::of(signer) != self.publisher {
            return Err(invalid(
                "publisher",
                "the signing key is not the record's publisher",
            ));
        }
        self.sign_as(signer)
    }

    /// Signs the record with `key`: the publisher's own, or a key it rotated to (named in the
    /// signed record; whether it signs for the publisher at the record's time is for whoever
    /// knows the publisher's rotations to check, [`SignedRecord::check_key`]).
    pub fn sign_as(self, key: &SigningKey) -> Result<SignedRecord, RecordError> {
        self.validate()?;
        let signer = PublisherKey::of(key);
        let signature = signed::sign(SIGNING_DOMAIN, &self, key)?;
        Ok(SignedRecord {
            signer: (signer != self.publisher).then_some(signer),
            record: self,
            signature,
        })
    }
}

fn check_block_cid(field: &'static str, cid: &Cid) -> Result<(), RecordError> {
    HashFn::of(cid).map_err(|e| invalid(field, e.to_string()))?;
    if cid.codec() != DAG_CBOR {
        return Err(invalid(field, format!("{cid} is not a DAG-CBOR block")));
    }
    Ok(())
}

/// A version record with its publisher's signature: what registries store and exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedRecord {
    /// The record.
    pub record: VersionRecord,
    /// Ed25519 signature (64 bytes) over the signing domain and the record's DAG-CBOR.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
    /// The key that signed, when it is not the publisher's own: one the publisher rotated to
    /// ([`crate::rotation`]). Absent otherwise, so that records signed by the publisher keep
    /// one encoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<PublisherKey>,
}

impl SignedRecord {
    /// The key that signed the record.
    pub fn signing_key(&self) -> PublisherKey {
        self.signer.unwrap_or(self.record.publisher)
    }

    /// Checks the record's rules and its signature (by the publisher, or by the key it names;
    /// see [`SignedRecord::check_key`] for whether that key may sign).
    pub fn verify(&self) -> Result<(), RecordError> {
        self.record.validate()?;
        if self.signer == Some(self.record.publisher) {
            return Err(invalid(
                "signer",
                "named only when it is not the publisher's own key",
            ));
        }
        let key = self.signing_key();
        if !signed::verifies(SIGNING_DOMAIN, &self.record, &key.0, &self.signature)? {
            return Err(RecordError::BadSignature { publisher: key });
        }
        Ok(())
    }

    /// Checks that the signing key signs for the publisher at the record's time, given the
    /// publisher's rotations (checked as a chain, [`crate::rotation::check_chain`]).
    pub fn check_key(
        &self,
        rotations: &[crate::rotation::SignedRotation],
    ) -> Result<(), RecordError> {
        let r = &self.record;
        let expected = crate::rotation::key_at(&r.publisher, rotations, r.time_ms);
        let signer = self.signing_key();
        if signer != expected {
            return Err(RecordError::WrongKey(format!(
                "version {} of {}/{} is signed by {signer}, but at its time {expected} signs for that publisher",
                r.version, r.publisher, r.name
            )));
        }
        Ok(())
    }

    /// Encodes the signed record as a DAG-CBOR block; returns its CID and bytes.
    pub fn to_block(&self) -> Result<(Cid, Vec<u8>), RecordError> {
        self.verify()?;
        Ok(block::encode_bounded(self, MAX_RECORD_BYTES)?)
    }

    /// Decodes a record block and checks its rules and signature.
    pub fn from_block(bytes: &[u8]) -> Result<Self, RecordError> {
        let signed: Self = block::decode(bytes, MAX_RECORD_BYTES)?;
        signed.verify()?;
        Ok(signed)
    }

    /// Checks that this record is the next one after `parent`, whose block has CID
    /// `parent_cid`: same publisher and name, the next version number, naming it as parent.
    pub fn check_follows(
        &self,
        parent: &SignedRecord,
        parent_cid: &Cid,
    ) -> Result<(), RecordError> {
        let (r, p) = (&self.record, &parent.record);
        if r.publisher != p.publisher || r.name != p.name {
            return Err(RecordError::BrokenChain(format!(
                "the parent belongs to {}/{}, not {}/{}",
                p.publisher, p.name, r.publisher, r.name
            )));
        }
        if r.parent.as_ref() != Some(parent_cid) {
            return Err(RecordError::BrokenChain(format!(
                "version {} names parent {:?}, not {parent_cid}",
                r.version,
                r.parent.map(|c| c.to_string())
            )));
        }
        if Some(r.version) != p.version.checked_add(1) {
            return Err(RecordError::BrokenChain(format!(
                "version {} cannot follow version {}",
                r.version, p.version
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::address::dag_cbor_cid;

    pub(crate) fn signer(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    pub(crate) fn record(signer: &SigningKey, version: u64, parent: Option<Cid>) -> VersionRecord {
        VersionRecord {
            format: RECORD_VERSION,
            publisher: PublisherKey::of(signer),
            name: "web-text".into(),
            version,
            manifest: dag_cbor_cid(format!("manifest {version}").as_bytes()),
            parent,
            time_ms: 1_790_000_000_000 + version,
            message: format!("version {version}\nwith notes"),
        }
    }

    #[test]
    fn signed_records_round_trip_and_chain() {
        let key = signer(1);
        let v1 = record(&key, 1, None).sign(&key).unwrap();
        let (cid1, bytes1) = v1.to_block().unwrap();
        assert_eq!(SignedRecord::from_block(&bytes1).unwrap(), v1);
        let v2 = record(&key, 2, Some(cid1)).sign(&key).unwrap();
        v2.check_follows(&v1, &cid1).unwrap();
        let (cid2, _) = v2.to_block().unwrap();
        // Skipping a version, naming another parent or another dataset breaks the chain.
        let v3 = record(&key, 3, Some(cid2)).sign(&key).unwrap();
        assert!(matches!(
            v3.check_follows(&v1, &cid1),
            Err(RecordError::BrokenChain(_))
        ));
        let other = {
            let mut r = record(&key, 2, Some(cid1));
            r.name = "other".into();
            r.sign(&key).unwrap()
        };
        assert!(other.check_follows(&v1, &cid1).is_err());
        assert!(v2.check_follows(&v1, &cid2).is_err());
    }

    #[test]
    fn forged_records_are_refused() {
        let (key, mallory) = (signer(1), signer(2));
        let v1 = record(&key, 1, None).sign(&key).unwrap();
        // Any changed field breaks the signature.
        type Mutation = fn(&mut VersionRecord);
        let mutations: Vec<Mutation> = vec![
            |r| r.version = 2,
            |r| r.name = "web-text2".into(),
            |r| r.manifest = dag_cbor_cid(b"other"),
            |r| r.time_ms += 1,
            |r| r.message.push('!'),
            |r| r.publisher = PublisherKey::of(&signer(2)),
        ];
        for mutate in mutations {
            let mut forged = v1.clone();
            mutate(&mut forged.record);
            assert!(forged.verify().is_err(), "{:?}", forged.record);
            let bytes = block::encode(&forged).unwrap();
            assert!(SignedRecord::from_block(&bytes).is_err());
        }
        // A key cannot sign for another publisher.
        assert!(record(&key, 1, None).sign(&mallory).is_err());
        // A record signed by another key under the real publisher's name fails.
        let mut stolen = record(&mallory, 1, None).sign(&mallory).unwrap();
        stolen.record.publisher = PublisherKey::of(&key);
        assert!(matches!(
            stolen.verify(),
            Err(RecordError::BadSignature { .. })
        ));
        // Truncated or extended signatures fail.
        let mut short = v1.clone();
        short.signature.pop();
        assert!(short.verify().is_err());
    }

    #[test]
    fn rules_are_enforced() {
        let key = signer(1);
        type Mutation = fn(&mut VersionRecord);
        let cases: Vec<(Mutation, &str)> = vec![
            (|r| r.format = 2, "format"),
            (|r| r.name = "Web".into(), "name"),
            (|r| r.name = "a/b".into(), "name"),
            (|r| r.name = "-a".into(), "name"),
            (|r| r.name = "a".repeat(65), "name"),
            (|r| r.version = 0, "version"),
            (|r| r.parent = Some(dag_cbor_cid(b"p")), "parent"),
            (|r| r.version = 2, "parent"),
            (|r| r.manifest = crate::address::raw_cid(b"m"), "manifest"),
            (|r| r.message = "x".repeat(MAX_MESSAGE_BYTES + 1), "message"),
            (|r| r.message = "bell\u{7}".into(), "message"),
        ];
        for (mutate, needle) in cases {
            let mut r = record(&key, 1, None);
            mutate(&mut r);
            let err = r.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} should mention {needle:?}");
            assert!(r.sign(&key).is_err());
        }
    }

    #[test]
    fn malformed_blocks_are_refused() {
        let key = signer(1);
        let (_, bytes) = record(&key, 1, None)
            .sign(&key)
            .unwrap()
            .to_block()
            .unwrap();
        for cut in 0..bytes.len() {
            assert!(SignedRecord::from_block(&bytes[..cut]).is_err());
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(SignedRecord::from_block(&trailing).is_err());
        let big = vec![0u8; MAX_RECORD_BYTES + 1];
        assert!(matches!(
            SignedRecord::from_block(&big),
            Err(RecordError::Block(BlockError::TooLarge { .. }))
        ));
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            // A flipped bit either fails to parse or fails the signature: never accepted.
            assert!(
                SignedRecord::from_block(&b).is_err(),
                "flip at {i} accepted"
            );
        }
        // Wrong types: a record whose version is a string.
        #[derive(Serialize)]
        struct Wrong<'a> {
            record: WrongRecord<'a>,
            #[serde(with = "serde_bytes")]
            signature: Vec<u8>,
        }
        #[derive(Serialize)]
        struct WrongRecord<'a> {
            format: u64,
            publisher: serde_bytes::ByteBuf,
            name: &'a str,
            version: &'a str,
        }
        let wrong = block::encode(&Wrong {
            record: WrongRecord {
                format: 1,
                publisher: serde_bytes::ByteBuf::from(vec![0u8; 32]),
                name: "x",
                version: "3",
            },
            signature: vec![0; 64],
        })
        .unwrap();
        assert!(matches!(
            SignedRecord::from_block(&wrong),
            Err(RecordError::Block(BlockError::Malformed(_)))
        ));
    }

    #[test]
    fn publisher_keys_print_and_parse() {
        let key = PublisherKey::of(&signer(7));
        let text = key.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<PublisherKey>().unwrap(), key);
        assert!(key.has_prefix(&text[..8]));
        assert!("zz".repeat(32).parse::<PublisherKey>().is_err());
        assert!("ab".parse::<PublisherKey>().is_err());
        assert!("é".repeat(32).parse::<PublisherKey>().is_err());
    }
}
