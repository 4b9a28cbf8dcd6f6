//! `tessera rewards`: the ledger of a period, from signed receipts and scraped datasets.
//!
//! ```text
//! receipts: GET NODE/v1/receipts (paged) and/or FILE (the same JSON)
//!   ─▶ hex ─▶ each block decoded and its auditor's signature checked (bad ones listed)
//!   ─▶ proofs::ledger ─▶ GiB-hours proven, audits passed and failed, per node
//! datasets: fetched by CID or name, every shard checked against its CID
//!   ─▶ rows whose provenance signature verifies, fetched in the period, per scraper node
//! ```
//!
//! Nothing here is trusted to a node: a node only supplies receipt blocks, and each one counts
//! only if its signature verifies.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, SystemTime},
};
use tessera_formats::time::ms_of as ms;

use anyhow::{Context as _, bail};
use bytesize::ByteSize;
use serde::Serialize;
use tessera_dataset::FetchOptions;
use tessera_dataset::fetch_version;
use tessera_dataset::parquet_guard::{ParquetLimits, contain, open_checked};
use tessera_formats::DatasetRef;
use tessera_proofs::{decode_blocks, ledger};
use tessera_scraper_node::{
    provenance::{Contribution, contributions},
    publish::VALIDATION_KEY,
    validation::Score,
};
use tessera_storage_node::{
    api_client::NodeClient,
    http::{ReceiptPage, RewardRow, reward_rows},
};

use super::{audit::DEFAULT_NODE, config::read_bounded, reader::ReaderArgs};

/// Most receipts one run reads: a narrower period reads fewer.
const MAX_RECEIPTS: usize = 2_000_000;
/// Largest receipt file read.
const MAX_FILE_BYTES: u64 = 1 << 30;

#[derive(Debug, clap::Args)]
#[command(rename_all = "kebab-case")]
pub(crate) struct Args {
    /// A storage node's HTTP port to read receipts from (repeatable) [default:
    /// http://127.0.0.1:8080 when no --receipts file is named].
    #[arg(long)]
    node: Vec<String>,
    /// A file of receipts, as `GET /v1/receipts` returns them (repeatable).
    #[arg(long)]
    receipts: Vec<PathBuf>,
    /// Start of the period (RFC 3339, like 2026-11-01T00:00:00Z) [default: --period before
    /// --to].
    #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
    from: Option<SystemTime>,
    /// End of the period (RFC 3339) [default: now].
    #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
    to: Option<SystemTime>,
    /// Length of the period when --from is not given.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "24h")]
    period: Duration,
    /// Most time one passed audit credits: a node is not credited for months on one audit.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "24h")]
    cap: Duration,
    /// A scraped dataset (CID or [PUBLISHER/]NAME[@vN]) whose pages are counted
    /// (repeatable; joins the network).
    #[arg(long)]
    dataset: Vec<String>,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    reader: ReaderArgs,
}

/// A receipt that was not counted.
#[derive(Debug, Clone, Serialize)]
struct Rejected {
    /// Where it came from.
    source: String,
    /// Its position there.
    index: usize,
    /// Why.
    reason: String,
}

/// One node's row of the pages table.
#[derive(Debug, Clone, Serialize)]
struct PagesRow {
    peer_id: String,
    /// Rows whose signature verifies, fetched in the period.
    pages: u64,
    /// Rows naming the node whose signature does not verify.
    rejected: u64,
    /// Its pages that another node fetched again with the same text (the crawls' scores).
    checks_agreed: u64,
    /// Its pages that another node fetched again with other text.
    checks_disagreed: u64,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
struct Report {
    from_ms: u64,
    to_ms: u64,
    receipts: usize,
    rejected: Vec<Rejected>,
    storage: Vec<RewardRow>,
    pages: Vec<PagesRow>,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let to = args.to.unwrap_or_else(SystemTime::now);
    let from = match args.from {
        Some(from) => from,
        None => to
            .checked_sub(args.period)
            .unwrap_or(SystemTime::UNIX_EPOCH),
    };
    let (from_ms, to_ms) = (ms(from), ms(to));
    if from_ms >= to_ms {
        bail!("the period is empty: --from must come before --to");
    }
    let mut nodes = args.node.clone();
    if nodes.is_empty() && args.receipts.is_empty() {
        nodes.push(DEFAULT_NODE.to_string());
    }

    // Every block with where it came from.
    let mut blocks: Vec<(String, usize, Result<Vec<u8>, String>)> = Vec::new();
    let mut add = |source: &str, page: ReceiptPage| -> anyhow::Result<()> {
        for text in page.receipts {
            if blocks.len() == MAX_RECEIPTS {
                bail!("more than {MAX_RECEIPTS} receipts: ask for a shorter period");
            }
            let index = blocks.iter().filter(|b| b.0 == source).count();
            blocks.push((
                source.to_string(),
                index,
                hex::decode(&text).map_err(|e| format!("not hex: {e}")),
            ));
        }
        Ok(())
    };
    for path in &args.receipts {
        let text = read_bounded(path, MAX_FILE_BYTES, "receipt file")?;
        let page: ReceiptPage = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a receipt page", path.display()))?;
        add(&path.display().to_string(), page)?;
    }
    for node in &nodes {
        let api = NodeClient::new(node, Duration::from_secs(60))?;
        let mut after: Option<String> = None;
        loop {
            let page = api.receipts(from_ms, to_ms, after.as_deref()).await?;
            let next = page.next.clone();
            add(node, page)?;
            match next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }

    let mut rejected = Vec::new();
    let mut decoded = Vec::new();
    let mut origin = Vec::new();
    for (source, index, block) in blocks {
        match block {
            Ok(block) => {
                decoded.push(block);
                origin.push((source, index));
            }
            Err(reason) => rejected.push(Rejected {
                source,
                index,
                reason,
            }),
        }
    }
    let (receipts, bad) = decode_blocks(&decoded);
    for (i, e) in bad {
        let (source, index) = origin[i].clone();
        rejected.push(Rejected {
            source,
            index,
            reason: e.to_string(),
        });
    }
    let cap_ms = u64::try_from(args.cap.as_millis()).unwrap_or(u64::MAX);
    let proven = ledger(&receipts, from_ms, to_ms, cap_ms);
    let storage = reward_rows(&proven);

    let pages = if args.dataset.is_empty() {
        Vec::new()
    } else {
        count_pages(&args, from_ms, to_ms).await?
    };
    let report = Report {
        from_ms,
        to_ms,
        receipts: receipts.len(),
        rejected,
        storage,
        pages,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report, from, to));
    }
    Ok(())
}

/// Fetches each dataset and counts its verified pages per scraper node.
async fn count_pages(args: &Args, from_ms: u64, to_ms: u64) -> anyhow::Result<Vec<PagesRow>> {
    let session = args.reader.join().await?;
    let own = args.reader.preferred()?;
    let mut counted: BTreeMap<String, Contribution> = BTreeMap::new();
    let mut scores: BTreeMap<String, Score> = BTreeMap::new();
    let (from_us, to_us) = (
        i64::try_from(from_ms.saturating_mul(1000)).unwrap_or(i64::MAX),
        i64::try_from(to_ms.saturating_mul(1000)).unwrap_or(i64::MAX),
    );
    for text in &args.dataset {
        let reference: DatasetRef = text.parse()?;
        let dir = tempfile::tempdir().context("creating a directory for the dataset")?;
        let (_, _, report) = fetch_version(
            &session,
            &reference,
            dir.path(),
            own.as_ref(),
            &FetchOptions::default(),
        )
        .await
        .with_context(|| format!("fetching {reference}"))?;
        eprintln!(
            "{reference}: {} shards, {}",
            report.fetched.len() + report.present.len(),
            ByteSize::b(report.bytes)
        );
        // The crawl's validation scores, as its coordinator published them (the manifest's
        // CID covers them, and its publisher signed the version).
        if let Some(json) = report.manifest.metadata.get(VALIDATION_KEY) {
            let crawl: BTreeMap<String, Score> = serde_json::from_str(json)
                .with_context(|| format!("{reference}: {VALIDATION_KEY} is not a score map"))?;
            for (node, score) in crawl {
                let total = scores.entry(node).or_default();
                total.agreed += score.agreed;
                total.disagreed += score.disagreed;
            }
        }
        let root = dir.path().to_path_buf();
        counted = tokio::task::spawn_blocking(move || {
            let mut counted = counted;
            count_dir(&root, from_us, to_us, &mut counted).map(|()| counted)
        })
        .await??;
    }
    Ok(counted
        .into_iter()
        .map(|(peer_id, c)| {
            let score = scores.get(&peer_id).copied().unwrap_or_default();
            PagesRow {
                peer_id,
                pages: c.pages,
                rejected: c.rejected,
                checks_agreed: score.agreed,
                checks_disagreed: score.disagreed,
            }
        })
        .collect())
}

fn count_dir(
    dir: &std::path::Path,
    from_us: i64,
    to_us: i64,
    counted: &mut BTreeMap<String, Contribution>,
) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            count_dir(&path, from_us, to_us, counted)?;
            continue;
        }
        if path.extension().is_none_or(|e| e != "parquet") {
            continue;
        }
        let file =
            std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        // Shards come from the network: read with limits, a panic in the reader contained.
        let read = contain(|| {
            let reader = open_checked(file, &ParquetLimits::default())?
                .build()
                .map_err(|e| e.to_string())?;
            for batch in reader {
                let batch = batch.map_err(|e| e.to_string())?;
                contributions(&batch, from_us, to_us, counted)
                    .map_err(|e| format!("not a dataset of scraped pages: {e:#}"))?;
            }
            Ok(())
        });
        read.map_err(|why| anyhow::anyhow!("{}: {why}", path.display()))?;
    }
    Ok(())
}

fn render(report: &Report, from: SystemTime, to: SystemTime) -> String {
    let mut out = format!(
        "period    {} .. {}\nreceipts  {} verified, {} rejected\n",
        humantime::format_rfc3339_seconds(from),
        humantime::format_rfc3339_seconds(to),
        report.receipts,
        report.rejected.len()
    );
    for r in &report.rejected {
        out.push_str(&format!(
            "  rejected: {} #{}: {}\n",
            r.source, r.index, r.reason
        ));
    }
    out.push_str(&format!(
        "\nstorage proven (GiB-hours of pieces that passed audits)\n{:<54} {:>10} {:>7} {:>7}\n",
        "node", "GiB-hours", "passed", "failed"
    ));
    for row in &report.storage {
        out.push_str(&format!(
            "{:<54} {:>10.4} {:>7} {:>7}\n",
            row.peer_id, row.gib_hours, row.passed, row.failed
        ));
    }
    if !report.pages.is_empty() {
        out.push_str(&format!(
            "\npages contributed (rows whose signature verifies, fetched in the period; checks: its pages fetched again by another node)\n{:<54} {:>10} {:>9} {:>13} {:>16}\n",
            "node", "pages", "rejected", "checks agreed", "checks disagreed"
        ));
        for row in &report.pages {
            out.push_str(&format!(
                "{:<54} {:>10} {:>9} {:>13} {:>16}\n",
                row.peer_id, row.pages, row.rejected, row.checks_agreed, row.checks_disagreed
            ));
        }
    }
    out
}
