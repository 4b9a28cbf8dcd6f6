//! Real libp2p over 127.0.0.1: requests reach the serving node and come back, DHT provider
//! records are found, and oversize or garbage messages are refused without taking the node down.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, StreamExt as _};
use libp2p::{
    PeerId, StreamProtocol, noise,
    request_response::{self, ProtocolSupport},
    swarm::SwarmEvent,
    tcp, yamux,
};
use tessera_formats::address::raw_cid;
use tessera_net::{Inbound, Keypair, Multiaddr, Network, NetworkConfig, rpc::Protocol as _, start};

fn tcp() -> Vec<Multiaddr> {
    vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()]
}

async fn serving_node(listen: Vec<Multiaddr>, bootstrap: Vec<Multiaddr>) -> (Network, Multiaddr) {
    serving_node_as(Keypair::generate_ed25519(), listen, bootstrap).await
}

/// [`serving_node`] with the identity `key`: the same node again after it stopped.
async fn serving_node_as(
    key: Keypair,
    listen: Vec<Multiaddr>,
    bootstrap: Vec<Multiaddr>,
) -> (Network, Multiaddr) {
    let net = start(
        key,
        NetworkConfig {
            listen,
            bootstrap,
            ..NetworkConfig::default()
        }
        .serving::<NoteProtocol>(),
    )
    .await
    .unwrap();
    let info = net.client.info().await.unwrap();
    let addr = info.dialable_addrs()[0].clone();
    (net, addr)
}

/// Answers every note `net` is sent with "held 42" until it stops.
fn answer_notes(net: &mut Network) {
    let mut inbound: Inbound<NoteProtocol> = net.inbound().unwrap();
    tokio::spawn(async move {
        while let Some(req) = inbound.recv().await {
            req.responder.respond(held_42()).await.unwrap();
        }
    });
}

fn held_42() -> Note {
    Note("held 42".into())
}

/// Asks `peer` a note and expects the `answer_notes` reply.
async fn assert_answers(client: &tessera_net::Client, peer: PeerId) {
    let response = client
        .request::<NoteProtocol>(peer, Note("has x?".into()))
        .await
        .unwrap();
    assert_eq!(response, held_42());
    // The request and its answer are counted under their protocol.
    let (sent, received) = carried(client, "/tessera-test/note/1").await;
    assert!(sent > 6 && received > 6, "{sent} {received}");
}

/// Bytes (sent, received) that `client`'s node counted under `protocol`.
async fn carried(client: &tessera_net::Client, protocol: &str) -> (u64, u64) {
    let traffic = client.info().await.unwrap().traffic;
    traffic
        .iter()
        .find(|t| t.protocol == protocol)
        .map_or((0, 0), |t| (t.sent, t.received))
}

#[tokio::test]
async fn requests_round_trip_and_providers_are_found() {
    let (mut a, a_addr) = serving_node(tcp(), vec![]).await;
    let a_peer = a.client.peer_id();
    answer_notes(&mut a);
    let (b, _) = serving_node(tcp(), vec![a_addr.clone()]).await;

    let piece = raw_cid(b"a piece");
    assert_answers(&b.client, a_peer).await;

    // A provides; a third, short-lived client finds A through B alone.
    a.client.start_providing(piece).await.unwrap();
    let b_addr = b.client.info().await.unwrap().dialable_addrs()[0].clone();
    let c = start(
        Keypair::generate_ed25519(),
        NetworkConfig::client(vec![b_addr]),
    )
    .await
    .unwrap();
    let mut found = Default::default();
    for _ in 0..20 {
        found = c.client.get_providers(piece).await.unwrap();
        if found.contains(&a_peer) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(found.contains(&a_peer), "providers: {found:?}");
    // And C can reach A directly to ask it.
    assert_answers(&c.client, a_peer).await;
}

#[tokio::test]
async fn a_first_providers_lookup_names_holders_and_ends_without_any() {
    // Three servers, two of them providers; a client that knows only the third.
    let (a, a_addr) = serving_node(tcp(), vec![]).await;
    let (b, _) = serving_node(tcp(), vec![a_addr.clone()]).await;
    let (d, d_addr) = serving_node(tcp(), vec![a_addr]).await;
    let (holders, piece) = (
        [a.client.peer_id(), b.client.peer_id()],
        raw_cid(b"two holders"),
    );
    a.client.start_providing(piece).await.unwrap();
    b.client.start_providing(piece).await.unwrap();
    let c = start(
        Keypair::generate_ed25519(),
        NetworkConfig::client(vec![d_addr]),
    )
    .await
    .unwrap();

    let mut first = Default::default();
    for _ in 0..20 {
        first = c.client.find_providers(piece).await.unwrap();
        if !first.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!first.is_empty(), "no provider found");
    assert!(
        first.iter().all(|p| holders.contains(p)),
        "not a holder: {first:?}"
    );
    // The complete lookup still gathers both.
    let all = c.client.get_providers(piece).await.unwrap();
    assert!(
        holders.iter().all(|p| all.contains(p)),
        "providers: {all:?}"
    );

    // Nobody provides this one: the lookup ends, empty, rather than waiting for an answer.
    let none = tokio::time::timeout(
        Duration::from_secs(30),
        c.client.find_providers(raw_cid(b"nobody holds this")),
    )
    .await
    .expect("the lookup ends")
    .unwrap();
    assert!(none.is_empty(), "providers: {none:?}");
    drop(d);
}

#[tokio::test]
async fn oversize_and_garbage_requests_fail_and_the_node_keeps_serving() {
    let (mut a, a_addr) = serving_node(tcp(), vec![]).await;
    let a_peer = a.client.peer_id();
    answer_notes(&mut a);
    let (b, _) = serving_node(tcp(), vec![a_addr.clone()]).await;

    // Over the limit: refused on the sender's side before anything is sent.
    let oversize = Note("x".repeat(2 * usize::try_from(NoteProtocol::MAX_REQUEST).unwrap()));
    assert!(
        b.client
            .request::<NoteProtocol>(a_peer, oversize)
            .await
            .is_err()
    );

    // Garbage on the protocol, from a peer that writes raw bytes instead of DAG-CBOR.
    let reply = send_raw(&a_addr, a_peer, vec![0xff; 4096]).await;
    assert!(reply.is_err(), "garbage got a reply: {reply:?}");

    // The node still answers an honest request.
    assert_answers(&b.client, a_peer).await;
}

/// Writes raw bytes as a note request from a throwaway swarm and returns the raw reply.
async fn send_raw(addr: &Multiaddr, peer: PeerId, bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                RawCodec,
                [(NoteProtocol::NAME, ProtocolSupport::Outbound)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(10)),
            )
        })
        .unwrap()
        .build();
    swarm.dial(addr.clone()).unwrap();
    swarm.behaviour_mut().send_request(&peer, bytes);
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::Behaviour(request_response::Event::Message {
                message: request_response::Message::Response { response, .. },
                ..
            }) => return Ok(response),
            SwarmEvent::Behaviour(request_response::Event::OutboundFailure { error, .. }) => {
                return Err(error.to_string());
            }
            _ => {}
        }
    }
}

#[derive(Debug, Clone)]
struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        io.read_to_end(&mut buf).await?;
        Ok(buf)
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        io.take(1 << 20).read_to_end(&mut buf).await?;
        if buf.is_empty() {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(buf)
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> std::io::Result<()> {
        io.write_all(&req).await?;
        io.close().await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> std::io::Result<()> {
        io.write_all(&res).await?;
        io.close().await
    }
}

#[tokio::test]
async fn requests_round_trip_over_quic() {
    let quic = vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()];
    let (mut a, a_addr) = serving_node(quic, vec![]).await;
    let a_peer = a.client.peer_id();
    assert!(a_addr.to_string().contains("/quic-v1/"), "{a_addr}");
    answer_notes(&mut a);
    let b = start(
        Keypair::generate_ed25519(),
        NetworkConfig::client(vec![a_addr]),
    )
    .await
    .unwrap();
    assert_answers(&b.client, a_peer).await;
}

/// A protocol of the test's own, defined and registered as an application crate does.
#[derive(Debug)]
struct NoteProtocol;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Note(String);

impl tessera_net::codec::Message for Note {}

impl tessera_net::rpc::Protocol for NoteProtocol {
    const NAME: tessera_net::StreamProtocol =
        tessera_net::StreamProtocol::new("/tessera-test/note/1");
    const MAX_REQUEST: u64 = 1024;
    const MAX_RESPONSE: u64 = 1024;
    type Request = Note;
    type Response = Note;

    fn busy(_: &Note) -> Note {
        Note("busy".into())
    }
}

tessera_net::register_protocol!(NoteProtocol);

const NOTE_TOPIC: &str = "/tessera-test/notes/1";

async fn note_node(bootstrap: Vec<Multiaddr>) -> (Network, Multiaddr) {
    networked_node(None, bootstrap).await
}

#[tokio::test]
async fn a_crate_protocol_and_topic_travel_and_dht_records_too() {
    use tessera_net::TopicEvent;
    let (a, a_addr) = note_node(vec![]).await;
    let (mut b, _) = note_node(vec![a_addr.clone()]).await;
    let mut b_topic = b.topic(NOTE_TOPIC).unwrap();
    let mut b_requests: Inbound<NoteProtocol> = b.inbound().unwrap();
    let a_peer = a.client.peer_id();

    // B hears that A follows the topic, then receives what A announces.
    let mut joined = false;
    let mut heard = None;
    for round in 0..50u32 {
        a.client
            .publish(NOTE_TOPIC, format!("record {round}").into_bytes())
            .await
            .unwrap();
        let deadline = tokio::time::sleep(Duration::from_millis(200));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                event = b_topic.recv() => match event.unwrap() {
                    TopicEvent::PeerJoined { peer } => joined |= peer == a_peer,
                    TopicEvent::Message { data, .. } => { heard = Some(data); break; }
                },
                _ = &mut deadline => break,
            }
        }
        if heard.is_some() {
            break;
        }
    }
    assert!(joined, "B never saw A join the topic");
    assert!(heard.unwrap().starts_with(b"record "));

    // A request from a client reaches B's queue of the protocol and its answer comes back.
    let b_addr = b.client.info().await.unwrap().dialable_addrs()[0].clone();
    let c = start(
        Keypair::generate_ed25519(),
        NetworkConfig::client(vec![b_addr]),
    )
    .await
    .unwrap();
    let b_peer = b.client.peer_id();
    let answer = tokio::spawn(async move {
        let req = b_requests.recv().await.unwrap();
        assert_eq!(req.request, Note("hello".into()));
        req.responder
            .respond(Note("try later".into()))
            .await
            .unwrap();
        b
    });
    let response = c
        .client
        .request::<NoteProtocol>(b_peer, Note("hello".into()))
        .await
        .unwrap();
    assert_eq!(response, Note("try later".into()));
    let b = answer.await.unwrap();
    // Each side counted the exchange under the protocol: what one sent, the other received.
    let (c_sent, c_received) = carried(&c.client, "/tessera-test/note/1").await;
    let (b_sent, b_received) = carried(&b.client, "/tessera-test/note/1").await;
    assert!(c_sent > 0 && c_received > 0, "{c_sent} {c_received}");
    assert_eq!((c_sent, c_received), (b_received, b_sent));
    // The DHT and identify are counted too, and nothing went unnamed.
    let traffic = b.client.info().await.unwrap().traffic;
    for protocol in ["/tessera/kad/1.0.0", "/ipfs/id/1.0.0"] {
        assert!(
            traffic
                .iter()
                .any(|t| t.protocol == protocol && t.received > 0),
            "{protocol}: {traffic:?}"
        );
    }
    assert!(
        traffic.iter().all(|t| t.protocol != "unnegotiated"),
        "{traffic:?}"
    );

    // A node that does not serve the protocol refuses it.
    assert!(
        a.client
            .request::<NoteProtocol>(c.client.peer_id(), Note("hello".into()))
            .await
            .is_err()
    );

    // A DHT record put by A is found by the client.
    a.client
        .put_record(b"dataset head".to_vec(), b"value".to_vec())
        .await
        .unwrap();
    let found = c.client.get_record(b"dataset head".to_vec()).await.unwrap();
    assert!(found.contains(&b"value".to_vec()), "{found:?}");
}

#[tokio::test]
async fn inbound_connections_past_the_per_ip_cap_are_closed() {
    let server = start(
        Keypair::generate_ed25519(),
        NetworkConfig {
            listen: tcp(),
            connections: tessera_net::ConnectionCaps {
                per_ip: 2,
                ..Default::default()
            },
            ..NetworkConfig::default()
        },
    )
    .await
    .unwrap();
    let addr = server.client.info().await.unwrap().dialable_addrs()[0].clone();
    // Peer ids cost nothing: four of them, all from 127.0.0.1.
    let mut clients = Vec::new();
    for _ in 0..4 {
        let client = start(Keypair::generate_ed25519(), NetworkConfig::client(vec![]))
            .await
            .unwrap();
        let _ = client.client.dial(addr.clone()).await;
        clients.push(client);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let connected = server.client.info().await.unwrap().connected_peers.len();
    assert_eq!(
        connected, 2,
        "the server holds two connections from one address"
    );
    drop(clients);
}

#[tokio::test]
async fn a_node_learns_the_address_peers_see_it_at() {
    let (server, addr) = serving_node(tcp(), vec![]).await;
    let client = start(
        Keypair::generate_ed25519(),
        NetworkConfig::client(vec![addr]),
    )
    .await
    .unwrap();
    let mut observed = Vec::new();
    for _ in 0..50 {
        observed = client.client.info().await.unwrap().observed_addrs;
        if !observed.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        observed
            .iter()
            .any(|a| a.to_string().starts_with("/ip4/127.0.0.1/tcp/")),
        "{observed:?}"
    );
    drop(server);
}

/// A serving node with `key` on `listen`, answering every note with "held 42".
async fn has_node(key: Keypair, listen: Vec<Multiaddr>) -> Network {
    let (mut net, _) = serving_node_as(key, listen, vec![]).await;
    answer_notes(&mut net);
    net
}

/// Stops `net` and waits until `other` no longer has a connection to it.
async fn stop(net: Network, other: &tessera_net::Client) {
    let peer = net.client.peer_id();
    net.task.abort();
    let _ = net.task.await;
    for _ in 0..100 {
        if !other.info().await.unwrap().connected_peers.contains(&peer) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the connection to the stopped node stayed open");
}

#[tokio::test]
async fn a_peer_that_failed_is_not_dialled_within_its_backoff_and_is_used_once_it_answers() {
    let backoff = Duration::from_secs(2);
    let reader = start(
        Keypair::generate_ed25519(),
        NetworkConfig {
            listen: tcp(),
            peer_backoff: backoff,
            ..NetworkConfig::default()
        },
    )
    .await
    .unwrap()
    .client;
    let reader_addr = reader.info().await.unwrap().dialable_addrs()[0].clone();
    let key = Keypair::generate_ed25519();
    let node = has_node(key.clone(), tcp()).await;
    let peer = node.client.peer_id();
    // The node's own address, to come back on after it stops.
    let addr = node.client.info().await.unwrap().listen_addrs[0].clone();
    reader
        .dial(addr.clone().with(libp2p::multiaddr::Protocol::P2p(peer)))
        .await
        .unwrap();
    assert_answers(&reader, peer).await;

    // Gone: the request's dial is refused, and the peer is down.
    stop(node, &reader).await;
    let ask = || reader.request::<NoteProtocol>(peer, Note("has x?".into()));
    assert!(ask().await.is_err());
    let status = reader.peer_status(vec![peer]).await.unwrap();
    assert!(
        matches!(status[0], tessera_net::PeerStatus::Down(_)),
        "{status:?}"
    );

    // Back on the same address within the backoff: not dialled, refused at once.
    let node = has_node(key.clone(), vec![addr.clone()]).await;
    let refused = ask().await.unwrap_err();
    assert!(
        matches!(refused, tessera_net::NetError::PeerDown(_)),
        "{refused}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        node.client.info().await.unwrap().connected_peers.is_empty(),
        "the node was dialled within its backoff"
    );

    // Once the backoff ends it is tried again, and answers.
    tokio::time::sleep(backoff).await;
    assert_answers(&reader, peer).await;
    assert_eq!(
        reader.peer_status(vec![peer]).await.unwrap(),
        vec![tessera_net::PeerStatus::Up]
    );

    // Down again; this time it connects to the reader itself before the backoff ends, and is
    // used at once.
    stop(node, &reader).await;
    assert!(ask().await.is_err());
    let node = has_node(key, vec![addr]).await;
    node.client.dial(reader_addr).await.unwrap();
    for _ in 0..500 {
        if reader.info().await.unwrap().connected_peers.contains(&peer) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_answers(&reader, peer).await;
}

#[tokio::test]
async fn a_quic_dial_to_a_closed_port_is_refused_not_left_to_time_out() {
    let client = start(Keypair::generate_ed25519(), NetworkConfig::client(vec![]))
        .await
        .unwrap()
        .client;
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gone: Multiaddr = format!("/ip4/127.0.0.1/udp/{port}/quic-v1/p2p/{}", PeerId::random())
        .parse()
        .unwrap();
    let error = client.dial(gone).await.unwrap_err().to_string();
    assert!(error.contains("refused"), "{error}");
}

#[tokio::test]
async fn a_peer_whose_dial_never_completes_is_unreachable_before_the_dial_times_out() {
    let reader = start(Keypair::generate_ed25519(), NetworkConfig::client(vec![]))
        .await
        .unwrap()
        .client;
    // A live node first: the time a dial takes here.
    let node = has_node(Keypair::generate_ed25519(), tcp()).await;
    let live = node.client.peer_id();
    let addr = node.client.info().await.unwrap().dialable_addrs()[0].clone();
    reader.dial(addr).await.unwrap();
    // A frozen node, as the kernel keeps it: TCP connections accepted, never a byte back.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let frozen = PeerId::random();
    let frozen_addr: Multiaddr = format!(
        "/ip4/127.0.0.1/tcp/{}/p2p/{frozen}",
        silent.local_addr().unwrap().port()
    )
    .parse()
    .unwrap();
    let dial = tokio::spawn({
        let reader = reader.clone();
        async move { reader.dial(frozen_addr).await }
    });
    // Well within the 5 s connection timeout, the network says it cannot reach the peer.
    let mut status = Vec::new();
    for _ in 0..150 {
        status = reader.peer_status(vec![frozen, live]).await.unwrap();
        if matches!(status[0], tessera_net::PeerStatus::Unreachable(_)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        matches!(status[0], tessera_net::PeerStatus::Unreachable(_)),
        "{status:?}"
    );
    assert!(!dial.is_finished(), "the dial ended first");
    assert_eq!(status[1], tessera_net::PeerStatus::Up);
    dial.abort();
}

/// A node of `network` (none: the unnamed one) serving notes and following the note topic.
async fn networked_node(network: Option<&str>, bootstrap: Vec<Multiaddr>) -> (Network, Multiaddr) {
    let net = start(
        Keypair::generate_ed25519(),
        NetworkConfig {
            network: network.map(str::to_string),
            listen: tcp(),
            bootstrap,
            ..NetworkConfig::default()
        }
        .serving::<NoteProtocol>()
        .following(NOTE_TOPIC, 1024),
    )
    .await
    .unwrap();
    let addr = net.client.info().await.unwrap().dialable_addrs()[0].clone();
    (net, addr)
}

#[tokio::test]
async fn nodes_of_two_networks_connect_but_never_take_each_others_requests_or_gossip() {
    let (mut alpha, alpha_addr) = networked_node(Some("alpha"), vec![]).await;
    answer_notes(&mut alpha);
    let alpha_peer = alpha.client.peer_id();
    let (same, _) = networked_node(Some("alpha"), vec![alpha_addr.clone()]).await;
    // Beta dials alpha (it is its only bootstrap peer): the connection is made, the
    // protocols are not.
    let (mut beta, _) = networked_node(Some("beta"), vec![alpha_addr.clone()]).await;
    let mut beta_topic = beta.topic(NOTE_TOPIC).unwrap();
    let unnamed = start(
        Keypair::generate_ed25519(),
        NetworkConfig::client(vec![alpha_addr]),
    )
    .await
    .unwrap();

    assert_answers(&same.client, alpha_peer).await;
    assert!(
        beta.client
            .request::<NoteProtocol>(alpha_peer, Note("has x?".into()))
            .await
            .is_err(),
        "a node of another network was answered"
    );
    assert!(
        unnamed
            .client
            .request::<NoteProtocol>(alpha_peer, Note("has x?".into()))
            .await
            .is_err(),
        "a node of the unnamed network was answered"
    );

    // Alpha's gossip reaches its own network only.
    let mut same_topic = {
        let mut same = same;
        let rx = same.topic(NOTE_TOPIC).unwrap();
        (rx, same)
    };
    let mut heard_same = false;
    for round in 0..30u32 {
        alpha
            .client
            .publish(NOTE_TOPIC, format!("alpha {round}").into_bytes())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        while let Ok(event) = same_topic.0.try_recv() {
            heard_same |= matches!(event, tessera_net::TopicEvent::Message { .. });
        }
        if heard_same {
            break;
        }
    }
    assert!(heard_same, "alpha's own network did not hear it");
    while let Ok(event) = beta_topic.try_recv() {
        assert!(
            !matches!(event, tessera_net::TopicEvent::Message { .. }),
            "beta heard alpha's gossip"
        );
    }
    // A DHT record put in alpha is not found from beta.
    alpha
        .client
        .put_record(b"alpha head".to_vec(), b"value".to_vec())
        .await
        .unwrap();
    let found = beta.client.get_record(b"alpha head".to_vec()).await;
    assert!(
        found.map_or(true, |values| values.is_empty()),
        "beta found alpha's DHT record"
    );
}
