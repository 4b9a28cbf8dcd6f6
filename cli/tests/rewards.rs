//! `tessera rewards` as a user runs it: receipts read from a node's HTTP port are verified and
//! counted per node; receipts with an altered field, a forged signature or bytes that are not
//! a block are rejected, named, and count for nothing.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use common::tessera;
use serde_json::Value;
use tessera_client::{PutOptions, Session, put_file};
use tessera_formats::{SignedReceipt, block};
use tessera_storage_node::{LocalNetwork, audit::AuditConfig, http::ReceiptPage};

mod common;

fn rewards(args: &[&str]) -> Value {
    let out = tessera()
        .arg("rewards")
        .args(args)
        .args(["--from", "2020-01-01T00:00:00Z", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// How many of the report's rejected receipts give a reason containing `why`.
fn rejected_for(report: &Value, why: &str) -> usize {
    report["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["reason"].as_str().unwrap().contains(why))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewards_count_verified_receipts_and_reject_altered_ones() {
    let dir = tempfile::tempdir().unwrap();
    let network = LocalNetwork::start(&dir.path().join("nodes"), 4, 64 << 20)
        .await
        .unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, vec![7u8; 300_000]).unwrap();
    let session = Session::join(network.bootstrap()).await.unwrap();
    let put = put_file(&session, &file, &PutOptions::default())
        .await
        .unwrap();

    // Node 0 audits every other holder of every piece, twice.
    let started = std::time::Instant::now();
    let node = network.node(0).unwrap();
    let auditor = node
        .auditor(AuditConfig {
            samples: 32,
            timeout: Duration::from_secs(10),
            ..AuditConfig::default()
        })
        .unwrap();
    let mut audits = 0;
    for _ in 0..2 {
        for (piece, holder) in put.layout.pieces.iter().zip(&put.holders) {
            if *holder != node.client.peer_id() {
                let receipt = auditor.audit(*holder, *piece).await.unwrap();
                assert!(receipt.receipt.result.passed());
                audits += 1;
            }
        }
    }
    assert!(audits >= 4);
    let url = format!("http://{}", node.http.unwrap());

    // From the node: every receipt verifies; each audited holder is credited.
    let report = rewards(&["--node", &url]);
    assert_eq!(report["receipts"], audits);
    assert_eq!(report["rejected"].as_array().unwrap().len(), 0);
    let storage = report["storage"].as_array().unwrap();
    let passed: u64 = storage.iter().map(|r| r["passed"].as_u64().unwrap()).sum();
    assert_eq!(passed, audits);
    assert!(storage.iter().all(|r| r["failed"] == 0));
    // Each holder is credited the seconds between its two audits: not a day for its first.
    let elapsed_h = started.elapsed().as_secs_f64() / 3600.0;
    let most = put.layout.piece_len() as f64 / f64::from(1u32 << 30) * elapsed_h;
    for row in storage {
        let months = row["gib_months"].as_f64().unwrap();
        assert!((months * 730.5 - row["gib_hours"].as_f64().unwrap()).abs() < 1e-9);
        // The node asked (the auditor) holds none of these pieces: no row is its own.
        assert_eq!(row["own"], false);
        let credited = row["gib_hours"].as_f64().unwrap();
        assert!(
            credited > 0.0 && credited <= most,
            "{credited} of at most {most}"
        );
    }
    for row in storage {
        let peer = row["peer_id"].as_str().unwrap();
        assert!(put.holders.iter().any(|h| h.to_string() == peer), "{peer}");
    }

    // From a file: the same receipts, two altered and one not even hex.
    let page: ReceiptPage = reqwest::get(format!("{url}/v1/receipts"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let decode = |i: usize| SignedReceipt::from_block(&hex::decode(&page.receipts[i]).unwrap());
    let mut bigger = decode(0).unwrap();
    bigger.receipt.size *= 1000;
    let mut forged = decode(1).unwrap();
    forged.signature[0] ^= 1;
    let mut receipts = page.receipts.clone();
    receipts.push(hex::encode(block::encode(&bigger).unwrap()));
    receipts.push(hex::encode(block::encode(&forged).unwrap()));
    receipts.push("not a receipt".into());
    let altered = dir.path().join("receipts.json");
    std::fs::write(
        &altered,
        serde_json::to_vec(&ReceiptPage {
            receipts,
            next: None,
        })
        .unwrap(),
    )
    .unwrap();
    let report = rewards(&["--receipts", altered.to_str().unwrap()]);
    assert_eq!(report["receipts"], audits, "only the true ones count");
    let rejected = report["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 3, "{rejected:?}");
    assert_eq!(
        rejected_for(&report, "signature does not verify"),
        2,
        "{rejected:?}"
    );
    assert_eq!(rejected_for(&report, "not hex"), 1, "{rejected:?}");
    let passed: u64 = report["storage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["passed"].as_u64().unwrap())
        .sum();
    assert_eq!(passed, audits);

    // The table for people names the rejected receipts.
    let out = tessera()
        .args(["rewards", "--receipts", altered.to_str().unwrap()])
        .args(["--from", "2020-01-01T00:00:00Z"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("3 rejected"), "{text}");
    assert!(text.contains("GiB-hours"), "{text}");
    network.shutdown().await;
}

/// Under a charter, a receipt pays only if a validator assigned the piece signed it and it
/// names the size of the piece's layout: a flood of receipts from a key outside the
/// committee, and the validator's own receipt with an inflated size, credit nothing, on the
/// node's `/v1/rewards` and in `tessera rewards --charter`, and the real receipts still count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_charter_only_assigned_validators_at_the_layouts_size_are_paid() {
    use tessera_dataset::{PublishOptions, publish::list_parquet, publish_version};
    use tessera_formats::{AuditReceipt, PublisherKey, record::SigningKey};
    use tessera_storage_node::audit::signing_key;

    const NETWORK: &str = "rewardnet";
    let dir = tempfile::tempdir().unwrap();
    let nodes = dir.path().join("nodes");
    let network = LocalNetwork::start_chartered(&nodes, 4, 64 << 20, NETWORK)
        .await
        .unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    tessera_tests::write_parquet(&data.join("0.parquet"), "paid", 2_000);
    let session = Session::join_network(Some(NETWORK.into()), network.bootstrap())
        .await
        .unwrap();
    let published = publish_version(
        &session,
        list_parquet(&data).unwrap(),
        "paid",
        "",
        &SigningKey::from_bytes(&[4; 32]),
        PublishOptions::default(),
    )
    .await
    .unwrap();
    let layout = published.report.manifest.shards[0].layout.clone();
    let node = network.node(0).unwrap();
    let registry = node.registry.as_ref().unwrap().store().clone();
    while registry.audit_set(1000).unwrap().shards.is_empty() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Node 0, the one validator, audits every other holder of every piece.
    let auditor = node
        .auditor(AuditConfig {
            samples: 16,
            timeout: Duration::from_secs(10),
            ..AuditConfig::default()
        })
        .unwrap();
    let mut real = Vec::new();
    for piece in &layout.pieces {
        for holder in session.net().get_providers(*piece).await.unwrap() {
            if holder != node.client.peer_id() {
                let receipt = auditor.audit(holder, *piece).await.unwrap();
                assert!(receipt.receipt.result.passed());
                real.push(receipt);
            }
        }
    }
    assert!(!real.is_empty());

    // What lies reach the store: a flood from a key outside the committee, and the
    // validator's own receipt naming a thousand times the piece's size.
    let validator =
        signing_key(&tessera_net::identity::load_or_create(&nodes.join("node-0")).unwrap())
            .unwrap();
    let outsider = SigningKey::from_bytes(&[66; 32]);
    let holder = real[0].receipt.node;
    let lie = |by: &SigningKey, size: u64, nonce: u8| {
        AuditReceipt {
            auditor: PublisherKey::of(by),
            size,
            nonce: [nonce; 32],
            ..real[0].receipt.clone()
        }
        .sign(by)
        .unwrap()
    };
    let flood: u8 = 200;
    for i in 0..flood {
        node.receipts.insert(&lie(&outsider, 1 << 40, i)).unwrap();
    }
    node.receipts
        .insert(&lie(&validator, layout.piece_len() * 1000, 255))
        .unwrap();
    let lies = usize::from(flood) + 1;

    // The node's own answer.
    let url = format!("http://{}", node.http.unwrap());
    let answer: Value = reqwest::get(format!("{url}/v1/rewards?from=0"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["receipts"], real.len(), "{answer}");
    assert_eq!(answer["not_counted"], lies, "{answer}");
    let passed: u64 = answer["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["passed"].as_u64().unwrap())
        .sum();
    assert_eq!(passed, real.len() as u64);

    // The same from the command line, with the charter and the network's registry.
    let bootstrap = network.bootstrap()[0].to_string();
    let report = rewards(&[
        "--node",
        &url,
        "--charter",
        network.charter().unwrap().to_str().unwrap(),
        "--network",
        NETWORK,
        "--bootstrap",
        &bootstrap,
    ]);
    assert_eq!(report["receipts"], real.len(), "{report}");
    let rejected = report["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), lies);
    assert_eq!(rejected_for(&report, "not a validator"), lies - 1);
    assert_eq!(rejected_for(&report, "the layout says"), 1);
    // The holder lied about is credited its real passes only.
    let passed: u64 = report["storage"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["node"] == holder.to_string())
        .map(|r| r["passed"].as_u64().unwrap())
        .sum();
    let real_passes = real.iter().filter(|r| r.receipt.node == holder).count();
    assert_eq!(passed, real_passes as u64);
    network.shutdown().await;
}
