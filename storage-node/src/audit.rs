//! The auditor role: challenge the holders of every piece of every dataset the node knows,
//! once per period, keep and share a signed receipt of every answer, and rebuild the pieces
//! that holders lost once a shard's redundancy falls below the threshold.
//!
//! ```text
//! period start: secret seed, the registry's shards ─▶ Schedule (proofs::schedule)
//! every interval: the round's shards, and those with a holder still failing
//!   each piece ─▶ its providers on the DHT ─▶ challenge(piece, fresh nonce), all at once,
//!     each with a deadline (Busy: asked again after a pause, with another fresh nonce)
//!     ─▶ verify against the piece CID alone
//!     (under a charter only the pieces assigned to this validator; for the others the
//!      latest receipt of an assigned validator is read, and only without one is the holder
//!      challenged, for this node's view alone)
//!   ─▶ receipt (passed, bad_proof, refused, timeout, unreachable): signed, kept, gossiped
//!   ─▶ Standings (proofs::health): failed after `failures` in a row, silence after `grace`
//!   ─▶ intact pieces < k + ceil(spare * m) ─▶ claim the shard on the DHT ─▶ rebuild
//!      the lost pieces from any k (client::repair) onto nodes holding none of the shard
//! ```

use parking_lot::Mutex;
use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};
use tessera_formats::time::now_ms;
use tessera_node::{
    blocking::blocking,
    charter::{CurrentCharter, NodeCharter},
};

use cid::Cid;
use serde::{Deserialize, Serialize};
use tessera_client::{
    Backoff, Session,
    placement::{Subnet, independent},
    put::subnets,
    repair::rebuild,
};
use tessera_dataset_registry::{AuditScope, AuditSet, DatasetShards, RecordStore};
use tessera_formats::{
    AuditReceipt, AuditResult, PublisherKey, RepairClaim, ShardLayout, SignedClaim, SignedReceipt,
    claim::CLAIM_VERSION,
    receipt::{NodeKey, RECEIPT_VERSION},
    record::SigningKey,
};
use tessera_net::{Client, PeerId};
use tessera_proofs::{
    Challenge, DEFAULT_SAMPLES, Rules, Schedule, Standing, Standings, Verdict,
    assignment::{is_auditor, period_of, repair_order},
    durability,
    health::verdict_spread,
    trust::ReceiptRules,
    verify,
};
use tessera_storage_protocol::{ChallengeProtocol, ChallengeResponse};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::{bandwidth::Bandwidth, metrics::Metrics, receipts::ReceiptStore, store::PieceStore};

/// The gossipsub topic on which auditors share their signed receipts.
pub const RECEIPT_TOPIC: &str = "/tessera/audit/receipts/1";

/// The topic a network's next charter is passed on: each node takes it when the threshold of
/// the committee in force signed it (`tessera_node::charter::CurrentCharter::advance`).
pub const CHARTER_TOPIC: &str = "/tessera/charter/1";

/// How the auditor works.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AuditConfig {
    /// Time between rounds.
    pub interval: Duration,
    /// Every piece is challenged once in this time.
    pub period: Duration,
    /// Failures in a row after which a node fails a piece.
    pub failures: u32,
    /// How long a holder that does not answer at all is waited for before its pieces count
    /// as lost (from its first failure).
    pub grace: Duration,
    /// Chunks sampled per challenge.
    pub samples: u32,
    /// How long a holder has to answer.
    pub timeout: Duration,
    /// Most pieces one period covers.
    pub max_pieces: usize,
    /// Rebuild lost pieces.
    pub repair: bool,
    /// A shard is repaired once fewer than `k + ceil(spare * m)` of its pieces are intact.
    pub spare: f64,
    /// How long a repair claim holds.
    pub claim_lease: Duration,
    /// How long a claimer waits before reading its claim back.
    pub claim_settle: Duration,
}

/// Holders seen passing a followed shard's pieces: (holder, piece).
type Passed = HashSet<(PeerId, Cid)>;

/// How long a holder has to answer a challenge. An honest holder answers in 20 ms on SSD or
/// page cache (`examples/outsource`), in about 7 s reading 688 chunks at random from a disk
/// that seeks in 10 ms; 15 s leaves it room twice over. A holder that keeps nothing and
/// fetches the whole piece from an accomplice to answer then needs a 36 Mbit/s link for a
/// 64 MiB piece (60 s needed 9). Fetching only the sampled chunks takes well under a second
/// and no deadline stops it: what remains possible is written in `docs/ARCHITECTURE.md`.
pub const CHALLENGE_DEADLINE: Duration = Duration::from_secs(15);

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30 * 60),
            period: durability::AUDIT_PERIOD,
            failures: durability::AUDIT_FAILURES,
            grace: durability::AUDIT_GRACE,
            samples: DEFAULT_SAMPLES,
            timeout: CHALLENGE_DEADLINE,
            max_pieces: 1_000_000,
            repair: true,
            spare: durability::REPAIR_SPARE,
            claim_lease: Duration::from_secs(15 * 60),
            claim_settle: Duration::from_secs(2),
        }
    }
}

/// What one round did.
#[derive(Debug, Clone, Default)]
pub struct RoundReport {
    /// Every receipt the round signed.
    pub receipts: Vec<SignedReceipt>,
    /// (holder, piece) pairs that the round found failed (each once per run of failures).
    pub failed: Vec<(PeerId, Cid)>,
    /// Pieces rebuilt: the piece and its new holder.
    pub repaired: Vec<(Cid, PeerId)>,
    /// Shards with fewer than `k` intact pieces, by layout CID.
    pub lost: Vec<Cid>,
    /// Holders challenged.
    pub challenged: usize,
    /// Holders of pieces assigned to other validators, judged by those validators' receipts
    /// instead of a challenge.
    pub heard: usize,
}

/// One shard as the auditor last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ShardHealth {
    /// Pieces with a holder in good standing (or not yet failed).
    pub intact: usize,
    /// k.
    pub k: usize,
    /// k + m.
    pub total: usize,
    /// When it was last checked (ms since the epoch).
    pub checked_ms: u64,
}

impl ShardHealth {
    /// Intact pieces beyond `k`: how many more losses the shard survives (negative: lost).
    pub fn spare(&self) -> i64 {
        i64::try_from(self.intact).unwrap_or(i64::MAX) - i64::try_from(self.k).unwrap_or(0)
    }
}

/// A dataset's redundancy: its worst shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetHealth {
    /// Publisher key (hex).
    pub publisher: String,
    /// Name.
    pub name: String,
    /// Latest version.
    pub version: u64,
    /// Its manifest CID.
    pub manifest: String,
    /// Shards in the version.
    pub shards: usize,
    /// Shards checked so far this node's auditor ran.
    pub checked: usize,
    /// Fewest intact pieces of any checked shard.
    pub min_intact: Option<usize>,
    /// Fewest spare pieces (intact minus k) of any checked shard: how many more losses the
    /// worst shard survives.
    pub min_spare: Option<i64>,
}

/// A holder failing a piece.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailingHolder {
    /// The holder's peer id.
    pub node: String,
    /// The piece.
    pub piece: String,
    /// Failures in a row.
    pub failures: u32,
    /// Since when (ms).
    pub since_ms: u64,
    /// Whether it counts as lost now.
    pub failed: bool,
}

/// What `GET /v1/audit` and `tessera audit status` show.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditStatus {
    /// Whether the auditor role runs.
    pub auditor: bool,
    /// Challenges sent that passed.
    pub audits_passed: u64,
    /// Challenges sent that failed.
    pub audits_failed: u64,
    /// (holder, piece) pairs found failed.
    pub pieces_failed: u64,
    /// Pieces rebuilt onto new holders.
    pub pieces_repaired: u64,
    /// Piece bytes fetched for repairs.
    pub repair_bytes_fetched: u64,
    /// Piece bytes sent for repairs.
    pub repair_bytes_sent: u64,
    /// Shards known.
    pub shards: usize,
    /// Shards below `k` intact pieces at their last check.
    pub shards_lost: usize,
    /// Each dataset's latest version.
    pub datasets: Vec<DatasetHealth>,
    /// Holders failing now.
    pub failing: Vec<FailingHolder>,
}

/// What the auditor knows, shared with the HTTP port.
#[derive(Debug, Default)]
pub struct AuditView {
    running: bool,
    shards: BTreeMap<Cid, ShardHealth>,
    datasets: Vec<DatasetShards>,
    failing: Vec<FailingHolder>,
}

/// A handle to the auditor's view.
pub type SharedView = Arc<Mutex<AuditView>>;

impl AuditView {
    /// The status document, with the node's counters.
    pub fn status(&self, metrics: &Metrics) -> AuditStatus {
        let counters = metrics.audit_counters();
        let datasets = self
            .datasets
            .iter()
            .map(|d| {
                let seen: Vec<&ShardHealth> =
                    d.shards.iter().filter_map(|s| self.shards.get(s)).collect();
                DatasetHealth {
                    publisher: d.publisher.to_string(),
                    name: d.name.clone(),
                    version: d.version,
                    manifest: d.manifest.to_string(),
                    shards: d.shards.len(),
                    checked: seen.len(),
                    min_intact: seen.iter().map(|s| s.intact).min(),
                    min_spare: seen.iter().map(|s| s.spare()).min(),
                }
            })
            .collect();
        AuditStatus {
            auditor: self.running,
            audits_passed: counters.passed,
            audits_failed: counters.failed,
            pieces_failed: counters.pieces_failed,
            pieces_repaired: counters.repaired,
            repair_bytes_fetched: counters.repair_fetched,
            repair_bytes_sent: counters.repair_sent,
            shards: self.shards.len(),
            shards_lost: self.shards.values().filter(|s| s.intact < s.k).count(),
            datasets,
            failing: self.failing.clone(),
        }
    }

    /// Each dataset's fewest spare pieces, for `/metrics`.
    pub fn dataset_spares(&self) -> Vec<(String, i64)> {
        self.datasets
            .iter()
            .filter_map(|d| {
                let spare = d
                    .shards
                    .iter()
                    .filter_map(|s| self.shards.get(s))
                    .map(ShardHealth::spare)
                    .min()?;
                Some((format!("{}/{}@v{}", d.publisher, d.name, d.version), spare))
            })
            .collect()
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub use tessera_node::identity::{node_key, peer_of, signing_key};

/// The DHT key of a shard's repair claim.
pub fn claim_key(shard: &Cid) -> Vec<u8> {
    let mut key = b"/tessera/repair-claim/1/".to_vec();
    key.extend_from_slice(&shard.to_bytes());
    key
}

/// Sends challenges and signs receipts; cheap to clone into tasks.
#[derive(Clone)]
struct Challenger {
    client: Client,
    receipts: Arc<ReceiptStore>,
    key: SigningKey,
    me: NodeKey,
    metrics: Arc<Metrics>,
    /// The node's bandwidth: proofs received count toward its month, repairs wait for its
    /// rates, and a node over its cap neither audits nor repairs.
    bandwidth: Arc<Bandwidth>,
    samples: u32,
    timeout: Duration,
}

impl Challenger {
    /// Challenges `holder` for `piece` and signs a receipt of the answer; kept and shared
    /// when `share` (a receipt nobody else counts is for this node's view alone).
    async fn audit(&self, holder: PeerId, piece: Cid, share: bool) -> Option<SignedReceipt> {
        let node = node_key(&holder)?;
        // A holder too busy to take a challenge did not act on it; it is asked again after a
        // pause, each time with a fresh nonce, so the pause tells it nothing it could prepare.
        let mut backoff = Backoff::new();
        let (challenge, answer) = loop {
            let challenge = Challenge {
                piece,
                nonce: rand::random(),
                samples: self.samples,
            };
            let answer = tokio::time::timeout(
                self.timeout,
                self.client
                    .request::<ChallengeProtocol>(holder, challenge.clone()),
            )
            .await;
            if !matches!(answer, Ok(Ok(ref r)) if r.is_busy()) || !backoff.wait().await {
                break (challenge, answer);
            }
            debug!(%holder, %piece, "holder busy; challenging it again after a pause");
        };
        let (result, size) = match answer {
            Err(_) => (AuditResult::Timeout, 0),
            Ok(Err(_)) => (AuditResult::Unreachable, 0),
            // Still too busy after the pauses is no refusal to prove: like no answer in time,
            // it fails the holder only after the grace period.
            Ok(Ok(ref busy)) if busy.is_busy() => (AuditResult::Timeout, 0),
            Ok(Ok(ChallengeResponse::Error { .. })) => (AuditResult::Refused, 0),
            Ok(Ok(ChallengeResponse::Proof(proof))) => {
                self.bandwidth.count_received(proof.body.len() as u64);
                match verify(&challenge, &proof) {
                    Ok(verified) if verified.size > 0 => (AuditResult::Passed, verified.size),
                    _ => (AuditResult::BadProof, 0),
                }
            }
        };
        if result.passed() {
            self.metrics.audit_passed();
        } else {
            self.metrics.audit_failed();
        }
        let receipt = AuditReceipt {
            format: RECEIPT_VERSION,
            auditor: self.me,
            node,
            piece,
            size,
            nonce: challenge.nonce,
            samples: challenge.samples,
            result,
            time_ms: now_ms(),
        };
        let signed = match receipt.sign(&self.key) {
            Ok(signed) => signed,
            Err(e) => {
                warn!(%e, "signing an audit receipt failed");
                return None;
            }
        };
        if !share {
            return Some(signed);
        }
        let (store, keep) = (self.receipts.clone(), signed.clone());
        if let Err(e) = blocking(move || store.insert(&keep)).await {
            warn!(%e, "keeping an audit receipt failed");
        }
        if let Ok((_, block)) = signed.to_block()
            && let Err(e) = self.client.publish(RECEIPT_TOPIC, block).await
        {
            debug!(%e, "sharing an audit receipt failed");
        }
        Some(signed)
    }
}

/// A node's auditor.
pub struct Auditor {
    challenger: Challenger,
    registry: RecordStore,
    store: Option<PieceStore>,
    config: AuditConfig,
    standings: Standings<(PeerId, Cid)>,
    /// Shards with a holder still failing, or a repair not done: checked again next round,
    /// with the holders that passed since. Only the others are challenged again: one holder
    /// offline for the grace would otherwise have every holder of its shards proved every
    /// round (two to six times the period's audit traffic in the simulator).
    follow: BTreeMap<Cid, Passed>,
    view: SharedView,
    spool: PathBuf,
    /// The network's charter in force: who repairs what. None: any auditor repairs, the first claim
    /// holding.
    charter: Option<CurrentCharter>,
    /// Rounds each shard needing repair has waited for the validators ranked before this
    /// one.
    waited: Mutex<BTreeMap<Cid, usize>>,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor")
            .field("me", &self.challenger.me)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What an auditor is built from.
#[derive(Debug, Clone)]
pub struct AuditorParts {
    /// The node's network.
    pub client: Client,
    /// The registry whose datasets it audits.
    pub registry: RecordStore,
    /// Where receipts are kept.
    pub receipts: Arc<ReceiptStore>,
    /// The node's piece store: pieces it holds itself count without a challenge.
    pub store: Option<PieceStore>,
    /// The node's identity key, which signs receipts and claims.
    pub key: SigningKey,
    /// The node's counters.
    pub metrics: Arc<Metrics>,
    /// The operator's bandwidth limits and what the node used of them.
    pub bandwidth: Arc<Bandwidth>,
    /// The view the HTTP port shows.
    pub view: SharedView,
    /// Where repairs spool pieces.
    pub spool: PathBuf,
    /// The network's charter, which assigns repairs; none on the unnamed network.
    pub charter: Option<CurrentCharter>,
}

impl Auditor {
    /// An auditor over `parts`, working as `config` says.
    pub fn new(parts: AuditorParts, config: AuditConfig) -> Self {
        let me = PublisherKey::of(&parts.key);
        Self {
            challenger: Challenger {
                client: parts.client,
                receipts: parts.receipts,
                key: parts.key,
                me,
                metrics: parts.metrics,
                bandwidth: parts.bandwidth,
                samples: config.samples,
                timeout: config.timeout,
            },
            registry: parts.registry,
            store: parts.store,
            standings: Standings::new(Rules {
                threshold: config.failures,
                grace_ms: ms(config.grace),
            }),
            config,
            follow: BTreeMap::new(),
            view: parts.view,
            spool: parts.spool,
            charter: parts.charter,
            waited: Mutex::default(),
        }
    }

    /// This validator's place in `shard`'s repair order this period, under the charter;
    /// none without one (every auditor may repair). A node outside the committee never
    /// repairs.
    fn repair_rank(&self, shard: &Cid) -> Option<usize> {
        let charter = self.charter.as_ref()?.get();
        let c = &charter.signed.charter;
        let period = period_of(now_ms(), c.params.audit_period_ms);
        Some(
            repair_order(&charter.cid, period, shard, &c.committee)
                .iter()
                .position(|k| *k == self.challenger.me)
                .unwrap_or(usize::MAX),
        )
    }

    /// Whether this auditor repairs `shard` now: always without a charter; with one, when
    /// it is the assigned repairer, or when the shard has waited a round for each validator
    /// ranked before it (one that is down does not stop the repair for long).
    fn my_turn_to_repair(&self, shard: &Cid) -> bool {
        let Some(rank) = self.repair_rank(shard) else {
            return true;
        };
        let mut waited = self.waited.lock();
        let rounds = waited.entry(*shard).or_default();
        if rank <= *rounds {
            waited.remove(shard);
            true
        } else {
            *rounds += 1;
            false
        }
    }

    /// Whether this auditor is assigned `holder`'s copy of `piece` in the current period:
    /// always without a charter.
    fn assigned(&self, piece: &Cid, holder: &PeerId) -> bool {
        let Some(charter) = self.charter.as_ref().map(CurrentCharter::get) else {
            return true;
        };
        let Some(holder) = node_key(holder) else {
            return false;
        };
        let c = &charter.signed.charter;
        let period = period_of(now_ms(), c.params.audit_period_ms);
        let n = usize::try_from(c.params.validators_per_piece).unwrap_or(usize::MAX);
        is_auditor(
            &self.challenger.me,
            &charter.cid,
            period,
            piece,
            &holder,
            &c.committee,
            n,
        )
    }

    /// Whether `holder`'s copy of `piece` passed its latest audit by a validator assigned it,
    /// within the last two periods (an assigned validator reaches a piece once a period, at a
    /// time of its own seed). A failure heard is no verdict: the holder is challenged, and
    /// judged by this node's own standings.
    async fn heard_pass(&self, holder: PeerId, piece: Cid) -> bool {
        self.latest_assigned(holder, piece).await == Some(true)
    }

    async fn latest_assigned(&self, holder: PeerId, piece: Cid) -> Option<bool> {
        let charter = self.charter.as_ref()?.get();
        let node = node_key(&holder)?;
        let c = &charter.signed.charter;
        let since = now_ms().saturating_sub(c.params.audit_period_ms.saturating_mul(2));
        let store = self.challenger.receipts.clone();
        let found = blocking(move || store.about_piece(&piece, &node, since, 1024))
            .await
            .ok()?;
        let no_size = |_: &Cid| None;
        let rules = ReceiptRules::new(c, charter.cid, &no_size);
        found
            .iter()
            .rev()
            .find(|r| rules.check_auditor(r).is_ok())
            .map(|r| r.receipt.result.passed())
    }

    /// The same auditor working under `charter`: it repairs a shard only in its turn, and
    /// ignores claims by anyone its turn does not follow.
    #[must_use]
    pub fn with_charter(mut self, charter: NodeCharter) -> Self {
        self.charter = Some(CurrentCharter::new(charter));
        self
    }

    /// The schedule its config makes.
    pub fn schedule(&self) -> Schedule {
        Schedule {
            interval: self.config.interval,
            period: self.config.period,
        }
    }

    /// The shards of every dataset the registry holds, and each dataset's latest version.
    pub async fn known_shards(&self) -> AuditSet {
        let (registry, limit) = (self.registry.clone(), self.config.max_pieces);
        // Under a charter, only the datasets it admits, each publisher within its quota.
        let scope = self
            .charter
            .as_ref()
            .map(|c| AuditScope::of(&c.get().signed.charter))
            .unwrap_or_default();
        let set = blocking(move || registry.audit_set_in(limit, &scope))
            .await
            .unwrap_or_else(|e| {
                warn!(%e, "listing the shards to audit failed");
                AuditSet::default()
            });
        if set.more {
            warn!(
                limit = self.config.max_pieces,
                "more pieces than one audit period covers; some wait"
            );
        }
        let mut view = self.view.lock();
        view.datasets.clone_from(&set.datasets);
        let known: HashSet<&Cid> = set.shards.iter().map(|(cid, _)| cid).collect();
        view.shards.retain(|cid, _| known.contains(cid));
        set
    }

    /// Runs until the task is stopped: a round every interval, a new seed and shard list
    /// every period. The first round waits one interval. A shard the registry admits during
    /// a period is audited in the next round, not a period later.
    pub async fn run(mut self) {
        self.view.lock().running = true;
        let schedule = self.schedule();
        let mut ticks = tokio::time::interval(self.config.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            let seed: [u8; 32] = rand::random();
            let set = self.known_shards().await;
            // The repair order is drawn per period: rounds waited in the last one count for
            // nothing now.
            self.waited.lock().clear();
            let mut known: HashSet<Cid> = set.shards.iter().map(|(cid, _)| *cid).collect();
            // Shards admitted since the period began: checked when they appear, and kept
            // here for the rest of the period so that a shard followed after a failure is
            // still known.
            let mut added: Vec<(Cid, ShardLayout)> = Vec::new();
            info!(shards = set.shards.len(), "audit period begins");
            for round in 0..schedule.rounds_per_period() {
                ticks.tick().await;
                let mut new = Vec::new();
                if round > 0 {
                    for (cid, layout) in self.known_shards().await.shards {
                        if known.insert(cid) {
                            new.push(cid);
                            added.push((cid, layout));
                        }
                    }
                }
                if !new.is_empty() {
                    info!(shards = new.len(), "newly admitted shards join this round");
                }
                let report = self
                    .round_with(&set.shards, &added, &new, &seed, round)
                    .await;
                debug!(
                    round,
                    receipts = report.receipts.len(),
                    repaired = report.repaired.len(),
                    "audit round"
                );
            }
        }
    }

    /// Checks the shards of round `round` of the period seeded `seed`, and every shard with
    /// a holder still failing: challenges their holders and repairs what needs it.
    pub async fn round(
        &mut self,
        shards: &[(Cid, ShardLayout)],
        seed: &[u8; 32],
        round: u64,
    ) -> RoundReport {
        self.round_with(shards, &[], &[], seed, round).await
    }

    /// [`Auditor::round`] over the period's `shards`, with `added` admitted since it began,
    /// of which `new` (just admitted) are checked this round too.
    async fn round_with(
        &mut self,
        shards: &[(Cid, ShardLayout)],
        added: &[(Cid, ShardLayout)],
        new: &[Cid],
        seed: &[u8; 32],
        round: u64,
    ) -> RoundReport {
        // Audits are work the node offers; over the operator's cap it stops offering it.
        if let Err(over) = self.challenger.bandwidth.check() {
            info!(%over, "no audit round");
            return RoundReport::default();
        }
        let keys: Vec<Cid> = shards.iter().map(|(cid, _)| *cid).collect();
        let layouts: BTreeMap<Cid, &ShardLayout> = shards
            .iter()
            .chain(added)
            .map(|(cid, layout)| (*cid, layout))
            .collect();
        // In the seed's order: auditors with other seeds reach the same shards at other
        // times, so they seldom race for a repair claim.
        let mut due: Vec<Cid> = self
            .schedule()
            .round(&keys, seed, round)
            .into_iter()
            .copied()
            .collect();
        // A shard due in this round is proved whole; one only followed, in part.
        let scheduled: BTreeSet<Cid> = due.iter().copied().collect();
        let mut followed = std::mem::take(&mut self.follow);
        for shard in followed.keys().chain(new) {
            if !due.contains(shard) {
                due.push(*shard);
            }
        }
        let mut report = RoundReport::default();
        for shard in due {
            let passed = if scheduled.contains(&shard) {
                Passed::new()
            } else {
                followed.remove(&shard).unwrap_or_default()
            };
            if let Some(layout) = layouts.get(&shard) {
                self.check(shard, layout, passed, &mut report).await;
            }
        }
        self.publish_failing();
        if report.challenged > 0 {
            info!(
                round,
                challenged = report.challenged,
                answered = report.heard,
                failed = report.failed.len(),
                repaired = report.repaired.len(),
                lost = report.lost.len(),
                "audit round done"
            );
        }
        report
    }

    /// Challenges every holder of every piece of one shard but those in `passed`; repairs it
    /// if it needs it.
    async fn check(
        &mut self,
        shard: Cid,
        layout: &ShardLayout,
        mut passed: Passed,
        report: &mut RoundReport,
    ) {
        let me = self.challenger.client.peer_id();
        let total = layout.pieces.len();
        let mut holders: Vec<HashSet<PeerId>> = vec![HashSet::new(); total];
        // Every piece's lookup at once: a holder that is gone costs the round one wait, not
        // one per piece.
        let mut lookups = JoinSet::new();
        for (index, piece) in layout.pieces.iter().enumerate() {
            let (client, piece) = (self.challenger.client.clone(), *piece);
            lookups.spawn(async move { (index, piece, client.get_providers(piece).await) });
        }
        while let Some(joined) = lookups.join_next().await {
            match joined {
                Ok((index, _, Ok(found))) => holders[index] = found,
                Ok((_, piece, Err(e))) => {
                    // Without the holders the shard's state is unknown: judge it next round.
                    warn!(%piece, %e, "finding the holders of a piece failed");
                    self.follow.insert(shard, passed);
                    return;
                }
                Err(e) => {
                    warn!(%e, "a holder lookup stopped");
                    self.follow.insert(shard, passed);
                    return;
                }
            }
        }
        let mut intact = vec![false; total];
        // Who holds each intact piece: copies in one subnet count once.
        let mut intact_by: Vec<Vec<PeerId>> = vec![Vec::new(); total];
        // This node's own pieces of the shard: counted without a challenge, read from disk
        // by a repair.
        let mut mine = Vec::new();
        let mut audits = JoinSet::new();
        for (index, piece) in layout.pieces.iter().enumerate() {
            for holder in &holders[index] {
                if *holder == me {
                    if let Some(path) = self.held(piece).await {
                        intact[index] = true;
                        intact_by[index].push(me);
                        mine.push((index, path));
                    }
                    continue;
                }
                if passed.contains(&(*holder, *piece)) {
                    intact[index] = true;
                    intact_by[index].push(*holder);
                    continue;
                }
                let share = self.assigned(piece, holder);
                if !share && self.heard_pass(*holder, *piece).await {
                    report.heard += 1;
                    intact[index] = true;
                    intact_by[index].push(*holder);
                    continue;
                }
                report.challenged += 1;
                let (challenger, holder, piece) = (self.challenger.clone(), *holder, *piece);
                audits.spawn(async move {
                    (index, holder, challenger.audit(holder, piece, share).await)
                });
            }
        }
        let mut unsettled = false;
        while let Some(joined) = audits.join_next().await {
            let Ok((index, holder, receipt)) = joined else {
                continue;
            };
            let Some(receipt) = receipt else { continue };
            let (piece, now) = (layout.pieces[index], now_ms());
            if self
                .standings
                .record((holder, piece), receipt.receipt.result, now)
            {
                warn!(%holder, %piece, "node failed a piece");
                self.challenger.metrics.piece_failed_audit();
                report.failed.push((holder, piece));
            }
            let standing = self.standings.standing(&(holder, piece), now);
            unsettled |= standing == Standing::Suspect;
            if receipt.receipt.result.passed() {
                passed.insert((holder, piece));
            }
            if standing.counts() {
                intact[index] = true;
                intact_by[index].push(holder);
            }
            report.receipts.push(receipt);
        }
        let independent = self.independent(&holders, &intact_by).await;
        let (k, m) = (layout.erasure.data(), total - layout.erasure.data());
        let mut health = ShardHealth {
            intact: independent.iter().filter(|i| **i).count(),
            k,
            total,
            checked_ms: now_ms(),
        };
        debug!(%shard, ?intact, holders = ?holders.iter().map(HashSet::len).collect::<Vec<_>>(), "shard checked");
        match verdict_spread(&intact, &independent, k, m, self.config.spare) {
            Verdict::Healthy => {}
            Verdict::Lost => {
                warn!(%shard, content = %layout.content, intact = health.intact, k, "shard has fewer than k intact pieces");
                report.lost.push(shard);
            }
            Verdict::Repair(missing) if self.config.repair => {
                let exclude: HashSet<PeerId> = holders.iter().flatten().copied().collect();
                match self.repair(shard, layout, &missing, &exclude, &mine).await {
                    Some(stored) => {
                        unsettled |= stored.len() < missing.len();
                        health.intact += stored.len();
                        for (index, node) in stored {
                            report.repaired.push((layout.pieces[index], node));
                        }
                    }
                    // Not repaired (claimed elsewhere, or failed): look again next round.
                    None => unsettled = true,
                }
            }
            Verdict::Repair(_) => {}
        }
        if unsettled {
            self.follow.insert(shard, passed);
        }
        self.view.lock().shards.insert(shard, health);
    }

    /// Which intact pieces count as independent copies: holders in one subnet count once
    /// while peers in subnets holding none of the shard are connected (room to move them).
    async fn independent(
        &self,
        holders: &[HashSet<PeerId>],
        intact_by: &[Vec<PeerId>],
    ) -> Vec<bool> {
        let client = &self.challenger.client;
        let all: Vec<PeerId> = holders
            .iter()
            .flatten()
            .copied()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let subnet_of: HashMap<PeerId, Option<Subnet>> = all
            .iter()
            .copied()
            .zip(subnets(client, &all).await)
            .collect();
        let taken: HashSet<Subnet> = subnet_of.values().flatten().copied().collect();
        let connected = client
            .info()
            .await
            .map(|i| i.connected_peers)
            .unwrap_or_default();
        let free = subnets(client, &connected)
            .await
            .into_iter()
            .flatten()
            .filter(|s| !taken.contains(s))
            .collect::<HashSet<_>>()
            .len();
        let per_piece: Vec<Vec<Option<Subnet>>> = intact_by
            .iter()
            .map(|by| {
                by.iter()
                    .map(|h| subnet_of.get(h).copied().flatten())
                    .collect()
            })
            .collect();
        independent(&per_piece, free)
    }

    /// Where this node keeps `piece`, if its store holds it.
    async fn held(&self, piece: &Cid) -> Option<PathBuf> {
        let store = self.store.clone()?;
        let piece = *piece;
        let path = store.piece_path(&piece);
        matches!(blocking(move || store.has(&piece)).await, Ok(Some(_))).then_some(path)
    }

    /// Claims the shard and rebuilds `missing` from this node's own pieces (`have`) and
    /// others'; returns the pieces stored and their holders.
    async fn repair(
        &self,
        shard: Cid,
        layout: &ShardLayout,
        missing: &[usize],
        exclude: &HashSet<PeerId>,
        have: &[(usize, PathBuf)],
    ) -> Option<Vec<(usize, PeerId)>> {
        if !self.my_turn_to_repair(&shard) {
            debug!(%shard, "the charter assigns this repair to another validator");
            return None;
        }
        if !self.claim(shard).await {
            debug!(%shard, "repair claimed by another node");
            return None;
        }
        // Another node may have rebuilt pieces since this round looked: only what is still
        // missing now is rebuilt.
        let mut still = Vec::with_capacity(missing.len());
        for &index in missing {
            let found = self
                .challenger
                .client
                .get_providers(layout.pieces[index])
                .await
                .unwrap_or_default();
            if found.iter().all(|p| exclude.contains(p)) {
                still.push(index);
            } else {
                debug!(%shard, index, ?found, "piece has a new holder since the round looked");
            }
        }
        if still.is_empty() {
            self.release(shard).await;
            return Some(Vec::new());
        }
        let missing = &still[..];
        info!(%shard, content = %layout.content, ?missing, "repairing shard");
        let result = match self
            .within_bandwidth(layout, missing.len(), have.len())
            .await
        {
            Ok(()) => {
                let session = Session::with_client(self.challenger.client.clone());
                rebuild(&session, layout, missing, exclude, have, &self.spool).await
            }
            Err(over) => {
                info!(%shard, %over, "not repairing");
                self.release(shard).await;
                return None;
            }
        };
        self.release(shard).await;
        match result {
            Ok(done) => {
                let mut stored = done.stored;
                let me = self.challenger.client.peer_id();
                for (index, path) in done.unplaced {
                    // No other node took it; this node keeps it when it holds none of the shard.
                    if !exclude.contains(&me)
                        && stored.iter().all(|(_, n)| *n != me)
                        && self.keep_rebuilt(layout.pieces[index], &path).await
                    {
                        stored.push((index, me));
                    } else {
                        warn!(%shard, index, "no node without a piece of the shard took it");
                    }
                    let _ = std::fs::remove_file(&path);
                }
                self.challenger.metrics.repaired(
                    stored.len() as u64,
                    done.fetched_bytes,
                    done.sent_bytes,
                );
                info!(
                    %shard,
                    pieces = stored.len(),
                    fetched = done.fetched_bytes,
                    sent = done.sent_bytes,
                    "shard repaired"
                );
                Some(stored)
            }
            Err(e) => {
                warn!(%shard, error = %e, "repair failed");
                None
            }
        }
    }

    /// Waits until the operator's rates allow a repair's traffic: the pieces it fetches
    /// (`k` less those it holds) and the `missing` ones it sends. Taken before the repair,
    /// as serving takes a range's bytes before sending them; refused over the monthly cap.
    async fn within_bandwidth(
        &self,
        layout: &ShardLayout,
        missing: usize,
        held: usize,
    ) -> Result<(), crate::bandwidth::OverCap> {
        let piece = layout.piece_len();
        let fetched = usize::from(layout.erasure.k).saturating_sub(held) as u64;
        let bandwidth = &self.challenger.bandwidth;
        bandwidth.receive(fetched * piece).await?;
        bandwidth.send(missing as u64 * piece).await
    }

    /// Stores a rebuilt piece in this node's own store and announces it.
    async fn keep_rebuilt(&self, piece: Cid, path: &std::path::Path) -> bool {
        let Some(store) = self.store.clone() else {
            return false;
        };
        let file = path.to_path_buf();
        if let Err(e) = blocking(move || store.import(piece, &file)).await {
            warn!(%piece, error = %e, "keeping a rebuilt piece failed");
            return false;
        }
        if let Err(e) = self.challenger.client.start_providing(piece).await {
            warn!(%piece, error = %e, "announcing a rebuilt piece failed");
        }
        true
    }

    /// Live claims on `shard` by other nodes among the DHT's values that outrank this one:
    /// without a charter every other claimer, the smaller key first; with one, only
    /// validators before this one in the shard's repair order (claims by anyone else are
    /// ignored, so nobody blocks a repair by claiming it).
    fn others(&self, shard: &Cid, values: &[Vec<u8>], now: u64) -> Vec<NodeKey> {
        let horizon = now.saturating_add(2 * ms(self.config.claim_lease));
        let order = self.charter.as_ref().map(|charter| {
            let charter = charter.get();
            let c = &charter.signed.charter;
            let period = period_of(now, c.params.audit_period_ms);
            repair_order(&charter.cid, period, shard, &c.committee)
        });
        let me = self.challenger.me;
        let outranks = |claimer: &NodeKey| match &order {
            None => true,
            Some(order) => {
                let rank = |k: &NodeKey| order.iter().position(|o| o == k);
                match (rank(claimer), rank(&me)) {
                    (Some(theirs), Some(mine)) => theirs < mine,
                    (Some(_), None) => true,
                    (None, _) => false,
                }
            }
        };
        values
            .iter()
            .filter_map(|v| SignedClaim::from_block(v).ok())
            .map(|c| c.claim)
            .filter(|c| {
                c.shard == *shard
                    && c.expires_ms > now
                    && c.expires_ms <= horizon
                    && c.claimer != me
                    && outranks(&c.claimer)
            })
            .map(|c| c.claimer)
            .collect()
    }

    /// Claims a shard's repair: none live by another node before, ours written, and after
    /// the settle time no other live claim by a smaller key (two claimers that raced both
    /// see both; the smaller key repairs). A claim written too slowly to be seen by a racer
    /// is given up.
    async fn claim(&self, shard: Cid) -> bool {
        let client = &self.challenger.client;
        let key = claim_key(&shard);
        let started = Instant::now();
        let found = client.get_record(key.clone()).await.unwrap_or_default();
        if !self.others(&shard, &found, now_ms()).is_empty() {
            return false;
        }
        let Some(block) = self.claim_block(shard, now_ms() + ms(self.config.claim_lease)) else {
            return false;
        };
        if let Err(e) = client.put_record(key.clone(), block).await {
            debug!(%shard, error = %e, "writing a repair claim failed");
            return false;
        }
        if started.elapsed() > self.config.claim_settle / 2 {
            self.release(shard).await;
            return false;
        }
        tokio::time::sleep(self.config.claim_settle).await;
        let found = client.get_record(key).await.unwrap_or_default();
        let mine = self.challenger.me;
        // Under a charter every claim `others` names outranks this one; without one, the
        // smaller key repairs.
        !self
            .others(&shard, &found, now_ms())
            .iter()
            .any(|c| self.charter.is_some() || *c < mine)
            && found
                .iter()
                .filter_map(|v| SignedClaim::from_block(v).ok())
                .any(|c| c.claim.claimer == mine && c.claim.shard == shard)
    }

    /// Lets the claim lapse now.
    async fn release(&self, shard: Cid) {
        if let Some(block) = self.claim_block(shard, now_ms()) {
            let _ = self
                .challenger
                .client
                .put_record(claim_key(&shard), block)
                .await;
        }
    }

    fn claim_block(&self, shard: Cid, expires_ms: u64) -> Option<Vec<u8>> {
        RepairClaim {
            format: CLAIM_VERSION,
            claimer: self.challenger.me,
            shard,
            expires_ms,
        }
        .sign(&self.challenger.key)
        .and_then(|c| c.to_block())
        .ok()
    }

    fn publish_failing(&self) {
        let now = now_ms();
        let failing = self
            .standings
            .failing()
            .map(|((node, piece), streak)| FailingHolder {
                node: node.to_string(),
                piece: piece.to_string(),
                failures: streak.failures,
                since_ms: streak.since_ms,
                failed: self.standings.standing(&(*node, *piece), now) == Standing::Failed,
            })
            .collect();
        self.view.lock().failing = failing;
    }

    /// Challenges `holder` for `piece` once; returns the signed receipt, kept in the store
    /// and shared on the receipt topic. None when the holder's peer id carries no Ed25519
    /// key (no receipt can name it).
    pub async fn audit(&self, holder: PeerId, piece: Cid) -> Option<SignedReceipt> {
        self.challenger.audit(holder, piece, true).await
    }
}
