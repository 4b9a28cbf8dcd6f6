//! A whole storage node, assembled from its roles on the node builder:
//!
//! ```text
//! storage    piece store (default column), /tessera/piece and /tessera/challenge, scrubbing
//! registry   version records ("registry" column), /tessera/registry/1, announcements, /v1 API
//! receipts   audit receipts ("receipts" column), shared ones kept, old ones pruned
//! auditor    challenges and repairs the registry's datasets (needs the registry role)
//! operator   /status, /metrics, /v1/audit, /v1/receipts, /v1/rewards, the dashboard
//! ```

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tessera_dataset_registry::protocol::{MAX_ANNOUNCEMENT, REGISTRY_TOPIC, RegistryProtocol};
use tessera_dataset_registry::{Registry, RegistryConfig};
use tessera_formats::{SignedReceipt, receipt::MAX_RECEIPT_BYTES, time::now_ms};
use tessera_net::{Client, Multiaddr, NetworkConfig, TopicEvent};
use tessera_node::{
    blocking::{BlockingError, blocking},
    builder::{Assembly, BuildError, Node, NodeBuilder},
    charter::{CharterFileError, CurrentCharter},
    config::InvalidSetting,
    db::DEFAULT,
};
use tessera_proofs::trust::ReceiptRules;
use tessera_storage_protocol::{ChallengeProtocol, PieceProtocol};
use tracing::{debug, info, warn};

pub use crate::config::NodeConfig;
use crate::{
    audit::{
        AuditConfig, Auditor, AuditorParts, CHARTER_TOPIC, RECEIPT_TOPIC, SharedView, signing_key,
    },
    bandwidth::Bandwidth,
    http::{HttpState, router},
    metrics::Metrics,
    receipts::{ReceiptStore, ReceiptStoreError},
    service::{ServiceLimits, serve},
    store::{PieceStore, StartupReport, StoreError},
};

/// The node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// A setting it cannot run with.
    #[error("config: {0}")]
    Config(#[from] InvalidSetting),
    /// The identity, database, network or HTTP port could not be set up.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The piece store could not be opened.
    #[error("piece store: {0}")]
    Store(#[from] StoreError),
    /// The registry's database could not be opened.
    #[error("registry: {0}")]
    Registry(#[from] tessera_dataset_registry::AdmitError),
    /// The receipt store could not be opened.
    #[error(transparent)]
    Receipts(#[from] ReceiptStoreError),
    /// The charter could not be used.
    #[error(transparent)]
    Charter(#[from] CharterFileError),
    /// The identity is not an Ed25519 key, which receipts need.
    #[error("the node's identity is not an Ed25519 key")]
    NotEd25519,
}

impl From<BlockingError<StoreError>> for NodeError {
    fn from(e: BlockingError<StoreError>) -> Self {
        match e {
            BlockingError::Failed(e) => Self::Store(e),
            BlockingError::Task(e) => Self::Store(StoreError::Io {
                what: "opening the store".into(),
                source: std::io::Error::other(e.to_string()),
            }),
        }
    }
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
    /// What an auditor of this node is made of; none without the registry role.
    auditor: Option<AuditorParts>,
    node: Node,
}

/// The folder of the node's data directory that keeps the charter epochs after the founding
/// one.
const CHARTER_EPOCHS: &str = "charter-epochs";

/// The column of the node's database that holds audit receipts.
const RECEIPTS_COLUMN: &str = "receipts";
/// The column that holds the registry's records.
const REGISTRY_COLUMN: &str = "registry";

impl StorageNode {
    /// Starts a node: checks its settings, opens the store (checking it against the disk),
    /// loads or creates the identity, joins the network, serves the protocols and the HTTP
    /// port, and re-announces every held piece.
    pub async fn start(config: NodeConfig) -> Result<Self, NodeError> {
        let charter = prepare(&config).await?;
        let builder = NodeBuilder::new(
            &config.data_dir,
            NetworkConfig {
                network: charter.as_ref().map(CurrentCharter::network),
                listen: config.listen.clone(),
                bootstrap: config.bootstrap.clone(),
                relay: config.relay.budget(),
                ..NetworkConfig::default()
            },
        );
        let mut node = plan(builder, &config).start().await?;
        let roles = start_roles(&mut node, &config, charter).await?;
        let node = node
            .serve_or_any_port(config.http, config.http_any_port_if_taken)
            .await?;
        info!(
            peer_id = %node.client.peer_id(),
            addresses = ?node.addresses,
            pieces = roles.startup.pieces,
            "storage node started"
        );
        Ok(Self {
            client: node.client.clone(),
            addresses: node.addresses.clone(),
            http: node.http,
            store: roles.store,
            metrics: roles.metrics,
            startup: roles.startup,
            registry: roles.registry,
            receipts: roles.receipts,
            audit_view: roles.audit_view,
            auditor: roles.auditor,
            node,
        })
    }

    /// An auditor with this node's key, registry and receipts, for driving rounds by hand
    /// (tests, an operator's one-off audit); none without the registry role.
    pub fn auditor(&self, config: AuditConfig) -> Option<Auditor> {
        Some(Auditor::new(self.auditor.clone()?, config))
    }

    /// Stops the node (its HTTP port, its roles, then its network) and waits until they are
    /// gone: its connections and listeners are closed when this returns. The store closes
    /// when the last handle to it is dropped (a request still being answered holds one
    /// briefly).
    pub async fn shutdown(self) {
        self.node.shutdown().await;
    }
}

/// Checks the settings, reads the charter, and readies the data directory for the piece
/// store before the node's database opens: an index whose pieces folder is missing (a disk
/// not mounted) is refused here, before anything is written. Returns the charter, whose
/// network id the node's network is named by.
pub async fn prepare(config: &NodeConfig) -> Result<Option<CurrentCharter>, NodeError> {
    config.check()?;
    // The founding charter from the config, then the later epochs this node accepted.
    let charter = tessera_node::charter::load_setting(config.charter.as_deref())?
        .map(|founding| CurrentCharter::open(founding, &config.data_dir.join(CHARTER_EPOCHS)))
        .transpose()?;
    let store_config = config.store();
    blocking(move || PieceStore::prepare(&store_config)).await?;
    Ok(charter)
}

/// What the storage roles need of a node before it starts: their columns, protocols and
/// topics.
pub fn plan(builder: NodeBuilder, config: &NodeConfig) -> NodeBuilder {
    let builder = builder
        .column(RECEIPTS_COLUMN)
        .network(|n| n.serving::<PieceProtocol>().serving::<ChallengeProtocol>());
    let builder = if config.charter.is_some() {
        builder.network(|n| n.following(CHARTER_TOPIC, tessera_formats::charter::MAX_CHARTER_BYTES))
    } else {
        builder
    };
    if config.registry {
        builder.column(REGISTRY_COLUMN).network(|n| {
            n.serving::<RegistryProtocol>()
                .following(REGISTRY_TOPIC, MAX_ANNOUNCEMENT)
                .following(RECEIPT_TOPIC, MAX_RECEIPT_BYTES)
        })
    } else {
        builder
    }
}

/// The storage roles of a running node.
#[derive(Debug)]
pub struct StorageRoles {
    /// The network's charter in force, when it has one.
    pub charter: Option<CurrentCharter>,
    /// The piece store.
    pub store: PieceStore,
    /// What the store's start-up check found.
    pub startup: StartupReport,
    /// The node's counters.
    pub metrics: Arc<Metrics>,
    /// The registry role, if it runs.
    pub registry: Option<Registry>,
    /// The audit receipts kept.
    pub receipts: Arc<ReceiptStore>,
    /// What the auditor knows.
    pub audit_view: SharedView,
    /// What an auditor of this node is made of; none without the registry role.
    pub auditor: Option<AuditorParts>,
}

/// Starts the storage roles on `node` (readied with [`prepare`], planned with [`plan`]):
/// storage, registry, receipts and auditor, and the operator's routes, under the network's
/// `charter` when it has one.
pub async fn start_roles(
    node: &mut Assembly,
    config: &NodeConfig,
    charter: Option<CurrentCharter>,
) -> Result<StorageRoles, NodeError> {
    let store_config = config.store();
    let key = signing_key(&node.keypair).ok_or(NodeError::NotEd25519)?;
    let column = node.db.column(DEFAULT).map_err(StoreError::from)?;
    let (store, startup) = blocking(move || PieceStore::open_in(&store_config, column)).await?;
    let metrics = Arc::new(Metrics::new());
    let bandwidth = Arc::new(Bandwidth::new(&config.data_dir, config.bandwidth()));
    metrics.set_bandwidth(bandwidth.clone());
    storage_role(
        node,
        &store,
        &metrics,
        config.scrub_interval,
        bandwidth.clone(),
    )?;
    let registry = if config.registry {
        Some(registry_role(node, config, charter.as_ref())?)
    } else {
        None
    };
    let receipts = receipts_role(node, &config.data_dir, charter.clone())?;
    if let Some(charter) = &charter {
        let topic = node.network.topic(CHARTER_TOPIC);
        node.spawn(follow_charters(charter.clone(), topic));
    }
    let audit_view = SharedView::default();
    let auditor = registry.as_ref().map(|registry| AuditorParts {
        client: node.client.clone(),
        registry: registry.store().clone(),
        receipts: receipts.clone(),
        store: Some(store.clone()),
        key: key.clone(),
        metrics: metrics.clone(),
        bandwidth: bandwidth.clone(),
        view: audit_view.clone(),
        spool: config.data_dir.join("repair"),
        charter: charter.clone(),
    });
    let payout = config.payout()?;
    if let Some(address) = payout {
        tessera_node::payout::keep_declaring(node, address);
    }
    if let (Some(audit), Some(parts)) = (config.audit(), &auditor) {
        node.spawn(Auditor::new(parts.clone(), audit).run());
    }
    node.routes(router(HttpState {
        client: node.client.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
        receipts: receipts.clone(),
        audit: audit_view.clone(),
        charter: charter.clone(),
        registry: registry.as_ref().map(|r| r.store().clone()),
        payout,
    }));
    Ok(StorageRoles {
        charter,
        store,
        startup,
        metrics,
        registry,
        receipts,
        audit_view,
        auditor,
    })
}

/// The storage role: answers piece and challenge requests, announces what it holds, and
/// re-hashes it every `scrub` (never when zero).
fn storage_role(
    node: &mut Assembly,
    store: &PieceStore,
    metrics: &Arc<Metrics>,
    scrub: Duration,
    bandwidth: Arc<Bandwidth>,
) -> Result<(), NodeError> {
    let (Some(pieces), Some(challenges)) = (node.network.inbound(), node.network.inbound()) else {
        return Err(BuildError::Net(tessera_net::NetError::Build(
            "the piece and challenge protocols are not served".into(),
        ))
        .into());
    };
    node.spawn(serve(
        node.client.clone(),
        store.clone(),
        metrics.clone(),
        ServiceLimits {
            bandwidth,
            ..ServiceLimits::default()
        },
        pieces,
        challenges,
    ));
    node.spawn(announce_held(node.client.clone(), store.clone()));
    if !scrub.is_zero() {
        node.spawn(scrub_periodically(
            node.client.clone(),
            store.clone(),
            metrics.clone(),
            scrub,
        ));
    }
    Ok(())
}

/// The registry role: keeps version records in its column, answers other nodes, follows
/// announcements, and serves its `/v1` routes.
fn registry_role(
    node: &mut Assembly,
    config: &NodeConfig,
    charter: Option<&CurrentCharter>,
) -> Result<Registry, NodeError> {
    let registry_config = RegistryConfig {
        // Records of publishers the charter in force does not admit are not kept.
        charter: charter.cloned(),
        ..RegistryConfig::new(config.data_dir.join("registry"))
    };
    let column = node.db.column(REGISTRY_COLUMN).map_err(StoreError::from)?;
    let registry = Registry::open_in(&registry_config, &node.db, column, node.client.clone())?;
    let requests = node.network.inbound();
    let news = node.network.topic(REGISTRY_TOPIC);
    if let (Some(requests), Some(news)) = (requests, news) {
        node.spawn(tessera_dataset_registry::run(
            registry.clone(),
            registry_config,
            requests,
            news,
        ));
    }
    node.routes(tessera_dataset_registry::http::router(registry.clone()));
    Ok(registry)
}

/// The receipts role: keeps receipts in their column (importing the database they once had
/// of their own), takes those shared by other auditors, prunes old ones.
fn receipts_role(
    node: &mut Assembly,
    data_dir: &std::path::Path,
    charter: Option<CurrentCharter>,
) -> Result<Arc<ReceiptStore>, NodeError> {
    let column = node.db.column(RECEIPTS_COLUMN).map_err(StoreError::from)?;
    node.db
        .import(&column, &data_dir.join("receipts"))
        .map_err(ReceiptStoreError::from)?;
    let receipts = Arc::new(ReceiptStore::in_column(column));
    let shared = node.network.topic(RECEIPT_TOPIC);
    node.spawn(keep_shared_receipts(receipts.clone(), shared, charter));
    Ok(receipts)
}

/// Takes the network's next charter from the charter topic when the threshold of the
/// committee in force signed it; anything else on the topic is dropped.
async fn follow_charters(
    charter: CurrentCharter,
    topic: Option<tokio::sync::mpsc::Receiver<TopicEvent>>,
) {
    let Some(mut topic) = topic else { return };
    while let Some(event) = topic.recv().await {
        let TopicEvent::Message { data, source, .. } = event else {
            continue;
        };
        match tessera_formats::charter::SignedCharter::from_block(&data)
            .and_then(|next| charter.advance(next))
        {
            Ok(true) => {
                let now = charter.get();
                info!(epoch = now.signed.charter.epoch, charter = %now.cid, "the network's charter changed");
            }
            Ok(false) => {}
            Err(e) => debug!(?source, error = %e, "a charter on the topic was refused"),
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

/// Why a shared receipt was not kept.
enum Dropped {
    Undated,
    Unassigned(tessera_proofs::trust::NotCounted),
}

/// Keeps the receipts other auditors share on the receipt topic: those that verify, are dated
/// within the retention (and not in the future), and, on a network with a charter, were made
/// by a validator assigned the piece; the rest are dropped, so that receipts from anyone else
/// take no room. Receipts past the retention are pruned every hour.
async fn keep_shared_receipts(
    receipts: Arc<ReceiptStore>,
    mut shared: Option<tokio::sync::mpsc::Receiver<TopicEvent>>,
    charter: Option<CurrentCharter>,
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
        let (store, charter) = (receipts.clone(), charter.clone());
        let kept = blocking(move || {
            let receipt = SignedReceipt::from_block(&data)?;
            let (now, time) = (now_ms(), receipt.receipt.time_ms);
            if time > now.saturating_add(RECEIPT_CLOCK_SKEW_MS)
                || time < now.saturating_sub(retention)
            {
                return Ok(Err(Dropped::Undated));
            }
            if let Some(charter) = &charter {
                // Judged by the epoch in force when it was made.
                let charter = charter.at(time);
                let no_layouts = |_: &tessera_formats::Cid| None;
                let rules = ReceiptRules::new(&charter.signed.charter, charter.cid, &no_layouts);
                if let Err(why) = rules.check_auditor(&receipt) {
                    return Ok(Err(Dropped::Unassigned(why)));
                }
            }
            store.insert(&receipt).map(Ok)
        })
        .await;
        match kept {
            Err(e) => debug!(error = %e, "a shared receipt was refused"),
            Ok(Err(Dropped::Undated)) => {
                debug!("a shared receipt dated outside the retention was dropped");
            }
            Ok(Err(Dropped::Unassigned(why))) => debug!(%why, "a shared receipt was dropped"),
            Ok(Ok(_)) => {}
        }
    }
}
