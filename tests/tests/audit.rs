//! Audits and repair over a real network on 127.0.0.1. A node loses a piece and rots another:
//! an auditor's rounds catch both after the configured failures in a row, rebuild them on
//! nodes that hold no piece of their shards, and the dataset fetches without the node. Holders
//! of a shard vanish one at a time, more than `m` of them, and the shard stays fetchable. A
//! node that answers with a proof for another nonce, or over other bytes, fails every time. A
//! shard followed after a failure has only its failing holder challenged again.

#![allow(clippy::unwrap_used)]

use std::{io::Write as _, path::Path, time::Duration};
use tessera_dataset::{
    FetchOptions, PublishOptions, fetch_version, publish::list_parquet, publish_version,
};

use tessera_client::Session;

use tessera_formats::{
    AuditResult, Cid, DatasetRef, Manifest, ShardLayout, erasure::ErasureParams, record::SigningKey,
};
use tessera_net::{Inbound, Keypair, NetworkConfig};
use tessera_proofs::{Challenge, Outboard, Proof, prove};
use tessera_storage_node::{
    LocalNetwork,
    audit::{AuditConfig, RoundReport, node_key},
};
use tessera_storage_protocol::{ChallengeProtocol, ChallengeResponse, ErrorCode};
use tessera_tests::write_parquet;

const MIB: u64 = 1024 * 1024;

/// Publishes `files` Parquet files as `name` through `network` with `params` (the default for
/// the network when none), and waits until every node's registry lists every shard.
async fn publish(
    network: &LocalNetwork,
    dir: &Path,
    name: &str,
    files: usize,
    params: Option<ErasureParams>,
) -> (Cid, Manifest) {
    let data = dir.join(format!("data-{name}"));
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..files {
        write_parquet(
            &data.join(format!("{i}.parquet")),
            &format!("{name} {i}"),
            6_000,
        );
    }
    let session = join(network).await;
    let published = publish_version(
        &session,
        list_parquet(&data).unwrap(),
        name,
        "",
        &SigningKey::from_bytes(&[4; 32]),
        PublishOptions {
            params,
            parallel: 8,
            ..PublishOptions::default()
        },
    )
    .await
    .unwrap();
    // Every registry hears of the version; wait until each lists its shards.
    let shards = published.report.manifest.shards.len();
    for i in 0..network.peers().len() {
        let registry = network
            .node(i)
            .unwrap()
            .registry
            .as_ref()
            .unwrap()
            .store()
            .clone();
        for _ in 0..200 {
            if registry.audit_set(1000).unwrap().shards.len() >= shards {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    (published.report.manifest_cid, published.report.manifest)
}

/// A client of `network`, under its charter's id when it has one.
async fn join(network: &LocalNetwork) -> Session {
    Session::join_network(network.network_id(), network.bootstrap())
        .await
        .unwrap()
}

/// Which running nodes hold `piece` in their stores.
fn holders_of(network: &LocalNetwork, piece: &Cid) -> Vec<usize> {
    (0..network.peers().len())
        .filter(|i| {
            network
                .node(*i)
                .is_some_and(|n| n.store.has(piece).unwrap().is_some())
        })
        .collect()
}

/// The running nodes holding a piece of the shard laid out as `layout`, piece by piece.
fn shard_holders(network: &LocalNetwork, layout: &ShardLayout) -> Vec<usize> {
    layout
        .pieces
        .iter()
        .flat_map(|p| holders_of(network, p))
        .collect()
}

/// Fetches the dataset `manifest` from the network into a new directory under `dir`.
async fn fetches(network: &LocalNetwork, dir: &Path, manifest: Cid, label: &str) {
    let session = join(network).await;
    let out = dir.join(format!("fetched-{label}"));
    let reference: DatasetRef = manifest.to_string().parse().unwrap();
    fetch_version(&session, &reference, &out, None, &FetchOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{label}: {e}"));
}

fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn config(failures: u32) -> AuditConfig {
    logs();
    AuditConfig {
        interval: Duration::from_secs(60),
        period: Duration::from_secs(60),
        failures,
        grace: Duration::ZERO,
        samples: 64,
        timeout: Duration::from_secs(10),
        spare: 1.0,
        claim_settle: Duration::from_millis(200),
        ..AuditConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_and_rotten_pieces_are_caught_and_rebuilt_on_other_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let mut network = LocalNetwork::start(&dir.path().join("nodes"), 5, 256 * MIB)
        .await
        .unwrap();
    // Two shards of 2+2 on five nodes: each shard leaves one node free.
    let (manifest_cid, manifest) = publish(&network, dir.path(), "audited", 2, None).await;
    assert_eq!(manifest.shards.len(), 2);
    let shard_pieces: Vec<Vec<Cid>> = manifest
        .shards
        .iter()
        .map(|s| s.layout.pieces.clone())
        .collect();

    // The victim holds a piece of each shard: it loses one and rots the other.
    let holds = |i: usize, shard: usize| {
        shard_pieces[shard]
            .iter()
            .copied()
            .find(|p| network.node(i).unwrap().store.has(p).unwrap().is_some())
    };
    let victim = (1..5)
        .find(|i| holds(*i, 0).is_some() && holds(*i, 1).is_some())
        .unwrap();
    let (lost, rotten) = (holds(victim, 0).unwrap(), holds(victim, 1).unwrap());
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
    let victim_peer = victim_node.client.peer_id();
    let victim_key = node_key(&victim_peer).unwrap();

    // The auditor (node 0) fails a piece after two failures in a row.
    let auditor_node = network.node(0).unwrap();
    let mut auditor = auditor_node.auditor(config(2)).unwrap();
    let set = auditor.known_shards().await;
    assert_eq!(set.shards.len(), 2);
    assert_eq!(set.datasets.len(), 1);

    // Round 1: two failures seen, nothing failed or repaired yet.
    let first = auditor.round(&set.shards, &[1; 32], 0).await;
    assert!(first.failed.is_empty() && first.repaired.is_empty());
    for receipt in &first.receipts {
        receipt.verify().unwrap();
        let r = &receipt.receipt;
        let bad = r.node == victim_key && (r.piece == lost || r.piece == rotten);
        assert_eq!(!r.result.passed(), bad, "{r:?}");
        if bad {
            let want = if r.piece == lost {
                AuditResult::Refused
            } else {
                AuditResult::BadProof
            };
            assert_eq!(r.result, want);
        }
    }
    let audited = first.receipts.len();

    // Round 2 (its shards, with a new seed): both pieces fail, and both are rebuilt.
    let second = auditor.round(&set.shards, &[2; 32], 0).await;
    let mut failed: Vec<_> = second.failed.clone();
    failed.sort();
    let mut want = vec![(victim_peer, lost), (victim_peer, rotten)];
    want.sort();
    assert_eq!(failed, want);
    let mut repaired: Vec<Cid> = second.repaired.iter().map(|(p, _)| *p).collect();
    repaired.sort();
    let mut want: Vec<Cid> = vec![lost, rotten];
    want.sort();
    assert_eq!(repaired, want, "{second:?}");
    for (piece, holder) in &second.repaired {
        let index = network.index_of(holder).unwrap();
        assert_ne!(index, victim);
        let shard = usize::from(shard_pieces[1].contains(piece));
        // The new holder has the piece and no other piece of its shard.
        let has: Vec<Cid> = shard_pieces[shard]
            .iter()
            .copied()
            .filter(|p| network.node(index).unwrap().store.has(p).unwrap().is_some())
            .collect();
        assert_eq!(has, [*piece], "node {index}");
    }

    // Receipts: kept by the auditor, found by node, shared with the other nodes.
    let kept = auditor_node.receipts.about(&victim_key, 0, 100).unwrap();
    assert_eq!(
        kept.iter().filter(|r| !r.receipt.result.passed()).count(),
        4
    );
    let others = auditor_node.metrics.audit_counters();
    assert_eq!(others.failed, 4);
    assert_eq!(others.repaired, 2);
    assert_eq!(others.passed, u64::try_from(2 * audited - 4).unwrap());
    let shared = network.node(victim).unwrap().receipts.clone();
    let mut seen = 0;
    for _ in 0..100 {
        seen = shared.between(0, u64::MAX, None, 1000).unwrap().0.len();
        if seen == 2 * audited {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, 2 * audited, "the victim heard every receipt");

    // The audit status shows the repairs and a healthy dataset.
    let status = auditor_node.audit_view.lock().status(&auditor_node.metrics);
    assert_eq!(status.pieces_repaired, 2);
    assert_eq!(status.datasets[0].min_spare, Some(2));

    // A third round finds the shards whole; the victim stops, and the dataset still fetches.
    let third = auditor.round(&set.shards, &[3; 32], 0).await;
    assert!(third.repaired.is_empty() && third.lost.is_empty());
    network.stop(victim).await;
    fetches(&network, dir.path(), manifest_cid, "without the victim").await;
    network.shutdown().await;
}

/// A shard checked again because a holder is failing challenges only that holder again: the
/// holders that passed since are not proved every round while it waits out its grace (which
/// multiplied the audit traffic two to six times in the simulator..
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_followed_shard_challenges_only_its_failing_holder() {
    let dir = tempfile::tempdir().unwrap();
    let network = LocalNetwork::start(&dir.path().join("nodes"), 5, 256 * MIB)
        .await
        .unwrap();
    let (_, manifest) = publish(&network, dir.path(), "followed", 2, None).await;
    assert_eq!(manifest.shards.len(), 2);
    let auditor_node = network.node(0).unwrap();
    // Two rounds a period: one shard is due in each.
    let mut auditor = auditor_node
        .auditor(AuditConfig {
            period: Duration::from_secs(120),
            ..config(3)
        })
        .unwrap();
    let set = auditor.known_shards().await;
    let seed = [5; 32];
    let keys: Vec<Cid> = set.shards.iter().map(|(cid, _)| *cid).collect();
    let due: Vec<Cid> = auditor
        .schedule()
        .round(&keys, &seed, 0)
        .into_iter()
        .copied()
        .collect();
    assert_eq!(due.len(), 1, "{due:?}");
    let (_, layout) = set.shards.iter().find(|(cid, _)| *cid == due[0]).unwrap();
    // A node other than the auditor loses its piece of the shard due first.
    let (victim, lost) = layout
        .pieces
        .iter()
        .find_map(|p| {
            holders_of(&network, p)
                .into_iter()
                .find(|&i| i != 0)
                .map(|i| (i, *p))
        })
        .unwrap();
    network.node(victim).unwrap().store.remove(&lost).unwrap();
    let about = |report: &RoundReport| -> Vec<(Cid, AuditResult)> {
        report
            .receipts
            .iter()
            .filter(|r| layout.pieces.contains(&r.receipt.piece))
            .map(|r| (r.receipt.piece, r.receipt.result))
            .collect()
    };
    let first = auditor.round(&set.shards, &seed, 0).await;
    let proved = about(&first);
    assert!(
        proved.len() >= 3,
        "every holder but the auditor: {proved:?}"
    );
    let failing: Vec<_> = proved.iter().filter(|(_, r)| !r.passed()).collect();
    assert_eq!(failing, [&(lost, AuditResult::Refused)]);
    assert!(first.failed.is_empty(), "one failure of three");
    // The next round: the other shard is proved whole, the followed one asks only the
    // failing holder again.
    let second = auditor.round(&set.shards, &seed, 1).await;
    assert_eq!(about(&second), [(lost, AuditResult::Refused)]);
    assert!(
        second.receipts.len() > 1,
        "the shard due this round is proved whole: {second:?}"
    );
    network.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repair_keeps_a_shard_alive_through_more_than_m_lost_holders() {
    let dir = tempfile::tempdir().unwrap();
    let mut network = LocalNetwork::start(&dir.path().join("nodes"), 5, 256 * MIB)
        .await
        .unwrap();
    // One shard of 2+1 on three of five nodes.
    let params = ErasureParams::new(2, 1, 64 * 1024).unwrap();
    let (manifest_cid, manifest) = publish(&network, dir.path(), "survivor", 1, Some(params)).await;
    let original = shard_holders(&network, &manifest.shards[0].layout);
    assert_eq!(original.len(), 3);
    // The auditor is an original holder that stays; the others go, one at a time.
    let auditor_index = original[0];
    let mut auditor = network
        .node(auditor_index)
        .unwrap()
        .auditor(config(1))
        .unwrap();
    let set = auditor.known_shards().await;
    let mut gone = Vec::new();
    for (round, victim) in original[1..].iter().copied().enumerate() {
        network.stop(victim).await;
        gone.push(victim);
        let seed = [u8::try_from(round).unwrap(); 32];
        let report = auditor.round(&set.shards, &seed, 0).await;
        assert_eq!(
            report.repaired.len(),
            1,
            "after node {victim} went: {report:?}"
        );
        assert!(report.lost.is_empty());
        let (_, holder) = report.repaired[0];
        assert!(!gone.contains(&network.index_of(&holder).unwrap()));
    }
    // Two of three original holders are gone (m = 1), and the shard fetches.
    fetches(&network, dir.path(), manifest_cid, "after two losses").await;
    network.shutdown().await;
}

/// An operator's limits hold for the work an auditor does: over its monthly cap it neither
/// repairs nor audits, and under a download rate a repair takes the time its fetch implies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_auditor_keeps_to_its_operators_cap_and_rates() {
    let dir = tempfile::tempdir().unwrap();
    let mut network = LocalNetwork::start(&dir.path().join("nodes"), 5, 256 * MIB)
        .await
        .unwrap();
    let params = ErasureParams::new(2, 1, 64 * 1024).unwrap();
    let (manifest_cid, manifest) = publish(&network, dir.path(), "capped", 1, Some(params)).await;
    let layout = &manifest.shards[0].layout;
    let holders = shard_holders(&network, layout);
    let auditor_index = (0..5).find(|i| !holders.contains(i)).unwrap();
    network.stop(holders[0]).await;

    // A cap of one byte: the proofs of the first round use it up, so the repair that round
    // needs is not run, and the next round challenges nobody.
    network
        .reconfigure(auditor_index, |c| {
            c.monthly_cap = Some(bytesize::ByteSize::b(1));
        })
        .await
        .unwrap();
    let mut auditor = network
        .node(auditor_index)
        .unwrap()
        .auditor(config(1))
        .unwrap();
    let set = auditor.known_shards().await;
    let first = auditor.round(&set.shards, &[1; 32], 0).await;
    assert!(!first.receipts.is_empty(), "{first:?}");
    assert!(first.repaired.is_empty(), "{first:?}");
    let second = auditor.round(&set.shards, &[2; 32], 0).await;
    assert!(second.receipts.is_empty(), "{second:?}");
    assert!(second.repaired.is_empty(), "{second:?}");

    // No cap, and a download rate a third of the k pieces a repair fetches: a second's worth
    // passes at once, the rest waits about two seconds.
    let fetched = u64::from(layout.erasure.k) * layout.piece_len();
    let rate = (fetched / 3).max(1024);
    // The auditor holds the node's store open; it goes before the node restarts.
    drop(auditor);
    network
        .reconfigure(auditor_index, |c| {
            c.monthly_cap = None;
            c.download_rate = Some(bytesize::ByteSize::b(rate));
        })
        .await
        .unwrap();
    let mut auditor = network
        .node(auditor_index)
        .unwrap()
        .auditor(config(1))
        .unwrap();
    let set = auditor.known_shards().await;
    let started = std::time::Instant::now();
    let third = auditor.round(&set.shards, &[3; 32], 0).await;
    let took = started.elapsed();
    assert_eq!(third.repaired.len(), 1, "{third:?}");
    let least = Duration::from_secs_f64((fetched - rate) as f64 / rate as f64 * 0.9);
    assert!(took >= least, "{took:?} < {least:?} at {rate} B/s");
    fetches(
        &network,
        dir.path(),
        manifest_cid,
        "after the limited repair",
    )
    .await;
    network.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_auditors_never_rebuild_the_same_shard_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut network = LocalNetwork::start(&dir.path().join("nodes"), 5, 256 * MIB)
        .await
        .unwrap();
    let params = ErasureParams::new(2, 1, 64 * 1024).unwrap();
    let (manifest_cid, manifest) = publish(&network, dir.path(), "claimed", 1, Some(params)).await;
    let holders = shard_holders(&network, &manifest.shards[0].layout);
    let free: Vec<usize> = (0..5).filter(|i| !holders.contains(i)).collect();
    assert_eq!(free.len(), 2);
    // A holder goes; the two nodes without a piece audit at the same moment.
    network.stop(holders[0]).await;
    let mut rounds = Vec::new();
    for i in &free {
        let mut auditor = network.node(*i).unwrap().auditor(config(1)).unwrap();
        let set = auditor.known_shards().await;
        rounds.push(tokio::spawn(async move {
            auditor.round(&set.shards, &[9; 32], 0).await
        }));
    }
    let mut repaired = 0;
    for round in rounds {
        repaired += round.await.unwrap().repaired.len();
    }
    assert_eq!(
        repaired, 1,
        "one auditor claims the shard, the other leaves it"
    );
    fetches(
        &network,
        dir.path(),
        manifest_cid,
        "after the claimed repair",
    )
    .await;
    network.shutdown().await;
}

/// How the lying node answers a challenge for a piece it holds.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// A true proof, for a nonce of its own choosing (one it could have computed in advance).
    OtherNonce,
    /// The same, relabelled with the nonce it was asked for.
    Relabelled,
    /// A proof over other bytes, claimed for the piece.
    OtherBytes,
    /// No proof: too busy to take the challenge (the node's queue of requests is full).
    Busy,
    /// Busy for the first challenge, then a true proof for the nonce it was asked for.
    BusyOnce,
    /// A true proof for the nonce it was asked for.
    Honest,
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
    let mut liar = tessera_net::start(
        Keypair::generate_ed25519(),
        NetworkConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            ..NetworkConfig::default()
        }
        .serving::<ChallengeProtocol>(),
    )
    .await
    .unwrap();
    let liar_peer = liar.client.peer_id();
    let lie = std::sync::Arc::new(std::sync::Mutex::new(Answer::OtherNonce));
    // The nonce of every challenge the liar was sent.
    let nonces = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut inbound: Inbound<ChallengeProtocol> = liar.inbound().unwrap();
    let mode = lie.clone();
    let seen = nonces.clone();
    tokio::spawn(async move {
        while let Some(asked) = inbound.recv().await {
            let (request, responder) = (asked.request, asked.responder);
            seen.lock().unwrap().push(request.nonce);
            let own = Challenge {
                nonce: [7; 32],
                ..request.0.clone()
            };
            let mut current = *mode.lock().unwrap();
            if let Answer::BusyOnce = current {
                // Busy this time; the next challenge gets a true proof.
                *mode.lock().unwrap() = Answer::Honest;
                current = Answer::Busy;
            }
            let proof = match current {
                Answer::Honest | Answer::BusyOnce => {
                    prove(&request, &piece_bytes, &outboard).unwrap()
                }
                Answer::OtherNonce => prove(&own, &piece_bytes, &outboard).unwrap(),
                Answer::Relabelled => Proof {
                    nonce: request.nonce,
                    ..prove(&own, &piece_bytes, &outboard).unwrap()
                },
                Answer::OtherBytes => prove(&request, &other_bytes, &other_outboard).unwrap(),
                Answer::Busy => {
                    let busy = ChallengeResponse::Error {
                        piece: request.piece,
                        code: ErrorCode::Busy,
                        message: "node is busy".into(),
                    };
                    let _ = responder.respond(busy).await;
                    continue;
                }
            };
            let _ = responder.respond(ChallengeResponse::Proof(proof)).await;
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
    for mode in [Answer::OtherNonce, Answer::Relabelled, Answer::OtherBytes] {
        *lie.lock().unwrap() = mode;
        for _ in 0..3 {
            let receipt = auditor.audit(liar_peer, piece).await.unwrap();
            assert_eq!(receipt.receipt.result, AuditResult::BadProof, "{mode:?}");
            receipt.verify().unwrap();
        }
    }
    // A node busy for a moment is challenged again, with a fresh nonce, and passes.
    *lie.lock().unwrap() = Answer::BusyOnce;
    nonces.lock().unwrap().clear();
    let receipt = auditor.audit(liar_peer, piece).await.unwrap();
    assert_eq!(receipt.receipt.result, AuditResult::Passed);
    receipt.verify().unwrap();
    let asked = nonces.lock().unwrap().clone();
    assert_eq!(asked.len(), 2, "one busy answer, then the proof");
    assert_ne!(asked[0], asked[1], "each challenge has its own nonce");
    assert_eq!(
        receipt.receipt.nonce, asked[1],
        "the receipt is for the challenge answered"
    );
    // Still too busy after the pauses is no refusal to prove: it counts as no answer in time,
    // a failure only after the grace period, not a definite one at once.
    *lie.lock().unwrap() = Answer::Busy;
    nonces.lock().unwrap().clear();
    let receipt = auditor.audit(liar_peer, piece).await.unwrap();
    assert_eq!(receipt.receipt.result, AuditResult::Timeout);
    let asked = nonces.lock().unwrap().len();
    assert_eq!(asked, 5, "the first challenge and four more after pauses");
    network.shutdown().await;
}

/// A dataset published after an auditor started its period is audited within two rounds, not
/// a period later; the dashboard's view lists it as soon as a round sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dataset_published_mid_period_is_audited_within_two_rounds() {
    let dir = tempfile::tempdir().unwrap();
    let network = LocalNetwork::start(&dir.path().join("nodes"), 6, 64 * MIB)
        .await
        .unwrap();
    let node = network.node(0).unwrap();
    let interval = Duration::from_millis(500);
    let auditor = node
        .auditor(AuditConfig {
            interval,
            // A period far longer than the test: the new dataset is not waiting for it.
            period: Duration::from_secs(3600),
            ..config(3)
        })
        .unwrap();
    let running = tokio::spawn(auditor.run());
    // The period has begun, with nothing to audit.
    tokio::time::sleep(interval * 2).await;
    assert_eq!(node.audit_view.lock().status(&node.metrics).shards, 0);

    let (_, manifest) = publish(&network, dir.path(), "late", 1, None).await;
    let pieces: Vec<Cid> = manifest.shards[0].layout.pieces.clone();
    let published = std::time::Instant::now();
    let audited = loop {
        let (blocks, _) = node.receipts.between(0, u64::MAX, None, 1000).unwrap();
        let receipts: Vec<_> = blocks
            .iter()
            .filter_map(|b| tessera_formats::SignedReceipt::from_block(b).ok())
            .filter(|r| pieces.contains(&r.receipt.piece))
            .collect();
        if !receipts.is_empty() {
            break receipts;
        }
        assert!(
            published.elapsed() < interval * 2 + Duration::from_secs(5),
            "no audit of the new dataset within two rounds"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(audited.iter().all(|r| r.receipt.result.passed()));
    // The view takes the shard once its check ends, a moment after the first receipts.
    while node.audit_view.lock().status(&node.metrics).shards == 0 {
        assert!(
            published.elapsed() < interval * 2 + Duration::from_secs(10),
            "the audit view never listed the new shard"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.abort();
    network.shutdown().await;
}

/// A claim on a shard's repair by a key the charter does not rank first blocks nothing: an
/// auditor without a charter defers to it (the attack), the charter's assigned repairer
/// ignores it and rebuilds the shard in its first round.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claims_by_foreign_keys_do_not_delay_a_repair_by_the_assigned_validator() {
    use tessera_formats::{
        RepairClaim,
        charter::{Charter, CharterParams},
        claim::CLAIM_VERSION,
        time::now_ms,
    };
    use tessera_node::charter::NodeCharter;
    use tessera_storage_node::audit::{claim_key, signing_key};

    let dir = tempfile::tempdir().unwrap();
    let nodes = dir.path().join("nodes");
    let mut network = LocalNetwork::start(&nodes, 5, 256 * MIB).await.unwrap();
    let params = ErasureParams::new(2, 1, 64 * 1024).unwrap();
    let (manifest_cid, manifest) =
        publish(&network, dir.path(), "contested", 1, Some(params)).await;
    let (shard, _) = manifest.shards[0].layout.to_block().unwrap();
    let holders = shard_holders(&network, &manifest.shards[0].layout);
    let auditor_index = (0..5).find(|i| !holders.contains(i)).unwrap();
    network.stop(holders[0]).await;

    // Someone claims the shard's repair, as far ahead as a claim may reach, and would post it
    // again before it lapses.
    let squatter = SigningKey::from_bytes(&[66; 32]);
    let claim = RepairClaim {
        format: CLAIM_VERSION,
        claimer: tessera_formats::PublisherKey::of(&squatter),
        shard,
        expires_ms: now_ms() + 10 * 60 * 1000,
    }
    .sign(&squatter)
    .unwrap()
    .to_block()
    .unwrap();
    let session = Session::join(network.bootstrap()).await.unwrap();
    session
        .net()
        .put_record(claim_key(&shard), claim)
        .await
        .unwrap();

    // Without a charter, the claim holds the repair off.
    let node = network.node(auditor_index).unwrap();
    let mut blocked = node.auditor(config(1)).unwrap();
    let set = blocked.known_shards().await;
    let round = blocked.round(&set.shards, &[3; 32], 0).await;
    assert!(round.repaired.is_empty(), "{round:?}");

    // The charter makes this node the only validator: it repairs at once.
    let keypair =
        tessera_net::identity::load_or_create(&nodes.join(format!("node-{auditor_index}")))
            .unwrap();
    let key = signing_key(&keypair).unwrap();
    let signed = Charter::found(
        "contest",
        vec![tessera_formats::PublisherKey::of(&key)],
        1,
        CharterParams {
            validators_per_piece: 1,
            ..CharterParams::default()
        },
    )
    .signed_by(&[&key])
    .unwrap();
    let (cid, _) = signed.to_block().unwrap();
    let mut assigned = node
        .auditor(config(1))
        .unwrap()
        .with_charter(NodeCharter { signed, cid });
    let set = assigned.known_shards().await;
    let round = assigned.round(&set.shards, &[4; 32], 0).await;
    assert_eq!(round.repaired.len(), 1, "{round:?}");
    fetches(
        &network,
        dir.path(),
        manifest_cid,
        "after the assigned repair",
    )
    .await;
    network.shutdown().await;
}

/// Under a charter each holder's copy is challenged by the validator assigned it, not by
/// every auditor: another validator reads the assigned one's shared receipt instead. Two
/// validators take turns; once each has heard the other, a round challenges only what is
/// its own to audit, and the two together challenge each holder once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_a_charter_each_copy_is_challenged_by_its_assigned_validator_alone() {
    use tessera_formats::{PublisherKey, time::now_ms};
    use tessera_node::charter::load;
    use tessera_proofs::assignment::{auditors, period_of};

    let dir = tempfile::tempdir().unwrap();
    let network =
        LocalNetwork::start_committee(&dir.path().join("nodes"), 6, 64 * MIB, "assigned", 2, 1)
            .await
            .unwrap();
    let params = ErasureParams::new(3, 2, 64 * 1024).unwrap();
    let (_, manifest) = publish(&network, dir.path(), "assigned", 2, Some(params)).await;
    let charter = load(network.charter().unwrap()).unwrap();
    let c = &charter.signed.charter;
    let period = period_of(now_ms(), c.params.audit_period_ms);
    let validators: Vec<PublisherKey> = (0..2)
        .map(|i| node_key(&network.peers()[i]).unwrap())
        .collect();
    // Which validator each (piece, holder) is for, from the public assignment.
    let mut assigned = [0usize; 2];
    for layout in manifest.shards.iter().map(|s| &s.layout) {
        for piece in &layout.pieces {
            for holder in holders_of(&network, piece) {
                let key = node_key(&network.peers()[holder]).unwrap();
                let who = auditors(&charter.cid, period, piece, &key, &c.committee, 1)[0];
                assigned[validators.iter().position(|v| *v == who).unwrap()] += 1;
            }
        }
    }
    let total = assigned[0] + assigned[1];

    let mut auditors_ = [
        network.node(0).unwrap().auditor(config(3)).unwrap(),
        network.node(1).unwrap().auditor(config(3)).unwrap(),
    ];
    let set = auditors_[0].known_shards().await;
    // Until a validator's receipts reach the other, the other challenges for its own view.
    let first = auditors_[0].round(&set.shards, &[1; 32], 0).await;
    assert_eq!(first.heard, 0, "{first:?}");
    let shared = |i: usize| {
        network
            .node(i)
            .unwrap()
            .receipts
            .between(0, u64::MAX, None, 10_000)
            .unwrap()
            .0
            .len()
    };
    let wait_for = |i: usize, n: usize| {
        let started = std::time::Instant::now();
        async move {
            while shared(i) < n {
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "receipts not shared"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // Node 0 kept only the receipts that count: those of its assigned copies.
    let kept0 = shared(0);
    wait_for(1, kept0).await;
    let second = auditors_[1].round(&set.shards, &[2; 32], 0).await;
    wait_for(0, shared(1)).await;
    let third = auditors_[0].round(&set.shards, &[3; 32], 0).await;
    for (round, i) in [(&second, 1), (&third, 0)] {
        // A validator's own copies are the other's to audit: it neither challenges nor
        // hears of them; it counts them intact from its store.
        assert_eq!(round.challenged, assigned[i], "validator {i}: {round:?}");
        assert!(round.receipts.iter().all(|r| r.receipt.result.passed()));
    }
    assert_eq!(second.challenged + third.challenged, total);
    assert_eq!(
        third.heard,
        assigned[1] - own_copies(&network, &manifest, 0)
    );
    network.shutdown().await;
}

/// How many copies of the manifest's pieces node `index` holds.
fn own_copies(network: &LocalNetwork, manifest: &Manifest, index: usize) -> usize {
    manifest
        .shards
        .iter()
        .flat_map(|s| &s.layout.pieces)
        .filter(|p| holders_of(network, p).contains(&index))
        .count()
}
