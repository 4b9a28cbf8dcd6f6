//! One task owns the libp2p `Swarm`; the rest of the program talks to it through a cloneable
//! [`Client`] that sends commands with reply channels, and receives each served protocol's
//! requests and each followed topic's messages from bounded channels.
//!
//! ```text
//!  Client ──Command──▶ ┌──────────────┐ ──Inbound<P>──▶ node logic (one queue per protocol)
//!         ◀─oneshot─── │ network task │ ◀──Responder──── node logic
//!                      │  (Swarm)     │ ──TopicEvent──▶ node logic (one queue per topic)
//!                      └──────────────┘ ◀═══ libp2p ═══▶ peers
//! ```

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use cid::Cid;
use futures::StreamExt as _;
use libp2p::{
    Multiaddr, PeerId, Swarm, SwarmBuilder, autonat, connection_limits, dcutr, gossipsub, identify,
    identity::Keypair,
    kad, memory_connection_limits,
    multiaddr::Protocol,
    noise, ping, relay,
    request_response::{self, ProtocolSupport, ResponseChannel},
    swarm::{NetworkBehaviour, StreamProtocol, SwarmEvent, behaviour::toggle::Toggle},
    tcp,
};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info};

pub use health::PeerStatus;
pub use paths::{PUNCH_WAIT, PathStats, PeerPath};
pub use reachability::Reachability;
pub use relays::{RelayBudget, RelayStats};
pub use traffic::ProtocolTraffic;

mod actor;
mod addresses;
pub mod health;
mod inbound;
pub mod limits;
mod muxer;
mod naming;
mod outbound;
mod paths;
mod port_mapping;
mod protocol_set;
mod quic_probe;
pub mod reachability;
mod relays;
mod traffic;

use actor::Actor;
use naming::Naming;
use outbound::Outbound;
use protocol_set::ProtocolSet;

use crate::{
    codec::{Encoded, FrameCodec, Message as _},
    rpc::{self, Inbound, RawRequest, Registration},
};

/// Tessera's own Kademlia DHT, apart from the public IPFS one.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/tessera/kad/1.0.0");

/// A gossip topic a node follows, and the largest message it takes on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    /// The topic's name.
    pub name: String,
    /// Largest message, refused past this.
    pub max_message: usize,
}

/// How the network task is set up.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// The network's id (its charter's): it goes into every protocol and topic name, so that
    /// nodes of other networks are not spoken to. None is the unnamed network of local tests.
    pub network: Option<String>,
    /// Addresses to listen on (`/ip4/0.0.0.0/tcp/0`, `/ip4/127.0.0.1/udp/0/quic-v1`, ...).
    pub listen: Vec<Multiaddr>,
    /// Peers to join through; each address must end in `/p2p/PEER_ID`.
    pub bootstrap: Vec<Multiaddr>,
    /// Serve the DHT (storage nodes) or only query it (short-lived clients).
    pub dht_server: bool,
    /// The request-response protocols this node answers ([`NetworkConfig::serving`]). It can
    /// ask every protocol registered in the program ([`crate::register_protocol!`]).
    pub serve: Vec<StreamProtocol>,
    /// The gossip topics it follows ([`NetworkConfig::following`]).
    pub follow: Vec<Topic>,
    /// How long one request may take before it fails.
    pub request_timeout: Duration,
    /// Most concurrent request streams per connection, per protocol. Requests to one peer are
    /// sent at most half that many at a time, the rest held back in order until earlier ones
    /// end: libp2p would fail a request past the limit at once.
    pub max_streams_per_connection: usize,
    /// How often provider records are re-announced.
    pub provider_republish: Duration,
    /// Inbound requests queued for the node logic before new ones are refused.
    pub inbound_queue: usize,
    /// Bounds on the connections held.
    pub connections: limits::ConnectionCaps,
    /// How long a peer whose dial failed or whose request timed out is left alone, doubled
    /// with each failure in a row (up to [`health::MAX_BACKOFF`]).
    pub peer_backoff: Duration,
    /// What this node relays for peers behind NATs, while peers can dial it.
    pub relay: RelayBudget,
    /// Reserve a slot on relays while behind a NAT, so that peers can reach this node.
    pub reserve_relays: bool,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            network: None,
            listen: Vec::new(),
            bootstrap: Vec::new(),
            dht_server: true,
            serve: Vec::new(),
            follow: Vec::new(),
            request_timeout: Duration::from_secs(30),
            max_streams_per_connection: 16,
            provider_republish: Duration::from_secs(60 * 60),
            inbound_queue: 256,
            connections: limits::ConnectionCaps::default(),
            peer_backoff: health::FIRST_BACKOFF,
            relay: RelayBudget::default(),
            reserve_relays: true,
        }
    }
}

impl NetworkConfig {
    /// A short-lived client (a CLI command, a training job): DHT in client mode, serves
    /// nothing, relays nothing, joins through `bootstrap`. It listens on a TCP port all the
    /// same: its connections go out from that port, which is what lets a hole punch to a node
    /// behind a NAT meet it when the client is behind one too.
    pub fn client(bootstrap: Vec<Multiaddr>) -> Self {
        Self {
            bootstrap,
            listen: vec![
                Multiaddr::empty()
                    .with(Protocol::Ip4(std::net::Ipv4Addr::UNSPECIFIED))
                    .with(Protocol::Tcp(0)),
            ],
            dht_server: false,
            relay: RelayBudget::off(),
            reserve_relays: false,
            ..Self::default()
        }
    }

    /// Also answers protocol `P`: its requests reach [`Network::inbound`].
    pub fn serving<P: rpc::Protocol>(mut self) -> Self {
        if !self.serve.contains(&P::NAME) {
            self.serve.push(P::NAME);
        }
        self
    }

    /// Also follows gossip topic `name`, taking messages of up to `max_message` bytes: they
    /// reach [`Network::topic`].
    pub fn following(mut self, name: &str, max_message: usize) -> Self {
        if self.follow.iter().all(|t| t.name != name) {
            self.follow.push(Topic {
                name: name.to_string(),
                max_message,
            });
        }
        self
    }
}

/// The network could not start or a command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The transport or behaviour could not be built.
    #[error("building the network: {0}")]
    Build(String),
    /// An address could not be listened on.
    #[error("listening on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// A bootstrap address lacks its `/p2p/PEER_ID`.
    #[error("bootstrap address {0} must end in /p2p/PEER_ID")]
    BootstrapAddress(Multiaddr),
    /// Dialing a peer failed.
    #[error("dialing {addr}: {reason}")]
    Dial {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// A request to a peer failed (timeout, connection lost, unsupported protocol, ...).
    #[error("request to {peer} failed: {reason}")]
    Request {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// The peer failed lately and is not asked again until its backoff ends.
    #[error(transparent)]
    PeerDown(Box<health::PeerDown>),
    /// No crate of this program registered the protocol.
    #[error("protocol {0} is not registered in this program")]
    Unregistered(String),
    /// A message could not be encoded.
    #[error("encoding a {protocol} message: {reason}")]
    Encode {
        /// The protocol.
        protocol: String,
        /// Why.
        reason: String,
    },
    /// A DHT operation failed.
    #[error("DHT: {0}")]
    Dht(String),
    /// Publishing on a gossipsub topic failed.
    #[error("gossip: {0}")]
    Gossip(String),
    /// The network task has stopped.
    #[error("the network task has stopped")]
    Stopped,
}

/// What reaches a node on a gossip topic it follows, unverified.
#[derive(Debug, Clone)]
pub enum TopicEvent {
    /// A message.
    Message {
        /// The peer that forwarded it.
        source: PeerId,
        /// Its bytes.
        data: Vec<u8>,
    },
    /// A peer joined the topic.
    PeerJoined {
        /// The peer.
        peer: PeerId,
    },
}

/// The IP address `addr` reaches directly; none for a relayed address.
fn direct_ip(addr: &Multiaddr) -> Option<std::net::IpAddr> {
    if reachability::is_relayed(addr) {
        return None;
    }
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(ip.into()),
        Protocol::Ip6(ip) => Some(ip.into()),
        _ => None,
    })
}

/// What the network knows about itself.
#[derive(Debug, Clone)]
pub struct NetworkInfo {
    /// This node's peer id.
    pub peer_id: PeerId,
    /// The addresses it listens on.
    pub listen_addrs: Vec<Multiaddr>,
    /// Peers connected now.
    pub connected_peers: Vec<PeerId>,
    /// Addresses peers saw this node at (identify), and those confirmed external: behind a
    /// home router, its own public address. Peers may lie; use them to refuse, not to trust.
    pub observed_addrs: Vec<Multiaddr>,
    /// Addresses an AutoNAT server dialled back: where peers can reach this node.
    pub external_addrs: Vec<Multiaddr>,
    /// Whether peers can dial this node, as AutoNAT found, and what kind of NAT it is behind.
    pub reachability: Reachability,
    /// The relayed addresses this node holds reservations for (behind a NAT).
    pub relay_addrs: Vec<Multiaddr>,
    /// How peers were reached: direct and relayed connections, hole punches, bytes.
    pub paths: PathStats,
    /// What this node relayed for others.
    pub relay: RelayStats,
    /// Bytes sent and received per protocol since the node started, most first.
    pub traffic: Vec<ProtocolTraffic>,
}

impl NetworkInfo {
    /// The listen addresses with `/p2p/PEER_ID` appended: what other peers bootstrap from.
    pub fn dialable_addrs(&self) -> Vec<Multiaddr> {
        self.listen_addrs
            .iter()
            .map(|a| a.clone().with(Protocol::P2p(self.peer_id)))
            .collect()
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    // The limits come first: a connection they deny reaches no other behaviour.
    connection_limits: connection_limits::Behaviour,
    per_ip: limits::PerIpLimit,
    direct_first: limits::DirectFirst,
    // Before any dial: peers that failed lately are not dialled again until their backoff ends.
    health: health::HealthGate,
    memory: memory_connection_limits::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    // AutoNAT v2 both ways: every node asks peers to dial it back, and dials others back.
    autonat_client: autonat::v2::client::Behaviour,
    autonat_server: autonat::v2::server::Behaviour,
    // Addresses mapped on the home router, handed to AutoNAT to test.
    candidates: port_mapping::Candidates,
    // Relaying for peers behind NATs (while this node is dialable), reserving on relays
    // (while it is not), and punching holes to peers first met through a relay.
    relay: Toggle<relay::Behaviour>,
    relay_client: relay::client::Behaviour,
    dcutr: dcutr::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    protocols: ProtocolSet,
    gossipsub: gossipsub::Behaviour,
}

type Reply<T> = oneshot::Sender<Result<T, NetError>>;

#[derive(Debug)]
enum Command {
    Dial(Multiaddr, Reply<()>),
    Bootstrap(Reply<()>),
    StartProviding(Cid, Reply<()>),
    StopProviding(Cid),
    GetProviders(Cid, Lookup, Reply<HashSet<PeerId>>),
    ClosestPeers(Vec<u8>, Reply<Vec<PeerId>>),
    Request(usize, PeerId, Encoded, Reply<Encoded>),
    Respond(usize, ResponseChannel<Encoded>, Encoded),
    Publish(String, Vec<u8>, Reply<()>),
    PutRecord(Vec<u8>, Vec<u8>, Reply<()>),
    GetRecord(Vec<u8>, Reply<Vec<Vec<u8>>>),
    PeerStatus(Vec<PeerId>, oneshot::Sender<Vec<health::PeerStatus>>),
    PeerIps(Vec<PeerId>, oneshot::Sender<Vec<Option<std::net::IpAddr>>>),
    Stalled(Duration, oneshot::Sender<Vec<(PeerId, Duration)>>),
    Info(oneshot::Sender<NetworkInfo>),
    Paths(Vec<PeerId>, oneshot::Sender<Vec<PeerPath>>),
}

/// How far a provider lookup goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    /// Until the query ends, collecting every provider found.
    Complete,
    /// Until the first answer that names a provider other than this node.
    First,
}

/// A cloneable handle to the network task.
#[derive(Debug, Clone)]
pub struct Client {
    commands: mpsc::Sender<Command>,
    peer_id: PeerId,
    /// The index of each registered protocol, by name.
    protocols: Arc<HashMap<StreamProtocol, usize>>,
}

impl Client {
    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, NetError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)?
    }

    /// Connects to a peer at `addr`.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NetError> {
        self.call(|r| Command::Dial(addr, r)).await
    }

    /// Refreshes the DHT routing table from the known peers.
    pub async fn bootstrap(&self) -> Result<(), NetError> {
        self.call(Command::Bootstrap).await
    }

    /// Announces this node as a provider of `cid` on the DHT.
    pub async fn start_providing(&self, cid: Cid) -> Result<(), NetError> {
        self.call(|r| Command::StartProviding(cid, r)).await
    }

    /// Stops announcing `cid`.
    pub async fn stop_providing(&self, cid: Cid) -> Result<(), NetError> {
        self.commands
            .send(Command::StopProviding(cid))
            .await
            .map_err(|_| NetError::Stopped)
    }

    /// The peers that announced `cid` on the DHT: every one the lookup finds.
    pub async fn get_providers(&self, cid: Cid) -> Result<HashSet<PeerId>, NetError> {
        self.call(|r| Command::GetProviders(cid, Lookup::Complete, r))
            .await
    }

    /// The providers of `cid` that the first DHT server to name one other than this node knows
    /// of; the lookup ends there. Empty if it ends without finding one.
    ///
    /// For reads: a provider record is stored on the servers closest to its key, so the first
    /// answer that has one usually lists every provider, and ending the lookup there saves a
    /// round trip and the requests to the remaining servers (each of which walks its routing
    /// table to answer).
    pub async fn find_providers(&self, cid: Cid) -> Result<HashSet<PeerId>, NetError> {
        self.call(|r| Command::GetProviders(cid, Lookup::First, r))
            .await
    }

    /// The DHT servers closest to `key` (at most 20), nearest first: the candidates for
    /// storing something keyed by it. Their addresses are kept, so they can be dialed by id.
    pub async fn closest_peers(&self, key: Vec<u8>) -> Result<Vec<PeerId>, NetError> {
        self.call(|r| Command::ClosestPeers(key, r)).await
    }

    /// Asks `peer` a request of protocol `P` and waits for its answer. The request is encoded
    /// and the answer decoded on the caller's task; an answer that does not decode is an error
    /// of the request.
    pub async fn request<P: rpc::Protocol>(
        &self,
        peer: PeerId,
        request: impl Into<P::Request>,
    ) -> Result<P::Response, NetError> {
        let index = *self
            .protocols
            .get(&P::NAME)
            .ok_or_else(|| NetError::Unregistered(P::NAME.to_string()))?;
        let bytes = request
            .into()
            .into_cbor_parts()
            .map_err(|reason| NetError::Encode {
                protocol: P::NAME.to_string(),
                reason,
            })?;
        let answer = self
            .call(|r| Command::Request(index, peer, bytes, r))
            .await?;
        P::Response::from_cbor(answer.concat()).map_err(|e| NetError::Request {
            peer,
            reason: format!("malformed response: {e}"),
        })
    }

    /// Sends an encoded answer to a request of protocol `index`.
    pub(crate) async fn respond(
        &self,
        index: usize,
        channel: ResponseChannel<Encoded>,
        response: Encoded,
    ) -> Result<(), NetError> {
        self.commands
            .send(Command::Respond(index, channel, response))
            .await
            .map_err(|_| NetError::Stopped)
    }

    /// Publishes `data` on gossip topic `topic`. Having no subscribed peer is not an error.
    pub async fn publish(&self, topic: &str, data: Vec<u8>) -> Result<(), NetError> {
        let topic = topic.to_string();
        self.call(|r| Command::Publish(topic, data, r)).await
    }

    /// Stores `value` under `key` on the DHT servers closest to the key (and locally).
    pub async fn put_record(&self, key: Vec<u8>, value: Vec<u8>) -> Result<(), NetError> {
        self.call(|r| Command::PutRecord(key, value, r)).await
    }

    /// Every value found under `key` on the DHT (several peers may hold different ones).
    pub async fn get_record(&self, key: Vec<u8>) -> Result<Vec<Vec<u8>>, NetError> {
        self.call(|r| Command::GetRecord(key, r)).await
    }

    /// What is known of each of `peers`: up, stalled (requests unanswered for how long) or
    /// down (not tried for how long), from every request and dial of this process.
    pub async fn peer_status(&self, peers: Vec<PeerId>) -> Result<Vec<PeerStatus>, NetError> {
        self.ask(|r| Command::PeerStatus(peers, r)).await
    }

    /// The IP address this process's connection to each of `peers` runs to, none for a
    /// peer not connected directly: where its bytes are, whatever it says of itself.
    pub async fn peer_ips(
        &self,
        peers: Vec<PeerId>,
    ) -> Result<Vec<Option<std::net::IpAddr>>, NetError> {
        self.ask(|r| Command::PeerIps(peers, r)).await
    }

    /// The peers this process waits on: requests to them unanswered for longer than
    /// `longer_than`, longest first (at most 3). For a progress line that says what it waits for.
    pub async fn stalled_peers(
        &self,
        longer_than: Duration,
    ) -> Result<Vec<(PeerId, Duration)>, NetError> {
        self.ask(|r| Command::Stalled(longer_than, r)).await
    }

    /// Peer id, listen addresses and connected peers.
    pub async fn info(&self) -> Result<NetworkInfo, NetError> {
        self.ask(Command::Info).await
    }

    /// How each of `peers` is reached: connects to those not connected, and for one reached
    /// only through a relay waits for the hole punch (at most [`PUNCH_WAIT`]). A peer
    /// that could not be dialled is [`PeerPath::None`].
    pub async fn paths(&self, peers: Vec<PeerId>) -> Result<Vec<PeerPath>, NetError> {
        self.ask(|r| Command::Paths(peers, r)).await
    }

    /// Sends a command whose answer cannot fail, and waits for it.
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NetError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)
    }
}

/// A running network: the client handle, the queues of what it serves and follows, and the
/// task.
#[derive(Debug)]
pub struct Network {
    /// Handle for commands.
    pub client: Client,
    /// The network task; it ends when every `Client` is dropped.
    pub task: tokio::task::JoinHandle<()>,
    inbound: HashMap<StreamProtocol, (usize, mpsc::Receiver<RawRequest>)>,
    topics: HashMap<String, mpsc::Receiver<TopicEvent>>,
}

impl Network {
    /// The requests of protocol `P`, taken once; none when the node does not serve it.
    pub fn inbound<P: rpc::Protocol>(&mut self) -> Option<Inbound<P>> {
        let (index, raw) = self.inbound.remove(&P::NAME)?;
        Some(Inbound::new(raw, self.client.clone(), index))
    }

    /// The messages of gossip topic `name`, taken once; none when the node does not follow it.
    pub fn topic(&mut self, name: &str) -> Option<mpsc::Receiver<TopicEvent>> {
        self.topics.remove(name)
    }
}

/// Builds the swarm, starts listening, dials the bootstrap peers and spawns the network task.
/// Returns once every listener has an address.
pub async fn start(keypair: Keypair, config: NetworkConfig) -> Result<Network, NetError> {
    let peer_id = keypair.public().to_peer_id();
    let registrations = Registration::all();
    if let Some(unknown) = config
        .serve
        .iter()
        .find(|name| registrations.iter().all(|r| r.name != **name))
    {
        return Err(NetError::Unregistered(unknown.to_string()));
    }
    let naming = Naming::new(config.network.as_deref())?;
    let traffic = traffic::Traffic::default();
    let mut swarm = build_swarm(keypair, &config, &registrations, &naming, &traffic)?;
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| NetError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
    }
    let mut listen_addrs = Vec::new();
    while listen_addrs.len() < config.listen.len() {
        match tokio::time::timeout(Duration::from_secs(10), swarm.select_next_some()).await {
            Ok(SwarmEvent::NewListenAddr { address, .. }) => listen_addrs.push(address),
            Ok(SwarmEvent::ListenerError { error, .. }) => {
                return Err(NetError::Build(error.to_string()));
            }
            Ok(other) => debug!(?other, "event while starting"),
            Err(_) => return Err(NetError::Build("listeners did not start in 10 s".into())),
        }
    }
    for addr in &config.bootstrap {
        let Some(Protocol::P2p(peer)) = addr.iter().last() else {
            return Err(NetError::BootstrapAddress(addr.clone()));
        };
        swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
        swarm.dial(addr.clone()).map_err(|e| NetError::Dial {
            addr: addr.clone(),
            reason: health::dial_reason(&e),
        })?;
    }
    if !config.bootstrap.is_empty() {
        // An empty routing table is the only error, and bootstrap addresses were just added.
        let _ = swarm.behaviour_mut().kad.bootstrap();
    }

    let (commands_tx, commands_rx) = mpsc::channel(256);
    let queue = config.inbound_queue.max(1);
    let (mut inbound_tx, mut inbound) = (Vec::new(), HashMap::new());
    for (index, registration) in registrations.iter().enumerate() {
        if config.serve.contains(&registration.name) {
            let (tx, rx) = mpsc::channel(queue);
            inbound_tx.push(Some(tx));
            inbound.insert(registration.name.clone(), (index, rx));
        } else {
            inbound_tx.push(None);
        }
    }
    let (mut topic_tx, mut topics) = (HashMap::new(), HashMap::new());
    for topic in &config.follow {
        let ident = naming.topic(&topic.name);
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&ident)
            .map_err(|e| NetError::Build(e.to_string()))?;
        let (tx, rx) = mpsc::channel(queue);
        topic_tx.insert(ident.hash(), (topic.clone(), tx));
        topics.insert(topic.name.clone(), rx);
    }
    // Half a connection's streams per protocol: the peer's own requests on the connection
    // (node to node) take from the same limit.
    let per_peer = (config.max_streams_per_connection / 2).max(1);
    let protocols = Arc::new(
        registrations
            .iter()
            .enumerate()
            .map(|(index, r)| (r.name.clone(), index))
            .collect(),
    );
    let (mapped_tx, mapped_rx) = mpsc::channel(8);
    let actor = Actor {
        swarm,
        commands: commands_rx,
        outbound: registrations
            .iter()
            .map(|_| Outbound::new(per_peer))
            .collect(),
        registrations,
        inbound: inbound_tx,
        topics: topic_tx,
        listen_addrs,
        observed: std::collections::VecDeque::new(),
        reachability: reachability::Tracker::default(),
        mappings: Vec::new(),
        mapped: mapped_rx,
        mapped_tx,
        pending_dials: HashMap::new(),
        pending_queries: HashMap::new(),
        naming,
        remote_ips: HashMap::new(),
        paths: paths::Paths::default(),
        traffic,
        relays: relays::RelayChoice::default(),
        relay_stats: RelayStats::default(),
        reserve_relays: config.reserve_relays,
        dht_server: config.dht_server,
        serving_dht: config.dht_server,
    };
    let task = tokio::spawn(actor.run());
    info!(%peer_id, "network started");
    Ok(Network {
        client: Client {
            commands: commands_tx,
            peer_id,
            protocols,
        },
        task,
        inbound,
        topics,
    })
}

/// A QUIC handshake is one round trip and a certificate check: under a second across the
/// world. libp2p waits 5 s; a dial to a node that is gone ends sooner (and at once where its
/// host reports the port closed: `quic_probe`).
const QUIC_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// A whole connection attempt on any transport: a TCP connect (with the SYN sent again at 1 s
/// and 3 s) and the Noise and Yamux negotiation after it, a few round trips. libp2p waits 10 s.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest gossip message of a node that follows no topic, which only publishes.
const MIN_GOSSIP_MESSAGE: usize = 1024;

fn build_swarm(
    keypair: Keypair,
    config: &NetworkConfig,
    registrations: &[Registration],
    naming: &Naming,
    traffic: &traffic::Traffic,
) -> Result<Swarm<Behaviour>, NetError> {
    let build = |e: &dyn std::fmt::Display| NetError::Build(e.to_string());
    let rr_config = request_response::Config::default()
        .with_request_timeout(config.request_timeout)
        .with_max_concurrent_streams(config.max_streams_per_connection);
    let protocols: Vec<_> = registrations
        .iter()
        .map(|r| {
            let support = if config.serve.contains(&r.name) {
                ProtocolSupport::Full
            } else {
                ProtocolSupport::Outbound
            };
            request_response::Behaviour::with_codec(
                FrameCodec::new(r.max_request, r.max_response),
                [(naming.protocol(&r.name), support)],
                rr_config.clone(),
            )
        })
        .collect();
    let max_gossip = config
        .follow
        .iter()
        .map(|t| t.max_message)
        .fold(MIN_GOSSIP_MESSAGE, usize::max);
    let gossip_config = gossipsub::ConfigBuilder::default()
        .max_transmit_size(max_gossip)
        .validation_mode(gossipsub::ValidationMode::Strict)
        // The same record announced by two nodes is one message.
        .message_id_fn(|m: &gossipsub::Message| {
            gossipsub::MessageId::from(blake3::hash(&m.data).as_bytes().to_vec())
        })
        .build()
        .map_err(|e| build(&e))?;
    let dht_server = config.dht_server;
    let republish = config.provider_republish;
    let caps = config.connections;
    let backoff = config.peer_backoff;
    let relay_budget = config.relay;
    let (kad_protocol, identify_version) = (naming.protocol(&KAD_PROTOCOL), naming.identify());
    let swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            || muxer::Config::counted_into(traffic.clone()),
        )
        .map_err(|e| build(&e))?
        .with_other_transport(|key| {
            let mut quic = libp2p::quic::Config::new(key);
            quic.handshake_timeout = QUIC_HANDSHAKE_TIMEOUT;
            let traffic = traffic.clone();
            libp2p::core::Transport::map(
                quic_probe::Probed(libp2p::quic::tokio::Transport::new(quic)),
                move |(peer, connection), _| {
                    (
                        peer,
                        traffic::CountedMuxer::new(connection, traffic.clone()),
                    )
                },
            )
        })
        .map_err(|e| build(&e))?
        .with_dns()
        .map_err(|e| build(&e))?
        .with_relay_client(noise::Config::new, || {
            muxer::Config::counted_into(traffic.clone())
        })
        .map_err(|e| build(&e))?
        .with_behaviour(|key, relay_client| {
            let peer_id = key.public().to_peer_id();
            let gossipsub = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gossip_config,
            )?;
            let mut kad_config = kad::Config::new(kad_protocol);
            kad_config
                .set_query_timeout(Duration::from_secs(30))
                .set_provider_publication_interval(Some(republish))
                .set_provider_record_ttl(Some(republish * 3));
            let mut kad = kad::Behaviour::with_config(
                peer_id,
                kad::store::MemoryStore::new(peer_id),
                kad_config,
            );
            kad.set_mode(Some(if dht_server {
                kad::Mode::Server
            } else {
                kad::Mode::Client
            }));
            Ok(Behaviour {
                connection_limits: connection_limits::Behaviour::new(
                    connection_limits::ConnectionLimits::default()
                        .with_max_pending_incoming(Some(caps.pending_incoming))
                        .with_max_established_incoming(Some(caps.established_incoming))
                        .with_max_established_per_peer(Some(caps.per_peer)),
                ),
                per_ip: limits::PerIpLimit::new(caps.per_ip),
                direct_first: limits::DirectFirst::default(),
                health: health::HealthGate::new(backoff),
                memory: memory_connection_limits::Behaviour::with_max_percentage(
                    caps.max_memory_fraction,
                ),
                // A node behind a NAT learns its relayed addresses after it connected: peers
                // hear of them at once, so that they can be handed on in the DHT.
                identify: identify::Behaviour::new(
                    identify::Config::new(identify_version, key.public())
                        .with_push_listen_addr_updates(true),
                ),
                ping: ping::Behaviour::new(ping::Config::new()),
                // Tests an observed address every 5 s, up to 10 candidates.
                autonat_client: autonat::v2::client::Behaviour::default(),
                autonat_server: autonat::v2::server::Behaviour::default(),
                candidates: port_mapping::Candidates::default(),
                relay: Toggle::from(relay_budget.enabled.then(|| {
                    let mut server = relay::Behaviour::new(peer_id, relay_budget.config());
                    // Offered only once AutoNAT finds this node dialable (the actor turns it
                    // on): a relayed address of its own is no reason to relay for others.
                    server.set_status(Some(relay::Status::Disable));
                    server
                })),
                relay_client,
                dcutr: dcutr::Behaviour::new(peer_id),
                kad,
                protocols: ProtocolSet::new(protocols),
                gossipsub,
            })
        })
        .map_err(|e| build(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .with_connection_timeout(CONNECTION_TIMEOUT)
        .build();
    Ok(swarm)
}
