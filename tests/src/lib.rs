//! Helpers shared by Tessera's cross-crate integration tests (the tests are in `tests/`).

/// Deterministic pseudo-random bytes for test data: the same `(label, len)` always gives the
/// same bytes, and different labels give unrelated bytes.
pub fn sample_bytes(label: &str, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new_derive_key(label)
        .finalize_xof()
        .fill(&mut out);
    out
}
