//! `tessera crawl start|status|stop`: crawls on a scraper node's coordinator, through its
//! HTTP API. Changes carry the node's API token, read from its data directory.

use std::{io::IsTerminal as _, path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tessera_scraper_node::{
    api_client::CrawlClient, coordinator::CrawlStatus, crawl_store::CrawlState,
    http_guard::TOKEN_FILE, spec::CrawlSpec,
};

use tessera_scraper_node::config::{DEFAULT_HTTP, ScraperConfig};

use super::config::read_bounded;

/// Largest spec file read.
const MAX_SPEC_BYTES: u64 = 1024 * 1024;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
    /// The coordinating scraper node's HTTP API [default: http://127.0.0.1:8090].
    #[arg(long, global = true)]
    node: Option<String>,
    /// The scraper node's data directory, where its API token is
    /// [default: ~/.local/share/tessera/scraper-node].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// A file holding the node's API token, instead of the one in its data directory.
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
}

/// The node's API token: from `--token-file`, or `api-token` in its data directory.
fn token(args: &Args) -> anyhow::Result<String> {
    let path = match &args.token_file {
        Some(path) => path.clone(),
        None => {
            let dir = args
                .data_dir
                .clone()
                .unwrap_or_else(|| ScraperConfig::default().data_dir);
            anyhow::ensure!(!dir.as_os_str().is_empty(), "no --data-dir and no $HOME");
            dir.join(TOKEN_FILE)
        }
    };
    let text = read_bounded(&path, 1024, "API token").with_context(
        || "changing crawls needs the scraper node's API token (--data-dir or --token-file)",
    )?;
    Ok(text.trim().to_string())
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Start a crawl described by a TOML spec; prints its id.
    Start {
        /// The spec.
        spec: PathBuf,
        /// Wait until the crawl is done and published, showing its progress; the last line
        /// printed is the dataset version's manifest CID.
        #[arg(long)]
        wait: bool,
    },
    /// Show every crawl, or one.
    Status {
        /// The crawl.
        id: Option<String>,
        /// Print the status as JSON (an array of every crawl without an id), every field whole.
        #[arg(long)]
        json: bool,
    },
    /// Stop a crawl: no new leases.
    Stop {
        /// The crawl.
        id: String,
    },
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let base = args
        .node
        .clone()
        .unwrap_or_else(|| format!("http://{DEFAULT_HTTP}"));
    // Reads need no token; changes do, and say where it was looked for when it is missing.
    let changes = matches!(args.command, Command::Start { .. } | Command::Stop { .. });
    let token = if changes { Some(token(&args)?) } else { None };
    let api = CrawlClient::new(&base, token)?;
    match &args.command {
        Command::Start { spec, wait } => {
            let text = read_bounded(spec, MAX_SPEC_BYTES, "crawl spec")?;
            // Checked here too: a mistake is named before anything is sent.
            let spec = CrawlSpec::from_toml(&text)
                .with_context(|| format!("reading {}", spec.display()))?;
            let id = api.start(&spec).await?;
            if !*wait {
                println!("{id}");
                return Ok(());
            }
            eprintln!("crawl {id} started");
            let status = watch(&api, &id).await?;
            print_status(&status);
            match &status.state {
                CrawlState::Published { manifest, .. } => println!("{manifest}"),
                state => bail!("crawl {id} ended unpublished: {state}"),
            }
        }
        Command::Status { id: Some(id), json } => {
            let status = api.status(id).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print_status(&status);
            }
        }
        Command::Status { id: None, json } => {
            let all = api.list().await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                all.iter().for_each(print_status);
            }
        }
        Command::Stop { id } => {
            api.stop(id).await?;
            println!("stopped {id}");
        }
    }
    Ok(())
}

/// How many failed attempts to publish `--wait` sits through: the coordinator goes on
/// trying after that, but a person waiting should hear why.
const WAIT_ATTEMPTS: u32 = 3;

/// Polls until the crawl is published, stopped, or cannot be published, with a progress
/// line on a terminal.
async fn watch(api: &CrawlClient, id: &str) -> anyhow::Result<CrawlStatus> {
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(ProgressStyle::with_template(
            "{spinner} {elapsed_precise} {msg}",
        )?);
        bar.enable_steady_tick(Duration::from_millis(200));
        Some(bar)
    } else {
        None
    };
    loop {
        let status = api.status(id).await?;
        let p = &status.progress;
        if let Some(bar) = &bar {
            let busiest = p
                .backlog
                .first()
                .map(|(host, queued)| format!(", busiest host {host} ({queued} queued)"))
                .unwrap_or_default();
            bar.set_message(format!(
                "{} stored, {} skipped, {} failed, {} dropped, {} queued, {} leased, {} rows in shards{busiest}; {}",
                p.stored, p.skipped, p.failed, p.dropped, p.queued, p.leased, status.rows, status.state,
            ));
        }
        let done = match &status.state {
            CrawlState::Published { .. } | CrawlState::Stopped | CrawlState::Unpublishable(_) => {
                true
            }
            CrawlState::Unpublished { attempts, .. } => *attempts >= WAIT_ATTEMPTS,
            CrawlState::Running => false,
        };
        if done {
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            return Ok(status);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn print_status(s: &CrawlStatus) {
    let p = &s.progress;
    println!(
        "{}  {}  {}  stored {}  skipped {}  failed {}  dropped {}  queued {}  leased {}  shards {}  rows {}",
        s.id,
        s.name,
        s.state,
        p.stored,
        p.skipped,
        p.failed,
        p.dropped,
        p.queued,
        p.leased,
        s.shards,
        s.rows,
    );
    for (why, pages) in &p.dropped_by {
        println!("  dropped {why}  {pages}");
    }
    for (host, queued) in &p.backlog {
        println!("  backlog {host}  {queued}");
    }
    if s.rows_pending > 0 {
        println!("  pages not in a recorded shard yet {}", s.rows_pending);
    }
    for (url, why) in &p.skipped_pages {
        println!("  {why}  {url}");
    }
    if p.checks_pending > 0 {
        println!("  checks pending {}", p.checks_pending);
    }
    // Each node's pages as fetched again by others, and its own checks of others' pages.
    for (node, v) in &p.validation {
        println!(
            "  node {node}  pages agreed {} disagreed {} inconclusive {}  its checks agreed {} disagreed {}",
            v.agreed, v.disagreed, v.inconclusive, v.checks_agreed, v.checks_disagreed,
        );
    }
}
