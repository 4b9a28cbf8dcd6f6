//! From web pages to a published dataset: two scraper nodes crawl a real site on 127.0.0.1,
//! store their shards in a network of five storage nodes (RocksDB each), and the coordinating
//! node publishes the crawl as a signed dataset version that anyone fetches by name, every
//! row verified. A second crawl of the same name becomes version 2; the same crawl published
//! again (a coordinator restarted after registering it) stays one version.

#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};
use tessera_dataset::{
    DatasetError, FetchOptions, PublishOptions, default_params, fetch_version, inspect::inspect,
    publish::list_parquet, store_shard,
};

use arrow::array::{Array, StringArray};
use axum::{
    Router,
    extract::{Path as UrlPath, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::Value;
use tessera_client::Session;
use tessera_dataset_registry::remote;
use tessera_formats::{DatasetRef, PublisherKey, VersionSel, record::SigningKey};
use tessera_scraper_node::{
    crawl_store::ShardRecord,
    node::{ScraperConfig, ScraperNode},
    provenance::{schema, verify_batch},
    publish::{CRAWL_KEY, Publisher, VALIDATION_KEY, publish_crawl},
    rewards::count_pages,
    spec::CrawlSpec,
    validation::Score,
};
use tessera_storage_node::LocalNetwork;
use tessera_tests::read_rows;

const MIB: u64 = 1024 * 1024;
/// Pages linked from the home page; `/private/…` is disallowed by robots.txt.
const PAGES: usize = 12;

/// Paths the site answered, in order.
type Log = Arc<Mutex<Vec<String>>>;

fn page(i: usize) -> String {
    let links: String = (0..PAGES)
        .map(|j| format!("<a href=\"/page/{j}\">page {j}</a> "))
        .collect();
    format!(
        "<html><head><title>Page {i}</title></head><body><article><h1>Page {i}</h1>\
         <p>This is page number {i} of a small site that two scraper nodes crawl together. \
         Every page of it should end up exactly once in the dataset that the crawl publishes, \
         signed by the node that fetched it.</p><nav>{links}<a href=\"/private/x\">x</a></nav>\
         </article></body></html>"
    )
}

async fn serve(log: Log) -> SocketAddr {
    let router = Router::new()
        .route(
            "/robots.txt",
            get(|| async { "User-agent: *\nDisallow: /private/\n" }),
        )
        .route("/", get(|| async { html(page(PAGES)) }))
        .route(
            "/page/{i}",
            get(|UrlPath(i): UrlPath<usize>| async move {
                if i < PAGES {
                    html(page(i))
                } else {
                    StatusCode::NOT_FOUND.into_response()
                }
            }),
        )
        .route("/private/x", get(|| async { html(page(99)) }))
        .layer(axum::middleware::from_fn_with_state(
            log,
            |State(log): State<Log>,
             request: axum::extract::Request,
             next: axum::middleware::Next| async move {
                log.lock().unwrap().push(request.uri().path().to_string());
                next.run(request).await
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

fn html(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

fn config(
    dir: &Path,
    storage: Vec<tessera_net::Multiaddr>,
    coordinator: Option<tessera_net::Multiaddr>,
) -> ScraperConfig {
    ScraperConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        bootstrap: storage,
        http: coordinator
            .is_none()
            .then(|| "127.0.0.1:0".parse().unwrap()),
        coordinate: coordinator.is_none(),
        coordinator,
        allow_private_networks: true,
        // Test sites are crawled faster than a contributor's node allows.
        min_delay: std::time::Duration::ZERO,
        ..ScraperConfig::with_defaults(dir.to_path_buf())
    }
}

/// Starts a crawl of the site and waits until it is published; returns its id and status.
async fn crawl(
    http: &reqwest::Client,
    api: &str,
    token: &str,
    site: SocketAddr,
) -> (String, Value) {
    let spec = format!(
        "name = \"site-text\"\nseeds = [\"http://{site}/\"]\nmax_pages = 100\nmax_depth = 2\n\
         shard_size = \"64KiB\"\n\
         [politeness]\ndelay_seconds = 0.01\nlease_size = 4\nvalidate_fraction = 0.0\n"
    );
    let spec = tessera_scraper_node::spec::CrawlSpec::from_toml(&spec).unwrap();
    let started = http
        .post(api)
        .bearer_auth(token)
        .json(&spec)
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 201);
    let id = started.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..1200 {
        let status: Value = http
            .get(format!("{api}/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if status["state"].get("published").is_some() {
            return (id, status);
        }
        assert!(status["state"].get("unpublishable").is_none(), "{status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the crawl was not published in a minute");
}

/// url -> (times seen, file_path), after checking every row's schema and signature.
fn rows(dir: &Path) -> BTreeMap<String, (usize, String)> {
    let mut out: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for (name, path) in list_parquet(dir).unwrap() {
        for batch in read_rows(&path) {
            assert_eq!(batch.schema(), schema());
            assert!(verify_batch(&batch).unwrap().is_empty(), "{name}");
            let col = |n: &str| {
                batch
                    .column_by_name(n)
                    .unwrap()
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .unwrap()
                    .clone()
            };
            let (urls, files) = (col("url"), col("file_path"));
            for i in 0..urls.len() {
                // A row names the dataset file it lives in.
                assert_eq!(files.value(i), name);
                let entry = out
                    .entry(urls.value(i).to_string())
                    .or_insert((0, name.clone()));
                entry.0 += 1;
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crawl_is_stored_published_and_fetched_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let network = LocalNetwork::start(&dir.path().join("storage"), 5, 256 * MIB)
        .await
        .unwrap();
    let log = Log::default();
    let site = serve(log.clone()).await;

    let a = ScraperNode::start(config(&dir.path().join("a"), network.bootstrap(), None))
        .await
        .unwrap();
    let b = ScraperNode::start(config(
        &dir.path().join("b"),
        network.bootstrap(),
        Some(a.addresses[0].clone()),
    ))
    .await
    .unwrap();
    let publisher = a.publisher.unwrap();
    assert!(b.publisher.is_none(), "only the coordinator publishes");
    let api = format!("http://{}/v1/crawls", a.http.unwrap());
    let http = reqwest::Client::new();

    let token =
        tessera_scraper_node::http_guard::load_or_create_token(&dir.path().join("a")).unwrap();
    let (id, status) = crawl(&http, &api, &token, site).await;
    let manifest = status["state"]["published"]["manifest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(status["state"]["published"]["version"], 1);
    assert_eq!(status["progress"]["stored"], PAGES + 1);
    assert_eq!(status["rows"], PAGES + 1);
    assert_eq!(status["rows_pending"], 0);
    assert!(
        !log.lock()
            .unwrap()
            .iter()
            .any(|p| p.starts_with("/private")),
        "robots.txt was not honoured"
    );

    // Anyone fetches the version by name, from the storage network alone.
    let reader = Session::join(network.bootstrap()).await.unwrap();
    let out = dir.path().join("fetched");
    let reference: DatasetRef = format!("{publisher}/site-text@v1").parse().unwrap();
    let (cid, entry, _) = fetch_version(&reader, &reference, &out, None, &FetchOptions::default())
        .await
        .unwrap();
    assert_eq!(cid.to_string(), manifest);
    let v1 = entry.unwrap();
    assert_eq!(v1.record.record.version, 1);
    let got = rows(&out);
    let mut want: Vec<String> = (0..PAGES)
        .map(|i| format!("http://{site}/page/{i}"))
        .collect();
    want.push(format!("http://{site}/"));
    want.sort();
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), want);
    assert!(got.values().all(|(n, _)| *n == 1), "a page twice: {got:?}");
    assert!(got.values().all(|(_, f)| f.starts_with(&format!("{id}/"))));
    // Each scraper node's pages, as `tessera rewards` counts them: every row verifies, and
    // they add up to the crawl.
    let work = tempfile::tempdir().unwrap();
    let mut fetched = 0;
    let pages = count_pages(
        &reader,
        std::slice::from_ref(&reference),
        None,
        work.path(),
        (0, u64::MAX / 1000),
        |_, report| fetched += report.fetched.len(),
    )
    .await
    .unwrap();
    assert!(fetched > 0);
    let nodes = [a.peer_id.to_string(), b.peer_id.to_string()];
    assert!(
        pages.iter().all(|row| nodes.contains(&row.peer_id)),
        "{pages:?}"
    );
    assert!(pages.iter().all(|row| row.rejected == 0));
    assert_eq!(
        pages.iter().map(|row| row.pages).sum::<u64>(),
        PAGES as u64 + 1
    );
    let fetched_manifest = tessera_dataset::fetch_manifest(&reader, cid).await.unwrap();
    assert_eq!(fetched_manifest.metadata[CRAWL_KEY], id);
    assert_eq!(fetched_manifest.total_rows(), PAGES as u64 + 1);

    // The nodes gave their disks back: their shards live in the network now.
    for node in ["a", "b"] {
        let shards = dir.path().join(node).join("shards");
        assert!(
            !shards.exists() || matches!(list_parquet(&shards), Err(DatasetError::NoFiles(_))),
            "{node} kept shards"
        );
    }

    // The same dataset crawled again is its next version, with the first as parent.
    let (_, again) = crawl(&http, &api, &token, site).await;
    assert_eq!(again["state"]["published"]["version"], 2);
    let v2: DatasetRef = format!("{publisher}/site-text@latest").parse().unwrap();
    let out2 = dir.path().join("fetched-v2");
    let (cid2, entry2, _) = fetch_version(&reader, &v2, &out2, None, &FetchOptions::default())
        .await
        .unwrap();
    assert_eq!(
        cid2.to_string(),
        again["state"]["published"]["manifest"].as_str().unwrap()
    );
    assert_eq!(entry2.unwrap().record.record.parent, Some(v1.cid));
    assert_eq!(rows(&out2).len(), PAGES + 1);

    b.shutdown().await;
    a.shutdown().await;
    network.shutdown().await;
}

/// A coordinator that registered a crawl's version and was restarted before it recorded so
/// publishes the crawl again: it gets the version it made, not a second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crawl_published_again_is_the_same_version() {
    let dir = tempfile::tempdir().unwrap();
    let network = LocalNetwork::start(&dir.path().join("storage"), 4, 256 * MIB)
        .await
        .unwrap();
    let session = Session::join(network.bootstrap()).await.unwrap();
    let path = dir.path().join("shard.parquet");
    tessera_tests::write_parquet(&path, "crawl shard", 3_000);
    let stored = store_shard(
        &session,
        &path,
        default_params(4),
        &PublishOptions::default(),
    )
    .await
    .unwrap();
    let info = inspect(&path).unwrap();
    let record = ShardRecord {
        name: "node-00000.parquet".into(),
        cid: stored.layout.content.to_string(),
        rows: info.rows,
        bytes: info.size,
        node: "node".into(),
        row_groups: info.row_groups,
        layout: Some(stored.layout.to_block().unwrap().1),
    };
    let publisher = Publisher {
        session: Session::join(network.bootstrap()).await.unwrap(),
        key: SigningKey::from_bytes(&[3; 32]),
    };
    let spec = CrawlSpec::from_toml(
        "name = \"again\"\nseeds = [\"http://example.com/\"]\nmax_pages = 10\nmax_depth = 1\n",
    )
    .unwrap();
    let records = [record];

    let first = publish_crawl(&publisher, "crawl-a", &spec, &records, 0, &BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(first.version, 1);
    // Once the record has spread (a restart takes longer than gossip), publishing the same
    // crawl again finds it.
    let me = PublisherKey::of(&publisher.key).to_string();
    for _ in 0..200 {
        if remote::find(&session, Some(&me), "again", VersionSel::Latest, None)
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = publish_crawl(&publisher, "crawl-a", &spec, &records, 0, &BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(again, first);

    // Another crawl of the same name is the next version, and says what it lacks.
    let scores = BTreeMap::from([(
        "12D3KooWscraper".to_string(),
        Score {
            agreed: 3,
            disagreed: 1,
            ..Score::default()
        },
    )]);
    let other = publish_crawl(&publisher, "crawl-b", &spec, &records, 2, &scores)
        .await
        .unwrap();
    assert_eq!(other.version, 2);
    let manifest = tessera_dataset::fetch_manifest(&session, other.manifest.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(manifest.metadata[CRAWL_KEY], "crawl-b");
    assert_eq!(manifest.metadata["tessera.crawl.missing_pages"], "2");
    // The nodes' validation scores travel with the version, for `tessera rewards`.
    let published: BTreeMap<String, Score> =
        serde_json::from_str(&manifest.metadata[VALIDATION_KEY]).unwrap();
    assert_eq!(published, scores);
    assert_eq!(manifest.shards[0].name, "crawl-b/node-00000.parquet");

    network.shutdown().await;
}
