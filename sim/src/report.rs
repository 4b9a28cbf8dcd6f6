//! What a run found, and what runs over many seeds add up to.

// Simulation arithmetic on bounded counts and times: pieces are at most 1e8 (checked in
// `SimConfig::check`), times at most ten years in ms; f64 is the model's own precision.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

use serde::{Deserialize, Serialize};

use crate::config::SimConfig;

const DAY_MS: f64 = 24.0 * 3_600_000.0;

/// One run's figures. Serialized with its fields in this order, so that one seed gives one
/// report, byte for byte.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The random stream's seed.
    pub seed: u64,
    /// Simulated days.
    pub days: f64,
    /// Nodes at the start.
    pub nodes: usize,
    /// Shards stored, and their layout.
    pub shards: usize,
    /// Data pieces per shard.
    pub k: u8,
    /// Parity pieces per shard.
    pub m: u8,
    /// Piece bytes stored at the start.
    pub stored_bytes: u64,
    /// Shards that fell below k pieces held anywhere: lost for good.
    pub shards_lost: u64,
    /// When the first was lost, days from the start.
    pub first_loss_days: Option<f64>,
    /// Shard-days spent at exactly k pieces (one more loss away from losing the shard).
    pub shard_days_at_k: f64,
    /// Nodes that left for good, joined to replace them, and lost their disk.
    pub nodes_left: u64,
    /// Nodes that joined.
    pub nodes_joined: u64,
    /// Disks lost.
    pub disks_lost: u64,
    /// Challenges sent.
    pub audits: u64,
    /// Proof bytes audits moved.
    pub audit_bytes: u64,
    /// Holder-piece pairs the auditor failed.
    pub pieces_failed: u64,
    /// Repairs started, and pieces they rebuilt.
    pub repairs: u64,
    /// Pieces rebuilt.
    pub pieces_repaired: u64,
    /// Bytes repairs moved (k pieces fetched and the rebuilt ones sent, per repair).
    pub repair_bytes: u64,
    /// Repair bytes per byte stored, per 30 days.
    pub repair_per_stored_month: f64,
    /// Repair bytes per piece byte lost to churn (what plain Reed-Solomon moves is k).
    pub repair_per_lost_byte: f64,
    /// The most bytes any one node moved for audits and repairs, per 30 days.
    pub busiest_node_month_bytes: u64,
    /// Events simulated.
    pub events: u64,
    /// Simulated node-years.
    pub node_years: f64,
    /// Shard-ms at k, before it is turned into days.
    #[serde(skip)]
    pub(crate) shard_ms_at_k: u64,
}

impl Report {
    pub(crate) fn new(seed: u64, config: &SimConfig) -> Self {
        Self {
            seed,
            days: config.days,
            nodes: config.nodes,
            shards: config.data.shards,
            k: config.data.k,
            m: config.data.m,
            stored_bytes: 0,
            shards_lost: 0,
            first_loss_days: None,
            shard_days_at_k: 0.0,
            nodes_left: 0,
            nodes_joined: 0,
            disks_lost: 0,
            audits: 0,
            audit_bytes: 0,
            pieces_failed: 0,
            repairs: 0,
            pieces_repaired: 0,
            repair_bytes: 0,
            repair_per_stored_month: 0.0,
            repair_per_lost_byte: 0.0,
            busiest_node_month_bytes: 0,
            events: 0,
            node_years: 0.0,
            shard_ms_at_k: 0,
        }
    }

    pub(crate) fn finish(
        &mut self,
        config: &SimConfig,
        end_ms: u64,
        moved: impl Iterator<Item = u64>,
    ) {
        let months = (end_ms as f64 / (30.0 * DAY_MS)).max(f64::MIN_POSITIVE);
        self.shard_days_at_k = round(self.shard_ms_at_k as f64 / DAY_MS);
        self.repair_per_stored_month =
            round(self.repair_bytes as f64 / self.stored_bytes.max(1) as f64 / months);
        let piece_bytes = self.stored_bytes as f64
            / (config.data.shards.max(1)
                * (usize::from(config.data.k) + usize::from(config.data.m))) as f64;
        let rebuilt = self.pieces_repaired as f64 * piece_bytes;
        self.repair_per_lost_byte = if rebuilt > 0.0 {
            round(self.repair_bytes as f64 / rebuilt)
        } else {
            0.0
        };
        self.busiest_node_month_bytes = (moved.max().unwrap_or(0) as f64 / months) as u64;
        self.node_years = round(config.nodes as f64 * end_ms as f64 / (365.0 * DAY_MS));
        self.first_loss_days = self.first_loss_days.map(round);
    }
}

/// Six significant decimals: reports read the same on every machine.
fn round(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Runs over several seeds, added up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Runs.
    pub runs: usize,
    /// Shard-years simulated over all runs.
    pub shard_years: f64,
    /// Shards lost over all runs.
    pub shards_lost: u64,
    /// Shards lost per shard-year.
    pub loss_per_shard_year: f64,
    /// The 95% upper bound of that rate (Poisson; the rule of three with none lost).
    pub loss_per_shard_year_upper: f64,
    /// Repair bytes per byte stored per month, the mean over runs.
    pub repair_per_stored_month: f64,
    /// Shard-days at exactly k, the mean over runs.
    pub shard_days_at_k: f64,
}

impl Summary {
    /// Adds up `reports`.
    pub fn of(reports: &[Report]) -> Self {
        let runs = reports.len();
        let shard_years: f64 = reports
            .iter()
            .map(|r| r.shards as f64 * r.days / 365.0)
            .sum();
        let lost: u64 = reports.iter().map(|r| r.shards_lost).sum();
        let mean =
            |f: fn(&Report) -> f64| round(reports.iter().map(f).sum::<f64>() / runs.max(1) as f64);
        let years = shard_years.max(f64::MIN_POSITIVE);
        // Poisson upper bound: 3 at zero events, else the normal approximation.
        let upper = if lost == 0 {
            3.0
        } else {
            lost as f64 + 1.96 * (lost as f64).sqrt()
        };
        Self {
            runs,
            shard_years: round(shard_years),
            shards_lost: lost,
            loss_per_shard_year: lost as f64 / years,
            loss_per_shard_year_upper: upper / years,
            repair_per_stored_month: mean(|r| r.repair_per_stored_month),
            shard_days_at_k: mean(|r| r.shard_days_at_k),
        }
    }
}
