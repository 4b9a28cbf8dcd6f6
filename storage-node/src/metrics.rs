//! The node's counters, exported in Prometheus text format on its HTTP port.

use std::sync::{Arc, atomic::AtomicU64};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use tessera_storage_protocol::ErrorCode;

use crate::bandwidth::Bandwidth;

use crate::store::Usage;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatLabel {
    stat: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabel {
    protocol: String,
    direction: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DatasetLabel {
    dataset: String,
}

/// The auditor's counters so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditCounters {
    /// Challenges sent whose proof verified.
    pub passed: u64,
    /// Challenges sent that failed.
    pub failed: u64,
    /// (holder, piece) pairs found failed.
    pub pieces_failed: u64,
    /// Pieces rebuilt.
    pub repaired: u64,
    /// Piece bytes fetched to rebuild them.
    pub repair_fetched: u64,
    /// Piece bytes sent to their new holders.
    pub repair_sent: u64,
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
    proof_bytes: Counter,
    pieces_stored: Counter,
    pieces_failed_check: Counter,
    audits_passed: Counter,
    audits_failed: Counter,
    pieces_failed_audit: Counter,
    pieces_repaired: Counter,
    repair_bytes_fetched: Counter,
    repair_bytes_sent: Counter,
    dataset_spare_pieces: Family<DatasetLabel, Gauge>,
    network: Family<StatLabel, Gauge>,
    pieces_held: Gauge,
    pieces_unreadable: Gauge,
    bytes_used: Gauge,
    bytes_free: Gauge,
    process: Family<StatLabel, Gauge<f64, AtomicU64>>,
    traffic: Family<StatLabel, Gauge>,
    protocol_bytes: Family<ProtocolLabel, Gauge>,
    bandwidth: std::sync::OnceLock<Arc<Bandwidth>>,
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
            proof_bytes: Counter::default(),
            pieces_stored: Counter::default(),
            pieces_failed_check: Counter::default(),
            audits_passed: Counter::default(),
            audits_failed: Counter::default(),
            pieces_failed_audit: Counter::default(),
            pieces_repaired: Counter::default(),
            repair_bytes_fetched: Counter::default(),
            repair_bytes_sent: Counter::default(),
            dataset_spare_pieces: Family::default(),
            network: Family::default(),
            pieces_held: Gauge::default(),
            pieces_unreadable: Gauge::default(),
            bytes_used: Gauge::default(),
            bytes_free: Gauge::default(),
            process: Family::default(),
            traffic: Family::default(),
            protocol_bytes: Family::default(),
            bandwidth: std::sync::OnceLock::new(),
            registry: Registry::default(),
        };
        registry.register(
            "traffic",
            "Bytes sent and received by the storage service since the start (sent, received), \
             this month's total and the monthly cap (month_bytes, monthly_cap; 0: none)",
            m.traffic.clone(),
        );
        registry.register(
            "protocol_bytes",
            "Bytes each network protocol carried since the start, by direction (sent, \
             received): the storage protocols, the DHT, gossip, identify, relaying",
            m.protocol_bytes.clone(),
        );
        registry.register(
            "process",
            "This process: cpu_seconds (user and system), resident_bytes, virtual_bytes, \
             threads, open_fds, uptime_seconds",
            m.process.clone(),
        );
        registry.register("requests", "Requests received, by kind", m.requests.clone());
        registry.register(
            "network",
            "How peers are reached (direct and relayed connections, hole punches, bytes \
             received each way) and what this node relayed",
            m.network.clone(),
        );
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
            "proof_bytes",
            "Bytes of storage proofs sent in answer to challenges",
            m.proof_bytes.clone(),
        );
        registry.register(
            "pieces_unreadable",
            "Held pieces that could not be read at their last check (kept, checked again)",
            m.pieces_unreadable.clone(),
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
        registry.register(
            "pieces_repaired",
            "Lost pieces this node rebuilt onto new holders",
            m.pieces_repaired.clone(),
        );
        registry.register(
            "repair_bytes_fetched",
            "Piece bytes fetched to rebuild lost pieces",
            m.repair_bytes_fetched.clone(),
        );
        registry.register(
            "repair_bytes_sent",
            "Rebuilt piece bytes sent to new holders",
            m.repair_bytes_sent.clone(),
        );
        registry.register(
            "dataset_spare_pieces",
            "Per dataset (latest version), the intact pieces beyond k of its worst shard at its last audit",
            m.dataset_spare_pieces.clone(),
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

    pub(crate) fn proof_bytes(&self, n: u64) {
        self.proof_bytes.inc_by(n);
    }

    /// Bytes of storage proofs this node sent so far.
    pub fn proof_bytes_sent(&self) -> u64 {
        self.proof_bytes.get()
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

    pub(crate) fn repaired(&self, pieces: u64, fetched: u64, sent: u64) {
        self.pieces_repaired.inc_by(pieces);
        self.repair_bytes_fetched.inc_by(fetched);
        self.repair_bytes_sent.inc_by(sent);
    }

    /// Audits this node sent that passed and that failed, so far.
    pub fn audits(&self) -> (u64, u64) {
        (self.audits_passed.get(), self.audits_failed.get())
    }

    /// Every auditor counter.
    pub fn audit_counters(&self) -> AuditCounters {
        AuditCounters {
            passed: self.audits_passed.get(),
            failed: self.audits_failed.get(),
            pieces_failed: self.pieces_failed_audit.get(),
            repaired: self.pieces_repaired.get(),
            repair_fetched: self.repair_bytes_fetched.get(),
            repair_sent: self.repair_bytes_sent.get(),
        }
    }

    /// Sets how peers are reached and what this node relayed, from the network's counters.
    pub fn set_network(&self, paths: tessera_net::PathStats, relay: tessera_net::RelayStats) {
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        for (stat, value) in [
            ("direct_connections", paths.direct_connections),
            ("relayed_connections", paths.relayed_connections),
            ("holes_punched", paths.punched),
            ("punch_ms_total", paths.punch_ms_total),
            ("punches_failed", paths.unpunched),
            ("bytes_received_direct", paths.bytes_direct),
            ("bytes_received_relayed", paths.bytes_relayed),
            ("relay_serving", u64::from(relay.serving)),
            ("relay_reservations", relay.reservations),
            ("relay_circuits", relay.circuits),
            ("relay_denied", relay.denied),
            ("relay_circuits_cut", relay.cut),
        ] {
            self.network
                .get_or_create(&StatLabel { stat })
                .set(gauge(value));
        }
    }

    /// Sets each network protocol's bytes, from the network's counters.
    pub fn set_protocol_traffic(&self, traffic: &[tessera_net::ProtocolTraffic]) {
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        for t in traffic {
            for (direction, value) in [("sent", t.sent), ("received", t.received)] {
                self.protocol_bytes
                    .get_or_create(&ProtocolLabel {
                        protocol: t.protocol.clone(),
                        direction,
                    })
                    .set(gauge(value));
            }
        }
    }

    /// The storage service's traffic and the operator's limits; none for a node built
    /// without them.
    pub fn bandwidth(&self) -> Option<crate::bandwidth::BandwidthStatus> {
        self.bandwidth.get().map(|b| b.status())
    }

    /// Sets each dataset's spare pieces (its worst shard's intact pieces beyond k).
    pub fn set_dataset_spares(&self, spares: &[(String, i64)]) {
        self.dataset_spare_pieces.clear();
        for (dataset, spare) in spares {
            self.dataset_spare_pieces
                .get_or_create(&DatasetLabel {
                    dataset: dataset.clone(),
                })
                .set(*spare);
        }
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

    /// The node's bandwidth, whose figures `render` reports.
    pub fn set_bandwidth(&self, bandwidth: Arc<Bandwidth>) {
        let _ = self.bandwidth.set(bandwidth);
    }

    /// The Prometheus text exposition, with the store's usage as of now.
    pub fn render(&self, usage: Usage) -> String {
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.pieces_held.set(gauge(usage.pieces));
        self.pieces_unreadable.set(gauge(usage.unreadable));
        self.bytes_used.set(gauge(usage.used));
        self.bytes_free.set(gauge(usage.free()));
        if let Some(bw) = self.bandwidth.get() {
            let (sent, received) = bw.totals();
            let (month, cap) = bw.month();
            for (stat, value) in [
                ("sent", sent),
                ("received", received),
                ("month_bytes", month),
                ("monthly_cap", cap.unwrap_or(0)),
            ] {
                self.traffic
                    .get_or_create(&StatLabel { stat })
                    .set(gauge(value));
            }
        }
        for (stat, value) in process_figures() {
            self.process.get_or_create(&StatLabel { stat }).set(value);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// This process's figures from /proc (none where it cannot be read).
#[allow(clippy::cast_precision_loss)]
pub(crate) fn process_figures() -> Vec<(&'static str, f64)> {
    let Ok(me) = procfs::process::Process::myself() else {
        return Vec::new();
    };
    let Ok(stat) = me.stat() else {
        return Vec::new();
    };
    let ticks = procfs::ticks_per_second().max(1) as f64;
    let mut out = vec![
        ("cpu_seconds", (stat.utime + stat.stime) as f64 / ticks),
        ("resident_bytes", (stat.rss * procfs::page_size()) as f64),
        ("virtual_bytes", stat.vsize as f64),
        ("threads", stat.num_threads as f64),
    ];
    if let Ok(fds) = me.fd_count() {
        out.push(("open_fds", fds as f64));
    }
    if let Ok(up) = <procfs::Uptime as procfs::Current>::current() {
        // Seconds since boot now, less seconds since boot when the process started.
        let started = stat.starttime as f64 / ticks;
        out.push(("uptime_seconds", (up.uptime - started).max(0.0)));
    }
    out
}
