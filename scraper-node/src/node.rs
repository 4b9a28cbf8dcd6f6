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
use tessera_formats::{PublisherKey, record::SigningKey};
use tessera_net::{Multiaddr, NetworkConfig, PeerId, Protocol, identity};
use tessera_node::http::{ApiError, one_error_shape};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::{
    address::NetworkPolicy,
    api_client::Started,
    coordinator::{Coordinator, CoordinatorError, CrawlStatus},
    http_guard::{self, HttpGuard, load_or_create_token},
    limits::OperatorLimits,
    protocol::CrawlProtocol,
    publish::Publisher,
    remote::{RemoteCoordinator, serve},
    spec::CrawlSpec,
    stats::{WorkerCounts, WorkerStats},
    worker::{Worker, WorkerConfig},
};

/// Largest crawl spec accepted over HTTP.
const MAX_SPEC_BYTES: usize = 1024 * 1024;

/// Everything a scraper node is started with. The CLI fills it from a TOML file and flags.
#[derive(Debug, Clone)]
pub struct ScraperConfig {
    /// Where the node keeps its identity, crawls and shards.
    pub data_dir: PathBuf,
    /// libp2p listen addresses.
    pub listen: Vec<Multiaddr>,
    /// Storage nodes to join through: closed shards are stored in their network, and the
    /// coordinator publishes finished crawls there. Without any, shards stay in the data
    /// directory and crawls are not published.
    pub bootstrap: Vec<Multiaddr>,
    /// The HTTP API's address; none if absent.
    pub http: Option<SocketAddr>,
    /// Another node's coordinator to take leases from (`…/p2p/PEER_ID`); this node's own if
    /// none.
    pub coordinator: Option<Multiaddr>,
    /// Run the coordinator role: accept crawls over HTTP and lease them to scraper nodes.
    pub coordinate: bool,
    /// Which addresses the worker may fetch from.
    pub network: NetworkPolicy,
    /// The key that signs the dataset versions of finished crawls; `publisher.key` in the
    /// data directory (created on first use) when none.
    pub publisher_key: Option<SigningKey>,
    /// The operator's limits on what the worker fetches, whatever a coordinator asks.
    pub limits: OperatorLimits,
    /// Host names, besides the loopback ones, under which the crawl API takes changes (for an
    /// HTTP port on another interface).
    pub api_hosts: Vec<String>,
}

/// The node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScraperNodeError {
    /// The data directory could not be created.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The identity could not be loaded or created.
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    /// The network could not start.
    #[error(transparent)]
    Net(#[from] tessera_net::NetError),
    /// No storage node answered.
    #[error("joining the storage network: {0}")]
    Storage(#[source] ClientError),
    /// The publisher key could not be loaded or created.
    #[error(transparent)]
    PublisherKey(#[from] KeyFileError),
    /// The crawl store could not be opened.
    #[error(transparent)]
    Coordinator(#[from] CoordinatorError),
    /// Neither the coordinator role nor another node's coordinator: the node would do nothing.
    #[error("a scraper node needs the coordinator role or a coordinator to scrape for")]
    NoWork,
    /// The coordinator address has no `/p2p/PEER_ID`.
    #[error("coordinator address {0} must end in /p2p/PEER_ID")]
    CoordinatorAddress(Multiaddr),
    /// The API token could not be read or created.
    #[error("API token in {path}: {source}")]
    ApiToken {
        /// The data directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP port could not be bound.
    #[error("HTTP port {addr}: {source}")]
    Http {
        /// The address.
        addr: SocketAddr,
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
    tasks: Vec<JoinHandle<()>>,
    stop: tokio::sync::watch::Sender<bool>,
    worker: JoinHandle<()>,
}

impl ScraperNode {
    /// Starts the node.
    pub async fn start(config: ScraperConfig) -> Result<Self, ScraperNodeError> {
        if config.network.allow_private {
            warn!(
                "PRIVATE NETWORKS ALLOWED: this scraper node will fetch from loopback, LAN and \
                 link-local addresses (--allow-private-networks); use it only for tests and demos"
            );
        }
        std::fs::create_dir_all(&config.data_dir).map_err(|source| ScraperNodeError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        if !config.coordinate && config.coordinator.is_none() {
            return Err(ScraperNodeError::NoWork);
        }
        let key = identity::load_or_create(&config.data_dir)?;
        let peer_id = key.public().to_peer_id();
        let mut bootstrap = config.bootstrap.clone();
        let remote = match &config.coordinator {
            Some(addr) => match addr.iter().last() {
                Some(Protocol::P2p(peer)) => {
                    bootstrap.push(addr.clone());
                    Some(peer)
                }
                _ => return Err(ScraperNodeError::CoordinatorAddress(addr.clone())),
            },
            None => None,
        };
        let mut net_config = NetworkConfig {
            listen: config.listen.clone(),
            bootstrap,
            dht_server: false,
            ..NetworkConfig::default()
        };
        if config.coordinate {
            net_config = net_config.serving::<CrawlProtocol>();
        }
        let mut network = tessera_net::start(key.clone(), net_config).await?;
        let crawl_requests = network.inbound::<CrawlProtocol>();
        let addresses = network.client.info().await?.dialable_addrs();
        let mut tasks = vec![network.task];
        let storage = if config.bootstrap.is_empty() {
            warn!(
                "no storage nodes (--bootstrap): shards stay on this node, crawls are not published"
            );
            None
        } else {
            if let Err(e) = connect(&network.client, &config.bootstrap).await {
                tasks.iter().for_each(JoinHandle::abort);
                return Err(ScraperNodeError::Storage(e));
            }
            Some(Arc::new(Session::with_client(network.client.clone())))
        };

        let mut publisher_id = None;
        let coordinator = if config.coordinate {
            let publisher = match &storage {
                Some(_) => Some(Publisher {
                    session: Session::with_client(network.client.clone()),
                    key: signing_key(&config)?,
                }),
                None => None,
            };
            publisher_id = publisher.as_ref().map(|p| PublisherKey::of(&p.key));
            let coordinator = Coordinator::start(&config.data_dir.join("crawls"), publisher)?;
            if let Some(requests) = crawl_requests {
                tasks.push(tokio::spawn(serve(coordinator.clone(), requests)));
            }
            Some(coordinator)
        } else {
            None
        };

        let stats = Arc::new(WorkerStats::default());
        let http = match config.http {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| ScraperNodeError::Http { addr, source })?;
                let bound = listener
                    .local_addr()
                    .map_err(|source| ScraperNodeError::Http { addr, source })?;
                let state = NodeState {
                    client: network.client.clone(),
                    peer_id: peer_id.to_string(),
                    addresses: addresses.iter().map(ToString::to_string).collect(),
                    stats: stats.clone(),
                    coordinator: coordinator.clone(),
                    works_for: remote.map(|p| p.to_string()),
                    publisher: publisher_id.map(|p| p.to_string()),
                };
                let mut router = Router::new()
                    .route("/", get(dashboard))
                    .route("/v1/node", get(node_status))
                    .with_state(state);
                if let Some(c) = &coordinator {
                    let token = load_or_create_token(&config.data_dir).map_err(|source| {
                        ScraperNodeError::ApiToken {
                            path: config.data_dir.clone(),
                            source,
                        }
                    })?;
                    let guard = HttpGuard::new(token, config.api_hosts.clone());
                    router = router.merge(self::router(c.clone(), guard));
                }
                let router = one_error_shape(router);
                tasks.push(tokio::spawn(async move {
                    if let Err(e) = axum::serve(listener, router).await {
                        warn!(%e, "HTTP API stopped");
                    }
                }));
                Some(bound)
            }
            None => None,
        };

        tasks.push(tokio::spawn(learn_own_addresses(
            network.client.clone(),
            config.network.clone(),
        )));
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let worker_config = WorkerConfig {
            out_dir: config.data_dir.join("shards"),
            network: config.network.clone(),
            idle_wait: Duration::from_secs(1),
            storage,
            limits: config.limits.clone(),
        };
        let until = async move {
            let mut rx = stop_rx;
            let _ = rx.wait_for(|s| *s).await;
        };
        let worker = match (remote, &coordinator) {
            (Some(peer), _) => {
                let api = RemoteCoordinator::new(network.client.clone(), peer);
                let worker = Worker::new(api, key, worker_config).with_stats(stats.clone());
                tokio::spawn(worker.run(until))
            }
            (None, Some(c)) => {
                let worker = Worker::new(c.clone(), key, worker_config).with_stats(stats.clone());
                tokio::spawn(worker.run(until))
            }
            (None, None) => return Err(ScraperNodeError::NoWork),
        };
        info!(%peer_id, "scraper node started");
        Ok(Self {
            peer_id,
            addresses,
            http,
            coordinator,
            publisher: publisher_id,
            stats,
            tasks,
            stop,
            worker,
        })
    }

    /// Stops the node: the worker closes and reports its open shards first.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.worker.await;
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
    }
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

/// The key finished crawls are signed with: the configured one, or `publisher.key` in the
/// data directory, created on first use.
fn signing_key(config: &ScraperConfig) -> Result<SigningKey, ScraperNodeError> {
    if let Some(key) = &config.publisher_key {
        return Ok(key.clone());
    }
    let path = config.data_dir.join("publisher.key");
    let (key, created) = publisher_key::load_or_create(&path)?;
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
    /// Tessera's version.
    pub version: String,
}

async fn node_status(State(state): State<NodeState>) -> Response {
    let peers = match state.client.info().await {
        Ok(info) => info.connected_peers.len(),
        Err(e) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "network_stopped",
                e.to_string(),
            );
        }
    };
    let crawls = match &state.coordinator {
        Some(c) => match c.status().await {
            Ok(all) => all,
            Err(e) => return coordinator_error(e),
        },
        None => Vec::new(),
    };
    Json(NodeStatus {
        peer_id: state.peer_id.clone(),
        addresses: state.addresses.clone(),
        peers_connected: peers,
        coordinator: state.coordinator.is_some(),
        works_for: state.works_for.clone(),
        publisher: state.publisher.clone(),
        worker: state.stats.counts(),
        crawls,
        version: env!("CARGO_PKG_VERSION").to_string(),
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
