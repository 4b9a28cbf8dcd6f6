//! A crawl of a real test site on loopback by three workers sharing one coordinator: every
//! allowed page lands once in the output Parquet with verified provenance, nothing disallowed
//! or opted out is requested or kept, and the host's spacing holds across all workers, also
//! when the coordinator is killed and restarted mid-crawl.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    path::Path,
    sync::{Arc, RwLock},
    time::Duration,
};

use arrow::array::{Array, StringArray};
use common::{
    AccessLog,
    site::{self, site, spec},
    test_limits,
};
use libp2p::identity::Keypair;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tessera_net::NetworkConfig;
use tessera_scraper_node::{
    address::NetworkPolicy,
    coordinator::{Completion, Coordinator, CrawlStatus, Fetched, Offer},
    crawl_store::ShardRecord,
    provenance::{schema, verify_batch},
    remote::{RemoteCoordinator, serve},
    validation::Score,
    worker::{ApiError, CrawlApi, Worker, WorkerConfig},
};
use tokio::sync::watch;

/// The coordinator the workers talk to, which the test can replace (a restart).
#[derive(Clone)]
struct Switchboard(Arc<RwLock<Coordinator>>);

impl Switchboard {
    fn get(&self) -> Coordinator {
        self.0.read().unwrap().clone()
    }
}

impl CrawlApi for Switchboard {
    async fn lease(&self, node: &str) -> Result<Offer, ApiError> {
        CrawlApi::lease(&self.get(), node).await
    }

    async fn fetched(&self, fetched: Fetched) -> Result<(), ApiError> {
        CrawlApi::fetched(&self.get(), fetched).await
    }

    async fn complete(&self, completion: Completion) -> Result<Vec<String>, ApiError> {
        CrawlApi::complete(&self.get(), completion).await
    }

    async fn shard(&self, crawl: &str, shard: ShardRecord) -> Result<(), ApiError> {
        CrawlApi::shard(&self.get(), crawl, shard).await
    }
}

struct Run {
    log: AccessLog,
    addr: SocketAddr,
    out: tempfile::TempDir,
    crawl: String,
    peers: Vec<String>,
}

struct Setup {
    log: AccessLog,
    addr: SocketAddr,
    db: tempfile::TempDir,
    out: tempfile::TempDir,
    coordinator: Coordinator,
    crawl: String,
}

/// The test site, and a coordinator with a crawl of it that checks `validate` of the pages.
async fn setup(validate: f64) -> Setup {
    let log = AccessLog::default();
    let addr = common::serve("127.0.0.1".parse().unwrap(), site(), log.clone()).await;
    let db = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let coordinator = Coordinator::start(db.path(), None).unwrap();
    let mut spec = spec(addr);
    spec.politeness.validate_fraction = validate;
    let crawl = coordinator.start_crawl(spec).await.unwrap();
    Setup {
        log,
        addr,
        db,
        out,
        coordinator,
        crawl,
    }
}

/// A worker writing under `out/node{i}` until `stop` turns true.
fn spawn_worker<C: CrawlApi + Clone + 'static>(
    api: C,
    key: Keypair,
    out: &Path,
    i: usize,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let config = WorkerConfig {
        out_dir: out.join(format!("node{i}")),
        network: NetworkPolicy::allow_private(),
        idle_wait: Duration::from_millis(50),
        storage: None,
        limits: test_limits(),
    };
    tokio::spawn(Worker::new(api, key, config).run(async move {
        let _ = stop.wait_for(|s| *s).await;
    }))
}

/// Crawls the test site with three workers; `restart` kills and restarts the coordinator
/// once the crawl is under way.
async fn crawl(restart: bool) -> Run {
    let Setup {
        log,
        addr,
        db,
        out,
        coordinator,
        crawl,
    } = setup(0.0).await;
    let board = Switchboard(Arc::new(RwLock::new(coordinator)));

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut peers = Vec::new();
    let mut workers = Vec::new();
    for i in 0..3 {
        let key = Keypair::generate_ed25519();
        peers.push(key.public().to_peer_id().to_string());
        workers.push(spawn_worker(
            board.clone(),
            key,
            out.path(),
            i,
            stop_rx.clone(),
        ));
    }

    if restart {
        // Once some pages are stored, the coordinator's task dies and a new one opens its store.
        let before = wait_for(&board, |s| s.progress.stored >= 3).await;
        assert!(!before.finished, "the crawl ended before the restart");
        board.get().kill().await;
        let restarted = reopen(db.path()).await;
        *board.0.write().unwrap() = restarted;
    }

    wait_for(&board, |s| s.finished && s.rows == s.progress.stored).await;
    stop_tx.send(true).unwrap();
    for w in workers {
        w.await.unwrap();
    }
    drop(db);
    Run {
        log,
        addr,
        out,
        crawl,
        peers,
    }
}

async fn reopen(dir: &Path) -> Coordinator {
    for _ in 0..100 {
        if let Ok(c) = Coordinator::start(dir, None) {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the store did not reopen");
}

async fn wait_for(board: &Switchboard, done: impl Fn(&CrawlStatus) -> bool) -> CrawlStatus {
    for _ in 0..600 {
        if let Ok(status) = board.get().status().await
            && let Some(status) = status.into_iter().next().filter(&done)
        {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("crawl did not get there: {:?}", board.get().status().await);
}

/// Every row of every shard: url -> (peer, count), checking schema and signatures.
fn rows(out: &Path, crawl: &str) -> BTreeMap<String, (String, usize)> {
    let mut rows: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for node in std::fs::read_dir(out).unwrap() {
        let dir = node.unwrap().path().join(crawl);
        let Ok(files) = std::fs::read_dir(&dir) else {
            continue;
        };
        for file in files {
            let path = file.unwrap().path();
            assert_eq!(path.extension().unwrap(), "parquet", "{}", path.display());
            let reader =
                ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap())
                    .unwrap()
                    .build()
                    .unwrap();
            for batch in reader {
                let batch = batch.unwrap();
                assert_eq!(batch.schema(), schema());
                assert!(verify_batch(&batch).unwrap().is_empty());
                let col = |n: &str| {
                    batch
                        .column_by_name(n)
                        .unwrap()
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .unwrap()
                        .clone()
                };
                let (urls, peers, langs) = (col("url"), col("scraper_peer_id"), col("language"));
                for i in 0..batch.num_rows() {
                    assert_eq!(langs.value(i), "en");
                    let entry = rows
                        .entry(urls.value(i).to_string())
                        .or_insert((peers.value(i).to_string(), 0));
                    entry.1 += 1;
                }
            }
        }
    }
    rows
}

fn check(run: &Run) {
    let rows = rows(run.out.path(), &run.crawl);
    let want: BTreeSet<String> = site::KEPT
        .iter()
        .map(|p| format!("http://{}{p}", run.addr))
        .collect();
    let got: BTreeSet<String> = rows.keys().cloned().collect();
    assert_eq!(got, want);
    for (url, (peer, count)) in &rows {
        assert_eq!(*count, 1, "{url} stored {count} times");
        assert!(run.peers.contains(peer));
    }
    // Disallowed, opted out by TDMRep or too deep: never requested.
    for path in ["/private/x", "/bot-excluded", "/deep4"] {
        assert!(run.log.requested(path).is_empty(), "{path} was requested");
    }
    // The host's spacing held across every worker: the spec's delay between any two
    // requests, and Crawl-delay between pages.
    let entries = run.log.entries();
    for pair in entries.windows(2) {
        let ((a, ta), (b, tb)) = (&pair[0], &pair[1]);
        let rules = |p: &str| p == "/robots.txt" || p.starts_with("/.well-known/");
        let least = if rules(a) || rules(b) { 50 } else { 100 };
        assert!(
            *tb - *ta >= Duration::from_millis(least),
            "{a} then {b} after {:?}",
            *tb - *ta
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_workers_crawl_the_site_into_verified_parquet() {
    let run = crawl(false).await;
    check(&run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_coordinator_restarted_mid_crawl_finishes_it_without_loss_or_duplicates() {
    let run = crawl(true).await;
    check(&run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scraper_nodes_crawl_through_a_coordinator_over_libp2p() {
    // `_db` holds the coordinator's store until the end.
    let Setup {
        log,
        addr,
        db: _db,
        out,
        coordinator,
        crawl,
    } = setup(0.0).await;

    // The coordinator's node serves the crawl protocol; scraper nodes join through it.
    let mut coordinator_net = common::coordinator_net().await;
    let info = coordinator_net.client.info().await.unwrap();
    let bootstrap = info.dialable_addrs();
    tokio::spawn(serve(
        coordinator.clone(),
        coordinator_net.inbound().unwrap(),
    ));

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut peers = Vec::new();
    let mut workers = Vec::new();
    let mut nets = Vec::new();
    for i in 0..2 {
        // One key names the node on the network and signs its rows.
        let key = Keypair::generate_ed25519();
        peers.push(key.public().to_peer_id().to_string());
        let net = tessera_net::start(key.clone(), NetworkConfig::client(bootstrap.clone()))
            .await
            .unwrap();
        let api = RemoteCoordinator::new(net.client.clone(), info.peer_id);
        workers.push(spawn_worker(api, key, out.path(), i, stop_rx.clone()));
        nets.push(net);
    }

    let board = Switchboard(Arc::new(RwLock::new(coordinator)));
    let status = wait_for(&board, |s| s.finished && s.rows == s.progress.stored).await;
    stop_tx.send(true).unwrap();
    for w in workers {
        w.await.unwrap();
    }
    let run = Run {
        log,
        addr,
        out,
        crawl,
        peers,
    };
    check(&run);
    // Rows came from both nodes' keys, as the coordinator knew them by their connections.
    let by_node: BTreeSet<String> = rows(run.out.path(), &run.crawl)
        .into_values()
        .map(|(peer, _)| peer)
        .collect();
    assert!(by_node.iter().all(|p| run.peers.contains(p)));
    assert_eq!(status.rows, 9);

    // Rows are added only by the nodes that fetched them, and no more than they fetched: a
    // peer that merely knows the crawl's id adds nothing, and a worker cannot pad its shards.
    let padding = |rows: u64| tessera_scraper_node::protocol::CrawlCall::Shard {
        crawl: run.crawl.clone(),
        shard: ShardRecord {
            name: format!("padding-{rows}.parquet"),
            cid: "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy".into(),
            rows,
            bytes: 1000,
            node: "whoever the message says".into(),
            row_groups: Vec::new(),
            layout: None,
        },
    };
    let stranger = tessera_net::start(
        Keypair::generate_ed25519(),
        NetworkConfig::client(bootstrap.clone()),
    )
    .await
    .unwrap();
    for (net, who) in [(&stranger, "a stranger"), (&nets[0], "a worker")] {
        let reply = net
            .client
            .request::<tessera_scraper_node::protocol::CrawlProtocol>(info.peer_id, padding(1))
            .await
            .unwrap();
        assert!(
            matches!(&reply, tessera_scraper_node::protocol::CrawlReply::Refused(why) if why.contains("more than it fetched")),
            "{who}: {reply:?}"
        );
    }
    let after = board.get().status().await.unwrap();
    assert_eq!(after[0].rows, 9, "nothing was added");
    drop(nets);
    drop(stranger);
}

/// What a lying node makes up in the reports of the pages it stores or checks.
#[derive(Clone, Copy)]
enum Lie {
    /// Their text hashes.
    Text,
    /// Their MinHash buckets (which decide what later counts as a near-duplicate).
    Buckets,
}

/// A node that lies in every report of a page it stored or checked.
#[derive(Clone)]
struct Liar(Switchboard, Lie);

impl CrawlApi for Liar {
    async fn lease(&self, node: &str) -> Result<Offer, ApiError> {
        self.0.lease(node).await
    }

    async fn fetched(&self, fetched: Fetched) -> Result<(), ApiError> {
        self.0.fetched(fetched).await
    }

    async fn complete(&self, mut completion: Completion) -> Result<Vec<String>, ApiError> {
        for report in completion
            .reports
            .iter_mut()
            .filter(|r| r.text_blake3.is_some())
        {
            match self.1 {
                Lie::Text => report.text_blake3 = Some("00".repeat(32)),
                Lie::Buckets => report.buckets = vec![7; 14],
            }
        }
        self.0.complete(completion).await
    }

    async fn shard(&self, crawl: &str, shard: ShardRecord) -> Result<(), ApiError> {
        self.0.shard(crawl, shard).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pages_fetched_again_by_other_nodes_expose_a_node_that_lies() {
    a_liar_is_exposed(Lie::Text).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn made_up_minhash_buckets_are_exposed_like_a_made_up_text() {
    a_liar_is_exposed(Lie::Buckets).await;
}

async fn a_liar_is_exposed(lie: Lie) {
    let Setup {
        log: _log,
        db: _db,
        out,
        coordinator,
        ..
    } = setup(1.0).await;
    let board = Switchboard(Arc::new(RwLock::new(coordinator)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let keys: Vec<Keypair> = (0..3).map(|_| Keypair::generate_ed25519()).collect();
    let liar = keys[2].public().to_peer_id().to_string();
    let mut workers = Vec::new();
    for (i, key) in keys.into_iter().enumerate() {
        let stop = stop_rx.clone();
        workers.push(if i == 2 {
            spawn_worker(Liar(board.clone(), lie), key, out.path(), i, stop)
        } else {
            spawn_worker(board.clone(), key, out.path(), i, stop)
        });
    }
    let status = wait_for(&board, |s| {
        s.finished && s.rows == s.progress.stored && s.progress.checks_pending == 0
    })
    .await;
    stop_tx.send(true).unwrap();
    for w in workers {
        w.await.unwrap();
    }
    let scores: BTreeMap<String, _> = status.progress.validation.into_iter().collect();
    let lies = scores.get(&liar).copied().unwrap_or_default();
    assert_eq!(lies.agreed, 0, "{scores:?}");
    assert!(lies.disagreed + lies.checks_disagreed > 0, "{scores:?}");
    assert_eq!(lies.checks_agreed, 0, "{scores:?}");
    // Every disagreement has the liar on one side: honest pages disagree only when the liar
    // checked them, honest checks disagree only on the liar's pages, and honest nodes always
    // agree with each other.
    let honest: Vec<Score> = scores
        .iter()
        .filter(|(n, _)| **n != liar)
        .map(|(_, s)| *s)
        .collect();
    let sum = |f: fn(&Score) -> u64| honest.iter().map(f).sum::<u64>();
    assert_eq!(sum(|s| s.disagreed), lies.checks_disagreed, "{scores:?}");
    assert_eq!(sum(|s| s.checks_disagreed), lies.disagreed, "{scores:?}");
    assert_eq!(sum(|s| s.agreed), sum(|s| s.checks_agreed), "{scores:?}");
    let checked: u64 = scores
        .values()
        .map(|s| s.agreed + s.disagreed + s.inconclusive)
        .sum();
    assert_eq!(
        checked,
        site::KEPT.len() as u64,
        "every stored page was checked once"
    );
}

/// A node whose coordinator takes its leases but cannot record shards: as if it went away
/// just as the node closed them.
#[derive(Clone)]
struct NoShards(Switchboard);

impl CrawlApi for NoShards {
    async fn lease(&self, node: &str) -> Result<Offer, ApiError> {
        self.0.lease(node).await
    }

    async fn fetched(&self, fetched: Fetched) -> Result<(), ApiError> {
        self.0.fetched(fetched).await
    }

    async fn complete(&self, completion: Completion) -> Result<Vec<String>, ApiError> {
        self.0.complete(completion).await
    }

    async fn shard(&self, _crawl: &str, _shard: ShardRecord) -> Result<(), ApiError> {
        Err(ApiError::Unavailable(
            "the coordinator is restarting".into(),
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shards_not_recorded_before_a_worker_stops_are_reported_when_it_starts_again() {
    let Setup {
        log,
        addr,
        db: _db,
        out,
        coordinator,
        crawl,
    } = setup(0.0).await;
    let board = Switchboard(Arc::new(RwLock::new(coordinator)));
    let key = Keypair::generate_ed25519();
    let peers = vec![key.public().to_peer_id().to_string()];

    let (stop_tx, stop_rx) = watch::channel(false);
    let worker = spawn_worker(NoShards(board.clone()), key.clone(), out.path(), 0, stop_rx);
    let stuck = wait_for(&board, |s| s.finished && s.progress.stored > 0).await;
    stop_tx.send(true).unwrap();
    worker.await.unwrap();
    // Every page is accepted, none is in a recorded shard: the rows wait on the node's disk.
    assert_eq!(stuck.rows, 0);
    assert_eq!(stuck.rows_pending, stuck.progress.stored);

    // The same node, started again, reports what it finds on disk, and only once.
    let (stop_tx, stop_rx) = watch::channel(false);
    let worker = spawn_worker(board.clone(), key, out.path(), 0, stop_rx);
    let done = wait_for(&board, |s| s.rows == s.progress.stored).await;
    stop_tx.send(true).unwrap();
    worker.await.unwrap();
    assert_eq!(done.rows_pending, 0);
    assert_eq!(done.rows, site::KEPT.len() as u64);
    check(&Run {
        log,
        addr,
        out,
        crawl,
        peers,
    });
}
