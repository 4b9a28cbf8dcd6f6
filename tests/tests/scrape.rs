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
use tessera_formats::{
    DatasetRef, VersionSel,
    record::{Signer, SigningKey},
};
use tessera_net::Keypair;
use tessera_scraper_node::{
    api_client::CrawlClient,
    crawl_store::ShardRecord,
    node::{ScraperConfig, ScraperNode},
    provenance::{Row, RowBuilder, schema, sign, verify_batch},
    publish::{
        CRAWL_KEY, DROPPED_KEY, FinishedCrawl, Publisher, REFUSED_KEY, VALIDATION_KEY,
        publish_crawl,
    },
    rewards::count_pages,
    row_check::StoredPages,
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
         [politeness]\ndelay_seconds = 0.01\nlease_size = 4\nvalidate_fraction = 1.0\n[quality]\nenabled = false\n"
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
    // Both nodes work for a before the crawl starts, so that each page can be checked by
    // the node that did not store it, before the crawl is published.
    CrawlClient::new(&format!("http://{}", a.http.unwrap()), None)
        .unwrap()
        .wait_for_workers(2, Duration::from_secs(10))
        .await
        .unwrap();
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
    // Every page was fetched again by the other node before the crawl was published, and
    // agreed: every page is credited.
    assert_eq!(
        pages.iter().map(|row| row.checks_agreed).sum::<u64>(),
        PAGES as u64 + 1,
        "{pages:?}"
    );
    assert!(
        pages.iter().all(|row| row.credited == row.pages),
        "{pages:?}"
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

/// Signed rows of `pages` (url, text) by `key`, written as a shard at `path`.
fn write_rows(path: &Path, key: &Keypair, pages: &[(String, String)]) {
    let mut builder = RowBuilder::default();
    for (url, text) in pages {
        let body = *blake3::hash(format!("<p>{text}</p>").as_bytes()).as_bytes();
        let time = 1_763_856_000_000_000;
        builder
            .push(&Row {
                text: text.clone(),
                id: "<urn:uuid:00000000-0000-8000-8000-000000000000>".into(),
                dump: "crawl".into(),
                url: url.clone(),
                date: "2025-11-23T00:00:00Z".into(),
                file_path: "shard.parquet".into(),
                language: "en".into(),
                language_score: 0.9,
                token_count: 3,
                fetch_time_us: time,
                http_status: 200,
                content_type: "text/html".into(),
                body_blake3: body,
                scraper: key.public().to_peer_id(),
                signature: sign(key, url, time, &body, text).unwrap(),
            })
            .unwrap();
    }
    let batch = builder.finish().unwrap();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema(), None)
            .unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

/// Stores the shard at `path` in the network and makes the record its node would send.
async fn stored_record(session: &Session, path: &Path, name: &str, node: &str) -> ShardRecord {
    let stored = store_shard(session, path, default_params(4), &PublishOptions::default())
        .await
        .unwrap();
    let info = inspect(path).unwrap();
    ShardRecord {
        name: name.into(),
        cid: stored.layout.content.to_string(),
        rows: info.rows,
        bytes: info.size,
        node: node.into(),
        row_groups: info.row_groups,
        layout: Some(stored.layout.to_block().unwrap().1),
    }
}

/// A coordinator that registered a crawl's version and was restarted before it recorded so
/// publishes the crawl again: it gets the version it made, not a second one. A shard whose
/// rows are not the pages its node reported is left out and named.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crawl_published_again_is_the_same_version() {
    let dir = tempfile::tempdir().unwrap();
    let network = LocalNetwork::start(&dir.path().join("storage"), 4, 256 * MIB)
        .await
        .unwrap();
    let session = Session::join(network.bootstrap()).await.unwrap();
    let key = Keypair::generate_ed25519();
    let node = key.public().to_peer_id().to_string();
    let page = |i: usize| {
        (
            format!("http://s.test/{i}"),
            format!("page {i} of the site"),
        )
    };
    let honest: Vec<_> = (0..30).map(page).collect();
    let mut pages = StoredPages::default();
    for (url, text) in (0..60).map(page) {
        pages.insert(&node, &url, &blake3::hash(text.as_bytes()).to_hex());
    }
    let path = dir.path().join("shard.parquet");
    write_rows(&path, &key, &honest);
    let record = stored_record(&session, &path, "node-00000.parquet", &node).await;
    let publisher = Publisher {
        session: Session::join(network.bootstrap()).await.unwrap(),
        signer: Signer::own(SigningKey::from_bytes(&[3; 32])),
        scratch: dir.path().join("scratch"),
    };
    let spec = CrawlSpec::from_toml(
        "name = \"again\"\nseeds = [\"http://example.com/\"]\nmax_pages = 10\nmax_depth = 1\n",
    )
    .unwrap();
    let crawl = |id: &str, shards: Vec<ShardRecord>, missing_rows, validation| FinishedCrawl {
        id: id.into(),
        spec: spec.clone(),
        shards,
        missing_rows,
        validation,
        pages: pages.clone(),
        dropped: BTreeMap::from([
            ("gopher_short_doc".to_string(), 3),
            ("near_duplicate".to_string(), 2),
        ]),
    };

    let first = publish_crawl(
        &publisher,
        &crawl("crawl-a", vec![record.clone()], 0, BTreeMap::new()),
    )
    .await
    .unwrap();
    assert_eq!(first.version, 1);
    // Once the record has spread (a restart takes longer than gossip), publishing the same
    // crawl again finds it.
    let me = publisher.signer.publisher.to_string();
    for _ in 0..200 {
        if remote::find(&session, Some(&me), "again", VersionSel::Latest, None)
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = publish_crawl(
        &publisher,
        &crawl("crawl-a", vec![record.clone()], 0, BTreeMap::new()),
    )
    .await
    .unwrap();
    assert_eq!(again, first);

    // Another crawl of the same name is the next version, and says what it lacks. The same
    // node also sent a shard whose rows carry text other than the hashes it reported (which
    // other nodes' fetches agreed with): it is left out, and counts against the node.
    let mut forged: Vec<_> = (30..60).map(page).collect();
    forged[7].1 = "buy cheap watches at spam.example".into();
    let forged_path = dir.path().join("forged.parquet");
    write_rows(&forged_path, &key, &forged);
    let forged = stored_record(&session, &forged_path, "node-00001.parquet", &node).await;
    let scores = BTreeMap::from([(
        node.clone(),
        Score {
            agreed: 3,
            disagreed: 1,
            ..Score::default()
        },
    )]);
    let other = publish_crawl(
        &publisher,
        &crawl("crawl-b", vec![forged, record], 2, scores.clone()),
    )
    .await
    .unwrap();
    assert_eq!(other.version, 2);
    let manifest = tessera_dataset::fetch_manifest(&session, other.manifest.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(manifest.metadata[CRAWL_KEY], "crawl-b");
    assert_eq!(manifest.metadata["tessera.crawl.missing_pages"], "2");
    // The pages the quality pipeline dropped, by reason.
    let dropped: BTreeMap<String, u64> =
        serde_json::from_str(&manifest.metadata[DROPPED_KEY]).unwrap();
    assert_eq!(dropped["gopher_short_doc"], 3);
    assert_eq!(dropped["near_duplicate"], 2);
    let names: Vec<&str> = manifest.shards.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["crawl-b/node-00000.parquet"]);
    let refused: BTreeMap<String, String> =
        serde_json::from_str(&manifest.metadata[REFUSED_KEY]).unwrap();
    let why = &refused["crawl-b/node-00001.parquet"];
    assert!(why.contains("row 7 (http://s.test/37)"), "{why}");
    // The nodes' validation scores travel with the version, for `tessera rewards`.
    let published: BTreeMap<String, Score> =
        serde_json::from_str(&manifest.metadata[VALIDATION_KEY]).unwrap();
    assert_eq!(
        published[&node],
        Score {
            shards_refused: 1,
            ..scores[&node]
        }
    );

    // A crawl whose every shard is refused is not published.
    let none = FinishedCrawl {
        pages: StoredPages::default(),
        ..crawl(
            "crawl-c",
            vec![stored_record(&session, &path, "x.parquet", &node).await],
            0,
            BTreeMap::new(),
        )
    };
    let err = publish_crawl(&publisher, &none).await.unwrap_err();
    assert!(
        err.contains("every shard of the crawl was refused"),
        "{err}"
    );

    network.shutdown().await;
}
