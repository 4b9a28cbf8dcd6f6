//! `tessera demo`: Tessera's whole job, end to end on this machine, in a temporary directory.
//! The steps and their checks are `tessera_demo`'s; this prints them as they end, with a
//! spinner while the crawl runs.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tessera_demo::{DemoOptions, MIN_NODES, NAME, STEPS, Viewer};

use super::daemon;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Storage nodes to start (at least 5).
    #[arg(long, default_value_t = 6)]
    nodes: usize,
    /// Leave the network running for exploring (until Ctrl-C), and keep its directory.
    #[arg(long)]
    keep: bool,
}

/// Prints each step to stdout; a spinner on stderr while a step reports progress (hidden when
/// stderr is not a terminal).
#[derive(Default)]
struct Terminal {
    spinner: Option<ProgressBar>,
}

impl Terminal {
    fn clear(&mut self) {
        if let Some(bar) = self.spinner.take() {
            bar.finish_and_clear();
        }
    }
}

impl Viewer for Terminal {
    fn step(&mut self, n: usize, text: &str) {
        self.clear();
        println!("\n[{n}/{STEPS}] {text}");
    }

    fn detail(&mut self, text: &str) {
        println!("  {text}");
    }

    fn progress(&mut self, text: &str) {
        let bar = self.spinner.get_or_insert_with(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed}] {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        bar.set_message(text.to_string());
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    ensure!(
        args.nodes >= MIN_NODES,
        "the demo needs at least {MIN_NODES} storage nodes"
    );
    let dir = tempfile::Builder::new()
        .prefix("tessera-demo-")
        .tempdir()
        .context("creating a working directory")?;
    let work = dir.path().to_path_buf();
    println!("Tessera demo, working in {}", work.display());
    let mut terminal = Terminal::default();
    let outcome = tessera_demo::run(
        &DemoOptions {
            nodes: args.nodes,
            work: work.clone(),
        },
        &mut terminal,
    )
    .await;
    terminal.clear();
    let running = outcome?;

    println!(
        "\nDone. The dataset {NAME} ({}) lives as erasure-coded pieces under \
         {}/storage/node-*/pieces, its shards' rows fetched into {}.",
        running.dataset,
        work.display(),
        running.fetched_into.display()
    );
    let next = running.next_commands();
    if args.keep {
        println!(
            "\nThe network keeps running; try, in another terminal:\n{next}\nCtrl-C stops it."
        );
        daemon::until_stopped().await?;
    } else {
        println!(
            "\nNext: `tessera demo --keep` leaves this network running to explore with\n{next}\n\
             or run your own: docs/OPERATORS.md, docs/USING-DATASETS.md."
        );
    }
    running.shutdown().await;
    if args.keep {
        let kept = dir.keep();
        println!("Kept the working directory: {}", kept.display());
    }
    Ok(())
}
