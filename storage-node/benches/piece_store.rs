//! Piece bytes in files indexed by RocksDB (Tessera's store) against piece bytes in RocksDB's
//! integrated blob files, in one run on the same disk: durable writes of whole pieces, and
//! 64 KiB range reads (what a verifiable range or a proof sample costs).
//!
//! `cargo bench -p tessera-storage-node --bench piece_store`

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::cast_possible_truncation
)]

use std::{hint::black_box, os::unix::fs::FileExt as _, time::Instant};

use rocksdb::{DB, Options, WriteOptions};
use tessera_formats::address::raw_cid;
use tessera_storage_node::{PieceStore, StoreConfig};

const PIECES: usize = 48;
const PIECE: usize = 4 << 20;
const RANGE: usize = 64 << 10;
const READS: usize = 2000;

fn piece(i: usize) -> Vec<u8> {
    let mut out = vec![0u8; PIECE];
    blake3::Hasher::new_derive_key("tessera piece store bench")
        .update(&(i as u64).to_le_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

fn offsets(n: usize) -> impl Iterator<Item = (usize, usize)> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n).map(move |_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (
            (x % PIECES as u64) as usize,
            ((x >> 20) as usize) % (PIECE - RANGE),
        )
    })
}

fn mbps(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

fn main() {
    let pieces: Vec<Vec<u8>> = (0..PIECES).map(piece).collect();
    let cids: Vec<_> = pieces.iter().map(|p| raw_cid(p)).collect();
    let total = PIECES * PIECE;

    // Files indexed by RocksDB.
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = PieceStore::open(&StoreConfig {
        dir: dir.path().to_path_buf(),
        capacity: u64::MAX,
        max_piece: u64::MAX,
    })
    .unwrap();
    let t = Instant::now();
    for (p, cid) in pieces.iter().zip(&cids) {
        let mut upload = store.begin_upload(*cid, p.len() as u64).unwrap();
        upload.write(0, p).unwrap();
        upload.finish().unwrap();
    }
    let files_write = t.elapsed().as_secs_f64();
    let opened: Vec<_> = cids.iter().map(|c| store.open_piece(c).unwrap()).collect();
    let mut buf = vec![0u8; RANGE];
    let t = Instant::now();
    for (i, off) in offsets(READS) {
        opened[i].file.read_exact_at(&mut buf, off as u64).unwrap();
        black_box(&buf);
    }
    let files_read = t.elapsed().as_secs_f64();

    // RocksDB integrated blob files.
    let blob_dir = tempfile::tempdir().unwrap();
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.set_enable_blob_files(true);
    opts.set_min_blob_size(4096);
    opts.set_blob_file_size(256 << 20);
    let db = DB::open(&opts, blob_dir.path()).unwrap();
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    let t = Instant::now();
    for (p, cid) in pieces.iter().zip(&cids) {
        // The same work the file store does on the way in: hash against the CID.
        assert_eq!(raw_cid(p), *cid);
        db.put_opt(cid.to_bytes(), p, &sync).unwrap();
    }
    db.flush().unwrap();
    let blob_write = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for (i, off) in offsets(READS) {
        // A blob is read whole: the API has no partial reads of a value.
        let value = db.get_pinned(cids[i].to_bytes()).unwrap().unwrap();
        buf.copy_from_slice(&value[off..off + RANGE]);
        black_box(&buf);
    }
    let blob_read = t.elapsed().as_secs_f64();

    let read_bytes = READS * RANGE;
    println!(
        "{PIECES} pieces of {} MiB, durable writes; {READS} random {} KiB range reads",
        PIECE >> 20,
        RANGE >> 10
    );
    println!(
        "write: files {:.0} MB/s, blob files {:.0} MB/s (files / blobs = {:.2})",
        mbps(total, files_write),
        mbps(total, blob_write),
        blob_write / files_write
    );
    println!(
        "range reads: files {:.0} MB/s, blob files {:.0} MB/s (files / blobs = {:.2})",
        mbps(read_bytes, files_read),
        mbps(read_bytes, blob_read),
        blob_read / files_read
    );
}
