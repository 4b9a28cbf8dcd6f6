//! How fast the simulator runs at the scale: 10,000 nodes and 1,000,000 pieces.
//! `cargo run --release -p tessera-sim --example scale -- DAYS` (default 30).

#![allow(clippy::print_stdout, clippy::cast_precision_loss)]

use std::time::Instant;

use tessera_sim::{SimConfig, simulate};

fn main() {
    let days = std::env::args()
        .nth(1)
        .and_then(|d| d.parse().ok())
        .unwrap_or(30.0);
    let mut config = SimConfig {
        days,
        nodes: 10_000,
        capacity_gib: 2_000.0,
        ..SimConfig::default()
    };
    config.data.shards = 166_667;
    let started = Instant::now();
    let report = simulate(&config, 1);
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{} nodes, {} pieces, {days} days: {seconds:.1} s, {:.1} node-years/s, {} events, {} audits, {} shards lost",
        config.nodes,
        config.data.shards * 6,
        report.node_years / seconds,
        report.events,
        report.audits,
        report.shards_lost,
    );
}
