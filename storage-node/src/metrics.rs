//! The node's counters, exported in Prometheus text format on its HTTP port.

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use tessera_net::protocol::ErrorCode;

use crate::store::Usage;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: String,
}

/// Counters of one storage node.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<KindLabel, Counter>,
    errors: Family<CodeLabel, Counter>,
    bytes_in: Counter,
    bytes_out: Counter,
    challenges_answered: Counter,
    pieces_stored: Counter,
    pieces_failed_check: Counter,
    audits_passed: Counter,
    audits_failed: Counter,
    pieces_failed_audit: Counter,
    pieces_held: Gauge,
    bytes_used: Gauge,
    bytes_free: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh counters.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tessera");
        let m = Self {
            requests: Family::default(),
            errors: Family::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            challenges_answered: Counter::default(),
            pieces_stored: Counter::default(),
            pieces_failed_check: Counter::default(),
            audits_passed: Counter::default(),
            audits_failed: Counter::default(),
            pieces_failed_audit: Counter::default(),
            pieces_held: Gauge::default(),
            bytes_used: Gauge::default(),
            bytes_free: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("requests", "Requests received, by kind", m.requests.clone());
        registry.register(
            "errors",
            "Requests refused, by error code",
            m.errors.clone(),
        );
        registry.register("bytes_in", "Piece bytes received", m.bytes_in.clone());
        registry.register(
            "bytes_out",
            "Proof and range bytes sent",
            m.bytes_out.clone(),
        );
        registry.register(
            "challenges_answered",
            "Storage challenges answered with a proof",
            m.challenges_answered.clone(),
        );
        registry.register(
            "pieces_stored",
            "Pieces stored since start",
            m.pieces_stored.clone(),
        );
        registry.register(
            "pieces_failed_check",
            "Held pieces found not matching their CID and dropped",
            m.pieces_failed_check.clone(),
        );
        registry.register(
            "audits_passed",
            "Challenges this node sent as an auditor whose proof verified",
            m.audits_passed.clone(),
        );
        registry.register(
            "audits_failed",
            "Challenges this node sent as an auditor that failed (bad proof, refused, timeout, unreachable)",
            m.audits_failed.clone(),
        );
        registry.register(
            "pieces_failed_audit",
            "Pieces another node failed to prove the configured number of times in a row",
            m.pieces_failed_audit.clone(),
        );
        registry.register("pieces_held", "Pieces held now", m.pieces_held.clone());
        registry.register("bytes_used", "Bytes of pieces held", m.bytes_used.clone());
        registry.register("bytes_free", "Bytes of capacity free", m.bytes_free.clone());
        Self { registry, ..m }
    }

    pub(crate) fn request(&self, kind: &'static str) {
        self.requests.get_or_create(&KindLabel { kind }).inc();
    }

    pub(crate) fn error(&self, code: ErrorCode) {
        self.errors
            .get_or_create(&CodeLabel {
                code: format!("{code:?}"),
            })
            .inc();
    }

    pub(crate) fn bytes_in(&self, n: u64) {
        self.bytes_in.inc_by(n);
    }

    pub(crate) fn bytes_out(&self, n: u64) {
        self.bytes_out.inc_by(n);
    }

    pub(crate) fn challenge_answered(&self) {
        self.challenges_answered.inc();
    }

    pub(crate) fn stored(&self) {
        self.pieces_stored.inc();
    }

    pub(crate) fn failed_check(&self) {
        self.pieces_failed_check.inc();
    }

    pub(crate) fn audit_passed(&self) {
        self.audits_passed.inc();
    }

    pub(crate) fn audit_failed(&self) {
        self.audits_failed.inc();
    }

    pub(crate) fn piece_failed_audit(&self) {
        self.pieces_failed_audit.inc();
    }

    /// Audits this node sent that passed and that failed, so far.
    pub fn audits(&self) -> (u64, u64) {
        (self.audits_passed.get(), self.audits_failed.get())
    }

    /// Held pieces that failed a check so far.
    pub fn pieces_failed_check(&self) -> u64 {
        self.pieces_failed_check.get()
    }

    /// Requests refused with `code` so far.
    pub fn errors_with(&self, code: ErrorCode) -> u64 {
        self.errors
            .get_or_create(&CodeLabel {
                code: format!("{code:?}"),
            })
            .get()
    }

    /// The Prometheus text exposition, with the store's usage as of now.
    pub fn render(&self, usage: Usage) -> String {
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.pieces_held.set(gauge(usage.pieces));
        self.bytes_used.set(gauge(usage.used));
        self.bytes_free.set(gauge(usage.free()));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
