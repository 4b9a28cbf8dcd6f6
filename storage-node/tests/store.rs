//! The piece store on real RocksDB in temporary directories: pieces are acknowledged only when
//! whole and matching their CID, limits are enforced up front, and every crash leftover is put
//! right at the next start.

#![allow(clippy::unwrap_used)]

use std::{fs, io::Read as _, path::Path};

use tessera_formats::address::raw_cid;
use tessera_proofs::{ByteRange, prove_range, verify_range};
use tessera_storage_node::{PieceStore, StoreConfig, StoreError};

fn config(dir: &Path, capacity: u64) -> StoreConfig {
    StoreConfig {
        dir: dir.to_path_buf(),
        capacity,
        max_piece: 1 << 20,
    }
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| u8::try_from(i % 251).unwrap() ^ seed)
        .collect()
}

fn put(store: &PieceStore, data: &[u8]) -> Result<(), StoreError> {
    let cid = raw_cid(data);
    let mut upload = store.begin_upload(cid, data.len() as u64)?;
    let mut offset = 0;
    for chunk in data.chunks(7000) {
        offset = upload.write(offset, chunk)?;
    }
    upload.finish()
}

fn files_under(dir: &Path) -> usize {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            if p.is_dir() { files_under(&p) } else { 1 }
        })
        .sum()
}

#[test]
fn pieces_round_trip_and_serve_verified_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let (store, report) = PieceStore::open(&config(dir.path(), 1 << 30)).unwrap();
    assert_eq!(report.pieces, 0);
    let data = bytes(100_000, 1);
    let cid = raw_cid(&data);
    put(&store, &data).unwrap();
    assert_eq!(store.has(&cid).unwrap(), Some(100_000));
    assert_eq!(store.usage().used, 100_000);
    assert_eq!(store.usage().reserved, 0);

    let mut piece = store.open_piece(&cid).unwrap();
    let range = ByteRange {
        start: 5000,
        len: 20_000,
    };
    let body = prove_range(&piece.file, &piece.outboard, range).unwrap();
    assert_eq!(
        verify_range(&cid, piece.size, range, &body).unwrap(),
        &data[5000..25_000]
    );
    let mut all = Vec::new();
    piece.file.read_to_end(&mut all).unwrap();
    assert_eq!(all, data);

    // Survives a restart.
    drop(piece);
    drop(store);
    let (store, report) = PieceStore::open(&config(dir.path(), 1 << 30)).unwrap();
    assert_eq!(report.pieces, 1);
    assert!(report.missing.is_empty() && report.recovered.is_empty());
    assert_eq!(store.has(&cid).unwrap(), Some(100_000));
    // Served, removed and no longer served, then served again once put again.
    let proves = |store: &PieceStore| {
        let piece = store.open_piece(&cid)?;
        let body = prove_range(&piece.file, &piece.outboard, range).unwrap();
        assert_eq!(
            verify_range(&cid, piece.size, range, &body).unwrap(),
            &data[5000..25_000]
        );
        Ok::<_, StoreError>(())
    };
    proves(&store).unwrap();
    assert!(store.remove(&cid).unwrap());
    assert_eq!(store.has(&cid).unwrap(), None);
    assert_eq!(store.usage().used, 0);
    assert!(matches!(proves(&store), Err(StoreError::NotFound(_))));
    put(&store, &data).unwrap();
    proves(&store).unwrap();
}

#[test]
fn bad_uploads_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = PieceStore::open(&config(dir.path(), 1 << 30)).unwrap();
    let data = bytes(50_000, 2);
    let cid = raw_cid(&data);

    // Bytes that do not match the CID.
    let mut upload = store.begin_upload(cid, 50_000).unwrap();
    let mut wrong = data.clone();
    wrong[100] ^= 1;
    upload.write(0, &wrong).unwrap();
    assert!(matches!(
        upload.finish(),
        Err(StoreError::HashMismatch { .. })
    ));

    // Out of order, too many, too few.
    let mut upload = store.begin_upload(cid, 50_000).unwrap();
    assert!(matches!(
        upload.write(10, &data[10..20]),
        Err(StoreError::OutOfOrder {
            expected: 0,
            got: 10
        })
    ));
    let mut big = data.clone();
    big.push(0);
    assert!(matches!(
        upload.write(0, &big),
        Err(StoreError::Overflow { .. })
    ));
    upload.write(0, &data[..10]).unwrap();
    assert!(matches!(
        upload.finish(),
        Err(StoreError::Incomplete { written: 10, .. })
    ));

    // Abandoned mid-way.
    let mut upload = store.begin_upload(cid, 50_000).unwrap();
    upload.write(0, &data[..1000]).unwrap();
    // Room is reserved as bytes arrive.
    assert_eq!(store.usage().reserved, 1000);
    drop(upload);

    assert_eq!(store.has(&cid).unwrap(), None);
    assert_eq!(store.usage().reserved, 0);
    assert_eq!(store.usage().used, 0);
    assert_eq!(files_under(&dir.path().join("tmp")), 0);
    assert_eq!(files_under(&dir.path().join("pieces")), 0);

    // A CID whose hash cannot back ranges and proofs.
    let (sha2_cid, _) = tessera_formats::address::hash_reader(
        &b"x"[..],
        tessera_formats::address::HashFn::Sha2_256,
    )
    .unwrap();
    assert!(matches!(
        store.begin_upload(sha2_cid, 1),
        Err(StoreError::BadCid(_))
    ));
    // DAG-CBOR blocks (layouts, manifests) are kept like raw pieces.
    let block = b"\xa1avx";
    let block_cid = tessera_formats::address::dag_cbor_cid(block);
    let mut upload = store.begin_upload(block_cid, block.len() as u64).unwrap();
    upload.write(0, block).unwrap();
    upload.finish().unwrap();
    assert_eq!(store.has(&block_cid).unwrap(), Some(block.len() as u64));
}

#[test]
fn capacity_and_size_limits_refuse_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = PieceStore::open(&config(dir.path(), 150_000)).unwrap();
    put(&store, &bytes(100_000, 3)).unwrap();
    let next = bytes(60_000, 4);
    let err = store.begin_upload(raw_cid(&next), 60_000).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::CapacityExceeded {
                needed: 60_000,
                free: 50_000
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("capacity exceeded"));
    // Room is reserved as bytes arrive: two uploads may start on the last 50,000 bytes,
    // and the one whose bytes find no room left is refused then.
    let (first, second) = (bytes(30_000, 5), bytes(30_000, 6));
    let mut a = store.begin_upload(raw_cid(&first), 30_000).unwrap();
    let mut b = store.begin_upload(raw_cid(&second), 30_000).unwrap();
    assert_eq!(store.usage().reserved, 0, "an announcement pins nothing");
    a.write(0, &first[..20_000]).unwrap();
    b.write(0, &second[..20_000]).unwrap();
    assert_eq!(store.usage().reserved, 40_000);
    a.write(20_000, &first[20_000..]).unwrap();
    let err = b.write(20_000, &second[20_000..]).unwrap_err();
    assert!(
        matches!(err, StoreError::CapacityExceeded { free: 0, .. }),
        "{err:?}"
    );
    drop(b);
    a.finish().unwrap();
    assert_eq!(store.usage().used, 130_000);
    assert_eq!(store.usage().reserved, 0);
    assert!(matches!(
        store.begin_upload(raw_cid(b"huge"), 2 << 20),
        Err(StoreError::TooLarge { .. })
    ));
}

#[test]
fn start_up_repairs_every_crash_leftover() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1 << 30);
    let kept = bytes(40_000, 7);
    let lost = bytes(40_000, 8);
    let orphan = bytes(40_000, 9);
    let (kept_cid, lost_cid, orphan_cid) = (raw_cid(&kept), raw_cid(&lost), raw_cid(&orphan));
    let orphan_path;
    {
        let (store, _) = PieceStore::open(&cfg).unwrap();
        put(&store, &kept).unwrap();
        put(&store, &lost).unwrap();
        put(&store, &orphan).unwrap();
        // A crash after the rename but before the index write: the file is there, unindexed.
        // Simulated by removing the index entry while keeping the files.
        orphan_path = find(dir.path(), &orphan_cid.to_string());
        let saved = fs::read(&orphan_path).unwrap();
        store.remove(&orphan_cid).unwrap();
        fs::write(&orphan_path, saved).unwrap();
        // An indexed piece whose file vanished.
        fs::remove_file(find(dir.path(), &lost_cid.to_string())).unwrap();
        // An interrupted upload.
        fs::write(
            dir.path().join("tmp").join("partial.upload"),
            b"half a piece",
        )
        .unwrap();
        // A damaged unindexed file.
        let bad = orphan_path.with_file_name(raw_cid(b"other").to_string());
        fs::write(bad, b"not the bytes of that CID").unwrap();
        // An outboard left behind by a piece that is gone.
        let stray = orphan_path.with_file_name(format!("{}.obao", raw_cid(b"gone")));
        fs::write(stray, b"stale tree").unwrap();
    }
    let (store, report) = PieceStore::open(&cfg).unwrap();
    assert_eq!(report.missing, vec![lost_cid]);
    assert_eq!(report.recovered, vec![orphan_cid]);
    assert_eq!(report.discarded, 3);
    assert_eq!(store.has(&kept_cid).unwrap(), Some(40_000));
    assert_eq!(store.has(&lost_cid).unwrap(), None);
    assert_eq!(store.has(&orphan_cid).unwrap(), Some(40_000));
    assert_eq!(store.usage().used, 80_000);
    assert_eq!(files_under(&dir.path().join("tmp")), 0);
    // The recovered piece is served with a fresh outboard.
    let piece = store.open_piece(&orphan_cid).unwrap();
    let range = ByteRange {
        start: 0,
        len: 40_000,
    };
    let body = prove_range(&piece.file, &piece.outboard, range).unwrap();
    assert_eq!(
        verify_range(&orphan_cid, 40_000, range, &body).unwrap(),
        orphan
    );
}

#[test]
fn scrub_flags_and_drops_a_piece_altered_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = PieceStore::open(&config(dir.path(), 1 << 30)).unwrap();
    let good = bytes(30_000, 10);
    let bad = bytes(30_000, 11);
    put(&store, &good).unwrap();
    put(&store, &bad).unwrap();
    let path = find(dir.path(), &raw_cid(&bad).to_string());
    let mut altered = fs::read(&path).unwrap();
    altered[12_345] ^= 0x04;
    fs::write(&path, altered).unwrap();
    let report = store.scrub().unwrap();
    assert_eq!(report.bad, vec![raw_cid(&bad)]);
    assert!(report.unreadable.is_empty());
    assert_eq!(store.has(&raw_cid(&bad)).unwrap(), None);
    assert_eq!(store.has(&raw_cid(&good)).unwrap(), Some(30_000));
}

fn find(dir: &Path, name: &str) -> std::path::PathBuf {
    try_find(dir, name).unwrap_or_else(|| panic!("{name} not found under {}", dir.display()))
}

fn try_find(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    for entry in fs::read_dir(dir).ok()? {
        let p = entry.ok()?.path();
        if p.is_dir() {
            if let Some(found) = try_find(&p, name) {
                return Some(found);
            }
        } else if p.file_name()? == name {
            return Some(p);
        }
    }
    None
}
