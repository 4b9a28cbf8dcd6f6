//! How this node reaches each peer: over a direct connection, or only through a relay. Pure
//! bookkeeping; the network task feeds in connections and hole-punch outcomes.
//!
//! A peer first reached through a relay is sent nothing until a hole punch (DCUtR) has had its
//! chance: requests made meanwhile wait here, so that they run on the direct connection, not
//! on a circuit whose relay allows a few hundred KiB. Once a direct connection is up, the
//! relayed ones to the peer are closed after [`CIRCUIT_LINGER`] (what the DHT and identify
//! asked on them gets its answer), and the requests waiting go out once they are gone:
//! request-response spreads requests over every connection to a peer. When the punch fails or
//! takes longer than [`PUNCH_WAIT`], the waiting requests go over the relay, within its
//! budget.
//!
//! ```text
//! request ─▶ direct connection only? ─yes─▶ send
//!              │ no
//!              ├─ relayed, punch pending ─▶ wait ─▶ direct up, relayed closed: send
//!              │                                └▶ punch failed / timed out: send relayed
//!              ├─ relayed, punch over ─▶ send (relayed)
//!              └─ not connected ─▶ dial, wait ─▶ as above, or the dial failed: fail
//! ```

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use libp2p::{PeerId, swarm::ConnectionId};
use serde::{Deserialize, Serialize};

/// How long requests to a peer reached only through a relay wait for a hole punch. A punch
/// takes a few round trips and nearly always works on its first try where it works at all;
/// a failing TCP attempt ends at the connection timeout (5 s).
pub const PUNCH_WAIT: Duration = Duration::from_secs(6);

/// How long relayed connections stay open beside a new direct one: long enough for the
/// requests the DHT and identify sent on them to be answered.
pub(crate) const CIRCUIT_LINGER: Duration = Duration::from_millis(500);

/// How a peer is reached now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerPath {
    /// Over a direct connection (dialled, mapped or hole-punched).
    Direct,
    /// Only through a relay, whose budget limits what it carries.
    Relayed,
    /// Not connected.
    None,
}

impl PeerPath {
    /// The name used in logs and status pages.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerPath::Direct => "direct",
            PeerPath::Relayed => "relayed",
            PeerPath::None => "none",
        }
    }
}

/// Counters of the paths used so far, for status pages and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathStats {
    /// Direct connections open now.
    pub direct_connections: u64,
    /// Relayed connections open now.
    pub relayed_connections: u64,
    /// Peers first reached through a relay and then directly (hole punched).
    pub punched: u64,
    /// Total time from a relayed connection to the direct one, over `punched`.
    pub punch_ms_total: u64,
    /// Peers first reached through a relay whose punch failed or timed out.
    pub unpunched: u64,
    /// Request and response bytes received over direct connections.
    pub bytes_direct: u64,
    /// Request and response bytes received over relayed connections.
    pub bytes_relayed: u64,
}

/// What to do with a request for a peer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route<T> {
    /// Send it now.
    Send(T),
    /// It waits; dial the peer (nothing else does).
    Dial,
    /// It waits.
    Wait,
}

#[derive(Debug)]
struct Peer<T> {
    direct: HashSet<ConnectionId>,
    relayed: HashSet<ConnectionId>,
    /// Since when a hole punch is awaited.
    punching: Option<Instant>,
    /// When the relayed connections beside a direct one are to be closed.
    closing: Option<Instant>,
    /// A punch to this peer failed or timed out: its relayed connections are used as they are.
    punch_over: bool,
    dialing: bool,
    waiting: Vec<T>,
}

impl<T> Default for Peer<T> {
    fn default() -> Self {
        Self {
            direct: HashSet::new(),
            relayed: HashSet::new(),
            punching: None,
            closing: None,
            punch_over: false,
            dialing: false,
            waiting: Vec::new(),
        }
    }
}

impl<T> Peer<T> {
    fn idle(&self) -> bool {
        self.direct.is_empty()
            && self.relayed.is_empty()
            && !self.dialing
            && self.waiting.is_empty()
    }
}

/// Every peer's connections by kind, and the requests waiting for a path.
#[derive(Debug)]
pub(crate) struct Paths<T> {
    peers: HashMap<PeerId, Peer<T>>,
    relayed: HashSet<ConnectionId>,
    stats: PathStats,
}

impl<T> Default for Paths<T> {
    fn default() -> Self {
        Self {
            peers: HashMap::new(),
            relayed: HashSet::new(),
            stats: PathStats::default(),
        }
    }
}

impl<T> Paths<T> {
    /// How `peer` is reached now.
    pub(crate) fn path(&self, peer: &PeerId) -> PeerPath {
        match self.peers.get(peer) {
            Some(p) if !p.direct.is_empty() => PeerPath::Direct,
            Some(p) if !p.relayed.is_empty() => PeerPath::Relayed,
            _ => PeerPath::None,
        }
    }

    /// Whether connection `id` runs through a relay.
    pub(crate) fn is_relayed(&self, id: ConnectionId) -> bool {
        self.relayed.contains(&id)
    }

    /// The counters so far.
    pub(crate) fn stats(&self) -> PathStats {
        self.stats
    }

    /// `bytes` of a request or response went over connection `id`.
    pub(crate) fn carried(&mut self, id: ConnectionId, bytes: usize) {
        let bytes = bytes as u64;
        if self.is_relayed(id) {
            self.stats.bytes_relayed = self.stats.bytes_relayed.saturating_add(bytes);
        } else {
            self.stats.bytes_direct = self.stats.bytes_direct.saturating_add(bytes);
        }
    }

    /// Where `item`, for `peer`, goes now.
    pub(crate) fn route(&mut self, peer: PeerId, item: T) -> Route<T> {
        let state = self.peers.entry(peer).or_default();
        let direct_only = !state.direct.is_empty() && state.relayed.is_empty();
        let relayed_settled =
            state.direct.is_empty() && !state.relayed.is_empty() && state.punching.is_none();
        if direct_only || relayed_settled {
            return Route::Send(item);
        }
        state.waiting.push(item);
        if state.relayed.is_empty() && !state.dialing {
            state.dialing = true;
            Route::Dial
        } else {
            Route::Wait
        }
    }

    /// A connection to `peer` is up. Returns the requests it releases.
    pub(crate) fn established(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        relayed: bool,
        now: Instant,
    ) -> Vec<T> {
        let state = self.peers.entry(peer).or_default();
        state.dialing = false;
        if relayed {
            self.relayed.insert(id);
            state.relayed.insert(id);
            self.stats.relayed_connections += 1;
            if !state.direct.is_empty() {
                // A direct path exists: the circuit is not needed.
                state.closing.get_or_insert(now + CIRCUIT_LINGER);
                return Vec::new();
            }
            if !state.punch_over && state.punching.is_none() {
                state.punching = Some(now);
            }
            if state.punching.is_some() {
                return Vec::new();
            }
            return std::mem::take(&mut state.waiting);
        }
        state.direct.insert(id);
        self.stats.direct_connections += 1;
        if let Some(since) = state.punching.take() {
            self.stats.punched += 1;
            let ms = now.saturating_duration_since(since).as_millis();
            self.stats.punch_ms_total = self
                .stats
                .punch_ms_total
                .saturating_add(u64::try_from(ms).unwrap_or(u64::MAX));
        }
        if state.relayed.is_empty() {
            return std::mem::take(&mut state.waiting);
        }
        state.closing.get_or_insert(now + CIRCUIT_LINGER);
        Vec::new()
    }

    /// Connection `id` to `peer` closed. Returns the requests that no longer have anything to
    /// wait for (their peer is gone: sending them fails them, or dials again).
    pub(crate) fn closed(&mut self, peer: PeerId, id: ConnectionId) -> Vec<T> {
        let Some(state) = self.peers.get_mut(&peer) else {
            return Vec::new();
        };
        if state.direct.remove(&id) {
            self.stats.direct_connections = self.stats.direct_connections.saturating_sub(1);
        }
        if state.relayed.remove(&id) {
            self.relayed.remove(&id);
            self.stats.relayed_connections = self.stats.relayed_connections.saturating_sub(1);
        }
        let mut released = Vec::new();
        if state.relayed.is_empty() {
            state.closing = None;
            if !state.direct.is_empty() {
                // The last circuit beside a direct connection is gone.
                released = std::mem::take(&mut state.waiting);
            }
        }
        if state.direct.is_empty() && state.relayed.is_empty() {
            if state.punching.take().is_some() {
                self.stats.unpunched += 1;
            }
            if !state.dialing {
                released = std::mem::take(&mut state.waiting);
            }
        }
        if state.idle() {
            self.peers.remove(&peer);
        }
        released
    }

    /// Dialling `peer` failed. Returns its waiting requests when nothing else can carry them.
    pub(crate) fn dial_failed(&mut self, peer: PeerId) -> Vec<T> {
        let Some(state) = self.peers.get_mut(&peer) else {
            return Vec::new();
        };
        state.dialing = false;
        if !state.direct.is_empty() || !state.relayed.is_empty() {
            // A hole-punch dial that failed; the relayed connection still stands.
            return Vec::new();
        }
        let failed = std::mem::take(&mut state.waiting);
        if state.idle() {
            self.peers.remove(&peer);
        }
        failed
    }

    /// The hole punch to `peer` failed: its waiting requests go over the relay.
    pub(crate) fn punch_failed(&mut self, peer: PeerId) -> Vec<T> {
        let Some(state) = self.peers.get_mut(&peer) else {
            return Vec::new();
        };
        if !state.direct.is_empty() {
            return Vec::new();
        }
        if state.punching.take().is_some() {
            self.stats.unpunched += 1;
        }
        state.punch_over = true;
        if state.relayed.is_empty() {
            return Vec::new();
        }
        std::mem::take(&mut state.waiting)
    }

    /// Punches waited on for [`PUNCH_WAIT`] are given up: each peer's waiting requests go
    /// over the relay. Returns those, and the relayed connections whose linger beside a
    /// direct one is over, to close.
    pub(crate) fn expire(&mut self, now: Instant) -> Expired<T> {
        let mut expired = Expired {
            released: Vec::new(),
            close: Vec::new(),
        };
        let mut late = Vec::new();
        for (peer, state) in &mut self.peers {
            if state
                .punching
                .is_some_and(|since| now.saturating_duration_since(since) >= PUNCH_WAIT)
            {
                late.push(*peer);
            }
            if state.closing.is_some_and(|at| now >= at) {
                // Asked once; their closing releases what waits.
                state.closing = Some(now + PUNCH_WAIT);
                expired.close.extend(state.relayed.iter().copied());
            }
        }
        for peer in late {
            let released = self.punch_failed(peer);
            expired.released.push((peer, released));
        }
        expired
    }
}

/// What [`Paths::expire`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Expired<T> {
    /// Requests to send now, by peer.
    pub(crate) released: Vec<(PeerId, Vec<T>)>,
    /// Relayed connections to close.
    pub(crate) close: Vec<ConnectionId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(n: usize) -> ConnectionId {
        ConnectionId::new_unchecked(n)
    }

    #[test]
    fn requests_wait_for_the_punch_and_run_direct() {
        let (mut paths, peer, t0) = (Paths::default(), PeerId::random(), Instant::now());
        assert_eq!(paths.route(peer, 1), Route::Dial);
        assert_eq!(paths.route(peer, 2), Route::Wait);
        // The dial ends on a relay: still waiting for the punch.
        assert!(paths.established(peer, conn(1), true, t0).is_empty());
        assert_eq!(paths.path(&peer), PeerPath::Relayed);
        assert_eq!(paths.route(peer, 3), Route::Wait);
        let later = t0 + Duration::from_millis(40);
        // Punched: the circuit lingers a moment, then is closed, and then requests go out.
        assert!(paths.established(peer, conn(2), false, later).is_empty());
        assert_eq!(paths.path(&peer), PeerPath::Direct);
        assert_eq!(paths.route(peer, 4), Route::Wait);
        assert!(paths.expire(later).close.is_empty());
        let expired = paths.expire(later + CIRCUIT_LINGER);
        assert_eq!(expired.close, vec![conn(1)]);
        assert!(
            paths.expire(later + CIRCUIT_LINGER).close.is_empty(),
            "asked once"
        );
        assert_eq!(paths.closed(peer, conn(1)), vec![1, 2, 3, 4]);
        assert_eq!(paths.route(peer, 5), Route::Send(5));
        let stats = paths.stats();
        assert_eq!((stats.punched, stats.punch_ms_total), (1, 40));
        assert_eq!(
            (stats.direct_connections, stats.relayed_connections),
            (1, 0)
        );
    }

    #[test]
    fn a_failed_or_late_punch_sends_over_the_relay() {
        let (mut paths, t0) = (Paths::default(), Instant::now());
        let (a, b) = (PeerId::random(), PeerId::random());
        for peer in [a, b] {
            assert_eq!(paths.route(peer, 1), Route::Dial);
            paths.established(peer, conn(peer.to_bytes()[5] as usize), true, t0);
        }
        assert_eq!(paths.punch_failed(a), vec![1]);
        assert_eq!(paths.route(a, 2), Route::Send(2));
        assert!(
            paths
                .expire(t0 + Duration::from_secs(1))
                .released
                .is_empty()
        );
        assert_eq!(paths.expire(t0 + PUNCH_WAIT).released, vec![(b, vec![1])]);
        assert_eq!(paths.route(b, 2), Route::Send(2));
        assert_eq!(paths.stats().unpunched, 2);
        // A new relayed connection to a peer whose punch failed waits no more.
        let c = conn(99);
        paths.established(a, c, true, t0);
        assert_eq!(paths.route(a, 3), Route::Send(3));
    }

    #[test]
    fn a_failed_dial_fails_what_waited_and_bytes_are_counted_by_path() {
        let mut paths = Paths::default();
        let peer = PeerId::random();
        assert_eq!(paths.route(peer, 1), Route::Dial);
        assert_eq!(paths.dial_failed(peer), vec![1]);
        assert!(paths.peers.is_empty());
        // A direct dial releases at once.
        assert_eq!(paths.route(peer, 2), Route::Dial);
        let now = Instant::now();
        assert_eq!(paths.established(peer, conn(5), false, now), vec![2]);
        paths.carried(conn(5), 100);
        // A circuit beside a direct connection is closed soon.
        assert!(paths.established(peer, conn(6), true, now).is_empty());
        assert_eq!(paths.expire(now + CIRCUIT_LINGER).close, vec![conn(6)]);
        paths.carried(conn(6), 7);
        let stats = paths.stats();
        assert_eq!((stats.bytes_direct, stats.bytes_relayed), (100, 7));
        paths.closed(peer, conn(5));
        paths.closed(peer, conn(6));
        assert!(paths.peers.is_empty());
    }
}
