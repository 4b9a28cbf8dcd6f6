//! The storage core across crates: a file is erasure-coded into pieces (formats), every piece
//! is challenged and proven against its CID from the layout (proofs), the dataset version that
//! lists it survives a round trip as a block, and the file comes back from any k pieces on disk.

#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeMap,
    fs::{self, File},
    io::{BufReader, BufWriter},
};

use tessera_formats::{
    Manifest,
    address::{HashFn, hash_reader},
    erasure::{self, ErasureParams},
    manifest::{MANIFEST_VERSION, ShardEntry},
};
use tessera_proofs::{Challenge, Outboard, prove, verify};
use tessera_tests::sample_bytes;

#[test]
fn pieces_on_disk_are_provable_and_rebuild_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = sample_bytes("store and prove", 3 * 1024 * 1024 + 123);
    let original = dir.path().join("shard.bin");
    fs::write(&original, &data).unwrap();

    let params = ErasureParams::new(4, 2, 256 * 1024).unwrap();
    let paths: Vec<_> = (0..6)
        .map(|i| dir.path().join(format!("piece-{i}")))
        .collect();
    let layout = {
        let mut sinks: Vec<_> = paths
            .iter()
            .map(|p| BufWriter::new(File::create(p).unwrap()))
            .collect();
        let input = BufReader::new(File::open(&original).unwrap());
        erasure::encode(params, data.len() as u64, input, &mut sinks).unwrap()
    };
    let (file_cid, _) = hash_reader(File::open(&original).unwrap(), HashFn::Blake3).unwrap();
    assert_eq!(layout.content, file_cid);

    // Every piece on disk answers a fresh challenge, checked against the layout's CID alone;
    // a proof for one piece does not pass for another.
    let mut proofs = Vec::new();
    for (path, cid) in paths.iter().zip(&layout.pieces) {
        let file = File::open(path).unwrap();
        let (outboard, root) = Outboard::compute(&file).unwrap();
        assert_eq!(
            Some(*root.as_bytes()),
            tessera_formats::address::blake3_digest(cid)
        );
        let challenge = Challenge::random(*cid);
        let proof = prove(&challenge, &file, &outboard).unwrap();
        verify(&challenge, &proof).unwrap();
        proofs.push((challenge, proof));
    }
    let (c0, _) = &proofs[0];
    let (_, p1) = &proofs[1];
    assert!(verify(c0, p1).is_err());

    // The manifest naming the shard round-trips with a stable CID.
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        schema: None,
        shards: vec![ShardEntry {
            name: "shard.bin".into(),
            rows: 0,
            row_groups: vec![],
            layout: layout.clone(),
            degraded: None,
        }],
        parent: None,
        created_ms: 1,
        metadata: BTreeMap::new(),
    };
    let (cid, bytes) = manifest.to_block().unwrap();
    let back = Manifest::from_block(&bytes).unwrap();
    assert_eq!(back.to_block().unwrap().0, cid);

    // Lose two data pieces; the file comes back byte for byte from the other four.
    fs::remove_file(&paths[0]).unwrap();
    fs::remove_file(&paths[1]).unwrap();
    let mut sources: Vec<_> = paths
        .iter()
        .map(|p| File::open(p).ok().map(BufReader::new))
        .collect();
    let mut out = Vec::new();
    let report = erasure::decode(&back.shards[0].layout, &mut sources, &mut out).unwrap();
    assert!(report.reconstructed);
    assert_eq!(report.missing, vec![0, 1]);
    assert_eq!(out, data);
}
