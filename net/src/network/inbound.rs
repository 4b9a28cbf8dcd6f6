//! Inbound requests and messages: completed outbound requests go back to their callers;
//! requests and gossip go to the node logic through bounded queues, one per protocol and per
//! topic, and a full request queue is answered with the protocol's `Busy` at once rather than
//! left to time out.

use std::time::Instant;

use libp2p::{
    PeerId, gossipsub,
    request_response::{self, ResponseChannel},
};
use tokio::sync::mpsc;
use tracing::debug;

use super::{Actor, NetError, Outbound, TopicEvent, health::PeerHealth, protocol_set::Single};
use crate::{codec::Encoded, rpc::RawRequest};

impl Actor {
    /// An event of protocol `index`: an answer for a caller, or a request for the node logic,
    /// answered with the protocol's `Busy` at once when its queue is full.
    pub(super) fn on_protocol(
        &mut self,
        index: usize,
        event: request_response::Event<Encoded, Encoded>,
    ) {
        if let request_response::Event::Message {
            connection_id,
            message,
            ..
        } = &event
        {
            let bytes = match message {
                request_response::Message::Request { request, .. } => request.len(),
                request_response::Message::Response { response, .. } => response.len(),
            };
            self.paths.carried(*connection_id, bytes);
        }
        let behaviour = self.swarm.behaviour_mut();
        let (Some(outbound), Some(single)) = (
            self.outbound.get_mut(index),
            behaviour.protocols.get_mut(index),
        ) else {
            return;
        };
        let settled = settle(event, outbound, single, &mut behaviour.health.peers);
        let Some((peer, request, channel)) = self.settled(settled) else {
            return;
        };
        let raw = RawRequest {
            peer,
            bytes: request.concat(),
            channel,
        };
        let Some(Some(queue)) = self.inbound.get(index) else {
            return;
        };
        if let Err(mpsc::error::TrySendError::Full(raw)) = queue.try_send(raw) {
            let busy = self
                .registrations
                .get(index)
                .and_then(|r| (r.busy)(raw.bytes));
            if let (Some(busy), Some(single)) =
                (busy, self.swarm.behaviour_mut().protocols.get_mut(index))
            {
                let _ = single.send_response(raw.channel, busy);
            }
        }
    }

    pub(super) fn on_gossip(&mut self, event: gossipsub::Event) {
        let (hash, event) = match event {
            gossipsub::Event::Message {
                propagation_source,
                message,
                ..
            } => (
                message.topic,
                TopicEvent::Message {
                    source: propagation_source,
                    data: message.data,
                },
            ),
            gossipsub::Event::Subscribed { peer_id, topic } => {
                (topic, TopicEvent::PeerJoined { peer: peer_id })
            }
            _ => return,
        };
        let Some((topic, queue)) = self.topics.get(&hash) else {
            return;
        };
        if let TopicEvent::Message { data, .. } = &event
            && data.len() > topic.max_message
        {
            debug!(topic = %topic.name, len = data.len(), "gossip message over the topic's limit dropped");
            return;
        }
        if queue.try_send(event).is_err() {
            // A full queue drops messages; what follows a topic catches up by other means
            // (each topic's owner has one: a periodic catch-up, a query over HTTP).
            debug!(topic = %topic.name, "gossip message dropped: the queue is full");
        }
    }
}

/// What a request-response event came to.
pub(super) enum Settled {
    /// A request from a peer, for the node logic.
    Request(PeerId, Encoded, ResponseChannel<Encoded>),
    /// A request to this peer timed out: it is down now.
    TimedOut(PeerId),
    /// Nothing more to do.
    Done,
}

impl Actor {
    /// The inbound request, if any; a peer that let a request time out is disconnected, so
    /// that nothing else (the DHT included) waits on it until its backoff ends.
    fn settled(&mut self, settled: Settled) -> Option<(PeerId, Encoded, ResponseChannel<Encoded>)> {
        match settled {
            Settled::Request(peer, request, channel) => Some((peer, request, channel)),
            Settled::TimedOut(peer) => {
                let _ = self.swarm.disconnect_peer_id(peer);
                None
            }
            Settled::Done => None,
        }
    }
}

/// Completes outbound requests from a request-response event (and sends the requests that
/// waited for them), noting in `health` which peers answered and which timed out.
pub(super) fn settle(
    event: request_response::Event<Encoded, Encoded>,
    outbound: &mut Outbound,
    behaviour: &mut Single,
    health: &mut PeerHealth,
) -> Settled {
    let now = Instant::now();
    match event {
        request_response::Event::Message { peer, message, .. } => match message {
            request_response::Message::Request {
                request, channel, ..
            } => return Settled::Request(peer, request, channel),
            request_response::Message::Response {
                request_id,
                response,
            } => {
                health.answered(peer, now);
                outbound.finish(behaviour, health, request_id, Ok(response));
            }
        },
        request_response::Event::OutboundFailure {
            peer,
            request_id,
            error,
            ..
        } => {
            let timed_out = matches!(error, request_response::OutboundFailure::Timeout);
            let failed = NetError::Request {
                peer,
                reason: error.to_string(),
            };
            if timed_out {
                let backoff = health.timed_out(peer, now);
                debug!(%peer, ?backoff, "request timed out; peer marked down");
            } else {
                health.ended(peer, now);
            }
            outbound.finish(behaviour, health, request_id, Err(failed));
            if timed_out {
                return Settled::TimedOut(peer);
            }
        }
        request_response::Event::InboundFailure { peer, error, .. } => {
            debug!(%peer, %error, "inbound request failed");
        }
        request_response::Event::ResponseSent { .. } => {}
    }
    Settled::Done
}
