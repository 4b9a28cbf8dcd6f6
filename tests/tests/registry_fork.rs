//! A publisher that signs two records for one version forks its dataset. Registry nodes that
//! each hold one side answer as if nothing were wrong; a reader asking several of them sees
//! both, refuses the dataset with a clear error, and shares the two records as evidence, so
//! that every node asked refuses the dataset from then on, with evidence a reader checks.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tessera_client::Session;
use tessera_dataset::{PublishOptions, publish::list_parquet, publish_version};
use tessera_dataset_registry::{
    protocol::{RegistryProtocol, RegistryRequest, RegistryResponse},
    remote::{RemoteError, resolve},
};
use tessera_formats::{
    DatasetRef, PublisherKey, VersionRecord,
    record::{RECORD_VERSION, SigningKey},
    time::now_ms,
};
use tessera_storage_node::LocalNetwork;
use tessera_tests::write_parquet;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forked_dataset_is_refused_and_every_node_asked_learns_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let network = LocalNetwork::start(&dir.path().join("nodes"), 3, 64 << 20)
        .await
        .unwrap();
    let session = Session::join(network.bootstrap()).await.unwrap();
    let key = SigningKey::from_bytes(&[8; 32]);
    let publish = |name: &'static str| {
        let (session, key, dir) = (&session, &key, dir.path().to_path_buf());
        async move {
            let data = dir.join(format!("data-{name}"));
            std::fs::create_dir_all(&data).unwrap();
            write_parquet(&data.join("0.parquet"), name, 500);
            publish_version(
                session,
                list_parquet(&data).unwrap(),
                name,
                "",
                key,
                PublishOptions::default(),
            )
            .await
            .unwrap()
        }
    };
    let v1 = publish("forked").await;
    let other = publish("other").await;
    let stores: Vec<_> = (0..3)
        .map(|i| {
            network
                .node(i)
                .unwrap()
                .registry
                .as_ref()
                .unwrap()
                .store()
                .clone()
        })
        .collect();
    let publisher = PublisherKey::of(&key);
    for store in &stores {
        while store.head(&publisher, "other").unwrap().is_none()
            || store.head(&publisher, "forked").unwrap().is_none()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // Two records for version 2, naming different manifests; node 0 gets one, node 1 the
    // other, node 2 neither (as nodes that heard of them first would keep them).
    let fork = |manifest, message: &str| {
        VersionRecord {
            format: RECORD_VERSION,
            publisher,
            name: "forked".into(),
            version: 2,
            manifest,
            parent: Some(v1.record_cid),
            time_ms: now_ms(),
            message: message.into(),
        }
        .sign(&key)
        .unwrap()
    };
    let sides = [
        (fork(v1.report.manifest_cid, "one"), &v1.report),
        (fork(other.report.manifest_cid, "two"), &other.report),
    ];
    for (store, (record, report)) in stores.iter().zip(&sides) {
        let (cid, block) = record.to_block().unwrap();
        let (_, manifest_block) = report.manifest.to_block().unwrap();
        store
            .insert(record, &cid, &block, &report.manifest, &manifest_block)
            .unwrap();
    }
    assert!(stores[2].evidence(&publisher, "forked").unwrap().is_none());

    let latest: DatasetRef = format!("{publisher}/forked").parse().unwrap();
    let refused = resolve(&session, &latest, None).await.unwrap_err();
    assert!(
        matches!(refused, RemoteError::Equivocation { version: 2, .. }),
        "{refused}"
    );
    assert!(
        refused.to_string().contains("two different records"),
        "{refused}"
    );

    // Every node asked now holds the evidence, node 2 included, and answers with it.
    for (i, store) in stores.iter().enumerate() {
        let mut waited = 0;
        while store.evidence(&publisher, "forked").unwrap().is_none() {
            waited += 1;
            assert!(waited < 100, "node {i} never got the evidence");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let again = Session::join(network.bootstrap()).await.unwrap();
    // Node 2, which never held either side, answers a read of the dataset with the evidence.
    again
        .net()
        .dial(network.node(2).unwrap().addresses[0].clone())
        .await
        .unwrap();
    let answer = again
        .net()
        .request::<RegistryProtocol>(
            network.peers()[2],
            RegistryRequest::Chain {
                publisher,
                name: "forked".into(),
                from: 1,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert!(
        matches!(answer, RegistryResponse::Forked { .. }),
        "{answer:?}"
    );
    let refused = resolve(&again, &latest, None).await.unwrap_err();
    assert!(
        matches!(refused, RemoteError::Equivocation { version: 2, .. }),
        "{refused}"
    );
    // The publisher's other dataset is untouched.
    let fine: DatasetRef = format!("{publisher}/other").parse().unwrap();
    resolve(&again, &fine, None).await.unwrap();
    network.shutdown().await;
}
