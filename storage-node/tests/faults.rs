//! Faults on the node's own machine never cost good data: a scrub that cannot open files keeps
//! the pieces it could not read, a data directory removed under a running node makes it report
//! itself unhealthy and refuse uploads, and two uploads of one piece store and count it once.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    fs,
    path::Path,
    sync::{Arc, Barrier},
};

use common::{bytes, http_get, upload, user};
use tessera_formats::address::raw_cid;
use tessera_storage_node::{NodeConfig, PieceStore, Status, StorageNode, StoreConfig, StoreError};
use tessera_storage_protocol::PieceResponse;

/// The open-file limit is the whole process's: tests that lower it run alone.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn store_config(dir: &Path) -> StoreConfig {
    StoreConfig {
        dir: dir.to_path_buf(),
        capacity: 1 << 30,
        max_piece: 1 << 20,
    }
}

fn put(store: &PieceStore, data: &[u8]) {
    let mut upload = store
        .begin_upload(raw_cid(data), data.len() as u64)
        .unwrap();
    upload.write(0, data).unwrap();
    upload.finish().unwrap();
}

/// Sets this process's soft limit on open files; returns the one it replaced.
fn set_open_files(soft: u64) -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    let before = limit.current.unwrap_or(u64::MAX);
    limit.current = Some(soft);
    setrlimit(Resource::Nofile, limit).unwrap();
    before
}

/// The descriptor the next open gets: the limit counts descriptor numbers, and a new one
/// takes the lowest free.
fn next_descriptor() -> u64 {
    use std::os::fd::AsRawFd as _;
    let probe = fs::File::open("/dev/null").unwrap();
    u64::try_from(probe.as_raw_fd()).unwrap()
}

#[test]
fn a_scrub_out_of_file_handles_keeps_every_piece() {
    let _alone = ALONE.blocking_lock();
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = PieceStore::open(&store_config(dir.path())).unwrap();
    let pieces: Vec<Vec<u8>> = (0..5).map(|i| bytes(50_000, i)).collect();
    for p in &pieces {
        put(&store, p);
    }
    // No file can be opened while the limit is at the next descriptor.
    let soft = set_open_files(next_descriptor());
    let report = store.scrub();
    set_open_files(soft);
    let report = report.unwrap();

    assert!(report.bad.is_empty(), "{report:?}");
    assert_eq!(report.unreadable.len(), 5, "{report:?}");
    assert!(report.unreadable[0].1.contains("open files"), "{report:?}");
    assert_eq!(store.usage().unreadable, 5);
    for p in &pieces {
        assert_eq!(store.has(&raw_cid(p)).unwrap(), Some(50_000));
    }
    // With file handles back, the next scrub finds them whole, and the mark goes.
    let report = store.scrub().unwrap();
    assert!(
        report.bad.is_empty() && report.unreadable.is_empty(),
        "{report:?}"
    );
    assert_eq!(store.usage().unreadable, 0);
    for p in &pieces {
        let mut piece = store.open_piece(&raw_cid(p)).unwrap();
        let mut read = Vec::new();
        std::io::Read::read_to_end(&mut piece.file, &mut read).unwrap();
        assert_eq!(&read, p);
    }
}

#[test]
fn a_start_that_cannot_read_its_files_keeps_them() {
    let _alone = ALONE.blocking_lock();
    let dir = tempfile::tempdir().unwrap();
    let data = bytes(40_000, 9);
    {
        let (store, _) = PieceStore::open(&store_config(dir.path())).unwrap();
        put(&store, &data);
        // The outboard is gone: made again from the piece, not a reason to drop it.
        let piece = store.piece_path(&raw_cid(&data));
        fs::remove_file(piece.with_extension("obao")).unwrap();
    }
    let (store, report) = PieceStore::open(&store_config(dir.path())).unwrap();
    assert!(report.missing.is_empty(), "{report:?}");
    assert_eq!(store.has(&raw_cid(&data)).unwrap(), Some(40_000));
    assert!(store.open_piece(&raw_cid(&data)).is_ok());
    drop(store);

    // A disk that is not mounted: the index is there, the pieces folder is not.
    let moved = dir.path().join("pieces-elsewhere");
    fs::rename(dir.path().join("pieces"), &moved).unwrap();
    let err = PieceStore::open(&store_config(dir.path())).unwrap_err();
    assert!(matches!(err, StoreError::Unhealthy(_)), "{err}");
    assert!(err.to_string().contains("mounted"), "{err}");
    fs::rename(&moved, dir.path().join("pieces")).unwrap();
    let (store, report) = PieceStore::open(&store_config(dir.path())).unwrap();
    assert_eq!((report.pieces, report.missing.len()), (1, 0));
    assert_eq!(store.has(&raw_cid(&data)).unwrap(), Some(40_000));
}

#[test]
fn two_uploads_of_one_piece_store_and_count_it_once() {
    let _alone = ALONE.blocking_lock();
    for round in 0..20u8 {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = PieceStore::open(&store_config(dir.path())).unwrap();
        let data = Arc::new(bytes(200_000, round));
        let barrier = Arc::new(Barrier::new(2));
        let uploads: Vec<_> = (0..2)
            .map(|_| {
                let (store, data, barrier) = (store.clone(), data.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let mut upload = store
                        .begin_upload(raw_cid(&data), data.len() as u64)
                        .unwrap();
                    upload.write(0, &data).unwrap();
                    barrier.wait();
                    upload.finish()
                })
            })
            .collect();
        for u in uploads {
            u.join().unwrap().unwrap();
        }
        let usage = store.usage();
        assert_eq!(
            (usage.pieces, usage.used, usage.reserved),
            (1, 200_000, 0),
            "round {round}"
        );
        assert_eq!(store.list().unwrap().len(), 1);
        let mut piece = store.open_piece(&raw_cid(&data)).unwrap();
        let mut read = Vec::new();
        std::io::Read::read_to_end(&mut piece.file, &mut read).unwrap();
        assert_eq!(&read, &*data);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }
}

async fn http_status(addr: std::net::SocketAddr) -> Status {
    serde_json::from_str(&http_get(addr, "/status").await.1).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_data_directory_vanishes_says_so_and_refuses_uploads() {
    let _alone = ALONE.lock().await;
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("node");
    let node = StorageNode::start(NodeConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        capacity: bytesize::ByteSize::mib(64),
        http: Some("127.0.0.1:0".parse().unwrap()),
        scrub_interval: std::time::Duration::ZERO,
        audit_interval: std::time::Duration::ZERO,
        ..NodeConfig::with_defaults(data_dir.clone())
    })
    .await
    .unwrap();
    let http = node.http.unwrap();
    let status = http_status(http).await;
    assert!(status.healthy && status.problem.is_none(), "{status:?}");

    let user = user(node.addresses[0].clone()).await;
    let peer = node.client.peer_id();
    let kept = bytes(100_000, 1);
    assert_eq!(
        upload(&user, peer, raw_cid(&kept), &kept).await,
        PieceResponse::Stored {
            piece: raw_cid(&kept)
        }
    );

    // The data directory goes away while the node runs.
    let moved = root.path().join("moved");
    fs::rename(&data_dir, &moved).unwrap();
    let status = http_status(http).await;
    assert!(!status.healthy, "{status:?}");
    let problem = status.problem.unwrap();
    assert!(problem.contains("No such file"), "{problem}");
    let next = bytes(100_000, 2);
    match upload(&user, peer, raw_cid(&next), &next).await {
        PieceResponse::Error { message, .. } => {
            assert!(message.contains("unhealthy"), "{message}")
        }
        other => panic!("{other:?}"),
    }

    // Back in place: healthy again, the piece it held still there.
    fs::rename(&moved, &data_dir).unwrap();
    let status = http_status(http).await;
    assert!(status.healthy, "{status:?}");
    assert_eq!(status.pieces, 1);
    assert_eq!(
        upload(&user, peer, raw_cid(&next), &next).await,
        PieceResponse::Stored {
            piece: raw_cid(&next)
        }
    );
}
