//! A whole storage node as an operator runs it: the HTTP port reports its state, and a restart
//! keeps its identity and its pieces.

#![allow(clippy::unwrap_used)]

mod common;

use common::{bytes, http_get, upload, user};
use tessera_formats::address::raw_cid;
use tessera_storage_node::{NodeConfig, Status, StorageNode};
use tessera_storage_protocol::PieceResponse;

fn config(dir: &std::path::Path) -> NodeConfig {
    NodeConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        bootstrap: vec![],
        capacity: 64 << 20,
        max_piece: 16 << 20,
        http: Some("127.0.0.1:0".parse().unwrap()),
        scrub_interval_secs: 0,
        registry: true,
        audit_interval_secs: 0,
        ..NodeConfig::with_defaults(dir.to_path_buf())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_metrics_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = StorageNode::start(config(dir.path())).await.unwrap();
    let peer_id = node.client.peer_id();
    let http = node.http.unwrap();

    let (head, body) = http_get(http, "/status").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let status: Status = serde_json::from_str(&body).unwrap();
    assert_eq!(status.peer_id, peer_id.to_string());
    assert_eq!(
        (status.pieces, status.bytes_used, status.bytes_free),
        (0, 0, 64 << 20)
    );

    let user = user(node.addresses[0].clone()).await;
    let data = bytes(2_000_000, 9);
    let piece = raw_cid(&data);
    assert_eq!(
        upload(&user, peer_id, piece, &data).await,
        PieceResponse::Stored { piece }
    );

    let (_, body) = http_get(http, "/status").await;
    let status: Status = serde_json::from_str(&body).unwrap();
    assert_eq!((status.pieces, status.bytes_used), (1, 2_000_000));
    assert!(status.peers_connected >= 1);
    let (head, metrics) = http_get(http, "/metrics").await;
    assert!(head.contains("openmetrics-text"), "{head}");
    assert!(metrics.contains("tessera_pieces_held 1"), "{metrics}");
    assert!(
        metrics.contains("tessera_bytes_in_total 2000000"),
        "{metrics}"
    );
    let (head, _) = http_get(http, "/nothing").await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");

    // Restart on the same data directory: same identity, same pieces.
    node.shutdown().await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let node = StorageNode::start(config(dir.path())).await.unwrap();
    assert_eq!(node.client.peer_id(), peer_id);
    assert_eq!(node.startup.pieces, 1);
    assert_eq!(node.store.has(&piece).unwrap(), Some(2_000_000));
    node.shutdown().await;
}
