//! Audits over a real network on 127.0.0.1: a dataset is published on five storage nodes, one
//! node loses a piece and rots another, and an auditor's rounds catch it: failed receipts for
//! that node, passed ones for the others, the node failing both pieces after the configured
//! failures in a row, and every receipt signed and kept. A node that answers with a proof for
//! another nonce, or over other bytes, fails every time.

#![allow(clippy::unwrap_used)]

use std::{collections::BTreeMap, io::Write as _, time::Duration};

use tessera_client::{Session, dataset::PublishOptions, dataset::publish::list_parquet};
use tessera_dataset_registry::publish_version;
use tessera_formats::{AuditResult, Cid, record::SigningKey};
use tessera_net::{InboundRequest, Keypair, NetworkConfig, protocol::ChallengeResponse};
use tessera_proofs::{Challenge, Outboard, Proof, prove};
use tessera_storage_node::{
    LocalNetwork,
    audit::{AuditConfig, node_key},
};
use tessera_tests::write_parquet;

const MIB: u64 = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_loses_and_rots_pieces_fails_its_audits() {
    let dir = tempfile::tempdir().unwrap();
    let network = LocalNetwork::start(&dir.path().join("nodes"), 5, 256 * MIB)
        .await
        .unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_parquet(&data.join("a.parquet"), "audit a", 6_000);
    write_parquet(&data.join("b.parquet"), "audit b", 6_000);
    let session = Session::join(network.bootstrap()).await.unwrap();
    let published = publish_version(
        &session,
        list_parquet(&data).unwrap(),
        "audited",
        "",
        &SigningKey::from_bytes(&[4; 32]),
        PublishOptions {
            parallel: 8,
            ..PublishOptions::default()
        },
    )
    .await
    .unwrap();
    let pieces: Vec<Cid> = published
        .report
        .manifest
        .shards
        .iter()
        .flat_map(|s| s.layout.pieces.clone())
        .collect();

    // Who holds what; the victim is a node with two pieces.
    let mut held: BTreeMap<usize, Vec<Cid>> = BTreeMap::new();
    for i in 0..5 {
        let store = &network.node(i).unwrap().store;
        for piece in &pieces {
            if store.has(piece).unwrap().is_some() {
                held.entry(i).or_default().push(*piece);
            }
        }
    }
    let (&victim, victim_pieces) = held.iter().find(|(_, p)| p.len() >= 2).unwrap();
    let (lost, rotten) = (victim_pieces[0], victim_pieces[1]);
    let victim_node = network.node(victim).unwrap();
    victim_node.store.remove(&lost).unwrap();
    // Rot every byte, so that any sample lands on rot: a few bad chunks would pass a 64-sample
    // challenge now and then, as `proofs` says they should.
    let path = victim_node.store.piece_path(&rotten);
    let len = std::fs::metadata(&path).unwrap().len();
    let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all(&vec![0xAA; usize::try_from(len).unwrap()])
        .unwrap();
    drop(file);
    let victim_key = node_key(&victim_node.client.peer_id()).unwrap();

    // The auditor: another node, once its registry has the dataset.
    let auditor_index = (victim + 1) % 5;
    let auditor_node = network.node(auditor_index).unwrap();
    let registry = auditor_node.registry.as_ref().unwrap().store().clone();
    for _ in 0..200 {
        if registry.pieces(100).unwrap().0.len() == pieces.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let config = AuditConfig {
        interval: Duration::from_secs(60),
        period: Duration::from_secs(60),
        failures: 2,
        samples: 64,
        timeout: Duration::from_secs(10),
        ..AuditConfig::default()
    };
    let mut auditor = auditor_node.auditor(config).unwrap();
    let known = auditor.known_pieces().await;
    assert_eq!(known.len(), pieces.len());

    // One round covers every piece (the period is one interval).
    let first = auditor.round(&known, &[1; 32], 0).await;
    assert!(
        first.failed.is_empty(),
        "one failure is not yet a failed piece"
    );
    let holders_audited = first.receipts.len();
    // Every piece's holders but the auditor itself: 8 pieces, minus the ones it holds.
    let auditor_holds = held.get(&auditor_index).map_or(0, Vec::len);
    assert_eq!(holders_audited, pieces.len() - auditor_holds);
    for receipt in &first.receipts {
        receipt.verify().unwrap();
        let r = &receipt.receipt;
        let bad = r.node == victim_key && (r.piece == lost || r.piece == rotten);
        assert_eq!(!r.result.passed(), bad, "{r:?}");
        if r.piece == lost && bad {
            assert_eq!(r.result, AuditResult::Refused);
        }
        if r.piece == rotten && bad {
            assert_eq!(r.result, AuditResult::BadProof);
        }
        if r.result.passed() {
            assert!(r.size > 0);
        }
    }

    // The second failure in a row fails both pieces; the healthy ones stay clear.
    let second = auditor.round(&known, &[2; 32], 0).await;
    let mut failed: Vec<(String, Cid)> = second
        .failed
        .iter()
        .map(|(peer, piece)| (peer.to_string(), *piece))
        .collect();
    failed.sort();
    let mut want = vec![
        (victim_node.client.peer_id().to_string(), lost),
        (victim_node.client.peer_id().to_string(), rotten),
    ];
    want.sort();
    let victim_receipts: Vec<_> = second
        .receipts
        .iter()
        .filter(|r| r.receipt.node == victim_key)
        .map(|r| (r.receipt.piece, r.receipt.result))
        .collect();
    assert_eq!(
        failed, want,
        "lost {lost} rotten {rotten}: {victim_receipts:?}"
    );

    // The receipts are kept, found by node, and each verifies on its own.
    let kept = auditor_node.receipts.about(&victim_key, 0, 100).unwrap();
    let failures = kept.iter().filter(|r| !r.receipt.result.passed()).count();
    assert_eq!(failures, 4, "two pieces, two rounds");
    let (passed, failed_count) = auditor_node.metrics.audits();
    assert_eq!(failed_count, 4);
    assert_eq!(passed, u64::try_from(2 * holders_audited - 4).unwrap());

    network.shutdown().await;
}

/// How the lying node answers a challenge for a piece it holds.
#[derive(Clone, Copy, Debug)]
enum Lie {
    /// A true proof, for a nonce of its own choosing (one it could have computed in advance).
    OtherNonce,
    /// The same, relabelled with the nonce it was asked for.
    Relabelled,
    /// A proof over other bytes, claimed for the piece.
    OtherBytes,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_answers_with_the_wrong_proof_fails_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let network = LocalNetwork::start(&dir.path().join("nodes"), 1, 64 * MIB)
        .await
        .unwrap();
    let auditor_node = network.node(0).unwrap();
    let piece_bytes = tessera_tests::sample_bytes("liar's piece", 300_000);
    let other_bytes = tessera_tests::sample_bytes("other bytes", 300_000);
    let piece = tessera_formats::address::raw_cid(&piece_bytes);
    let (outboard, _) = Outboard::compute(&piece_bytes).unwrap();
    let (other_outboard, _) = Outboard::compute(&other_bytes).unwrap();

    // The liar: a node on the network that answers challenges itself.
    let liar = tessera_net::start(
        Keypair::generate_ed25519(),
        NetworkConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            ..NetworkConfig::default()
        },
    )
    .await
    .unwrap();
    let liar_peer = liar.client.peer_id();
    let lie = std::sync::Arc::new(std::sync::Mutex::new(Lie::OtherNonce));
    let (client, mut inbound, mode) = (liar.client.clone(), liar.inbound, lie.clone());
    tokio::spawn(async move {
        while let Some(request) = inbound.recv().await {
            let InboundRequest::Challenge {
                request, channel, ..
            } = request
            else {
                continue;
            };
            let own = Challenge {
                nonce: [7; 32],
                ..request.clone()
            };
            let current = *mode.lock().unwrap();
            let proof = match current {
                Lie::OtherNonce => prove(&own, &piece_bytes, &outboard).unwrap(),
                Lie::Relabelled => Proof {
                    nonce: request.nonce,
                    ..prove(&own, &piece_bytes, &outboard).unwrap()
                },
                Lie::OtherBytes => prove(&request, &other_bytes, &other_outboard).unwrap(),
            };
            let _ = client
                .respond_challenge(channel, ChallengeResponse::Proof(proof))
                .await;
        }
    });
    let liar_addr = liar.client.info().await.unwrap().dialable_addrs()[0].clone();
    auditor_node.client.dial(liar_addr).await.unwrap();

    let auditor = auditor_node
        .auditor(AuditConfig {
            samples: 64,
            ..AuditConfig::default()
        })
        .unwrap();
    for mode in [Lie::OtherNonce, Lie::Relabelled, Lie::OtherBytes] {
        *lie.lock().unwrap() = mode;
        for _ in 0..3 {
            let receipt = auditor.audit(liar_peer, piece).await.unwrap();
            assert_eq!(receipt.receipt.result, AuditResult::BadProof, "{mode:?}");
            receipt.verify().unwrap();
        }
    }
    network.shutdown().await;
}
