//! Two scraper nodes as an operator runs them: one coordinates and scrapes, the other only
//! scrapes for it; a crawl is started, watched and stopped through the HTTP API.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{AccessLog, site};
use serde_json::Value;
use tessera_node::api_client::CallError;
use tessera_scraper_node::{
    api_client::{CrawlClient, CrawlClientError},
    crawl_store::CrawlState,
    http_guard::load_or_create_token,
    node::{ScraperConfig, ScraperNode},
    spec::CrawlSpec,
};

fn config(dir: &std::path::Path, coordinator: Option<tessera_net::Multiaddr>) -> ScraperConfig {
    ScraperConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        bootstrap: vec![],
        http: coordinator
            .is_none()
            .then(|| "127.0.0.1:0".parse().unwrap()),
        coordinate: coordinator.is_none(),
        coordinator,
        allow_private_networks: true,
        min_delay: common::test_limits().min_delay,
        ..ScraperConfig::with_defaults(dir.to_path_buf())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crawl_started_over_http_is_done_by_two_nodes() {
    let log = AccessLog::default();
    let addr = common::serve("127.0.0.1".parse().unwrap(), site::site(), log.clone()).await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = ScraperNode::start(config(dir_a.path(), None))
        .await
        .unwrap();
    let b = ScraperNode::start(config(dir_b.path(), Some(a.addresses[0].clone())))
        .await
        .unwrap();
    // A node with nothing to coordinate and no coordinator to scrape for is refused.
    let idle = ScraperConfig {
        coordinate: false,
        ..config(dir_b.path(), None)
    };
    assert!(ScraperNode::start(idle).await.is_err());
    let base = format!("http://{}", a.http.unwrap());
    let api = format!("{base}/v1/crawls");
    let http = reqwest::Client::new();
    let token = load_or_create_token(dir_a.path()).unwrap();
    let spec = format!(
        "name = \"site\"\nseeds = [\"http://{addr}/\"]\nmax_pages = 100\nmax_depth = 3\n\
         [politeness]\ndelay_seconds = 0.05\nlease_size = 2\nmax_body = \"8KiB\"\n[quality]\nenabled = false\n"
    );
    let spec = CrawlSpec::from_toml(&spec).unwrap();

    // What a web page in the operator's browser can send is refused, and starts nothing:
    // a form or text/plain post, a foreign Origin, a rebound Host name, no token.
    let refused = [
        (http.post(&api).body("name = 1"), 415, "json_only"),
        (
            http.post(&api)
                .header("origin", "https://evil.example")
                .header("content-type", "text/plain")
                .bearer_auth(&token)
                .body(serde_json::to_string(&spec).unwrap()),
            403,
            "cross_origin",
        ),
        (
            http.post(&api)
                .header("host", "evil.example")
                .bearer_auth(&token)
                .json(&spec),
            403,
            "host_not_allowed",
        ),
        (http.post(&api).json(&spec), 401, "token_required"),
        (
            http.post(format!("{api}/0123/stop"))
                .json(&serde_json::json!({})),
            401,
            "token_required",
        ),
    ];
    for (request, status, error) in refused {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{error}");
        assert_eq!(
            response.json::<Value>().await.unwrap()["error"]["code"],
            error
        );
    }
    let list: Value = http.get(&api).send().await.unwrap().json().await.unwrap();
    assert!(list.as_array().unwrap().is_empty(), "{list}");

    // A bad spec is refused with its reason; an unknown crawl is a 404.
    let bad = http
        .post(&api)
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_spec");
    // Every error of the port has one shape: refusals above, and these.
    for (url, status, code) in [
        (format!("{api}/nope"), 404, "unknown_crawl"),
        (format!("{base}/nothing"), 404, "not_found"),
    ] {
        let response = http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), status, "{url}");
        let body: tessera_node::http::ErrorBody = response.json().await.unwrap();
        assert_eq!(body.error.code, code, "{url}");
    }

    let started = http
        .post(&api)
        .bearer_auth(&token)
        .json(&spec)
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 201);
    let id = started.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let status_of = |id: String| {
        let request = http.get(format!("{api}/{id}"));
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let mut status = Value::Null;
    for _ in 0..600 {
        status = status_of(id.clone()).await;
        // Without storage nodes a finished crawl cannot be published, and says why.
        if status["state"].get("unpublishable").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status["finished"], true, "{status}");
    assert_eq!(status["progress"]["queued"], 0);
    assert_eq!(status["progress"]["stored"], site::KEPT.len());
    assert_eq!(status["rows"], site::KEPT.len());
    assert_eq!(status["rows_pending"], 0);
    assert!(
        status["state"]["unpublishable"]
            .as_str()
            .unwrap()
            .contains("--bootstrap"),
        "{status}"
    );
    let list: Value = http.get(&api).send().await.unwrap().json().await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);

    // The typed client reads the same answers into the node's own types, and its refusals
    // in the one error shape.
    let reader = CrawlClient::new(&base, None).unwrap();
    let listed = reader.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0], reader.status(&id).await.unwrap());
    assert!(matches!(listed[0].state, CrawlState::Unpublishable(_)));
    assert_eq!(listed[0].rows, site::KEPT.len() as u64);
    assert!(matches!(
        reader.stop(&id).await,
        Err(CrawlClientError::NoToken)
    ));
    let wrong = CrawlClient::new(&base, Some("0".repeat(64))).unwrap();
    match wrong.stop(&id).await {
        Err(CrawlClientError::Call(CallError::Refused { status, code, .. })) => {
            assert_eq!((status, code.as_str()), (401, "token_required"));
        }
        other => panic!("{other:?}"),
    }
    match reader.status("nope").await {
        Err(CrawlClientError::Call(CallError::Refused { status, code, .. })) => {
            assert_eq!((status, code.as_str()), (404, "unknown_crawl"));
        }
        other => panic!("{other:?}"),
    }

    let stop = http
        .post(format!("{api}/{id}/stop"))
        .bearer_auth(&token)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(stop.status(), 204);
    assert_eq!(status_of(id.clone()).await["state"], "stopped");

    // Both nodes' shard folders together hold every kept page.
    b.shutdown().await;
    a.shutdown().await;
    let files = |d: &std::path::Path| {
        common::walk(&d.join("shards"))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .count()
    };
    assert!(files(dir_a.path()) + files(dir_b.path()) >= 1);
}

/// A node that kept its crawls in a database of their own (before columns) finds them in its
/// one database after the upgrade, and the old database is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crawls_kept_apart_before_are_imported_into_the_one_database() {
    use tessera_scraper_node::{crawl_store::CrawlStore, frontier::Frontier};

    let dir = tempfile::tempdir().unwrap();
    let spec = CrawlSpec::from_toml(
        "name = \"t\"\nseeds = [\"http://a.test/\"]\nmax_pages = 10\nmax_depth = 1\n",
    )
    .unwrap();
    let seeds = Frontier::new(&spec).seed(&spec.seeds);
    CrawlStore::open(&dir.path().join("crawls"))
        .unwrap()
        .create("crawl1", &spec, &seeds)
        .unwrap();

    let node = ScraperNode::start(config(dir.path(), None)).await.unwrap();
    let crawls = node.coordinator.as_ref().unwrap().status().await.unwrap();
    assert_eq!(
        crawls.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["crawl1"]
    );
    node.shutdown().await;
    assert!(!dir.path().join("crawls").exists());
    assert!(dir.path().join("db").join("CURRENT").exists());
}
