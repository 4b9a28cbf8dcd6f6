//! The network task: the one owner of the `Swarm`, turning commands into swarm calls and
//! swarm events into replies, inbound requests and DHT results.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use cid::Cid;
use futures::StreamExt as _;
use libp2p::{
    Multiaddr, PeerId, Swarm, dcutr, gossipsub, identify,
    kad::{self, GetProvidersOk, GetRecordOk, QueryId, QueryResult, RecordKey},
    multiaddr::Protocol,
    relay,
    swarm::{
        SwarmEvent,
        dial_opts::{DialOpts, PeerCondition},
    },
};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::{
    Behaviour, BehaviourEvent, Command, Lookup, NetError, NetworkInfo, Outbound, Reply, Topic,
    TopicEvent,
    health::dial_reason,
    paths::{Paths, PeerPath, Route},
    reachability::is_relayed,
    relays::{RelayChoice, RelayStats},
};
use crate::{
    codec::Encoded,
    rpc::{RawRequest, Registration},
};

/// What waits for a path to its peer (see `paths`).
pub(super) enum Waiting {
    /// A request of protocol `index`.
    Request(usize, Encoded, Reply<Encoded>),
    /// A caller asking how the peer is reached.
    Probe(oneshot::Sender<PeerPath>),
}

/// How often punches waited on too long are given up.
const PUNCH_TICK: Duration = Duration::from_millis(250);

pub(super) enum Query {
    Bootstrap(Reply<()>),
    Provide(Reply<()>),
    Providers(Lookup, HashSet<PeerId>, Reply<HashSet<PeerId>>),
    Closest(Reply<Vec<PeerId>>),
    PutRecord(Reply<()>),
    GetRecord(Vec<Vec<u8>>, Reply<Vec<Vec<u8>>>),
}

/// Addresses kept of those peers saw this node at.
const MAX_OBSERVED: usize = 16;

pub(super) struct Actor {
    pub(super) swarm: Swarm<Behaviour>,
    pub(super) commands: mpsc::Receiver<Command>,
    /// The protocols registered in the program, by index.
    pub(super) registrations: Vec<Registration>,
    /// Each protocol's requests on the wire and waiting, by index.
    pub(super) outbound: Vec<Outbound>,
    /// The queue of each protocol this node serves, by index.
    pub(super) inbound: Vec<Option<mpsc::Sender<RawRequest>>>,
    /// The topics followed, and their queues.
    pub(super) topics: HashMap<gossipsub::TopicHash, (Topic, mpsc::Sender<TopicEvent>)>,
    pub(super) listen_addrs: Vec<Multiaddr>,
    /// The addresses peers saw this node connect from, newest last, at most
    /// [`MAX_OBSERVED`]: its own public addresses, when it is behind a router.
    pub(super) observed: std::collections::VecDeque<Multiaddr>,
    /// What AutoNAT found.
    pub(super) reachability: super::reachability::Tracker,
    /// The tasks keeping listen ports mapped on the home router, stopped with this task.
    pub(super) mappings: Vec<tokio::task::JoinHandle<()>>,
    /// Addresses the router mapped, from those tasks.
    pub(super) mapped: mpsc::Receiver<Multiaddr>,
    pub(super) mapped_tx: mpsc::Sender<Multiaddr>,
    pub(super) pending_dials: HashMap<PeerId, Vec<Reply<()>>>,
    pub(super) pending_queries: HashMap<QueryId, Query>,
    /// How protocols and topics are named on the wire.
    pub(super) naming: super::Naming,
    /// The IP address each connected peer's connection runs to, and whether this node
    /// dialed it (relayed connections left out): seen on the wire, unlike the addresses a
    /// peer reports. An address dialed is kept over the source of an inbound connection,
    /// which on one machine with several loopback addresses is always 127.0.0.1.
    pub(super) remote_ips: HashMap<PeerId, (std::net::IpAddr, bool)>,
    /// How each peer is reached, and what waits for a path.
    pub(super) paths: Paths<Waiting>,
    /// Bytes per protocol, counted by every connection's streams.
    pub(super) traffic: super::traffic::Traffic,
    /// The relays reserved on while behind a NAT.
    pub(super) relays: RelayChoice,
    /// What the relay service did.
    pub(super) relay_stats: RelayStats,
    /// Whether to reserve on relays while behind a NAT.
    pub(super) reserve_relays: bool,
    /// Whether this node is configured to serve the DHT, and whether it does now.
    pub(super) dht_server: bool,
    pub(super) serving_dht: bool,
}

impl Actor {
    /// The router mapped `addr` to a listen port: AutoNAT tests it. AutoNAT tries an address
    /// once, so when the same address (a port-preserving router) already failed a test that
    /// ran before the mapping existed, the router's word is taken for it.
    fn on_mapped(&mut self, addr: Multiaddr) {
        self.reachability.mapped(&addr);
        if self.reachability.failed(&addr) {
            info!(%addr, "mapped on the router after a dial-back there failed: taken as external");
            self.swarm.add_external_address(addr);
        } else {
            self.swarm.behaviour_mut().candidates.push(addr);
        }
    }

    /// Keeps `address` mapped on the home router, when it is one a router can map.
    fn map_on_router(&mut self, address: &Multiaddr) {
        if let Some(local) = super::port_mapping::mappable(address) {
            let found = self.mapped_tx.clone();
            self.mappings
                .push(tokio::spawn(super::port_mapping::keep_mapped(local, found)));
        }
    }

    pub(super) async fn run(mut self) {
        // The addresses bound before this task started.
        for address in self.listen_addrs.clone() {
            self.map_on_router(&address);
        }
        let mut tick = tokio::time::interval(PUNCH_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_event(event),
                command = self.commands.recv() => match command {
                    Some(c) => self.on_command(c),
                    None => break,
                },
                Some(addr) = self.mapped.recv() => self.on_mapped(addr),
                _ = tick.tick() => {
                    let expired = self.paths.expire(Instant::now());
                    for (peer, released) in expired.released {
                        debug!(%peer, "no hole punched in time: going on through the relay");
                        self.release(peer, released);
                    }
                    for relayed in expired.close {
                        debug!("closing a relayed connection: a direct one is up");
                        self.swarm.close_connection(relayed);
                    }
                }
            }
        }
        for mapping in &self.mappings {
            mapping.abort();
        }
        debug!("network task stopped");
    }

    fn on_command(&mut self, command: Command) {
        let swarm = &mut self.swarm;
        match command {
            Command::Dial(addr, reply) => {
                let peer = match addr.iter().last() {
                    Some(Protocol::P2p(peer)) => Some(peer),
                    _ => None,
                };
                if let Some(peer) = peer {
                    swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
                    if swarm.is_connected(&peer) {
                        let _ = reply.send(Ok(()));
                        return;
                    }
                }
                match swarm.dial(addr.clone()) {
                    Ok(()) => match peer {
                        Some(peer) => self.pending_dials.entry(peer).or_default().push(reply),
                        None => {
                            let _ = reply.send(Ok(()));
                        }
                    },
                    Err(e) => {
                        let _ = reply.send(Err(NetError::Dial {
                            addr,
                            reason: dial_reason(&e),
                        }));
                    }
                }
            }
            Command::Bootstrap(reply) => match swarm.behaviour_mut().kad.bootstrap() {
                Ok(id) => {
                    self.pending_queries.insert(id, Query::Bootstrap(reply));
                }
                Err(e) => {
                    let _ = reply.send(Err(NetError::Dht(e.to_string())));
                }
            },
            Command::StartProviding(cid, reply) => {
                match swarm.behaviour_mut().kad.start_providing(key(&cid)) {
                    Ok(id) => {
                        self.pending_queries.insert(id, Query::Provide(reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(NetError::Dht(e.to_string())));
                    }
                }
            }
            Command::StopProviding(cid) => swarm.behaviour_mut().kad.stop_providing(&key(&cid)),
            Command::GetProviders(cid, lookup, reply) => {
                let id = swarm.behaviour_mut().kad.get_providers(key(&cid));
                self.pending_queries
                    .insert(id, Query::Providers(lookup, HashSet::new(), reply));
            }
            Command::ClosestPeers(key, reply) => {
                let id = swarm.behaviour_mut().kad.get_closest_peers(key);
                self.pending_queries.insert(id, Query::Closest(reply));
            }
            Command::Request(index, peer, request, reply) => {
                // A peer in its backoff is refused at once, not dialled.
                let down = swarm
                    .behaviour()
                    .health
                    .peers
                    .down(&peer, Instant::now())
                    .is_some();
                if down {
                    self.send(peer, Waiting::Request(index, request, reply));
                } else {
                    self.route(peer, Waiting::Request(index, request, reply));
                }
            }
            Command::Paths(peers, reply) => {
                let mut answers = Vec::with_capacity(peers.len());
                for peer in peers {
                    let (tx, rx) = oneshot::channel();
                    if peer == *self.swarm.local_peer_id() {
                        let _ = tx.send(PeerPath::Direct);
                    } else {
                        self.route(peer, Waiting::Probe(tx));
                    }
                    answers.push(rx);
                }
                tokio::spawn(async move {
                    let mut paths = Vec::with_capacity(answers.len());
                    for answer in answers {
                        paths.push(answer.await.unwrap_or(PeerPath::None));
                    }
                    let _ = reply.send(paths);
                });
            }
            Command::Respond(index, channel, response) => {
                if let Some(single) = swarm.behaviour_mut().protocols.get_mut(index) {
                    let sent = single.send_response(channel, response);
                    if sent.is_err() {
                        debug!(index, "response dropped: the peer went away");
                    }
                }
            }
            Command::Publish(topic, data, reply) => {
                let topic = self.naming.topic(&topic);
                let result = match swarm.behaviour_mut().gossipsub.publish(topic, data) {
                    Ok(_)
                    | Err(
                        gossipsub::PublishError::NoPeersSubscribedToTopic
                        | gossipsub::PublishError::Duplicate,
                    ) => Ok(()),
                    Err(e) => Err(NetError::Gossip(e.to_string())),
                };
                let _ = reply.send(result);
            }
            Command::PutRecord(key, value, reply) => {
                let record = kad::Record::new(key, value);
                match swarm
                    .behaviour_mut()
                    .kad
                    .put_record(record, kad::Quorum::One)
                {
                    Ok(id) => {
                        self.pending_queries.insert(id, Query::PutRecord(reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(NetError::Dht(e.to_string())));
                    }
                }
            }
            Command::GetRecord(key, reply) => {
                let id = swarm.behaviour_mut().kad.get_record(RecordKey::new(&key));
                self.pending_queries
                    .insert(id, Query::GetRecord(Vec::new(), reply));
            }
            Command::PeerStatus(peers, reply) => {
                let (health, now) = (&swarm.behaviour().health.peers, Instant::now());
                let _ = reply.send(peers.iter().map(|p| health.status(p, now)).collect());
            }
            Command::PeerIps(peers, reply) => {
                let _ = reply.send(
                    peers
                        .iter()
                        .map(|p| self.remote_ips.get(p).map(|(ip, _)| *ip))
                        .collect(),
                );
            }
            Command::Stalled(longer_than, reply) => {
                let health = &swarm.behaviour().health.peers;
                let _ = reply.send(health.stalled(longer_than, 3, Instant::now()));
            }
            Command::Info(reply) => {
                let _ = reply.send(NetworkInfo {
                    peer_id: *swarm.local_peer_id(),
                    listen_addrs: self.listen_addrs.clone(),
                    connected_peers: swarm.connected_peers().copied().collect(),
                    observed_addrs: self
                        .observed
                        .iter()
                        .chain(swarm.external_addresses())
                        .cloned()
                        .collect(),
                    external_addrs: swarm.external_addresses().cloned().collect(),
                    reachability: self.reachability.state(),
                    relay_addrs: swarm
                        .external_addresses()
                        .filter(|a| is_relayed(a))
                        .cloned()
                        .collect(),
                    paths: self.paths.stats(),
                    relay: self.relay_stats,
                    traffic: self
                        .traffic
                        .snapshot()
                        .into_iter()
                        .map(|mut t| {
                            t.protocol = self.naming.registered(&t.protocol).to_string();
                            t
                        })
                        .collect(),
                });
            }
        }
    }

    /// Sends `item` for `peer` now, or once it has a path (dialling it if nothing else does).
    fn route(&mut self, peer: PeerId, item: Waiting) {
        match self.paths.route(peer, item) {
            Route::Send(item) => self.send(peer, item),
            Route::Wait => {}
            Route::Dial => {
                let opts = DialOpts::peer_id(peer)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build();
                match self.swarm.dial(opts) {
                    // Another dial to the peer is under way: its outcome releases these.
                    Ok(()) | Err(libp2p::swarm::DialError::DialPeerConditionFalse(_)) => {}
                    Err(e) => {
                        let reason = format!("Failed to dial the requested peer: {e}");
                        for item in self.paths.dial_failed(peer) {
                            fail(peer, item, &reason);
                        }
                    }
                }
            }
        }
    }

    /// A peer met only through a relay that advertises addresses of its own (it is public,
    /// or mapped) is dialled there at once: the hole punch is for two NATs, and against a
    /// public peer both of its ends would wait for the other to speak first.
    fn dial_directly(&mut self, peer: PeerId, addrs: &[Multiaddr]) {
        if self.paths.path(&peer) != PeerPath::Relayed {
            return;
        }
        let direct: Vec<Multiaddr> = addrs
            .iter()
            .filter(|a| !is_relayed(a) && super::addresses::shareable(a, &self.listen_addrs))
            .cloned()
            .collect();
        if direct.is_empty() {
            return;
        }
        debug!(%peer, addrs = ?direct, "met through a relay: dialling its own addresses");
        // From a port of its own: the hole punch dials the same address from the listen
        // port, and two connections cannot share a port pair.
        let opts = DialOpts::peer_id(peer)
            .addresses(direct)
            .condition(PeerCondition::Always)
            .allocate_new_port()
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            debug!(%peer, error = %e, "dialling a relayed peer directly failed");
        }
    }

    /// Sends what waited for `peer`.
    fn release(&mut self, peer: PeerId, items: Vec<Waiting>) {
        for item in items {
            self.send(peer, item);
        }
    }

    fn send(&mut self, peer: PeerId, item: Waiting) {
        match item {
            Waiting::Probe(reply) => {
                let _ = reply.send(self.paths.path(&peer));
            }
            Waiting::Request(index, request, reply) => {
                let behaviour = self.swarm.behaviour_mut();
                match (
                    self.outbound.get_mut(index),
                    behaviour.protocols.get_mut(index),
                ) {
                    (Some(outbound), Some(single)) => {
                        outbound.request(single, &mut behaviour.health.peers, peer, request, reply);
                    }
                    _ => {
                        let _ = reply.send(Err(NetError::Unregistered(format!("#{index}"))));
                    }
                }
            }
        }
    }

    /// Reserves on relays while behind a NAT and gives them up once dialable; offers relaying
    /// only while dialable. A DHT server behind a symmetric NAT steps out of the DHT: peers
    /// behind NATs of their own cannot reach it except through a relay, which carries no
    /// pieces, so it should be given none.
    fn update_relays(&mut self) {
        let state = self.reachability.state();
        let serve_dht = self.dht_server && state != super::Reachability::Symmetric;
        if serve_dht != self.serving_dht {
            self.serving_dht = serve_dht;
            if serve_dht {
                info!("serving the DHT again: reachable");
            } else {
                warn!("behind a symmetric NAT: out of the DHT, taking no pieces, until reachable");
            }
            self.swarm.behaviour_mut().kad.set_mode(Some(if serve_dht {
                kad::Mode::Server
            } else {
                kad::Mode::Client
            }));
        }
        if let Some(server) = self.swarm.behaviour_mut().relay.as_mut() {
            let status = if state.dialable() {
                relay::Status::Enable
            } else {
                relay::Status::Disable
            };
            if self.relay_stats.serving != state.dialable() {
                info!(serving = state.dialable(), "relay service");
            }
            server.set_status(Some(status));
            self.relay_stats.serving = state.dialable();
        }
        if state.dialable() {
            for listener in self.relays.drain() {
                self.swarm.remove_listener(listener);
            }
        } else if self.reserve_relays && state.behind_nat() {
            for (relay, addr) in self.relays.wanted() {
                match self.swarm.listen_on(addr.clone()) {
                    Ok(listener) => {
                        info!(%relay, "asking a relay for a reservation");
                        self.relays.reserving(relay, listener);
                    }
                    Err(e) => debug!(%addr, error = %e, "cannot listen through a relay"),
                }
            }
        }
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                self.map_on_router(&address);
                self.listen_addrs.push(address);
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs.retain(|a| *a != address);
            }
            SwarmEvent::ListenerClosed { listener_id, .. } => {
                self.relays.listener_closed(listener_id);
                self.update_relays();
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                connection_id,
                ..
            } => {
                let dialed = endpoint.is_dialer();
                if let Some(ip) = super::direct_ip(endpoint.get_remote_address())
                    && (dialed || !self.remote_ips.get(&peer_id).is_some_and(|(_, d)| *d))
                {
                    self.remote_ips.insert(peer_id, (ip, dialed));
                }
                let relayed = endpoint.is_relayed();
                debug!(peer = %peer_id, path = if relayed { "relayed" } else { "direct" }, "connected");
                let released =
                    self.paths
                        .established(peer_id, connection_id, relayed, Instant::now());
                self.release(peer_id, released);
                for reply in self.pending_dials.remove(&peer_id).unwrap_or_default() {
                    let _ = reply.send(Ok(()));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                let released = self.paths.closed(peer_id, connection_id);
                self.release(peer_id, released);
                if num_established == 0 {
                    self.remote_ips.remove(&peer_id);
                    if let Some(listener) = self.relays.gone(&peer_id) {
                        self.swarm.remove_listener(listener);
                        self.update_relays();
                    }
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } => {
                let why = dial_reason(&error);
                let reason = format!("Failed to dial the requested peer: {why}");
                for item in self.paths.dial_failed(peer) {
                    fail(peer, item, &reason);
                }
                for reply in self.pending_dials.remove(&peer).unwrap_or_default() {
                    let _ = reply.send(Err(NetError::Dial {
                        addr: Multiaddr::empty().with(Protocol::P2p(peer)),
                        reason: why.clone(),
                    }));
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(dcutr::Event {
                remote_peer_id,
                result,
            })) => match result {
                Ok(_) => info!(peer = %remote_peer_id, "hole punched: direct connection"),
                Err(e) => {
                    info!(peer = %remote_peer_id, error = %e, "hole punch failed: relayed only");
                    let released = self.paths.punch_failed(remote_peer_id);
                    self.release(remote_peer_id, released);
                }
            },
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(event)) => match event {
                relay::client::Event::ReservationReqAccepted {
                    relay_peer_id,
                    renewal: false,
                    limit,
                } => info!(relay = %relay_peer_id, ?limit, "reserved on a relay"),
                other => debug!(?other, "relay client"),
            },
            SwarmEvent::Behaviour(BehaviourEvent::Relay(event)) => self.on_relay(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                debug!(%peer_id, observed = %info.observed_addr, "identified");
                // Only addresses others can dial go into the routing table, which hands them on.
                // A peer not serving the DHT (a client, or a node behind a symmetric NAT)
                // is no place to store records or pieces: it leaves the routing table.
                let relays = info.protocols.contains(&relay::HOP_PROTOCOL_NAME);
                let dht = info
                    .protocols
                    .contains(&self.naming.protocol(&super::KAD_PROTOCOL));
                if !dht {
                    self.swarm.behaviour_mut().kad.remove_peer(&peer_id);
                }
                self.dial_directly(peer_id, &info.listen_addrs);
                for addr in info.listen_addrs {
                    if super::addresses::shareable(&addr, &self.listen_addrs) {
                        if relays && !is_relayed(&addr) {
                            self.relays.offered(peer_id, addr.clone());
                        }
                        if dht {
                            self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                        }
                    }
                }
                self.reachability.observed(peer_id, &info.observed_addr);
                self.update_relays();
                if !self.observed.contains(&info.observed_addr) {
                    if self.observed.len() == MAX_OBSERVED {
                        self.observed.pop_front();
                    }
                    self.observed.push_back(info.observed_addr);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::AutonatClient(event)) => {
                let answered = event.result.is_ok();
                debug!(addr = %event.tested_addr, server = %event.server, answered, "AutoNAT test");
                self.reachability.tested(&event.tested_addr, answered);
                self.update_relays();
            }
            SwarmEvent::NewExternalAddrCandidate { address } => {
                debug!(%address, "observed at a candidate external address");
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                info!(%address, "reachable at a confirmed external address");
                self.reachability.confirmed(&address);
                self.update_relays();
            }
            SwarmEvent::ExternalAddrExpired { address } => {
                self.reachability.expired(&address);
                self.update_relays();
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => self.on_kad(event),
            SwarmEvent::Behaviour(BehaviourEvent::Protocols((index, event))) => {
                self.on_protocol(index, event);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(event)) => self.on_gossip(event),
            _ => {}
        }
    }

    fn on_kad(&mut self, event: kad::Event) {
        let kad::Event::OutboundQueryProgressed {
            id, result, step, ..
        } = event
        else {
            return;
        };
        match result {
            QueryResult::Bootstrap(result) => {
                if step.last
                    && let Some(Query::Bootstrap(reply)) = self.pending_queries.remove(&id)
                {
                    let _ =
                        reply.send(result.map(|_| ()).map_err(|e| NetError::Dht(e.to_string())));
                }
            }
            QueryResult::StartProviding(result) => {
                if let Some(Query::Provide(reply)) = self.pending_queries.remove(&id) {
                    // A record with no peers to store it on still leaves this node answering
                    // for itself; report the DHT error so the caller can retry.
                    let _ =
                        reply.send(result.map(|_| ()).map_err(|e| NetError::Dht(e.to_string())));
                }
            }
            QueryResult::GetProviders(result) => {
                let mut done = step.last;
                if let Some(Query::Providers(lookup, found, _)) = self.pending_queries.get_mut(&id)
                    && let Ok(GetProvidersOk::FoundProviders { providers, .. }) = &result
                {
                    found.extend(providers.iter().copied());
                    // Kademlia knows a provider's addresses only while the query runs: connect
                    // now, so the requests that follow can reach it by id.
                    for peer in providers {
                        if peer != self.swarm.local_peer_id() && !self.swarm.is_connected(peer) {
                            let opts = DialOpts::peer_id(*peer)
                                .condition(PeerCondition::DisconnectedAndNotDialing)
                                .build();
                            if let Err(e) = self.swarm.dial(opts) {
                                debug!(%peer, error = %e, "dialing a provider failed");
                            }
                        }
                    }
                    // This node's own record (its store answers first) is no reason to stop:
                    // it is asking because it wants the content from someone else.
                    let local = *self.swarm.local_peer_id();
                    if *lookup == Lookup::First && found.iter().any(|p| *p != local) {
                        // The answers still in flight are dropped with the query.
                        if let Some(mut query) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                            query.finish();
                        }
                        done = true;
                    }
                }
                if done
                    && let Some(Query::Providers(_, found, reply)) =
                        self.pending_queries.remove(&id)
                {
                    let _ = reply.send(Ok(found));
                }
            }
            QueryResult::GetClosestPeers(result) => {
                if let Some(Query::Closest(reply)) = self.pending_queries.remove(&id) {
                    // A timed-out query still reports the peers it found.
                    let peers = match result {
                        Ok(ok) => ok.peers,
                        Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
                    };
                    let kad = &mut self.swarm.behaviour_mut().kad;
                    let mut ids = Vec::with_capacity(peers.len());
                    for info in peers {
                        for addr in info.addrs {
                            kad.add_address(&info.peer_id, addr);
                        }
                        ids.push(info.peer_id);
                    }
                    let _ = reply.send(Ok(ids));
                }
            }
            QueryResult::PutRecord(result) => {
                if let Some(Query::PutRecord(reply)) = self.pending_queries.remove(&id) {
                    let _ =
                        reply.send(result.map(|_| ()).map_err(|e| NetError::Dht(e.to_string())));
                }
            }
            QueryResult::GetRecord(result) => {
                if let Some(Query::GetRecord(found, _)) = self.pending_queries.get_mut(&id)
                    && let Ok(GetRecordOk::FoundRecord(peer_record)) = result
                    && found.len() < MAX_RECORD_VALUES
                {
                    found.push(peer_record.record.value);
                }
                if step.last
                    && let Some(Query::GetRecord(found, reply)) = self.pending_queries.remove(&id)
                {
                    // Not found and timed out both end with what was found so far.
                    let _ = reply.send(Ok(found));
                }
            }
            QueryResult::RepublishProvider(Err(e)) => {
                warn!(error = %e, "republishing a provider record failed")
            }
            _ => {}
        }
    }
}

impl Actor {
    fn on_relay(&mut self, event: relay::Event) {
        let stats = &mut self.relay_stats;
        match event {
            relay::Event::ReservationReqAccepted { src_peer_id, .. } => {
                debug!(peer = %src_peer_id, "relay reservation accepted");
                stats.reservations += 1;
            }
            relay::Event::ReservationClosed { .. } | relay::Event::ReservationTimedOut { .. } => {
                stats.reservations = stats.reservations.saturating_sub(1);
            }
            relay::Event::ReservationReqDenied { .. } | relay::Event::CircuitReqDenied { .. } => {
                stats.denied += 1;
            }
            relay::Event::CircuitReqAccepted {
                src_peer_id,
                dst_peer_id,
            } => {
                debug!(src = %src_peer_id, dst = %dst_peer_id, "relaying a circuit");
                stats.circuits += 1;
            }
            relay::Event::CircuitClosed {
                src_peer_id,
                dst_peer_id,
                error: Some(error),
            } => {
                debug!(src = %src_peer_id, dst = %dst_peer_id, %error, "relayed circuit cut");
                stats.cut += 1;
            }
            _ => {}
        }
    }
}

/// Fails what waited for a peer that could not be dialled.
fn fail(peer: PeerId, item: Waiting, reason: &str) {
    match item {
        Waiting::Probe(reply) => {
            let _ = reply.send(PeerPath::None);
        }
        Waiting::Request(_, _, reply) => {
            let _ = reply.send(Err(NetError::Request {
                peer,
                reason: reason.to_string(),
            }));
        }
    }
}

/// Most values one DHT record lookup collects.
const MAX_RECORD_VALUES: usize = 32;

fn key(cid: &Cid) -> RecordKey {
    RecordKey::new(&cid.to_bytes())
}
