//! One protocol's outbound requests: those on the wire, and those waiting for a stream to their
//! peer. rust-libp2p's request-response fails a request past a connection's stream limit at
//! once ("max sub-streams reached") instead of queueing it, and a caller would take that for
//! the peer failing: a reader with many ranges in flight to one node would give the node up.
//! So each peer gets at most a fixed number of requests at a time, and the rest wait here in
//! the order they were made.

use std::{
    collections::{HashMap, VecDeque, hash_map::Entry},
    time::Instant,
};

use libp2p::{PeerId, request_response::OutboundRequestId};

use super::{NetError, Reply, health::PeerHealth, protocol_set::Single};
use crate::codec::Encoded;

/// Requests of one protocol: sent ones by id, and those waiting for their peer.
pub(super) struct Outbound {
    sent: HashMap<OutboundRequestId, (PeerId, Reply<Encoded>)>,
    turns: Turns<PeerId, (Encoded, Reply<Encoded>)>,
}

impl Outbound {
    /// At most `per_peer` requests on the wire to one peer.
    pub(super) fn new(per_peer: usize) -> Self {
        Self {
            sent: HashMap::new(),
            turns: Turns::new(per_peer),
        }
    }

    /// Sends `request` now, or once the peer's earlier requests make room.
    pub(super) fn request(
        &mut self,
        behaviour: &mut Single,
        health: &mut PeerHealth,
        peer: PeerId,
        request: Encoded,
        reply: Reply<Encoded>,
    ) {
        // A peer that failed lately is neither asked nor dialled until its backoff ends.
        if let Some(down) = health.down(&peer, Instant::now()) {
            let _ = reply.send(Err(NetError::PeerDown(Box::new(down))));
            return;
        }
        if let Some((request, reply)) = self.turns.admit(peer, (request, reply)) {
            self.send(behaviour, health, peer, request, reply);
        }
    }

    /// Answers the caller of a request that ended, and sends the peer's next waiting one (one
    /// whose caller still waits).
    pub(super) fn finish(
        &mut self,
        behaviour: &mut Single,
        health: &mut PeerHealth,
        id: OutboundRequestId,
        result: Result<Encoded, NetError>,
    ) {
        let Some((peer, reply)) = self.sent.remove(&id) else {
            return;
        };
        let _ = reply.send(result);
        if let Some((request, reply)) = self.turns.finish(&peer, |(_, r)| !r.is_closed()) {
            self.send(behaviour, health, peer, request, reply);
        }
    }

    fn send(
        &mut self,
        behaviour: &mut Single,
        health: &mut PeerHealth,
        peer: PeerId,
        request: Encoded,
        reply: Reply<Encoded>,
    ) {
        health.sent(peer, Instant::now());
        let id = behaviour.send_request(&peer, request);
        self.sent.insert(id, (peer, reply));
    }
}

/// Turns per key: at most `limit` items out at a time for a key, the rest waiting in order.
/// Pure bookkeeping; a key is forgotten once it has nothing out and nothing waiting.
#[derive(Debug)]
pub(super) struct Turns<K, T> {
    limit: usize,
    keys: HashMap<K, Key<T>>,
}

#[derive(Debug)]
struct Key<T> {
    out: usize,
    waiting: VecDeque<T>,
}

impl<K: std::hash::Hash + Eq + Clone, T> Turns<K, T> {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            keys: HashMap::new(),
        }
    }

    /// `item` back, counted as out, if `key` has room; otherwise it waits and `None` is given.
    pub(super) fn admit(&mut self, key: K, item: T) -> Option<T> {
        let entry = self.keys.entry(key).or_insert_with(|| Key {
            out: 0,
            waiting: VecDeque::new(),
        });
        if entry.out < self.limit && entry.waiting.is_empty() {
            entry.out += 1;
            Some(item)
        } else {
            entry.waiting.push_back(item);
            None
        }
    }

    /// One of `key`'s items came back: the next waiting one that `wanted` accepts, counted as
    /// out in its place. Those it refuses are dropped.
    pub(super) fn finish(&mut self, key: &K, wanted: impl Fn(&T) -> bool) -> Option<T> {
        let Entry::Occupied(mut entry) = self.keys.entry(key.clone()) else {
            return None;
        };
        let state = entry.get_mut();
        state.out = state.out.saturating_sub(1);
        let mut next = None;
        while let Some(item) = state.waiting.pop_front() {
            if wanted(&item) {
                state.out += 1;
                next = Some(item);
                break;
            }
        }
        if state.out == 0 && state.waiting.is_empty() {
            entry.remove();
        }
        next
    }

    /// Items out for `key`, and waiting.
    #[cfg(test)]
    fn count(&self, key: &K) -> (usize, usize) {
        self.keys
            .get(key)
            .map_or((0, 0), |k| (k.out, k.waiting.len()))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_key_past_its_limit_waits_in_order() {
        let mut turns = Turns::new(2);
        assert_eq!(turns.admit("a", 1), Some(1));
        assert_eq!(turns.admit("a", 2), Some(2));
        assert_eq!(turns.admit("a", 3), None);
        assert_eq!(turns.admit("a", 4), None);
        // Another key has its own turns.
        assert_eq!(turns.admit("b", 5), Some(5));
        assert_eq!(turns.count(&"a"), (2, 2));
        assert_eq!(turns.finish(&"a", |_| true), Some(3));
        assert_eq!(turns.finish(&"a", |_| true), Some(4));
        assert_eq!(turns.count(&"a"), (2, 0));
        assert_eq!(turns.finish(&"a", |_| true), None);
        assert_eq!(turns.finish(&"a", |_| true), None);
        // Forgotten once idle; a stray finish does nothing.
        assert!(!turns.keys.contains_key("a"));
        assert_eq!(turns.finish(&"a", |_| true), None);
        assert_eq!(turns.count(&"b"), (1, 0));
    }

    #[test]
    fn items_nobody_wants_are_skipped() {
        let mut turns = Turns::new(1);
        assert_eq!(turns.admit("a", 1), Some(1));
        for i in 2..=4 {
            assert_eq!(turns.admit("a", i), None);
        }
        // 2 and 3 were given up by their callers.
        assert_eq!(turns.finish(&"a", |&i| i > 3), Some(4));
        assert_eq!(turns.count(&"a"), (1, 0));
        assert_eq!(turns.finish(&"a", |_| true), None);
        assert!(turns.keys.is_empty());
    }

    proptest! {
        /// Whatever the order of requests and completions: never more than the limit out for a
        /// key, every item goes out exactly once and in its key's order, and nothing is left.
        #[test]
        fn turns_hold_the_limit_and_keep_order(
            limit in 1usize..5,
            steps in prop::collection::vec((0u8..3, any::<bool>()), 1..200),
        ) {
            let mut turns = Turns::new(limit);
            let mut out: HashMap<u8, VecDeque<u32>> = HashMap::new();
            let mut sent: HashMap<u8, Vec<u32>> = HashMap::new();
            let mut made: HashMap<u8, Vec<u32>> = HashMap::new();
            let mut next = 0u32;
            let mut send = |key: u8, item: Option<u32>, out: &mut HashMap<u8, VecDeque<u32>>| {
                if let Some(item) = item {
                    out.entry(key).or_default().push_back(item);
                    sent.entry(key).or_default().push(item);
                }
            };
            for (key, make) in steps {
                let busy = out.get(&key).is_some_and(|o| !o.is_empty());
                if make || !busy {
                    made.entry(key).or_default().push(next);
                    let item = turns.admit(key, next);
                    send(key, item, &mut out);
                    next += 1;
                } else {
                    out.get_mut(&key).and_then(VecDeque::pop_front);
                    let item = turns.finish(&key, |_| true);
                    send(key, item, &mut out);
                }
                prop_assert!(out.get(&key).map_or(0, VecDeque::len) <= limit);
                prop_assert_eq!(turns.count(&key).0, out.get(&key).map_or(0, VecDeque::len));
            }
            for (key, o) in &mut out {
                while o.pop_front().is_some() {
                    if let Some(item) = turns.finish(key, |_| true) {
                        o.push_back(item);
                        sent.entry(*key).or_default().push(item);
                    }
                }
            }
            prop_assert_eq!(sent, made);
            prop_assert!(turns.keys.is_empty());
        }
    }
}
