//! Measures audits and repair on a loopback network of storage nodes in one process: the audit
//! traffic of one period per GiB stored, and the time and bytes it takes to restore the
//! redundancy of a dataset after a node is lost.
//!
//! ```text
//! cargo run --release -p tessera-examples --example repair -- DATA_DIR [--nodes 6]
//! ```
//! `DATA_DIR` holds Parquet files (`parquet_dataset` writes them). The dataset is published on
//! `--nodes` nodes; one auditor audits every piece once with the default sample count (one
//! period's traffic); then a node is stopped, and every other node runs audit rounds at
//! once, back to back (failures = 1, no grace: the schedule's waiting is left out), until
//! every piece has a holder again. Printed: what was lost, what the repair moved, how long
//! it took, and the publish of the same data as a baseline measured in the same run.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::cast_precision_loss)]

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};
use tessera_dataset::{PublishOptions, publish::list_parquet};

use anyhow::Context as _;
use clap::Parser;
use tessera_client::Session;
use tessera_dataset::publish_version;
use tessera_examples::{Figure, record};
use tessera_formats::{Cid, record::SigningKey};
use tessera_storage_node::{LocalNetwork, audit::AuditConfig};

/// Audit traffic and repair of a dataset on a loopback network.
#[derive(Debug, Parser)]
struct Args {
    /// A directory of Parquet files.
    data: PathBuf,
    /// Storage nodes.
    #[arg(long, default_value_t = 6)]
    nodes: usize,
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
    let mut network = LocalNetwork::start(&work.join("nodes"), args.nodes, 8 << 30).await?;
    let files = list_parquet(&args.data)?;
    let session = Session::join(network.bootstrap()).await?;
    let started = Instant::now();
    let published = publish_version(
        &session,
        files,
        "repair-bench",
        "",
        &SigningKey::from_bytes(&rand::random()),
        PublishOptions {
            parallel: 8,
            spool_dir: Some(work.clone()),
            ..PublishOptions::default()
        },
    )
    .await
    .context("publishing")?;
    let publish_s = started.elapsed().as_secs_f64();
    let manifest = &published.report.manifest;
    let pieces: Vec<Cid> = manifest
        .shards
        .iter()
        .flat_map(|s| s.layout.pieces.clone())
        .collect();
    let erasure = manifest.shards[0].layout.erasure;
    let held = |network: &LocalNetwork, index: usize| -> u64 {
        network.node(index).map_or(0, |n| {
            pieces.iter().filter_map(|p| n.store.has(p).unwrap()).sum()
        })
    };
    let stored: u64 = (0..args.nodes).map(|i| held(&network, i)).sum();
    let data: u64 = manifest.shards.iter().map(|s| s.layout.size).sum();
    println!(
        "dataset: {:.0} MiB in {} shards, {}+{}, {:.0} MiB of pieces on {} nodes; published in {publish_s:.1} s ({:.0} MB/s)",
        data as f64 / MIB,
        manifest.shards.len(),
        erasure.data(),
        erasure.total() - erasure.data(),
        stored as f64 / MIB,
        args.nodes,
        data as f64 / 1e6 / publish_s,
    );
    // Every registry lists the version before anyone audits.
    for i in 0..args.nodes {
        let registry = network.node(i).unwrap().registry.clone().unwrap();
        while registry.store().audit_set(1 << 20)?.shards.len() < manifest.shards.len() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // One period of one auditor at the default sample count: every piece challenged once.
    let proofs = |network: &LocalNetwork| -> u64 {
        (0..args.nodes)
            .filter_map(|i| network.node(i))
            .map(|n| n.metrics.proof_bytes_sent())
            .sum()
    };
    let mut auditor = network
        .node(0)
        .unwrap()
        .auditor(AuditConfig {
            period: AuditConfig::default().interval,
            ..AuditConfig::default()
        })
        .unwrap();
    let set = auditor.known_shards().await;
    let before = proofs(&network);
    let started = Instant::now();
    let report = auditor.round(&set.shards, &rand::random(), 0).await;
    let audit_s = started.elapsed().as_secs_f64();
    let proof_bytes = proofs(&network) - before;
    let gib = stored as f64 / f64::from(1u32 << 30);
    println!(
        "audit period (one auditor, {} challenges, {} samples each): {:.1} MiB of proofs for {:.2} GiB of pieces = {:.1} MiB per GiB stored per period; {audit_s:.1} s",
        report.receipts.len(),
        tessera_proofs::DEFAULT_SAMPLES,
        proof_bytes as f64 / MIB,
        gib,
        proof_bytes as f64 / MIB / gib,
    );

    // A node is lost.
    let victim = 1;
    let lost = held(&network, victim);
    let lost_pieces = pieces
        .iter()
        .filter(|p| {
            network
                .node(victim)
                .unwrap()
                .store
                .has(p)
                .unwrap()
                .is_some()
        })
        .count();
    network.stop(victim).await;
    let started = Instant::now();
    let config = AuditConfig {
        // One round covers every shard.
        period: AuditConfig::default().interval,
        failures: 1,
        grace: Duration::ZERO,
        spare: 1.0,
        samples: 64,
        ..AuditConfig::default()
    };
    let mut rounds = 0;
    let (mut repaired, mut fetched, mut sent) = (0u64, 0u64, 0u64);
    loop {
        rounds += 1;
        let mut tasks = Vec::new();
        for i in (0..args.nodes).filter(|i| *i != victim) {
            let mut auditor = network.node(i).unwrap().auditor(config).unwrap();
            tasks.push(tokio::spawn(async move {
                let set = auditor.known_shards().await;
                auditor.round(&set.shards, &rand::random(), 0).await
            }));
        }
        let mut this_round = 0;
        for task in tasks {
            this_round += task.await?.repaired.len() as u64;
        }
        repaired += this_round;
        let missing = pieces
            .iter()
            .filter(|p| {
                (0..args.nodes)
                    .filter(|i| *i != victim)
                    .all(|i| network.node(i).unwrap().store.has(p).unwrap().is_none())
            })
            .count();
        println!(
            "  round {rounds}: {this_round} pieces rebuilt, {missing} still missing, {:.1} s",
            started.elapsed().as_secs_f64()
        );
        if missing == 0 || rounds == 10 {
            anyhow::ensure!(
                missing == 0,
                "{missing} pieces still missing after {rounds} rounds"
            );
            break;
        }
    }
    let repair_s = started.elapsed().as_secs_f64();
    for i in (0..args.nodes).filter(|i| *i != victim) {
        let c = network.node(i).unwrap().metrics.audit_counters();
        fetched += c.repair_fetched;
        sent += c.repair_sent;
    }
    println!(
        "node lost: {lost_pieces} pieces, {:.1} MiB; redundancy restored in {repair_s:.1} s ({rounds} rounds of {} auditors at once): {repaired} pieces rebuilt, {:.1} MiB fetched + {:.1} MiB sent = {:.1} MiB moved, {:.2}x the bytes lost",
        lost as f64 / MIB,
        args.nodes - 1,
        fetched as f64 / MIB,
        sent as f64 / MIB,
        (fetched + sent) as f64 / MIB,
        (fetched + sent) as f64 / lost.max(1) as f64,
    );
    println!(
        "baseline: publishing the dataset took {publish_s:.1} s; the repair took {:.2}x that",
        repair_s / publish_s
    );
    record(&[
        Figure {
            section: "audits",
            name: "proofs per GiB stored per period, one auditor, 688 samples".into(),
            value: proof_bytes as f64 / MIB / gib,
            unit: "MiB",
            baseline: "the GiB stored",
            baseline_value: 1024.0,
        },
        Figure {
            section: "repair",
            name: format!("a node lost ({lost_pieces} pieces) to every piece held again"),
            value: repair_s,
            unit: "s",
            baseline: "publishing the whole dataset",
            baseline_value: publish_s,
        },
        Figure {
            section: "repair",
            name: "bytes the repair moved".into(),
            value: (fetched + sent) as f64 / MIB,
            unit: "MiB",
            baseline: "bytes lost",
            baseline_value: lost as f64 / MIB,
        },
    ])?;
    network.shutdown().await;
    Ok(())
}
