//! A storage node on real libp2p and RocksDB, driven over the wire by a client peer: uploads
//! are checked against their CID before they are acknowledged, ranges come back verifiable,
//! challenges are answered with proofs, bad requests get named errors, and the node keeps
//! serving.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use tessera_formats::address::raw_cid;
use tessera_net::{Client, Keypair, Multiaddr, NetworkConfig, start};
use tessera_proofs::{ByteRange, Challenge, verify, verify_range};
use tessera_storage_protocol::{
    ChallengeProtocol, ChallengeResponse, ErrorCode, PieceProtocol, PieceRequest, PieceResponse,
};
mod common;

use common::{bytes, upload, user};
use tessera_storage_node::{
    PieceStore, StoreConfig,
    metrics::Metrics,
    service::{ServiceLimits, serve},
};

struct Node {
    client: Client,
    addr: Multiaddr,
    metrics: Arc<Metrics>,
    _dir: tempfile::TempDir,
}

async fn storage_node(capacity: u64) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = PieceStore::open(&StoreConfig {
        dir: dir.path().to_path_buf(),
        capacity,
        max_piece: 64 << 20,
    })
    .unwrap();
    let mut net = start(
        Keypair::generate_ed25519(),
        NetworkConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            ..NetworkConfig::default()
        }
        .serving::<PieceProtocol>()
        .serving::<ChallengeProtocol>(),
    )
    .await
    .unwrap();
    let info = net.client.info().await.unwrap();
    let addr = info.dialable_addrs()[0].clone();
    let metrics = Arc::new(Metrics::new());
    tokio::spawn(serve(
        net.client.clone(),
        store,
        metrics.clone(),
        ServiceLimits::default(),
        net.inbound().unwrap(),
        net.inbound().unwrap(),
    ));
    Node {
        client: net.client,
        addr,
        metrics,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_prove_over_the_wire() {
    let node = storage_node(1 << 30).await;
    let node_peer = node.client.peer_id();
    let user = user(node.addr.clone()).await;
    let data = bytes(3 * 1024 * 1024 + 777, 1);
    let piece = raw_cid(&data);

    assert_eq!(
        upload(&user, node_peer, piece, &data).await,
        PieceResponse::Stored { piece }
    );
    // Storing it again is acknowledged at once.
    assert_eq!(
        user.request::<PieceProtocol>(
            node_peer,
            PieceRequest::PutBegin {
                piece,
                size: data.len() as u64
            }
        )
        .await
        .unwrap(),
        PieceResponse::Stored { piece }
    );
    assert_eq!(
        user.request::<PieceProtocol>(node_peer, PieceRequest::Has { piece })
            .await
            .unwrap(),
        PieceResponse::Has {
            piece,
            size: Some(data.len() as u64)
        }
    );

    // The whole piece, range by range, each range checked against the CID alone.
    let mut fetched = Vec::new();
    for range in ByteRange::split(data.len() as u64, 1 << 20) {
        let PieceResponse::Range {
            body,
            size,
            range: r,
            ..
        } = user
            .request::<PieceProtocol>(node_peer, PieceRequest::Get { piece, range })
            .await
            .unwrap()
        else {
            panic!("no range")
        };
        assert_eq!((r, size), (range, data.len() as u64));
        fetched.extend(verify_range(&piece, data.len() as u64, range, &body).unwrap());
    }
    assert_eq!(fetched, data);

    // A challenge is answered with a proof that verifies against the CID.
    let challenge = Challenge::random(piece);
    let ChallengeResponse::Proof(proof) = user
        .request::<ChallengeProtocol>(node_peer, challenge.clone())
        .await
        .unwrap()
    else {
        panic!("no proof")
    };
    verify(&challenge, &proof).unwrap();

    // The node announced the piece on the DHT.
    let mut providers = Default::default();
    for _ in 0..20 {
        providers = user.get_providers(piece).await.unwrap();
        if providers.contains(&node_peer) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(providers.contains(&node_peer));
    let metrics = node.metrics.render(tessera_storage_node::Usage {
        pieces: 1,
        used: data.len() as u64,
        reserved: 0,
        capacity: 1 << 30,
        unreadable: 0,
    });
    assert!(
        metrics.contains("tessera_challenges_answered_total 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_named_errors_and_the_node_keeps_serving() {
    let node = storage_node(2 << 20).await;
    let node_peer = node.client.peer_id();
    let user = user(node.addr.clone()).await;

    // Bytes that do not match the CID they were announced under.
    let data = bytes(300_000, 2);
    let other = raw_cid(&bytes(300_000, 3));
    let response = upload(&user, node_peer, other, &data).await;
    assert!(
        matches!(
            response,
            PieceResponse::Error {
                code: ErrorCode::HashMismatch,
                ..
            }
        ),
        "{response:?}"
    );
    assert_eq!(
        user.request::<PieceProtocol>(node_peer, PieceRequest::Has { piece: other })
            .await
            .unwrap(),
        PieceResponse::Has {
            piece: other,
            size: None
        }
    );

    // Over capacity: refused before any byte is sent.
    let big = raw_cid(b"big");
    let response = user
        .request::<PieceProtocol>(
            node_peer,
            PieceRequest::PutBegin {
                piece: big,
                size: 3 << 20,
            },
        )
        .await
        .unwrap();
    assert!(matches!(
        response,
        PieceResponse::Error {
            code: ErrorCode::CapacityExceeded,
            ..
        }
    ));

    // Chunks with no upload, a range past the end, a piece it does not hold.
    let response = user
        .request::<PieceProtocol>(
            node_peer,
            PieceRequest::PutChunk {
                piece: big,
                offset: 0,
                bytes: vec![1],
            },
        )
        .await
        .unwrap();
    assert!(matches!(
        response,
        PieceResponse::Error {
            code: ErrorCode::UploadState,
            ..
        }
    ));
    let missing = raw_cid(b"missing");
    let response = user
        .request::<PieceProtocol>(
            node_peer,
            PieceRequest::Get {
                piece: missing,
                range: ByteRange { start: 0, len: 10 },
            },
        )
        .await
        .unwrap();
    assert!(matches!(
        response,
        PieceResponse::Error {
            code: ErrorCode::NotFound,
            ..
        }
    ));
    let response = user
        .request::<ChallengeProtocol>(node_peer, Challenge::random(missing))
        .await
        .unwrap();
    assert!(matches!(
        response,
        ChallengeResponse::Error {
            code: ErrorCode::NotFound,
            ..
        }
    ));

    // And an honest upload still works, within the capacity the failed ones gave back.
    let good = bytes(1 << 20, 4);
    let piece = raw_cid(&good);
    assert_eq!(
        upload(&user, node_peer, piece, &good).await,
        PieceResponse::Stored { piece }
    );
    let response = user
        .request::<PieceProtocol>(
            node_peer,
            PieceRequest::Get {
                piece,
                range: ByteRange {
                    start: (1 << 20) - 5,
                    len: 10,
                },
            },
        )
        .await
        .unwrap();
    assert!(matches!(
        response,
        PieceResponse::Error {
            code: ErrorCode::BadRequest,
            ..
        }
    ));
    assert!(node.metrics.errors_with(ErrorCode::HashMismatch) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_uploads_that_send_nothing_pin_no_room() {
    let node = storage_node(4 << 20).await;
    let node_peer = node.client.peer_id();
    // Several peers (ids cost nothing) each announce as many large uploads as they may, and
    // send no byte.
    let mut holders = Vec::new();
    for h in 0..3u8 {
        let holder = user(node.addr.clone()).await;
        for i in 0..ServiceLimits::default().uploads_per_peer {
            let piece = raw_cid(&[h, u8::try_from(i).unwrap(), 0xee]);
            let response = holder
                .request::<PieceProtocol>(
                    node_peer,
                    PieceRequest::PutBegin {
                        piece,
                        size: 3 << 20,
                    },
                )
                .await
                .unwrap();
            assert!(
                matches!(response, PieceResponse::PutReady { offset: 0, .. }),
                "{response:?}"
            );
        }
        holders.push(holder);
    }
    // An honest upload still finds the room.
    let honest = user(node.addr.clone()).await;
    let data = bytes(2 << 20, 8);
    let piece = raw_cid(&data);
    assert_eq!(
        upload(&honest, node_peer, piece, &data).await,
        PieceResponse::Stored { piece }
    );
    drop(holders);
}
