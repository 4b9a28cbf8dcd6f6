//! A storage node process killed (SIGKILL) in the middle of an upload, and again right after
//! acknowledging one, comes back consistent: no half piece, no index entry without bytes, and
//! every acknowledged piece still there.

#![allow(clippy::unwrap_used)]

use std::{path::Path, process::Child};

use tessera_formats::address::raw_cid;
use tessera_net::{Client, Keypair, Multiaddr, NetworkConfig, PeerId, start};
use tessera_storage_protocol::{PieceProtocol, PieceRequest, PieceResponse};

mod common;

/// Starts `tessera storage-node` on `dir`; returns the process, its address and its
/// "data ... (N pieces" line.
fn spawn_node(dir: &Path) -> (Child, Multiaddr, String) {
    let started = common::spawn_node(dir, &[]);
    (started.child, started.addr.parse().unwrap(), started.data)
}

async fn user(node: Multiaddr) -> Client {
    start(
        Keypair::generate_ed25519(),
        NetworkConfig::client(vec![node]),
    )
    .await
    .unwrap()
    .client
}

fn peer_of(addr: &Multiaddr) -> PeerId {
    match addr.iter().last() {
        Some(libp2p::multiaddr::Protocol::P2p(peer)) => peer,
        _ => panic!("no peer id in {addr}"),
    }
}

async fn send(client: &Client, peer: PeerId, request: PieceRequest) -> PieceResponse {
    client
        .request::<PieceProtocol>(peer, request)
        .await
        .unwrap()
}

/// Sends `data` as 1 MiB upload chunks from offset 0, each acknowledged with progress.
async fn put_chunks(client: &Client, peer: PeerId, piece: tessera_formats::Cid, data: &[u8]) {
    for (i, bytes) in data.chunks(1 << 20).enumerate() {
        let offset = (i << 20) as u64;
        let bytes = bytes.to_vec();
        let request = PieceRequest::PutChunk {
            piece,
            offset,
            bytes,
        };
        let r = send(client, peer, request).await;
        assert!(matches!(r, PieceResponse::PutProgress { .. }), "{r:?}");
    }
}

fn files_under(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .map(|e| {
                let p = e.unwrap().path();
                if p.is_dir() { files_under(&p) } else { 1 }
            })
            .sum()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_upload_and_after_an_ack_the_node_comes_back_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let piece = raw_cid(&data);
    let chunk = 1 << 20;

    // Killed after two of three chunks.
    let (mut node, addr, _) = spawn_node(dir.path());
    let peer = peer_of(&addr);
    let client = user(addr).await;
    let size = data.len() as u64;
    assert!(matches!(
        send(&client, peer, PieceRequest::PutBegin { piece, size }).await,
        PieceResponse::PutReady { offset: 0, .. }
    ));
    put_chunks(&client, peer, piece, &data[..2 * chunk]).await;
    assert_eq!(
        files_under(&dir.path().join("tmp")),
        1,
        "the partial upload is on disk"
    );
    node.kill().unwrap();
    node.wait().unwrap();

    // Back up: the half piece is gone and nothing is indexed.
    let (mut node, addr, data_line) = spawn_node(dir.path());
    assert!(data_line.contains("(0 pieces"), "{data_line}");
    assert_eq!(files_under(&dir.path().join("tmp")), 0);
    assert_eq!(files_under(&dir.path().join("pieces")), 0);

    // A whole upload, acknowledged, then killed at once.
    let peer = peer_of(&addr);
    let client = user(addr).await;
    send(&client, peer, PieceRequest::PutBegin { piece, size }).await;
    put_chunks(&client, peer, piece, &data).await;
    assert_eq!(
        send(&client, peer, PieceRequest::PutEnd { piece }).await,
        PieceResponse::Stored { piece }
    );
    node.kill().unwrap();
    node.wait().unwrap();

    let (mut node, addr, data_line) = spawn_node(dir.path());
    assert!(data_line.contains("(1 pieces"), "{data_line}");
    let client = user(addr.clone()).await;
    assert_eq!(
        send(&client, peer_of(&addr), PieceRequest::Has { piece }).await,
        PieceResponse::Has {
            piece,
            size: Some(size)
        }
    );
    node.kill().unwrap();
    node.wait().unwrap();
}
