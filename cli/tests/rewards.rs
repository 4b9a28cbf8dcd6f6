//! `tessera rewards` as a user runs it: receipts read from a node's HTTP port are verified and
//! counted per node; receipts with an altered field, a forged signature or bytes that are not
//! a block are rejected, named, and count for nothing.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use common::tessera;
use serde_json::Value;
use tessera_client::{PutOptions, Session, put_file};
use tessera_formats::{SignedReceipt, block};
use tessera_storage_node::{LocalNetwork, audit::AuditConfig, http::ReceiptPage};

mod common;

fn rewards(args: &[&str]) -> Value {
    let out = tessera()
        .arg("rewards")
        .args(args)
        .args(["--from", "2020-01-01T00:00:00Z", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// How many of the report's rejected receipts give a reason containing `why`.
fn rejected_for(report: &Value, why: &str) -> usize {
    report["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["reason"].as_str().unwrap().contains(why))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewards_count_verified_receipts_and_reject_altered_ones() {
    let dir = tempfile::tempdir().unwrap();
    let network = LocalNetwork::start(&dir.path().join("nodes"), 4, 64 << 20)
        .await
        .unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, vec![7u8; 300_000]).unwrap();
    let session = Session::join(network.bootstrap()).await.unwrap();
    let put = put_file(&session, &file, &PutOptions::default())
        .await
        .unwrap();

    // Node 0 audits every other holder of every piece, twice.
    let started = std::time::Instant::now();
    let node = network.node(0).unwrap();
    let auditor = node
        .auditor(AuditConfig {
            samples: 32,
            timeout: Duration::from_secs(10),
            ..AuditConfig::default()
        })
        .unwrap();
    let mut audits = 0;
    for _ in 0..2 {
        for (piece, holder) in put.layout.pieces.iter().zip(&put.holders) {
            if *holder != node.client.peer_id() {
                let receipt = auditor.audit(*holder, *piece).await.unwrap();
                assert!(receipt.receipt.result.passed());
                audits += 1;
            }
        }
    }
    assert!(audits >= 4);
    let url = format!("http://{}", node.http.unwrap());

    // From the node: every receipt verifies; each audited holder is credited.
    let report = rewards(&["--node", &url]);
    assert_eq!(report["receipts"], audits);
    assert_eq!(report["rejected"].as_array().unwrap().len(), 0);
    let storage = report["storage"].as_array().unwrap();
    let passed: u64 = storage.iter().map(|r| r["passed"].as_u64().unwrap()).sum();
    assert_eq!(passed, audits);
    assert!(storage.iter().all(|r| r["failed"] == 0));
    // Each holder is credited the seconds between its two audits: not a day for its first.
    let elapsed_h = started.elapsed().as_secs_f64() / 3600.0;
    let most = put.layout.piece_len() as f64 / f64::from(1u32 << 30) * elapsed_h;
    for row in storage {
        let months = row["gib_months"].as_f64().unwrap();
        assert!((months * 730.5 - row["gib_hours"].as_f64().unwrap()).abs() < 1e-9);
        // The node asked (the auditor) holds none of these pieces: no row is its own.
        assert_eq!(row["own"], false);
        let credited = row["gib_hours"].as_f64().unwrap();
        assert!(
            credited > 0.0 && credited <= most,
            "{credited} of at most {most}"
        );
    }
    for row in storage {
        let peer = row["peer_id"].as_str().unwrap();
        assert!(put.holders.iter().any(|h| h.to_string() == peer), "{peer}");
    }

    // From a file: the same receipts, two altered and one not even hex.
    let page: ReceiptPage = reqwest::get(format!("{url}/v1/receipts"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let decode = |i: usize| SignedReceipt::from_block(&hex::decode(&page.receipts[i]).unwrap());
    let mut bigger = decode(0).unwrap();
    bigger.receipt.size *= 1000;
    let mut forged = decode(1).unwrap();
    forged.signature[0] ^= 1;
    let mut receipts = page.receipts.clone();
    receipts.push(hex::encode(block::encode(&bigger).unwrap()));
    receipts.push(hex::encode(block::encode(&forged).unwrap()));
    receipts.push("not a receipt".into());
    let altered = dir.path().join("receipts.json");
    std::fs::write(
        &altered,
        serde_json::to_vec(&ReceiptPage {
            receipts,
            next: None,
        })
        .unwrap(),
    )
    .unwrap();
    let report = rewards(&["--receipts", altered.to_str().unwrap()]);
    assert_eq!(report["receipts"], audits, "only the true ones count");
    let rejected = report["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 3, "{rejected:?}");
    assert_eq!(
        rejected_for(&report, "signature does not verify"),
        2,
        "{rejected:?}"
    );
    assert_eq!(rejected_for(&report, "not hex"), 1, "{rejected:?}");
    let passed: u64 = report["storage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["passed"].as_u64().unwrap())
        .sum();
    assert_eq!(passed, audits);

    // The table for people names the rejected receipts.
    let out = tessera()
        .args(["rewards", "--receipts", altered.to_str().unwrap()])
        .args(["--from", "2020-01-01T00:00:00Z"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("3 rejected"), "{text}");
    assert!(text.contains("GiB-hours"), "{text}");
    network.shutdown().await;
}

/// Publishes one Parquet file as `name` on the chartered `network`, encoded with `params`
/// (the default when none), and waits until node 0's registry audits it; returns the session
/// and the shard's layout.
async fn publish_one(
    network: &LocalNetwork,
    dir: &std::path::Path,
    name: &str,
    params: Option<tessera_formats::erasure::ErasureParams>,
) -> (Session, tessera_formats::ShardLayout) {
    use tessera_dataset::{PublishOptions, publish::list_parquet, publish_version};

    let data = dir.join(format!("data-{name}"));
    std::fs::create_dir_all(&data).unwrap();
    tessera_tests::write_parquet(&data.join("0.parquet"), name, 4_000);
    let session = Session::join_network(network.network_id(), network.bootstrap())
        .await
        .unwrap();
    let published = publish_version(
        &session,
        list_parquet(&data).unwrap(),
        name,
        "",
        &tessera_formats::record::SigningKey::from_bytes(&[4; 32]),
        PublishOptions {
            params,
            ..PublishOptions::default()
        },
    )
    .await
    .unwrap();
    let registry = network
        .node(0)
        .unwrap()
        .registry
        .as_ref()
        .unwrap()
        .store()
        .clone();
    while registry.audit_set(1000).unwrap().shards.is_empty() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (session, published.report.manifest.shards[0].layout.clone())
}

/// Every holder of every piece of `layout` but `validator` itself, challenged once by its
/// auditor; each must pass.
async fn audit_holders(
    session: &Session,
    auditor: &tessera_storage_node::audit::Auditor,
    validator: &tessera_storage_node::StorageNode,
    layout: &tessera_formats::ShardLayout,
) -> Vec<SignedReceipt> {
    let mut receipts = Vec::new();
    for piece in &layout.pieces {
        for holder in session.net().get_providers(*piece).await.unwrap() {
            if holder != validator.client.peer_id() {
                let receipt = auditor.audit(holder, *piece).await.unwrap();
                assert!(receipt.receipt.result.passed());
                receipts.push(receipt);
            }
        }
    }
    receipts
}

/// The arguments of `tessera rewards` of the node at `url` under `network`'s charter, with
/// `extra` flags.
fn under_charter(network: &LocalNetwork, url: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--node".into(),
        url.into(),
        "--charter".into(),
        network.charter().unwrap().to_str().unwrap().into(),
        "--network".into(),
        network.network_id().unwrap(),
        "--bootstrap".into(),
        network.bootstrap()[0].to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// `tessera rewards` of the node at `url` under `network`'s charter, with `extra` flags.
fn rewards_under_charter(network: &LocalNetwork, url: &str, extra: &[&str]) -> Value {
    let args = under_charter(network, url, extra);
    rewards(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// The same, for a run that may fail: whether it succeeded, and its stderr.
fn run_rewards_under_charter(network: &LocalNetwork, url: &str, extra: &[&str]) -> (bool, String) {
    let out = tessera()
        .arg("rewards")
        .args(under_charter(network, url, extra))
        .args(["--from", "2020-01-01T00:00:00Z", "--json"])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Under a charter, a receipt pays only if a validator assigned the piece signed it and it
/// names the size of the piece's layout: a flood of receipts from a key outside the
/// committee, and the validator's own receipt with an inflated size, credit nothing, on the
/// node's `/v1/rewards` and in `tessera rewards --charter`, and the real receipts still count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_charter_only_assigned_validators_at_the_layouts_size_are_paid() {
    use tessera_formats::{AuditReceipt, PublisherKey, record::SigningKey};
    use tessera_storage_node::audit::signing_key;

    const NETWORK: &str = "rewardnet";
    let dir = tempfile::tempdir().unwrap();
    let nodes = dir.path().join("nodes");
    let network = LocalNetwork::start_chartered(&nodes, 4, 64 << 20, NETWORK)
        .await
        .unwrap();
    let (session, layout) = publish_one(&network, dir.path(), "paid", None).await;
    let node = network.node(0).unwrap();

    // Node 0, the one validator, audits every other holder of every piece.
    let auditor = node
        .auditor(AuditConfig {
            samples: 16,
            timeout: Duration::from_secs(10),
            ..AuditConfig::default()
        })
        .unwrap();
    let real = audit_holders(&session, &auditor, node, &layout).await;
    assert!(!real.is_empty());

    // What lies reach the store: a flood from a key outside the committee, and the
    // validator's own receipt naming a thousand times the piece's size.
    let validator =
        signing_key(&tessera_net::identity::load_or_create(&nodes.join("node-0")).unwrap())
            .unwrap();
    let outsider = SigningKey::from_bytes(&[66; 32]);
    let holder = real[0].receipt.node;
    let lie = |by: &SigningKey, size: u64, nonce: u8| {
        AuditReceipt {
            auditor: PublisherKey::of(by),
            size,
            nonce: [nonce; 32],
            ..real[0].receipt.clone()
        }
        .sign(by)
        .unwrap()
    };
    let flood: u8 = 200;
    for i in 0..flood {
        node.receipts.insert(&lie(&outsider, 1 << 40, i)).unwrap();
    }
    node.receipts
        .insert(&lie(&validator, layout.piece_len() * 1000, 255))
        .unwrap();
    let lies = usize::from(flood) + 1;

    // The node's own answer.
    let url = format!("http://{}", node.http.unwrap());
    let answer: Value = reqwest::get(format!("{url}/v1/rewards?from=0"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["receipts"], real.len(), "{answer}");
    assert_eq!(answer["not_counted"], lies, "{answer}");
    let passed: u64 = answer["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["passed"].as_u64().unwrap())
        .sum();
    assert_eq!(passed, real.len() as u64);

    // The same from the command line, with the charter and the network's registry.
    let report = rewards_under_charter(&network, &url, &[]);
    assert_eq!(report["receipts"], real.len(), "{report}");
    let rejected = report["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), lies);
    assert_eq!(rejected_for(&report, "not a validator"), lies - 1);
    assert_eq!(rejected_for(&report, "the layout says"), 1);
    // The holder lied about is credited its real passes only.
    let passed: u64 = report["storage"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["node"] == holder.to_string())
        .map(|r| r["passed"].as_u64().unwrap())
        .sum();
    let real_passes = real.iter().filter(|r| r.receipt.node == holder).count();
    assert_eq!(passed, real_passes as u64);
    network.shutdown().await;
}

/// A settlement report's leaves: payout address (lower case) to amount.
fn leaves(settlement: &Value) -> std::collections::BTreeMap<String, u128> {
    settlement["leaves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l[0].as_str().unwrap().to_string(),
                l[1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

/// Settlement over a real network: nodes declare payout addresses in their config, a
/// validator audits them, and `tessera rewards --settle` pays each declared address the
/// byte-milliseconds its nodes proved (two nodes declaring one address are summed, a node
/// declaring none is named and left out), in a tree whose proofs verify. With
/// `TESSERA_SETTLEMENT_OUT` set the tree is written there for `scripts/test-settlement`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlement_pays_each_declared_address_what_its_nodes_proved() {
    use std::collections::BTreeMap;
    use tessera_formats::payout::PayoutAddress;
    use tessera_proofs::settlement::{StandardDump, verify};

    const NETWORK: &str = "settlenet";
    let dir = tempfile::tempdir().unwrap();
    let mut network =
        LocalNetwork::start_chartered(&dir.path().join("nodes"), 5, 64 << 20, NETWORK)
            .await
            .unwrap();
    let (shared, own): (PayoutAddress, PayoutAddress) = (
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
            .parse()
            .unwrap(),
        "0xfb6916095ca1df60bb79ce92ce3ea74c37c5d359"
            .parse()
            .unwrap(),
    );
    // Nodes 1 and 2 share an address, node 3 has its own, node 4 declares none.
    for (index, address) in [(1, shared), (2, shared), (3, own)] {
        network
            .reconfigure(index, |c| c.payout_address = Some(address.to_string()))
            .await
            .unwrap();
    }
    let declared: BTreeMap<String, PayoutAddress> = [(1, shared), (2, shared), (3, own)]
        .iter()
        .map(|(i, a)| (network.peers()[*i].to_string(), *a))
        .collect();

    // A dataset spread over the nodes; node 0, the one validator, audits each other holder
    // twice, a moment apart, so that each is credited the time between.
    let params = tessera_formats::erasure::ErasureParams::new(2, 3, 16 * 1024).unwrap();
    let (session, layout) = publish_one(&network, dir.path(), "settled", Some(params)).await;
    let node = network.node(0).unwrap();
    let auditor = node
        .auditor(AuditConfig {
            samples: 16,
            timeout: Duration::from_secs(10),
            ..AuditConfig::default()
        })
        .unwrap();
    for _ in 0..2 {
        audit_holders(&session, &auditor, node, &layout).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let dump = dir.path().join("tree.json");
    let url = format!("http://{}", node.http.unwrap());
    let report = rewards_under_charter(
        &network,
        &url,
        &[
            "--settle",
            "--dump",
            dump.to_str().unwrap(),
            "--proof",
            &shared.to_string(),
        ],
    );
    let settlement = &report["settlement"];

    // What each address is owed: the byte-milliseconds of the nodes that declared it.
    let mut owed: BTreeMap<String, u128> = BTreeMap::new();
    let mut undeclared = Vec::new();
    for row in report["storage"].as_array().unwrap() {
        let byte_ms = u128::from(row["byte_ms"].as_u64().unwrap());
        let peer = row["peer_id"].as_str().unwrap();
        if byte_ms == 0 {
            continue;
        }
        match declared.get(peer) {
            Some(address) => *owed.entry(address.lower()).or_default() += byte_ms,
            None => undeclared.push(peer.to_string()),
        }
    }
    assert!(owed.contains_key(&shared.lower()), "{report}");
    assert_eq!(leaves(settlement), owed, "{report}");
    let named: Vec<String> = settlement["undeclared"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    assert_eq!(named, undeclared);

    // The proof asked for verifies against the root, and the dump is that tree.
    let root = settlement["root"].as_str().unwrap();
    let node_of = |text: &str| -> [u8; 32] { hex::decode(&text[2..]).unwrap().try_into().unwrap() };
    let asked = &settlement["proofs"][0];
    let proof: Vec<[u8; 32]> = asked["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| node_of(p.as_str().unwrap()))
        .collect();
    let amount: u128 = asked["amount"].as_str().unwrap().parse().unwrap();
    assert_eq!(amount, owed[&shared.lower()]);
    assert!(verify(&node_of(root), &shared, amount, &proof));
    assert!(!verify(&node_of(root), &shared, amount + 1, &proof));
    let tree: StandardDump = serde_json::from_slice(&std::fs::read(&dump).unwrap()).unwrap();
    assert_eq!(tree.format, "standard-v1");
    assert_eq!(tree.tree[0], root);

    // The validator signs the settlement; with the charter's threshold (1 here) that is a
    // certificate. Another run that is given the signed block gathers the same certificate,
    // and one over another window refuses it.
    let window = ["--to", "2100-01-01T00:00:00Z"];
    let node_dir = dir.path().join("nodes/node-0");
    let signed = rewards_under_charter(
        &network,
        &url,
        &[
            &["--settle", "--sign-as", node_dir.to_str().unwrap()],
            &window[..],
        ]
        .concat(),
    );
    let signed = &signed["settlement"];
    assert_eq!(signed["signatures"], serde_json::json!([1, 1]), "{signed}");
    let certificate = signed["certificate"].as_str().unwrap();
    let block = dir.path().join("signed.hex");
    std::fs::write(&block, signed["signed"].as_str().unwrap()).unwrap();
    let gathered = rewards_under_charter(
        &network,
        &url,
        &[
            &["--settle", "--cosigned", block.to_str().unwrap()],
            &window[..],
        ]
        .concat(),
    );
    assert_eq!(gathered["settlement"]["certificate"], certificate);
    let (ok, text) = run_rewards_under_charter(
        &network,
        &url,
        &[
            "--settle",
            "--cosigned",
            block.to_str().unwrap(),
            "--to",
            "2099-01-01T00:00:00Z",
        ],
    );
    assert!(!ok && text.contains("not the one computed here"), "{text}");

    if let Some(out) = std::env::var_os("TESSERA_SETTLEMENT_OUT") {
        let checked = serde_json::json!({
            "dump": tree,
            "root": root,
            "proofs": [{ "value": [shared.lower(), amount.to_string()], "proof": asked["proof"] }],
        });
        std::fs::write(
            std::path::Path::new(&out).join("network.json"),
            serde_json::to_vec_pretty(&checked).unwrap(),
        )
        .unwrap();
    }
    network.shutdown().await;
}

/// Pages are paid too: two scraper nodes on a chartered network crawl a site, each page
/// fetched again by the other; `tessera rewards --settle --dataset` pays each node's declared
/// address its credited pages at the charter's price in proven storage.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn settlement_pays_validated_pages_at_the_charters_price() {
    use std::collections::BTreeMap;
    use tessera_scraper_node::{
        api_client::CrawlClient,
        node::{ScraperConfig, ScraperNode},
        spec::CrawlSpec,
    };

    let dir = tempfile::tempdir().unwrap();
    let network = LocalNetwork::start_chartered(&dir.path().join("nodes"), 4, 64 << 20, "pagenet")
        .await
        .unwrap();
    let price = tessera_node::charter::load(network.charter().unwrap())
        .unwrap()
        .signed
        .charter
        .params
        .page_byte_ms;
    assert!(price > 0);
    let (site, _) = tessera_demo::site::serve().await.unwrap();
    let addresses = [
        "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
        "0xfb6916095ca1df60bb79ce92ce3ea74c37c5d359",
    ];
    let config =
        |name: &str, coordinator: Option<tessera_net::Multiaddr>, payout: &str| ScraperConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            bootstrap: network.bootstrap(),
            charter: network.charter().map(std::path::Path::to_path_buf),
            http: coordinator.is_none().then(|| ([127, 0, 0, 1], 0).into()),
            coordinate: coordinator.is_none(),
            coordinator,
            allow_private_networks: true,
            min_delay: Duration::ZERO,
            payout_address: Some(payout.into()),
            ..ScraperConfig::with_defaults(dir.path().join(name))
        };
    let a = ScraperNode::start(config("a", None, addresses[0]))
        .await
        .unwrap();
    let b = ScraperNode::start(config("b", Some(a.addresses[0].clone()), addresses[1]))
        .await
        .unwrap();
    let payout_of: BTreeMap<String, &str> = [
        (a.peer_id.to_string(), addresses[0]),
        (b.peer_id.to_string(), addresses[1]),
    ]
    .into();

    // Both nodes work for a before the crawl starts, so that every page can be checked.
    let token =
        tessera_scraper_node::http_guard::load_or_create_token(&dir.path().join("a")).unwrap();
    let crawls = CrawlClient::new(&format!("http://{}", a.http.unwrap()), Some(token)).unwrap();
    crawls
        .wait_for_workers(2, Duration::from_secs(10))
        .await
        .unwrap();
    let spec = CrawlSpec::from_toml(&format!(
        "name = \"paid-pages\"\nseeds = [\"http://{site}/\"]\nmax_pages = 50\nmax_depth = 3\n\
         [politeness]\ndelay_seconds = 0.01\nlease_size = 2\nvalidate_fraction = 1.0\n[quality]\nenabled = false\n"
    ))
    .unwrap();
    let id = crawls.start(&spec).await.unwrap();
    crawls
        .wait_published(&id, Duration::from_secs(60))
        .await
        .unwrap();

    let node = network.node(0).unwrap();
    let url = format!("http://{}", node.http.unwrap());
    let dataset = format!("{}/paid-pages", a.publisher.unwrap());
    let report = rewards_under_charter(
        &network,
        &url,
        &[
            "--settle",
            "--dataset",
            &dataset,
            "--to",
            "2100-01-01T00:00:00Z",
        ],
    );
    let pages = report["pages"].as_array().unwrap();
    let credited: u64 = pages.iter().map(|r| r["credited"].as_u64().unwrap()).sum();
    assert_eq!(
        credited,
        tessera_demo::site::CRAWLABLE_PAGES as u64,
        "every page checked and agreed: {report}"
    );
    let mut owed: BTreeMap<String, u128> = BTreeMap::new();
    for row in pages {
        let address = payout_of[row["peer_id"].as_str().unwrap()];
        *owed.entry(address.to_string()).or_default() +=
            u128::from(row["credited"].as_u64().unwrap()) * u128::from(price);
    }
    owed.retain(|_, v| *v > 0);
    assert_eq!(leaves(&report["settlement"]), owed, "{report}");
    b.shutdown().await;
    a.shutdown().await;
    network.shutdown().await;
}
