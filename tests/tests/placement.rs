//! Holders that are not independent do not count twice: nodes listen on loopback addresses
//! of four /24s (127.0.1.0 .. 127.0.4.0), two identities in each. Every shard put on the
//! network has its pieces in as many distinct subnets as it can, a subnet gets a second piece
//! only when every subnet has one.
//!
//! An auditor's side (copies in one subnet counted once, repairs placed in subnets without a
//! piece) is tested in `client::placement` and `proofs::health`: on one machine every inbound
//! connection comes from 127.0.0.1, whatever loopback address the peer listens on, so a node
//! here cannot see its peers' subnets the way a node of a real network does.

#![allow(clippy::unwrap_used)]

use std::{collections::HashMap, net::Ipv4Addr};

use tessera_client::{PutOptions, Session, put_file};
use tessera_formats::{Cid, erasure::ErasureParams};
use tessera_storage_node::LocalNetwork;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_identities_in_one_subnet_never_hold_two_pieces_while_others_have_room() {
    let dir = tempfile::tempdir().unwrap();
    let network = LocalNetwork::start_on_hosts(&dir.path().join("nodes"), NODES, 64 << 20, &host)
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

    network.shutdown().await;
}
