//! `tessera crawl start|status|stop`: crawls on a scraper node's coordinator, through its
//! HTTP API.

use std::{io::IsTerminal as _, path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use super::{config::read_bounded, scraper_node::DEFAULT_HTTP};

/// Largest spec file read.
const MAX_SPEC_BYTES: u64 = 1024 * 1024;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
    /// The coordinating scraper node's HTTP API [default: http://127.0.0.1:8090].
    #[arg(long, global = true)]
    node: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Start a crawl described by a TOML spec; prints its id.
    Start {
        /// The spec.
        spec: PathBuf,
        /// Wait until the crawl is done, showing its progress.
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
        .unwrap_or_else(|| format!("http://{DEFAULT_HTTP}"));
    let api = format!("{}/v1/crawls", base.trim_end_matches('/'));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    match args.command {
        Command::Start { spec, wait } => {
            let text = read_bounded(&spec, MAX_SPEC_BYTES, "crawl spec")?;
            let started = call(http.post(&api).body(text)).await?;
            let id = started["id"]
                .as_str()
                .context("no id in the answer")?
                .to_string();
            if !wait {
                println!("{id}");
                return Ok(());
            }
            eprintln!("crawl {id} started");
            let status = watch(&http, &format!("{api}/{id}")).await?;
            print_status(&status);
            println!("{id}");
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
            body["message"].as_str().unwrap_or("no reason given")
        ),
        Err(_) => format!("the scraper node answered {status}"),
    }
}

/// Polls until every URL is done and every stored page is in a reported shard, with a
/// progress line on a terminal.
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
        let p = &status["progress"];
        if let Some(bar) = &bar {
            bar.set_message(format!(
                "{} stored, {} skipped, {} failed, {} queued, {} leased, {} rows in shards",
                p["stored"], p["skipped"], p["failed"], p["queued"], p["leased"], status["rows"]
            ));
        }
        let done = status["finished"] == true && status["rows"] == p["stored"];
        if done || status["state"] == "stopped" {
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            return Ok(status);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn print_status(s: &Value) {
    let p = &s["progress"];
    println!(
        "{}  {}  {}  stored {}  skipped {}  failed {}  queued {}  leased {}  shards {}  rows {}",
        s["id"].as_str().unwrap_or("?"),
        s["name"].as_str().unwrap_or("?"),
        match &s["state"] {
            Value::String(state) => state.clone(),
            other => other.to_string(),
        },
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
