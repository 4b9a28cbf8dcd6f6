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
//! only if its signature verifies; with `--charter`, only if a validator assigned the piece
//! signed it and it names the size of the piece's layout.

use std::{
    path::PathBuf,
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, bail};
use bytesize::ByteSize;
use serde::Serialize;
use tessera_dataset::version::admitted_piece_sizes;
use tessera_formats::{DatasetRef, time::ms_of as ms};
use tessera_proofs::trust::ReceiptRules;
use tessera_scraper_node::rewards::{PagesRow, count_pages};
use tessera_storage_node::{
    api_client::NodeClient,
    http::{ReceiptPage, RewardRow},
    rewards::{Rejected, Tally},
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
    /// The network's charter file: only receipts of a validator assigned the piece count,
    /// each naming the size of the piece's layout (read from the network's registry).
    #[arg(long)]
    charter: Option<PathBuf>,
    /// Settle the period: the Merkle root (OpenZeppelin `StandardMerkleTree`, `standard-v1`,
    /// leaves `(address, uint256)`) of the byte-milliseconds each payout address is owed (the
    /// storage its nodes proved, and the validated pages of --dataset at the charter's
    /// `page_byte_ms`), the address each node declared on the network, signed by its key.
    /// Give every settlement the same --from (the charter's start) so that amounts are
    /// cumulative and a contract pays the difference. Needs --charter.
    #[arg(long, requires = "charter")]
    settle: bool,
    /// Write the settlement tree to FILE as `StandardMerkleTree.dump()` writes it.
    #[arg(long, requires = "settle")]
    dump: Option<PathBuf>,
    /// Print what this payout address is owed and its proof (repeatable).
    #[arg(long, requires = "settle")]
    proof: Vec<String>,
    /// Sign the settlement as the validator whose node's data directory this is, printing
    /// the signed block (hex).
    #[arg(long, requires = "settle")]
    sign_as: Option<PathBuf>,
    /// Another validator's signed settlement (a file with the hex block its --sign-as
    /// printed; repeatable): each must sign exactly this settlement. With the charter's
    /// threshold of them (counting --sign-as), the certificate a payout contract takes is
    /// printed.
    #[arg(long, requires = "settle")]
    cosigned: Vec<PathBuf>,
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

/// The whole report.
#[derive(Debug, Clone, Serialize)]
struct Report {
    from_ms: u64,
    to_ms: u64,
    receipts: usize,
    rejected: Vec<Rejected>,
    storage: Vec<RewardRow>,
    pages: Vec<PagesRow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    settlement: Option<SettlementReport>,
}

/// What a settlement pays, its root and the proofs asked for.
#[derive(Debug, Clone, Serialize)]
struct SettlementReport {
    /// The tree's root.
    root: String,
    /// Each payout address and the byte-milliseconds it is owed (decimal).
    leaves: Vec<(String, String)>,
    /// Nodes with rewards but no payout declaration that verifies: not paid this time.
    undeclared: Vec<String>,
    /// The proofs asked for (`--proof`).
    proofs: Vec<OwedProof>,
    /// The settlement signed by `--sign-as` (hex block).
    #[serde(skip_serializing_if = "Option::is_none")]
    signed: Option<String>,
    /// Validators whose signatures of this settlement are at hand (`--sign-as`, `--cosigned`),
    /// and how many the charter needs.
    signatures: (usize, u32),
    /// The certificate (hex block), once the threshold signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
struct OwedProof {
    address: String,
    amount: String,
    proof: Vec<String>,
}

/// The settlement of `rows`: each node's byte-milliseconds paid to the address it declared
/// on the network (a node with none is named and left out), as a standard Merkle tree.
async fn settle(
    session: &tessera_client::Session,
    charter: &tessera_node::charter::NodeCharter,
    (rows, pages): (&[RewardRow], &[PagesRow]),
    (from_ms, to_ms): (u64, u64),
    args: &Args,
) -> anyhow::Result<SettlementReport> {
    use std::collections::BTreeMap;
    use tessera_formats::payout::{
        MAX_SETTLEMENT_BYTES, PayoutAddress, SETTLEMENT_VERSION, Settlement, SettlementCertificate,
        SignedSettlement,
    };
    use tessera_proofs::settlement::{SettlementTree, hex0x};

    let mut owed: BTreeMap<PayoutAddress, u128> = BTreeMap::new();
    let mut undeclared = Vec::new();
    // Storage proven, and validated pages at the charter's price in proven storage.
    let page_byte_ms = u128::from(charter.signed.charter.params.page_byte_ms);
    let mut earned: Vec<(tessera_formats::PublisherKey, String, u128)> = Vec::new();
    for row in rows.iter().filter(|r| r.byte_ms > 0) {
        earned.push((row.node.parse()?, row.peer_id.clone(), row.byte_ms));
    }
    for row in pages.iter().filter(|r| r.credited > 0 && page_byte_ms > 0) {
        let peer: tessera_net::PeerId = row.peer_id.parse()?;
        let node = tessera_node::identity::node_key(&peer)
            .with_context(|| format!("{peer} is not an Ed25519 identity"))?;
        earned.push((
            node,
            row.peer_id.clone(),
            u128::from(row.credited) * page_byte_ms,
        ));
    }
    for (node, peer, amount) in earned {
        match tessera_node::payout::declared(session.net(), &node).await {
            Some(address) => *owed.entry(address).or_default() += amount,
            None => undeclared.push(peer),
        }
    }
    let values: Vec<(PayoutAddress, u128)> = owed.into_iter().collect();
    let tree = SettlementTree::of(&values)
        .context("no node with rewards in the period declared a payout address")?;
    if let Some(path) = &args.dump {
        std::fs::write(path, serde_json::to_vec_pretty(&tree.dump())?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let mut proofs = Vec::new();
    for text in &args.proof {
        let address: PayoutAddress = text.parse()?;
        let (amount, proof) = tree
            .proof(&address)
            .with_context(|| format!("{address} is owed nothing in this period"))?;
        proofs.push(OwedProof {
            address: address.lower(),
            amount: amount.to_string(),
            proof: proof.iter().map(|n| hex0x(n)).collect(),
        });
    }
    let settlement = Settlement {
        format: SETTLEMENT_VERSION,
        charter: charter.cid,
        from_ms,
        to_ms,
        root: tree.root(),
        leaves: values.len() as u64,
    };
    let mut signatures = Vec::new();
    for path in &args.cosigned {
        let text = read_bounded(
            path,
            2 * MAX_SETTLEMENT_BYTES as u64 + 16,
            "signed settlement",
        )?;
        let block = hex::decode(text.trim())
            .with_context(|| format!("{}: not a hex block", path.display()))?;
        signatures.push(
            SignedSettlement::from_block(&block)
                .with_context(|| format!("{}: not a signed settlement", path.display()))?,
        );
    }
    let signed = match &args.sign_as {
        Some(node_dir) => {
            let key = super::charter::validator_signing_key(node_dir, &charter.signed.charter)?;
            let signed = settlement.clone().sign(&key)?;
            let block = hex::encode(signed.to_block()?);
            signatures.push(signed);
            Some(block)
        }
        None => None,
    };
    let rules = &charter.signed.charter;
    let gathered = SettlementCertificate::gather(&settlement, &signatures)
        .context("a co-signed settlement is not the one computed here")?;
    let certificate = match gathered.verify(rules, &charter.cid) {
        Ok(()) => Some(hex::encode(gathered.to_block()?)),
        Err(_) if gathered.signatures.len() < rules.threshold as usize => None,
        Err(e) => return Err(e).context("the settlement's signatures"),
    };
    Ok(SettlementReport {
        root: hex0x(&tree.root()),
        leaves: values
            .iter()
            .map(|(a, v)| (a.lower(), v.to_string()))
            .collect(),
        undeclared,
        proofs,
        signed,
        signatures: (gathered.signatures.len(), rules.threshold),
        certificate,
    })
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

    let mut tally = Tally::new(MAX_RECEIPTS);
    for path in &args.receipts {
        let text = read_bounded(path, MAX_FILE_BYTES, "receipt file")?;
        let page: ReceiptPage = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a receipt page", path.display()))?;
        tally.add_page(&path.display().to_string(), page)?;
    }
    let cap_ms = u64::try_from(args.cap.as_millis()).unwrap_or(u64::MAX);
    // The nodes asked are the operator's own: their rows are marked.
    let mut asked = std::collections::BTreeSet::new();
    for node in &nodes {
        let api = NodeClient::new(node, Duration::from_secs(60))?;
        asked.insert(api.status().await?.peer_id);
        // Receipts up to a cap before the period show what each first pass in it follows.
        tally
            .add_node(&api, from_ms.saturating_sub(cap_ms), to_ms)
            .await?;
    }
    let charter = args
        .charter
        .as_deref()
        .map(tessera_node::charter::load)
        .transpose()?;
    let session = match &charter {
        Some(_) => Some(args.reader.join().await?),
        None => None,
    };
    let proven = match (&charter, &session) {
        (Some(charter), Some(session)) => {
            let rules = &charter.signed.charter;
            let scope = tessera_dataset_registry::AuditScope::of(rules);
            let sizes = admitted_piece_sizes(session, &scope, MAX_RECEIPTS)
                .await
                .context("reading the sizes of the admitted datasets' pieces")?;
            let size = |piece: &tessera_formats::Cid| sizes.get(piece).copied();
            let rules = ReceiptRules::new(rules, charter.cid, &size);
            tally.proven_under(from_ms, to_ms, cap_ms, |r| rules.check(r))
        }
        _ => tally.proven(from_ms, to_ms, cap_ms),
    };
    let pages = if args.dataset.is_empty() {
        Vec::new()
    } else {
        let datasets = args
            .dataset
            .iter()
            .map(|text| text.parse())
            .collect::<Result<Vec<DatasetRef>, _>>()?;
        let joined;
        let session = match &session {
            Some(session) => session,
            None => {
                joined = args.reader.join().await?;
                &joined
            }
        };
        let own = args.reader.preferred()?;
        let work = tempfile::tempdir().context("creating a directory for the datasets")?;
        count_pages(
            session,
            &datasets,
            own.as_ref(),
            work.path(),
            (from_ms, to_ms),
            |reference, report| {
                eprintln!(
                    "{reference}: {} shards, {}",
                    report.fetched.len() + report.present.len(),
                    ByteSize::b(report.bytes)
                );
            },
        )
        .await?
    };
    let settlement = match (&charter, &session) {
        (Some(charter), Some(session)) if args.settle => Some(
            settle(
                session,
                charter,
                (&proven.nodes, &pages),
                (from_ms, to_ms),
                &args,
            )
            .await?,
        ),
        _ => None,
    };
    let report = Report {
        from_ms,
        to_ms,
        receipts: proven.receipts,
        rejected: proven.rejected,
        storage: proven
            .nodes
            .into_iter()
            .map(|row| RewardRow {
                own: asked.contains(&row.peer_id),
                ..row
            })
            .collect(),
        pages,
        settlement,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report, from, to));
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
    // A flood of bad receipts is summed up, not printed: --json lists every one.
    const SHOWN: usize = 20;
    for r in report.rejected.iter().take(SHOWN) {
        out.push_str(&format!(
            "  rejected: {} #{}: {}\n",
            r.source, r.index, r.reason
        ));
    }
    if report.rejected.len() > SHOWN {
        out.push_str(&format!(
            "  ... and {} more rejected (--json lists them)\n",
            report.rejected.len() - SHOWN
        ));
    }
    out.push_str(&format!(
        "\nstorage proven (pieces that passed audits; * a node asked)\n{:<54} {:>10} {:>11} {:>7} {:>7}\n",
        "node", "GiB-hours", "GiB-months", "passed", "failed"
    ));
    for row in &report.storage {
        out.push_str(&format!(
            "{:<54} {:>10.4} {:>11.6} {:>7} {:>7}{}\n",
            row.peer_id,
            row.gib_hours,
            row.gib_months,
            row.passed,
            row.failed,
            if row.own { " *" } else { "" }
        ));
    }
    if let Some(s) = &report.settlement {
        out.push_str(&format!(
            "\nsettlement (standard-v1 Merkle tree of (address, uint256 byte-milliseconds))\nroot      {}\n",
            s.root
        ));
        for (address, amount) in &s.leaves {
            out.push_str(&format!("  {address} {amount}\n"));
        }
        for peer in &s.undeclared {
            out.push_str(&format!("  not paid: {peer} declared no payout address\n"));
        }
        for p in &s.proofs {
            out.push_str(&format!(
                "proof of {} ({}): [{}]\n",
                p.address,
                p.amount,
                p.proof.join(", ")
            ));
        }
        if let Some(block) = &s.signed {
            out.push_str(&format!("signed    {block}\n"));
        }
        let (have, need) = s.signatures;
        match &s.certificate {
            Some(block) => out.push_str(&format!(
                "certified by {have} validators (the charter needs {need}): {block}\n"
            )),
            None if have > 0 => out.push_str(&format!(
                "signed by {have} validators; the charter needs {need} for a certificate\n"
            )),
            None => {}
        }
    }
    if !report.pages.is_empty() {
        out.push_str(&format!(
            "\npages contributed (rows whose signature verifies, fetched in the period; credited: \
             per crawl, its pages times the share of its checked pages that agreed, none when \
             none was checked)\n{:<54} {:>8} {:>9} {:>9} {:>8} {:>11} {:>15}\n",
            "node", "pages", "credited", "rejected", "checked", "disagreed", "shards refused"
        ));
        for row in &report.pages {
            out.push_str(&format!(
                "{:<54} {:>8} {:>9} {:>9} {:>8} {:>11} {:>15}\n",
                row.peer_id,
                row.pages,
                row.credited,
                row.rejected,
                row.checks_agreed + row.checks_disagreed,
                row.checks_disagreed,
                row.shards_refused
            ));
        }
    }
    out
}
