//! The auditor role: challenge the holders of the pieces of every dataset the node knows, so
//! that each piece is challenged once per period, and keep a signed receipt of every answer.
//!
//! ```text
//! period start: secret seed, the registry's pieces ─▶ Schedule (proofs::schedule)
//! every interval: the round's pieces ─▶ their providers on the DHT (not this node)
//!   ─▶ challenge(piece, fresh nonce) with a deadline ─▶ verify against the piece CID alone
//!   ─▶ receipt (passed, bad_proof, refused, timeout, unreachable), signed, kept
//!   ─▶ Strikes: `failures` in a row and the node fails the piece
//! ```
//!
//! Not built yet: sharing receipts with other nodes, and repairing what fails.

use std::{sync::Arc, time::Duration};

use cid::Cid;
use libp2p::identity::{Keypair, PublicKey};
use tessera_dataset_registry::RecordStore;
use tessera_formats::{
    AuditReceipt, AuditResult, PublisherKey, SignedReceipt,
    receipt::{NodeKey, RECEIPT_VERSION},
    record::SigningKey,
};
use tessera_net::{Client, PeerId, protocol::ChallengeResponse};
use tessera_proofs::{Challenge, DEFAULT_SAMPLES, Schedule, Strikes, verify};
use tracing::{debug, info, warn};

use crate::{metrics::Metrics, receipts::ReceiptStore};

/// How the auditor works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditConfig {
    /// Time between rounds.
    pub interval: Duration,
    /// Every piece is challenged once in this time.
    pub period: Duration,
    /// Failures in a row after which a node fails a piece.
    pub failures: u32,
    /// Chunks sampled per challenge.
    pub samples: u32,
    /// How long a holder has to answer.
    pub timeout: Duration,
    /// Most pieces one period covers.
    pub max_pieces: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30 * 60),
            period: Duration::from_secs(24 * 60 * 60),
            failures: 3,
            samples: DEFAULT_SAMPLES,
            timeout: Duration::from_secs(60),
            max_pieces: 1_000_000,
        }
    }
}

/// What one round did.
#[derive(Debug, Clone, Default)]
pub struct RoundReport {
    /// Every receipt the round signed.
    pub receipts: Vec<SignedReceipt>,
    /// (holder, piece) pairs that reached the failure threshold in this round.
    pub failed: Vec<(PeerId, Cid)>,
}

/// A node's auditor.
pub struct Auditor {
    client: Client,
    registry: RecordStore,
    receipts: Arc<ReceiptStore>,
    key: SigningKey,
    me: NodeKey,
    metrics: Arc<Metrics>,
    config: AuditConfig,
    strikes: Strikes<(PeerId, Cid)>,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor")
            .field("me", &self.me)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The Ed25519 signing key of a libp2p identity, for receipts; none for other key types.
pub fn signing_key(keypair: &Keypair) -> Option<SigningKey> {
    let ed = keypair.clone().try_into_ed25519().ok()?;
    let secret: [u8; 32] = ed.secret().as_ref().try_into().ok()?;
    Some(SigningKey::from_bytes(&secret))
}

/// The Ed25519 key inside a peer id; none for peer ids of other key types.
pub fn node_key(peer: &PeerId) -> Option<NodeKey> {
    let multihash = peer.as_ref();
    // Ed25519 peer ids are the identity multihash of the protobuf public key.
    if multihash.code() != 0 {
        return None;
    }
    let public = PublicKey::try_decode_protobuf(multihash.digest()).ok()?;
    Some(PublisherKey(public.try_into_ed25519().ok()?.to_bytes()))
}

impl Auditor {
    /// An auditor that challenges the pieces `registry` knows, signing with `key`.
    pub fn new(
        client: Client,
        registry: RecordStore,
        receipts: Arc<ReceiptStore>,
        key: SigningKey,
        metrics: Arc<Metrics>,
        config: AuditConfig,
    ) -> Self {
        let me = PublisherKey::of(&key);
        Self {
            client,
            registry,
            receipts,
            key,
            me,
            metrics,
            config,
            strikes: Strikes::new(config.failures),
        }
    }

    /// The schedule its config makes.
    pub fn schedule(&self) -> Schedule {
        Schedule {
            interval: self.config.interval,
            period: self.config.period,
        }
    }

    /// The pieces of every dataset the registry holds.
    pub async fn known_pieces(&self) -> Vec<Cid> {
        let (registry, limit) = (self.registry.clone(), self.config.max_pieces);
        match tokio::task::spawn_blocking(move || registry.pieces(limit)).await {
            Ok(Ok((pieces, more))) => {
                if more {
                    warn!(limit, "more pieces than one audit period covers; some wait");
                }
                pieces
            }
            Ok(Err(e)) => {
                warn!(%e, "listing the pieces to audit failed");
                Vec::new()
            }
            Err(e) => {
                warn!(%e, "listing the pieces to audit failed");
                Vec::new()
            }
        }
    }

    /// Runs until the task is stopped: a round every interval, a new seed and piece list
    /// every period. The first round waits one interval.
    pub async fn run(mut self) {
        let schedule = self.schedule();
        let mut ticks = tokio::time::interval(self.config.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            let seed: [u8; 32] = rand::random();
            let pieces = self.known_pieces().await;
            info!(pieces = pieces.len(), "audit period begins");
            for round in 0..schedule.rounds_per_period() {
                ticks.tick().await;
                let report = self.round(&pieces, &seed, round).await;
                debug!(round, receipts = report.receipts.len(), "audit round");
            }
        }
    }

    /// Challenges every holder of the pieces of round `round` of the period seeded `seed`.
    pub async fn round(&mut self, pieces: &[Cid], seed: &[u8; 32], round: u64) -> RoundReport {
        let mut report = RoundReport::default();
        let me = self.client.peer_id();
        for piece in self.schedule().round(pieces, seed, round) {
            let holders = match self.client.get_providers(*piece).await {
                Ok(holders) => holders,
                Err(e) => {
                    warn!(%piece, %e, "finding the holders of a piece failed");
                    continue;
                }
            };
            for holder in holders.into_iter().filter(|h| *h != me) {
                let Some(receipt) = self.audit(holder, *piece).await else {
                    continue;
                };
                let passed = receipt.receipt.result.passed();
                if self.strikes.record((holder, *piece), passed) {
                    warn!(%holder, %piece, failures = self.config.failures, "node failed a piece");
                    self.metrics.piece_failed_audit();
                    report.failed.push((holder, *piece));
                }
                report.receipts.push(receipt);
            }
        }
        report
    }

    /// Challenges `holder` for `piece` once; returns the signed receipt, kept in the store.
    /// None when the holder's peer id carries no Ed25519 key (no receipt can name it).
    pub async fn audit(&self, holder: PeerId, piece: Cid) -> Option<SignedReceipt> {
        let node = node_key(&holder)?;
        let challenge = Challenge {
            piece,
            nonce: rand::random(),
            samples: self.config.samples,
        };
        let answer = tokio::time::timeout(
            self.config.timeout,
            self.client.challenge(holder, challenge.clone()),
        )
        .await;
        let (result, size) = match answer {
            Err(_) => (AuditResult::Timeout, 0),
            Ok(Err(_)) => (AuditResult::Unreachable, 0),
            Ok(Ok(ChallengeResponse::Error { .. })) => (AuditResult::Refused, 0),
            Ok(Ok(ChallengeResponse::Proof(proof))) => match verify(&challenge, &proof) {
                Ok(verified) if verified.size > 0 => (AuditResult::Passed, verified.size),
                _ => (AuditResult::BadProof, 0),
            },
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
        let (store, keep) = (self.receipts.clone(), signed.clone());
        match tokio::task::spawn_blocking(move || store.insert(&keep)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(%e, "keeping an audit receipt failed"),
            Err(e) => warn!(%e, "keeping an audit receipt failed"),
        }
        Some(signed)
    }
}
