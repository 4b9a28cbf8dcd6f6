//! Every request-response protocol of a node as one behaviour. rust-libp2p's request-response
//! behaviour runs one protocol (its names are versions of it, and a request goes out as
//! whichever the peer picks), so each protocol registered gets its own, and this behaviour
//! joins them: one handler per protocol on every connection (`MultiHandler`), events tagged
//! with the protocol's index. The set is fixed when the swarm is built.

use std::task::{Context, Poll};

use libp2p::{
    Multiaddr, PeerId,
    core::{Endpoint, transport::PortUse},
    request_response,
    swarm::{
        ConnectionDenied, ConnectionHandler, ConnectionId, FromSwarm, NetworkBehaviour, THandler,
        THandlerInEvent, THandlerOutEvent, ToSwarm, handler::multi::MultiHandler,
    },
};

use crate::codec::FrameCodec;

/// One protocol's behaviour.
pub(crate) type Single = request_response::Behaviour<FrameCodec>;

/// The protocols, by index.
pub(crate) struct ProtocolSet {
    protocols: Vec<Single>,
    /// Where the next poll starts, so that a busy protocol does not starve the others.
    next: usize,
}

impl ProtocolSet {
    pub(crate) fn new(protocols: Vec<Single>) -> Self {
        Self { protocols, next: 0 }
    }

    /// Protocol `index`'s behaviour.
    pub(crate) fn get_mut(&mut self, index: usize) -> Option<&mut Single> {
        self.protocols.get_mut(index)
    }

    fn handlers(
        &mut self,
        mut make: impl FnMut(&mut Single) -> Result<THandler<Single>, ConnectionDenied>,
    ) -> Result<MultiHandler<usize, THandler<Single>>, ConnectionDenied> {
        let mut handlers = Vec::with_capacity(self.protocols.len());
        for (index, protocol) in self.protocols.iter_mut().enumerate() {
            handlers.push((index, make(protocol)?));
        }
        MultiHandler::try_from_iter(handlers).map_err(ConnectionDenied::new)
    }
}

impl NetworkBehaviour for ProtocolSet {
    type ConnectionHandler = MultiHandler<usize, THandler<Single>>;
    type ToSwarm = (usize, <Single as NetworkBehaviour>::ToSwarm);

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        for protocol in &mut self.protocols {
            protocol.handle_pending_inbound_connection(connection_id, local_addr, remote_addr)?;
        }
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.handlers(|p| {
            p.handle_established_inbound_connection(connection_id, peer, local_addr, remote_addr)
        })
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        let mut found = Vec::new();
        for protocol in &mut self.protocols {
            for addr in protocol.handle_pending_outbound_connection(
                connection_id,
                maybe_peer,
                addresses,
                effective_role,
            )? {
                if !found.contains(&addr) {
                    found.push(addr);
                }
            }
        }
        Ok(found)
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.handlers(|p| {
            p.handle_established_outbound_connection(
                connection_id,
                peer,
                addr,
                role_override,
                port_use,
            )
        })
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        for protocol in &mut self.protocols {
            protocol.on_swarm_event(event);
        }
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        (index, event): THandlerOutEvent<Self>,
    ) {
        if let Some(protocol) = self.protocols.get_mut(index) {
            protocol.on_connection_handler_event(peer, connection, event);
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        let count = self.protocols.len();
        for step in 0..count {
            let index = (self.next + step) % count;
            if let Poll::Ready(event) = self.protocols[index].poll(cx) {
                self.next = (index + 1) % count;
                return Poll::Ready(event.map_out(|e| (index, e)).map_in(
                    |e: <THandler<Single> as ConnectionHandler>::FromBehaviour| (index, e),
                ));
            }
        }
        Poll::Pending
    }
}
