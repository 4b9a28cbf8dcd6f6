//! Changing a network's committee as its operators would: `tessera charter next` writes the
//! next epoch, the validators in force sign it (`--after` the charter in force; a node outside
//! that committee cannot), `tessera charter publish` hands it to one node, which takes it and
//! passes it on: every node runs under the new epoch, and keeps it across a restart. A charter
//! short of signatures is refused.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use common::tessera;
use tessera_storage_node::{LocalNetwork, Status};

mod common;

fn run(args: &[&str]) -> (bool, String) {
    let out = tessera().args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn epoch_of(network: &LocalNetwork, index: usize) -> Option<u64> {
    let url = format!("http://{}/status", network.node(index)?.http?);
    let status: Status = reqwest::get(url).await.ok()?.json().await.ok()?;
    status.charter_epoch
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_committee_signed_by_the_one_in_force_reaches_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = dir.path().join("nodes");
    let mut network = LocalNetwork::start_committee(&nodes, 3, 64 << 20, "epochs", 2, 1)
        .await
        .unwrap();
    let founding = network.charter().unwrap().to_str().unwrap().to_string();
    let peers: Vec<String> = network.peers().iter().map(ToString::to_string).collect();
    let next = dir.path().join("epoch-1.block");
    let next_arg = next.to_str().unwrap();
    let (ok, text) = run(&[
        "charter",
        "next",
        "--from",
        &founding,
        "--validator",
        &peers[0],
        "--validator",
        &peers[1],
        "--validator",
        &peers[2],
        "--threshold",
        "2",
        "-o",
        next_arg,
    ]);
    assert!(ok, "{text}");
    let node_url = format!("http://{}", network.node(0).unwrap().http.unwrap());

    // Unsigned, it is refused.
    let (ok, text) = run(&["charter", "publish", next_arg, "--node", &node_url]);
    assert!(!ok && text.contains("refused"), "{text}");
    // Node 2 is not in the committee in force: it cannot sign the change.
    let node_dir = |i: usize| {
        nodes
            .join(format!("node-{i}"))
            .to_str()
            .unwrap()
            .to_string()
    };
    let sign = |i: usize| {
        run(&[
            "charter",
            "sign",
            next_arg,
            "--after",
            &founding,
            "--node-dir",
            &node_dir(i),
        ])
    };
    let (ok, text) = sign(2);
    assert!(!ok && text.contains("not a validator"), "{text}");
    for i in [0, 1] {
        let (ok, text) = sign(i);
        assert!(ok, "{text}");
    }
    let (ok, text) = run(&["charter", "show", next_arg, "--after", &founding]);
    assert!(ok && text.contains("valid      yes"), "{text}");

    let (ok, text) = run(&["charter", "publish", next_arg, "--node", &node_url]);
    assert!(
        ok && text.contains("epoch 1 in force (taken now)"),
        "{text}"
    );
    for i in 0..3 {
        let mut waited = 0;
        while epoch_of(&network, i).await != Some(1) {
            waited += 1;
            assert!(waited < 200, "node {i} never took epoch 1");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Kept: a restarted node runs under epoch 1 still.
    network.stop(2).await;
    network.restart(2).await.unwrap();
    assert_eq!(epoch_of(&network, 2).await, Some(1));
    network.shutdown().await;
}
