//! Every node process is put together the same way, whatever its roles: the builder starts
//! what all of them share, each role adds its own parts, and one owner stops it all in order.
//!
//! ```text
//! NodeBuilder::new(data_dir, network)   the folder; listen and bootstrap addresses
//!   .column("receipts")                 each role's column families
//!   .network(|n| n.serving::<P>())      each role's protocols and topics
//!   .start().await ─▶ Assembly          identity, one RocksDB (data_dir/db), the network
//! assembly.spawn / spawn_graceful       each role's tasks
//! assembly.routes(router)               each role's HTTP routes
//! assembly.serve(http).await ─▶ Node    one HTTP port, one error shape
//! node.shutdown().await                 HTTP, then the roles, then the network
//! ```
//!
//! Shutting down in that order means no request arrives at a role that has stopped, and a
//! role that finishes its work on the way out (a worker reporting its last shard) still has a
//! network to do it with.

use std::{
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use axum::Router;
use tessera_net::{Client, Keypair, Multiaddr, NetError, Network, NetworkConfig, identity};
use tokio::task::JoinHandle;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{info, warn};

use crate::{
    blocking::{BlockingError, blocking},
    db::{Db, DbError},
    http::one_error_shape,
};

/// How long a stage of the shutdown (HTTP, the roles) may take before its tasks are dropped.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Where a node keeps its database, under its data directory.
pub const DB_DIR: &str = "db";

/// A node could not be put together.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The data directory could not be created.
    #[error("data directory {}: {source}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The identity could not be loaded or created.
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    /// The database could not be opened (another process may hold it).
    #[error(transparent)]
    Db(#[from] BlockingError<DbError>),
    /// The network could not start.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The HTTP port could not be bound.
    #[error("HTTP port {addr}: {source}")]
    Http {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What a node is started with before its roles add their parts.
pub struct NodeBuilder {
    data_dir: PathBuf,
    columns: Vec<&'static str>,
    network: NetworkConfig,
}

impl std::fmt::Debug for NodeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeBuilder")
            .field("data_dir", &self.data_dir)
            .field("columns", &self.columns)
            .finish_non_exhaustive()
    }
}

impl NodeBuilder {
    /// A node keeping its state in `data_dir`, on a network configured by `network` (listen
    /// and bootstrap addresses; the roles add their protocols).
    pub fn new(data_dir: &Path, network: NetworkConfig) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
            columns: Vec::new(),
            network,
        }
    }

    /// A column family a role keeps its keys in.
    #[must_use]
    pub fn column(mut self, name: &'static str) -> Self {
        self.columns.push(name);
        self
    }

    /// A role's protocols and topics.
    #[must_use]
    pub fn network(mut self, add: impl FnOnce(NetworkConfig) -> NetworkConfig) -> Self {
        self.network = add(self.network);
        self
    }

    /// Creates the data directory, loads or creates the identity, opens the database and
    /// starts the network.
    pub async fn start(self) -> Result<Assembly, BuildError> {
        std::fs::create_dir_all(&self.data_dir).map_err(|source| BuildError::DataDir {
            path: self.data_dir.clone(),
            source,
        })?;
        let keypair = identity::load_or_create(&self.data_dir)?;
        let (path, columns) = (self.data_dir.join(DB_DIR), self.columns);
        let db = blocking(move || Db::open(&path, &columns)).await?;
        let network = tessera_net::start(keypair.clone(), self.network).await?;
        let addresses = network.client.info().await?.dialable_addrs();
        Ok(Assembly {
            client: network.client.clone(),
            keypair,
            db,
            addresses,
            data_dir: self.data_dir,
            network,
            routes: Router::new(),
            roles: Stage::default(),
        })
    }
}

/// One stage of the shutdown: its tasks, and the signal that tells them to stop.
#[derive(Default)]
struct Stage {
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl Stage {
    /// Tells the stage's tasks to stop and waits for them, at most [`SHUTDOWN_GRACE`].
    async fn stop(&self, name: &str) {
        self.stop.cancel();
        self.tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.tracker.wait())
            .await
            .is_err()
        {
            warn!(stage = name, "tasks still running after the shutdown grace");
        }
    }
}

/// A node being put together: what every role shares, and the tasks and routes the roles
/// have added so far.
pub struct Assembly {
    /// The node's identity.
    pub keypair: Keypair,
    /// Its database, with every column the roles named.
    pub db: Db,
    /// Its network: roles take their inbound requests and topics from it.
    pub network: Network,
    /// A handle to the network.
    pub client: Client,
    /// Its libp2p addresses, each ending in `/p2p/PEER_ID`.
    pub addresses: Vec<Multiaddr>,
    /// Where it keeps its state.
    pub data_dir: PathBuf,
    routes: Router,
    roles: Stage,
}

impl std::fmt::Debug for Assembly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assembly")
            .field("peer_id", &self.client.peer_id())
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

impl Assembly {
    /// Runs a role's task until the node stops; it is dropped then, wherever it waits.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let stop = self.roles.stop.clone();
        self.roles.tracker.spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = task => {}
            }
        });
    }

    /// Runs a role's task that finishes its work when told to stop (the token is cancelled);
    /// one that takes longer than [`SHUTDOWN_GRACE`] is dropped.
    pub fn spawn_graceful<F>(&self, task: impl FnOnce(CancellationToken) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let stop = self.roles.stop.clone();
        let task = task(stop.clone());
        self.roles.tracker.spawn(async move {
            tokio::select! {
                () = task => {}
                () = async {
                    stop.cancelled().await;
                    tokio::time::sleep(SHUTDOWN_GRACE).await;
                } => warn!("a task did not finish within the shutdown grace; dropped"),
            }
        });
    }

    /// A role's HTTP routes, served on the node's one port.
    pub fn routes(&mut self, router: Router) {
        self.routes = std::mem::take(&mut self.routes).merge(router);
    }

    /// Serves the roles' routes on `http` (none: no HTTP port), every error in one shape.
    pub async fn serve(self, http: Option<SocketAddr>) -> Result<Node, BuildError> {
        self.serve_or_any_port(http, false).await
    }

    /// [`Assembly::serve`], taking any free port of the same address when `any_port_if_taken`
    /// and the one asked for is in use (a default port that a second node on the machine has).
    pub async fn serve_or_any_port(
        self,
        http: Option<SocketAddr>,
        any_port_if_taken: bool,
    ) -> Result<Node, BuildError> {
        let server = Stage::default();
        let bound = match http {
            Some(addr) => {
                let listener = match tokio::net::TcpListener::bind(addr).await {
                    Err(e) if any_port_if_taken && e.kind() == std::io::ErrorKind::AddrInUse => {
                        tokio::net::TcpListener::bind(SocketAddr::new(addr.ip(), 0)).await
                    }
                    bound => bound,
                }
                .map_err(|source| BuildError::Http { addr, source })?;
                let bound = listener
                    .local_addr()
                    .map_err(|source| BuildError::Http { addr, source })?;
                let router = one_error_shape(self.routes);
                let stop = server.stop.clone();
                server.tracker.spawn(async move {
                    let served = axum::serve(listener, router)
                        .with_graceful_shutdown(stop.cancelled_owned())
                        .await;
                    if let Err(e) = served {
                        warn!(error = %e, "HTTP port stopped");
                    }
                });
                info!(%bound, "HTTP port");
                Some(bound)
            }
            None => None,
        };
        Ok(Node {
            client: self.client,
            addresses: self.addresses,
            http: bound,
            server,
            roles: self.roles,
            network: self.network.task,
        })
    }
}

/// A node that runs: every role's tasks, its HTTP port and its network, owned here.
pub struct Node {
    /// A handle to the network.
    pub client: Client,
    /// Its libp2p addresses, each ending in `/p2p/PEER_ID`.
    pub addresses: Vec<Multiaddr>,
    /// The bound HTTP address, if any.
    pub http: Option<SocketAddr>,
    server: Stage,
    roles: Stage,
    network: JoinHandle<()>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("peer_id", &self.client.peer_id())
            .field("http", &self.http)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Stops the node in order (the HTTP port, then the roles, then the network) and waits
    /// until each is gone: its listeners and connections are closed when this returns.
    pub async fn shutdown(self) {
        self.server.stop("http").await;
        self.roles.stop("roles").await;
        self.network.abort();
        let _ = self.network.await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };

    use super::*;

    fn loopback() -> NetworkConfig {
        NetworkConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            ..NetworkConfig::default()
        }
    }

    #[tokio::test]
    async fn a_node_stops_its_port_then_its_roles_then_its_network() {
        let dir = tempfile::tempdir().unwrap();
        let mut assembly = NodeBuilder::new(dir.path(), loopback())
            .column("notes")
            .start()
            .await
            .unwrap();
        assert!(assembly.db.column("notes").is_ok());
        assert!(dir.path().join(DB_DIR).join("CURRENT").exists());
        assert!(!assembly.addresses.is_empty());

        // A graceful role sees the network still up when it is told to stop.
        let finished = Arc::new(AtomicBool::new(false));
        let (client, done) = (assembly.client.clone(), finished.clone());
        assembly.spawn_graceful(|stop| async move {
            stop.cancelled().await;
            assert!(client.info().await.is_ok(), "the network stops last");
            done.store(true, Ordering::SeqCst);
        });
        // A plain role is dropped wherever it waits.
        assembly.spawn(std::future::pending());
        assembly.routes(Router::new().route("/hi", axum::routing::get(|| async { "hi" })));
        let node = assembly
            .serve(Some(([127, 0, 0, 1], 0).into()))
            .await
            .unwrap();
        let http = node.http.unwrap();
        let client = node.client.clone();

        let hi = reqwest::get(format!("http://{http}/hi")).await.unwrap();
        assert_eq!(hi.text().await.unwrap(), "hi");
        // Unknown paths answer in the one error shape.
        let missing = reqwest::get(format!("http://{http}/nope")).await.unwrap();
        assert_eq!(missing.status(), 404);
        let body: serde_json::Value = missing.json().await.unwrap();
        assert!(body["error"]["code"].is_string(), "{body}");

        tokio::time::timeout(Duration::from_secs(5), node.shutdown())
            .await
            .expect("a node stops within its grace");
        assert!(finished.load(Ordering::SeqCst));
        assert!(client.info().await.is_err(), "the network is gone");
        assert!(tokio::net::TcpStream::connect(http).await.is_err());

        // The same folder starts again: the database was released.
        let again = NodeBuilder::new(dir.path(), loopback())
            .start()
            .await
            .unwrap();
        assert_eq!(again.client.peer_id(), client.peer_id());
    }

    #[tokio::test]
    async fn a_second_node_on_one_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = NodeBuilder::new(dir.path(), loopback())
            .start()
            .await
            .unwrap();
        let second = NodeBuilder::new(dir.path(), loopback()).start().await;
        assert!(matches!(second, Err(BuildError::Db(_))));
        drop(first);
    }
}
