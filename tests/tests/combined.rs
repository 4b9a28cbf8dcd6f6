//! One node with the storage roles and the scraper roles together: the third list of roles on
//! the same builder. It stores pieces for the network, coordinates a crawl and scrapes it, and
//! publishes the crawl into the network it is part of; one HTTP port serves both APIs.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use tessera_client::Session;
use tessera_dataset::{FetchOptions, fetch_version};
use tessera_formats::{Cid, DatasetRef};
use tessera_net::NetworkConfig;
use tessera_node::builder::NodeBuilder;
use tessera_scraper_node::{
    api_client::CrawlClient, crawl_store::CrawlState, http_guard::load_or_create_token,
    node::ScraperConfig, spec::CrawlSpec,
};
use tessera_storage_node::{LocalNetwork, NodeConfig, Status};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_with_storage_and_scraper_roles_crawls_into_its_own_network() {
    let dir = tempfile::tempdir().unwrap();
    // Five others, so that a 4+2 shard finds six distinct holders with this node.
    let network = LocalNetwork::start(&dir.path().join("others"), 5, 64 << 20)
        .await
        .unwrap();
    let (site, log) = tessera_demo::site::serve().await.unwrap();

    let data_dir = dir.path().join("both");
    let listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    let storage = NodeConfig {
        listen: listen.clone(),
        bootstrap: network.bootstrap(),
        capacity: bytesize::ByteSize::mib(64),
        scrub_interval: Duration::ZERO,
        audit_interval: Duration::ZERO,
        ..NodeConfig::with_defaults(data_dir.clone())
    };
    let scraper = ScraperConfig {
        listen,
        bootstrap: network.bootstrap(),
        allow_private_networks: true,
        min_delay: Duration::ZERO,
        ..ScraperConfig::with_defaults(data_dir.clone())
    };
    let charter = tessera_storage_node::node::prepare(&storage).await.unwrap();
    let builder = NodeBuilder::new(
        &data_dir,
        NetworkConfig {
            listen: storage.listen.clone(),
            bootstrap: storage.bootstrap.clone(),
            ..NetworkConfig::default()
        },
    );
    let builder = tessera_scraper_node::node::plan(
        tessera_storage_node::node::plan(builder, &storage),
        &scraper,
    );
    let mut node = builder.start().await.unwrap();
    let stored = tessera_storage_node::node::start_roles(&mut node, &storage, charter)
        .await
        .unwrap();
    let scraping = tessera_scraper_node::node::start_roles(&mut node, &scraper, "/scraper")
        .await
        .unwrap();
    let node = node.serve(Some(([127, 0, 0, 1], 0).into())).await.unwrap();
    let http = format!("http://{}", node.http.unwrap());

    // One port, both APIs: the storage node's status and the coordinator's crawls.
    let status: Status = reqwest::get(format!("{http}/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status.peer_id, node.client.peer_id().to_string());
    let dashboard = reqwest::get(format!("{http}/scraper")).await.unwrap();
    assert!(dashboard.status().is_success());

    let spec = CrawlSpec::from_toml(&format!(
        "name = \"both\"\nseeds = [\"http://{site}/\"]\nmax_pages = 20\nmax_depth = 2\n\
         [politeness]\ndelay_seconds = 0.01\nvalidate_fraction = 0.0\n[quality]\nenabled = false\n"
    ))
    .unwrap();
    let token = load_or_create_token(&data_dir).unwrap();
    let crawls = CrawlClient::new(&http, Some(token)).unwrap();
    let id = crawls.start(&spec).await.unwrap();
    let started = Instant::now();
    let manifest: Cid = loop {
        let status = crawls.status(&id).await.unwrap();
        match status.state {
            CrawlState::Published { manifest, .. } => break manifest.parse().unwrap(),
            CrawlState::Unpublishable(why) => panic!("unpublishable: {why}"),
            _ => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "not published: {:?}",
            status.state
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!log.lock().iter().any(|p| p.starts_with("/private")));
    assert!(scraping.coordinator.is_some() && scraping.publisher.is_some());

    // Anyone fetches the crawl from the network, this node among its holders or not.
    let reader = Session::join(network.bootstrap()).await.unwrap();
    let out = dir.path().join("fetched");
    let (_, _, report) = fetch_version(
        &reader,
        &DatasetRef::Cid(manifest),
        &out,
        None,
        &FetchOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        report.manifest.total_rows(),
        tessera_demo::site::CRAWLABLE_PAGES as u64
    );
    // The storage roles run beside the scraper's: its store is the one configured.
    assert_eq!(stored.store.usage().capacity, 64 << 20);
    assert!(stored.registry.is_some());

    node.shutdown().await;
    drop((stored, scraping));
    network.shutdown().await;
}
