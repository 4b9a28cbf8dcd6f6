//! A short-lived peer: joins the network through bootstrap addresses, serves nothing, and
//! leaves when dropped.

use parking_lot::Mutex;
use std::{sync::Arc, time::Duration};

use tessera_net::{Client, Keypair, Multiaddr, NetworkConfig, PeerId};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::{error::ClientError, hedge::HedgeTimer};

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
    /// Shared by every handle: what one read learns of start times, the next uses.
    hedge: Arc<Mutex<HedgeTimer>>,
    task: Option<JoinHandle<()>>,
}

impl Session {
    /// Joins through `bootstrap` (each address ending in `/p2p/PEER_ID`) with a fresh identity
    /// and fills the DHT routing table. Fails if no bootstrap peer answers.
    pub async fn join(bootstrap: Vec<Multiaddr>) -> Result<Self, ClientError> {
        Self::join_network(None, bootstrap).await
    }

    /// [`Session::join`] on the network named `network` (its charter's id; none: the unnamed
    /// network), whose nodes answer only requests made under that name.
    pub async fn join_network(
        network: Option<String>,
        bootstrap: Vec<Multiaddr>,
    ) -> Result<Self, ClientError> {
        if bootstrap.is_empty() {
            return Err(ClientError::NoBootstrap);
        }
        let net = tessera_net::start(
            Keypair::generate_ed25519(),
            NetworkConfig {
                network,
                ..NetworkConfig::client(bootstrap.clone())
            },
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
            hedge: Arc::default(),
            task: Some(net.task),
        })
    }

    /// A session over a network that is already running (inside a node, in tests).
    pub fn with_client(net: Client) -> Self {
        Self {
            net,
            timeouts: Timeouts::default(),
            hedge: Arc::default(),
            task: None,
        }
    }

    /// Another handle on the same network and timeouts, for tasks; dropping it leaves the
    /// network running.
    pub fn clone_handle(&self) -> Self {
        Self {
            net: self.net.clone(),
            timeouts: self.timeouts,
            hedge: self.hedge.clone(),
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

    /// How long a read waits for a piece to start before asking for another one as well.
    pub fn hedge_delay(&self) -> Duration {
        self.hedge.lock().delay()
    }

    /// A piece took `sample` from its request to its first verified range.
    pub fn observe_start(&self, sample: Duration) {
        self.hedge.lock().observe(sample);
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

/// How long joining waits for a bootstrap peer to say where it sees this process.
const OBSERVED_WAIT: Duration = Duration::from_secs(3);

/// Dials each of `bootstrap` and starts filling the DHT routing table through them, for a
/// session or for a node that joins the storage network. Fails when no bootstrap peer answers.
pub async fn connect(client: &Client, bootstrap: &[Multiaddr]) -> Result<(), ClientError> {
    if bootstrap.is_empty() {
        return Err(ClientError::NoBootstrap);
    }
    // Every bootstrap peer at once; the first to answer is enough to go on, and the dials
    // still going finish in the background.
    let mut dials = tokio::task::JoinSet::new();
    for addr in bootstrap {
        let (client, addr) = (client.clone(), addr.clone());
        dials.spawn(async move {
            match tokio::time::timeout(Duration::from_secs(10), client.dial(addr.clone())).await {
                Ok(Ok(())) => Ok(()),
                // Said against the address given: the network names only the peer.
                Ok(Err(tessera_net::NetError::Dial { reason, .. })) => {
                    Err(format!("{addr}: {reason}"))
                }
                Ok(Err(e)) => Err(format!("{addr}: {e}")),
                Err(_) => Err(format!("dialing {addr}: no answer in 10 s")),
            }
        });
    }
    let mut errors = Vec::new();
    while let Some(dialled) = dials.join_next().await {
        match dialled {
            Ok(Ok(())) => break,
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(e.to_string()),
        }
    }
    dials.detach_all();
    if client.info().await?.connected_peers.is_empty() {
        return Err(ClientError::Unreachable(errors.join("; ")));
    }
    // A hole punch tells the peer behind a NAT where to dial back: the addresses this
    // process was seen at. Until a bootstrap peer's identify says one, a punch to a home
    // has nothing to offer and fails, so wait for it (briefly: a public client needs none).
    let seen = async {
        while client
            .info()
            .await
            .is_ok_and(|i| i.observed_addrs.is_empty())
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(OBSERVED_WAIT, seen).await.is_err() {
        debug!("no bootstrap peer said where it sees this process yet");
    }
    // The routing table fills in the background: a walk of the DHT waits on every node it
    // is told of, one that is gone or frozen included, and nothing needs it finished; lookups
    // walk from the bootstrap peers meanwhile.
    let client = client.clone();
    tokio::spawn(async move {
        match client.bootstrap().await {
            // The session ended first: nothing was missed.
            Ok(()) | Err(tessera_net::NetError::Stopped) => {}
            Err(e) => warn!(error = %e, "DHT bootstrap incomplete"),
        }
    });
    Ok(())
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
