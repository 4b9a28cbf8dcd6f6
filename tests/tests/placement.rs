//! Holders that are not independent do not count twice: nodes listen on loopback addresses
//! of four /24s (127.0.1.0 .. 127.0.4.0), two identities in each. Every shard put on the
//! network has its pieces in as many distinct subnets as it can, a subnet gets a second piece
//! only when every subnet has one, and a rebuilt piece goes to the subnet that lost its own.
//! A shard crowded into one subnet is spread by the auditor's repair.

#![allow(clippy::unwrap_used)]

use std::{collections::HashMap, net::Ipv4Addr, time::Duration};

use tessera_client::{PutOptions, Session, put_file};
use tessera_formats::{Cid, erasure::ErasureParams};
use tessera_storage_node::{LocalNetwork, audit::AuditConfig};

const SUBNETS: u8 = 4;
const NODES: usize = 8;

/// Node `i` is host `i / 4 + 1` of subnet `127.0.(i % 4 + 1).0/24`.
fn host(i: usize) -> Ipv4Addr {
    let i = u8::try_from(i).unwrap();
    Ipv4Addr::new(127, 0, i % SUBNETS + 1, i / SUBNETS + 1)
}

fn subnet(i: usize) -> u8 {
    host(i).octets()[2]
}

/// Which nodes hold `piece`.
fn holders(network: &LocalNetwork, piece: &Cid) -> Vec<usize> {
    (0..NODES)
        .filter(|i| {
            network
                .node(*i)
                .is_some_and(|n| n.store.has(piece).unwrap().is_some())
        })
        .collect()
}

/// How many pieces of `pieces` each subnet holds.
fn per_subnet(network: &LocalNetwork, pieces: &[Cid]) -> HashMap<u8, usize> {
    let mut count = HashMap::new();
    for piece in pieces {
        for node in holders(network, piece) {
            *count.entry(subnet(node)).or_default() += 1;
        }
    }
    count
}

/// Restarts node `index` and has it dial every running node, until it sees each one at the
/// host it listens on (a node that connected to it first shows as 127.0.0.1: then again).
async fn restart_seeing_hosts(network: &mut LocalNetwork, index: usize) {
    for _ in 0..10 {
        network.stop(index).await;
        network.restart(index).await.unwrap();
        let running: Vec<usize> = (0..NODES)
            .filter(|i| *i != index && network.node(*i).is_some())
            .collect();
        let client = network.node(index).unwrap().client.clone();
        for i in &running {
            for addr in &network.node(*i).unwrap().addresses {
                let _ = client.dial(addr.clone()).await;
            }
        }
        let peers: Vec<_> = running.iter().map(|i| network.peers()[*i]).collect();
        let seen = client.peer_ips(peers).await.unwrap();
        if running
            .iter()
            .zip(&seen)
            .all(|(i, ip)| *ip == Some(host(*i).into()))
        {
            return;
        }
    }
    panic!("node {index} never saw every node at its own address");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_identities_in_one_subnet_never_hold_two_pieces_while_others_have_room() {
    let dir = tempfile::tempdir().unwrap();
    let mut network =
        LocalNetwork::start_on_hosts(&dir.path().join("nodes"), NODES, 64 << 20, &host)
            .await
            .unwrap();
    let session = Session::join(network.bootstrap()).await.unwrap();
    let put = |name: &str, k: u16, m: u16, seed: u8| {
        let (session, file) = (&session, dir.path().join(name));
        async move {
            std::fs::write(&file, vec![seed; 200_000]).unwrap();
            let options = PutOptions {
                params: ErasureParams::new(k, m, 16 * 1024).unwrap(),
                ..PutOptions::default()
            };
            put_file(session, &file, &options).await.unwrap()
        }
    };

    // As many pieces as subnets: one in each, whatever the DHT's order of the nodes.
    for seed in 0..6 {
        let stored = put(&format!("four-{seed}"), 2, 2, seed).await;
        let spread = per_subnet(&network, &stored.layout.pieces);
        assert_eq!(spread.len(), 4, "shard {seed}: {spread:?}");
        assert!(spread.values().all(|n| *n == 1), "shard {seed}: {spread:?}");
    }
    // More pieces than subnets: every subnet gets one before any gets a second.
    let stored = put("six", 3, 3, 9).await;
    let spread = per_subnet(&network, &stored.layout.pieces);
    assert_eq!(spread.len(), 4, "{spread:?}");
    assert!(spread.values().all(|n| (1..=2).contains(n)), "{spread:?}");

    // A holder is lost: the piece is rebuilt in its subnet, the one that holds none now,
    // on the other identity there (the only node in a subnet without a piece).
    let stored = put("repaired", 2, 2, 11).await;
    let lost_piece = stored.layout.pieces[0];
    let victim = holders(&network, &lost_piece)[0];
    let auditor_index = (0..NODES)
        .find(|i| {
            *i != victim
                && stored
                    .layout
                    .pieces
                    .iter()
                    .all(|p| !holders(&network, p).contains(i))
        })
        .unwrap();
    network.stop(victim).await;
    // On one machine every inbound connection comes from 127.0.0.1, whatever address the
    // peer listens on: the auditor starts again, so that it dials the others itself and
    // sees the subnets their listen addresses are in, as nodes of a real network see the
    // addresses their peers connect from.
    restart_seeing_hosts(&mut network, auditor_index).await;
    let mut auditor = network
        .node(auditor_index)
        .unwrap()
        .auditor(AuditConfig {
            interval: Duration::from_secs(60),
            period: Duration::from_secs(60),
            failures: 1,
            grace: Duration::ZERO,
            samples: 16,
            timeout: Duration::from_secs(5),
            spare: 1.0,
            claim_settle: Duration::from_millis(200),
            ..AuditConfig::default()
        })
        .unwrap();
    let (shard, _) = stored.layout.to_block().unwrap();
    let round = auditor
        .round(&[(shard, stored.layout.clone())], &[1; 32], 0)
        .await;
    assert_eq!(round.repaired.len(), 1, "{round:?}");
    let new = network.index_of(&round.repaired[0].1).unwrap();
    assert_eq!(subnet(new), subnet(victim), "rebuilt on node {new}");

    // A shard crowded into one subnet (as an operator running two identities, or a client
    // that placed it without looking, would leave it): all four pieces on the two nodes of
    // one subnet. Its copies count once, and the repair moves three of them out, one to each
    // other subnet.
    let file = dir.path().join("crowded");
    std::fs::write(&file, vec![42u8; 200_000]).unwrap();
    let pieces_dir = dir.path().join("crowded-pieces");
    std::fs::create_dir_all(&pieces_dir).unwrap();
    let (layout, paths) = tessera_client::put::encode_to_files(
        &file,
        &pieces_dir,
        ErasureParams::new(2, 2, 16 * 1024).unwrap(),
    )
    .unwrap();
    let running = |i: &usize| network.node(*i).is_some() && *i != auditor_index;
    let crowded_subnet = (1..=SUBNETS)
        .find(|s| (0..NODES).filter(|i| subnet(*i) == *s).all(|i| running(&i)))
        .unwrap();
    let crowd: Vec<usize> = (0..NODES)
        .filter(|i| subnet(*i) == crowded_subnet)
        .collect();
    for (index, (piece, path)) in layout.pieces.iter().zip(&paths).enumerate() {
        let node = network.peers()[crowd[index % crowd.len()]];
        tessera_client::upload::upload(
            session.net(),
            node,
            *piece,
            layout.piece_len(),
            tessera_client::upload::Source::File(path),
            session.timeouts(),
        )
        .await
        .unwrap();
    }
    assert_eq!(per_subnet(&network, &layout.pieces).len(), 1);
    let (crowded, _) = layout.to_block().unwrap();
    let round = auditor
        .round(&[(crowded, layout.clone())], &[2; 32], 0)
        .await;
    assert_eq!(round.repaired.len(), 3, "{round:?}");
    let spread = per_subnet(&network, &layout.pieces);
    assert_eq!(spread.len(), 4, "{spread:?}");
    network.shutdown().await;
}
