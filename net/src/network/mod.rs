//! One task owns the libp2p `Swarm`; the rest of the program talks to it through a cloneable
//! [`Client`] that sends commands with reply channels, and receives inbound requests from a
//! bounded channel.
//!
//! ```text
//!  Client ──Command──▶ ┌──────────────┐ ──InboundRequest──▶ node logic
//!         ◀─oneshot─── │ network task │ ◀──Client::respond── node logic
//!                      │  (Swarm)     │ ◀═══ libp2p ═══▶ peers
//!                      └──────────────┘
//! ```

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use cid::Cid;
use futures::StreamExt as _;
use libp2p::{
    Multiaddr, PeerId, Swarm, SwarmBuilder, connection_limits, gossipsub, identify,
    identity::Keypair,
    kad, memory_connection_limits,
    multiaddr::Protocol,
    noise, ping,
    request_response::{self, ProtocolSupport, ResponseChannel},
    swarm::{NetworkBehaviour, SwarmEvent},
    tcp,
};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info};

pub use health::PeerStatus;

mod actor;
pub mod health;
mod inbound;
pub mod limits;
mod muxer;
mod outbound;
mod quic_probe;

use actor::Actor;
use outbound::Outbound;

use crate::{
    codec::CborCodec,
    protocol::{
        CHALLENGE_PROTOCOL, CRAWL_PROTOCOL, ChallengeRequest, ChallengeResponse, CrawlRequest,
        CrawlResponse, KAD_PROTOCOL, MAX_CHALLENGE_REQUEST, MAX_CHALLENGE_RESPONSE,
        MAX_CRAWL_MESSAGE, MAX_GOSSIP_MESSAGE, MAX_PIECE_REQUEST, MAX_PIECE_RESPONSE,
        MAX_REGISTRY_REQUEST, MAX_REGISTRY_RESPONSE, PIECE_PROTOCOL, PieceRequest, PieceResponse,
        RECEIPT_TOPIC, REGISTRY_PROTOCOL, REGISTRY_TOPIC, RegistryRequest, RegistryResponse,
    },
};

/// How the network task is set up.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Addresses to listen on (`/ip4/0.0.0.0/tcp/0`, `/ip4/127.0.0.1/udp/0/quic-v1`, ...).
    pub listen: Vec<Multiaddr>,
    /// Peers to join through; each address must end in `/p2p/PEER_ID`.
    pub bootstrap: Vec<Multiaddr>,
    /// Serve the DHT (storage nodes) or only query it (short-lived clients).
    pub dht_server: bool,
    /// Serve the piece and challenge protocols (storage nodes) or only send requests.
    pub serve: bool,
    /// Run the registry role: serve `/tessera/registry/1` and follow the announcement topic.
    pub registry: bool,
    /// Run the crawl coordinator role: serve `/tessera/crawl/1`.
    pub crawl: bool,
    /// Follow the audit receipt topic (auditors, and anyone keeping receipts).
    pub receipts: bool,
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
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            bootstrap: Vec::new(),
            dht_server: true,
            serve: true,
            registry: false,
            crawl: false,
            receipts: false,
            request_timeout: Duration::from_secs(30),
            max_streams_per_connection: 16,
            provider_republish: Duration::from_secs(60 * 60),
            inbound_queue: 256,
            connections: limits::ConnectionCaps::default(),
            peer_backoff: health::FIRST_BACKOFF,
        }
    }
}

impl NetworkConfig {
    /// A short-lived client (a CLI command, a training job): no listening, DHT in client mode,
    /// serves nothing, joins through `bootstrap`.
    pub fn client(bootstrap: Vec<Multiaddr>) -> Self {
        Self {
            bootstrap,
            dht_server: false,
            serve: false,
            registry: false,
            crawl: false,
            receipts: false,
            ..Self::default()
        }
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
    PeerDown(health::PeerDown),
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

/// A request from a peer, to be answered with [`Client::respond_piece`] or
/// [`Client::respond_challenge`].
#[derive(Debug)]
pub enum InboundRequest {
    /// A piece protocol request.
    Piece {
        /// Who asks.
        peer: PeerId,
        /// What they ask.
        request: PieceRequest,
        /// Where the answer goes.
        channel: ResponseChannel<PieceResponse>,
    },
    /// A storage challenge.
    Challenge {
        /// Who asks.
        peer: PeerId,
        /// The challenge.
        request: ChallengeRequest,
        /// Where the answer goes.
        channel: ResponseChannel<ChallengeResponse>,
    },
}

/// What reaches a node that runs the registry role.
#[derive(Debug)]
pub enum RegistryEvent {
    /// A registry protocol request, to be answered with [`Client::respond_registry`].
    Request {
        /// Who asks.
        peer: PeerId,
        /// What they ask.
        request: RegistryRequest,
        /// Where the answer goes.
        channel: ResponseChannel<RegistryResponse>,
    },
    /// A record block announced on the registry topic (unverified).
    Announcement {
        /// The peer that forwarded it.
        source: PeerId,
        /// The block.
        data: Vec<u8>,
    },
    /// A peer joined the registry topic: another registry node to catch up with.
    PeerJoined {
        /// The peer.
        peer: PeerId,
    },
}

/// A message on a gossip topic this node follows, as received: unverified.
#[derive(Debug, Clone)]
pub struct GossipMessage {
    /// The peer that forwarded it.
    pub source: PeerId,
    /// Its bytes.
    pub data: Vec<u8>,
}

/// A crawl protocol request, to be answered with [`Client::respond_crawl`] (only with the
/// crawl coordinator role).
#[derive(Debug)]
pub struct CrawlEvent {
    /// Who asks: the authenticated peer, whatever the message claims.
    pub peer: PeerId,
    /// What they ask.
    pub request: CrawlRequest,
    /// Where the answer goes.
    pub channel: ResponseChannel<CrawlResponse>,
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
    // Before any dial: peers that failed lately are not dialled again until their backoff ends.
    health: health::HealthGate,
    memory: memory_connection_limits::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    piece: request_response::Behaviour<CborCodec<PieceRequest, PieceResponse>>,
    challenge: request_response::Behaviour<CborCodec<ChallengeRequest, ChallengeResponse>>,
    registry: request_response::Behaviour<CborCodec<RegistryRequest, RegistryResponse>>,
    crawl: request_response::Behaviour<CborCodec<CrawlRequest, CrawlResponse>>,
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
    Piece(PeerId, PieceRequest, Reply<PieceResponse>),
    Challenge(PeerId, ChallengeRequest, Reply<ChallengeResponse>),
    RespondPiece(ResponseChannel<PieceResponse>, PieceResponse),
    RespondChallenge(ResponseChannel<ChallengeResponse>, ChallengeResponse),
    Registry(PeerId, RegistryRequest, Reply<RegistryResponse>),
    RespondRegistry(ResponseChannel<RegistryResponse>, RegistryResponse),
    Crawl(PeerId, CrawlRequest, Reply<CrawlResponse>),
    RespondCrawl(ResponseChannel<CrawlResponse>, CrawlResponse),
    Publish(&'static str, Vec<u8>, Reply<()>),
    PutRecord(Vec<u8>, Vec<u8>, Reply<()>),
    GetRecord(Vec<u8>, Reply<Vec<Vec<u8>>>),
    PeerStatus(Vec<PeerId>, oneshot::Sender<Vec<health::PeerStatus>>),
    Stalled(Duration, oneshot::Sender<Vec<(PeerId, Duration)>>),
    Info(oneshot::Sender<NetworkInfo>),
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

    /// Sends a piece protocol request and waits for its response.
    pub async fn piece_request(
        &self,
        peer: PeerId,
        request: PieceRequest,
    ) -> Result<PieceResponse, NetError> {
        self.call(|r| Command::Piece(peer, request, r)).await
    }

    /// Challenges `peer` to prove storage.
    pub async fn challenge(
        &self,
        peer: PeerId,
        request: ChallengeRequest,
    ) -> Result<ChallengeResponse, NetError> {
        self.call(|r| Command::Challenge(peer, request, r)).await
    }

    /// Answers an inbound piece request.
    pub async fn respond_piece(
        &self,
        channel: ResponseChannel<PieceResponse>,
        response: PieceResponse,
    ) -> Result<(), NetError> {
        self.commands
            .send(Command::RespondPiece(channel, response))
            .await
            .map_err(|_| NetError::Stopped)
    }

    /// Answers an inbound challenge.
    pub async fn respond_challenge(
        &self,
        channel: ResponseChannel<ChallengeResponse>,
        response: ChallengeResponse,
    ) -> Result<(), NetError> {
        self.commands
            .send(Command::RespondChallenge(channel, response))
            .await
            .map_err(|_| NetError::Stopped)
    }

    /// Sends a registry protocol request and waits for its response.
    pub async fn registry_request(
        &self,
        peer: PeerId,
        request: RegistryRequest,
    ) -> Result<RegistryResponse, NetError> {
        self.call(|r| Command::Registry(peer, request, r)).await
    }

    /// Answers an inbound registry request.
    pub async fn respond_registry(
        &self,
        channel: ResponseChannel<RegistryResponse>,
        response: RegistryResponse,
    ) -> Result<(), NetError> {
        self.commands
            .send(Command::RespondRegistry(channel, response))
            .await
            .map_err(|_| NetError::Stopped)
    }

    /// Sends a crawl protocol request and waits for its response.
    pub async fn crawl_request(
        &self,
        peer: PeerId,
        request: CrawlRequest,
    ) -> Result<CrawlResponse, NetError> {
        self.call(|r| Command::Crawl(peer, request, r)).await
    }

    /// Answers an inbound crawl request.
    pub async fn respond_crawl(
        &self,
        channel: ResponseChannel<CrawlResponse>,
        response: CrawlResponse,
    ) -> Result<(), NetError> {
        self.commands
            .send(Command::RespondCrawl(channel, response))
            .await
            .map_err(|_| NetError::Stopped)
    }

    /// Publishes `data` on the registry topic. Having no subscribed peer is not an error: the
    /// others catch up over `/tessera/registry/1`.
    pub async fn announce(&self, data: Vec<u8>) -> Result<(), NetError> {
        self.call(|r| Command::Publish(REGISTRY_TOPIC, data, r))
            .await
    }

    /// Publishes a receipt block on the receipt topic; having no subscribed peer is not an
    /// error.
    pub async fn share_receipt(&self, block: Vec<u8>) -> Result<(), NetError> {
        self.call(|r| Command::Publish(RECEIPT_TOPIC, block, r))
            .await
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

/// A running network: the client handle, the inbound request stream and the task.
#[derive(Debug)]
pub struct Network {
    /// Handle for commands.
    pub client: Client,
    /// Requests from peers (only when serving).
    pub inbound: mpsc::Receiver<InboundRequest>,
    /// Registry requests and announcements (only with the registry role).
    pub registry: mpsc::Receiver<RegistryEvent>,
    /// Crawl protocol requests (only with the crawl coordinator role).
    pub crawl: mpsc::Receiver<CrawlEvent>,
    /// Receipt blocks from the receipt topic (only when following it).
    pub receipts: mpsc::Receiver<GossipMessage>,
    /// The network task; it ends when every `Client` is dropped.
    pub task: tokio::task::JoinHandle<()>,
}

/// Builds the swarm, starts listening, dials the bootstrap peers and spawns the network task.
/// Returns once every listener has an address.
pub async fn start(keypair: Keypair, config: NetworkConfig) -> Result<Network, NetError> {
    let peer_id = keypair.public().to_peer_id();
    let mut swarm = build_swarm(keypair, &config)?;
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
            reason: e.to_string(),
        })?;
    }
    if !config.bootstrap.is_empty() {
        // An empty routing table is the only error, and bootstrap addresses were just added.
        let _ = swarm.behaviour_mut().kad.bootstrap();
    }

    let (commands_tx, commands_rx) = mpsc::channel(256);
    let (inbound_tx, inbound_rx) = mpsc::channel(config.inbound_queue.max(1));
    let (registry_tx, registry_rx) = mpsc::channel(config.inbound_queue.max(1));
    let (crawl_tx, crawl_rx) = mpsc::channel(config.inbound_queue.max(1));
    let (receipts_tx, receipts_rx) = mpsc::channel(config.inbound_queue.max(1));
    if config.receipts {
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&gossipsub::IdentTopic::new(RECEIPT_TOPIC))
            .map_err(|e| NetError::Build(e.to_string()))?;
    }
    if config.registry {
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&gossipsub::IdentTopic::new(REGISTRY_TOPIC))
            .map_err(|e| NetError::Build(e.to_string()))?;
    }
    // Half a connection's streams per protocol: the peer's own requests on the connection
    // (node to node) take from the same limit.
    let per_peer = (config.max_streams_per_connection / 2).max(1);
    let actor = Actor {
        swarm,
        commands: commands_rx,
        inbound: inbound_tx,
        registry_events: registry_tx,
        crawl_events: crawl_tx,
        receipt_events: receipts_tx,
        listen_addrs,
        observed: std::collections::VecDeque::new(),
        pending_dials: HashMap::new(),
        pending_queries: HashMap::new(),
        piece_out: Outbound::new(per_peer),
        challenge_out: Outbound::new(per_peer),
        registry_out: Outbound::new(per_peer),
        crawl_out: Outbound::new(per_peer),
    };
    let task = tokio::spawn(actor.run());
    info!(%peer_id, "network started");
    Ok(Network {
        client: Client {
            commands: commands_tx,
            peer_id,
        },
        inbound: inbound_rx,
        registry: registry_rx,
        crawl: crawl_rx,
        receipts: receipts_rx,
        task,
    })
}

/// A QUIC handshake is one round trip and a certificate check: under a second across the
/// world. libp2p waits 5 s; a dial to a node that is gone ends sooner (and at once where its
/// host reports the port closed: `quic_probe`).
const QUIC_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// A whole connection attempt on any transport: a TCP connect (with the SYN sent again at 1 s
/// and 3 s) and the Noise and Yamux negotiation after it, a few round trips. libp2p waits 10 s.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

fn build_swarm(keypair: Keypair, config: &NetworkConfig) -> Result<Swarm<Behaviour>, NetError> {
    let build = |e: &dyn std::fmt::Display| NetError::Build(e.to_string());
    let support = if config.serve {
        ProtocolSupport::Full
    } else {
        ProtocolSupport::Outbound
    };
    let rr_config = request_response::Config::default()
        .with_request_timeout(config.request_timeout)
        .with_max_concurrent_streams(config.max_streams_per_connection);
    let role = |on: bool| {
        if on {
            ProtocolSupport::Full
        } else {
            ProtocolSupport::Outbound
        }
    };
    let (registry_support, crawl_support) = (role(config.registry), role(config.crawl));
    let gossip_config = gossipsub::ConfigBuilder::default()
        .max_transmit_size(MAX_GOSSIP_MESSAGE)
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
    let swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            muxer::Config::default,
        )
        .map_err(|e| build(&e))?
        .with_other_transport(|key| {
            let mut quic = libp2p::quic::Config::new(key);
            quic.handshake_timeout = QUIC_HANDSHAKE_TIMEOUT;
            quic_probe::Probed(libp2p::quic::tokio::Transport::new(quic))
        })
        .map_err(|e| build(&e))?
        .with_dns()
        .map_err(|e| build(&e))?
        .with_behaviour(|key| {
            let peer_id = key.public().to_peer_id();
            let gossipsub = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gossip_config,
            )?;
            let mut kad_config = kad::Config::new(KAD_PROTOCOL);
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
                health: health::HealthGate::new(backoff),
                memory: memory_connection_limits::Behaviour::with_max_percentage(
                    caps.max_memory_fraction,
                ),
                identify: identify::Behaviour::new(identify::Config::new(
                    "/tessera/1.0.0".into(),
                    key.public(),
                )),
                ping: ping::Behaviour::new(ping::Config::new()),
                kad,
                piece: request_response::Behaviour::with_codec(
                    CborCodec::new(MAX_PIECE_REQUEST, MAX_PIECE_RESPONSE),
                    [(PIECE_PROTOCOL, support.clone())],
                    rr_config.clone(),
                ),
                challenge: request_response::Behaviour::with_codec(
                    CborCodec::new(MAX_CHALLENGE_REQUEST, MAX_CHALLENGE_RESPONSE),
                    [(CHALLENGE_PROTOCOL, support)],
                    rr_config.clone(),
                ),
                registry: request_response::Behaviour::with_codec(
                    CborCodec::new(MAX_REGISTRY_REQUEST, MAX_REGISTRY_RESPONSE),
                    [(REGISTRY_PROTOCOL, registry_support)],
                    rr_config.clone(),
                ),
                crawl: request_response::Behaviour::with_codec(
                    CborCodec::new(MAX_CRAWL_MESSAGE, MAX_CRAWL_MESSAGE),
                    [(CRAWL_PROTOCOL, crawl_support)],
                    rr_config,
                ),
                gossipsub,
            })
        })
        .map_err(|e| build(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .with_connection_timeout(CONNECTION_TIMEOUT)
        .build();
    Ok(swarm)
}
