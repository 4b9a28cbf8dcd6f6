//! Reads while holders are gone: six `tessera storage-node` processes listening on TCP and
//! QUIC (the default listen set), a shard and a dataset stored 4+2, then one holder frozen
//! (SIGSTOP: its sockets accept, nothing answers) and another stopped. A fetch and a stream by
//! a new reader complete, byte-identical, and the frozen node's pieces are replaced by parity
//! reads. What is checked is which pieces were read, not how long it took.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::{
    path::Path,
    process::{Child, Command},
    sync::Arc,
    time::Duration,
};
use tessera_dataset::{PublishOptions, publish, publish::list_parquet};

use arrow::{
    array::{AsArray, Int64Array, RecordBatch, StringArray},
    datatypes::{DataType, Field, Schema},
};
use tessera_client::{GetOptions, PutOptions, Session, get_file, put_file};
use tessera_formats::erasure::ErasureParams;
use tessera_net::{Multiaddr, PeerId, PeerStatus};
use tessera_stream::{DatasetStream, ShardCache, StreamOptions};

mod common;

const MIB: u64 = 1024 * 1024;

/// The node processes; frozen ones are woken and every one is killed when the test ends,
/// whatever happened.
struct Nodes {
    children: Vec<Child>,
    addrs: Vec<Multiaddr>,
}

impl Nodes {
    fn start(root: &Path, count: usize) -> Self {
        let mut nodes = Self {
            children: Vec::new(),
            addrs: Vec::new(),
        };
        let quic = ["--listen", "/ip4/127.0.0.1/udp/0/quic-v1"];
        for i in 0..count {
            let mut extra: Vec<String> = quic.iter().map(ToString::to_string).collect();
            if let Some(first) = nodes.addrs.first() {
                extra.extend(["--bootstrap".to_string(), first.to_string()]);
            }
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            let started = common::spawn_node(&root.join(format!("node-{i}")), &extra);
            nodes.children.push(started.child);
            nodes.addrs.push(started.addr.parse().unwrap());
        }
        nodes
    }

    fn index_of(&self, peer: PeerId) -> usize {
        self.addrs
            .iter()
            .position(|a| a.iter().last() == Some(libp2p::multiaddr::Protocol::P2p(peer)))
            .unwrap()
    }

    fn signal(&self, index: usize, signal: &str) {
        let pid = self.children[index].id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Joins through node 0 and waits until the DHT names every node.
async fn join(nodes: &Nodes) -> Session {
    let session = Session::join(vec![nodes.addrs[0].clone()]).await.unwrap();
    for _ in 0..300 {
        let found = session.net().closest_peers(b"any".to_vec()).await.unwrap();
        if found.len() >= nodes.addrs.len() {
            return session;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the DHT never named every node");
}

fn write_parquet(path: &Path, label: &str, rows: i64) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("text", DataType::Utf8, false),
    ]));
    let texts: Vec<String> = (0..rows)
        .map(|i| format!("{label}-{i}-{}", blake3::hash(&i.to_le_bytes()).to_hex()))
        .collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(0..rows)),
            Arc::new(StringArray::from_iter_values(texts)),
        ],
    )
    .unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_holder_and_a_stopped_one_are_read_around_through_parity() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = Nodes::start(&dir.path().join("nodes"), 6);
    let params = ErasureParams::new(4, 2, 64 * 1024).unwrap();

    // A shard, and a dataset of two files, stored 4+2 on the six nodes.
    let writer = join(&nodes).await;
    let original: Vec<u8> = (0..3 * MIB as usize).map(|i| (i * 7 % 251) as u8).collect();
    let shard = dir.path().join("shard.bin");
    std::fs::write(&shard, &original).unwrap();
    let put = put_file(
        &writer,
        &shard,
        &PutOptions {
            params,
            ..PutOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(!put.shares_nodes, "six pieces on six nodes");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_parquet(&data.join("part-0.parquet"), "a", 20_000);
    write_parquet(&data.join("part-1.parquet"), "b", 15_000);
    let published = publish(
        &writer,
        list_parquet(&data).unwrap(),
        &PublishOptions {
            params: Some(params),
            ..PublishOptions::default()
        },
    )
    .await
    .unwrap();
    drop(writer);

    // Two data pieces' holders, neither the readers' bootstrap node: one frozen, one stopped.
    let mut victims = (0..4).filter(|&i| nodes.index_of(put.holders[i]) != 0);
    let (frozen_piece, stopped_piece) = (victims.next().unwrap(), victims.next().unwrap());
    let (frozen, stopped) = (
        nodes.index_of(put.holders[frozen_piece]),
        nodes.index_of(put.holders[stopped_piece]),
    );
    // The reader connects to every node first, as a reader that has read before would: the
    // frozen node's connection stays open and its requests go unanswered.
    let reader = join(&nodes).await;
    for addr in &nodes.addrs {
        reader.net().dial(addr.clone()).await.unwrap();
    }
    nodes.signal(frozen, "-STOP");
    nodes.signal(stopped, "-TERM");

    let out = dir.path().join("shard.out");
    let got = get_file(&reader, put.layout_cid, &out, &GetOptions::default())
        .await
        .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), original);
    assert!(got.reconstructed);
    assert!(
        !got.used.contains(&frozen_piece) && !got.used.contains(&stopped_piece),
        "read {:?}; piece {frozen_piece} is on the frozen node, {stopped_piece} on the stopped one",
        got.used
    );
    assert_eq!(got.used.len(), 4);
    // The frozen piece was read around while its request was still out, not given up at the
    // request's timeout.
    assert!(
        got.failed
            .iter()
            .all(|(i, why)| *i != frozen_piece || !why.contains("no answer in")),
        "{:?}",
        got.failed
    );
    // The frozen node is known to be waited on, and is not asked first again.
    let status = reader
        .net()
        .peer_status(vec![put.holders[frozen_piece]])
        .await
        .unwrap();
    assert!(
        matches!(status[0], PeerStatus::Stalled(_) | PeerStatus::Down(_)),
        "{status:?}"
    );

    // The dataset streams whole, every row once, with the same holders gone.
    let cache = ShardCache::open(&dir.path().join("cache"), 64 * MIB).unwrap();
    let options = StreamOptions {
        batch_size: 1_000,
        ..StreamOptions::default()
    };
    let mut stream = DatasetStream::open(
        &reader,
        published.manifest_cid,
        Arc::new(published.manifest.clone()),
        cache,
        &options,
    )
    .unwrap();
    let mut texts = Vec::new();
    while let Some(batch) = stream.next_batch().await {
        let batch = batch.unwrap();
        let column = batch.column_by_name("text").unwrap().as_string::<i32>();
        texts.extend(column.iter().map(|t| t.unwrap().to_string()));
    }
    texts.sort();
    let mut expected: Vec<String> = (0..20_000)
        .map(|i: i64| format!("a-{i}-{}", blake3::hash(&i.to_le_bytes()).to_hex()))
        .chain(
            (0..15_000).map(|i: i64| format!("b-{i}-{}", blake3::hash(&i.to_le_bytes()).to_hex())),
        )
        .collect();
    expected.sort();
    assert_eq!(texts, expected);
}
