//! Tessera's whole job, end to end on this machine: what `tessera demo` runs and shows. Every
//! step checks what it promises (robots.txt honoured, rows verified, ranks disjoint, pieces
//! rebuilt) and fails the demo when it does not hold.
//!
//! ```text
//! 1 storage nodes (registry, auditor) ─▶ 2 a small website ─▶ 3 two scraper nodes
//!   ─▶ 4 they crawl it: signed rows in Parquet shards, stored erasure-coded, version published
//!   ─▶ 5 the registry resolves the name to the manifest, its record signed
//!   ─▶ 6 a storage node stops; the dataset is fetched by CID anyway, every row verified
//!   ─▶ 7 one epoch streamed to two ranks: disjoint halves
//!   ─▶ 8 an audit round: every holder challenged, the stopped node's pieces rebuilt elsewhere
//! ```
//!
//! [`run`] leaves the network running ([`Running`]) for the caller to explore or stop; what
//! each step showed goes to a [`Viewer`].

pub mod site;

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use arrow::array::{Array, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tessera_client::Session;
use tessera_dataset::{FetchOptions, fetch_manifest, fetch_version, publish::list_parquet};
use tessera_dataset_registry::remote;
use tessera_formats::{Cid, DatasetRef, Manifest};
use tessera_net::{Multiaddr, Protocol};
use tessera_scraper_node::{
    api_client::CrawlClient,
    crawl_store::CrawlState,
    http_guard::load_or_create_token,
    node::{ScraperConfig, ScraperNode},
    provenance::verify_batch,
    spec::CrawlSpec,
};
use tessera_storage_node::{LocalNetwork, audit::AuditConfig};
use tessera_stream::{DatasetStream, Partition, Remainder, ShardCache, StreamOptions};

/// The dataset the crawl publishes.
pub const NAME: &str = "demo-site";
/// The network the demo founds: its charter makes storage node 0 the validator.
pub const NETWORK: &str = "demo";
/// The steps the demo shows.
pub const STEPS: usize = 8;
/// The fewest storage nodes the demo runs with: the default layout for them (2+2) keeps
/// every piece on its own node and survives a stopped node.
pub const MIN_NODES: usize = 5;
/// How long the crawl may take before the demo gives up.
const CRAWL_DEADLINE: Duration = Duration::from_secs(180);

/// What the demo is run with.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Storage nodes to start (at least [`MIN_NODES`]).
    pub nodes: usize,
    /// Where every node keeps its data.
    pub work: PathBuf,
}

/// Who watches the demo: hears what each step showed as it ends.
pub trait Viewer {
    /// Step `n` of [`STEPS`] is done; `text` says what it showed.
    fn step(&mut self, n: usize, text: &str);
    /// A detail of the step before.
    fn detail(&mut self, text: &str);
    /// What a long step is doing now (the crawl's progress).
    fn progress(&mut self, text: &str);
}

/// The demo could not show what it promises.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// Fewer storage nodes than [`MIN_NODES`].
    #[error("the demo needs at least {MIN_NODES} storage nodes")]
    TooFewNodes,
    /// A step could not be done.
    #[error("{step}: {source}")]
    Failed {
        /// What the step was doing.
        step: &'static str,
        /// Why it failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A step ran, but what it showed breaks a promise.
    #[error("{0}")]
    Broken(String),
}

/// A result's error, said to have happened during `step`.
trait During<T> {
    fn during(self, step: &'static str) -> Result<T, DemoError>;
}

impl<T, E: Into<Box<dyn std::error::Error + Send + Sync>>> During<T> for Result<T, E> {
    fn during(self, step: &'static str) -> Result<T, DemoError> {
        self.map_err(|e| DemoError::Failed {
            step,
            source: e.into(),
        })
    }
}

/// A promise the demo checks: broken, the demo fails with `why`.
fn promise(kept: bool, why: impl FnOnce() -> String) -> Result<(), DemoError> {
    if kept {
        Ok(())
    } else {
        Err(DemoError::Broken(why()))
    }
}

fn present<T>(value: Option<T>, what: &str) -> Result<T, DemoError> {
    value.ok_or_else(|| DemoError::Broken(what.to_string()))
}

/// The network the demo leaves running.
#[derive(Debug)]
pub struct Running {
    /// The storage nodes.
    pub network: LocalNetwork,
    /// The published dataset's manifest CID.
    pub dataset: Cid,
    /// Where step 6 fetched it.
    pub fetched_into: PathBuf,
    scrapers: Vec<ScraperNode>,
}

impl Running {
    /// The address a client joins through.
    pub fn bootstrap(&self) -> String {
        self.network
            .bootstrap()
            .first()
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    /// Storage node 0's HTTP port, as a URL.
    pub fn node_http(&self) -> String {
        self.network
            .node(0)
            .and_then(|n| n.http)
            .map(|h| format!("http://{h}"))
            .unwrap_or_default()
    }

    /// Commands to try on the running network, one per line.
    pub fn next_commands(&self) -> String {
        let (cid, http) = (self.dataset, self.node_http());
        let bootstrap = format!("--network {NETWORK} --bootstrap {}", self.bootstrap());
        format!(
            "  tessera fetch {cid} -o out {bootstrap}\n  \
             tessera stream {cid} --rank 0 --world-size 2 {bootstrap} > rank0.arrows\n  \
             tessera datasets list {bootstrap}\n  \
             tessera audit status --node {http}\n  \
             tessera rewards --node {http}\n  \
             curl {http}/status"
        )
    }

    /// Stops the scraper nodes, then the storage nodes.
    pub async fn shutdown(self) {
        for scraper in self.scrapers.into_iter().rev() {
            scraper.shutdown().await;
        }
        self.network.shutdown().await;
    }
}

/// Runs the demo's steps in `options.work`, telling `viewer` what each showed.
pub async fn run(options: &DemoOptions, viewer: &mut dyn Viewer) -> Result<Running, DemoError> {
    if options.nodes < MIN_NODES {
        return Err(DemoError::TooFewNodes);
    }
    let work = &options.work;
    let network = start_storage(work, options.nodes, viewer).await?;
    let (site, log) = site::serve().await.during("serving the website")?;
    viewer.step(
        2,
        &format!(
            "a small website at http://{site}/ ({} pages with links, and a robots.txt that \
             closes /private/)",
            site::CRAWLABLE_PAGES + 1
        ),
    );
    let scrapers = start_scrapers(work, &network, viewer).await?;
    let manifest_cid = crawl(work, &scrapers[0], site, &log, viewer).await?;
    let mut running = Running {
        network,
        dataset: manifest_cid,
        fetched_into: work.join("fetched"),
        scrapers,
    };
    let manifest = resolve(&running, viewer).await?;
    let (reader, rows, holder) = fetch_after_loss(&mut running, &manifest, viewer).await?;
    stream_epoch(work, &reader, manifest_cid, manifest, &rows, viewer).await?;
    audit_and_repair(&running, holder, viewer).await?;
    Ok(running)
}

/// Step 1: the storage nodes.
async fn start_storage(
    work: &Path,
    nodes: usize,
    viewer: &mut dyn Viewer,
) -> Result<LocalNetwork, DemoError> {
    let started = Instant::now();
    let network = LocalNetwork::start_chartered(&work.join("storage"), nodes, 256 << 20, NETWORK)
        .await
        .during("starting the storage nodes")?;
    viewer.step(
        1,
        &format!(
            "{nodes} storage nodes on 127.0.0.1 (libp2p, Kademlia DHT, a RocksDB each; registry \
             and auditor roles) on network {NETWORK:?}, whose charter makes node 0 the \
             validator, started in {:.1?}",
            started.elapsed()
        ),
    );
    for (i, peer) in network.peers().iter().enumerate() {
        let http = network
            .node(i)
            .and_then(|n| n.http)
            .map_or_else(String::new, |h| format!("  http://{h}"));
        viewer.detail(&format!("node {i}  {peer}{http}"));
    }
    Ok(network)
}

/// Step 3: two scraper nodes, a coordinating and b working for it, both storing into the
/// network.
async fn start_scrapers(
    work: &Path,
    network: &LocalNetwork,
    viewer: &mut dyn Viewer,
) -> Result<Vec<ScraperNode>, DemoError> {
    let scraper = |name: &str, coordinator: Option<Multiaddr>| ScraperConfig {
        listen: vec![loopback()],
        bootstrap: network.bootstrap(),
        charter: network.charter().map(Path::to_path_buf),
        http: coordinator.is_none().then(|| ([127, 0, 0, 1], 0).into()),
        coordinate: coordinator.is_none(),
        coordinator,
        // The site is on this machine; scraper nodes refuse private addresses otherwise.
        allow_private_networks: true,
        // The demo's own site is crawled faster than a contributor's node allows others.
        min_delay: Duration::ZERO,
        ..ScraperConfig::with_defaults(work.join(name))
    };
    let a = ScraperNode::start(scraper("scraper-a", None))
        .await
        .during("starting scraper node a")?;
    let coordinator = present(
        a.addresses.first().cloned(),
        "scraper node a has no address",
    )?;
    let b = ScraperNode::start(scraper("scraper-b", Some(coordinator)))
        .await
        .during("starting scraper node b")?;
    let api = present(a.http, "scraper node a has no crawl API")?;
    viewer.step(
        3,
        &format!(
            "two scraper nodes: a {} (coordinator, crawl API http://{api}/v1/crawls), b {} \
             (works for a)",
            a.peer_id, b.peer_id
        ),
    );
    Ok(vec![a, b])
}

/// Step 4: the crawl, stored and published, robots.txt honoured; its manifest's CID.
async fn crawl(
    work: &Path,
    coordinator: &ScraperNode,
    site: SocketAddr,
    log: &site::Log,
    viewer: &mut dyn Viewer,
) -> Result<Cid, DemoError> {
    let spec = format!(
        "name = \"{NAME}\"\nseeds = [\"http://{site}/\"]\nmax_pages = 100\nmax_depth = 3\n\
         shard_size = \"64KiB\"\n\
         [politeness]\ndelay_seconds = 0.05\nlease_size = 2\nvalidate_fraction = 0.25\n"
    );
    let started = Instant::now();
    let spec = CrawlSpec::from_toml(&spec).during("the crawl spec")?;
    let token = load_or_create_token(&work.join("scraper-a")).during("the crawl API's token")?;
    let api = format!(
        "http://{}",
        present(coordinator.http, "scraper node a has no crawl API")?
    );
    let crawls = CrawlClient::new(&api, Some(token)).during("the crawl API")?;
    let id = crawls
        .start(&spec)
        .await
        .during("the coordinator refused the crawl")?;
    let (status, manifest, version) = loop {
        let status = crawls.status(&id).await.during("the crawl's status")?;
        match &status.state {
            CrawlState::Published { manifest, version } => {
                let (manifest, version) = (manifest.clone(), *version);
                break (status, manifest, version);
            }
            CrawlState::Unpublishable(why) => {
                return Err(DemoError::Broken(format!(
                    "the crawl cannot be published: {why}"
                )));
            }
            _ => {}
        }
        promise(started.elapsed() <= CRAWL_DEADLINE, || {
            format!("the crawl was not published in 3 minutes: {}", status.state)
        })?;
        viewer.progress(&format!(
            "crawling: {} pages stored, {} rows in shards",
            status.progress.stored, status.rows
        ));
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let manifest_cid: Cid = manifest.parse().during("the published manifest's CID")?;
    let asked = log.lock().clone();
    promise(!asked.iter().any(|p| p.starts_with("/private")), || {
        "robots.txt was not honoured".into()
    })?;
    viewer.step(
        4,
        &format!(
            "crawl {id}: {} pages fetched, extracted, signed and written to Parquet in {:.1} s",
            status.progress.stored,
            started.elapsed().as_secs_f64()
        ),
    );
    viewer.detail(&format!(
        "the site saw {} requests: robots.txt first, /private/ never",
        asked.len()
    ));
    if status.progress.dropped > 0 {
        let reasons: Vec<String> = status
            .progress
            .dropped_by
            .iter()
            .map(|(why, n)| format!("{why} {n}"))
            .collect();
        viewer.detail(&format!(
            "{} pages dropped by FineWeb's filters and deduplication ({})",
            status.progress.dropped,
            reasons.join(", ")
        ));
    }
    viewer.detail(&format!(
        "shards erasure-coded into the storage network, then published as {NAME}@v{version}"
    ));
    viewer.detail(&format!("dataset CID (its manifest)  {manifest_cid}"));
    Ok(manifest_cid)
}

/// Step 5: the registry resolves the name to the published manifest.
async fn resolve(running: &Running, viewer: &mut dyn Viewer) -> Result<Arc<Manifest>, DemoError> {
    let session = join(&running.network).await?;
    let publisher = present(
        running.scrapers[0].publisher,
        "scraper node a has no publisher key",
    )?;
    let reference: DatasetRef = format!("{publisher}/{NAME}@v1")
        .parse()
        .during("the dataset's name")?;
    let (resolved, entry) = remote::resolve(&session, &reference, None)
        .await
        .during("resolving the name")?;
    let entry = present(entry, "the registry returned no record")?;
    promise(resolved == running.dataset, || {
        "the registry names another manifest".into()
    })?;
    let manifest = Arc::new(
        fetch_manifest(&session, running.dataset)
            .await
            .during("fetching the manifest")?,
    );
    let record = &entry.record.record;
    let short = publisher.to_string().chars().take(16).collect::<String>();
    viewer.step(
        5,
        &format!(
            "the registry (every storage node) resolves {short}/{NAME}@v{} to it; the record is \
             signed by the publisher and checked by this reader",
            record.version
        ),
    );
    viewer.detail(&format!("publisher {}", record.publisher));
    viewer.detail(&format!("record    {}", entry.cid));
    viewer.detail(&format!(
        "manifest  {} shards, {} rows, schema with provenance (url, fetch time, body hash, \
         scraper peer id, signature)",
        manifest.shards.len(),
        manifest.total_rows()
    ));
    if let Some(h) = running.network.node(0).and_then(|n| n.http) {
        viewer.detail(&format!(
            "over HTTP http://{h}/v1/datasets/{}/{NAME}/1",
            record.publisher
        ));
    }
    Ok(manifest)
}

/// Step 6: a storage node holding a piece stops; the dataset is fetched by CID anyway. Returns
/// the reader's session, the rows' URLs and the stopped node.
async fn fetch_after_loss(
    running: &mut Running,
    manifest: &Manifest,
    viewer: &mut dyn Viewer,
) -> Result<(Session, Vec<String>, usize), DemoError> {
    let network = &mut running.network;
    let holder = manifest
        .shards
        .iter()
        .flat_map(|s| s.layout.pieces.iter())
        .find_map(|piece| {
            (1..network.peers().len()).find(|i| {
                network
                    .node(*i)
                    .is_some_and(|n| matches!(n.store.has(piece), Ok(Some(_))))
            })
        });
    let holder = present(holder, "no node holds a piece")?;
    network.stop(holder).await;
    let reader = join(network).await?;
    let out = &running.fetched_into;
    let started = Instant::now();
    let (_, _, report) = fetch_version(
        &reader,
        &DatasetRef::Cid(running.dataset),
        out,
        None,
        &FetchOptions::default(),
    )
    .await
    .during("fetching the dataset")?;
    let (rows, bad) = check_rows(out)?;
    promise(bad == 0, || format!("{bad} rows do not verify"))?;
    viewer.step(
        6,
        &format!(
            "storage node {holder} stopped; tessera fetch {} still got all {} shards in {:.0?} \
             ({} rebuilt from parity), every range checked against its piece CID",
            running.dataset,
            report.fetched.len(),
            started.elapsed(),
            report.reconstructed.len()
        ),
    );
    viewer.detail(&format!(
        "{} rows in {}, every row's signature verifies against its scraper node's key",
        rows.len(),
        out.display()
    ));
    Ok((reader, rows, holder))
}

/// Step 7: one epoch streamed to two ranks, disjoint and equal.
async fn stream_epoch(
    work: &Path,
    reader: &Session,
    manifest_cid: Cid,
    manifest: Arc<Manifest>,
    rows: &[String],
    viewer: &mut dyn Viewer,
) -> Result<(), DemoError> {
    let cache = ShardCache::open(&work.join("cache"), 64 << 20).during("opening the cache")?;
    let mut ranks: Vec<Vec<String>> = Vec::new();
    for rank in 0..2 {
        let options = StreamOptions {
            partition: Partition {
                rank,
                world_size: 2,
                worker: 0,
                workers: 1,
            },
            seed: 7,
            batch_size: 2,
            remainder: Remainder::Drop,
            columns: Some(vec!["url".into()]),
            ..StreamOptions::default()
        };
        let mut stream = DatasetStream::open(
            reader,
            manifest_cid,
            manifest.clone(),
            cache.clone(),
            &options,
        )
        .during("opening the stream")?;
        let mut urls = Vec::new();
        while let Some(batch) = stream.next_batch().await {
            let batch = batch.during("streaming")?;
            urls.extend(urls_of(&batch)?);
        }
        ranks.push(urls);
    }
    let (r0, r1): (BTreeSet<&String>, BTreeSet<&String>) =
        (ranks[0].iter().collect(), ranks[1].iter().collect());
    promise(r0.is_disjoint(&r1), || "the ranks overlap".into())?;
    promise(ranks[0].len() == ranks[1].len(), || {
        "the ranks got unequal shares".into()
    })?;
    let all: BTreeSet<&String> = rows.iter().collect();
    promise(r0.union(&r1).all(|u| all.contains(u)), || {
        "a rank got a row not in the dataset".into()
    })?;
    viewer.step(
        7,
        &format!(
            "one epoch (seed 7) streamed to 2 ranks in batches of 2: {} and {} samples, \
             disjoint, {} of {} rows (the remainder that fills no batch on every rank is left \
             out), each shard checked against its CID before use",
            ranks[0].len(),
            ranks[1].len(),
            r0.len() + r1.len(),
            rows.len()
        ),
    );
    for (rank, urls) in ranks.iter().enumerate() {
        viewer.detail(&format!(
            "rank {rank} starts with {}",
            urls.first().map_or("-", |s| s)
        ));
    }
    Ok(())
}

/// Step 8: an audit round by node 0, which also rebuilds the stopped node's pieces.
async fn audit_and_repair(
    running: &Running,
    holder: usize,
    viewer: &mut dyn Viewer,
) -> Result<(), DemoError> {
    let network = &running.network;
    let node = present(network.node(0), "node 0 is not running")?;
    let mut auditor = present(
        node.auditor(AuditConfig {
            period: AuditConfig::default().interval,
            failures: 1,
            grace: Duration::ZERO,
            spare: 1.0,
            claim_settle: Duration::from_millis(300),
            ..AuditConfig::default()
        }),
        "node 0 runs no auditor",
    )?;
    let set = auditor.known_shards().await;
    let started = Instant::now();
    let round = auditor.round(&set.shards, &fresh_seed(), 0).await;
    let passed = round
        .receipts
        .iter()
        .filter(|r| r.receipt.result.passed())
        .count();
    viewer.step(
        8,
        &format!(
            "an audit round by node 0 in {:.1?}: {} challenges with fresh nonces, {passed} \
             proofs verified against the piece CIDs alone, {} failed (node {holder} is gone)",
            started.elapsed(),
            round.receipts.len(),
            round.receipts.len() - passed
        ),
    );
    for (piece, new_holder) in &round.repaired {
        let index = network
            .index_of(new_holder)
            .map_or_else(|| new_holder.to_string(), |i| format!("node {i}"));
        viewer.detail(&format!("rebuilt {piece} from k other pieces onto {index}"));
    }
    viewer.detail("every answer is a signed receipt, kept and shared: tessera rewards counts them");
    Ok(())
}

/// A reader's session on the demo's network.
async fn join(network: &LocalNetwork) -> Result<Session, DemoError> {
    Session::join_network(Some(NETWORK.into()), network.bootstrap())
        .await
        .during("joining the network")
}

fn loopback() -> Multiaddr {
    Multiaddr::empty()
        .with(Protocol::Ip4(std::net::Ipv4Addr::LOCALHOST))
        .with(Protocol::Tcp(0))
}

/// A seed the audited nodes cannot know in advance.
fn fresh_seed() -> [u8; 32] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut h = blake3::Hasher::new();
    h.update(&nanos.to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    *h.finalize().as_bytes()
}

/// The `url` column of a batch of rows.
fn urls_of(batch: &arrow::record_batch::RecordBatch) -> Result<Vec<String>, DemoError> {
    let column = batch
        .column_by_name("url")
        .and_then(|c| c.as_any().downcast_ref::<StringArray>());
    let column = present(column, "no url column")?;
    Ok((0..column.len())
        .map(|i| column.value(i).to_string())
        .collect())
}

/// Every row's URL in the dataset files under `dir`, and how many rows fail their signature.
fn check_rows(dir: &Path) -> Result<(Vec<String>, usize), DemoError> {
    let (mut urls, mut bad) = (Vec::new(), 0);
    for (_, path) in list_parquet(dir).during("listing the fetched files")? {
        let file = std::fs::File::open(&path).during("opening a fetched file")?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .during("reading a fetched file")?;
        for batch in reader {
            let batch = batch.during("reading a fetched file")?;
            bad += verify_batch(&batch).during("checking the rows")?.len();
            urls.extend(urls_of(&batch)?);
        }
    }
    Ok((urls, bad))
}
