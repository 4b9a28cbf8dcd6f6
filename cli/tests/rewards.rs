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
    let reasons: Vec<&str> = rejected
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons
            .iter()
            .filter(|r| r.contains("signature does not verify"))
            .count(),
        2,
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("not hex")), "{reasons:?}");
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
