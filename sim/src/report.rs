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

use crate::{
    chain::{Bound, Levels},
    config::SimConfig,
};

const DAY_MS: f64 = 24.0 * 3_600_000.0;
const YEAR_MS: f64 = 365.0 * DAY_MS;

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
    /// A shard is repaired below this many intact pieces.
    pub repair_below: usize,
    /// Piece bytes stored at the start.
    pub stored_bytes: u64,
    /// Shards that fell below k pieces held anywhere: lost for good.
    pub shards_lost: u64,
    /// When the first was lost, days from the start.
    pub first_loss_days: Option<f64>,
    /// Shard-days spent at exactly k pieces (one more loss away from losing the shard).
    pub shard_days_at_k: f64,
    /// Shard-days at each count of pieces held, from 0 to k + m.
    pub shard_days_by_pieces: Vec<f64>,
    /// Pieces whose bytes left the network (a holder left, lost its disk, or was given up).
    pub pieces_lost: u64,
    /// Pieces lost per piece held per year.
    pub piece_loss_per_year: f64,
    /// Shards lost per shard-year by the loss model fitted to this run (`chain`): what a run
    /// too short to see a loss can still say. None when too few repairs ran to fit it.
    pub model_loss_per_shard_year: Option<f64>,
    /// Its 95% upper bound.
    pub model_loss_per_shard_year_upper: Option<f64>,
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
    /// Audit bytes per byte stored, per 30 days.
    pub audit_per_stored_month: f64,
    /// The most bytes any one node moved for audits and repairs, per 30 days.
    pub busiest_node_month_bytes: u64,
    /// Events simulated.
    pub events: u64,
    /// Simulated node-years.
    pub node_years: f64,
    /// What the loss model was fitted to.
    #[serde(skip)]
    pub levels: Levels,
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
            repair_below: tessera_proofs::health::repair_below(
                usize::from(config.data.k),
                usize::from(config.data.m),
                config.policy.spare,
            ),
            stored_bytes: 0,
            shards_lost: 0,
            first_loss_days: None,
            shard_days_at_k: 0.0,
            shard_days_by_pieces: Vec::new(),
            pieces_lost: 0,
            piece_loss_per_year: 0.0,
            model_loss_per_shard_year: None,
            model_loss_per_shard_year_upper: None,
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
            audit_per_stored_month: 0.0,
            busiest_node_month_bytes: 0,
            events: 0,
            node_years: 0.0,
            levels: Levels::default(),
        }
    }

    pub(crate) fn finish(
        &mut self,
        config: &SimConfig,
        end_ms: u64,
        moved: impl Iterator<Item = u64>,
        levels: Levels,
    ) {
        let months = (end_ms as f64 / (30.0 * DAY_MS)).max(f64::MIN_POSITIVE);
        let k = usize::from(config.data.k);
        self.shard_days_by_pieces = levels
            .ms
            .iter()
            .map(|&ms| round(ms as f64 / DAY_MS))
            .collect();
        self.shard_days_at_k = self.shard_days_by_pieces.get(k).copied().unwrap_or(0.0);
        self.pieces_lost = levels.pieces_lost;
        self.piece_loss_per_year = significant(levels.piece_loss_per_year());
        self.model_loss_per_shard_year = levels
            .loss_per_year(k, self.repair_below, Bound::Estimate)
            .map(significant);
        self.model_loss_per_shard_year_upper = levels
            .loss_per_year(k, self.repair_below, Bound::Upper)
            .map(significant);
        self.levels = levels;
        self.repair_per_stored_month =
            round(self.repair_bytes as f64 / self.stored_bytes.max(1) as f64 / months);
        self.audit_per_stored_month =
            round(self.audit_bytes as f64 / self.stored_bytes.max(1) as f64 / months);
        let rebuilt = self.pieces_repaired as f64 * self.piece_bytes();
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

impl Report {
    /// Bytes per piece.
    fn piece_bytes(&self) -> f64 {
        let pieces = self.shards.max(1) * (usize::from(self.k) + usize::from(self.m));
        self.stored_bytes as f64 / pieces as f64
    }
}

/// Six decimals: reports read the same on every machine.
fn round(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Six significant digits, for rates that may be 1e-20.
fn significant(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    format!("{x:.5e}").parse().unwrap_or(x)
}

/// Runs over several seeds, added up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Runs.
    pub runs: usize,
    /// Shard-years simulated over all runs, counting each shard until it was lost.
    pub shard_years: f64,
    /// Shards lost over all runs.
    pub shards_lost: u64,
    /// Shards lost per shard-year.
    pub loss_per_shard_year: f64,
    /// The 95% upper bound of that rate (Poisson).
    pub loss_per_shard_year_upper: f64,
    /// Repair bytes per byte stored per month, the mean over runs.
    pub repair_per_stored_month: f64,
    /// Audit bytes per byte stored per month, the mean over runs.
    pub audit_per_stored_month: f64,
    /// The most any node moved for audits and repairs in a month, over all runs.
    pub busiest_node_month_bytes: u64,
    /// Shard-days at exactly k, the mean over runs.
    pub shard_days_at_k: f64,
    /// Repair bytes per piece byte lost, over all runs.
    pub repair_per_lost_byte: f64,
    /// Pieces lost per piece held per year, over all runs.
    pub piece_loss_per_year: f64,
    /// Shards lost per shard-year by the loss model fitted to all runs together (none when
    /// too few repairs ran to fit it).
    pub model_loss_per_shard_year: Option<f64>,
    /// Its 95% upper bound.
    pub model_loss_per_shard_year_upper: Option<f64>,
}

impl Summary {
    /// Adds up `reports`.
    pub fn of(reports: &[Report]) -> Self {
        let runs = reports.len();
        let mut levels = reports
            .first()
            .map(|r| Levels::new(r.levels.width))
            .unwrap_or_default();
        for r in reports {
            levels.add(&r.levels);
        }
        let (k, below) = reports
            .first()
            .map_or((0, 0), |r| (usize::from(r.k), r.repair_below));
        let shard_years = levels.ms.iter().skip(k).map(|&ms| ms as f64).sum::<f64>() / YEAR_MS;
        let lost: u64 = reports.iter().map(|r| r.shards_lost).sum();
        let mean =
            |f: fn(&Report) -> f64| round(reports.iter().map(f).sum::<f64>() / runs.max(1) as f64);
        let years = shard_years.max(f64::MIN_POSITIVE);
        let repaired: f64 = reports
            .iter()
            .map(|r| r.pieces_repaired as f64 * r.piece_bytes())
            .sum();
        let repair_bytes: f64 = reports.iter().map(|r| r.repair_bytes as f64).sum();
        Self {
            runs,
            shard_years: round(shard_years),
            shards_lost: lost,
            loss_per_shard_year: significant(lost as f64 / years),
            loss_per_shard_year_upper: significant(Bound::Upper.more(lost) / years),
            repair_per_stored_month: mean(|r| r.repair_per_stored_month),
            audit_per_stored_month: mean(|r| r.audit_per_stored_month),
            busiest_node_month_bytes: reports
                .iter()
                .map(|r| r.busiest_node_month_bytes)
                .max()
                .unwrap_or(0),
            shard_days_at_k: mean(|r| r.shard_days_at_k),
            repair_per_lost_byte: if repaired > 0.0 {
                round(repair_bytes / repaired)
            } else {
                0.0
            },
            piece_loss_per_year: significant(levels.piece_loss_per_year()),
            model_loss_per_shard_year: levels
                .loss_per_year(k, below, Bound::Estimate)
                .map(significant),
            model_loss_per_shard_year_upper: levels
                .loss_per_year(k, below, Bound::Upper)
                .map(significant),
        }
    }
}
