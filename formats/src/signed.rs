//! Ed25519 signatures over a domain tag and a value's canonical DAG-CBOR: how version records
//! and audit receipts are signed. The tag keeps a signature over one kind of value from ever
//! counting for another.

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::Serialize;

use crate::block::{self, BlockError};

fn signing_bytes<T: Serialize>(domain: &[u8], value: &T) -> Result<Vec<u8>, BlockError> {
    let mut bytes = domain.to_vec();
    bytes.extend(block::encode(value)?);
    Ok(bytes)
}

/// The 64-byte signature of `value` under `domain` by `key`.
pub(crate) fn sign<T: Serialize>(
    domain: &[u8],
    value: &T,
    key: &SigningKey,
) -> Result<Vec<u8>, BlockError> {
    Ok(key.sign(&signing_bytes(domain, value)?).to_bytes().to_vec())
}

/// Whether `signature` is `public`'s signature of `value` under `domain` (strict Ed25519:
/// no malleable or small-order forms).
pub(crate) fn verifies<T: Serialize>(
    domain: &[u8],
    value: &T,
    public: &[u8; 32],
    signature: &[u8],
) -> Result<bool, BlockError> {
    let (Ok(key), Ok(signature)) = (
        VerifyingKey::from_bytes(public),
        <[u8; 64]>::try_from(signature),
    ) else {
        return Ok(false);
    };
    Ok(key
        .verify_strict(
            &signing_bytes(domain, value)?,
            &Signature::from_bytes(&signature),
        )
        .is_ok())
}
