//! A whole scraper node: identity, network, the crawl coordinator role, the HTTP API for
//! crawls, and a worker, wired together and started with one call.
//!
//! ```text
//! POST /v1/crawls (JSON spec) ─▶ coordinator ─▶ 201 {"id"}    (POSTs pass the HTTP guard)
//! GET  /v1/crawls             ─▶ every crawl's status (JSON)
//! GET  /v1/crawls/{id}        ─▶ one crawl's status
//! POST /v1/crawls/{id}/stop   ─▶ no new leases
//! /tessera/crawl/2            ─▶ other scraper nodes lease from this node's coordinator
//! worker                      ─▶ leases from --coordinator PEER, or from this node's own
//! --bootstrap STORAGE NODES   ─▶ shards stored in the network; finished crawls published
//! ```

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, Path, State, rejection::JsonRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use tessera_client::{ClientError, Session, session::connect};
use tessera_dataset_registry::publisher_key::{self, KeyFileError};
use tessera_formats::{PublisherKey, record::Signer};
use tessera_net::{Multiaddr, NetworkConfig, PeerId, Protocol};
use tessera_node::{
    builder::{Assembly, BuildError, Node, NodeBuilder},
    charter::CharterFileError,
    config::InvalidSetting,
    http::ApiError,
};
use tracing::{info, warn};

pub use crate::config::ScraperConfig;
use crate::{
    address::NetworkPolicy,
    api_client::Started,
    coordinator::{Coordinator, CoordinatorError, CrawlStatus},
    crawl_store::{CrawlStore, CrawlStoreError},
    http_guard::{self, HttpGuard, load_or_create_token},
    protocol::CrawlProtocol,
    publish::Publisher,
    remote::{RemoteCoordinator, serve},
    spec::CrawlSpec,
    stats::{WorkerCounts, WorkerStats},
    worker::{Worker, WorkerConfig},
};

/// Largest crawl spec accepted over HTTP.
const MAX_SPEC_BYTES: usize = 1024 * 1024;

/// The column of the node's database that holds the coordinator's crawls.
const CRAWLS_COLUMN: &str = "crawls";

/// The node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScraperNodeError {
    /// A setting it cannot run with.
    #[error("config: {0}")]
    Config(#[from] InvalidSetting),
    /// The identity, database, network or HTTP port could not be set up.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The charter could not be used.
    #[error(transparent)]
    Charter(#[from] CharterFileError),
    /// No storage node answered.
    #[error("joining the storage network: {0}")]
    Storage(#[source] ClientError),
    /// The publisher key could not be loaded or created.
    #[error(transparent)]
    PublisherKey(#[from] KeyFileError),
    /// The configured publisher key is not there.
    #[error("no publisher key at {}", .0.display())]
    NoPublisherKey(PathBuf),
    /// The crawl store could not be opened.
    #[error(transparent)]
    Coordinator(#[from] CoordinatorError),
    /// The API token could not be read or created.
    #[error("API token in {path}: {source}")]
    ApiToken {
        /// The data directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A running scraper node.
#[derive(Debug)]
pub struct ScraperNode {
    /// Its peer id (the key that signs its rows).
    pub peer_id: PeerId,
    /// Addresses other nodes reach it at, with `/p2p/PEER_ID`.
    pub addresses: Vec<Multiaddr>,
    /// The HTTP API's bound address.
    pub http: Option<SocketAddr>,
    /// The coordinator, when the node runs that role.
    pub coordinator: Option<Coordinator>,
    /// The publisher its finished crawls are published as, when it coordinates and has a
    /// storage network.
    pub publisher: Option<PublisherKey>,
    /// What its worker did.
    pub stats: Arc<WorkerStats>,
    node: Node,
}

impl ScraperNode {
    /// Starts the node: its coordinator role (when it coordinates) and its worker, on the
    /// node builder.
    pub async fn start(config: ScraperConfig) -> Result<Self, ScraperNodeError> {
        config.check()?;
        let charter = tessera_node::charter::load_setting(config.charter.as_deref())?;
        let builder = NodeBuilder::new(
            &config.data_dir,
            NetworkConfig {
                network: charter.map(|c| c.network().to_string()),
                listen: config.listen.clone(),
                bootstrap: config.bootstrap.clone(),
                // A scraper node asks the DHT; it keeps none of its records. Its bandwidth is
                // for crawling: it relays for no one, but holds relay slots when behind a NAT,
                // so that its coordinator's peers can reach it.
                dht_server: false,
                relay: tessera_net::RelayBudget::off(),
                ..NetworkConfig::default()
            },
        );
        let mut node = plan(builder, &config).start().await?;
        let roles = start_roles(&mut node, &config, "/").await?;
        let node = node.serve(config.http_addr()).await?;
        info!(peer_id = %node.client.peer_id(), "scraper node started");
        Ok(Self {
            peer_id: node.client.peer_id(),
            addresses: node.addresses.clone(),
            http: node.http,
            coordinator: roles.coordinator,
            publisher: roles.publisher,
            stats: roles.stats,
            node,
        })
    }

    /// Stops the node: its HTTP port, then its worker (which closes and reports its open
    /// shards first), then its network.
    pub async fn shutdown(self) {
        self.node.shutdown().await;
    }
}

/// What the scraper roles need of a node before it starts: the coordinator's column and
/// protocol when it coordinates, and the coordinator's address to join through when it works
/// for another node's.
pub fn plan(builder: NodeBuilder, config: &ScraperConfig) -> NodeBuilder {
    let coordinator = config.coordinator.clone();
    let builder = builder.network(|mut n| {
        n.bootstrap.extend(coordinator);
        n
    });
    if config.coordinate {
        builder
            .column(CRAWLS_COLUMN)
            .network(|n| n.serving::<CrawlProtocol>())
    } else {
        builder
    }
}

/// The scraper roles of a running node.
#[derive(Debug)]
pub struct ScraperRoles {
    /// The coordinator, when the node runs that role.
    pub coordinator: Option<Coordinator>,
    /// The publisher finished crawls are published as, when it coordinates and has a storage
    /// network.
    pub publisher: Option<PublisherKey>,
    /// What its worker did.
    pub stats: Arc<WorkerStats>,
}

/// Starts the scraper roles on `node` (planned with [`plan`]): the coordinator when the node
/// coordinates, and a worker for it or for another node's; their routes, with the scraper's
/// dashboard at `dashboard_at`. The storage network is the one `config.bootstrap` names, or
/// this node's own when it is a storage node too.
pub async fn start_roles(
    node: &mut Assembly,
    config: &ScraperConfig,
    dashboard_at: &str,
) -> Result<ScraperRoles, ScraperNodeError> {
    config.check()?;
    let network = config.network_policy();
    if network.allow_private {
        warn!(
            "PRIVATE NETWORKS ALLOWED: this scraper node will fetch from loopback, LAN and \
             link-local addresses (--allow-private-networks); use it only for tests and demos"
        );
    }
    let configured_key = match &config.publisher_key {
        Some(path) => Some(
            publisher_key::load_signer(path)?
                .ok_or_else(|| ScraperNodeError::NoPublisherKey(path.clone()))?,
        ),
        None => None,
    };
    let remote = config.remote_coordinator()?;
    let storage = if config.bootstrap.is_empty() {
        warn!("no storage nodes (--bootstrap): shards stay on this node, crawls are not published");
        None
    } else {
        connect(&node.client, &config.bootstrap)
            .await
            .map_err(ScraperNodeError::Storage)?;
        Some(Arc::new(Session::with_client(node.client.clone())))
    };
    if let Some(address) = config.payout()? {
        tessera_node::payout::keep_declaring(node, address);
    }

    let (coordinator, publisher) = if config.coordinate {
        let key = match (&storage, configured_key) {
            (None, _) => None,
            (Some(_), Some(key)) => Some(key),
            (Some(_), None) => Some(own_publisher_key(&config.data_dir)?),
        };
        let (coordinator, publisher) = coordinator_role(node, config, key)?;
        (Some(coordinator), publisher)
    } else {
        (None, None)
    };
    let stats = Arc::new(WorkerStats::default());
    node.routes(
        Router::new()
            .route(dashboard_at, get(dashboard))
            .route("/v1/node", get(node_status))
            .with_state(NodeState {
                client: node.client.clone(),
                peer_id: node.client.peer_id().to_string(),
                addresses: node.addresses.iter().map(ToString::to_string).collect(),
                stats: stats.clone(),
                coordinator: coordinator.clone(),
                works_for: remote.map(|p| p.to_string()),
                publisher: publisher.map(|p| p.to_string()),
            }),
    );
    node.spawn(learn_own_addresses(node.client.clone(), network.clone()));
    let worker_config = WorkerConfig {
        out_dir: config.data_dir.join("shards"),
        network,
        idle_wait: Duration::from_secs(1),
        storage,
        limits: config.limits(),
    };
    let key = node.keypair.clone();
    // The worker closes and reports its open shards when told to stop, while the network is
    // still up.
    match (remote, &coordinator) {
        (Some(peer), _) => {
            let api = RemoteCoordinator::new(node.client.clone(), peer);
            let worker = Worker::new(api, key, worker_config).with_stats(stats.clone());
            node.spawn_graceful(|stop| worker.run(stop.cancelled_owned()));
        }
        (None, Some(c)) => {
            let worker = Worker::new(c.clone(), key, worker_config).with_stats(stats.clone());
            node.spawn_graceful(|stop| worker.run(stop.cancelled_owned()));
        }
        // `check` refuses a node that neither coordinates nor has a coordinator.
        (None, None) => {}
    }
    Ok(ScraperRoles {
        coordinator,
        publisher,
        stats,
    })
}

/// The coordinator role: crawls kept in their column (importing the database they once had
/// of their own), leased to workers over `/tessera/crawl/2`, started and watched over HTTP
/// behind the node's API token; finished crawls are published as `key` when there is one.
fn coordinator_role(
    node: &mut Assembly,
    config: &ScraperConfig,
    key: Option<Signer>,
) -> Result<(Coordinator, Option<PublisherKey>), ScraperNodeError> {
    let column = node
        .db
        .column(CRAWLS_COLUMN)
        .map_err(|e| CoordinatorError::from(CrawlStoreError::from(e)))?;
    node.db
        .import(&column, &config.data_dir.join("crawls"))
        .map_err(|e| CoordinatorError::from(CrawlStoreError::from(e)))?;
    let publisher_id = key.as_ref().map(|s| s.publisher);
    let publisher = key.map(|signer| Publisher {
        session: Session::with_client(node.client.clone()),
        signer,
        scratch: config.data_dir.join("checking"),
    });
    let coordinator = Coordinator::start_with(CrawlStore::in_column(column), publisher)?;
    if let Some(requests) = node.network.inbound::<CrawlProtocol>() {
        node.spawn(serve(coordinator.clone(), requests));
    }
    let token =
        load_or_create_token(&config.data_dir).map_err(|source| ScraperNodeError::ApiToken {
            path: config.data_dir.clone(),
            source,
        })?;
    let guard = HttpGuard::new(token, config.api_hosts.clone());
    node.routes(router(coordinator.clone(), guard));
    Ok((coordinator, publisher_id))
}

/// How often the node's own public addresses are read from the network.
const OWN_ADDRESSES_EVERY: Duration = Duration::from_secs(30);

/// Keeps the policy's own addresses to what peers see this node at, so that no crawl reaches
/// the contributor's own router or services on their public address.
async fn learn_own_addresses(client: tessera_net::Client, policy: NetworkPolicy) {
    let mut ticks = tokio::time::interval(OWN_ADDRESSES_EVERY);
    loop {
        ticks.tick().await;
        let Ok(info) = client.info().await else {
            return;
        };
        policy
            .own
            .set(info.observed_addrs.iter().filter_map(|addr| {
                addr.iter().find_map(|p| match p {
                    Protocol::Ip4(ip) => Some(std::net::IpAddr::V4(ip)),
                    Protocol::Ip6(ip) => Some(std::net::IpAddr::V6(ip)),
                    _ => None,
                })
            }));
    }
}

/// `publisher.key` in the data directory, created on first use: what finished crawls are
/// signed with when no key is configured.
fn own_publisher_key(data_dir: &std::path::Path) -> Result<Signer, ScraperNodeError> {
    let path = data_dir.join("publisher.key");
    let (key, created) = publisher_key::load_or_create_signer(&path)?;
    if created {
        info!(path = %path.display(), "publisher key created");
    }
    Ok(key)
}

/// What the dashboard and `GET /v1/node` read.
#[derive(Clone)]
struct NodeState {
    client: tessera_net::Client,
    peer_id: String,
    addresses: Vec<String>,
    stats: Arc<WorkerStats>,
    coordinator: Option<Coordinator>,
    works_for: Option<String>,
    publisher: Option<String>,
}

/// `GET /v1/node`: the scraper node at a glance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Its peer id: the key that signs its rows.
    pub peer_id: String,
    /// Its libp2p addresses.
    pub addresses: Vec<String>,
    /// Peers connected now.
    pub peers_connected: usize,
    /// Whether peers can dial it (`public`, `mapped`, `punchable`, `symmetric`, `private`,
    /// `unknown`): a coordinator must be dialable for workers at home to reach it.
    #[serde(default)]
    pub reachability: tessera_net::Reachability,
    /// The relayed addresses it holds slots for, behind a NAT.
    #[serde(default)]
    pub relay_addresses: Vec<String>,
    /// Whether it runs the coordinator role.
    pub coordinator: bool,
    /// The coordinator it works for, when not itself.
    pub works_for: Option<String>,
    /// The publisher key its finished crawls are signed with.
    pub publisher: Option<String>,
    /// What its worker did since it started.
    pub worker: WorkerCounts,
    /// The crawls it coordinates.
    pub crawls: Vec<CrawlStatus>,
    /// The nodes that asked it for work in the last 30 seconds (this one included when it
    /// works too).
    pub workers: Vec<String>,
    /// Tessera's version.
    pub version: String,
    /// Bytes each network protocol carried since the node started, most first (pages
    /// fetched from the web are counted in `worker`).
    #[serde(default)]
    pub traffic: Vec<tessera_net::ProtocolTraffic>,
}

async fn node_status(State(state): State<NodeState>) -> Response {
    let (peers, reachability, relay_addresses, traffic) = match state.client.info().await {
        Ok(info) => (
            info.connected_peers.len(),
            info.reachability,
            info.relay_addrs.iter().map(ToString::to_string).collect(),
            info.traffic,
        ),
        Err(e) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "network_stopped",
                e.to_string(),
            );
        }
    };
    let (crawls, workers) = match &state.coordinator {
        Some(c) => match (c.status().await, c.workers().await) {
            (Ok(all), Ok(workers)) => (all, workers),
            (Err(e), _) | (_, Err(e)) => return coordinator_error(e),
        },
        None => (Vec::new(), Vec::new()),
    };
    Json(NodeStatus {
        peer_id: state.peer_id.clone(),
        addresses: state.addresses.clone(),
        peers_connected: peers,
        reachability,
        relay_addresses,
        coordinator: state.coordinator.is_some(),
        works_for: state.works_for.clone(),
        publisher: state.publisher.clone(),
        worker: state.stats.counts(),
        crawls,
        workers,
        version: env!("CARGO_PKG_VERSION").to_string(),
        traffic,
    })
    .into_response()
}

/// The operator's dashboard: one page over `GET /v1/node`.
async fn dashboard() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("dashboard.html"))
}

/// The HTTP API over a coordinator; changes pass `guard`.
pub fn router(coordinator: Coordinator, guard: HttpGuard) -> Router {
    Router::new()
        .route("/v1/crawls", post(start_crawl).get(list_crawls))
        .route("/v1/crawls/{id}", get(one_crawl))
        .route("/v1/crawls/{id}/stop", post(stop_crawl))
        .layer(axum::middleware::from_fn_with_state(
            guard,
            http_guard::guard,
        ))
        .layer(DefaultBodyLimit::max(MAX_SPEC_BYTES))
        .with_state(coordinator)
}

fn error(status: StatusCode, code: &'static str, message: String) -> Response {
    ApiError::new(status, code, message).into_response()
}

fn coordinator_error(e: CoordinatorError) -> Response {
    match e {
        CoordinatorError::UnknownCrawl(_) => {
            error(StatusCode::NOT_FOUND, "unknown_crawl", e.to_string())
        }
        _ => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        ),
    }
}

async fn start_crawl(
    State(c): State<Coordinator>,
    body: Result<Json<CrawlSpec>, JsonRejection>,
) -> Response {
    let spec = match body {
        Ok(Json(spec)) => spec,
        Err(JsonRejection::BytesRejection(e)) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "spec_too_large",
                format!("{e}; at most {MAX_SPEC_BYTES} bytes"),
            );
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_spec", e.body_text()),
    };
    if let Err(e) = spec.check() {
        return error(StatusCode::BAD_REQUEST, "bad_spec", e.to_string());
    }
    match c.start_crawl(spec).await {
        Ok(id) => (StatusCode::CREATED, Json(Started { id })).into_response(),
        Err(e) => coordinator_error(e),
    }
}

async fn list_crawls(State(c): State<Coordinator>) -> Response {
    match c.status().await {
        Ok(all) => Json(all).into_response(),
        Err(e) => coordinator_error(e),
    }
}

async fn one_crawl(State(c): State<Coordinator>, Path(id): Path<String>) -> Response {
    match c.status().await {
        Ok(all) => match all.into_iter().find(|s: &CrawlStatus| s.id == id) {
            Some(status) => Json(status).into_response(),
            None => error(
                StatusCode::NOT_FOUND,
                "unknown_crawl",
                format!("no crawl {id}"),
            ),
        },
        Err(e) => coordinator_error(e),
    }
}

async fn stop_crawl(State(c): State<Coordinator>, Path(id): Path<String>) -> Response {
    match c.stop(&id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => coordinator_error(e),
    }
}
