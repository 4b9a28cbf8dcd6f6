//! Manifests round-trip through their DAG-CBOR blocks, one manifest has one CID, and decoding
//! never panics on damaged input.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use tessera_formats::{
    Manifest,
    address::dag_cbor_cid,
    erasure::{ErasureParams, encode_to_vecs},
    manifest::{MANIFEST_VERSION, RowGroup, Schema, ShardEntry},
};

fn shard(name: String, len: usize, k: u16, m: u16, groups: u64) -> ShardEntry {
    let data: Vec<u8> = (0..len).map(|i| u8::try_from(i % 241).unwrap()).collect();
    let layout = encode_to_vecs(ErasureParams::new(k, m, 1024).unwrap(), &data)
        .unwrap()
        .0;
    let size = len as u64;
    let groups = if size == 0 { 0 } else { groups.min(size) };
    let row_groups: Vec<RowGroup> = (0..groups)
        .map(|g| RowGroup {
            offset: g * (size / groups.max(1)),
            size: size / groups.max(1),
            rows: g + 1,
        })
        .collect();
    ShardEntry {
        name,
        rows: row_groups.iter().map(|r| r.rows).sum(),
        row_groups,
        layout,
        degraded: None,
    }
}

fn manifest_strategy() -> impl Strategy<Value = Manifest> {
    let shards = prop::collection::btree_map(
        "[a-z0-9_]{1,12}(/[a-z0-9_.-]{1,12})?\\.parquet",
        (0usize..5000, 1u16..6, 1u16..4, 0u64..5),
        0..6,
    );
    let metadata = prop::collection::btree_map("[a-zA-Z0-9 ._-]{0,20}", ".{0,40}", 0..6);
    (
        shards,
        metadata,
        any::<u64>(),
        any::<bool>(),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..64)),
    )
        .prop_map(
            |(shards, metadata, created_ms, has_parent, schema)| Manifest {
                version: MANIFEST_VERSION,
                schema: schema.map(|bytes| Schema {
                    format: "arrow-ipc".into(),
                    bytes,
                }),
                shards: shards
                    .into_iter()
                    .map(|(name, (len, k, m, g))| shard(name, len, k, m, g))
                    .collect(),
                parent: has_parent.then(|| dag_cbor_cid(b"previous version")),
                created_ms,
                metadata: metadata.into_iter().collect::<BTreeMap<_, _>>(),
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trip_and_stable_cid(m in manifest_strategy()) {
        let (cid, bytes) = m.to_block().unwrap();
        let back = Manifest::from_block(&bytes).unwrap();
        prop_assert_eq!(&back, &m);
        let (cid2, bytes2) = back.to_block().unwrap();
        prop_assert_eq!(cid, cid2);
        prop_assert_eq!(bytes, bytes2);
    }

    #[test]
    fn damaged_blocks_never_panic(
        m in manifest_strategy(),
        at in any::<usize>(),
        byte in any::<u8>(),
        cut in any::<usize>(),
    ) {
        let (_, bytes) = m.to_block().unwrap();
        let mut damaged = bytes.clone();
        let i = at % damaged.len();
        damaged[i] = byte;
        if let Ok(other) = Manifest::from_block(&damaged) {
            // A change that still decodes is a different, valid manifest with its own bytes.
            prop_assert_eq!(other.to_block().unwrap().1, damaged);
        }
        let cut = cut % bytes.len();
        prop_assert!(Manifest::from_block(&bytes[..cut]).is_err());
        let mut extended = bytes;
        extended.push(byte);
        prop_assert!(Manifest::from_block(&extended).is_err());
    }
}
