//! `tessera simulate`: the deterministic simulation of a network and its repair policy
//! (`tessera-sim`). Prints one JSON report per seed, then their summary.

use std::{io::Write as _, path::PathBuf, time::Instant};

use anyhow::Context as _;
use tessera_sim::{SimConfig, Summary, simulate};

#[derive(Debug, clap::Args)]
#[command(rename_all = "kebab-case")]
pub(crate) struct Args {
    /// TOML file with the network, churn, data and policy [default: built-in defaults].
    #[arg(long)]
    config: Option<PathBuf>,
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Runs, with seeds `seed`, `seed + 1`, ...
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// Simulated days, over the file's.
    #[arg(long)]
    days: Option<f64>,
    /// Storage nodes at the start, over the file's.
    #[arg(long)]
    nodes: Option<usize>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            SimConfig::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => SimConfig::default(),
    };
    if let Some(days) = args.days {
        config.days = days;
    }
    if let Some(nodes) = args.nodes {
        config.nodes = nodes;
    }
    config.check()?;
    anyhow::ensure!(args.seeds >= 1, "--seeds must be at least 1");
    let started = Instant::now();
    let mut reports = Vec::new();
    let mut out = std::io::stdout().lock();
    for seed in args.seed..args.seed.saturating_add(args.seeds) {
        let report = simulate(&config, seed);
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
        reports.push(report);
    }
    let summary = Summary::of(&reports);
    writeln!(out, "{}", serde_json::to_string(&summary)?)?;
    let node_years: f64 = reports.iter().map(|r| r.node_years).sum();
    let seconds = started.elapsed().as_secs_f64();
    let model = match (
        summary.model_loss_per_shard_year,
        summary.model_loss_per_shard_year_upper,
    ) {
        (Some(estimate), Some(upper)) => format!("{estimate:.2e} (at most {upper:.2e}, 95%)"),
        _ => "not fitted (too few repairs ran)".to_string(),
    };
    eprintln!(
        "{} runs: {} shards lost in {:.0} shard-years (at most {:.2e} per shard-year, 95%); \
         the fitted loss model says {model} per shard-year; repair moved {:.4} of the stored \
         bytes a month, {:.2} bytes per byte rebuilt; {:.0} node-years in {seconds:.1} s",
        summary.runs,
        summary.shards_lost,
        summary.shard_years,
        summary.loss_per_shard_year_upper,
        summary.repair_per_stored_month,
        summary.repair_per_lost_byte,
        node_years,
    );
    Ok(())
}
