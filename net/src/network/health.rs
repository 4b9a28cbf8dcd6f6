//! Which peers answer. A failed dial or a request that times out marks a peer down for a
//! while, twice as long with each failure in a row; a connection or an answer brings it back.
//! One table per process, in the swarm, so that every request and every DHT query shares it:
//! a peer that vanished costs one timeout, not one per request.
//!
//! ```text
//! up ──dial fails / request times out──▶ down (10 s, 20 s, .. 10 min)
//!  ▲                                       │ dials denied, requests refused at once
//!  └──── connected, or answered ◀──────────┘ (one try let through once the backoff ends)
//! ```
//!
//! It also says how long a peer has had requests on the wire without answering any
//! ([`PeerStatus::Stalled`]), and whether a dial of it has gone on well past the time dials
//! take here ([`PeerStatus::Unreachable`]: a node that vanished, or one frozen, whose kernel
//! still accepts the TCP connection but never the handshake): a reader that hedges takes
//! either as a reason to ask another holder before a timeout says the peer is gone.

use std::{
    collections::HashMap,
    convert::Infallible,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use crate::smoothed::Smoothed;

use libp2p::{
    Multiaddr, PeerId,
    core::{Endpoint, transport::PortUse},
    swarm::{
        ConnectionClosed, ConnectionDenied, ConnectionId, DialError, DialFailure, FromSwarm,
        NetworkBehaviour, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
        behaviour::ConnectionEstablished, dummy,
    },
};

/// What is known of a peer now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerStatus {
    /// Nothing against it.
    Up,
    /// Requests to it have been on the wire for this long with no answer to any.
    Stalled(Duration),
    /// It has been dialled for this long, far past the time dials take, and has no connection.
    Unreachable(Duration),
    /// It failed lately; it is neither dialled nor asked for this long.
    Down(Duration),
}

/// A peer is down: it failed lately and its backoff has not ended.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{peer} failed lately ({}{failures} time(s) in a row); not tried again for {retry_in:?}",
    reason.as_deref().map(|r| format!("{r}; ")).unwrap_or_default()
)]
pub struct PeerDown {
    /// The peer.
    pub peer: PeerId,
    /// Why its last dial failed, when one did.
    pub reason: Option<Box<str>>,
    /// Failures in a row.
    pub failures: u32,
    /// Until it may be tried again.
    pub retry_in: Duration,
}

/// The first backoff, doubled with each failure in a row up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(10);
/// The longest a peer stays down before it is tried again.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10 * 60);
/// Peers remembered; past this, the ones with the oldest news are forgotten.
const MAX_PEERS: usize = 4096;

/// How long a dial may go on before its peer counts as unreachable, before any dial has
/// succeeded; then the time dials took plus four deviations, within these bounds. The floor
/// keeps a busy machine's scheduling from making a peer unreachable; the ceiling is the
/// connection timeout, where the dial fails anyway.
pub const FIRST_DIAL_WAIT: Duration = Duration::from_secs(2);
/// The shortest wait for a dial.
pub const MIN_DIAL_WAIT: Duration = Duration::from_millis(100);
/// The longest wait for a dial.
pub const MAX_DIAL_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
struct Peer {
    connections: u32,
    failures: u32,
    down_until: Option<Instant>,
    on_wire: u32,
    unanswered_since: Option<Instant>,
    dials: u32,
    dialing_since: Option<Instant>,
    news: Instant,
    last_dial_error: Option<Box<str>>,
}

impl Peer {
    fn new(now: Instant) -> Self {
        Self {
            connections: 0,
            failures: 0,
            down_until: None,
            on_wire: 0,
            unanswered_since: None,
            dials: 0,
            dialing_since: None,
            last_dial_error: None,
            news: now,
        }
    }
}

/// The table: pure bookkeeping, every method given the time.
#[derive(Debug)]
pub(crate) struct PeerHealth {
    peers: HashMap<PeerId, Peer>,
    first_backoff: Duration,
    /// Dials under way, by connection, and when each began.
    dials: HashMap<ConnectionId, (PeerId, Instant)>,
    /// How long the dials that succeeded took.
    dial_times: Smoothed,
}

impl Default for PeerHealth {
    fn default() -> Self {
        Self::new(FIRST_BACKOFF)
    }
}

impl PeerHealth {
    /// A table whose first backoff is `first_backoff`.
    pub(crate) fn new(first_backoff: Duration) -> Self {
        Self {
            peers: HashMap::new(),
            first_backoff: first_backoff.max(Duration::from_millis(1)),
            dials: HashMap::new(),
            dial_times: Smoothed::default(),
        }
    }

    fn entry(&mut self, peer: PeerId, now: Instant) -> &mut Peer {
        if !self.peers.contains_key(&peer) && self.peers.len() >= MAX_PEERS {
            self.forget_one();
        }
        let entry = self.peers.entry(peer).or_insert_with(|| Peer::new(now));
        entry.news = now;
        entry
    }

    /// Forgets the peer with the oldest news, preferring one with nothing on the wire.
    fn forget_one(&mut self) {
        let oldest = self
            .peers
            .iter()
            .min_by_key(|(_, p)| (p.on_wire > 0 || p.connections > 0 || p.dials > 0, p.news))
            .map(|(id, _)| *id);
        if let Some(id) = oldest {
            self.peers.remove(&id);
        }
    }

    /// A request went on the wire to `peer`.
    pub(crate) fn sent(&mut self, peer: PeerId, now: Instant) {
        let p = self.entry(peer, now);
        p.on_wire += 1;
        p.unanswered_since.get_or_insert(now);
    }

    /// `peer` answered a request: it is up.
    pub(crate) fn answered(&mut self, peer: PeerId, now: Instant) {
        let p = self.entry(peer, now);
        p.on_wire = p.on_wire.saturating_sub(1);
        p.failures = 0;
        p.down_until = None;
        p.unanswered_since = (p.on_wire > 0).then_some(now);
    }

    /// A request to `peer` ended without an answer, for a reason that says nothing of the
    /// peer (the connection was closed under it, the protocol is not spoken).
    pub(crate) fn ended(&mut self, peer: PeerId, now: Instant) {
        let p = self.entry(peer, now);
        p.on_wire = p.on_wire.saturating_sub(1);
        if p.on_wire == 0 {
            p.unanswered_since = None;
        }
    }

    /// A request to `peer` timed out: it is down.
    pub(crate) fn timed_out(&mut self, peer: PeerId, now: Instant) -> Duration {
        self.ended(peer, now);
        self.failed(peer, now)
    }

    /// A dial of `peer` failed, or it stopped answering: down for its next backoff, which is
    /// returned.
    pub(crate) fn failed(&mut self, peer: PeerId, now: Instant) -> Duration {
        let first = self.first_backoff;
        let p = self.entry(peer, now);
        // Failures while down (requests sent before it went down) do not lengthen the backoff.
        if p.down_until.is_some_and(|until| until > now) {
            return p.down_until.map_or(Duration::ZERO, |until| until - now);
        }
        p.failures = p.failures.saturating_add(1);
        let backoff = first
            .saturating_mul(1 << (p.failures - 1).min(16))
            .min(MAX_BACKOFF);
        p.down_until = Some(now + backoff);
        backoff
    }

    /// A connection with `peer` was established: it is up.
    pub(crate) fn connected(&mut self, peer: PeerId, now: Instant) {
        let p = self.entry(peer, now);
        p.connections += 1;
        p.failures = 0;
        p.down_until = None;
    }

    /// A connection with `peer` closed.
    pub(crate) fn disconnected(&mut self, peer: PeerId, now: Instant) {
        let p = self.entry(peer, now);
        p.connections = p.connections.saturating_sub(1);
    }

    /// A dial of `peer` began, as connection `id`.
    pub(crate) fn dial_started(&mut self, id: ConnectionId, peer: PeerId, now: Instant) {
        // Dials under way are bounded by the swarm's limits; this bounds the table anyway.
        if self.dials.len() >= MAX_PEERS {
            return;
        }
        self.dials.insert(id, (peer, now));
        let p = self.entry(peer, now);
        p.dials += 1;
        p.dialing_since.get_or_insert(now);
    }

    /// Dial `id` ended: with a connection when `connected`, the time it took then counted.
    pub(crate) fn dial_ended(&mut self, id: ConnectionId, connected: bool, now: Instant) {
        let Some((peer, began)) = self.dials.remove(&id) else {
            return;
        };
        if connected {
            self.dial_times
                .observe(now.saturating_duration_since(began));
        }
        let p = self.entry(peer, now);
        p.dials = p.dials.saturating_sub(1);
        if p.dials == 0 {
            p.dialing_since = None;
        }
    }

    /// How long a dial may go on before its peer counts as unreachable.
    pub(crate) fn dial_wait(&self) -> Duration {
        self.dial_times
            .wait(FIRST_DIAL_WAIT, MIN_DIAL_WAIT, MAX_DIAL_WAIT)
    }

    /// A dial of `peer` failed. While another connection with it is open (two dials raced,
    /// or it dialled this node) that says nothing of the peer.
    pub(crate) fn dial_failed(&mut self, peer: PeerId, now: Instant, reason: String) {
        self.entry(peer, now).last_dial_error = Some(reason.into_boxed_str());
        if self.peers.get(&peer).is_none_or(|p| p.connections == 0) {
            self.failed(peer, now);
        }
    }

    /// Why `peer` is not to be tried now, if it is not.
    pub(crate) fn down(&self, peer: &PeerId, now: Instant) -> Option<PeerDown> {
        let p = self.peers.get(peer)?;
        let until = p.down_until.filter(|until| *until > now)?;
        Some(PeerDown {
            peer: *peer,
            reason: p.last_dial_error.clone(),
            failures: p.failures,
            retry_in: until - now,
        })
    }

    /// The peers whose requests have gone unanswered for longer than `longer_than`, longest
    /// first, at most `max` of them: what a program waits on.
    pub(crate) fn stalled(
        &self,
        longer_than: Duration,
        max: usize,
        now: Instant,
    ) -> Vec<(PeerId, Duration)> {
        let mut stalled: Vec<(PeerId, Duration)> = self
            .peers
            .iter()
            .filter_map(|(id, p)| Some((*id, now.saturating_duration_since(p.unanswered_since?))))
            .filter(|(_, quiet)| *quiet > longer_than)
            .collect();
        stalled.sort_by_key(|(_, quiet)| std::cmp::Reverse(*quiet));
        stalled.truncate(max);
        stalled
    }

    /// What is known of `peer` now.
    pub(crate) fn status(&self, peer: &PeerId, now: Instant) -> PeerStatus {
        if let Some(down) = self.down(peer, now) {
            return PeerStatus::Down(down.retry_in);
        }
        let Some(p) = self.peers.get(peer) else {
            return PeerStatus::Up;
        };
        let dialing = p
            .dialing_since
            .filter(|_| p.connections == 0)
            .map(|since| now.saturating_duration_since(since));
        match (dialing, p.unanswered_since) {
            (Some(dialing), _) if dialing > self.dial_wait() => PeerStatus::Unreachable(dialing),
            (_, Some(since)) => PeerStatus::Stalled(now.saturating_duration_since(since)),
            _ => PeerStatus::Up,
        }
    }
}

/// The table as a behaviour: it learns of connections and failed dials from the swarm, and
/// denies dials (the DHT's included) to peers that are down.
#[derive(Debug)]
pub(crate) struct HealthGate {
    pub(crate) peers: PeerHealth,
}

impl HealthGate {
    pub(crate) fn new(first_backoff: Duration) -> Self {
        Self {
            peers: PeerHealth::new(first_backoff),
        }
    }
}

impl NetworkBehaviour for HealthGate {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: Option<PeerId>,
        _addresses: &[Multiaddr],
        _effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        let Some(peer) = peer else {
            return Ok(Vec::new());
        };
        let now = Instant::now();
        if let Some(down) = self.peers.down(&peer, now) {
            return Err(ConnectionDenied::new(down));
        }
        self.peers.dial_started(connection_id, peer, now);
        Ok(Vec::new())
    }

    fn handle_established_inbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _local_addr: &Multiaddr,
        _remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        let now = Instant::now();
        match event {
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id,
                connection_id,
                ..
            }) => {
                self.peers.dial_ended(connection_id, true, now);
                self.peers.connected(peer_id, now);
            }
            FromSwarm::DialFailure(DialFailure {
                peer_id,
                error,
                connection_id,
            }) => {
                self.peers.dial_ended(connection_id, false, now);
                if let Some(peer) = peer_id
                    && says_peer_is_gone(error)
                {
                    self.peers.dial_failed(peer, now, dial_reason(error));
                }
            }
            FromSwarm::ConnectionClosed(ConnectionClosed { peer_id, .. }) => {
                self.peers.disconnected(peer_id, now);
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

/// Why a dial failed, in one line: the innermost cause of each address's error. libp2p nests
/// a transport error several deep, each layer repeating its source ("Multiple dial errors
/// occurred: - Handshake failed: Handshake failed: invalid data").
pub(crate) fn dial_reason(error: &DialError) -> String {
    fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
        let mut cause = e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        cause.to_string()
    }
    match error {
        DialError::Transport(attempts) if attempts.len() == 1 => {
            attempts.iter().map(|(_, e)| innermost(e)).collect()
        }
        DialError::Transport(attempts) => {
            let mut reasons: Vec<String> = attempts
                .iter()
                .map(|(addr, e)| format!("{addr}: {}", innermost(e)))
                .collect();
            reasons.dedup();
            reasons.join("; ")
        }
        DialError::WrongPeerId { obtained, .. } => {
            format!("the peer at that address is {obtained}, not the one the address names")
        }
        DialError::NoAddresses => "no address known for the peer".into(),
        other => innermost(other),
    }
}

/// Whether a dial's failure is the peer's: denied dials (this gate's own, a limit's) and
/// dials that were not needed say nothing of it.
fn says_peer_is_gone(error: &DialError) -> bool {
    matches!(
        error,
        DialError::Transport(_) | DialError::NoAddresses | DialError::WrongPeerId { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_in_a_row_double_the_backoff_and_an_answer_ends_it() {
        let (mut table, peer, t0) = (PeerHealth::default(), PeerId::random(), Instant::now());
        assert_eq!(table.status(&peer, t0), PeerStatus::Up);
        assert_eq!(table.failed(peer, t0), FIRST_BACKOFF);
        assert!(table.down(&peer, t0 + FIRST_BACKOFF / 2).is_some());
        // Failures reported while it is down do not lengthen the backoff.
        assert_eq!(
            table.failed(peer, t0 + Duration::from_secs(1)),
            FIRST_BACKOFF - Duration::from_secs(1)
        );
        let t1 = t0 + FIRST_BACKOFF;
        assert!(
            table.down(&peer, t1).is_none(),
            "tried again once the backoff ends"
        );
        assert_eq!(table.failed(peer, t1), FIRST_BACKOFF * 2);
        let t2 = t1 + FIRST_BACKOFF * 2;
        assert_eq!(table.failed(peer, t2), FIRST_BACKOFF * 4);
        table.connected(peer, t2);
        assert_eq!(table.status(&peer, t2), PeerStatus::Up);
        // A dial that fails while a connection is open says nothing of the peer.
        table.dial_failed(peer, t2, "refused".into());
        assert_eq!(table.status(&peer, t2), PeerStatus::Up);
        table.disconnected(peer, t2);
        table.dial_failed(peer, t2, "refused".into());
        assert_eq!(
            table.status(&peer, t2),
            PeerStatus::Down(FIRST_BACKOFF),
            "the count starts again"
        );
    }

    #[test]
    fn the_backoff_has_a_ceiling() {
        let (mut table, peer, mut now) = (PeerHealth::default(), PeerId::random(), Instant::now());
        let mut last = Duration::ZERO;
        for _ in 0..80 {
            last = table.failed(peer, now);
            now += last;
        }
        assert_eq!(last, MAX_BACKOFF);
    }

    #[test]
    fn a_peer_stalls_while_its_requests_go_unanswered() {
        let (mut table, peer, t0) = (PeerHealth::default(), PeerId::random(), Instant::now());
        table.sent(peer, t0);
        table.sent(peer, t0 + Duration::from_millis(10));
        let later = t0 + Duration::from_millis(300);
        assert_eq!(
            table.status(&peer, later),
            PeerStatus::Stalled(Duration::from_millis(300))
        );
        assert_eq!(
            table.stalled(Duration::from_millis(100), 4, later),
            vec![(peer, Duration::from_millis(300))]
        );
        assert!(table.stalled(Duration::from_secs(1), 4, later).is_empty());
        // One answer proves it alive; the other request counts from then.
        table.answered(peer, later);
        let t1 = later + Duration::from_millis(5);
        assert_eq!(
            table.status(&peer, t1),
            PeerStatus::Stalled(Duration::from_millis(5))
        );
        table.answered(peer, t1);
        assert_eq!(table.status(&peer, t1), PeerStatus::Up);
        // A timeout: down, and nothing left on the wire.
        table.sent(peer, t1);
        let backoff = table.timed_out(peer, t1);
        assert_eq!(table.status(&peer, t1), PeerStatus::Down(backoff));
        assert_eq!(table.status(&peer, t1 + backoff), PeerStatus::Up);
    }

    #[test]
    fn a_dial_far_past_the_time_dials_take_makes_its_peer_unreachable() {
        let (mut table, t0) = (PeerHealth::default(), Instant::now());
        let ms = Duration::from_millis;
        let (live, frozen) = (PeerId::random(), PeerId::random());
        let ids: Vec<ConnectionId> = (10..13).map(ConnectionId::new_unchecked).collect();
        // Before any dial has succeeded, the first wait holds.
        table.dial_started(ConnectionId::new_unchecked(1), frozen, t0);
        assert_eq!(table.status(&frozen, t0 + ms(500)), PeerStatus::Up);
        assert_eq!(
            table.status(&frozen, t0 + FIRST_DIAL_WAIT + ms(1)),
            PeerStatus::Unreachable(FIRST_DIAL_WAIT + ms(1))
        );
        // Dials that take 5 ms bring the wait down to its floor.
        for (i, id) in ids.iter().enumerate() {
            let at = t0 + ms(10 * i as u64);
            table.dial_started(*id, live, at);
            table.dial_ended(*id, true, at + ms(5));
        }
        assert_eq!(table.dial_wait(), MIN_DIAL_WAIT);
        let later = t0 + MIN_DIAL_WAIT + ms(1);
        assert_eq!(
            table.status(&frozen, later),
            PeerStatus::Unreachable(MIN_DIAL_WAIT + ms(1))
        );
        // Requests waiting on it change nothing; a connection does.
        table.sent(frozen, later);
        assert!(matches!(
            table.status(&frozen, later),
            PeerStatus::Unreachable(_)
        ));
        // It dials this node itself: the first dial is given up, the connection is up.
        table.dial_ended(ConnectionId::new_unchecked(1), false, later);
        table.connected(frozen, later);
        assert_eq!(table.status(&frozen, later), PeerStatus::Stalled(ms(0)));
        // A dial that failed is not a time dials take; its peer is down.
        table.disconnected(frozen, later);
        table.dial_started(ConnectionId::new_unchecked(2), frozen, later);
        table.dial_ended(ConnectionId::new_unchecked(2), false, later + ms(4000));
        assert_eq!(table.dial_wait(), MIN_DIAL_WAIT);
        assert!(matches!(
            table.status(&frozen, later + ms(4000)),
            PeerStatus::Stalled(_)
        ));
    }

    #[test]
    fn the_table_is_bounded_and_forgets_the_oldest_news() {
        let (mut table, t0) = (PeerHealth::default(), Instant::now());
        let busy = PeerId::random();
        table.sent(busy, t0);
        for i in 0..MAX_PEERS + 10 {
            table.failed(PeerId::random(), t0 + Duration::from_millis(i as u64 + 1));
        }
        assert_eq!(table.peers.len(), MAX_PEERS);
        assert!(
            table.peers.contains_key(&busy),
            "a peer with requests out is kept"
        );
    }
}
