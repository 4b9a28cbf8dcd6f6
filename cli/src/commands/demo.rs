//! `tessera demo`: Tessera's whole job, end to end on this machine, in a temporary directory.
//!
//! ```text
//! storage nodes (registry, auditor) ─▶ a small website ─▶ two scraper nodes crawl it
//!   ─▶ signed rows in Parquet shards, stored erasure-coded ─▶ version published, signed
//!   ─▶ a storage node stops; the dataset is fetched by CID anyway, every row verified
//!   ─▶ one epoch streamed to two ranks: disjoint halves
//!   ─▶ an audit round: every holder challenged, the stopped node's pieces rebuilt elsewhere
//! ```

use std::{
    collections::BTreeSet,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};
use tessera_dataset::{FetchOptions, fetch_manifest, fetch_version, publish::list_parquet};

use anyhow::{Context as _, bail, ensure};
use arrow::array::{Array, StringArray};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tessera_client::Session;
use tessera_dataset_registry::remote;
use tessera_formats::{Cid, DatasetRef};
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

use super::{daemon, demo_site};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Storage nodes to start (at least 5).
    #[arg(long, default_value_t = 6)]
    nodes: usize,
    /// Leave the network running for exploring (until Ctrl-C), and keep its directory.
    #[arg(long)]
    keep: bool,
}

/// The dataset the crawl publishes.
const NAME: &str = "demo-site";

fn step(n: usize, text: std::fmt::Arguments<'_>) {
    println!("\n[{n}/8] {text}");
}

/// A spinner on stderr while a step runs (hidden when stderr is not a terminal).
fn spinner(message: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(message.to_string());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    ensure!(args.nodes >= 5, "the demo needs at least 5 storage nodes");
    let dir = tempfile::Builder::new()
        .prefix("tessera-demo-")
        .tempdir()
        .context("creating a working directory")?;
    let work = dir.path().to_path_buf();
    println!("Tessera demo, working in {}", work.display());

    // 1. Storage nodes.
    let started = Instant::now();
    let mut network = LocalNetwork::start(&work.join("storage"), args.nodes, 256 << 20)
        .await
        .context("starting the storage nodes")?;
    step(
        1,
        format_args!(
            "{} storage nodes on 127.0.0.1 (libp2p, Kademlia DHT, a RocksDB each; registry and \
             auditor roles), started in {:.1?}",
            args.nodes,
            started.elapsed()
        ),
    );
    for (i, peer) in network.peers().iter().enumerate() {
        let http = network
            .node(i)
            .and_then(|n| n.http)
            .map_or_else(String::new, |h| format!("  http://{h}"));
        println!("  node {i}  {peer}{http}");
    }

    // 2. The website.
    let (site, log) = demo_site::serve().await?;
    step(
        2,
        format_args!(
            "a small website at http://{site}/ ({} pages with links, and a robots.txt that \
             closes /private/)",
            demo_site::CRAWLABLE_PAGES + 1
        ),
    );

    // 3. Two scraper nodes: a coordinates, b works for it; both store into the network.
    let scraper = |name: &str, coordinator: Option<tessera_net::Multiaddr>| ScraperConfig {
        listen: vec![loopback()],
        bootstrap: network.bootstrap(),
        http: coordinator.is_none().then(|| ([127, 0, 0, 1], 0).into()),
        coordinate: coordinator.is_none(),
        coordinator,
        // The site is on this machine; scraper nodes refuse private addresses otherwise.
        allow_private_networks: true,
        // The demo's own site is crawled faster than a contributor's node allows others.
        min_delay: std::time::Duration::ZERO,
        ..ScraperConfig::with_defaults(work.join(name))
    };
    let a = ScraperNode::start(scraper("scraper-a", None))
        .await
        .context("starting scraper node a")?;
    let b = ScraperNode::start(scraper("scraper-b", Some(a.addresses[0].clone())))
        .await
        .context("starting scraper node b")?;
    let api = format!(
        "http://{}",
        a.http.context("scraper node a has no crawl API")?
    );
    step(
        3,
        format_args!(
            "two scraper nodes: a {} (coordinator, crawl API {api}/v1/crawls), b {} (works for a)",
            a.peer_id, b.peer_id
        ),
    );

    // 4. The crawl, stored and published.
    let spec = format!(
        "name = \"{NAME}\"\nseeds = [\"http://{site}/\"]\nmax_pages = 100\nmax_depth = 3\n\
         shard_size = \"64KiB\"\n\
         [politeness]\ndelay_seconds = 0.05\nlease_size = 2\nvalidate_fraction = 0.25\n"
    );
    let started = Instant::now();
    let bar = spinner("crawling");
    let spec = CrawlSpec::from_toml(&spec)?;
    let token = load_or_create_token(&work.join("scraper-a"))?;
    let crawls = CrawlClient::new(&api, Some(token))?;
    let id = crawls
        .start(&spec)
        .await
        .context("the coordinator refused the crawl")?;
    let (status, manifest, version) = loop {
        let status = crawls.status(&id).await?;
        match &status.state {
            CrawlState::Published { manifest, version } => {
                let (manifest, version) = (manifest.clone(), *version);
                break (status, manifest, version);
            }
            CrawlState::Unpublishable(why) => bail!("the crawl cannot be published: {why}"),
            _ => {}
        }
        if started.elapsed() > Duration::from_secs(180) {
            bail!("the crawl was not published in 3 minutes: {}", status.state);
        }
        bar.set_message(format!(
            "crawling: {} pages stored, {} rows in shards",
            status.progress.stored, status.rows
        ));
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    bar.finish_and_clear();
    let manifest_cid: Cid = manifest.parse()?;
    let asked = log.lock().clone();
    ensure!(
        !asked.iter().any(|p| p.starts_with("/private")),
        "robots.txt was not honoured"
    );
    step(
        4,
        format_args!(
            "crawl {id}: {} pages fetched, extracted, signed and written to Parquet in {:.1} s",
            status.progress.stored,
            started.elapsed().as_secs_f64()
        ),
    );
    println!(
        "  the site saw {} requests: robots.txt first, /private/ never",
        asked.len()
    );
    println!(
        "  shards erasure-coded into the storage network, then published as {NAME}@v{version}"
    );
    println!("  dataset CID (its manifest)  {manifest_cid}");

    // 5. The registry entry.
    let session = Session::join(network.bootstrap()).await?;
    let publisher = a.publisher.context("scraper node a has no publisher key")?;
    let reference: DatasetRef = format!("{publisher}/{NAME}@v1").parse()?;
    let (resolved, entry) = remote::resolve(&session, &reference, None).await?;
    let entry = entry.context("the registry returned no record")?;
    ensure!(
        resolved == manifest_cid,
        "the registry names another manifest"
    );
    let manifest = Arc::new(fetch_manifest(&session, manifest_cid).await?);
    let record = &entry.record.record;
    step(
        5,
        format_args!(
            "the registry (every storage node) resolves {}/{NAME}@v{} to it; the record is \
             signed by the publisher and checked by this reader",
            &publisher.to_string()[..8],
            record.version
        ),
    );
    println!("  publisher {}", record.publisher);
    println!("  record    {}", entry.cid);
    println!(
        "  manifest  {} shards, {} rows, schema with provenance (url, fetch time, body hash, \
         scraper peer id, signature)",
        manifest.shards.len(),
        manifest.total_rows()
    );
    if let Some(h) = network.node(0).and_then(|n| n.http) {
        println!(
            "  over HTTP http://{h}/v1/datasets/{}/{NAME}/1",
            record.publisher
        );
    }

    // 6. A storage node goes away; the dataset is fetched by CID anyway.
    let holder = manifest
        .shards
        .iter()
        .flat_map(|s| s.layout.pieces.iter())
        .find_map(|piece| {
            (1..args.nodes).find(|i| {
                network
                    .node(*i)
                    .is_some_and(|n| matches!(n.store.has(piece), Ok(Some(_))))
            })
        })
        .context("no node holds a piece")?;
    network.stop(holder).await;
    let reader = Session::join(network.bootstrap()).await?;
    let out = work.join("fetched");
    let started = Instant::now();
    let (_, _, report) = fetch_version(
        &reader,
        &DatasetRef::Cid(manifest_cid),
        &out,
        None,
        &FetchOptions::default(),
    )
    .await
    .context("fetching the dataset")?;
    let (rows, bad) = check_rows(&out)?;
    ensure!(bad == 0, "{bad} rows do not verify");
    step(
        6,
        format_args!(
            "storage node {holder} stopped; tessera fetch {manifest_cid} still got all {} shards \
             in {:.0?} ({} rebuilt from parity), every range checked against its piece CID",
            report.fetched.len(),
            started.elapsed(),
            report.reconstructed.len()
        ),
    );
    println!(
        "  {} rows in {}, every row's signature verifies against its scraper node's key",
        rows.len(),
        out.display()
    );

    // 7. One epoch streamed to two ranks.
    let cache = ShardCache::open(&work.join("cache"), 64 << 20)?;
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
            &reader,
            manifest_cid,
            manifest.clone(),
            cache.clone(),
            &options,
        )?;
        let mut urls = Vec::new();
        while let Some(batch) = stream.next_batch().await {
            let batch = batch?;
            let column = batch
                .column_by_name("url")
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .context("no url column")?;
            urls.extend((0..column.len()).map(|i| column.value(i).to_string()));
        }
        ranks.push(urls);
    }
    let (r0, r1): (BTreeSet<&String>, BTreeSet<&String>) =
        (ranks[0].iter().collect(), ranks[1].iter().collect());
    ensure!(r0.is_disjoint(&r1), "the ranks overlap");
    ensure!(
        ranks[0].len() == ranks[1].len(),
        "the ranks got unequal shares"
    );
    let all: BTreeSet<&String> = rows.iter().collect();
    ensure!(
        r0.union(&r1).all(|u| all.contains(u)),
        "a rank got a row not in the dataset"
    );
    step(
        7,
        format_args!(
            "one epoch (seed 7) streamed to 2 ranks in batches of 2: {} and {} samples, \
             disjoint, {} of {} rows (the remainder that fills no batch on every rank is left \
             out), each shard checked against its CID before use",
            ranks[0].len(),
            ranks[1].len(),
            r0.len() + r1.len(),
            rows.len()
        ),
    );
    println!(
        "  rank 0 starts with {}",
        ranks[0].first().map_or("-", |s| s)
    );
    println!(
        "  rank 1 starts with {}",
        ranks[1].first().map_or("-", |s| s)
    );

    // 8. An audit round, which also rebuilds the stopped node's pieces.
    let node = network.node(0).context("node 0")?;
    let mut auditor = node
        .auditor(AuditConfig {
            period: AuditConfig::default().interval,
            failures: 1,
            grace: Duration::ZERO,
            spare: 1.0,
            claim_settle: Duration::from_millis(300),
            ..AuditConfig::default()
        })
        .context("node 0 runs no auditor")?;
    let set = auditor.known_shards().await;
    let started = Instant::now();
    let round = auditor.round(&set.shards, &fresh_seed(), 0).await;
    let passed = round
        .receipts
        .iter()
        .filter(|r| r.receipt.result.passed())
        .count();
    step(
        8,
        format_args!(
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
        println!("  rebuilt {piece} from k other pieces onto {index}");
    }
    println!("  every answer is a signed receipt, kept and shared: tessera rewards counts them");

    println!(
        "\nDone. The dataset {NAME} ({manifest_cid}) lives as erasure-coded pieces under \
         {}/storage/node-*/pieces, its shards' rows fetched into {}.",
        work.display(),
        out.display()
    );
    let bootstrap = network
        .bootstrap()
        .first()
        .map(ToString::to_string)
        .unwrap_or_default();
    let node_http = network
        .node(0)
        .and_then(|n| n.http)
        .map(|h| format!("http://{h}"))
        .unwrap_or_default();
    let next = format!(
        "  tessera fetch {manifest_cid} -o out --bootstrap {bootstrap}\n  \
         tessera stream {manifest_cid} --rank 0 --world-size 2 --bootstrap {bootstrap} > rank0.arrows\n  \
         tessera datasets list --bootstrap {bootstrap}\n  \
         tessera audit status --node {node_http}\n  \
         tessera rewards --node {node_http}\n  \
         curl {node_http}/status"
    );
    if args.keep {
        println!(
            "\nThe network keeps running; try, in another terminal:\n{next}\nCtrl-C stops it."
        );
        daemon::until_stopped().await?;
    } else {
        println!(
            "\nNext: `tessera demo --keep` leaves this network running to explore with\n{next}\n\
             or run your own: docs/OPERATORS.md, docs/USING-DATASETS.md."
        );
    }
    b.shutdown().await;
    a.shutdown().await;
    network.shutdown().await;
    if args.keep {
        let kept = dir.keep();
        println!("Kept the working directory: {}", kept.display());
    }
    Ok(())
}

fn loopback() -> tessera_net::Multiaddr {
    tessera_net::Multiaddr::empty()
        .with(tessera_net::Protocol::Ip4(std::net::Ipv4Addr::LOCALHOST))
        .with(tessera_net::Protocol::Tcp(0))
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

/// Every row's URL in the dataset files under `dir`, and how many rows fail their signature.
fn check_rows(dir: &Path) -> anyhow::Result<(Vec<String>, usize)> {
    let (mut urls, mut bad) = (Vec::new(), 0);
    for (_, path) in list_parquet(dir)? {
        let file = std::fs::File::open(&path)?;
        for batch in ParquetRecordBatchReaderBuilder::try_new(file)?.build()? {
            let batch = batch?;
            bad += verify_batch(&batch)?.len();
            let column = batch
                .column_by_name("url")
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .context("no url column")?;
            urls.extend((0..column.len()).map(|i| column.value(i).to_string()));
        }
    }
    Ok((urls, bad))
}
