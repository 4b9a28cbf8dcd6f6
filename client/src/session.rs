//! A short-lived peer: joins the network through bootstrap addresses, serves nothing, and
//! leaves when dropped.

use std::time::Duration;

use tessera_net::{Client, Keypair, Multiaddr, NetworkConfig, PeerId};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::error::ClientError;

/// Timeouts of a session's requests.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// One piece request (a range, a chunk of an upload) before the next node is tried.
    pub request: Duration,
    /// Finishing an upload: the node hashes, syncs and announces the piece.
    pub finish: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            request: Duration::from_secs(20),
            finish: Duration::from_secs(60),
        }
    }
}

/// A connection to the Tessera network.
#[derive(Debug)]
pub struct Session {
    net: Client,
    timeouts: Timeouts,
    task: Option<JoinHandle<()>>,
}

impl Session {
    /// Joins through `bootstrap` (each address ending in `/p2p/PEER_ID`) with a fresh identity
    /// and fills the DHT routing table. Fails if no bootstrap peer answers.
    pub async fn join(bootstrap: Vec<Multiaddr>) -> Result<Self, ClientError> {
        if bootstrap.is_empty() {
            return Err(ClientError::NoBootstrap);
        }
        let net = tessera_net::start(
            Keypair::generate_ed25519(),
            NetworkConfig::client(bootstrap.clone()),
        )
        .await?;
        let client = net.client;
        if let Err(e) = connect(&client, &bootstrap).await {
            net.task.abort();
            return Err(e);
        }
        debug!(peer = %client.peer_id(), "joined the network");
        Ok(Self {
            net: client,
            timeouts: Timeouts::default(),
            task: Some(net.task),
        })
    }

    /// A session over a network that is already running (inside a node, in tests).
    pub fn with_client(net: Client) -> Self {
        Self {
            net,
            timeouts: Timeouts::default(),
            task: None,
        }
    }

    /// Another handle on the same network and timeouts, for tasks; dropping it leaves the
    /// network running.
    pub fn clone_handle(&self) -> Self {
        Self {
            net: self.net.clone(),
            timeouts: self.timeouts,
            task: None,
        }
    }

    /// Changes the timeouts.
    pub fn set_timeouts(&mut self, timeouts: Timeouts) {
        self.timeouts = timeouts;
    }

    /// The timeouts.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// The network handle.
    pub fn net(&self) -> &Client {
        &self.net
    }

    /// This session's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.net.peer_id()
    }
}

/// Dials each of `bootstrap` and fills the DHT routing table through them, for a session or
/// for a node that joins the storage network. Fails when no bootstrap peer answers.
pub async fn connect(client: &Client, bootstrap: &[Multiaddr]) -> Result<(), ClientError> {
    if bootstrap.is_empty() {
        return Err(ClientError::NoBootstrap);
    }
    let mut errors = Vec::new();
    for addr in bootstrap {
        match tokio::time::timeout(Duration::from_secs(10), client.dial(addr.clone())).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(e.to_string()),
            Err(_) => errors.push(format!("dialing {addr}: no answer in 10 s")),
        }
    }
    if client.info().await?.connected_peers.is_empty() {
        return Err(ClientError::Unreachable(errors.join("; ")));
    }
    if let Err(e) = client.bootstrap().await {
        warn!(error = %e, "DHT bootstrap incomplete");
    }
    Ok(())
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
