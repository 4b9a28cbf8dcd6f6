//! Inbound requests and messages: completed outbound requests go back to their callers;
//! requests and announcements go to the node logic through bounded queues, and a full queue
//! is answered with `Busy` at once rather than left to time out.

use std::collections::HashMap;

use libp2p::{
    PeerId, gossipsub,
    request_response::{self, OutboundRequestId, ResponseChannel},
};
use tokio::sync::mpsc;
use tracing::debug;

use super::{Actor, CrawlEvent, GossipMessage, InboundRequest, NetError, RegistryEvent, Reply};
use crate::protocol::{
    ChallengeRequest, ChallengeResponse, CrawlRequest, CrawlResponse, ErrorCode, PieceRequest,
    PieceResponse, RECEIPT_TOPIC, REGISTRY_TOPIC, RegistryErrorCode, RegistryRequest,
    RegistryResponse,
};

impl Actor {
    pub(super) fn on_piece(&mut self, event: request_response::Event<PieceRequest, PieceResponse>) {
        let Some((peer, request, channel)) = settle(event, &mut self.pending_piece) else {
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
        let Some((peer, request, channel)) = settle(event, &mut self.pending_challenge) else {
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
        let Some((peer, request, channel)) = settle(event, &mut self.pending_registry) else {
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
        let Some((peer, request, channel)) = settle(event, &mut self.pending_crawl) else {
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

/// Completes outbound requests from a request-response event; returns an inbound request for
/// the caller to forward.
pub(super) fn settle<Req, Resp>(
    event: request_response::Event<Req, Resp>,
    pending: &mut HashMap<OutboundRequestId, (PeerId, Reply<Resp>)>,
) -> Option<(PeerId, Req, ResponseChannel<Resp>)> {
    match event {
        request_response::Event::Message { peer, message, .. } => match message {
            request_response::Message::Request {
                request, channel, ..
            } => return Some((peer, request, channel)),
            request_response::Message::Response {
                request_id,
                response,
            } => {
                if let Some((_, reply)) = pending.remove(&request_id) {
                    let _ = reply.send(Ok(response));
                }
            }
        },
        request_response::Event::OutboundFailure {
            peer,
            request_id,
            error,
            ..
        } => {
            if let Some((_, reply)) = pending.remove(&request_id) {
                let _ = reply.send(Err(NetError::Request {
                    peer,
                    reason: error.to_string(),
                }));
            }
        }
        request_response::Event::InboundFailure { peer, error, .. } => {
            debug!(%peer, %error, "inbound request failed");
        }
        request_response::Event::ResponseSent { .. } => {}
    }
    None
}
