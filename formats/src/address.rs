//! Content addresses: CIDv1 over BLAKE3 (multihash `0x1e`) by default.
//!
//! Tessera names every byte string by a CID. New content is always addressed with BLAKE3, which
//! is many times faster than SHA-256 on machines without SHA extensions; reading also accepts
//! sha2-256 CIDs so that content addressed elsewhere in the IPFS ecosystem can be verified.
//! CIDs print in the usual multibase form (base32, `b…`).

use std::io::{self, Read};

use cid::Cid;
use multihash::Multihash;
use sha2::Digest as _;

/// Multicodec of plain bytes (pieces, shards).
pub const RAW: u64 = 0x55;
/// Multicodec of DAG-CBOR blocks (layouts, manifests, records).
pub const DAG_CBOR: u64 = 0x71;
/// Multihash code of BLAKE3 with a 32-byte digest.
pub const BLAKE3: u64 = 0x1e;
/// Multihash code of SHA-256.
pub const SHA2_256: u64 = 0x12;

/// Bytes read at a time when hashing a stream: memory stays at this size whatever the input.
const READ_BUF: usize = 256 * 1024;

/// A CID this module cannot verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// The multihash function is not one Tessera verifies.
    #[error(
        "unsupported hash function 0x{code:x} in CID {cid} (Tessera verifies blake3 and sha2-256)"
    )]
    UnsupportedHash {
        /// The CID.
        cid: Box<Cid>,
        /// Its multihash code.
        code: u64,
    },
    /// The digest has the wrong length for its hash function.
    #[error("digest of {len} bytes in CID {cid}; its hash function makes 32")]
    DigestLength {
        /// The CID.
        cid: Box<Cid>,
        /// The digest's length.
        len: usize,
    },
    /// The text is not a CID.
    #[error("not a CID: {0}")]
    Parse(#[from] cid::Error),
}

/// Content that does not match the CID it was expected to have.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The bytes hash to another CID.
    #[error("content does not match {expected}: it hashes to {actual}")]
    Mismatch {
        /// The CID the content should have had.
        expected: Box<Cid>,
        /// The CID the content has.
        actual: Box<Cid>,
    },
    /// The expected CID cannot be checked.
    #[error(transparent)]
    Address(#[from] AddressError),
    /// Reading the content failed.
    #[error("reading content: {0}")]
    Io(#[from] io::Error),
}

/// The hash functions Tessera can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashFn {
    /// BLAKE3, 32-byte digest: the default for everything Tessera addresses.
    Blake3,
    /// SHA-256: read and verified, never produced by default.
    Sha2_256,
}

impl HashFn {
    /// The multihash code.
    pub fn code(self) -> u64 {
        match self {
            HashFn::Blake3 => BLAKE3,
            HashFn::Sha2_256 => SHA2_256,
        }
    }

    /// The hash function of a CID, if Tessera can verify it.
    pub fn of(cid: &Cid) -> Result<Self, AddressError> {
        let mh = cid.hash();
        let f = match mh.code() {
            BLAKE3 => HashFn::Blake3,
            SHA2_256 => HashFn::Sha2_256,
            code => {
                return Err(AddressError::UnsupportedHash {
                    cid: Box::new(*cid),
                    code,
                });
            }
        };
        if mh.size() != 32 {
            return Err(AddressError::DigestLength {
                cid: Box::new(*cid),
                len: usize::from(mh.size()),
            });
        }
        Ok(f)
    }
}

/// An incremental hasher that ends in a CID.
#[derive(Debug, Clone)]
pub struct ContentHasher {
    codec: u64,
    state: HasherState,
    len: u64,
}

#[derive(Debug, Clone)]
enum HasherState {
    Blake3(Box<blake3::Hasher>),
    Sha2(sha2::Sha256),
}

impl ContentHasher {
    /// A hasher for content of the given codec, with the given hash function.
    pub fn new(codec: u64, hash: HashFn) -> Self {
        let state = match hash {
            HashFn::Blake3 => HasherState::Blake3(Box::default()),
            HashFn::Sha2_256 => HasherState::Sha2(sha2::Sha256::new()),
        };
        Self {
            codec,
            state,
            len: 0,
        }
    }

    /// A BLAKE3 hasher for raw bytes: the default for pieces and shards.
    pub fn raw() -> Self {
        Self::new(RAW, HashFn::Blake3)
    }

    /// Feeds more content.
    pub fn update(&mut self, bytes: &[u8]) {
        self.len += bytes.len() as u64;
        match &mut self.state {
            HasherState::Blake3(h) => {
                h.update(bytes);
            }
            HasherState::Sha2(h) => h.update(bytes),
        }
    }

    /// How many bytes were fed.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was fed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The CID of everything fed so far.
    pub fn finish(&self) -> Cid {
        let (code, digest): (u64, [u8; 32]) = match &self.state {
            HasherState::Blake3(h) => (BLAKE3, *h.finalize().as_bytes()),
            HasherState::Sha2(h) => (SHA2_256, h.clone().finalize().into()),
        };
        cid_from_digest(self.codec, code, &digest)
    }
}

fn cid_from_digest(codec: u64, code: u64, digest: &[u8; 32]) -> Cid {
    // A 32-byte digest always fits a `Multihash<64>`.
    let mh = Multihash::<64>::wrap(code, digest).unwrap_or_default();
    Cid::new_v1(codec, mh)
}

/// The CID of a BLAKE3 digest of content with the given codec.
pub fn cid_from_blake3(codec: u64, hash: &blake3::Hash) -> Cid {
    cid_from_digest(codec, BLAKE3, hash.as_bytes())
}

/// The BLAKE3 CID of raw bytes held in memory.
pub fn raw_cid(bytes: &[u8]) -> Cid {
    cid_from_blake3(RAW, &blake3::hash(bytes))
}

/// The BLAKE3 CID of a DAG-CBOR block held in memory.
pub fn dag_cbor_cid(block: &[u8]) -> Cid {
    cid_from_blake3(DAG_CBOR, &blake3::hash(block))
}

/// Feeds a stream to `hasher` to its end, [`READ_BUF`] bytes at a time.
pub(crate) fn feed(reader: &mut impl Read, hasher: &mut ContentHasher) -> io::Result<()> {
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
    }
}

/// The CID of a stream of raw bytes, read in bounded memory. Returns the CID and the byte count.
pub fn hash_reader(mut reader: impl Read, hash: HashFn) -> io::Result<(Cid, u64)> {
    let mut hasher = ContentHasher::new(RAW, hash);
    feed(&mut reader, &mut hasher)?;
    Ok((hasher.finish(), hasher.len()))
}

/// The 32-byte BLAKE3 digest a CID names, if it is a BLAKE3 CID.
pub fn blake3_digest(cid: &Cid) -> Option<[u8; 32]> {
    let mh = cid.hash();
    if mh.code() != BLAKE3 {
        return None;
    }
    mh.digest().try_into().ok()
}

/// Checks bytes held in memory against a CID (BLAKE3 or SHA-256, any codec).
pub fn verify(expected: &Cid, bytes: &[u8]) -> Result<(), VerifyError> {
    let mut hasher = ContentHasher::new(expected.codec(), HashFn::of(expected)?);
    hasher.update(bytes);
    check(expected, &hasher)
}

/// Checks a stream against a CID in bounded memory.
pub fn verify_reader(expected: &Cid, mut reader: impl Read) -> Result<u64, VerifyError> {
    let mut hasher = ContentHasher::new(expected.codec(), HashFn::of(expected)?);
    feed(&mut reader, &mut hasher)?;
    check(expected, &hasher)?;
    Ok(hasher.len())
}

fn check(expected: &Cid, hasher: &ContentHasher) -> Result<(), VerifyError> {
    let actual = hasher.finish();
    if actual.hash() == expected.hash() {
        Ok(())
    } else {
        Err(VerifyError::Mismatch {
            expected: Box::new(*expected),
            actual: Box::new(actual),
        })
    }
}

/// Parses a CID in any multibase form (and CIDv0), refusing hash functions Tessera cannot verify.
pub fn parse(text: &str) -> Result<Cid, AddressError> {
    let cid = Cid::try_from(text.trim())?;
    HashFn::of(&cid)?;
    Ok(cid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blake3_cid_of_empty_input_is_stable() {
        // CIDv1, raw codec, BLAKE3 digest of "": af1349b9…
        let cid = raw_cid(b"");
        assert_eq!(cid.version(), cid::Version::V1);
        assert_eq!(cid.codec(), RAW);
        assert_eq!(cid.hash().code(), BLAKE3);
        assert_eq!(
            hex_digest(&cid),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        let text = cid.to_string();
        assert_eq!(
            text,
            "bafkr4ifpcne3t5pzugtkaqcn5i3nzskjtpfslsnnyejlpte2spfoihzsmi"
        );
        assert_eq!(parse(&text).unwrap(), cid);
    }

    #[test]
    fn sha2_cids_are_read_and_verified() {
        // The IPFS CID of "hello world\n" as raw bytes with sha2-256.
        let cid = parse("bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4").unwrap();
        assert_eq!(HashFn::of(&cid).unwrap(), HashFn::Sha2_256);
        verify(&cid, b"hello world\n").unwrap();
        assert!(matches!(
            verify(&cid, b"hello world"),
            Err(VerifyError::Mismatch { .. })
        ));
        // CIDv0 (dag-pb, base58) parses too.
        let v0 = parse("QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o").unwrap();
        assert_eq!(v0.version(), cid::Version::V0);
    }

    #[test]
    fn streaming_hash_equals_one_shot_hash() {
        let data: Vec<u8> = (0..3 * READ_BUF + 17)
            .map(|i| u8::try_from(i * 31 % 251).unwrap())
            .collect();
        let (cid, len) = hash_reader(&data[..], HashFn::Blake3).unwrap();
        assert_eq!(cid, raw_cid(&data));
        assert_eq!(len, data.len() as u64);
        assert_eq!(verify_reader(&cid, &data[..]).unwrap(), len);
    }

    #[test]
    fn unsupported_hashes_and_garbage_are_refused() {
        // identity multihash (0x00)
        let mh = Multihash::<64>::wrap(0x00, b"abc").unwrap();
        let cid = Cid::new_v1(RAW, mh);
        assert!(matches!(
            parse(&cid.to_string()),
            Err(AddressError::UnsupportedHash { code: 0, .. })
        ));
        // blake3 with a truncated digest
        let mh = Multihash::<64>::wrap(BLAKE3, &[7u8; 16]).unwrap();
        let cid = Cid::new_v1(RAW, mh);
        assert!(matches!(
            parse(&cid.to_string()),
            Err(AddressError::DigestLength { len: 16, .. })
        ));
        assert!(matches!(parse("not a cid"), Err(AddressError::Parse(_))));
        assert!(matches!(parse(""), Err(AddressError::Parse(_))));
    }

    fn hex_digest(cid: &Cid) -> String {
        cid.hash()
            .digest()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}
