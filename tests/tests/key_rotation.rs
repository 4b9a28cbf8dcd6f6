//! A publisher rotates its key: its datasets keep their names, new versions are signed by the
//! new key and accepted by every registry node (those that had not heard of the rotation ask
//! the sender for it), and from then on the old key signs nothing. A second rotation with the
//! same number, or a record by a key that never signed for the publisher, is refused.

#![allow(clippy::unwrap_used)]

use std::{path::Path, time::Duration};

use tessera_client::Session;
use tessera_dataset::{PublishOptions, publish::list_parquet, publish_version};
use tessera_dataset_registry::{
    protocol::RegistryErrorCode,
    remote::{self, RemoteError, resolve},
};
use tessera_formats::{
    DatasetRef, PublisherKey, SignedRecord, VersionRecord,
    record::{RECORD_VERSION, Signer, SigningKey},
    rotation::{KeyRotation, ROTATION_VERSION, SignedRotation},
    time::now_ms,
};
use tessera_storage_node::LocalNetwork;
use tessera_tests::write_parquet;

fn rotation(publisher: PublisherKey, old: &SigningKey, new: &SigningKey) -> SignedRotation {
    KeyRotation {
        format: ROTATION_VERSION,
        publisher,
        sequence: 1,
        old: PublisherKey::of(old),
        new: PublisherKey::of(new),
        time_ms: now_ms(),
    }
    .sign(old, new)
    .unwrap()
}

async fn publish(session: &Session, dir: &Path, version: u32, signer: &Signer) -> SignedRecord {
    let data = dir.join(format!("v{version}"));
    std::fs::create_dir_all(&data).unwrap();
    write_parquet(&data.join("0.parquet"), &format!("v{version}"), 300);
    publish_version(
        session,
        list_parquet(&data).unwrap(),
        "data",
        "",
        signer,
        PublishOptions::default(),
    )
    .await
    .unwrap()
    .record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotated_key_signs_for_the_same_publisher_and_the_old_one_no_longer_does() {
    let dir = tempfile::tempdir().unwrap();
    let network = LocalNetwork::start(&dir.path().join("nodes"), 3, 64 << 20)
        .await
        .unwrap();
    let session = Session::join(network.bootstrap()).await.unwrap();
    let (first, second, stranger) = (
        SigningKey::from_bytes(&[1; 32]),
        SigningKey::from_bytes(&[2; 32]),
        SigningKey::from_bytes(&[3; 32]),
    );
    let publisher = PublisherKey::of(&first);
    let v1 = publish(&session, dir.path(), 1, &Signer::own(first.clone())).await;

    // The first key rotates to the second; the registry nodes asked keep it.
    let kept = remote::rotate(
        &session,
        &publisher,
        &[rotation(publisher, &first, &second)],
    )
    .await
    .unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(remote::rotations(&session, &publisher).await.unwrap(), kept);

    // Version 2, signed by the new key, is the publisher's next version under the same name.
    let rotated = Signer {
        key: second.clone(),
        publisher,
    };
    let v2 = publish(&session, dir.path(), 2, &rotated).await;
    assert_eq!(v2.record.version, 2);
    assert_eq!(v2.signer, Some(PublisherKey::of(&second)));
    let latest: DatasetRef = format!("{publisher}/data").parse().unwrap();
    let (_, entry) = resolve(&session, &latest, None).await.unwrap();
    assert_eq!(entry.unwrap().record, v2);
    let first_version: DatasetRef = format!("{publisher}/data@v1").parse().unwrap();
    let (_, entry) = resolve(&session, &first_version, None).await.unwrap();
    assert_eq!(entry.unwrap().record, v1);

    // Every registry node takes version 2, having fetched the rotation when it was missing.
    for i in 0..3 {
        let store = network.node(i).unwrap().registry.as_ref().unwrap().store();
        let mut waited = 0;
        while store
            .head(&publisher, "data")
            .unwrap()
            .map(|e| e.record.record.version)
            != Some(2)
        {
            waited += 1;
            assert!(waited < 200, "node {i} never took version 2");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(store.rotations(&publisher).unwrap(), kept);
    }

    // The old key signs nothing from the rotation on, and a key never rotated to never did.
    let record = |key: &SigningKey| {
        let (_, block) = VersionRecord {
            format: RECORD_VERSION,
            publisher,
            name: "data".into(),
            version: 3,
            manifest: v2.record.manifest,
            parent: Some(tessera_formats::address::dag_cbor_cid(
                &v2.to_block().unwrap().1,
            )),
            time_ms: now_ms(),
            message: String::new(),
        }
        .sign_as(key)
        .unwrap()
        .to_block()
        .unwrap();
        block
    };
    for key in [&first, &stranger] {
        let refused = remote::submit(&session, record(key)).await.unwrap_err();
        assert!(
            matches!(
                &refused,
                RemoteError::Refused {
                    code: RegistryErrorCode::BadRecord,
                    ..
                }
            ) && refused.to_string().contains("signs for that publisher"),
            "{refused}"
        );
    }

    // The first key cannot rotate a second way.
    let refused = remote::rotate(
        &session,
        &publisher,
        &[rotation(publisher, &first, &stranger)],
    )
    .await
    .unwrap_err();
    assert!(
        refused.to_string().contains("a key rotates once"),
        "{refused}"
    );
    network.shutdown().await;
}
