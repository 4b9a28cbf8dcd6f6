//! The storage node's HTTP routes: the operator's view (`/status`, `/metrics`, the dashboard)
//! and the auditor's ledger (`/v1/audit`, `/v1/receipts`, `/v1/rewards`). The registry role
//! adds its own `/v1` routes beside them; errors answer in the one shape of every node.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Query, State},
    http::header,
    response::IntoResponse,
    routing::get,
};
use serde::{Deserialize, Serialize};
use tessera_dataset_registry::{AuditScope, RecordStore};
use tessera_formats::time::now_ms;
use tessera_net::Client;
use tessera_node::{blocking::blocking, http::ApiError};
use tessera_proofs::trust::{NotCounted, ReceiptRules};

use crate::{
    audit::{AuditStatus, CHARTER_TOPIC, SharedView},
    metrics::Metrics,
    receipts::{ReceiptStore, ReceiptStoreError},
    rewards::{Tally, piece_sizes},
    store::PieceStore,
};

/// What the routes read.
#[derive(Clone)]
pub(crate) struct HttpState {
    pub(crate) client: Client,
    pub(crate) store: PieceStore,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) receipts: Arc<ReceiptStore>,
    pub(crate) audit: SharedView,
    pub(crate) charter: Option<tessera_node::charter::CurrentCharter>,
    /// The registry's records, whose layouts give each piece's size under a charter.
    pub(crate) registry: Option<RecordStore>,
    /// The payout address the node declares.
    pub(crate) payout: Option<tessera_formats::payout::PayoutAddress>,
}

/// The operator's and the auditor's routes over `state`.
pub(crate) fn router(state: HttpState) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/metrics", get(metrics_text))
        .route("/v1/audit", get(audit_status))
        .route("/v1/receipts", get(receipt_page))
        .route("/v1/rewards", get(rewards))
        .route("/v1/charter", axum::routing::post(next_charter))
        .route("/", get(dashboard))
        .with_state(state)
}

/// The node's `/status` document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// The node's peer id.
    pub peer_id: String,
    /// Its listen addresses.
    pub addresses: Vec<String>,
    /// Pieces held.
    pub pieces: u64,
    /// Bytes of pieces held.
    pub bytes_used: u64,
    /// Bytes of capacity free.
    pub bytes_free: u64,
    /// The configured capacity.
    pub capacity: u64,
    /// Peers connected now.
    pub peers_connected: usize,
    /// Tessera's version.
    pub version: String,
    /// Whether the node can keep pieces: its data directory and index are there and
    /// writable. An unhealthy node refuses uploads.
    #[serde(default = "healthy_by_default")]
    pub healthy: bool,
    /// Why not, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Held pieces that could not be read at their last check (kept, checked again).
    #[serde(default)]
    pub pieces_unreadable: u64,
    /// The network's id, from its charter; none on the unnamed network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The CID of the network's charter in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charter: Option<String>,
    /// Its epoch: 0 for the founding charter, one more for each committee change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charter_epoch: Option<u64>,
    /// Where the node's rewards are paid, as it declares on the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payout_address: Option<String>,
    /// Whether peers can dial the node: `public`, `mapped` (a port on its router, UPnP),
    /// `punchable` or `symmetric` (behind a NAT that a hole punch gets through, or not),
    /// `private` (behind a NAT of a kind not known yet) or `unknown` (not tested yet).
    #[serde(default)]
    pub reachability: tessera_net::Reachability,
    /// The addresses peers dialled it back at, and its relayed addresses.
    #[serde(default)]
    pub external_addresses: Vec<String>,
    /// The relayed addresses it holds reservations for (behind a NAT).
    #[serde(default)]
    pub relay_addresses: Vec<String>,
    /// How peers were reached: direct and relayed connections, hole punches, bytes.
    #[serde(default)]
    pub paths: tessera_net::PathStats,
    /// What it relayed for others.
    #[serde(default)]
    pub relay: tessera_net::RelayStats,
    /// Bytes each network protocol carried since the node started, most first.
    #[serde(default)]
    pub traffic: Vec<tessera_net::ProtocolTraffic>,
    /// The storage service's bytes, this month's total, and the operator's limits.
    #[serde(default)]
    pub bandwidth: crate::bandwidth::BandwidthStatus,
    /// This process: `cpu_seconds`, `resident_bytes`, `virtual_bytes`, `threads`,
    /// `open_fds`, `uptime_seconds` (those /proc gives).
    #[serde(default)]
    pub process: std::collections::BTreeMap<String, f64>,
}

/// A node from before health was reported said nothing of it.
fn healthy_by_default() -> bool {
    true
}

async fn status(State(state): State<HttpState>) -> impl IntoResponse {
    let usage = state.store.usage();
    let store = state.store.clone();
    let health = blocking(move || store.health())
        .await
        .map_err(|e| e.to_string());
    match state.client.info().await {
        Ok(info) => Json(Status {
            healthy: health.is_ok(),
            problem: health.err(),
            pieces_unreadable: usage.unreadable,
            peer_id: info.peer_id.to_string(),
            addresses: info.listen_addrs.iter().map(ToString::to_string).collect(),
            pieces: usage.pieces,
            bytes_used: usage.used,
            bytes_free: usage.free(),
            capacity: usage.capacity,
            peers_connected: info.connected_peers.len(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            network: state.charter.as_ref().map(|c| c.network()),
            charter: state.charter.as_ref().map(|c| c.get().cid.to_string()),
            charter_epoch: state.charter.as_ref().map(|c| c.get().signed.charter.epoch),
            payout_address: state.payout.map(|a| a.to_string()),
            reachability: info.reachability,
            external_addresses: info
                .external_addrs
                .iter()
                .map(ToString::to_string)
                .collect(),
            relay_addresses: info.relay_addrs.iter().map(ToString::to_string).collect(),
            paths: info.paths,
            relay: info.relay,
            traffic: info.traffic,
            bandwidth: state.metrics.bandwidth().unwrap_or_default(),
            process: crate::metrics::process_figures()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        })
        .into_response(),
        Err(e) => ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "network_stopped",
            e.to_string(),
        )
        .into_response(),
    }
}

async fn audit_status(State(state): State<HttpState>) -> Json<AuditStatus> {
    let view = state.audit.lock();
    Json(view.status(&state.metrics))
}

/// Most receipts one `/v1/receipts` page holds.
pub const MAX_RECEIPTS_PER_PAGE: usize = 1000;

/// Query of `GET /v1/receipts`.
#[derive(Debug, Clone, Deserialize)]
struct ReceiptQuery {
    /// From this time on (ms since the epoch).
    #[serde(default)]
    from: u64,
    /// Before this time (ms).
    to: Option<u64>,
    /// The `next` of the page before.
    after: Option<String>,
    /// At most this many (and at most [`MAX_RECEIPTS_PER_PAGE`]).
    limit: Option<usize>,
}

/// A page of `GET /v1/receipts`: receipt blocks (DAG-CBOR, hex), oldest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReceiptPage {
    /// The blocks, each hex-encoded.
    pub receipts: Vec<String>,
    /// Pass as `after` for the next page; none when this is the last.
    pub next: Option<String>,
}

async fn receipt_page(
    State(state): State<HttpState>,
    Query(query): Query<ReceiptQuery>,
) -> impl IntoResponse {
    let bad = |message: String| ApiError::bad_request(message).into_response();
    let after = match query.after.as_deref().map(hex::decode).transpose() {
        Ok(after) => after,
        Err(e) => return bad(format!("after: {e}")),
    };
    let limit = query
        .limit
        .unwrap_or(MAX_RECEIPTS_PER_PAGE)
        .clamp(1, MAX_RECEIPTS_PER_PAGE);
    let (from, to) = (query.from, query.to.unwrap_or(u64::MAX));
    let store = state.receipts.clone();
    match blocking(move || store.between(from, to, after.as_deref(), limit)).await {
        Ok((blocks, next)) => Json(ReceiptPage {
            receipts: blocks.iter().map(hex::encode).collect(),
            next: next.map(hex::encode),
        })
        .into_response(),
        Err(e) => ApiError::internal(e.to_string()).into_response(),
    }
}

/// The operator's dashboard: one page that reads `/status`, `/v1/audit` and `/v1/rewards`.
async fn dashboard() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("dashboard.html"))
}

/// Most receipts one `/v1/rewards` answer reads: a longer window counts the newest first.
pub const MAX_REWARD_RECEIPTS: usize = 1_000_000;

/// Query of `GET /v1/rewards`.
#[derive(Debug, Clone, Deserialize)]
struct RewardsQuery {
    /// From this time (ms) [default: 24 hours before `to`].
    from: Option<u64>,
    /// Before this time (ms) [default: now].
    to: Option<u64>,
    /// Most milliseconds one passed audit credits [default: 24 hours].
    cap: Option<u64>,
}

/// One node's row of `GET /v1/rewards`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RewardRow {
    /// The node's key (hex).
    pub node: String,
    /// Its peer id.
    pub peer_id: String,
    /// Storage it proved, in GiB-hours.
    pub gib_hours: f64,
    /// The same exactly, in byte-milliseconds: what settlement pays.
    #[serde(default)]
    pub byte_ms: u128,
    /// The same in GiB-months (730.5 hours): what a contributor reads off a storage bill.
    #[serde(default)]
    pub gib_months: f64,
    /// Audits it passed.
    pub passed: u64,
    /// Audits it failed.
    pub failed: u64,
    /// Whether the row is the answering node's own.
    #[serde(default)]
    pub own: bool,
}

/// `GET /v1/rewards`: the ledger of the receipts this node holds, for a window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rewards {
    /// Window start (ms).
    pub from_ms: u64,
    /// Window end (ms).
    pub to_ms: u64,
    /// Receipts that counted.
    pub receipts: usize,
    /// Receipts that did not: undecodable, or (under a charter) by a key not assigned the
    /// piece, or naming another size than its layout.
    #[serde(default)]
    pub not_counted: usize,
    /// Whether more receipts than [`MAX_REWARD_RECEIPTS`] fell in the window.
    pub truncated: bool,
    /// Per audited node.
    pub nodes: Vec<RewardRow>,
}

async fn rewards(
    State(state): State<HttpState>,
    Query(query): Query<RewardsQuery>,
) -> impl IntoResponse {
    const DAY_MS: u64 = 24 * 60 * 60 * 1000;
    let to = query.to.unwrap_or_else(now_ms);
    let from = query.from.unwrap_or_else(|| to.saturating_sub(DAY_MS));
    let cap = query.cap.unwrap_or(DAY_MS);
    let (store, registry) = (state.receipts.clone(), state.registry.clone());
    // Receipts are judged under the charter in force now.
    let charter = state
        .charter
        .as_ref()
        .map(tessera_node::charter::CurrentCharter::get);
    let scope = charter.as_ref().map(|c| AuditScope::of(&c.signed.charter));
    // Receipts up to a cap before the window show what each first pass in it follows.
    let read_from = from.saturating_sub(cap);
    let computed = blocking(move || {
        // Under a charter a pass names its layout's size: the sizes of every admitted piece.
        let sizes = match (&scope, &registry) {
            (Some(scope), Some(registry)) => registry
                .audit_set_in(crate::audit::AuditConfig::default().max_pieces, scope)
                .map(|set| piece_sizes(&set))
                .map_err(|e| e.to_string())?,
            _ => Default::default(),
        };
        let mut blocks = Vec::new();
        let mut after = None;
        loop {
            let (page, next) = store
                .between(read_from, to, after.as_deref(), 10_000)
                .map_err(|e: ReceiptStoreError| e.to_string())?;
            blocks.extend(page);
            if blocks.len() >= MAX_REWARD_RECEIPTS {
                blocks.truncate(MAX_REWARD_RECEIPTS);
                return Ok::<_, String>((blocks, true, sizes));
            }
            match next {
                Some(next) => after = Some(next),
                None => return Ok((blocks, false, sizes)),
            }
        }
    })
    .await;
    let (blocks, truncated, sizes) = match computed {
        Ok(found) => found,
        Err(e) => return ApiError::internal(e.to_string()).into_response(),
    };
    let mut tally = Tally::new(MAX_REWARD_RECEIPTS);
    if let Err(e) = tally.add_blocks("store", blocks.into_iter().map(Ok)) {
        return ApiError::internal(e.to_string()).into_response();
    }
    let proven = match &state.charter {
        Some(charter) => {
            // Each receipt is judged by the epoch in force when it was made.
            let epochs = charter.epochs();
            let size = |piece: &cid::Cid| sizes.get(piece).copied();
            let rules: Vec<ReceiptRules> = epochs
                .iter()
                .map(|c| ReceiptRules::new(&c.signed.charter, c.cid, &size))
                .collect();
            tally.proven_under(from, to, cap, |r| {
                let at = epochs
                    .iter()
                    .rposition(|c| c.signed.charter.starts_ms <= r.receipt.time_ms)
                    .unwrap_or(0);
                rules[at].check(r)
            })
        }
        None => tally.proven_under(from, to, cap, |_| Ok::<(), NotCounted>(())),
    };
    let me = state.client.peer_id().to_string();
    let mut nodes = proven.nodes;
    for row in &mut nodes {
        row.own = row.peer_id == me;
    }
    Json(Rewards {
        from_ms: from,
        to_ms: to,
        receipts: proven.receipts,
        not_counted: proven.rejected.len(),
        truncated,
        nodes,
    })
    .into_response()
}

/// What `POST /v1/charter` did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CharterAnswer {
    /// Whether the charter is the one in force now (false: an epoch taken already).
    pub advanced: bool,
    /// The epoch in force.
    pub epoch: u64,
    /// The CID of the charter in force.
    pub charter: String,
}

/// `POST /v1/charter` (a charter block): the network's next charter, taken when the
/// threshold of the committee in force signed it, and passed on to every node. Anyone may
/// bring it: the signatures are what count.
async fn next_charter(
    State(state): State<HttpState>,
    body: axum::body::Bytes,
) -> impl IntoResponse {
    let Some(current) = &state.charter else {
        return ApiError::bad_request("this node's network has no charter").into_response();
    };
    if body.len() > tessera_formats::charter::MAX_CHARTER_BYTES {
        return ApiError::bad_request("larger than a charter can be").into_response();
    }
    let next = match tessera_formats::charter::SignedCharter::from_block(&body) {
        Ok(next) => next,
        Err(e) => return ApiError::bad_request(format!("not a charter: {e}")).into_response(),
    };
    match current.advance(next) {
        Ok(advanced) => {
            if advanced && let Err(e) = state.client.publish(CHARTER_TOPIC, body.to_vec()).await {
                tracing::warn!(error = %e, "passing a new charter on failed");
            }
            let now = current.get();
            Json(CharterAnswer {
                advanced,
                epoch: now.signed.charter.epoch,
                charter: now.cid.to_string(),
            })
            .into_response()
        }
        Err(e) => ApiError::bad_request(format!("charter refused: {e}")).into_response(),
    }
}

async fn metrics_text(State(state): State<HttpState>) -> impl IntoResponse {
    let spares = state.audit.lock().dataset_spares();
    state.metrics.set_dataset_spares(&spares);
    if let Ok(info) = state.client.info().await {
        state.metrics.set_network(info.paths, info.relay);
        state.metrics.set_protocol_traffic(&info.traffic);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(state.store.usage()),
    )
}
