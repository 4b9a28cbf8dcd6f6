//! A real network on 127.0.0.1: six storage nodes (libp2p, RocksDB, each in its own data
//! directory), a client that puts a file and clients that read it back while nodes are down,
//! slow or serving altered bytes, and storage challenges against honest and altered holders.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use tessera_client::{AuditError, GetOptions, PutOptions, Session, audit, get_file, put_file};
use tessera_formats::erasure::ErasureParams;
use tessera_proofs::{Challenge, Outboard, prove_range};
use tessera_storage_node::LocalNetwork;
use tessera_storage_protocol::{ErrorCode, PieceProtocol, PieceRequest, PieceResponse};
use tessera_tests::sample_bytes;

const MIB: u64 = 1024 * 1024;

/// A bare network peer on 127.0.0.1, joined to `network`, whose requests the test answers
/// itself; `session` is connected to it.
async fn bare_peer(network: &LocalNetwork, session: &Session) -> tessera_net::Network {
    let peer = tessera_net::start(
        tessera_net::Keypair::generate_ed25519(),
        tessera_net::NetworkConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            bootstrap: network.bootstrap(),
            ..tessera_net::NetworkConfig::default()
        }
        .serving::<PieceProtocol>(),
    )
    .await
    .unwrap();
    let addr = peer.client.info().await.unwrap().dialable_addrs()[0].clone();
    session.net().dial(addr).await.unwrap();
    peer
}

/// Answers the bare `peer`'s piece requests with `answer`, given each request and how many of
/// its kind came before it, until the test ends.
fn serve(
    mut peer: tessera_net::Network,
    mut answer: impl FnMut(&PieceRequest, usize) -> PieceResponse + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let mut inbound: tessera_net::Inbound<PieceProtocol> = peer.inbound().unwrap();
    tokio::spawn(async move {
        let _peer = peer;
        let mut seen = HashMap::new();
        while let Some(asked) = inbound.recv().await {
            let n = seen
                .entry(std::mem::discriminant(&asked.request))
                .or_insert(0);
            let response = answer(&asked.request, *n);
            *n += 1;
            if asked.responder.respond(response).await.is_err() {
                return;
            }
        }
    })
}

fn busy(piece: tessera_formats::Cid) -> PieceResponse {
    PieceResponse::Error {
        piece,
        code: ErrorCode::Busy,
        message: "node is busy".into(),
    }
}

/// `data` as a piece in node 0's store, put there directly: its CID.
fn store_in_node_0(network: &LocalNetwork, data: &[u8]) -> tessera_formats::Cid {
    let cid = tessera_formats::address::raw_cid(data);
    let store = &network.node(0).unwrap().store;
    let mut upload = store.begin_upload(cid, data.len() as u64).unwrap();
    upload.write(0, data).unwrap();
    upload.finish().unwrap();
    cid
}

fn options(k: u16, m: u16) -> PutOptions {
    PutOptions {
        params: ErasureParams::new(k, m, 256 * 1024).unwrap(),
        ..PutOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn six_nodes_serve_a_file_with_two_of_them_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut network = LocalNetwork::start(dir.path(), 6, 64 * MIB).await.unwrap();

    let data = sample_bytes("six nodes", (3 * MIB + 12_345) as usize);
    let input = dir.path().join("input.bin");
    std::fs::write(&input, &data).unwrap();

    let writer = Session::join(network.bootstrap()).await.unwrap();
    let put = put_file(&writer, &input, &options(4, 2)).await.unwrap();
    drop(writer);

    // Every piece on its own node, and the layout on m + 1 nodes.
    let holders: HashSet<_> = put.holders.iter().collect();
    assert_eq!(holders.len(), 6, "{:?}", put.holders);
    assert!(!put.shares_nodes);
    assert_eq!(put.layout_holders.len(), 3);
    for (index, (cid, holder)) in put.layout.pieces.iter().zip(&put.holders).enumerate() {
        let node = network.node(network.index_of(holder).unwrap()).unwrap();
        assert!(node.store.has(cid).unwrap().is_some(), "piece {index}");
    }

    // Stop the holders of two data pieces: reading must rebuild them from parity.
    let down: Vec<usize> = put.holders[..2]
        .iter()
        .map(|p| network.index_of(p).unwrap())
        .collect();
    for &i in &down {
        network.stop(i).await;
    }
    assert_eq!(network.running(), 4);

    let reader = Session::join(network.bootstrap()).await.unwrap();
    let out = dir.path().join("output.bin");
    let got = get_file(&reader, put.layout_cid, &out, &GetOptions::default())
        .await
        .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), data);
    assert!(got.reconstructed);
    let failed: Vec<usize> = got.failed.iter().map(|(i, _)| *i).collect();
    assert_eq!(failed, [0, 1], "{:?}", got.failed);
    assert_eq!(got.used, [2, 3, 4, 5]);

    // The output is never overwritten.
    let again = get_file(&reader, put.layout_cid, &out, &GetOptions::default()).await;
    assert!(matches!(
        again,
        Err(tessera_client::ClientError::OutputExists(_))
    ));

    // A third node down is one more than the coding survives: a clear error, no output.
    let third = (0..6)
        .find(|i| !down.contains(i) && network.node(*i).is_some())
        .unwrap();
    network.stop(third).await;
    let lost = dir.path().join("lost.bin");
    let err = get_file(&reader, put.layout_cid, &lost, &GetOptions::default()).await;
    match err {
        // Either the layout's last copies were on the stopped nodes, or too few pieces remain.
        Err(tessera_client::ClientError::NotEnoughPieces {
            needed: 4, fetched, ..
        }) => assert!(fetched < 4),
        Err(tessera_client::ClientError::NotFound { .. }) => {}
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(!lost.exists());

    // A node that comes back rejoins and serves again.
    network.restart(down[0]).await.unwrap();
    let back = dir.path().join("back.bin");
    let reader = Session::join(network.bootstrap()).await.unwrap();
    get_file(&reader, put.layout_cid, &back, &GetOptions::default())
        .await
        .unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), data);
    network.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupted_piece_is_never_served_as_valid() {
    let dir = tempfile::tempdir().unwrap();
    let network = LocalNetwork::start(dir.path(), 4, 64 * MIB).await.unwrap();
    let data = sample_bytes("corrupted", (MIB + 999) as usize);
    let input = dir.path().join("input.bin");
    std::fs::write(&input, &data).unwrap();

    let writer = Session::join(network.bootstrap()).await.unwrap();
    let put = put_file(&writer, &input, &options(2, 2)).await.unwrap();

    // Flip one byte in the middle of piece 0 on its holder's disk.
    let victim = network.index_of(&put.holders[0]).unwrap();
    let node = network.node(victim).unwrap();
    let piece = put.layout.pieces[0];
    let path = node.store.piece_path(&piece);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    // Challenged over the network: the honest holder of piece 1 proves it; the altered
    // piece's holder cannot, once a sample lands on the flipped byte.
    audit(
        &writer,
        put.holders[1],
        &Challenge::random(put.layout.pieces[1]),
    )
    .await
    .unwrap();
    let flipped_chunk = middle as u64 / 1024;
    let sees_the_flip = (0u8..=255)
        .map(|n| Challenge {
            piece,
            nonce: [n; 32],
            samples: tessera_proofs::DEFAULT_SAMPLES,
        })
        .find(|c| c.chunk_indices(bytes.len() as u64).contains(&flipped_chunk))
        .unwrap();
    let refused = audit(&writer, put.holders[0], &sees_the_flip).await;
    assert!(matches!(refused, Err(AuditError::Proof(_))), "{refused:?}");

    let out = dir.path().join("output.bin");
    let got = get_file(&writer, put.layout_cid, &out, &GetOptions::default())
        .await
        .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), data);
    assert!(got.reconstructed);
    assert_eq!(got.failed.len(), 1, "{:?}", got.failed);
    assert_eq!(got.failed[0].0, 0);
    assert!(got.failed[0].1.contains("bad range"), "{:?}", got.failed);

    // The node's own check finds the piece and stops holding it.
    assert_eq!(node.store.scrub().unwrap().bad, vec![piece]);
    assert_eq!(node.store.has(&piece).unwrap(), None);
    network.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_provider_is_passed_over() {
    use std::time::Duration;

    use tessera_client::{fetch::fetch_piece, session::Timeouts};

    let dir = tempfile::tempdir().unwrap();
    let network = LocalNetwork::start(dir.path(), 3, 64 * MIB).await.unwrap();
    let data = sample_bytes("slow", (MIB / 2) as usize);
    let input = dir.path().join("input.bin");
    std::fs::write(&input, &data).unwrap();
    let mut session = Session::join(network.bootstrap()).await.unwrap();
    let put = put_file(&session, &input, &options(2, 1)).await.unwrap();

    // A peer that takes requests and never answers them.
    let mut slow = bare_peer(&network, &session).await;
    let mut slow_requests: tessera_net::Inbound<PieceProtocol> = slow.inbound().unwrap();

    session.set_timeouts(Timeouts {
        request: Duration::from_millis(500),
        ..Timeouts::default()
    });
    let piece = put.layout.pieces[0];
    let out = dir.path().join("piece-0");
    // One range at a time, so the first provider (the slow one) is asked first.
    let providers = vec![slow.client.peer_id(), put.holders[0]];
    fetch_piece(&session, piece, put.layout.piece_len(), providers, &out, 1)
        .await
        .unwrap();
    assert_eq!(
        tessera_formats::address::raw_cid(&std::fs::read(&out).unwrap()),
        piece
    );
    // The slow peer was asked, and passed over.
    let asked = tokio::time::timeout(Duration::from_secs(5), slow_requests.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(asked.request, PieceRequest::Get { .. }));
    network.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_piece_the_dht_does_not_know_is_found_by_asking_connected_peers() {
    let dir = tempfile::tempdir().unwrap();
    let network = LocalNetwork::start(dir.path(), 2, 16 * MIB).await.unwrap();
    // Written into node 0's store directly: never announced on the DHT.
    let cid = store_in_node_0(&network, &sample_bytes("unannounced", 5000));

    let session = Session::join(network.bootstrap()).await.unwrap();
    let found = tessera_client::fetch::providers(&session, cid)
        .await
        .unwrap();
    assert_eq!(found, [network.peers()[0]]);
    network.shutdown().await;
}

/// The content CID is the last word on a shard written in place from its data pieces: a layout
/// that names one shard's CID over another's pieces (which would poison a cache keyed by that
/// CID) is refused, and nothing is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layout_whose_pieces_are_not_its_content_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let network = LocalNetwork::start(dir.path(), 3, 16 * MIB).await.unwrap();
    let data = sample_bytes("placed", (MIB + 4321) as usize);
    let input = dir.path().join("input.bin");
    std::fs::write(&input, &data).unwrap();
    let session = Session::join(network.bootstrap()).await.unwrap();
    let put = put_file(&session, &input, &options(2, 1)).await.unwrap();

    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let get = tessera_client::get::fetch_shard;
    let honest = get(
        &session,
        &put.layout,
        &out_dir.join("honest"),
        &GetOptions::default(),
    )
    .await
    .unwrap();
    assert!(!honest.reconstructed);
    assert_eq!(honest.used, [0, 1]);
    assert_eq!(std::fs::read(out_dir.join("honest")).unwrap(), data);

    let mut lying = put.layout.clone();
    lying.content = tessera_formats::address::raw_cid(b"some other shard");
    let out = out_dir.join("lying");
    let err = get(&session, &lying, &out, &GetOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            tessera_client::ClientError::Decode(
                tessera_formats::erasure::DecodeError::OutputMismatch { .. }
            )
        ),
        "{err:?}"
    );
    let left: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["honest"]);
    network.shutdown().await;
}

/// Three times as many requests in flight to one node as a connection carries streams: the
/// network task holds back those past its share, and every one is answered. (rust-libp2p
/// fails a request past the limit at once, and a reader took that for the node failing: it
/// gave the node up and read the shard through parity.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_requests_to_one_node_than_a_connection_has_streams_are_all_answered() {
    use tessera_net::NetworkConfig;
    use tessera_proofs::{ByteRange, verify_range};

    let dir = tempfile::tempdir().unwrap();
    let network = LocalNetwork::start(dir.path(), 1, 16 * MIB).await.unwrap();
    let data = sample_bytes("many requests", 64 * 1024);
    let cid = store_in_node_0(&network, &data);

    let session = Session::join(network.bootstrap()).await.unwrap();
    let peer = network.peers()[0];
    let requests = 3 * NetworkConfig::default().max_streams_per_connection;
    let mut answers = tokio::task::JoinSet::new();
    for i in 0..requests {
        let net = session.net().clone();
        let range = ByteRange {
            start: i as u64 * 1000,
            len: 1000,
        };
        answers.spawn(async move {
            let answer =
                net.request::<PieceProtocol>(peer, PieceRequest::Get { piece: cid, range });
            (range, answer.await)
        });
    }
    let mut answered = 0;
    while let Some(joined) = answers.join_next().await {
        let (range, answer) = joined.unwrap();
        let Ok(PieceResponse::Range { body, .. }) = answer else {
            panic!("range {range:?}: {answer:?}");
        };
        let bytes = verify_range(&cid, data.len() as u64, range, &body).unwrap();
        let start = range.start as usize;
        assert_eq!(bytes, &data[start..start + 1000]);
        answered += 1;
    }
    assert_eq!(answered, requests);
    network.shutdown().await;
}

/// A provider whose queue of requests is full answers `Busy` at once: the reader asks it again
/// after a pause instead of giving it up (here it is the piece's only provider).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_provider_is_asked_again() {
    use tessera_client::fetch::fetch_piece;

    let dir = tempfile::tempdir().unwrap();
    let network = LocalNetwork::start(dir.path(), 1, 16 * MIB).await.unwrap();
    let data = sample_bytes("busy", 300_000);
    let cid = tessera_formats::address::raw_cid(&data);
    let (outboard, _) = Outboard::compute(&data).unwrap();

    // A peer serving the piece from memory, busy for its first two requests.
    let session = Session::join(network.bootstrap()).await.unwrap();
    let peer = bare_peer(&network, &session).await;
    let (id, size) = (peer.client.peer_id(), data.len() as u64);
    let serving = serve(peer, move |request, n| match request {
        PieceRequest::Get { piece, .. } if n < 2 => busy(*piece),
        PieceRequest::Get { piece, range } => PieceResponse::Range {
            piece: *piece,
            range: *range,
            size,
            body: prove_range(&data, &outboard, *range).unwrap(),
        },
        other => panic!("not a range request: {other:?}"),
    });

    let out = dir.path().join("piece");
    let fetched = fetch_piece(&session, cid, size, vec![id], &out, 1).await;
    serving.abort();
    assert!(fetched.is_ok(), "{fetched:?}");
    assert_eq!(
        tessera_formats::address::raw_cid(&std::fs::read(&out).unwrap()),
        cid
    );
    network.shutdown().await;
}

/// Reading a block and uploading a piece go on through a node that answers `Busy` at every
/// other step; but a node that answers `Busy` to the start of an upload (its limit of uploads)
/// is left for another at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blocks_and_uploads_go_on_through_a_busy_node() {
    use tessera_client::{
        fetch::fetch_block,
        upload::{Source, upload},
    };

    let dir = tempfile::tempdir().unwrap();
    let network = LocalNetwork::start(dir.path(), 1, 16 * MIB).await.unwrap();
    let data = sample_bytes("busy block", 300_000);
    let (cid, size) = (tessera_formats::address::raw_cid(&data), data.len() as u64);
    let (outboard, _) = Outboard::compute(&data).unwrap();
    let full = sample_bytes("at its limit", 1000);
    let at_limit = tessera_formats::address::raw_cid(&full);

    let session = Session::join(network.bootstrap()).await.unwrap();
    let peer = bare_peer(&network, &session).await;
    let id = peer.client.peer_id();
    let received = Arc::new(Mutex::new(Vec::new()));
    let begun_at_limit = Arc::new(Mutex::new(0));
    let (kept, begun) = (received.clone(), begun_at_limit.clone());
    // The first request of each kind, and every other one after it, is answered `Busy`; of the
    // upload's starts, only the second (the first resume).
    let serving = serve(peer, move |request, n| {
        let piece = *request.piece();
        if piece == at_limit {
            *begun.lock().unwrap() += 1;
            return busy(piece);
        }
        let busy_now = match request {
            PieceRequest::PutBegin { .. } => n == 1,
            _ => n % 2 == 0,
        };
        if busy_now {
            return busy(piece);
        }
        let mut kept = kept.lock().unwrap();
        match request {
            PieceRequest::Has { .. } => PieceResponse::Has {
                piece,
                size: Some(size),
            },
            PieceRequest::Get { range, .. } => PieceResponse::Range {
                piece,
                range: *range,
                size,
                body: prove_range(&data, &outboard, *range).unwrap(),
            },
            PieceRequest::PutBegin { .. } => PieceResponse::PutReady {
                piece,
                offset: kept.len() as u64,
            },
            PieceRequest::PutChunk { offset, bytes, .. } => {
                assert_eq!(*offset, kept.len() as u64);
                kept.extend_from_slice(bytes);
                PieceResponse::PutProgress {
                    piece,
                    offset: kept.len() as u64,
                }
            }
            PieceRequest::PutEnd { .. } => PieceResponse::Stored { piece },
        }
    });

    let block = fetch_block(&session, cid, MIB).await.unwrap();
    assert_eq!(block, sample_bytes("busy block", 300_000));

    // Four chunks, each answered `Busy` once, and the end: more busy spells than one spell's
    // retries, each after progress.
    let piece = sample_bytes("busy upload", 3 * MIB as usize + 1000);
    let piece_cid = tessera_formats::address::raw_cid(&piece);
    let timeouts = session.timeouts();
    let source = Source::Bytes(&piece);
    upload(
        session.net(),
        id,
        piece_cid,
        piece.len() as u64,
        source,
        timeouts,
    )
    .await
    .unwrap();
    assert_eq!(*received.lock().unwrap(), piece);

    let refused = upload(
        session.net(),
        id,
        at_limit,
        1000,
        Source::Bytes(&full),
        timeouts,
    )
    .await;
    assert!(refused.unwrap_err().0.contains("Busy"));
    assert_eq!(*begun_at_limit.lock().unwrap(), 1);

    serving.abort();
    network.shutdown().await;
}
