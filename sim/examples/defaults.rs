//! The durability table behind the defaults (`docs/DURABILITY.md`): how fast a holder that
//! went silent is given up, layouts and repair thresholds against churn, and the layout for
//! each network size. Prints Markdown.
//!
//! `cargo run --release -p tessera-sim --example defaults [-- SEEDS DAYS SHARDS]`
//! (defaults 2, 180, 2000: about ten minutes on two cores).

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::cast_precision_loss,
    clippy::unwrap_used
)]

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Instant,
};

use tessera_proofs::{
    durability::{
        AUDIT_GRACE, DURABLE_FROM, LAYOUTS, REPAIR_SPARE, TARGET_LOSS_PER_YEAR, layout_for,
    },
    health::repair_below,
};
use tessera_sim::{SimConfig, Summary, simulate};

/// The layouts tried: every piece on its own node among the DHT's 20 closest peers.
const TRIED: [(u8, u8); 10] = [
    (2, 2),
    (4, 2),
    (4, 4),
    (6, 3),
    (6, 6),
    (8, 4),
    (8, 8),
    (10, 6),
    (10, 10),
    (12, 8),
];
const SPARES: [f64; 3] = [0.5, 0.75, 1.0];
/// How long a silent holder is waited for, hours.
const GRACES: [f64; 4] = [2.0, 6.0, 12.0, 24.0];
const CHURN: [f64; 2] = [0.02, 0.25];
const SIZES: [usize; 8] = [8, 12, 16, 22, 24, 50, 300, 1000];

/// One policy: the layout, the repair threshold's spare fraction, the grace in hours.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Choice {
    layout: (u8, u8),
    spare: f64,
    grace: f64,
}

impl Choice {
    fn below(&self) -> usize {
        repair_below(
            usize::from(self.layout.0),
            usize::from(self.layout.1),
            self.spare,
        )
    }
}

/// Every layout with each spare that gives it another threshold.
fn thresholds() -> Vec<((u8, u8), f64)> {
    let mut out = Vec::new();
    for &(k, m) in &TRIED {
        let mut seen = Vec::new();
        for &spare in &SPARES {
            let below = repair_below(usize::from(k), usize::from(m), spare);
            if !seen.contains(&below) {
                seen.push(below);
                out.push(((k, m), spare));
            }
        }
    }
    out
}

/// The least repair traffic that meets the target, if any does.
fn cheapest<'a, T>(results: impl Iterator<Item = (&'a Summary, T)>) -> Option<(&'a Summary, T)> {
    results.filter(|(s, _)| meets(s)).min_by(|a, b| {
        a.0.repair_per_stored_month
            .total_cmp(&b.0.repair_per_stored_month)
    })
}

struct Runs {
    seeds: u64,
    base: SimConfig,
}

impl Runs {
    /// Runs every config over the seeds, on every core, and sums each up.
    fn all(&self, configs: &[SimConfig]) -> Vec<Summary> {
        let next = AtomicUsize::new(0);
        let mut out: Vec<Option<Summary>> = vec![None; configs.len()];
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let done: Vec<Vec<(usize, Summary)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut mine = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(config) = configs.get(i) else { break };
                            let reports: Vec<_> =
                                (0..self.seeds).map(|seed| simulate(config, seed)).collect();
                            mine.push((i, Summary::of(&reports)));
                        }
                        mine
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (i, summary) in done.into_iter().flatten() {
            out[i] = Some(summary);
        }
        out.into_iter().map(Option::unwrap).collect()
    }

    fn config(&self, nodes: usize, churn: f64, policy: Choice) -> SimConfig {
        let mut c = self.base.clone();
        c.nodes = nodes;
        c.churn.monthly_leave = churn;
        (c.data.k, c.data.m) = policy.layout;
        c.policy.spare = policy.spare;
        c.policy.grace_hours = policy.grace;
        c
    }
}

/// A loss rate with its upper bound, as the table shows it.
fn loss(s: &Summary) -> String {
    match (
        s.model_loss_per_shard_year,
        s.model_loss_per_shard_year_upper,
    ) {
        (Some(estimate), Some(upper)) => format!("{estimate:.1e} (≤ {upper:.1e})"),
        _ => "too few repairs to fit".to_string(),
    }
}

/// The upper bound, or infinity where the model could not be fitted.
fn upper(s: &Summary) -> f64 {
    s.model_loss_per_shard_year_upper.unwrap_or(f64::INFINITY)
}

fn meets(s: &Summary) -> bool {
    upper(s) <= TARGET_LOSS_PER_YEAR
}

/// The `i`th argument, or `default` when it is missing or unreadable.
fn arg<T: std::str::FromStr>(args: &[String], i: usize, default: T) -> T {
    args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut base = SimConfig {
        days: arg(&args, 2, 180.0),
        nodes: 300,
        ..SimConfig::default()
    };
    base.data.shards = arg(&args, 3, 2000);
    let runs = Runs {
        seeds: arg(&args, 1, 2),
        base,
    };
    let started = Instant::now();
    println!(
        "{} seeds of {} days each, {} shards of {} MiB, 300 nodes unless said; the other \
         settings are the defaults (`sim/src/config.rs`). Loss: shards lost per shard-year by \
         the fitted model, with its 95% upper bound; ✓ where the bound meets the target \
         ({TARGET_LOSS_PER_YEAR:.0e}). Traffic: repair bytes per byte stored per month.\n",
        runs.seeds, runs.base.days, runs.base.data.shards, runs.base.data.shard_mib
    );

    // 1. At 10% churn: layouts and thresholds against the grace.
    let rows = thresholds();
    let choices: Vec<Choice> = rows
        .iter()
        .flat_map(|&(layout, spare)| {
            GRACES.iter().map(move |&grace| Choice {
                layout,
                spare,
                grace,
            })
        })
        .collect();
    let configs: Vec<_> = choices.iter().map(|&c| runs.config(300, 0.10, c)).collect();
    let results = runs.all(&configs);
    println!("### Layouts, repair thresholds and grace at 10% monthly churn\n");
    print!("| k+m | overhead | repair below |");
    for grace in GRACES {
        print!(" loss, grace {grace} h | traffic |");
    }
    println!();
    println!("|---|---|---|{}", "---|---|".repeat(GRACES.len()));
    for (row, chunk) in results.chunks(GRACES.len()).enumerate() {
        let choice = choices[row * GRACES.len()];
        let (k, m) = choice.layout;
        print!(
            "| {k}+{m} | {:.2} | {} |",
            f64::from(k + m) / f64::from(k),
            choice.below()
        );
        for s in chunk {
            let mark = if meets(s) { " ✓" } else { "" };
            print!(" {}{mark} | {:.3} |", loss(s), s.repair_per_stored_month);
        }
        println!();
    }
    println!("\n| grace | pieces lost / piece-year (all layouts) | audit traffic (8+8) |");
    println!("|---|---|---|");
    for (g, grace) in GRACES.iter().enumerate() {
        let lost: Vec<f64> = results
            .iter()
            .skip(g)
            .step_by(GRACES.len())
            .map(|s| s.piece_loss_per_year)
            .collect();
        let audit = choices
            .iter()
            .zip(&results)
            .find(|(c, _)| c.layout == (8, 8) && c.grace == *grace)
            .map_or(0.0, |(_, s)| s.audit_per_stored_month);
        println!(
            "| {grace} h | {:.2} | {audit:.3} |",
            lost.iter().sum::<f64>() / lost.len().max(1) as f64
        );
    }
    let Some((best, chosen)) = cheapest(results.iter().zip(choices.iter().copied())) else {
        println!("\nNothing meets {TARGET_LOSS_PER_YEAR:.0e} at 10% churn.");
        return;
    };
    println!(
        "\nThe least repair traffic that meets {TARGET_LOSS_PER_YEAR:.0e}: {}+{} repaired below \
         {} (spare {}), grace {} h: {} moving {:.3} of the stored bytes a month, {:.2} bytes per \
         byte rebuilt. The defaults: spare {REPAIR_SPARE}, grace {} h.",
        chosen.layout.0,
        chosen.layout.1,
        chosen.below(),
        chosen.spare,
        chosen.grace,
        loss(best),
        best.repair_per_stored_month,
        best.repair_per_lost_byte,
        AUDIT_GRACE.as_secs_f64() / 3600.0,
    );

    // 2. The same policy against churn.
    let configs: Vec<_> = rows
        .iter()
        .flat_map(|&(layout, spare)| {
            let runs = &runs;
            CHURN.iter().map(move |&churn| {
                runs.config(
                    300,
                    churn,
                    Choice {
                        layout,
                        spare,
                        grace: chosen.grace,
                    },
                )
            })
        })
        .collect();
    let churned = runs.all(&configs);
    println!("\n### Against churn (grace {} h)\n", chosen.grace);
    print!("| k+m | repair below |");
    for churn in CHURN {
        print!(" loss, {:.0}% churn | traffic |", churn * 100.0);
    }
    println!();
    println!("|---|---|{}", "---|---|".repeat(CHURN.len()));
    for (row, chunk) in churned.chunks(CHURN.len()).enumerate() {
        let ((k, m), spare) = rows[row];
        print!(
            "| {k}+{m} | {} |",
            repair_below(usize::from(k), usize::from(m), spare)
        );
        for s in chunk {
            let mark = if meets(s) { " ✓" } else { "" };
            print!(" {}{mark} | {:.3} |", loss(s), s.repair_per_stored_month);
        }
        println!();
    }

    // 3. The layout for each network size, at the chosen threshold and grace: the least
    // repair traffic that meets the target, else the least loss.
    let mut cells = Vec::new();
    for &nodes in &SIZES {
        for &layout in &TRIED {
            if usize::from(layout.0 + layout.1) + 2 <= nodes {
                cells.push((nodes, Choice { layout, ..chosen }));
            }
        }
    }
    let configs: Vec<_> = cells
        .iter()
        .map(|&(nodes, choice)| runs.config(nodes, 0.10, choice))
        .collect();
    let results = runs.all(&configs);
    println!(
        "\n### The layout for each network size (10% churn, spare {}, grace {} h)\n",
        chosen.spare, chosen.grace
    );
    println!(
        "| nodes | chosen | repair below | loss / shard-year | traffic | busiest node, GiB a \
         month | `LAYOUTS` says |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut agree =
        (chosen.spare, chosen.grace) == (REPAIR_SPARE, AUDIT_GRACE.as_secs_f64() / 3600.0);
    let mut durable_from = None;
    for &nodes in &SIZES {
        let mine = || {
            cells
                .iter()
                .zip(&results)
                .filter(move |((n, _), _)| *n == nodes)
                .map(|((_, c), s)| (s, *c))
        };
        let Some((s, choice)) =
            cheapest(mine()).or_else(|| mine().min_by(|a, b| upper(a.0).total_cmp(&upper(b.0))))
        else {
            continue;
        };
        let (k, m) = choice.layout;
        if meets(s) {
            durable_from.get_or_insert(nodes);
        }
        let listed = layout_for(nodes);
        let same = listed == (k, m);
        agree &= same;
        println!(
            "| {nodes} | {k}+{m}{} | {} | {} | {:.3} | {:.1} | {}+{}{} |",
            if meets(s) { "" } else { " (misses the target)" },
            choice.below(),
            loss(s),
            s.repair_per_stored_month,
            s.busiest_node_month_bytes as f64 / 1_073_741_824.0,
            listed.0,
            listed.1,
            if same { "" } else { " ✗" },
        );
    }
    agree &= durable_from == Some(DURABLE_FROM);
    println!(
        "\nThe smallest network meeting the target: {} nodes. The defaults \
         (`tessera_proofs::durability`: `REPAIR_SPARE`, `AUDIT_GRACE`, `LAYOUTS` of {} rows, \
         `DURABLE_FROM` {DURABLE_FROM}) {} this run. {:.0} s.",
        durable_from.map_or("no".to_string(), |n| n.to_string()),
        LAYOUTS.len(),
        if agree { "agree with" } else { "differ from" },
        started.elapsed().as_secs_f64()
    );
}
