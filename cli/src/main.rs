//! `tessera`: the one command-line entry point to Tessera.
//!
//! The binary is thin: argument parsing lives here, the work in the library crates.

#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;

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
    /// Walk through what Tessera does, on this machine, in a temporary directory.
    Demo(commands::demo::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Cid(args) => commands::cid::run(args),
        Command::Demo(args) => commands::demo::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
