//! Datasets over a real network on 127.0.0.1 (six storage nodes running the registry role,
//! RocksDB each): publish Parquet files, fetch them by CID and by name, publish a second
//! version, resume, lose nodes, and refuse forged records.

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap
)]

use std::{path::Path, sync::Arc, time::Duration};
use tessera_dataset::{
    DatasetError, FetchOptions, Progress, PublishOptions, VersionError, fetch_dataset,
    fetch_version, publish::list_parquet, publish_version,
};

use tessera_client::{Session, fetch::providers, put::store_block};
use tessera_dataset_registry::protocol::RegistryErrorCode;
use tessera_dataset_registry::remote::{self, RemoteError};
use tessera_formats::{
    DatasetRef, PublisherKey, VersionRecord,
    address::dag_cbor_cid,
    manifest::MAX_METADATA_VALUE_BYTES,
    record::{RECORD_VERSION, SigningKey},
};
use tessera_storage_node::LocalNetwork;
use tessera_tests::{read_rows, write_parquet};

const MIB: u64 = 1024 * 1024;

fn assert_same_files(a: &Path, b: &Path) {
    for (name, path) in list_parquet(a).unwrap() {
        let copy = b.join(&name);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(&copy).unwrap(),
            "{name}"
        );
        assert_eq!(read_rows(&path), read_rows(&copy), "{name}");
    }
}

/// Node `i`'s registry records.
fn records(network: &LocalNetwork, i: usize) -> &tessera_dataset_registry::RecordStore {
    network.node(i).unwrap().registry.as_ref().unwrap().store()
}

async fn fetch(
    session: &Session,
    cid: tessera_formats::Cid,
    out: &Path,
) -> Result<tessera_dataset::FetchReport, DatasetError> {
    fetch_dataset(session, cid, out, &FetchOptions::default()).await
}

fn options(journal: &Path) -> PublishOptions {
    PublishOptions {
        parallel: 8,
        journal: Some(journal.to_path_buf()),
        ..PublishOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publish_fetch_version_and_lose_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let mut network = LocalNetwork::start(&dir.path().join("nodes"), 6, 256 * MIB)
        .await
        .unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("train")).unwrap();
    write_parquet(&data.join("part-0.parquet"), "part 0", 16_000);
    write_parquet(&data.join("part-1.parquet"), "part 1", 20_000);
    write_parquet(&data.join("train/part-2.parquet"), "part 2", 12_000);
    let signer = SigningKey::from_bytes(&[7; 32]);
    let publisher = PublisherKey::of(&signer);

    // Version 1.
    let writer = Session::join(network.bootstrap()).await.unwrap();
    let files = list_parquet(&data).unwrap();
    assert_eq!(files.len(), 3);
    let journal = dir.path().join("journal");
    let v1 = publish_version(
        &writer,
        files,
        "web-text",
        "first",
        &signer,
        options(&journal),
    )
    .await
    .unwrap();
    let params = v1.report.params;
    let six = tessera_dataset::default_params(6);
    assert_eq!(
        (params.k, params.m),
        (six.k, six.m),
        "defaults for six nodes"
    );
    assert_eq!(v1.record.record.version, 1);
    assert_eq!(v1.report.pieces_sent, 3 * usize::from(six.k + six.m));
    assert!(v1.report.manifest_holders.len() > usize::from(params.m) + 1);
    assert!(
        v1.report
            .manifest
            .shards
            .iter()
            .all(|s| s.row_groups.len() >= 6)
    );
    assert!(!journal.exists(), "a finished publish leaves no journal");
    assert!(
        v1.report
            .manifest
            .shards
            .iter()
            .all(|s| s.degraded.is_none()),
        "every piece on its own node"
    );

    // Fetch by CID and by name from a reader that joins through another node.
    let reader = Session::join(network.node(3).unwrap().addresses.clone())
        .await
        .unwrap();
    let by_cid = dir.path().join("by-cid");
    let got = fetch(&reader, v1.report.manifest_cid, &by_cid)
        .await
        .unwrap();
    assert_eq!(got.fetched.len(), 3);
    assert_same_files(&data, &by_cid);
    let by_name = dir.path().join("by-name");
    for reference in [
        "web-text",
        &format!("{publisher}/web-text@v1"),
        &format!("{}/web-text@latest", &publisher.to_string()[..16]),
    ] {
        let _ = std::fs::remove_dir_all(&by_name);
        let (cid, entry, _) = fetch_version(
            &reader,
            &reference.parse::<DatasetRef>().unwrap(),
            &by_name,
            None,
            &FetchOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(cid, v1.report.manifest_cid, "{reference}");
        assert_eq!(entry.unwrap().cid, v1.record_cid);
        assert_same_files(&data, &by_name);
    }

    // Resume: a missing shard is fetched again, the others are kept.
    std::fs::remove_file(by_cid.join("part-1.parquet")).unwrap();
    let again = fetch(&reader, v1.report.manifest_cid, &by_cid)
        .await
        .unwrap();
    assert_eq!(again.fetched, ["part-1.parquet"]);
    assert_eq!(again.present.len(), 2);
    assert_same_files(&data, &by_cid);
    // A file with other bytes in a shard's place is never overwritten.
    std::fs::write(by_cid.join("part-0.parquet"), b"not the shard").unwrap();
    let conflict = fetch(&reader, v1.report.manifest_cid, &by_cid).await;
    assert!(
        matches!(conflict, Err(DatasetError::Conflict { .. })),
        "{conflict:?}"
    );

    // Version 2 changes one file: only its pieces are stored; a registry node that was down
    // while it was published catches up when it returns.
    network.stop(5).await;
    write_parquet(&data.join("part-1.parquet"), "part 1, revised", 20_000);
    let files = list_parquet(&data).unwrap();
    let v2 = publish_version(
        &writer,
        files,
        "web-text",
        "revise part 1",
        &signer,
        options(&journal),
    )
    .await
    .unwrap();
    assert_eq!(v2.record.record.version, 2);
    assert_eq!(v2.record.record.parent, Some(v1.record_cid));
    assert_eq!(v2.report.manifest.parent, Some(v1.report.manifest_cid));
    assert_eq!(v2.report.reused, ["part-0.parquet", "train/part-2.parquet"]);
    // Five nodes are up, so the new shard gets the defaults for five (2+2).
    assert_eq!(
        v2.report.pieces_sent,
        v2.report.params.total(),
        "only the changed file's pieces"
    );
    let log = remote::log(&reader, &publisher, "web-text").await.unwrap();
    assert_eq!(
        log.iter()
            .map(|e| e.record.record.version)
            .collect::<Vec<_>>(),
        [1, 2]
    );
    network.restart(5).await.unwrap();
    let registry5 = network.node(5).unwrap().registry.clone().unwrap();
    let mut caught_up = false;
    for _ in 0..100 {
        if let Some(head) = registry5.store().head(&publisher, "web-text").unwrap()
            && head.cid == v2.record_cid
        {
            caught_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(caught_up, "the restarted registry node did not catch up");
    for i in 0..6 {
        let head = records(&network, i).head(&publisher, "web-text").unwrap();
        assert_eq!(head.map(|h| h.cid), Some(v2.record_cid), "node {i}");
    }
    // Both versions still fetch.
    let (_, _, v1_again) = fetch_version(
        &reader,
        &"web-text@v1".parse().unwrap(),
        &dir.path().join("v1"),
        None,
        &FetchOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        v1_again.manifest.shards[1].layout.content,
        v1.report.manifest.shards[1].layout.content
    );
    // v2 fetched into v1's directory updates it in place: the changed file is replaced, the
    // others kept. A file that is no version's stays, and stops the fetch.
    let v1_dir = dir.path().join("v1");
    let (_, _, updated) = fetch_version(
        &reader,
        &"web-text@v2".parse().unwrap(),
        &v1_dir,
        None,
        &FetchOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(updated.replaced, ["part-1.parquet"]);
    assert_eq!(updated.present.len(), 2);
    assert_same_files(&data, &v1_dir);
    std::fs::write(v1_dir.join("part-1.parquet"), b"someone else's").unwrap();
    let foreign = fetch_version(
        &reader,
        &"web-text@v2".parse().unwrap(),
        &v1_dir,
        None,
        &FetchOptions::default(),
    )
    .await;
    let Err(tessera_dataset::VersionError::Dataset(e)) = foreign else {
        panic!("{foreign:?}")
    };
    assert!(
        e.to_string().contains("nor a file of an older version"),
        "{e}"
    );
    assert_eq!(
        std::fs::read(v1_dir.join("part-1.parquet")).unwrap(),
        b"someone else's"
    );

    // The same files again make no version: the current one is given back.
    let same = publish_version(
        &writer,
        list_parquet(&data).unwrap(),
        "web-text",
        "",
        &signer,
        options(&journal),
    )
    .await
    .unwrap();
    assert!(same.report.unchanged);
    assert_eq!(same.report.pieces_sent, 0);
    assert_eq!(
        (same.record_cid, same.report.manifest_cid),
        (v2.record_cid, v2.report.manifest_cid)
    );
    // The same files under another name: a new dataset, nothing uploaded again.
    let copy = publish_version(
        &writer,
        list_parquet(&data).unwrap(),
        "web-text-copy",
        "",
        &signer,
        options(&journal),
    )
    .await
    .unwrap();
    assert_eq!(copy.record.record.version, 1);
    assert_eq!(copy.report.pieces_sent, 0, "{:?}", copy.report.reused);
    assert_eq!(copy.report.reused.len(), 3);

    // Lose the holders of m pieces of the changed shard: it is rebuilt from parity.
    let shard = &v2.report.manifest.shards[1];
    let mut holders = Vec::new();
    for piece in &shard.layout.pieces {
        let found = providers(&reader, *piece).await.unwrap();
        holders.push(network.index_of(&found[0]).unwrap());
    }
    // A reader that joins through a node holding none of the shard's pieces, so that node
    // stays up. Data pieces' holders go first (m <= k), so the fetch has to use parity.
    let entry = (0..6)
        .find(|i| network.node(*i).is_some() && !holders.contains(i))
        .unwrap();
    let reader = Session::join(network.node(entry).unwrap().addresses.clone())
        .await
        .unwrap();
    let k = usize::from(shard.layout.erasure.k);
    assert!(k >= 2, "the first two holders must hold data pieces");
    for &i in &holders[..2] {
        network.stop(i).await;
    }
    let out = dir.path().join("v2-degraded");
    let (_, _, got) = fetch_version(
        &reader,
        &"web-text@v2".parse().unwrap(),
        &out,
        None,
        &FetchOptions::default(),
    )
    .await
    .unwrap();
    assert!(
        got.reconstructed.contains(&"part-1.parquet".to_string()),
        "{:?}",
        got.reconstructed
    );
    assert_same_files(&data, &out);
    // One more: the shard cannot be rebuilt, the error names it, and no file takes its name.
    network.stop(holders[2]).await;
    let out = dir.path().join("v2-lost");
    let lost = fetch(&reader, v2.report.manifest_cid, &out).await;
    // Three of six nodes are down, so other shards may have lost m + 1 pieces too: every
    // shard that failed is named, none has a file under its name, and the others are whole.
    let Err(DatasetError::Shards { failed, total: 3 }) = lost else {
        panic!("expected named shard failures, got {lost:?}");
    };
    let names: Vec<&str> = failed.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"part-1.parquet"), "{names:?}");
    for shard in &v2.report.manifest.shards {
        let path = out.join(&shard.name);
        if names.contains(&shard.name.as_str()) {
            assert!(!path.exists(), "{}", shard.name);
        } else {
            assert_eq!(
                std::fs::read(&path).unwrap(),
                std::fs::read(data.join(&shard.name)).unwrap()
            );
        }
    }
    assert!(
        std::fs::read_dir(&out).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".tessera")),
        "temporary files left behind"
    );
    drop((writer, reader));
    network.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_and_unresolvable_records_are_refused_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let network = LocalNetwork::start(dir.path(), 3, 64 * MIB).await.unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_parquet(&data.join("a.parquet"), "a", 3_000);
    let (alice, mallory) = (
        SigningKey::from_bytes(&[1; 32]),
        SigningKey::from_bytes(&[2; 32]),
    );
    let session = Session::join(network.bootstrap()).await.unwrap();
    let v1 = publish_version(
        &session,
        list_parquet(&data).unwrap(),
        "corpus",
        "",
        &alice,
        PublishOptions::default(),
    )
    .await
    .unwrap();
    let refused = |result: Result<_, RemoteError>, code: RegistryErrorCode| match result {
        Err(RemoteError::Refused { code: got, message }) => assert_eq!(got, code, "{message}"),
        other => panic!("expected a {code:?} refusal, got {other:?}"),
    };
    let next = |signer: &SigningKey, publisher: PublisherKey, version: u64, message: &str| {
        VersionRecord {
            format: RECORD_VERSION,
            publisher,
            name: "corpus".into(),
            version,
            manifest: v1.report.manifest_cid,
            parent: (version > 1).then_some(v1.record_cid),
            time_ms: 1,
            message: message.into(),
        }
        .sign(signer)
        .unwrap()
    };

    // A bad signature: a field changed after signing.
    let mut forged = next(&alice, PublisherKey::of(&alice), 2, "ok");
    forged.record.message = "changed".into();
    let block = tessera_formats::block::encode(&forged).unwrap();
    refused(
        remote::submit(&session, block).await,
        RegistryErrorCode::BadRecord,
    );
    // Another key claiming Alice's chain: its signature is not Alice's.
    let mut stolen = next(&mallory, PublisherKey::of(&mallory), 2, "mine");
    stolen.record.publisher = PublisherKey::of(&alice);
    let block = tessera_formats::block::encode(&stolen).unwrap();
    refused(
        remote::submit(&session, block).await,
        RegistryErrorCode::BadRecord,
    );
    // Mallory's own record naming Alice's v1 as parent: a broken chain.
    let grafted = next(&mallory, PublisherKey::of(&mallory), 2, "graft");
    refused(
        remote::submit(&session, grafted.to_block().unwrap().1).await,
        RegistryErrorCode::BrokenChain,
    );
    // A manifest nobody holds.
    let mut ghost = next(&alice, PublisherKey::of(&alice), 2, "ghost");
    ghost.record.manifest = dag_cbor_cid(b"no such manifest");
    let ghost = ghost.record.sign(&alice).unwrap();
    refused(
        remote::submit(&session, ghost.to_block().unwrap().1).await,
        RegistryErrorCode::ManifestUnresolved,
    );
    // Garbage and trailing bytes.
    let mut trailing = v1.record.to_block().unwrap().1;
    trailing.push(0);
    refused(
        remote::submit(&session, trailing).await,
        RegistryErrorCode::BadRecord,
    );
    refused(
        remote::submit(&session, b"garbage".to_vec()).await,
        RegistryErrorCode::BadRecord,
    );

    // Manifests that are in the network but are not manifests: trailing bytes, an oversize
    // field, wrong types. Each is refused as unresolvable, with the reason.
    let v1_block = v1.report.manifest.to_block().unwrap().1;
    let mut trailing = v1_block.clone();
    trailing.push(0);
    let mut oversize = v1.report.manifest.clone();
    oversize.parent = Some(v1.report.manifest_cid);
    oversize
        .metadata
        .insert("notes".into(), "x".repeat(MAX_METADATA_VALUE_BYTES + 1));
    let oversize = tessera_formats::block::encode(&oversize).unwrap();
    let wrong_types = tessera_formats::block::encode(&std::collections::BTreeMap::from([
        ("version", "one"),
        ("shards", "none"),
    ]))
    .unwrap();
    for (bytes, reason) in [
        (trailing, "trailing"),
        (oversize, "metadata[notes]"),
        (wrong_types, "expected array"),
    ] {
        let cid = dag_cbor_cid(&bytes);
        store_block(&session, cid, &bytes, 3).await.unwrap();
        let mut bad = next(&alice, PublisherKey::of(&alice), 2, reason);
        bad.record.manifest = cid;
        let bad = bad.record.sign(&alice).unwrap();
        match remote::submit(&session, bad.to_block().unwrap().1).await {
            Err(RemoteError::Refused { code, message }) => {
                assert_eq!(code, RegistryErrorCode::ManifestUnresolved, "{message}");
                assert!(message.contains(reason), "{reason}: {message}");
            }
            other => panic!("{reason}: expected a refusal, got {other:?}"),
        }
    }

    // None of it shows: one dataset, one version, on every registry node.
    let listed = remote::list(&session, 100).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].cid, v1.record_cid);
    let log = remote::log(&session, &PublisherKey::of(&alice), "corpus")
        .await
        .unwrap();
    assert_eq!(log.len(), 1);
    for i in 0..3 {
        let store = records(&network, i).clone();
        assert!(
            store.find(None, "corpus", Some(2)).unwrap().is_empty(),
            "node {i}"
        );
    }
    let missing = remote::find(
        &session,
        None,
        "corpus",
        tessera_formats::VersionSel::Number(2),
        None,
    )
    .await;
    // The dataset is there, only the version is not: the error says which.
    match missing {
        Err(e @ RemoteError::NoSuchVersion { .. }) => {
            assert_eq!(e.to_string(), "corpus has no version 2; its latest is v1")
        }
        other => panic!("{other:?}"),
    }

    // Version 1 again, with another message: the version is taken, and Alice has forked her
    // own history. The node keeps both records as evidence and refuses the dataset from then
    // on, with evidence every reader checks.
    let reuse = next(&alice, PublisherKey::of(&alice), 1, "again");
    refused(
        remote::submit(&session, reuse.to_block().unwrap().1).await,
        RegistryErrorCode::VersionReused,
    );
    let forked = remote::log(&session, &PublisherKey::of(&alice), "corpus").await;
    assert!(
        matches!(forked, Err(RemoteError::Equivocation { version: 1, .. })),
        "{forked:?}"
    );
    let _: Option<VersionError> = None;
    drop(session);
    network.shutdown().await;
}

/// Four pieces for three nodes, told to go on: the report and the manifest both say the
/// shard survives one node loss, not two.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_degraded_shard_is_marked_in_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let network = LocalNetwork::start(&dir.path().join("nodes"), 3, 64 * MIB)
        .await
        .unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_parquet(&data.join("a.parquet"), "a", 4_000);
    let signer = SigningKey::from_bytes(&[5; 32]);
    let session = Session::join(network.bootstrap()).await.unwrap();
    let options = PublishOptions {
        params: Some(tessera_formats::erasure::ErasureParams::new(2, 2, 64 * 1024).unwrap()),
        ..options(&dir.path().join("journal"))
    };
    let files = list_parquet(&data).unwrap();
    let published = publish_version(&session, files, "thin", "", &signer, options)
        .await
        .unwrap();
    assert_eq!(published.report.survives, Some(1));
    assert_eq!(published.report.manifest.shards[0].degraded, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_interrupted_publish_resumes_without_storing_pieces_again() {
    let dir = tempfile::tempdir().unwrap();
    let network = LocalNetwork::start(&dir.path().join("nodes"), 6, 64 * MIB)
        .await
        .unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_parquet(&data.join("a.parquet"), "a", 8_000);
    write_parquet(&data.join("b.parquet"), "b", 8_000);
    let signer = SigningKey::from_bytes(&[3; 32]);
    let session = Arc::new(Session::join(network.bootstrap()).await.unwrap());
    let journal = dir.path().join("journal");

    // The first run is cut off once four pieces are acknowledged, one piece at a time.
    let (stored_tx, mut stored_rx) = tokio::sync::mpsc::unbounded_channel();
    let sink: tessera_dataset::ProgressSink = Some(Arc::new(move |event| {
        if let Progress::PieceStored { .. } = event {
            let _ = stored_tx.send(());
        }
    }));
    let first = tokio::spawn({
        let (session, signer, files) = (session.clone(), signer.clone(), list_parquet(&data));
        let options = PublishOptions {
            parallel: 1,
            progress: sink,
            ..options(&journal)
        };
        async move { publish_version(&session, files.unwrap(), "resumable", "", &signer, options).await }
    });
    for _ in 0..4 {
        stored_rx.recv().await.unwrap();
    }
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    let journaled = std::fs::read_to_string(&journal).unwrap().lines().count();
    assert!(journaled >= 4, "{journaled} pieces journaled");

    // The second run sends only what the first did not store, and every shard still has its
    // pieces on distinct nodes.
    let v1 = publish_version(
        &session,
        list_parquet(&data).unwrap(),
        "resumable",
        "",
        &signer,
        options(&journal),
    )
    .await
    .unwrap();
    let total = 2 * v1.report.params.total();
    assert!(v1.report.pieces_resumed >= 4, "{:?}", v1.report);
    assert_eq!(v1.report.pieces_resumed + v1.report.pieces_sent, total);
    assert!(!journal.exists());
    for shard in &v1.report.manifest.shards {
        let mut holders = std::collections::HashSet::new();
        for piece in &shard.layout.pieces {
            holders.extend(providers(&session, *piece).await.unwrap());
        }
        assert!(
            holders.len() >= shard.layout.pieces.len(),
            "{}: {} pieces on {} nodes",
            shard.name,
            shard.layout.pieces.len(),
            holders.len()
        );
    }
    let out = dir.path().join("out");
    fetch(&session, v1.report.manifest_cid, &out).await.unwrap();
    assert_same_files(&data, &out);
    drop(session);
    network.shutdown().await;
}

/// GETs `path` from a node's HTTP port; returns the status and the body as JSON.
async fn get_json(http: &reqwest::Client, base: &str, path: &str) -> (u16, serde_json::Value) {
    let response = http.get(format!("{base}{path}")).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_api_lists_versions_serves_manifests_and_verified_shards() {
    let dir = tempfile::tempdir().unwrap();
    let mut network = LocalNetwork::start(&dir.path().join("nodes"), 3, 64 * MIB)
        .await
        .unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_parquet(&data.join("a.parquet"), "a", 4_000);
    write_parquet(&data.join("b.parquet"), "b", 3_000);
    let signer = SigningKey::from_bytes(&[4; 32]);
    let publisher = PublisherKey::of(&signer);
    let session = Session::join(network.bootstrap()).await.unwrap();
    // 2+1 over three nodes: every node holds one piece of each shard.
    let params = tessera_formats::erasure::ErasureParams::new(2, 1, 64 * 1024).unwrap();
    let publish = |message: &'static str| {
        let files = list_parquet(&data).unwrap();
        let (session, signer) = (&session, &signer);
        async move {
            let options = PublishOptions {
                params: Some(params),
                ..PublishOptions::default()
            };
            publish_version(session, files, "pages", message, signer, options)
                .await
                .unwrap()
        }
    };
    let v1 = publish("one").await;
    write_parquet(&data.join("b.parquet"), "b, again", 3_000);
    let v2 = publish("two").await;

    let base = format!("http://{}", network.node(0).unwrap().http.unwrap());
    let http = reqwest::Client::new();

    // Node 0 may have version 2 from gossip a moment after the node it was submitted to:
    // wait for it (bounded), then check what it serves.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (status, body) = loop {
        let (status, body) = get_json(&http, &base, "/v1/datasets").await;
        if body["datasets"][0]["version"] == 2 || std::time::Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["more"], false);
    let datasets = body["datasets"].as_array().unwrap();
    assert_eq!(datasets.len(), 1);
    assert_eq!(datasets[0]["name"], "pages");
    assert_eq!(datasets[0]["version"], 2);
    assert_eq!(datasets[0]["publisher"], publisher.to_string());
    assert_eq!(datasets[0]["record"], v2.record_cid.to_string());

    let (status, body) = get_json(&http, &base, &format!("/v1/datasets/{publisher}/pages")).await;
    assert_eq!(status, 200, "{body}");
    let versions: Vec<_> = body["versions"].as_array().unwrap().iter().collect();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["message"], "one");
    assert_eq!(versions[1]["parent"], v1.record_cid.to_string());

    for (selector, published) in [("v1", &v1), ("1", &v1), ("latest", &v2)] {
        let path = format!("/v1/datasets/{publisher}/pages/{selector}");
        let (status, body) = get_json(&http, &base, &path).await;
        assert_eq!(status, 200, "{path}: {body}");
        let manifest = &body["manifest"];
        assert_eq!(
            manifest["cid"],
            published.report.manifest_cid.to_string(),
            "{path}"
        );
        assert_eq!(manifest["rows"], 7_000);
        assert_eq!(manifest["shards"][0]["name"], "a.parquet");
        assert_eq!(manifest["shards"][1]["erasure"]["k"], 2);
        assert_eq!(
            manifest["shards"][1]["cid"],
            published.report.manifest.shards[1]
                .layout
                .content
                .to_string()
        );
    }
    let path = format!("/v1/manifests/{}", v1.report.manifest_cid);
    let (status, body) = get_json(&http, &base, &path).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["shards"][1]["rows"], 3_000);
    assert_eq!(body["parent"], serde_json::Value::Null);

    // The gateway streams a shard's bytes, the same as the file published.
    let shard = &v2.report.manifest.shards[1].layout;
    let response = http
        .get(format!("{base}/v1/shards/{}", shard.content))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["content-length"].to_str().unwrap(),
        shard.size.to_string()
    );
    assert_eq!(
        response.headers()["etag"].to_str().unwrap(),
        format!("\"{}\"", shard.content)
    );
    assert_eq!(
        response.headers()["cache-control"].to_str().unwrap(),
        "public, max-age=31536000, immutable"
    );
    let bytes = response.bytes().await.unwrap();
    let file = std::fs::read(data.join("b.parquet")).unwrap();
    assert_eq!(bytes.as_ref(), file);

    // Ranges (what Parquet readers over HTTP ask for), HEAD, and If-None-Match.
    let url = format!("{base}/v1/shards/{}", shard.content);
    let size = shard.size;
    for (range, want) in [
        ("bytes=10-19", 10..20),
        ("bytes=-8", (size - 8) as usize..size as usize),
        ("bytes=100-", 100..size as usize),
    ] {
        let response = http.get(&url).header("range", range).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 206, "{range}");
        assert_eq!(
            response.headers()["content-range"].to_str().unwrap(),
            format!("bytes {}-{}/{size}", want.start, want.end - 1),
            "{range}"
        );
        assert_eq!(
            response.bytes().await.unwrap().as_ref(),
            &file[want],
            "{range}"
        );
    }
    let past = http
        .get(&url)
        .header("range", format!("bytes={size}-"))
        .send()
        .await
        .unwrap();
    assert_eq!(past.status().as_u16(), 416);
    let head = http.head(&url).send().await.unwrap();
    assert_eq!(head.status().as_u16(), 200);
    assert_eq!(
        head.headers()["content-length"].to_str().unwrap(),
        size.to_string()
    );
    assert_eq!(head.headers()["accept-ranges"].to_str().unwrap(), "bytes");
    let cached = http
        .get(&url)
        .header("if-none-match", format!("\"{}\"", shard.content))
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status().as_u16(), 304);

    // Errors: a stable code and a status to match.
    let unknown = dag_cbor_cid(b"nothing here");
    let other = PublisherKey::of(&SigningKey::from_bytes(&[5; 32]));
    for (path, want_status, want_code) in [
        (format!("/v1/datasets/{publisher}/absent"), 404, "not_found"),
        (
            format!("/v1/datasets/{other}/pages/latest"),
            404,
            "not_found",
        ),
        (
            format!("/v1/datasets/{publisher}/pages/v9"),
            404,
            "not_found",
        ),
        (
            format!("/v1/datasets/{publisher}/pages/vx"),
            400,
            "bad_request",
        ),
        ("/v1/datasets/not-a-key/pages".into(), 400, "bad_request"),
        ("/v1/datasets?after=no-slash".into(), 400, "bad_request"),
        ("/v1/manifests/not-a-cid".into(), 400, "bad_request"),
        (format!("/v1/manifests/{unknown}"), 404, "not_found"),
        (format!("/v1/shards/{unknown}"), 404, "not_found"),
    ] {
        let (status, body) = get_json(&http, &base, &path).await;
        assert_eq!(status, want_status, "{path}: {body}");
        assert_eq!(body["error"]["code"], want_code, "{path}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().len() > 3,
            "{path}"
        );
    }

    // With two of three pieces gone, the gateway cannot rebuild a shard it has not kept:
    // 502, not bytes. The one it served is kept, verified, and still served.
    network.stop(1).await;
    network.stop(2).await;
    let kept = http
        .get(&url)
        .header("range", "bytes=0-3")
        .send()
        .await
        .unwrap();
    assert_eq!(kept.bytes().await.unwrap().as_ref(), &file[..4]);
    let other = &v2.report.manifest.shards[0].layout;
    let path = format!("/v1/shards/{}", other.content);
    let (status, body) = get_json(&http, &base, &path).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    drop(session);
    network.shutdown().await;
}
