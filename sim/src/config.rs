//! What a simulation runs: the network, its churn, the data and the policy, read from TOML.
//! Every number has its default here, with where it comes from.

use serde::{Deserialize, Serialize};
use tessera_proofs::durability;

/// A whole simulation's settings; a key left out of a file takes its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct SimConfig {
    /// Simulated days.
    pub days: f64,
    /// Storage nodes at the start; each one that leaves for good is replaced by a new one
    /// after `churn.replace-after-hours`, so the network keeps its size.
    pub nodes: usize,
    /// Distinct /24 subnets the nodes sit in (0: each node its own).
    pub subnets: usize,
    /// Candidates a put or a repair considers (the DHT's closest peers: 20).
    pub candidates: usize,
    /// Each node's room for pieces, GiB.
    pub capacity_gib: f64,
    /// Each node's upload, Mbit/s (a home fibre or cable line's upstream).
    pub upload_mbit: f64,
    /// Each node's download, Mbit/s.
    pub download_mbit: f64,
    /// How nodes come and go.
    pub churn: Churn,
    /// What is stored.
    pub data: Data,
    /// The audit and repair policy, as nodes run it.
    pub policy: Policy,
}

/// How nodes come and go: exponential times between events, each node on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Churn {
    /// Share of nodes that leave for good in a month: the durability target is set at 10%.
    pub monthly_leave: f64,
    /// Mean time a node stays online before going offline (a reboot, a router restart, a
    /// laptop closed). An assumption for always-on home machines: a week.
    pub mean_online_hours: f64,
    /// Mean time offline before it comes back with its disk. An assumption: four hours.
    pub mean_offline_hours: f64,
    /// Share of nodes whose disk dies in a year (they come back empty). Backblaze's drive
    /// statistics put yearly failure rates at 1 to 2%; 2% here.
    pub yearly_disk_loss: f64,
    /// Time before a node that left is replaced by a new, empty one.
    pub replace_after_hours: f64,
}

/// What is published and pinned at the start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Data {
    /// Shards stored.
    pub shards: usize,
    /// Each shard's size, MiB (a Parquet shard of a few hundred MB, as training sets use).
    pub shard_mib: f64,
    /// Data pieces per shard.
    pub k: u8,
    /// Parity pieces per shard.
    pub m: u8,
}

/// The audit and repair policy: the storage node's defaults (`AuditConfig`, from
/// `tessera_proofs::durability`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Policy {
    /// Every piece is challenged once in this time.
    pub audit_period_hours: f64,
    /// Time between audit rounds.
    pub audit_interval_minutes: f64,
    /// Failures in a row before a holder fails a piece.
    pub failures: u32,
    /// How long a silent holder is waited for, from its first failure.
    pub grace_hours: f64,
    /// Repair below `k + ceil(spare * m)` intact pieces.
    pub spare: f64,
    /// Whether lost pieces are rebuilt at all.
    pub repair: bool,
    /// Bytes of proof a challenge answer carries (the storage node's 0.9 MiB at most).
    pub proof_kib: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            days: 30.0,
            nodes: 300,
            subnets: 0,
            candidates: 20,
            capacity_gib: 500.0,
            upload_mbit: 20.0,
            download_mbit: 100.0,
            churn: Churn::default(),
            data: Data::default(),
            policy: Policy::default(),
        }
    }
}

impl Default for Churn {
    fn default() -> Self {
        Self {
            monthly_leave: 0.10,
            mean_online_hours: 7.0 * 24.0,
            mean_offline_hours: 4.0,
            yearly_disk_loss: 0.02,
            replace_after_hours: 24.0,
        }
    }
}

impl Default for Data {
    fn default() -> Self {
        Self {
            shards: 1_000,
            shard_mib: 256.0,
            k: 4,
            m: 2,
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            audit_period_hours: durability::AUDIT_PERIOD.as_secs_f64() / 3600.0,
            audit_interval_minutes: 30.0,
            failures: durability::AUDIT_FAILURES,
            grace_hours: durability::AUDIT_GRACE.as_secs_f64() / 3600.0,
            spare: durability::REPAIR_SPARE,
            repair: true,
            proof_kib: 900.0,
        }
    }
}

/// A setting the simulation cannot run with.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{key}: {reason}")]
pub struct BadSetting {
    /// The key.
    pub key: &'static str,
    /// Why.
    pub reason: String,
}

impl SimConfig {
    /// Reads a TOML file's text.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Refuses settings that would make no sense or no end, naming the first.
    pub fn check(&self) -> Result<(), BadSetting> {
        let bad = |key, reason: &str| {
            Err(BadSetting {
                key,
                reason: reason.to_string(),
            })
        };
        let positive = [
            ("days", self.days),
            ("capacity-gib", self.capacity_gib),
            ("upload-mbit", self.upload_mbit),
            ("download-mbit", self.download_mbit),
            ("data.shard-mib", self.data.shard_mib),
            ("policy.audit-period-hours", self.policy.audit_period_hours),
            (
                "policy.audit-interval-minutes",
                self.policy.audit_interval_minutes,
            ),
            ("churn.mean-online-hours", self.churn.mean_online_hours),
        ];
        for (key, value) in positive {
            if !(value.is_finite() && value > 0.0) {
                return bad(key, "must be a number above 0");
            }
        }
        let non_negative = [
            ("churn.monthly-leave", self.churn.monthly_leave),
            ("churn.mean-offline-hours", self.churn.mean_offline_hours),
            ("churn.yearly-disk-loss", self.churn.yearly_disk_loss),
            ("churn.replace-after-hours", self.churn.replace_after_hours),
            ("policy.grace-hours", self.policy.grace_hours),
            ("policy.proof-kib", self.policy.proof_kib),
        ];
        for (key, value) in non_negative {
            if !(value.is_finite() && value >= 0.0) {
                return bad(key, "must be a number, 0 or more");
            }
        }
        if self.days > 3650.0 {
            return bad("days", "at most ten years");
        }
        if self.nodes == 0 || self.nodes > 1_000_000 {
            return bad("nodes", "between 1 and 1,000,000");
        }
        if self.data.k == 0 || self.data.m == 0 {
            return bad("data.k", "k and m must both be at least 1");
        }
        let pieces = usize::from(self.data.k) + usize::from(self.data.m);
        if self.data.shards.saturating_mul(pieces) > 100_000_000 {
            return bad("data.shards", "at most 100,000,000 pieces in all");
        }
        if self.candidates < pieces {
            return bad("candidates", "at least k + m");
        }
        if !(0.0..=1.0).contains(&self.policy.spare) {
            return bad("policy.spare", "between 0 and 1");
        }
        Ok(())
    }
}
