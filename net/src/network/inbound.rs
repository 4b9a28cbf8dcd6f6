//! Inbound requests and messages: completed outbound requests go back to their callers;
//! requests and announcements go to the node logic through bounded queues, and a full queue
//! is answered with `Busy` at once rather than left to time out.

use std::time::Instant;

use libp2p::{
    PeerId, gossipsub,
    request_response::{self, ResponseChannel},
};
use tokio::sync::mpsc;
use tracing::debug;

use super::{
    Actor, CrawlEvent, GossipMessage, InboundRequest, NetError, Outbound, RegistryEvent,
    health::PeerHealth,
};
use crate::codec::{CborCodec, Message};
use crate::protocol::{
    ChallengeRequest, ChallengeResponse, CrawlRequest, CrawlResponse, ErrorCode, PieceRequest,
    PieceResponse, RECEIPT_TOPIC, REGISTRY_TOPIC, RegistryErrorCode, RegistryRequest,
    RegistryResponse,
};

impl Actor {
    pub(super) fn on_piece(&mut self, event: request_response::Event<PieceRequest, PieceResponse>) {
        let behaviour = self.swarm.behaviour_mut();
        let settled = settle(
            event,
            &mut self.piece_out,
            &mut behaviour.piece,
            &mut behaviour.health.peers,
        );
        let Some((peer, request, channel)) = self.settled(settled) else {
            return;
        };
        let refused = self.inbound.try_send(InboundRequest::Piece {
            peer,
            request,
            channel,
        });
        if let Err(mpsc::error::TrySendError::Full(InboundRequest::Piece {
            channel,
            request,
            ..
        })) = refused
        {
            let busy = PieceResponse::Error {
                piece: *request.piece(),
                code: ErrorCode::Busy,
                message: "node is busy".into(),
            };
            let _ = self
                .swarm
                .behaviour_mut()
                .piece
                .send_response(channel, busy);
        }
    }

    pub(super) fn on_challenge(
        &mut self,
        event: request_response::Event<ChallengeRequest, ChallengeResponse>,
    ) {
        let behaviour = self.swarm.behaviour_mut();
        let settled = settle(
            event,
            &mut self.challenge_out,
            &mut behaviour.challenge,
            &mut behaviour.health.peers,
        );
        let Some((peer, request, channel)) = self.settled(settled) else {
            return;
        };
        let refused = self.inbound.try_send(InboundRequest::Challenge {
            peer,
            request,
            channel,
        });
        if let Err(mpsc::error::TrySendError::Full(InboundRequest::Challenge {
            channel,
            request,
            ..
        })) = refused
        {
            let busy = ChallengeResponse::Error {
                piece: request.piece,
                code: ErrorCode::Busy,
                message: "node is busy".into(),
            };
            let _ = self
                .swarm
                .behaviour_mut()
                .challenge
                .send_response(channel, busy);
        }
    }

    pub(super) fn on_registry(
        &mut self,
        event: request_response::Event<RegistryRequest, RegistryResponse>,
    ) {
        let behaviour = self.swarm.behaviour_mut();
        let settled = settle(
            event,
            &mut self.registry_out,
            &mut behaviour.registry,
            &mut behaviour.health.peers,
        );
        let Some((peer, request, channel)) = self.settled(settled) else {
            return;
        };
        let refused = self.registry_events.try_send(RegistryEvent::Request {
            peer,
            request,
            channel,
        });
        if let Err(mpsc::error::TrySendError::Full(RegistryEvent::Request { channel, .. })) =
            refused
        {
            let busy = RegistryResponse::Error {
                code: RegistryErrorCode::Busy,
                message: "registry is busy".into(),
            };
            let _ = self
                .swarm
                .behaviour_mut()
                .registry
                .send_response(channel, busy);
        }
    }

    pub(super) fn on_crawl(&mut self, event: request_response::Event<CrawlRequest, CrawlResponse>) {
        let behaviour = self.swarm.behaviour_mut();
        let settled = settle(
            event,
            &mut self.crawl_out,
            &mut behaviour.crawl,
            &mut behaviour.health.peers,
        );
        let Some((peer, request, channel)) = self.settled(settled) else {
            return;
        };
        let refused = self.crawl_events.try_send(CrawlEvent {
            peer,
            request,
            channel,
        });
        if let Err(mpsc::error::TrySendError::Full(CrawlEvent { channel, .. })) = refused {
            // An empty body is the coordinator's "busy": the node asks again later.
            let busy = CrawlResponse { body: Vec::new() };
            let _ = self
                .swarm
                .behaviour_mut()
                .crawl
                .send_response(channel, busy);
        }
    }

    pub(super) fn on_gossip(&mut self, event: gossipsub::Event) {
        let forwarded = match event {
            gossipsub::Event::Message {
                propagation_source,
                message,
                ..
            } if message.topic == gossipsub::IdentTopic::new(RECEIPT_TOPIC).hash() => {
                if self
                    .receipt_events
                    .try_send(GossipMessage {
                        source: propagation_source,
                        data: message.data,
                    })
                    .is_err()
                {
                    // Receipts are also served over HTTP; a busy node misses a few here.
                    debug!("receipt dropped: the receipt queue is full");
                }
                Ok(())
            }
            gossipsub::Event::Message {
                propagation_source,
                message,
                ..
            } => self.registry_events.try_send(RegistryEvent::Announcement {
                source: propagation_source,
                data: message.data,
            }),
            gossipsub::Event::Subscribed { peer_id, topic } if topic.as_str() == REGISTRY_TOPIC => {
                self.registry_events
                    .try_send(RegistryEvent::PeerJoined { peer: peer_id })
            }
            _ => Ok(()),
        };
        if forwarded.is_err() {
            // A full queue drops announcements; the periodic catch-up fetches what was missed.
            debug!("registry event dropped: the registry is busy");
        }
    }
}

/// What a request-response event came to.
pub(super) enum Settled<Req, Resp> {
    /// A request from a peer, for the node logic.
    Request(PeerId, Req, ResponseChannel<Resp>),
    /// A request to this peer timed out: it is down now.
    TimedOut(PeerId),
    /// Nothing more to do.
    Done,
}

impl Actor {
    /// The inbound request, if any; a peer that let a request time out is disconnected, so
    /// that nothing else (the DHT included) waits on it until its backoff ends.
    fn settled<Req, Resp>(
        &mut self,
        settled: Settled<Req, Resp>,
    ) -> Option<(PeerId, Req, ResponseChannel<Resp>)> {
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
pub(super) fn settle<Req: Message, Resp: Message>(
    event: request_response::Event<Req, Resp>,
    outbound: &mut Outbound<Req, Resp>,
    behaviour: &mut request_response::Behaviour<CborCodec<Req, Resp>>,
    health: &mut PeerHealth,
) -> Settled<Req, Resp> {
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
