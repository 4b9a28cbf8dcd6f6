//! A coordinator that lies, on a real libp2p connection: each lease that breaks the
//! operator's limits is refused with its reason, nothing is fetched for it and no file is
//! written outside the node's shards folder; a lease within them is fetched with the node's
//! own user agent.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, extract::State, http::HeaderMap, routing::get};
use bytesize::ByteSize;
use libp2p::identity::Keypair;
use tessera_net::NetworkConfig;
use tessera_scraper_node::{
    address::NetworkPolicy,
    coordinator::{Completion, Offer},
    frontier::{Lease, PageResult},
    limits::OperatorLimits,
    protocol::{CrawlCall, CrawlProtocol, CrawlReply},
    remote::RemoteCoordinator,
    spec::CrawlSpec,
    worker::{Step, Worker, WorkerConfig},
};
use tokio::sync::mpsc;

/// User agents of the requests for `/`.
type Agents = Arc<Mutex<Vec<String>>>;

async fn site() -> (SocketAddr, Agents, common::AccessLog) {
    let agents = Agents::default();
    let router = Router::new()
        .route(
            "/",
            get(
                |State(agents): State<Agents>, headers: HeaderMap| async move {
                    let agent = headers
                        .get("user-agent")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    agents.lock().unwrap().push(agent);
                    (
                        [("content-type", "text/html")],
                        "<html><body><p>A page with enough words in it to be a page of text that a \
                     crawler keeps as a row of its dataset.</p></body></html>",
                    )
                },
            ),
        )
        .route("/robots.txt", get(|| async { "User-agent: *\nAllow: /\n" }))
        .with_state(agents.clone());
    let log = common::AccessLog::default();
    let addr = common::serve("127.0.0.1".parse().unwrap(), router, log.clone()).await;
    (addr, agents, log)
}

fn spec(addr: SocketAddr) -> CrawlSpec {
    CrawlSpec::from_toml(&format!(
        "name = \"hostile\"\nseeds = [\"http://{addr}/\"]\nmax_pages = 10\nmax_depth = 0\n\
         [politeness]\ndelay_seconds = 1.0\n[quality]\nenabled = false\n"
    ))
    .unwrap()
}

fn lease(addr: SocketAddr, urls: usize) -> Lease {
    Lease {
        id: 7,
        node: String::new(),
        host: addr.to_string(),
        urls: (0..urls).map(|_| format!("http://{addr}/")).collect(),
        spacing_ms: 0,
        deadline_ms: u64::MAX,
        check: false,
        fetched: false,
    }
}

/// Answers every lease request with the next offer of `offers`, and passes on every
/// completion it is sent.
async fn lying_coordinator(
    offers: Vec<Offer>,
) -> (tessera_net::Network, mpsc::UnboundedReceiver<Completion>) {
    let mut net = common::coordinator_net().await;
    let (tx, rx) = mpsc::unbounded_channel();
    let mut events: tessera_net::Inbound<CrawlProtocol> = net.inbound().unwrap();
    tokio::spawn(async move {
        let mut offers = offers.into_iter();
        while let Some(event) = events.recv().await {
            let reply = match event.request {
                CrawlCall::Lease => CrawlReply::Offer(offers.next().unwrap_or(Offer::Idle)),
                CrawlCall::Complete(c) => {
                    let accepted = c.reports.iter().map(|r| r.url.clone()).collect();
                    tx.send(c).unwrap();
                    CrawlReply::Accepted(accepted)
                }
                CrawlCall::Shard { .. } | CrawlCall::Fetched { .. } => CrawlReply::Recorded,
            };
            let _ = event.responder.respond(reply).await;
        }
    });
    (net, rx)
}

#[tokio::test]
async fn every_lease_past_the_operators_limits_is_refused_with_its_reason() {
    let (addr, agents, log) = site().await;
    let good = spec(addr);
    let with = |edit: &dyn Fn(&mut CrawlSpec)| {
        let mut s = good.clone();
        edit(&mut s);
        Box::new(s)
    };
    let offer = |crawl: &str, spec: Box<CrawlSpec>, lease: Lease| Offer::Lease {
        crawl: crawl.into(),
        spec,
        lease,
        close: vec![],
    };
    // Each bad offer, with a word its refusal must contain.
    let bad: Vec<(Offer, &str)> = vec![
        (
            offer("../../escaped", with(&|_| {}), lease(addr, 1)),
            "crawl id",
        ),
        (
            offer("/tmp/absolute", with(&|_| {}), lease(addr, 1)),
            "crawl id",
        ),
        (
            offer(
                "ab",
                with(&|s| s.politeness.ai_optouts = false),
                lease(addr, 1),
            ),
            "AI opt-outs",
        ),
        (
            offer(
                "ab",
                with(&|s| s.politeness.delay_seconds = 0.0),
                lease(addr, 1),
            ),
            "minimum",
        ),
        (
            offer(
                "ab",
                with(&|s| s.politeness.max_body = ByteSize::gib(1)),
                lease(addr, 1),
            ),
            "max_body",
        ),
        (
            offer(
                "ab",
                with(&|s| s.politeness.timeout_seconds = u64::MAX),
                lease(addr, 1),
            ),
            "timeout",
        ),
        (
            offer(
                "ab",
                with(&|s| s.user_agent = "Mozilla/5.0\r\nX: y".into()),
                lease(addr, 1),
            ),
            "user_agent",
        ),
        (
            offer("ab", with(&|_| {}), lease(addr, 5000)),
            "lease of 5000",
        ),
    ];
    let fine = offer(
        "ab",
        with(&|s| s.user_agent = "Research/2".into()),
        lease(addr, 1),
    );
    let mut offers: Vec<Offer> = bad.iter().map(|(o, _)| o.clone()).collect();
    offers.push(fine);
    let (coordinator, mut completions) = lying_coordinator(offers).await;
    let info = coordinator.client.info().await.unwrap();

    let key = Keypair::generate_ed25519();
    let peer = key.public().to_peer_id().to_string();
    let net = tessera_net::start(key.clone(), NetworkConfig::client(info.dialable_addrs()))
        .await
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("node").join("shards");
    let config = WorkerConfig {
        out_dir: out.clone(),
        network: NetworkPolicy::allow_private(),
        idle_wait: Duration::from_millis(10),
        storage: None,
        limits: OperatorLimits::default(),
    };
    let mut worker = Worker::new(
        RemoteCoordinator::new(net.client.clone(), info.peer_id),
        key,
        config,
    );

    for (_, why) in &bad {
        let step = worker.step().await.unwrap();
        let Step::Refused(reason) = &step else {
            panic!("{why}: {step:?}")
        };
        assert!(reason.contains(why), "{why}: {reason}");
        // The coordinator is told, for each URL, that this node refused and why.
        let completion = completions.recv().await.unwrap();
        assert!(!completion.reports.is_empty());
        for r in &completion.reports {
            let PageResult::Failed(said) = &r.result else {
                panic!("{:?}", r.result)
            };
            assert!(said.contains(&peer) && said.contains(why), "{said}");
        }
    }
    assert!(
        log.times().is_empty(),
        "nothing was fetched for a refused lease"
    );
    // Nothing was written anywhere but the shards folder.
    let written = common::walk(root.path());
    assert!(written.iter().all(|p| p.starts_with(&out)), "{written:?}");

    // Within the limits: fetched, with Tessera's agent naming the node, the crawl's after it.
    let step = worker.step().await.unwrap();
    // The lease's end (extraction, report) runs on while the next offer is fetched; its row
    // is written at the next step, which asks again at once (the report may bring work),
    // and the idle step after it closes the shard.
    assert_eq!(step, Step::Leased { urls: 1, rows: 0 });
    assert_eq!(worker.step().await.unwrap(), Step::Waited);
    assert_eq!(worker.step().await.unwrap(), Step::Idle);
    let shards = common::walk(&out);
    assert!(
        shards
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "parquet")),
        "{shards:?}"
    );
    let sent = agents.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].starts_with("TesseraBot/"), "{}", sent[0]);
    assert!(sent[0].contains(&format!("node {peer})")), "{}", sent[0]);
    assert!(sent[0].ends_with(" Research/2"), "{}", sent[0]);
    drop((net, coordinator));
}
