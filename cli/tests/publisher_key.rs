//! `tessera publisher-key rotate` as a publisher runs it: the key file then holds a new key
//! that signs for the same publisher id, the old key is kept beside it, and `tessera publish`
//! goes on publishing the same dataset name under the new key.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use common::tessera;
use tessera_client::Session;
use tessera_dataset_registry::remote::find;
use tessera_formats::{PublisherKey, VersionSel};
use tessera_storage_node::LocalNetwork;

mod common;

/// Runs the binary; returns its stdout, failing the test with its stderr when it fails.
fn run(args: &[&str]) -> (String, String) {
    let out = tessera().args(args).output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert!(out.status.success(), "tessera {args:?}: {stderr}");
    (stdout, stderr)
}

fn publish(dir: &Path, version: u32, key: &str, bootstrap: &str) -> String {
    let data = dir.join(format!("data-v{version}"));
    std::fs::create_dir_all(&data).unwrap();
    tessera_tests::write_parquet(&data.join("0.parquet"), &format!("v{version}"), 200);
    let data = data.to_str().unwrap();
    let args = ["publish", data, "--name", "data", "--key", key];
    let (_, stderr) = run(&[
        &args[..],
        &["--bootstrap", bootstrap, "--k", "2", "--m", "1"],
    ]
    .concat());
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_publishes_the_same_datasets_and_the_old_one_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let network = LocalNetwork::start(&dir.path().join("nodes"), 3, 64 << 20)
        .await
        .unwrap();
    let bootstrap = network.bootstrap()[0].to_string();
    let key_file = dir.path().join("publisher.key");
    let key = key_file.to_str().unwrap();

    let said = publish(dir.path(), 1, key, &bootstrap);
    let (publisher, _) = run(&["publisher-key", "show", "--key", key]);
    assert!(said.contains(&format!("{publisher}/data@v1")), "{said}");

    let (new_key, said) = run(&[
        "publisher-key",
        "rotate",
        "--key",
        key,
        "--bootstrap",
        &bootstrap,
    ]);
    assert!(said.contains("rotation 1 kept"), "{said}");
    assert_ne!(new_key, publisher);
    let (still, said) = run(&["publisher-key", "show", "--key", key]);
    assert_eq!(still, publisher, "the publisher id stays");
    assert!(said.contains(&new_key), "{said}");
    assert!(dir.path().join("publisher.key.retired-1").exists());

    let said = publish(dir.path(), 2, key, &bootstrap);
    assert!(said.contains(&format!("{publisher}/data@v2")), "{said}");
    let session = Session::join(network.bootstrap()).await.unwrap();
    let entry = find(&session, Some(&publisher), "data", VersionSel::Latest, None)
        .await
        .unwrap();
    assert_eq!(entry.record.record.version, 2);
    assert_eq!(
        entry.record.signer,
        Some(new_key.parse::<PublisherKey>().unwrap())
    );
    network.shutdown().await;
}
