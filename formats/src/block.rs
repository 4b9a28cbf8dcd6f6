//! Strict DAG-CBOR blocks.
//!
//! Tessera's structured records (layouts, manifests) are DAG-CBOR with codec `0x71`, so IPLD
//! tools can read them. The encoder sorts map keys as DAG-CBOR requires, so one value has one
//! encoding and one CID. The decoder is strict: the size limit is checked before any parsing,
//! unknown fields and wrong types are refused by the typed schema, and a block must be exactly
//! the canonical encoding of what it decodes to, which refuses trailing bytes, duplicate or
//! unsorted keys and non-minimal integers alike.

use cid::Cid;
use serde::{Serialize, de::DeserializeOwned};

use crate::address::dag_cbor_cid;

/// A block that cannot be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
    /// Larger than the limit for its kind, checked before parsing.
    #[error("block of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// The block's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not valid DAG-CBOR for the expected type (wrong types, missing or unknown fields,
    /// truncated input).
    #[error("malformed block: {0}")]
    Malformed(String),
    /// Valid, but not in canonical form (extra bytes after the value, unsorted or duplicate
    /// keys, non-minimal lengths).
    #[error("block is not canonical DAG-CBOR ({len} bytes; canonical form is {canonical_len})")]
    NotCanonical {
        /// The block's length.
        len: usize,
        /// The canonical encoding's length.
        canonical_len: usize,
    },
    /// The value cannot be encoded (a bug in the caller's value, such as a non-finite float).
    #[error("cannot encode block: {0}")]
    Encode(String),
}

/// Encodes a value as canonical DAG-CBOR.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, BlockError> {
    serde_ipld_dagcbor::to_vec(value).map_err(|e| BlockError::Encode(e.to_string()))
}

/// Encodes a value and returns its CID (DAG-CBOR, BLAKE3) with the bytes.
pub fn encode_with_cid<T: Serialize>(value: &T) -> Result<(Cid, Vec<u8>), BlockError> {
    let bytes = encode(value)?;
    Ok((dag_cbor_cid(&bytes), bytes))
}

/// Encodes a value as a block of at most `max` bytes; returns its CID and the bytes.
pub fn encode_bounded<T: Serialize>(value: &T, max: usize) -> Result<(Cid, Vec<u8>), BlockError> {
    let (cid, bytes) = encode_with_cid(value)?;
    if bytes.len() > max {
        return Err(BlockError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    Ok((cid, bytes))
}

/// Decodes a block of at most `max` bytes that must be the canonical encoding of a `T`.
pub fn decode<T: DeserializeOwned + Serialize>(bytes: &[u8], max: usize) -> Result<T, BlockError> {
    if bytes.len() > max {
        return Err(BlockError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    let value: T =
        serde_ipld_dagcbor::from_slice(bytes).map_err(|e| BlockError::Malformed(describe(e)))?;
    let canonical = encode(&value)?;
    if canonical != bytes {
        return Err(BlockError::NotCanonical {
            len: bytes.len(),
            canonical_len: canonical.len(),
        });
    }
    Ok(value)
}

/// The decoder's error in words (its own `Display` is its `Debug`).
fn describe<E: std::fmt::Debug>(e: serde_ipld_dagcbor::DecodeError<E>) -> String {
    use serde_ipld_dagcbor::DecodeError as D;
    match e {
        D::Msg(message) => message,
        D::TrailingData => "trailing bytes after the value".into(),
        D::Eof { name, .. } => format!("truncated in a {name}"),
        D::Mismatch { name, found } | D::Unsupported { name, found } => {
            format!("expected {name}, found byte 0x{found:02x}")
        }
        D::DepthOverflow { .. } => "nested too deeply".into(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        zz: u64,
        a: String,
        map: BTreeMap<String, u64>,
    }

    fn sample() -> Sample {
        Sample {
            zz: 7,
            a: "x".into(),
            map: [("bb".to_string(), 1), ("c".to_string(), 2)].into(),
        }
    }

    #[test]
    fn keys_are_sorted_length_first() {
        let bytes = encode(&sample()).unwrap();
        // map(3), "a" (1 char) before "zz" (2) before "map" (3); inside, "c" before "bb".
        let a = bytes.windows(2).position(|w| w == [0x61, b'a']).unwrap();
        let zz = bytes
            .windows(3)
            .position(|w| w == [0x62, b'z', b'z'])
            .unwrap();
        let map = bytes
            .windows(4)
            .position(|w| w == [0x63, b'm', b'a', b'p'])
            .unwrap();
        assert!(a < zz && zz < map);
        let c = bytes.windows(2).position(|w| w == [0x61, b'c']).unwrap();
        let bb = bytes
            .windows(3)
            .position(|w| w == [0x62, b'b', b'b'])
            .unwrap();
        assert!(c < bb);
        assert_eq!(decode::<Sample>(&bytes, 1024).unwrap(), sample());
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode(&sample()).unwrap();
        bytes.push(0);
        let err = decode::<Sample>(&bytes, 1024).unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed block: trailing bytes after the value"
        );
    }

    #[test]
    fn non_minimal_integer_is_refused() {
        // {"a": "x", "zz": 7, "map": {}} with zz encoded as a two-byte integer (0x18 0x07).
        let mut bytes = vec![0xa3, 0x61, b'a', 0x61, b'x', 0x62, b'z', b'z', 0x18, 0x07];
        bytes.extend([0x63, b'm', b'a', b'p', 0xa0]);
        let err = decode::<Sample>(&bytes, 1024).unwrap_err();
        assert!(
            matches!(
                err,
                BlockError::NotCanonical { .. } | BlockError::Malformed(_)
            ),
            "{err:?}"
        );
    }

    #[test]
    fn unsorted_keys_are_refused() {
        let mut bytes = vec![0xa3, 0x62, b'z', b'z', 0x07, 0x61, b'a', 0x61, b'x'];
        bytes.extend([0x63, b'm', b'a', b'p', 0xa0]);
        let err = decode::<Sample>(&bytes, 1024).unwrap_err();
        assert!(
            matches!(
                err,
                BlockError::NotCanonical { .. } | BlockError::Malformed(_)
            ),
            "{err:?}"
        );
    }

    #[test]
    fn unknown_fields_wrong_types_and_oversize_are_refused() {
        let mut bytes = vec![0xa4, 0x61, b'a', 0x61, b'x', 0x61, b'q', 0x01];
        bytes.extend([0x62, b'z', b'z', 0x07, 0x63, b'm', b'a', b'p', 0xa0]);
        assert!(matches!(
            decode::<Sample>(&bytes, 1024),
            Err(BlockError::Malformed(_))
        ));
        // zz as a string
        let mut bytes = vec![0xa3, 0x61, b'a', 0x61, b'x', 0x62, b'z', b'z', 0x61, b'7'];
        bytes.extend([0x63, b'm', b'a', b'p', 0xa0]);
        assert!(matches!(
            decode::<Sample>(&bytes, 1024),
            Err(BlockError::Malformed(_))
        ));
        let bytes = encode(&sample()).unwrap();
        assert_eq!(
            decode::<Sample>(&bytes, 4),
            Err(BlockError::TooLarge {
                len: bytes.len(),
                max: 4
            })
        );
        // An array header that claims 2^62 elements with no bytes behind it.
        let huge = [0xa3, 0x61, b'a', 0x9b, 0x40, 0, 0, 0, 0, 0, 0, 0];
        assert!(decode::<Sample>(&huge, 1024).is_err());
    }
}
