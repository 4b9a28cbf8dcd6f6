//! How fast the simulator runs at scale: 10,000 nodes and 1,000,000 pieces in the
//! default layout for a network that size, at the default churn and policy.
//!
//! `cargo run --release -p tessera-sim --example scale -- [DAYS] [NODES] [PIECES]`
//! (defaults 30, 10000, 1000000). Prints one JSON line.

#![allow(clippy::print_stdout, clippy::cast_precision_loss)]

use std::time::Instant;

use tessera_sim::{SimConfig, simulate};

/// The `i`th argument, or `default` when it is missing or unreadable.
fn arg<T: std::str::FromStr>(args: &[String], i: usize, default: T) -> T {
    args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let days = arg(&args, 1, 30.0);
    let mut config = SimConfig {
        days,
        nodes: arg(&args, 2, 10_000),
        capacity_gib: 2_000.0,
        ..SimConfig::default()
    };
    (config.data.k, config.data.m) = tessera_proofs::durability::layout_for(config.nodes);
    let width = usize::from(config.data.k + config.data.m);
    let pieces = arg(&args, 3, 1_000_000);
    config.data.shards = pieces / width;
    let started = Instant::now();
    let report = simulate(&config, 1);
    let seconds = started.elapsed().as_secs_f64();
    let line = serde_json::json!({
        "nodes": config.nodes,
        "pieces": config.data.shards * width,
        "days": days,
        "seconds": (seconds * 100.0).round() / 100.0,
        "node_years_per_second": (report.node_years / seconds * 100.0).round() / 100.0,
        "events": report.events,
        "audits": report.audits,
        "repairs": report.repairs,
        "model_loss_per_shard_year": report.model_loss_per_shard_year,
    });
    println!("{line}");
}
