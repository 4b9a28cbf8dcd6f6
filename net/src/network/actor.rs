//! The network task: the one owner of the `Swarm`, turning commands into swarm calls and
//! swarm events into replies, inbound requests and DHT results.

use std::{
    collections::{HashMap, HashSet},
    time::Instant,
};

use cid::Cid;
use futures::StreamExt as _;
use libp2p::{
    Multiaddr, PeerId, Swarm, gossipsub, identify,
    kad::{self, GetProvidersOk, GetRecordOk, QueryId, QueryResult, RecordKey},
    multiaddr::Protocol,
    swarm::{
        SwarmEvent,
        dial_opts::{DialOpts, PeerCondition},
    },
};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{
    Behaviour, BehaviourEvent, Command, Lookup, NetError, NetworkInfo, Outbound, Reply, Topic,
    TopicEvent,
};
use crate::rpc::{RawRequest, Registration};

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
}

impl Actor {
    /// The router mapped `addr` to a listen port: AutoNAT tests it. AutoNAT tries an address
    /// once, so when the same address (a port-preserving router) already failed a test that
    /// ran before the mapping existed, the router's word is taken for it.
    fn on_mapped(&mut self, addr: Multiaddr) {
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
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_event(event),
                command = self.commands.recv() => match command {
                    Some(c) => self.on_command(c),
                    None => break,
                },
                Some(addr) = self.mapped.recv() => self.on_mapped(addr),
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
                            reason: e.to_string(),
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
                let behaviour = swarm.behaviour_mut();
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
                });
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
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                let dialed = endpoint.is_dialer();
                if let Some(ip) = super::direct_ip(endpoint.get_remote_address())
                    && (dialed || !self.remote_ips.get(&peer_id).is_some_and(|(_, d)| *d))
                {
                    self.remote_ips.insert(peer_id, (ip, dialed));
                }
                for reply in self.pending_dials.remove(&peer_id).unwrap_or_default() {
                    let _ = reply.send(Ok(()));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.remote_ips.remove(&peer_id);
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } => {
                for reply in self.pending_dials.remove(&peer).unwrap_or_default() {
                    let _ = reply.send(Err(NetError::Dial {
                        addr: Multiaddr::empty().with(Protocol::P2p(peer)),
                        reason: error.to_string(),
                    }));
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                debug!(%peer_id, observed = %info.observed_addr, "identified");
                // Only addresses others can dial go into the routing table, which hands them on.
                for addr in info.listen_addrs {
                    if super::addresses::shareable(&addr, &self.listen_addrs) {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    }
                }
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
            }
            SwarmEvent::NewExternalAddrCandidate { address } => {
                debug!(%address, "observed at a candidate external address");
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                info!(%address, "reachable at a confirmed external address");
                self.reachability.confirmed(&address);
            }
            SwarmEvent::ExternalAddrExpired { address } => {
                self.reachability.expired(&address);
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

/// Most values one DHT record lookup collects.
const MAX_RECORD_VALUES: usize = 32;

fn key(cid: &Cid) -> RecordKey {
    RecordKey::new(&cid.to_bytes())
}
