//! `tessera publish DIR --name NAME`: store a directory of Parquet files as the next version
//! of one of the publisher's datasets, sign its record and register it. Prints the version's
//! manifest CID on stdout (the only thing there, for scripts).

use std::{path::PathBuf, time::Instant};

use anyhow::Context as _;
use bytesize::ByteSize;
use tessera_dataset::publish_version;
use tessera_dataset::{PublishOptions, publish::list_parquet};
use tessera_formats::erasure::{DEFAULT_STRIPE_SIZE, ErasureParams};

use super::{join::JoinArgs, progress, publisher_key};

#[derive(Debug, clap::Args)]
#[command(rename_all = "kebab-case")]
pub(crate) struct Args {
    /// The directory of .parquet files (searched recursively; hidden entries skipped).
    dir: PathBuf,
    /// The dataset's name: a-z, 0-9, '.', '_' and '-'.
    #[arg(long)]
    name: String,
    /// What this version changes.
    #[arg(long, default_value = "")]
    message: String,
    /// Data pieces per shard [default: chosen from the nodes reachable, with --m].
    #[arg(long, requires = "m")]
    k: Option<u16>,
    /// Parity pieces per shard: how many of a shard's nodes may be lost.
    #[arg(long, requires = "k")]
    m: Option<u16>,
    /// The publisher key file [default: ~/.config/tessera/publisher.key, created if missing].
    #[arg(long)]
    key: Option<PathBuf>,
    /// Where pieces are written before they are sent [default: the system's temp directory].
    #[arg(long)]
    spool: Option<PathBuf>,
    /// Publish even when fewer working nodes than pieces are found, so that shards survive
    /// fewer than m node losses (the output says how many).
    #[arg(long)]
    degraded: bool,
    #[command(flatten)]
    join: JoinArgs,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let params = match (args.k, args.m) {
        (Some(k), Some(m)) => {
            Some(ErasureParams::new(k, m, DEFAULT_STRIPE_SIZE).context("erasure parameters")?)
        }
        _ => None,
    };
    // The files first: a wrong directory creates no key.
    let files = list_parquet(&args.dir)?;
    let signer = publisher_key::load_or_create(&publisher_key::key_path(args.key.as_deref())?)?;
    let dir = std::fs::canonicalize(&args.dir)
        .with_context(|| format!("reading {}", args.dir.display()))?;
    // One journal per (directory, dataset): a run cut short resumes from it.
    let journal = super::config::cache_path(&format!(
        "publish/{}.jsonl",
        blake3::hash(format!("{}\0{}", dir.display(), args.name).as_bytes()).to_hex()
    ));
    let session = args.join.join().await?;
    let (bar, sink) = progress::bar(&session);
    let options = PublishOptions {
        params,
        parallel: 8,
        spool_dir: args.spool,
        journal,
        progress: sink,
        refuse_degraded: !args.degraded,
        ..PublishOptions::default()
    };
    let started = Instant::now();
    let published = publish_version(&session, files, &args.name, &args.message, &signer, options)
        .await
        .with_context(|| format!("publishing {}", args.dir.display()))?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let r = &published.report;
    let record = &published.record.record;
    if r.unchanged {
        eprintln!(
            "nothing changed since {}/{}@v{}: no new version; dataset {} (fetch it by this CID, or as {}/{}@v{})",
            record.publisher,
            record.name,
            record.version,
            r.manifest_cid,
            record.publisher,
            record.name,
            record.version
        );
        println!("{}", r.manifest_cid);
        return Ok(());
    }
    eprintln!(
        "published {}/{}@v{} ({} shards, {} rows, {}): {} pieces sent ({}), {} resumed, {} shards already stored (this dataset's or another of yours), in {seconds:.1} s",
        record.publisher,
        record.name,
        record.version,
        r.manifest.shards.len(),
        r.manifest.total_rows(),
        ByteSize::b(r.manifest.total_bytes()),
        r.pieces_sent,
        ByteSize::b(r.bytes_sent),
        r.pieces_resumed,
        r.reused.len(),
    );
    if let Some(survives) = r.survives.filter(|&s| s < usize::from(r.params.m)) {
        eprintln!(
            "warning: too few working nodes for every piece to have its own: the dataset survives \
             the loss of {survives} nodes, not {}; the manifest marks the {} shard(s) stored so \
             (`degraded`), and auditors move their pieces once the network has room",
            r.params.m,
            r.manifest
                .shards
                .iter()
                .filter(|s| s.degraded.is_some())
                .count()
        );
    }
    let durable = tessera_proofs::durability::DURABLE_FROM;
    if let Some(nodes) = r.nodes_reached.filter(|&n| n < durable) {
        eprintln!(
            "note: {nodes} storage nodes reached, so shards are stored {}+{}; a network of fewer \
             than {durable} loses more than 1e-9 of its shards a year when a tenth of its nodes \
             leave each month (docs/DURABILITY.md)",
            r.params.k, r.params.m
        );
    }
    // Two CIDs, each said for what it is; the one to fetch goes alone to stdout, for scripts.
    eprintln!(
        "version record {} (the signed record registries keep of this version)",
        published.record_cid
    );
    eprintln!(
        "dataset {} (fetch it by this CID, or as {}/{}@v{})",
        r.manifest_cid, record.publisher, record.name, record.version
    );
    println!("{}", r.manifest_cid);
    Ok(())
}
