//! Measures what audits cost the network per GiB stored per period, with every node auditing
//! (the unnamed network) and under a charter whose assigned validators audit each copy, on
//! loopback networks of storage nodes in one process.
//!
//! ```text
//! cargo run --release -p tessera-examples --example audit_traffic -- DATA_DIR \
//!     [--nodes 6] [--validators 3] [--per-piece 2]
//! ```
//! `DATA_DIR` holds Parquet files (`parquet_dataset` writes them). On each network the data is
//! published, then every node's auditor runs two periods (one round covering every shard, at
//! the default sample count). The second period is the steady state: under a charter, a
//! validator reads the receipts of the copies assigned to others instead of challenging
//! them, once they have reached it. Printed: proof bytes per GiB stored per period, for each
//! network and period, and their ratio.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::cast_precision_loss)]

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use clap::Parser;
use tessera_client::Session;
use tessera_dataset::{PublishOptions, publish::list_parquet, publish_version};
use tessera_examples::{Figure, record};
use tessera_formats::record::SigningKey;
use tessera_storage_node::{LocalNetwork, audit::AuditConfig};

/// Audit traffic with and without assignment.
#[derive(Debug, Parser)]
struct Args {
    /// A directory of Parquet files.
    data: PathBuf,
    /// Storage nodes, each a registry node and an auditor.
    #[arg(long, default_value_t = 6)]
    nodes: usize,
    /// Validators in the charter (the first nodes).
    #[arg(long, default_value_t = 3)]
    validators: usize,
    /// Validators assigned each copy (the charter's default is 2).
    #[arg(long, default_value_t = 2)]
    per_piece: u32,
    /// Where the nodes keep their data [default: a temporary directory].
    #[arg(long)]
    work: Option<PathBuf>,
}

const MIB: f64 = 1024.0 * 1024.0;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let temp = tempfile::tempdir()?;
    let work = args
        .work
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());

    let every = LocalNetwork::start(&work.join("unnamed"), args.nodes, 8 << 30).await?;
    let baseline = periods(&every, &args, "every node audits").await?;
    every.shutdown().await;

    let chartered = LocalNetwork::start_committee(
        &work.join("chartered"),
        args.nodes,
        8 << 30,
        "traffic",
        args.validators,
        args.per_piece,
    )
    .await?;
    let assigned = periods(
        &chartered,
        &args,
        &format!(
            "{} of {} validators per copy",
            args.per_piece, args.validators
        ),
    )
    .await?;
    chartered.shutdown().await;
    println!(
        "steady state: {:.1} MiB per GiB stored per period under the charter, {:.1} MiB with every node auditing: {:.2}x",
        assigned[1],
        baseline[1],
        assigned[1] / baseline[1]
    );
    record(&[Figure {
        section: "audits",
        name: format!(
            "proofs per GiB stored per period, all {} nodes auditing under a charter ({} of {} validators per copy)",
            args.nodes, args.per_piece, args.validators
        ),
        value: assigned[1],
        unit: "MiB",
        baseline: "every node auditing every copy, same data",
        baseline_value: baseline[1],
    }])?;
    Ok(())
}

/// Publishes the data on `network`, runs two periods of every node's auditor, and returns
/// the proof MiB per GiB stored of each.
async fn periods(network: &LocalNetwork, args: &Args, label: &str) -> anyhow::Result<[f64; 2]> {
    let session = Session::join_network(network.network_id(), network.bootstrap()).await?;
    let published = publish_version(
        &session,
        list_parquet(&args.data)?,
        "traffic-bench",
        "",
        &SigningKey::from_bytes(&rand::random()),
        PublishOptions {
            parallel: 8,
            ..PublishOptions::default()
        },
    )
    .await
    .context("publishing")?;
    let manifest = &published.report.manifest;
    let pieces: Vec<_> = manifest
        .shards
        .iter()
        .flat_map(|s| s.layout.pieces.clone())
        .collect();
    let stored: u64 = (0..args.nodes)
        .filter_map(|i| network.node(i))
        .map(|n| {
            pieces
                .iter()
                .filter_map(|p| n.store.has(p).unwrap())
                .sum::<u64>()
        })
        .sum();
    let gib = stored as f64 / f64::from(1u32 << 30);
    for i in 0..args.nodes {
        let registry = network.node(i).unwrap().registry.clone().unwrap();
        while registry.store().audit_set(1 << 20)?.shards.len() < manifest.shards.len() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let proofs = || -> u64 {
        (0..args.nodes)
            .filter_map(|i| network.node(i))
            .map(|n| n.metrics.proof_bytes_sent())
            .sum()
    };
    let config = AuditConfig {
        // One round covers every shard: one period.
        period: AuditConfig::default().interval,
        ..AuditConfig::default()
    };
    let mut out = [0.0; 2];
    for (period, figure) in out.iter_mut().enumerate() {
        let before = proofs();
        let (mut challenged, mut heard) = (0, 0);
        for i in 0..args.nodes {
            let mut auditor = network.node(i).unwrap().auditor(config).unwrap();
            let set = auditor.known_shards().await;
            let report = auditor.round(&set.shards, &rand::random(), 0).await;
            challenged += report.challenged;
            heard += report.heard;
        }
        let bytes = proofs() - before;
        *figure = bytes as f64 / MIB / gib;
        println!(
            "{label}, period {}: {} auditors, {challenged} challenges, {heard} copies judged by assigned validators' receipts; {:.1} MiB of proofs for {gib:.2} GiB of pieces = {figure:.1} MiB per GiB stored per period",
            period + 1,
            args.nodes,
            bytes as f64 / MIB,
        );
        // The receipts of this period reach every node before the next.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(out)
}
