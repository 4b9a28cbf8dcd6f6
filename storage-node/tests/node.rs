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
        capacity: bytesize::ByteSize::mib(64),
        max_piece: bytesize::ByteSize::mib(16),
        http: Some("127.0.0.1:0".parse().unwrap()),
        scrub_interval: std::time::Duration::ZERO,
        registry: true,
        audit_interval: std::time::Duration::ZERO,
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
    // The process's own figures, for an operator's dashboard or alerts.
    for stat in [
        "cpu_seconds",
        "resident_bytes",
        "threads",
        "open_fds",
        "uptime_seconds",
    ] {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&format!("tessera_process{{stat=\"{stat}\"}}")))
            .unwrap_or_else(|| panic!("no {stat}: {metrics}"));
        let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(
            value >= 0.0 && (stat == "uptime_seconds" || stat == "cpu_seconds" || value > 0.0),
            "{line}"
        );
    }
    // The upload's bytes, under the piece protocol, in the status and the metrics; the
    // storage service's own count and the limits (none) beside them.
    let piece_traffic = status
        .traffic
        .iter()
        .find(|t| t.protocol == "/tessera/piece/1")
        .unwrap_or_else(|| panic!("{:?}", status.traffic));
    assert!(piece_traffic.received >= 2_000_000, "{piece_traffic:?}");
    assert_eq!(status.bandwidth.received, 2_000_000);
    assert_eq!(status.bandwidth.monthly_cap, None);
    assert!(
        status
            .process
            .get("resident_bytes")
            .is_some_and(|b| *b > 0.0)
    );
    let received = metrics
        .lines()
        .find(|l| {
            l.starts_with("tessera_protocol_bytes{")
                && l.contains("protocol=\"/tessera/piece/1\"")
                && l.contains("direction=\"received\"")
        })
        .unwrap_or_else(|| panic!("{metrics}"));
    let value: u64 = received.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(value >= 2_000_000, "{received}");
    // Every error of the port, whichever part of the node answers it, has one shape.
    for (path, status, code) in [
        ("/nothing", 404, "not_found"),
        ("/v1/receipts?after=zz", 400, "bad_request"),
        ("/v1/receipts?limit=many", 400, "bad_request"),
        ("/v1/datasets/nobody/web", 400, "bad_request"),
        ("/v1/manifests/not-a-cid", 400, "bad_request"),
    ] {
        let (head, body) = http_get(http, path).await;
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status}")),
            "{path}: {head}"
        );
        let error: tessera_node::http::ErrorBody =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        assert_eq!(error.error.code, code, "{path}: {body}");
        assert!(!error.error.message.is_empty(), "{path}");
    }

    // Restart on the same data directory: same identity, same pieces.
    node.shutdown().await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let node = StorageNode::start(config(dir.path())).await.unwrap();
    assert_eq!(node.client.peer_id(), peer_id);
    assert_eq!(node.startup.pieces, 1);
    assert_eq!(node.store.has(&piece).unwrap(), Some(2_000_000));
    node.shutdown().await;
}

/// A node keeps every role's data in one RocksDB, and a node that kept receipts in a database
/// of their own (before columns) finds them in it after the upgrade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_database_and_an_older_one_imported() {
    use tessera_formats::{
        AuditReceipt, AuditResult, PublisherKey, receipt::RECEIPT_VERSION, record::SigningKey,
    };
    use tessera_storage_node::receipts::ReceiptStore;

    let dir = tempfile::tempdir().unwrap();
    let auditor = SigningKey::from_bytes(&[7; 32]);
    let node_key = PublisherKey([2; 32]);
    let receipt = AuditReceipt {
        format: RECEIPT_VERSION,
        auditor: PublisherKey::of(&auditor),
        node: node_key,
        piece: raw_cid(b"piece"),
        size: 4096,
        nonce: [5; 32],
        samples: 16,
        result: AuditResult::Passed,
        // Within the retention: the node prunes older receipts as soon as it starts.
        time_ms: tessera_formats::time::now_ms(),
    }
    .sign(&auditor)
    .unwrap();
    ReceiptStore::open(&dir.path().join("receipts"))
        .unwrap()
        .insert(&receipt)
        .unwrap();

    let node = StorageNode::start(config(dir.path())).await.unwrap();
    assert_eq!(
        node.receipts.about(&node_key, 0, 10).unwrap(),
        vec![receipt]
    );
    node.shutdown().await;
    let mut entries: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.ends_with(".spool"))
        .collect();
    entries.sort();
    // One database; the pieces, their uploads, the repair spool and the key beside it.
    let databases: Vec<&String> = entries
        .iter()
        .filter(|name| dir.path().join(name).join("CURRENT").exists())
        .collect();
    assert_eq!(databases, ["db"], "{entries:?}");
}

/// Two nodes of a network with a charter: they speak under its id, show it on `/status`, and
/// keep a shared receipt only when an assigned validator of the charter made it; receipts
/// from outsiders and from unassigned validators take no room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charter_names_the_network_and_decides_whose_receipts_are_kept() {
    use tessera_formats::{
        AuditReceipt, AuditResult, PublisherKey,
        charter::{Charter, CharterParams},
        receipt::RECEIPT_VERSION,
        record::SigningKey,
        time::now_ms,
    };
    use tessera_proofs::assignment::{auditors, period_of};
    use tessera_storage_node::audit::RECEIPT_TOPIC;

    let dir = tempfile::tempdir().unwrap();
    let validators: Vec<SigningKey> = (1..=3).map(|i| SigningKey::from_bytes(&[i; 32])).collect();
    let charter = Charter::found(
        "nodetest",
        validators.iter().map(PublisherKey::of).collect(),
        2,
        CharterParams {
            validators_per_piece: 1,
            ..CharterParams::default()
        },
    )
    .signed_by(&[&validators[0], &validators[1]])
    .unwrap();
    let (charter_cid, block) = charter.to_block().unwrap();
    let charter_file = dir.path().join("charter.block");
    std::fs::write(&charter_file, block).unwrap();
    let with_charter = |name: &str, bootstrap| NodeConfig {
        charter: Some(charter_file.clone()),
        bootstrap,
        ..config(&dir.path().join(name))
    };
    let a = StorageNode::start(with_charter("a", vec![])).await.unwrap();
    let b = StorageNode::start(with_charter("b", a.addresses.clone()))
        .await
        .unwrap();
    let (_, body) = http_get(a.http.unwrap(), "/status").await;
    let status: Status = serde_json::from_str(&body).unwrap();
    assert_eq!(status.network.as_deref(), Some("nodetest"));
    assert_eq!(status.charter, Some(charter_cid.to_string()));

    let piece = raw_cid(b"a piece");
    let node = PublisherKey([9; 32]);
    let receipt = |by: &SigningKey, time_ms: u64| {
        AuditReceipt {
            format: RECEIPT_VERSION,
            auditor: PublisherKey::of(by),
            node,
            piece,
            size: 4096,
            nonce: [1; 32],
            samples: 16,
            result: AuditResult::Passed,
            time_ms,
        }
        .sign(by)
        .unwrap()
    };
    let now = now_ms();
    let period = period_of(now, charter.charter.params.audit_period_ms);
    let assigned = auditors(
        &charter_cid,
        period,
        &piece,
        &node,
        &charter.charter.committee,
        1,
    )[0];
    let key = |pick: &dyn Fn(&PublisherKey) -> bool| {
        validators
            .iter()
            .find(|v| pick(&PublisherKey::of(v)))
            .unwrap()
    };
    let (assigned_key, unassigned_key) = (key(&|k| *k == assigned), key(&|k| *k != assigned));
    let outsider = SigningKey::from_bytes(&[42; 32]);

    // B shares receipts until A has kept the assigned validator's: the others, shared
    // before it each round, reached A too.
    let mut kept = Vec::new();
    for round in 0..50u64 {
        for liar in [unassigned_key, &outsider] {
            let (_, bad) = receipt(liar, now - round).to_block().unwrap();
            b.client.publish(RECEIPT_TOPIC, bad).await.unwrap();
        }
        let (_, good) = receipt(assigned_key, now).to_block().unwrap();
        b.client.publish(RECEIPT_TOPIC, good).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        kept = a.receipts.about(&node, 0, 100).unwrap();
        if !kept.is_empty() {
            break;
        }
    }
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].receipt.auditor, assigned);

    // The committee changes: epoch 1, in force from two seconds ago, leaves the assigned
    // validator out. Handed to A, it reaches B. A receipt is judged by the epoch in force
    // when it was made: the validator's receipt from before the change is still kept, one
    // made since is not.
    let starts = now - 2_000;
    let next = Charter::after(
        &charter.charter,
        charter_cid,
        starts,
        validators
            .iter()
            .map(PublisherKey::of)
            .filter(|k| *k != assigned)
            .collect(),
        1,
        CharterParams {
            validators_per_piece: 1,
            ..CharterParams::default()
        },
    )
    .signed_by(&[&validators[0], &validators[1], &validators[2]])
    .unwrap();
    let api = tessera_storage_node::api_client::NodeClient::new(
        &format!("http://{}", a.http.unwrap()),
        std::time::Duration::from_secs(10),
    )
    .unwrap();
    let answer = api.next_charter(next.to_block().unwrap().1).await.unwrap();
    assert!(answer.advanced && answer.epoch == 1, "{answer:?}");
    let (before, since) = (now - 3_000, now - 1_000);
    let mut kept = Vec::new();
    for _ in 0..50 {
        for time in [since, before] {
            let (_, block) = receipt(assigned_key, time).to_block().unwrap();
            b.client.publish(RECEIPT_TOPIC, block).await.unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        kept = a.receipts.about(&node, 0, 100).unwrap();
        if kept.len() > 1 {
            break;
        }
    }
    let times: Vec<u64> = kept.iter().map(|r| r.receipt.time_ms).collect();
    assert!(times.contains(&before), "{times:?}");
    assert!(!times.contains(&since), "{times:?}");
    b.shutdown().await;
    a.shutdown().await;
}
