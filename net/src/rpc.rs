//! Request-response protocols, as the crates that own them define them. The network knows none
//! by name: a crate declares its protocol (a type implementing [`Protocol`]) and registers it
//! with [`register_protocol!`]; every process that links the crate can then ask it
//! ([`Client::request`]), and a node that serves it ([`NetworkConfig::serving`]) takes its
//! requests from an [`Inbound`]. Messages cross the network task as bytes; they are encoded
//! and decoded on the tasks that send and handle them.
//!
//! ```text
//! crate owning P ──register_protocol!(P)──▶ every network built: P spoken (asked)
//! node config ──serving::<P>()──▶ P answered: Network::inbound::<P>() ─▶ Request<P> ─▶ Responder<P>
//! queue full ──▶ P::busy(request) answered at once by the network task
//! ```
//!
//! [`Client::request`]: crate::Client::request
//! [`NetworkConfig::serving`]: crate::NetworkConfig::serving

use std::{fmt, marker::PhantomData};

use libp2p::{PeerId, StreamProtocol, request_response::ResponseChannel};
use tokio::sync::mpsc;
use tracing::debug;

use crate::{
    Client, NetError,
    codec::{Encoded, Message},
};

/// A request-response protocol: its versioned name, its messages and their limits.
pub trait Protocol: Send + Sync + 'static {
    /// Its name on the wire; a change of format is a new name.
    const NAME: StreamProtocol;
    /// Largest request on the wire, refused past this before it is read further.
    const MAX_REQUEST: u64;
    /// Largest response on the wire.
    const MAX_RESPONSE: u64;
    /// What is asked.
    type Request: Message + fmt::Debug + 'static;
    /// What is answered.
    type Response: Message + fmt::Debug + 'static;

    /// The answer a node gives at once, without its logic, when its queue of requests is full:
    /// the asker may ask again later.
    fn busy(request: &Self::Request) -> Self::Response;
}

/// A protocol as the network runs it, without its types.
#[derive(Clone)]
pub struct Registration {
    pub(crate) name: StreamProtocol,
    pub(crate) max_request: u64,
    pub(crate) max_response: u64,
    /// The encoded busy answer to an encoded request; none when the request does not decode.
    pub(crate) busy: fn(Vec<u8>) -> Option<Encoded>,
}

impl Registration {
    /// The registration of `P`.
    pub const fn of<P: Protocol>() -> Self {
        Self {
            name: P::NAME,
            max_request: P::MAX_REQUEST,
            max_response: P::MAX_RESPONSE,
            busy: busy_answer::<P>,
        }
    }

    /// Every protocol registered in this program, once each.
    pub(crate) fn all() -> Vec<Registration> {
        let mut all: Vec<Registration> = Vec::new();
        for registration in inventory::iter::<Registration> {
            if all.iter().all(|r| r.name != registration.name) {
                all.push(registration.clone());
            }
        }
        all.sort_by(|a, b| a.name.as_ref().cmp(b.name.as_ref()));
        all
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("name", &self.name)
            .field("max_request", &self.max_request)
            .field("max_response", &self.max_response)
            .finish()
    }
}

inventory::collect!(Registration);

fn busy_answer<P: Protocol>(request: Vec<u8>) -> Option<Encoded> {
    let request = P::Request::from_cbor(request).ok()?;
    P::busy(&request).into_cbor_parts().ok()
}

/// Registers a protocol with every network this program builds: it can be asked of any peer,
/// and served by a node that says so. Written once, beside the protocol, in the crate that owns
/// it.
#[macro_export]
macro_rules! register_protocol {
    ($protocol:ty) => {
        $crate::inventory::submit! {
            $crate::rpc::Registration::of::<$protocol>()
        }
    };
}

/// A request from a peer, as the network task hands it over: still bytes.
#[derive(Debug)]
pub(crate) struct RawRequest {
    pub(crate) peer: PeerId,
    pub(crate) bytes: Vec<u8>,
    pub(crate) channel: ResponseChannel<Encoded>,
}

/// The requests of protocol `P` that reach this node, decoded. One that does not decode is
/// dropped (its asker sees the stream end) and the next is taken.
pub struct Inbound<P> {
    raw: mpsc::Receiver<RawRequest>,
    client: Client,
    index: usize,
    protocol: PhantomData<fn() -> P>,
}

impl<P> fmt::Debug for Inbound<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbound")
            .field("index", &self.index)
            .finish()
    }
}

impl<P: Protocol> Inbound<P> {
    pub(crate) fn new(raw: mpsc::Receiver<RawRequest>, client: Client, index: usize) -> Self {
        Self {
            raw,
            client,
            index,
            protocol: PhantomData,
        }
    }

    /// The next request; none once the network has stopped.
    pub async fn recv(&mut self) -> Option<Request<P>> {
        loop {
            let raw = self.raw.recv().await?;
            match P::Request::from_cbor(raw.bytes) {
                Ok(request) => {
                    return Some(Request {
                        peer: raw.peer,
                        request,
                        responder: Responder {
                            channel: raw.channel,
                            client: self.client.clone(),
                            index: self.index,
                            protocol: PhantomData,
                        },
                    });
                }
                Err(e) => {
                    debug!(peer = %raw.peer, protocol = %P::NAME, error = %e, "malformed request dropped");
                }
            }
        }
    }
}

/// A request of protocol `P` from `peer`, and where its answer goes.
#[derive(Debug)]
pub struct Request<P: Protocol> {
    /// Who asks: the authenticated peer, whatever the message claims.
    pub peer: PeerId,
    /// What they ask.
    pub request: P::Request,
    /// Where the answer goes.
    pub responder: Responder<P>,
}

/// Answers one request.
pub struct Responder<P> {
    channel: ResponseChannel<Encoded>,
    client: Client,
    index: usize,
    protocol: PhantomData<fn() -> P>,
}

impl<P> fmt::Debug for Responder<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field("index", &self.index)
            .finish()
    }
}

impl<P: Protocol> Responder<P> {
    /// Sends `response` (encoded here, on the caller's task). An answer whose peer has gone is
    /// dropped without error.
    pub async fn respond(self, response: P::Response) -> Result<(), NetError> {
        let bytes = response.into_cbor_parts().map_err(|e| NetError::Encode {
            protocol: P::NAME.as_ref().to_string(),
            reason: e,
        })?;
        self.client.respond(self.index, self.channel, bytes).await
    }
}
