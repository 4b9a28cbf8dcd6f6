//! A network of real storage nodes on 127.0.0.1 in one process, each with its own data
//! directory and RocksDB: what `tessera demo` runs, and what network tests and benchmarks
//! start. Nodes can be stopped and started again on their data, one by one.

use std::net::Ipv4Addr;
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use tessera_net::{Multiaddr, PeerId};
use tessera_node::builder::BuildError;
use tracing::debug;

use crate::node::{NodeConfig, NodeError, StorageNode};

/// Nodes on the loopback interface; node 0 is everyone's bootstrap peer.
#[derive(Debug)]
pub struct LocalNetwork {
    nodes: Vec<Option<StorageNode>>,
    configs: Vec<NodeConfig>,
    peers: Vec<PeerId>,
    network: Option<String>,
}

impl LocalNetwork {
    /// Starts `count` nodes with data directories `dir/node-N`, each with `capacity` bytes,
    /// node 0 first and the others joining through it, on the unnamed network.
    pub async fn start(dir: &Path, count: usize, capacity: u64) -> Result<Self, NodeError> {
        Self::start_with(dir, count, capacity, None, None, &|_| Ipv4Addr::LOCALHOST).await
    }

    /// [`LocalNetwork::start`] with node `i` listening on `host(i)`, a loopback address
    /// (127.0.0.0/8): several such /24s stand for the subnets of a real network.
    pub async fn start_on_hosts(
        dir: &Path,
        count: usize,
        capacity: u64,
        host: &dyn Fn(usize) -> Ipv4Addr,
    ) -> Result<Self, NodeError> {
        Self::start_with(dir, count, capacity, None, None, host).await
    }

    /// [`LocalNetwork::start`] on a network of its own named `network`: its charter (in
    /// `dir/charter.block`) makes node 0 the one validator, which audits every piece and
    /// repairs every shard.
    pub async fn start_chartered(
        dir: &Path,
        count: usize,
        capacity: u64,
        network: &str,
    ) -> Result<Self, NodeError> {
        Self::start_committee(dir, count, capacity, network, 1, 1).await
    }

    /// [`LocalNetwork::start_chartered`] with nodes `0..validators` as the committee (a
    /// majority its threshold), each copy of a piece audited by `per_piece` validators other
    /// than its holder.
    pub async fn start_committee(
        dir: &Path,
        count: usize,
        capacity: u64,
        network: &str,
        validators: usize,
        per_piece: u32,
    ) -> Result<Self, NodeError> {
        let charter = found_charter(dir, network, validators, per_piece)?;
        Self::start_with(
            dir,
            count,
            capacity,
            Some(charter),
            Some(network.into()),
            &|_| Ipv4Addr::LOCALHOST,
        )
        .await
    }

    async fn start_with(
        dir: &Path,
        count: usize,
        capacity: u64,
        charter: Option<PathBuf>,
        id: Option<String>,
        host: &dyn Fn(usize) -> Ipv4Addr,
    ) -> Result<Self, NodeError> {
        let mut network = Self {
            nodes: Vec::with_capacity(count),
            configs: Vec::with_capacity(count),
            peers: Vec::with_capacity(count),
            network: id,
        };
        let mut bootstrap = Vec::new();
        for i in 0..count {
            let config = NodeConfig {
                listen: vec![on(host(i))],
                bootstrap: bootstrap.clone(),
                capacity: bytesize::ByteSize(capacity),
                max_piece: bytesize::ByteSize(capacity),
                // Every node serves its HTTP API (status, metrics, registry) on a port of its own.
                http: Some((std::net::Ipv4Addr::LOCALHOST, 0).into()),
                scrub_interval: Duration::ZERO,
                // Audits are driven by hand here (`StorageNode::auditor`), not on a timer.
                audit_interval: Duration::ZERO,
                audit_grace: Duration::ZERO,
                charter: charter.clone(),
                ..NodeConfig::with_defaults(node_dir(dir, i))
            };
            let node = StorageNode::start(config.clone()).await?;
            if i == 0 {
                bootstrap.clone_from(&node.addresses);
            }
            network.peers.push(node.client.peer_id());
            // A restart comes back on the port it had, as a node with a configured port does:
            // the others' routing tables and provider answers still name it.
            let mut config = config;
            config.listen = node.addresses.iter().map(without_peer_id).collect();
            network.configs.push(config);
            network.nodes.push(Some(node));
        }
        // The first nodes joined when the rest did not exist yet: refresh every routing table.
        for node in network.nodes.iter().flatten() {
            if let Err(e) = node.client.bootstrap().await {
                debug!(error = %e, "DHT refresh");
            }
        }
        Ok(network)
    }

    /// Addresses a client joins through: those of the first running node.
    pub fn bootstrap(&self) -> Vec<Multiaddr> {
        self.nodes
            .iter()
            .flatten()
            .next()
            .map(|n| n.addresses.clone())
            .unwrap_or_default()
    }

    /// The network's id, when it has a charter: what a client joins with.
    pub fn network_id(&self) -> Option<String> {
        self.network.clone()
    }

    /// The network's charter file, when it has one.
    pub fn charter(&self) -> Option<&Path> {
        self.configs.first().and_then(|c| c.charter.as_deref())
    }

    /// The running node `index`, if it runs.
    pub fn node(&self, index: usize) -> Option<&StorageNode> {
        self.nodes.get(index).and_then(Option::as_ref)
    }

    /// The index of the node with peer id `peer`.
    pub fn index_of(&self, peer: &PeerId) -> Option<usize> {
        self.peers.iter().position(|p| p == peer)
    }

    /// Peer ids of all nodes, running or not, by index.
    pub fn peers(&self) -> &[PeerId] {
        &self.peers
    }

    /// Nodes running now.
    pub fn running(&self) -> usize {
        self.nodes.iter().flatten().count()
    }

    /// Stops node `index`: its network, service and store are gone until it is started again.
    pub async fn stop(&mut self, index: usize) {
        if let Some(node) = self.nodes.get_mut(index).and_then(Option::take) {
            node.shutdown().await;
        }
    }

    /// Stops node `index`, changes its settings with `change`, and starts it again (as an
    /// operator editing the node's config file does).
    pub async fn reconfigure(
        &mut self,
        index: usize,
        change: impl FnOnce(&mut NodeConfig),
    ) -> Result<(), NodeError> {
        self.stop(index).await;
        change(&mut self.configs[index]);
        self.restart(index).await
    }

    /// Starts node `index` again on its data directory and identity; it rejoins through the
    /// first running node.
    pub async fn restart(&mut self, index: usize) -> Result<(), NodeError> {
        let mut config = self.configs[index].clone();
        config.bootstrap = self.bootstrap();
        // A request that was being answered at the stop may hold the store for a moment.
        let mut tries = 0;
        let node = loop {
            match StorageNode::start(config.clone()).await {
                Ok(node) => break node,
                Err(e @ NodeError::Build(BuildError::Db(_))) if tries < 50 => {
                    debug!(error = %e, "store still held; retrying");
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        };
        self.nodes[index] = Some(node);
        Ok(())
    }

    /// Stops every node.
    pub async fn shutdown(mut self) {
        for i in 0..self.nodes.len() {
            self.stop(i).await;
        }
    }
}

/// Writes the founding charter of `network` with nodes `0..validators` (their identities
/// created now, in their data directories) as the committee; returns the charter file.
fn found_charter(
    dir: &Path,
    network: &str,
    validators: usize,
    per_piece: u32,
) -> Result<PathBuf, NodeError> {
    use tessera_formats::{
        PublisherKey,
        charter::{Charter, CharterParams},
    };
    let mut keys = Vec::with_capacity(validators);
    for i in 0..validators.max(1) {
        let node = node_dir(dir, i);
        std::fs::create_dir_all(&node).map_err(|source| {
            NodeError::Build(tessera_node::builder::BuildError::DataDir {
                path: node.clone(),
                source,
            })
        })?;
        let keypair =
            tessera_net::identity::load_or_create(&node).map_err(|e| NodeError::Build(e.into()))?;
        keys.push(crate::audit::signing_key(&keypair).ok_or(NodeError::NotEd25519)?);
    }
    let threshold = u32::try_from(keys.len() / 2 + 1).unwrap_or(u32::MAX);
    let invalid = |e: tessera_formats::charter::CharterError| {
        NodeError::Charter(tessera_node::charter::CharterFileError::Invalid {
            path: dir.join("charter.block"),
            source: e,
        })
    };
    let signed = Charter::found(
        network,
        keys.iter().map(PublisherKey::of).collect(),
        threshold,
        CharterParams {
            validators_per_piece: per_piece,
            page_byte_ms: LOCAL_PAGE_BYTE_MS,
            ..CharterParams::default()
        },
    )
    .signed_by(&keys.iter().collect::<Vec<_>>())
    .map_err(invalid)?;
    let (_, block) = signed.to_block().map_err(invalid)?;
    let path = dir.join("charter.block");
    std::fs::write(&path, block).map_err(|source| {
        NodeError::Charter(tessera_node::charter::CharterFileError::Read {
            path: path.clone(),
            source,
        })
    })?;
    Ok(path)
}

/// What a local network's charter pays one validated page: a MiB stored for an hour.
pub const LOCAL_PAGE_BYTE_MS: u64 = 1024 * 1024 * 60 * 60 * 1000;

fn node_dir(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("node-{index}"))
}

/// `addr` without its trailing `/p2p/PEER_ID`.
fn without_peer_id(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .filter(|p| !matches!(p, tessera_net::Protocol::P2p(_)))
        .collect()
}

fn on(host: Ipv4Addr) -> Multiaddr {
    Multiaddr::empty()
        .with(tessera_net::Protocol::Ip4(host))
        .with(tessera_net::Protocol::Tcp(0))
}
