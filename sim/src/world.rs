//! The simulated network: nodes, pieces, the auditor and repairs, driven by a queue of timed
//! events. The decisions are the nodes' own code: `Schedule` picks each round's pieces,
//! `Standings` strikes and waits out silent holders, `verdict_spread` and `repair_below`
//! decide repairs, `Placement` and `independent` choose holders.
//!
//! ```text
//! event queue (time, seq) ─▶ node down / up / leaves / loses its disk / joins
//!                          ─▶ audit round: challenge the round's pieces ─▶ strikes
//!                               ─▶ a holder failed ─▶ verdict ─▶ repair (takes the time
//!                                  its bytes need) ─▶ repair done: new holders
//! ground truth: a shard is lost once fewer than k of its pieces are held anywhere
//! ```

// Simulation arithmetic on bounded counts and times: pieces are at most 1e8 (checked in
// `SimConfig::check`), times at most ten years in ms; f64 is the model's own precision.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

use std::{
    cmp::Reverse,
    collections::{BTreeSet, BinaryHeap},
    hash::BuildHasherDefault,
};

use cid::Cid;
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHasher;
use tessera_formats::{AuditResult, address::raw_cid};
use tessera_proofs::{
    health::{Rules, Standings, Verdict, verdict_spread},
    placement::{Placement, Subnet, independent},
    schedule::Schedule,
};

use crate::{chain::Levels, config::SimConfig, report::Report};

/// FxHash: the keys are the simulation's own small integers.
type Fx = BuildHasherDefault<FxHasher>;
type HashSet<T> = std::collections::HashSet<T, Fx>;

const HOUR_MS: f64 = 3_600_000.0;
const MONTH_MS: f64 = 30.0 * 24.0 * HOUR_MS;
const YEAR_MS: f64 = 365.0 * 24.0 * HOUR_MS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Down(u32),
    Up(u32),
    Leave(u32),
    DiskLoss(u32),
    Join,
    AuditRound,
    RepairDone(u32),
}

#[derive(Debug)]
struct Node {
    online: bool,
    gone: bool,
    subnet: Subnet,
    /// Pieces whose bytes it holds.
    holds: HashSet<u32>,
    used: u64,
    /// Bytes it sent and received for repairs and audits.
    moved: u64,
}

#[derive(Debug)]
struct Shard {
    /// The holder of each piece, as the network knows it.
    holders: Vec<Option<u32>>,
    /// Pieces whose bytes are held by a node still in the network.
    alive: usize,
    lost: bool,
    /// Whether its verdict may have changed: a challenge failed, or a piece has no holder,
    /// since it was last found healthy. A shard whose pieces all pass needs no verdict.
    watch: bool,
    /// When it came to hold `alive` pieces.
    since: u64,
    repairing: Option<Vec<(usize, u32)>>,
}

/// One run of the simulation.
#[derive(Debug)]
pub struct World {
    config: SimConfig,
    rng: ChaCha8Rng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64, Event)>>,
    nodes: Vec<Node>,
    shards: Vec<Shard>,
    /// Every piece's CID, for the schedule's order.
    cids: Vec<Cid>,
    order: Vec<usize>,
    round: u64,
    /// Shards checked every round, as the auditor does while a holder is suspect or a repair
    /// could not start.
    follow: BTreeSet<u32>,
    schedule: Schedule,
    standings: Standings<(u32, u32), Fx>,
    piece_bytes: u64,
    width: usize,
    /// Time at each count of pieces held, piece losses and repairs, for the loss model.
    levels: Levels,
    /// Pieces held, over shards not lost, and since when.
    held: (u64, u64),
    report: Report,
}

impl World {
    /// A network of `config.nodes` nodes holding `config.data.shards` shards, placed as a put
    /// places them, with the random stream of `seed`.
    pub fn new(config: SimConfig, seed: u64) -> Self {
        let width = usize::from(config.data.k) + usize::from(config.data.m);
        let shard_bytes = (config.data.shard_mib * 1_048_576.0) as u64;
        let piece_bytes = shard_bytes.div_ceil(u64::from(config.data.k));
        let schedule = Schedule {
            interval: std::time::Duration::from_secs_f64(
                config.policy.audit_interval_minutes * 60.0,
            ),
            period: std::time::Duration::from_secs_f64(config.policy.audit_period_hours * 3600.0),
        };
        let standings = Standings::with_hasher(Rules {
            threshold: config.policy.failures,
            grace_ms: (config.policy.grace_hours * HOUR_MS) as u64,
        });
        let pieces = config.data.shards * width;
        let cids = (0..pieces as u64)
            .map(|p| raw_cid(&p.to_le_bytes()))
            .collect();
        let mut world = Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes: Vec::new(),
            shards: Vec::new(),
            cids,
            order: Vec::new(),
            round: 0,
            follow: BTreeSet::new(),
            schedule,
            standings,
            piece_bytes,
            width,
            levels: Levels::new(width),
            held: (0, 0),
            report: Report::new(seed, &config),
            config,
        };
        for _ in 0..world.config.nodes {
            world.join();
        }
        for _ in 0..world.config.data.shards {
            world.store_shard();
        }
        world.report.stored_bytes = pieces as u64 * piece_bytes;
        world.at(0, Event::AuditRound);
        world
    }

    /// Runs to the end and reports.
    pub fn run(mut self) -> Report {
        let end = (self.config.days * 24.0 * HOUR_MS) as u64;
        while let Some(Reverse((time, _, event))) = self.queue.pop() {
            if time > end {
                break;
            }
            self.now = time;
            self.report.events += 1;
            self.handle(event);
        }
        self.now = end;
        for s in 0..self.shards.len() {
            self.settle(s);
        }
        self.report.finish(
            &self.config,
            end,
            self.nodes.iter().map(|n| n.moved),
            self.levels,
        );
        self.report
    }

    fn at(&mut self, time: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse((time, self.seq, event)));
    }

    /// An exponential wait with mean `mean_ms` from now; none for a zero rate.
    fn after(&mut self, mean_ms: f64, event: Event) {
        if !(mean_ms.is_finite() && mean_ms > 0.0) {
            return;
        }
        let u: f64 = self.rng.random_range(f64::EPSILON..1.0);
        let wait = (-u.ln() * mean_ms).min(1e15) as u64;
        self.at(self.now.saturating_add(wait.max(1)), event);
    }

    fn join(&mut self) {
        let id = self.nodes.len() as u32;
        let subnet = match self.config.subnets {
            0 => id,
            n => self.rng.random_range(0..n as u32),
        };
        self.nodes.push(Node {
            online: true,
            gone: false,
            subnet: Subnet::V4(subnet.to_be_bytes()[1..].try_into().unwrap_or([0; 3])),
            holds: HashSet::default(),
            used: 0,
            moved: 0,
        });
        let churn = self.config.churn.clone();
        self.after(churn.mean_online_hours * HOUR_MS, Event::Down(id));
        if churn.monthly_leave > 0.0 {
            self.after(MONTH_MS / churn.monthly_leave, Event::Leave(id));
        }
        if churn.yearly_disk_loss > 0.0 {
            self.after(YEAR_MS / churn.yearly_disk_loss, Event::DiskLoss(id));
        }
    }

    /// Up to `candidates` online nodes with room, not in `exclude`, drawn at random: the
    /// DHT's closest peers to a fresh CID are a random sample of the network.
    fn candidates(&mut self, exclude: &HashSet<u32>) -> Vec<(u32, Option<Subnet>)> {
        let capacity = (self.config.capacity_gib * 1_073_741_824.0) as u64;
        let (want, total) = (self.config.candidates, self.nodes.len());
        let mut picked = Vec::with_capacity(want);
        let mut seen = HashSet::default();
        for _ in 0..want.saturating_mul(4) {
            if picked.len() == want {
                break;
            }
            let id = self.rng.random_range(0..total) as u32;
            let node = &self.nodes[id as usize];
            if node.online
                && !node.gone
                && node.used + self.piece_bytes <= capacity
                && !exclude.contains(&id)
                && seen.insert(id)
            {
                picked.push((id, Some(node.subnet)));
            }
        }
        picked
    }

    fn store_shard(&mut self) {
        let candidates = self.candidates(&HashSet::default());
        let mut placement = Placement::with_subnets(candidates);
        let mut holders = Vec::with_capacity(self.width);
        let shard = self.shards.len();
        for index in 0..self.width {
            let holder = placement.assign();
            if let Some(node) = holder {
                self.give(node, self.piece_id(shard, index));
            }
            holders.push(holder);
        }
        let alive = holders.iter().flatten().count();
        self.settle_held();
        self.held.0 += alive as u64;
        self.shards.push(Shard {
            holders,
            alive,
            lost: false,
            // Its first audit gives it a verdict (its placement may crowd a subnet).
            watch: true,
            since: self.now,
            repairing: None,
        });
    }

    fn piece_id(&self, shard: usize, index: usize) -> u32 {
        (shard * self.width + index) as u32
    }

    fn give(&mut self, node: u32, piece: u32) {
        let n = &mut self.nodes[node as usize];
        if n.holds.insert(piece) {
            n.used += self.piece_bytes;
        }
    }

    /// Adds the piece-time held up to now.
    fn settle_held(&mut self) {
        let (pieces, since) = self.held;
        self.levels.piece_ms += u128::from(pieces) * u128::from(self.now - since);
        self.held.1 = self.now;
    }

    /// Adds the time shard `s` spent at its count of pieces, up to now: call before the
    /// count changes.
    fn settle(&mut self, s: usize) {
        self.settle_held();
        let shard = &mut self.shards[s];
        if !shard.lost {
            self.levels.ms[shard.alive] += self.now - shard.since;
        }
        shard.since = self.now;
    }

    /// A piece's bytes are gone from the network (its holder left or lost its disk, or the
    /// network gave the copy up).
    fn piece_gone(&mut self, piece: u32) {
        let s = piece as usize / self.width;
        let k = usize::from(self.config.data.k);
        if self.shards[s].lost {
            let shard = &mut self.shards[s];
            shard.alive = shard.alive.saturating_sub(1);
            return;
        }
        self.settle(s);
        self.levels.pieces_lost += 1;
        self.levels.lost_from[self.shards[s].alive] += 1;
        let shard = &mut self.shards[s];
        shard.alive = shard.alive.saturating_sub(1);
        self.held.0 = self.held.0.saturating_sub(1);
        if shard.alive < k {
            shard.lost = true;
            // Its other pieces no longer count: the shard is gone.
            self.held.0 = self.held.0.saturating_sub(shard.alive as u64);
            self.report.shards_lost += 1;
            self.report
                .first_loss_days
                .get_or_insert(self.now as f64 / (24.0 * HOUR_MS));
        }
    }

    fn handle(&mut self, event: Event) {
        let churn = self.config.churn.clone();
        match event {
            Event::Down(id) => {
                let node = &mut self.nodes[id as usize];
                if node.gone {
                    return;
                }
                node.online = false;
                self.after(churn.mean_offline_hours * HOUR_MS, Event::Up(id));
            }
            Event::Up(id) => {
                let node = &mut self.nodes[id as usize];
                if node.gone {
                    return;
                }
                node.online = true;
                self.after(churn.mean_online_hours * HOUR_MS, Event::Down(id));
            }
            Event::Leave(id) => {
                let node = &mut self.nodes[id as usize];
                if node.gone {
                    return;
                }
                node.gone = true;
                node.online = false;
                let held: Vec<u32> = node.holds.drain().collect();
                self.report.nodes_left += 1;
                for piece in held {
                    self.piece_gone(piece);
                }
                let wait = (churn.replace_after_hours * HOUR_MS) as u64;
                self.at(self.now + wait, Event::Join);
            }
            Event::DiskLoss(id) => {
                let node = &mut self.nodes[id as usize];
                if node.gone {
                    return;
                }
                let held: Vec<u32> = node.holds.drain().collect();
                node.used = 0;
                self.report.disks_lost += 1;
                for piece in held {
                    self.piece_gone(piece);
                }
                self.after(YEAR_MS / churn.yearly_disk_loss, Event::DiskLoss(id));
            }
            Event::Join => {
                self.join();
                self.report.nodes_joined += 1;
            }
            Event::AuditRound => self.audit_round(),
            Event::RepairDone(s) => self.repair_done(s as usize),
        }
    }

    fn audit_round(&mut self) {
        let rounds = self.schedule.rounds_per_period();
        if self.round.is_multiple_of(rounds) {
            let mut seed = [0u8; 32];
            self.rng.fill(&mut seed);
            self.order = Schedule::order(&self.cids, &seed);
        }
        let slice = self.schedule.slice(self.cids.len(), self.round % rounds);
        let mut pieces: Vec<u32> = self.order[slice].iter().map(|&p| p as u32).collect();
        // A followed shard is judged again, its failing holders challenged again (as the
        // auditor does: the others passed since it was followed).
        let followed = std::mem::take(&mut self.follow);
        for &s in &followed {
            for index in 0..self.width {
                let piece = self.piece_id(s as usize, index);
                if let Some(h) = self.shards[s as usize].holders[index]
                    && self.standings.streak(&(h, piece)).is_some()
                {
                    pieces.push(piece);
                }
            }
        }
        let mut seen = HashSet::with_capacity_and_hasher(pieces.len(), Fx::default());
        pieces.retain(|p| seen.insert(*p));
        let mut touched = Vec::new();
        let mut shards_seen = HashSet::default();
        for piece in pieces {
            let s = piece as usize / self.width;
            let index = piece as usize % self.width;
            let shard = &self.shards[s];
            if shard.lost {
                continue;
            }
            let Some(holder) = shard.holders[index] else {
                continue;
            };
            let node = &self.nodes[holder as usize];
            let result = if node.gone || !node.online {
                AuditResult::Unreachable
            } else if !node.holds.contains(&piece) {
                AuditResult::Refused
            } else {
                AuditResult::Passed
            };
            if result == AuditResult::Passed || result == AuditResult::Refused {
                let proof = (self.config.policy.proof_kib * 1024.0) as u64;
                self.report.audit_bytes += proof;
                self.nodes[holder as usize].moved += proof;
            }
            self.report.audits += 1;
            if result != AuditResult::Passed {
                self.shards[s].watch = true;
            }
            let failed = self.standings.record((holder, piece), result, self.now);
            if !failed && self.standings.streak(&(holder, piece)).is_some() {
                // Suspect: challenged again next round, until it passes or fails.
                self.follow.insert(s as u32);
            }
            if failed {
                // The network gives this copy up: the holder is no longer counted.
                self.standings.forget(&(holder, piece));
                self.shards[s].holders[index] = None;
                let node = &mut self.nodes[holder as usize];
                if node.holds.remove(&piece) {
                    node.used = node.used.saturating_sub(self.piece_bytes);
                    self.piece_gone(piece);
                }
                self.report.pieces_failed += 1;
            }
            if self.shards[s].watch && shards_seen.insert(s) {
                touched.push(s);
            }
        }
        for s in followed {
            if shards_seen.insert(s as usize) {
                touched.push(s as usize);
            }
        }
        if self.config.policy.repair {
            for s in touched {
                self.consider_repair(s);
            }
        }
        self.round += 1;
        let interval = (self.config.policy.audit_interval_minutes * 60_000.0) as u64;
        self.at(self.now + interval.max(1), Event::AuditRound);
    }

    /// The auditor's verdict on shard `s`; a repair starts when it asks for one and `k`
    /// holders are online to fetch from.
    fn consider_repair(&mut self, s: usize) {
        let (k, m) = (
            usize::from(self.config.data.k),
            usize::from(self.config.data.m),
        );
        let shard = &self.shards[s];
        if shard.lost {
            return;
        }
        if shard.repairing.is_some() {
            // Judged again once the repair has landed.
            self.follow.insert(s as u32);
            return;
        }
        let now = self.now;
        let intact: Vec<bool> = (0..self.width)
            .map(|i| {
                shard.holders[i].is_some_and(|h| {
                    self.standings
                        .standing(&(h, self.piece_id(s, i)), now)
                        .counts()
                })
            })
            .collect();
        let per_piece: Vec<Vec<Option<Subnet>>> = (0..self.width)
            .map(|i| match shard.holders[i] {
                Some(h) if intact[i] => vec![Some(self.nodes[h as usize].subnet)],
                _ => Vec::new(),
            })
            .collect();
        let free = self.config.candidates;
        let spread = independent(&per_piece, free);
        let verdict = verdict_spread(&intact, &spread, k, m, self.config.policy.spare);
        let Verdict::Repair(missing) = verdict else {
            let settled = (0..self.width).all(|i| {
                self.shards[s].holders[i]
                    .is_some_and(|h| self.standings.streak(&(h, self.piece_id(s, i))).is_none())
            });
            if verdict == Verdict::Healthy && settled {
                self.shards[s].watch = false;
            }
            return;
        };
        let sources = (0..self.width)
            .filter(|&i| {
                shard.holders[i].is_some_and(|h| {
                    let n = &self.nodes[h as usize];
                    n.online && n.holds.contains(&self.piece_id(s, i))
                })
            })
            .count();
        if sources < k {
            self.follow.insert(s as u32);
            return;
        }
        let holders: HashSet<u32> = shard.holders.iter().flatten().copied().collect();
        let candidates = self.candidates(&holders);
        let mut placement = Placement::with_subnets(candidates);
        for h in &holders {
            placement.held_at(*h, Some(self.nodes[*h as usize].subnet));
        }
        let mut plan = Vec::new();
        for &index in &missing {
            match placement.assign_fresh() {
                Some(node) => plan.push((index, node)),
                None => break,
            }
        }
        if plan.len() < missing.len() {
            // Not every missing piece found a home: the rest are tried next round.
            self.follow.insert(s as u32);
        }
        if plan.is_empty() {
            return;
        }
        // The repairer fetches k pieces and sends the rebuilt ones over its own link.
        let down = self.config.download_mbit * 125_000.0;
        let up = self.config.upload_mbit * 125_000.0;
        let bytes_in = (k as u64 * self.piece_bytes) as f64;
        let bytes_out = (plan.len() as u64 * self.piece_bytes) as f64;
        let took = ((bytes_in / down + bytes_out / up) * 1000.0) as u64;
        self.shards[s].repairing = Some(plan);
        self.report.repairs += 1;
        self.at(self.now + took.max(1), Event::RepairDone(s as u32));
    }

    fn repair_done(&mut self, s: usize) {
        let Some(plan) = self.shards[s].repairing.take() else {
            return;
        };
        if self.shards[s].lost {
            return;
        }
        let k = self.config.data.k as u64;
        self.report.repair_bytes += (k + plan.len() as u64) * self.piece_bytes;
        self.settle(s);
        let from = self.shards[s].alive;
        for (index, node) in plan {
            if self.nodes[node as usize].gone {
                continue;
            }
            let piece = self.piece_id(s, index);
            self.give(node, piece);
            self.nodes[node as usize].moved += self.piece_bytes;
            self.report.pieces_repaired += 1;
            // A holder past its strikes (and grace) is replaced even before an audit says
            // so again: the network drops its copy, and the shard holds as many as before.
            let old = self.shards[s].holders[index].replace(node);
            let swapped = old.is_some_and(|old| {
                self.standings.forget(&(old, piece));
                let held = &mut self.nodes[old as usize];
                let had = held.holds.remove(&piece);
                if had {
                    held.used = held.used.saturating_sub(self.piece_bytes);
                }
                had
            });
            if !swapped {
                self.shards[s].alive += 1;
                self.held.0 += 1;
            }
        }
        self.levels.repair(from, self.shards[s].alive);
    }
}
