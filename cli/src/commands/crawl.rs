//! `tessera crawl start|status|stop`: crawls on a scraper node's coordinator, through its
//! HTTP API. Changes carry the node's API token, read from its data directory.

use std::{io::IsTerminal as _, path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use tessera_scraper_node::{http_guard::TOKEN_FILE, spec::CrawlSpec};

use super::{config::read_bounded, daemon, scraper_node::DEFAULT_HTTP};

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
        None => daemon::data_dir(args.data_dir.clone(), None, "scraper-node")?.join(TOKEN_FILE),
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
    let api = format!("{}/v1/crawls", base.trim_end_matches('/'));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    match &args.command {
        Command::Start { spec, wait } => {
            let text = read_bounded(spec, MAX_SPEC_BYTES, "crawl spec")?;
            // Checked here too: a mistake is named before anything is sent.
            let spec = CrawlSpec::from_toml(&text)
                .with_context(|| format!("reading {}", spec.display()))?;
            let started = call(http.post(&api).bearer_auth(token(&args)?).json(&spec)).await?;
            let id = started["id"]
                .as_str()
                .context("no id in the answer")?
                .to_string();
            if !*wait {
                println!("{id}");
                return Ok(());
            }
            eprintln!("crawl {id} started");
            let status = watch(&http, &format!("{api}/{id}")).await?;
            print_status(&status);
            let state = &status["state"];
            match state.get("published").map(|p| &p["manifest"]) {
                Some(Value::String(manifest)) => println!("{manifest}"),
                _ => bail!("crawl {id} ended unpublished: {}", describe(state)),
            }
        }
        Command::Status { id: Some(id) } => {
            print_status(&call(http.get(format!("{api}/{id}"))).await?)
        }
        Command::Status { id: None } => {
            for status in call(http.get(&api)).await?.as_array().into_iter().flatten() {
                print_status(status);
            }
        }
        Command::Stop { id } => {
            let response = http
                .post(format!("{api}/{id}/stop"))
                .bearer_auth(token(&args)?)
                .json(&serde_json::json!({}))
                .send()
                .await
                .with_context(|| format!("reaching {base}"))?;
            if !response.status().is_success() {
                bail!("{}", reason(response).await);
            }
            println!("stopped {id}");
        }
    }
    Ok(())
}

async fn call(request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
    let response = request.send().await.context("reaching the scraper node")?;
    if !response.status().is_success() {
        bail!("{}", reason(response).await);
    }
    response
        .json()
        .await
        .context("reading the scraper node's answer")
}

async fn reason(response: reqwest::Response) -> String {
    let status = response.status();
    match response.json::<Value>().await {
        Ok(body) => format!(
            "{} ({status})",
            body["error"]["message"]
                .as_str()
                .unwrap_or("no reason given")
        ),
        Err(_) => format!("the scraper node answered {status}"),
    }
}

/// How many failed attempts to publish `--wait` sits through: the coordinator goes on
/// trying after that, but a person waiting should hear why.
const WAIT_ATTEMPTS: u64 = 3;

/// Polls until the crawl is published, stopped, or cannot be published, with a progress
/// line on a terminal.
async fn watch(http: &reqwest::Client, url: &str) -> anyhow::Result<Value> {
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
        let status = call(http.get(url)).await?;
        let (p, state) = (&status["progress"], &status["state"]);
        if let Some(bar) = &bar {
            let busiest = p["backlog"]
                .get(0)
                .map(|h| {
                    format!(
                        ", busiest host {} ({} queued)",
                        h[0].as_str().unwrap_or("?"),
                        h[1]
                    )
                })
                .unwrap_or_default();
            bar.set_message(format!(
                "{} stored, {} skipped, {} failed, {} queued, {} leased, {} rows in shards{busiest}; {}",
                p["stored"],
                p["skipped"],
                p["failed"],
                p["queued"],
                p["leased"],
                status["rows"],
                describe(state),
            ));
        }
        let done = state.get("published").is_some()
            || state == "stopped"
            || state.get("unpublishable").is_some()
            || state["unpublished"]["attempts"]
                .as_u64()
                .is_some_and(|n| n >= WAIT_ATTEMPTS);
        if done {
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            return Ok(status);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A crawl's state in words.
fn describe(state: &Value) -> String {
    if let Some(s) = state.as_str() {
        return s.to_string();
    }
    if let Some(p) = state.get("published") {
        return format!(
            "published as version {}: {}",
            p["version"],
            p["manifest"].as_str().unwrap_or("?")
        );
    }
    if let Some(u) = state.get("unpublished") {
        return format!(
            "not published yet ({} attempts): {}",
            u["attempts"],
            u["reason"].as_str().unwrap_or("?")
        );
    }
    if let Some(reason) = state.get("unpublishable") {
        return format!("cannot be published: {}", reason.as_str().unwrap_or("?"));
    }
    state.to_string()
}

fn print_status(s: &Value) {
    let p = &s["progress"];
    println!(
        "{}  {}  {}  stored {}  skipped {}  failed {}  queued {}  leased {}  shards {}  rows {}",
        s["id"].as_str().unwrap_or("?"),
        s["name"].as_str().unwrap_or("?"),
        describe(&s["state"]),
        p["stored"],
        p["skipped"],
        p["failed"],
        p["queued"],
        p["leased"],
        s["shards"],
        s["rows"],
    );
    for host in p["backlog"].as_array().into_iter().flatten() {
        println!("  backlog {}  {}", host[0].as_str().unwrap_or("?"), host[1]);
    }
    if s["rows_pending"].as_u64().is_some_and(|n| n > 0) {
        println!("  pages not in a recorded shard yet {}", s["rows_pending"]);
    }
    if p["checks_pending"].as_u64().is_some_and(|n| n > 0) {
        println!("  checks pending {}", p["checks_pending"]);
    }
    // Each node's pages as fetched again by others, and its own checks of others' pages.
    for entry in p["validation"].as_array().into_iter().flatten() {
        let v = &entry[1];
        println!(
            "  node {}  pages agreed {} disagreed {} inconclusive {}  its checks agreed {} disagreed {}",
            entry[0].as_str().unwrap_or("?"),
            v["agreed"],
            v["disagreed"],
            v["inconclusive"],
            v["checks_agreed"],
            v["checks_disagreed"],
        );
    }
}
