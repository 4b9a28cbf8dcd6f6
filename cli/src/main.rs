//! `tessera`: the one command-line entry point to Tessera.
//!
//! The binary is thin: argument parsing lives here, the work in the library crates.

#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod allocator;
mod commands;
mod report;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tessera: decentralized, verifiable storage for AI datasets.
#[derive(Debug, Parser)]
#[command(name = "tessera", version, about, rename_all = "kebab-case")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
#[command(rename_all = "kebab-case")]
enum Command {
    /// Print the content address (CID) of files.
    Cid(commands::cid::Args),
    /// Tessera's whole job on this machine: crawl a small site with two scraper nodes into a
    /// dataset on local storage nodes, fetch it with a node down, stream it, audit and repair.
    Demo(commands::demo::Args),
    /// Run a storage node: keep pieces, serve them, answer storage challenges.
    StorageNode(commands::storage_node::Args),
    /// Store a file in the network: erasure-coded, pieces on distinct nodes; prints its CID.
    Put(commands::put::Args),
    /// Fetch a file stored with `put` by its CID, verified.
    Get(commands::get::Args),
    /// How this machine reaches the network's storage nodes: directly, through a relay only,
    /// or not at all.
    Peers(commands::peers::Args),
    /// Publish a directory of Parquet files as the next version of a dataset.
    Publish(commands::publish::Args),
    /// Fetch a dataset version by manifest CID or NAME@VERSION into a directory.
    Fetch(commands::fetch::Args),
    /// List datasets, show a dataset's versions, resolve a name to a manifest CID.
    Datasets(commands::datasets::Args),
    /// Stream one worker's shuffled part of an epoch of a dataset as Arrow IPC on stdout.
    Stream(commands::stream::Args),
    /// Check what a robots.txt file allows a crawler to fetch, and which line decided.
    Robots(commands::robots::Args),
    /// Run a scraper node: crawl web pages politely into signed Parquet rows.
    ScraperNode(commands::scraper_node::Args),
    /// Start, watch and stop crawls on a scraper node.
    Crawl(commands::crawl::Args),
    /// What a storage node's auditor checked, found failed and repaired.
    Audit(commands::audit::Args),
    /// The storage each node proved and the pages it scraped in a period, from signed
    /// receipts (each one verified) and scraped datasets.
    Rewards(commands::rewards::Args),
    /// Found a network: write its charter, sign it as a validator, show it.
    Charter(commands::charter::Args),
    /// Show the publisher id, or rotate the key that signs its datasets' versions.
    PublisherKey(commands::publisher_key::Args),
    /// Simulate a network of home nodes and its repair policy, deterministically: losses,
    /// repair traffic and audit traffic over simulated months.
    Simulate(commands::simulate::Args),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // RUST_LOG overrides; by default only warnings, without the DHT's complaint that the first
    // node of a network has no peers to bootstrap from, or gossipsub's about a record that
    // several registry nodes announce. A node also says what it does (pieces stored, audits,
    // repairs, gateway requests), so its operator can see it working.
    let node = matches!(
        cli.command,
        Command::StorageNode(_) | Command::ScraperNode(_)
    );
    let default_filter = format!(
        "warn,{}libp2p_kad::behaviour=error,libp2p_gossipsub::behaviour=error",
        if node { "tessera=info," } else { "" }
    );
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&default_filter)),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    if matches!(cli.command, Command::ScraperNode(_)) {
        allocator::release_freed_memory_sooner();
    }
    let result = match cli.command {
        Command::Cid(args) => commands::cid::run(args),
        Command::Demo(args) => commands::demo::run(args).await,
        Command::StorageNode(args) => commands::storage_node::run(args).await,
        Command::Put(args) => commands::put::run(args).await,
        Command::Get(args) => commands::get::run(args).await,
        Command::Peers(args) => commands::peers::run(args).await,
        Command::Publish(args) => commands::publish::run(args).await,
        Command::Fetch(args) => commands::fetch::run(args).await,
        Command::Stream(args) => commands::stream::run(args).await,
        Command::Datasets(args) => commands::datasets::run(args).await,
        Command::Robots(args) => commands::robots::run(args),
        Command::ScraperNode(args) => commands::scraper_node::run(args).await,
        Command::Crawl(args) => commands::crawl::run(args).await,
        Command::Audit(args) => commands::audit::run(args).await,
        Command::Rewards(args) => commands::rewards::run(args).await,
        Command::PublisherKey(args) => commands::publisher_key::run(args).await,
        Command::Charter(args) => commands::charter::run(args).await,
        Command::Simulate(args) => commands::simulate::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", report::message(&e));
            ExitCode::FAILURE
        }
    }
}
