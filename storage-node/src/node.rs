//! A whole storage node: identity, piece store, network, protocol service and HTTP port, wired
//! together and started with one call.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};
use tessera_formats::time::now_ms;

use axum::{
    Json, Router,
    extract::{Query, State},
    http::header,
    response::IntoResponse,
    routing::get,
};
use serde::{Deserialize, Serialize};
use tessera_dataset_registry::protocol::{MAX_ANNOUNCEMENT, REGISTRY_TOPIC, RegistryProtocol};
use tessera_dataset_registry::{Registry, RegistryConfig};
use tessera_net::{Client, Multiaddr, NetworkConfig, TopicEvent, identity};
use tessera_node::{
    blocking::blocking,
    db::DEFAULT,
    http::{ApiError, one_error_shape},
};
use tessera_storage_protocol::{ChallengeProtocol, PieceProtocol};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use tessera_formats::{SignedReceipt, receipt::MAX_RECEIPT_BYTES, record::SigningKey};

use crate::{
    audit::{
        AuditConfig, AuditStatus, Auditor, AuditorParts, RECEIPT_TOPIC, SharedView, signing_key,
    },
    metrics::Metrics,
    receipts::{ReceiptStore, ReceiptStoreError},
    service::{ServiceLimits, serve},
    store::{PieceStore, StartupReport, StoreConfig, StoreError},
};

/// Everything a storage node is started with. The CLI fills it from a TOML file and flags.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NodeConfig {
    /// Where the node keeps its identity, index and pieces.
    pub data_dir: PathBuf,
    /// libp2p listen addresses.
    pub listen: Vec<Multiaddr>,
    /// Peers to join through (`/ip4/…/tcp/…/p2p/PEER_ID`).
    #[serde(default)]
    pub bootstrap: Vec<Multiaddr>,
    /// Most bytes of pieces to keep.
    pub capacity: u64,
    /// Largest single piece accepted.
    #[serde(default = "default_max_piece")]
    pub max_piece: u64,
    /// Address of the HTTP port (`/status`, `/metrics`); none if absent.
    #[serde(default)]
    pub http: Option<SocketAddr>,
    /// Seconds between two checks of every held piece against its CID; 0 turns them off.
    #[serde(default = "default_scrub_interval")]
    pub scrub_interval_secs: u64,
    /// Run the dataset registry role: keep version records, answer `/tessera/registry/1`,
    /// follow announcements and serve the registry's HTTP API.
    #[serde(default = "default_registry")]
    pub registry: bool,
    /// Seconds between two audit rounds; 0 turns the auditor role off. It needs the registry
    /// role, whose datasets it audits.
    #[serde(default = "default_audit_interval")]
    pub audit_interval_secs: u64,
    /// Seconds in which every known piece is challenged once.
    #[serde(default = "default_audit_period")]
    pub audit_period_secs: u64,
    /// Failures in a row after which a node fails a piece.
    #[serde(default = "default_audit_failures")]
    pub audit_failures: u32,
    /// Seconds a holder that does not answer at all is waited for, from its first failed
    /// audit, before its pieces count as lost.
    #[serde(default = "default_audit_grace")]
    pub audit_grace_secs: u64,
    /// Rebuild lost pieces of the datasets it audits.
    #[serde(default = "default_repair")]
    pub repair: bool,
    /// A shard is repaired once fewer than `k + ceil(repair_spare * m)` of its pieces are
    /// intact (0..=1; at least one spare piece).
    #[serde(default = "default_repair_spare")]
    pub repair_spare: f64,
}

fn default_audit_grace() -> u64 {
    AuditConfig::default().grace.as_secs()
}

fn default_repair() -> bool {
    AuditConfig::default().repair
}

fn default_repair_spare() -> f64 {
    AuditConfig::default().spare
}

fn default_audit_interval() -> u64 {
    AuditConfig::default().interval.as_secs()
}

fn default_audit_period() -> u64 {
    AuditConfig::default().period.as_secs()
}

fn default_audit_failures() -> u32 {
    AuditConfig::default().failures
}

impl NodeConfig {
    /// A node in `data_dir` with every default (no listen address, no bootstrap peer, 10 GiB).
    pub fn with_defaults(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            listen: Vec::new(),
            bootstrap: Vec::new(),
            capacity: 10 << 30,
            max_piece: default_max_piece(),
            http: None,
            scrub_interval_secs: default_scrub_interval(),
            registry: default_registry(),
            audit_interval_secs: default_audit_interval(),
            audit_period_secs: default_audit_period(),
            audit_failures: default_audit_failures(),
            audit_grace_secs: default_audit_grace(),
            repair: default_repair(),
            repair_spare: default_repair_spare(),
        }
    }

    /// The auditor's settings; none when the role is off.
    pub fn audit(&self) -> Option<AuditConfig> {
        (self.audit_interval_secs > 0 && self.registry).then(|| AuditConfig {
            interval: Duration::from_secs(self.audit_interval_secs),
            period: Duration::from_secs(self.audit_period_secs.max(self.audit_interval_secs)),
            failures: self.audit_failures.max(1),
            grace: Duration::from_secs(self.audit_grace_secs),
            repair: self.repair,
            spare: self.repair_spare,
            ..AuditConfig::default()
        })
    }
}

fn default_registry() -> bool {
    true
}

fn default_max_piece() -> u64 {
    1 << 30
}

/// Once a day: a full read of the disk, spread thin.
pub const DEFAULT_SCRUB_INTERVAL_SECS: u64 = 24 * 60 * 60;

fn default_scrub_interval() -> u64 {
    DEFAULT_SCRUB_INTERVAL_SECS
}

/// The node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The identity could not be loaded or created.
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    /// The piece store could not be opened.
    #[error("piece store: {0}")]
    Store(#[from] StoreError),
    /// The network could not start.
    #[error(transparent)]
    Net(#[from] tessera_net::NetError),
    /// The registry's database could not be opened.
    #[error("registry: {0}")]
    Registry(#[from] tessera_dataset_registry::AdmitError),
    /// The receipt store could not be opened.
    #[error(transparent)]
    Receipts(#[from] ReceiptStoreError),
    /// The identity is not an Ed25519 key, which receipts need.
    #[error("the node's identity is not an Ed25519 key")]
    NotEd25519,
    /// The HTTP port could not be bound.
    #[error("HTTP port {addr}: {source}")]
    Http {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A running storage node.
#[derive(Debug)]
pub struct StorageNode {
    /// Handle to its network.
    pub client: Client,
    /// Its piece store.
    pub store: PieceStore,
    /// Its counters.
    pub metrics: Arc<Metrics>,
    /// Its libp2p addresses, each ending in `/p2p/PEER_ID`.
    pub addresses: Vec<Multiaddr>,
    /// The bound HTTP address, if any.
    pub http: Option<SocketAddr>,
    /// What the store's start-up check found.
    pub startup: StartupReport,
    /// The registry role, if it runs.
    pub registry: Option<Registry>,
    /// The audit receipts it keeps.
    pub receipts: Arc<ReceiptStore>,
    /// What its auditor knows (shown on `/v1/audit`).
    pub audit_view: SharedView,
    /// The key that signs its receipts (its identity's).
    key: SigningKey,
    data_dir: PathBuf,
    tasks: Vec<JoinHandle<()>>,
}

/// The column of the node's database that holds audit receipts.
const RECEIPTS_COLUMN: &str = "receipts";
/// The column that holds the registry's records.
const REGISTRY_COLUMN: &str = "registry";

impl StorageNode {
    /// Starts a node: opens the store (checking it against the disk), loads or creates the
    /// identity, joins the network, serves the protocols and the HTTP port, and re-announces
    /// every held piece.
    pub async fn start(config: NodeConfig) -> Result<Self, NodeError> {
        let keypair = identity::load_or_create(&config.data_dir)?;
        let key = signing_key(&keypair).ok_or(NodeError::NotEd25519)?;
        let store_config = StoreConfig {
            dir: config.data_dir.clone(),
            capacity: config.capacity,
            max_piece: config.max_piece,
        };
        // One database for every role of the node, a column each.
        let (db, store, startup) = tokio::task::spawn_blocking(move || {
            let db = PieceStore::open_db(&store_config, &[RECEIPTS_COLUMN, REGISTRY_COLUMN])?;
            let (store, startup) = PieceStore::open_in(&store_config, db.column(DEFAULT)?)?;
            Ok::<_, StoreError>((db, store, startup))
        })
        .await
        .map_err(|e| StoreError::Io {
            what: "opening the store".into(),
            source: std::io::Error::other(e.to_string()),
        })??;
        let mut net_config = NetworkConfig {
            listen: config.listen.clone(),
            bootstrap: config.bootstrap.clone(),
            ..NetworkConfig::default()
        }
        .serving::<PieceProtocol>()
        .serving::<ChallengeProtocol>();
        if config.registry {
            net_config = net_config
                .serving::<RegistryProtocol>()
                .following(REGISTRY_TOPIC, MAX_ANNOUNCEMENT)
                .following(RECEIPT_TOPIC, MAX_RECEIPT_BYTES);
        }
        let mut network = tessera_net::start(keypair, net_config).await?;
        let (Some(pieces), Some(challenges)) = (network.inbound(), network.inbound()) else {
            return Err(NodeError::Net(tessera_net::NetError::Build(
                "the piece and challenge protocols are not served".into(),
            )));
        };
        let registry_role = (network.inbound(), network.topic(REGISTRY_TOPIC));
        let shared_receipts = network.topic(RECEIPT_TOPIC);
        let client = network.client.clone();
        let info = client.info().await?;
        let addresses = info.dialable_addrs();
        let metrics = Arc::new(Metrics::new());
        let mut tasks = vec![network.task];
        tasks.push(tokio::spawn(serve(
            client.clone(),
            store.clone(),
            metrics.clone(),
            ServiceLimits::default(),
            pieces,
            challenges,
        )));
        tasks.push(tokio::spawn(announce_held(client.clone(), store.clone())));
        let registry = match registry_role {
            (Some(requests), Some(news)) => {
                let registry_config = RegistryConfig::new(config.data_dir.join("registry"));
                let column = db.column(REGISTRY_COLUMN).map_err(StoreError::from)?;
                let registry = Registry::open_in(&registry_config, &db, column, client.clone())?;
                tasks.push(tokio::spawn(tessera_dataset_registry::run(
                    registry.clone(),
                    registry_config,
                    requests,
                    news,
                )));
                Some(registry)
            }
            _ => None,
        };
        let receipts = db.column(RECEIPTS_COLUMN).map_err(StoreError::from)?;
        db.import(&receipts, &config.data_dir.join("receipts"))
            .map_err(ReceiptStoreError::from)?;
        let receipts = Arc::new(ReceiptStore::in_column(receipts));
        tasks.push(tokio::spawn(keep_shared_receipts(
            receipts.clone(),
            shared_receipts,
        )));
        let audit_view = SharedView::default();
        if let (Some(audit), Some(registry)) = (config.audit(), &registry) {
            let auditor = Auditor::new(
                AuditorParts {
                    client: client.clone(),
                    registry: registry.store().clone(),
                    receipts: receipts.clone(),
                    store: Some(store.clone()),
                    key: key.clone(),
                    metrics: metrics.clone(),
                    view: audit_view.clone(),
                    spool: config.data_dir.join("repair"),
                },
                audit,
            );
            tasks.push(tokio::spawn(auditor.run()));
        }
        if config.scrub_interval_secs > 0 {
            tasks.push(tokio::spawn(scrub_periodically(
                client.clone(),
                store.clone(),
                metrics.clone(),
                Duration::from_secs(config.scrub_interval_secs),
            )));
        }

        let http = match config.http {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| NodeError::Http { addr, source })?;
                let bound = listener
                    .local_addr()
                    .map_err(|source| NodeError::Http { addr, source })?;
                let state = HttpState {
                    client: client.clone(),
                    store: store.clone(),
                    metrics: metrics.clone(),
                    receipts: receipts.clone(),
                    audit: audit_view.clone(),
                };
                let mut router = Router::new()
                    .route("/status", get(status))
                    .route("/metrics", get(metrics_text))
                    .route("/v1/audit", get(audit_status))
                    .route("/v1/receipts", get(receipt_page))
                    .route("/v1/rewards", get(rewards))
                    .route("/", get(dashboard))
                    .with_state(state);
                if let Some(registry) = &registry {
                    router = router.merge(tessera_dataset_registry::http::router(registry.clone()));
                }
                let router = one_error_shape(router);
                tasks.push(tokio::spawn(async move {
                    if let Err(e) = axum::serve(listener, router).await {
                        warn!(error = %e, "HTTP port stopped");
                    }
                }));
                info!(%bound, "HTTP port");
                Some(bound)
            }
            None => None,
        };
        info!(peer_id = %info.peer_id, ?addresses, pieces = startup.pieces, "storage node started");
        Ok(Self {
            client,
            store,
            metrics,
            addresses,
            http,
            startup,
            registry,
            receipts,
            audit_view,
            key,
            data_dir: config.data_dir,
            tasks,
        })
    }

    /// An auditor with this node's key, registry and receipts, for driving rounds by hand
    /// (tests, an operator's one-off audit); none without the registry role.
    pub fn auditor(&self, config: AuditConfig) -> Option<Auditor> {
        let registry = self.registry.as_ref()?;
        Some(Auditor::new(
            AuditorParts {
                client: self.client.clone(),
                registry: registry.store().clone(),
                receipts: self.receipts.clone(),
                store: Some(self.store.clone()),
                key: self.key.clone(),
                metrics: self.metrics.clone(),
                view: self.audit_view.clone(),
                spool: self.data_dir.join("repair"),
            },
            config,
        ))
    }

    /// Stops every task of the node (network, service, HTTP) and waits until they are gone:
    /// its connections and listeners are closed when this returns. The store closes when the
    /// last handle to it is dropped (a request still being answered holds one briefly).
    pub async fn shutdown(self) {
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Re-announces every held piece after a start; the DHT republishes them from then on.
async fn announce_held(client: Client, store: PieceStore) {
    // Give the bootstrap connections a moment so the records reach other nodes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = match blocking(move || store.list()).await {
        Ok(held) => held,
        Err(e) => return warn!(error = %e, "listing held pieces failed"),
    };
    for (cid, _) in held {
        if let Err(e) = client.start_providing(cid).await {
            warn!(%cid, error = %e, "announcing a held piece failed");
        }
    }
}

/// Re-hashes every held piece now and then; a piece that no longer matches its CID is dropped
/// and no longer announced, so the network rebuilds it from the other pieces. A piece that
/// cannot be read is kept and tried again at the next pass.
async fn scrub_periodically(
    client: Client,
    store: PieceStore,
    metrics: Arc<Metrics>,
    every: Duration,
) {
    let mut ticks = tokio::time::interval(every);
    // The first tick fires at once; a node that just started has already checked its index.
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let pass = store.clone();
        let report = match blocking(move || pass.scrub()).await {
            Ok(report) => report,
            Err(e) => {
                warn!(error = %e, "checking held pieces failed");
                continue;
            }
        };
        for cid in report.bad {
            metrics.failed_check();
            let _ = client.stop_providing(cid).await;
        }
    }
}

/// How long receipts are kept: what `tessera rewards` can count back to.
pub const RECEIPT_RETENTION: Duration = Duration::from_secs(90 * 24 * 60 * 60);
/// How far ahead of this node's clock a shared receipt may be dated.
const RECEIPT_CLOCK_SKEW_MS: u64 = 10 * 60 * 1000;

/// Keeps the receipts other auditors share on the receipt topic: those that verify and are
/// dated within the retention (and not in the future); the rest are dropped. Receipts past
/// the retention are pruned every hour.
async fn keep_shared_receipts(
    receipts: Arc<ReceiptStore>,
    mut shared: Option<tokio::sync::mpsc::Receiver<TopicEvent>>,
) {
    let retention = u64::try_from(RECEIPT_RETENTION.as_millis()).unwrap_or(u64::MAX);
    let mut prune = tokio::time::interval(Duration::from_secs(60 * 60));
    loop {
        let next = async {
            match &mut shared {
                Some(shared) => shared.recv().await,
                // A node that does not follow the topic only prunes what it signed itself.
                None => std::future::pending().await,
            }
        };
        let data = tokio::select! {
            message = next => match message {
                Some(TopicEvent::Message { data, .. }) => data,
                Some(TopicEvent::PeerJoined { .. }) => continue,
                None => return,
            },
            _ = prune.tick() => {
                let store = receipts.clone();
                let before = now_ms().saturating_sub(retention);
                match blocking(move || store.prune(before)).await {
                    Ok(n) if n > 0 => debug!(pruned = n, "old receipts pruned"),
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "pruning receipts failed"),
                }
                continue;
            }
        };
        let store = receipts.clone();
        let kept = blocking(move || {
            let receipt = SignedReceipt::from_block(&data)?;
            let (now, time) = (now_ms(), receipt.receipt.time_ms);
            if time > now.saturating_add(RECEIPT_CLOCK_SKEW_MS)
                || time < now.saturating_sub(retention)
            {
                return Ok(None);
            }
            store.insert(&receipt).map(Some)
        })
        .await;
        match kept {
            Err(e) => debug!(error = %e, "a shared receipt was refused"),
            Ok(None) => debug!("a shared receipt dated outside the retention was dropped"),
            Ok(Some(_)) => {}
        }
    }
}

#[derive(Clone)]
struct HttpState {
    client: Client,
    store: PieceStore,
    metrics: Arc<Metrics>,
    receipts: Arc<ReceiptStore>,
    audit: SharedView,
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
}

/// A node from before health was reported said nothing of it.
fn healthy_by_default() -> bool {
    true
}

async fn status(State(state): State<HttpState>) -> impl IntoResponse {
    let usage = state.store.usage();
    let store = state.store.clone();
    let health = tokio::task::spawn_blocking(move || store.health())
        .await
        .unwrap_or_else(|e| Err(format!("health check failed: {e}")));
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
    /// Audits it passed.
    pub passed: u64,
    /// Audits it failed.
    pub failed: u64,
}

/// `GET /v1/rewards`: the ledger of the receipts this node holds, for a window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rewards {
    /// Window start (ms).
    pub from_ms: u64,
    /// Window end (ms).
    pub to_ms: u64,
    /// Receipts read.
    pub receipts: usize,
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
    let store = state.receipts.clone();
    let computed = blocking(move || {
        let mut blocks = Vec::new();
        let mut after = None;
        loop {
            let (page, next) = store.between(from, to, after.as_deref(), 10_000)?;
            blocks.extend(page);
            if blocks.len() >= MAX_REWARD_RECEIPTS {
                blocks.truncate(MAX_REWARD_RECEIPTS);
                return Ok::<_, ReceiptStoreError>((blocks, true));
            }
            match next {
                Some(next) => after = Some(next),
                None => return Ok((blocks, false)),
            }
        }
    })
    .await;
    let (blocks, truncated) = match computed {
        Ok(found) => found,
        Err(e) => return ApiError::internal(e.to_string()).into_response(),
    };
    let (receipts, _) = tessera_proofs::decode_blocks(&blocks);
    let ledger = tessera_proofs::ledger(&receipts, from, to, cap);
    Json(Rewards {
        from_ms: from,
        to_ms: to,
        receipts: receipts.len(),
        truncated,
        nodes: reward_rows(&ledger),
    })
    .into_response()
}

/// A ledger's rows, one per audited node, in key order: what `/v1/rewards` and
/// `tessera rewards` show.
pub fn reward_rows(ledger: &tessera_proofs::Ledger) -> Vec<RewardRow> {
    ledger
        .nodes
        .iter()
        .map(|(key, proven)| RewardRow {
            node: key.to_string(),
            peer_id: crate::audit::peer_of(key).map_or_else(|| "-".into(), |p| p.to_string()),
            gib_hours: proven.gib_hours(),
            passed: proven.passed,
            failed: proven.failed,
        })
        .collect()
}

async fn metrics_text(State(state): State<HttpState>) -> impl IntoResponse {
    let spares = state.audit.lock().dataset_spares();
    state.metrics.set_dataset_spares(&spares);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(state.store.usage()),
    )
}
