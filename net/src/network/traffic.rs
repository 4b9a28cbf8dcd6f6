//! Bytes in and out per protocol. Every substream of every connection is counted, and named
//! by the protocol its two sides agreed on: multistream-select's exchange is read as it
//! passes, and the listener's answer names the protocol. Bytes sent before the answer arrives
//! (a dialer that does not wait for it) are counted under that name once it does.
//!
//! These are the bytes the protocols carry, without the encryption's and the multiplexer's
//! framing. A relayed connection's bytes count under their own protocols and again, on the
//! connection to the relay, under the relay's `stop` protocol.

use std::{
    collections::BTreeMap,
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use futures::{AsyncRead, AsyncWrite};
use libp2p::core::muxing::{StreamMuxer, StreamMuxerEvent};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// Most protocols counted by name; the rest are counted together under [`OTHER`].
const MAX_PROTOCOLS: usize = 64;
/// Streams whose negotiation failed, or was never seen whole.
pub(super) const UNNEGOTIATED: &str = "unnegotiated";
/// Protocols past [`MAX_PROTOCOLS`].
pub(super) const OTHER: &str = "other";
/// multistream-select's header message, which both sides send first.
const HEADER: &[u8] = b"/multistream/1.0.0\n";
/// The listener's refusal of a proposed protocol.
const REFUSED: &[u8] = b"na\n";
/// Most bytes of negotiation read before giving up on naming a stream.
const MAX_NEGOTIATION: usize = 4096;

/// One protocol's bytes since the node started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtocolTraffic {
    /// The protocol, as negotiated (`/tessera/piece/1`, `/ipfs/id/1.0.0`...), or
    /// `unnegotiated` or `other`.
    pub protocol: String,
    /// Bytes sent.
    pub sent: u64,
    /// Bytes received.
    pub received: u64,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
}

impl Counters {
    fn add(&self, sent: u64, received: u64) {
        self.sent.fetch_add(sent, Ordering::Relaxed);
        self.received.fetch_add(received, Ordering::Relaxed);
    }
}

/// The node's counters, one per protocol, shared by every connection.
#[derive(Debug, Clone, Default)]
pub(super) struct Traffic(Arc<Mutex<BTreeMap<Box<str>, Arc<Counters>>>>);

impl Traffic {
    /// The counters of `protocol`: its own while fewer than [`MAX_PROTOCOLS`] are counted
    /// (a peer proposes what it likes, but only what the listener accepts is named).
    fn counters(&self, protocol: &str) -> Arc<Counters> {
        let mut all = self.0.lock();
        if let Some(c) = all.get(protocol) {
            return c.clone();
        }
        let name = if all.len() < MAX_PROTOCOLS {
            protocol
        } else {
            OTHER
        };
        all.entry(name.into()).or_default().clone()
    }

    /// Every protocol's bytes, most first.
    pub(super) fn snapshot(&self) -> Vec<ProtocolTraffic> {
        let mut out: Vec<ProtocolTraffic> = self
            .0
            .lock()
            .iter()
            .map(|(protocol, c)| ProtocolTraffic {
                protocol: protocol.to_string(),
                sent: c.sent.load(Ordering::Relaxed),
                received: c.received.load(Ordering::Relaxed),
            })
            .collect();
        out.sort_by_key(|t| std::cmp::Reverse(t.sent + t.received));
        out
    }
}

/// What reading the listener's side of a negotiation found so far.
#[derive(Debug, PartialEq, Eq)]
enum Heard {
    /// Not enough yet.
    Pending,
    /// The protocol both sides agreed on.
    Agreed(String),
    /// Not a negotiation this reader follows (or too long): the stream goes unnamed.
    Unknown,
}

/// Reads multistream-select's messages from the listener's side of a stream: its header,
/// refusals, and the echo of the protocol it accepts. Sans-IO: fed bytes as they pass.
#[derive(Debug, Default)]
struct Answer {
    buf: Vec<u8>,
}

impl Answer {
    fn feed(&mut self, bytes: &[u8]) -> Heard {
        let room = MAX_NEGOTIATION.saturating_sub(self.buf.len());
        self.buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
        let mut rest = &self.buf[..];
        loop {
            let Ok((len, after)) = unsigned_varint::decode::usize(rest) else {
                // A varint cut short waits for more; anything else is no negotiation.
                let cut = rest.len() < 10 && rest.iter().all(|b| b & 0x80 != 0);
                return self.pending_or_unknown(cut);
            };
            if after.len() < len {
                return self.pending_or_unknown(len <= MAX_NEGOTIATION);
            }
            let (message, next) = after.split_at(len);
            rest = next;
            if message == HEADER || message == REFUSED {
                continue;
            }
            return match message.strip_suffix(b"\n") {
                Some(name) if name.starts_with(b"/") => match std::str::from_utf8(name) {
                    Ok(name) => Heard::Agreed(name.to_string()),
                    Err(_) => Heard::Unknown,
                },
                _ => Heard::Unknown,
            };
        }
    }

    fn pending_or_unknown(&self, more_may_come: bool) -> Heard {
        if more_may_come && self.buf.len() < MAX_NEGOTIATION {
            Heard::Pending
        } else {
            Heard::Unknown
        }
    }
}

/// Which side of the negotiation this end is: the listener's answers are what it writes,
/// the dialer's what it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Dialer,
    Listener,
}

#[derive(Debug)]
enum Name {
    Listening(Answer),
    Known(Arc<Counters>),
}

/// A substream, counted.
#[derive(Debug)]
pub(super) struct Counted<S> {
    inner: S,
    side: Side,
    traffic: Traffic,
    name: Name,
    /// Bytes (sent, received) before the protocol was known.
    early: (u64, u64),
}

impl<S> Counted<S> {
    fn new(inner: S, side: Side, traffic: Traffic) -> Self {
        Self {
            inner,
            side,
            traffic,
            name: Name::Listening(Answer::default()),
            early: (0, 0),
        }
    }

    /// Counts `bytes` that passed, reading them for the protocol's name when they are the
    /// listener's.
    fn passed(&mut self, bytes: &[u8], sent: bool) {
        let n = bytes.len() as u64;
        let (s, r) = if sent { (n, 0) } else { (0, n) };
        match &mut self.name {
            Name::Known(c) => c.add(s, r),
            Name::Listening(answer) => {
                self.early.0 += s;
                self.early.1 += r;
                let listeners = sent == (self.side == Side::Listener);
                let heard = if listeners {
                    answer.feed(bytes)
                } else {
                    Heard::Pending
                };
                let protocol = match &heard {
                    Heard::Pending => return,
                    Heard::Agreed(name) => name.as_str(),
                    Heard::Unknown => UNNEGOTIATED,
                };
                let counters = self.traffic.counters(protocol);
                counters.add(self.early.0, self.early.1);
                self.early = (0, 0);
                self.name = Name::Known(counters);
            }
        }
    }
}

impl<S> Drop for Counted<S> {
    fn drop(&mut self) {
        if matches!(self.name, Name::Listening(_)) && self.early != (0, 0) {
            self.traffic
                .counters(UNNEGOTIATED)
                .add(self.early.0, self.early.1);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        this.passed(&buf[..n], false);
        Poll::Ready(Ok(n))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = std::task::ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        this.passed(&buf[..n], true);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

/// A connection whose substreams are counted into `traffic`.
#[derive(Debug)]
pub(super) struct CountedMuxer<M> {
    inner: M,
    traffic: Traffic,
}

impl<M> CountedMuxer<M> {
    /// `inner`, counted into `traffic`.
    pub(super) fn new(inner: M, traffic: Traffic) -> Self {
        Self { inner, traffic }
    }
}

impl<M> StreamMuxer for CountedMuxer<M>
where
    M: StreamMuxer + Unpin,
    M::Substream: Unpin,
{
    type Substream = Counted<M::Substream>;
    type Error = M::Error;

    fn poll_inbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let this = self.get_mut();
        let stream = std::task::ready!(Pin::new(&mut this.inner).poll_inbound(cx))?;
        Poll::Ready(Ok(Counted::new(
            stream,
            Side::Listener,
            this.traffic.clone(),
        )))
    }

    fn poll_outbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let this = self.get_mut();
        let stream = std::task::ready!(Pin::new(&mut this.inner).poll_outbound(cx))?;
        Poll::Ready(Ok(Counted::new(stream, Side::Dialer, this.traffic.clone())))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        Pin::new(&mut self.get_mut().inner).poll(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn message(text: &[u8]) -> Vec<u8> {
        let mut len = unsigned_varint::encode::usize_buffer();
        let mut out = unsigned_varint::encode::usize(text.len(), &mut len).to_vec();
        out.extend_from_slice(text);
        out
    }

    #[test]
    fn the_listeners_echo_names_the_protocol_however_the_bytes_are_cut() {
        let mut wire = message(HEADER);
        wire.extend(message(REFUSED));
        wire.extend(message(b"/tessera/piece/1\n"));
        wire.extend(b"response bytes");
        let want = Heard::Agreed("/tessera/piece/1".into());
        // The echo ends where the response's 14 bytes begin.
        let echoed = wire.len() - 14;
        for cut in 0..wire.len() {
            let mut answer = Answer::default();
            let first = answer.feed(&wire[..cut]);
            if cut >= echoed {
                assert_eq!(first, want, "cut at {cut}");
            } else {
                assert_eq!(first, Heard::Pending, "cut at {cut}");
                assert_eq!(answer.feed(&wire[cut..]), want, "cut at {cut}");
            }
        }
    }

    #[test]
    fn bytes_that_are_no_negotiation_are_unnamed_not_held() {
        let mut answer = Answer::default();
        assert_eq!(answer.feed(&message(b"hello\n")), Heard::Unknown);
        let mut answer = Answer::default();
        assert_eq!(answer.feed(&[0xff; 16]), Heard::Unknown);
        // A length past the limit is not waited for.
        let mut answer = Answer::default();
        let mut huge = unsigned_varint::encode::usize_buffer();
        let huge = unsigned_varint::encode::usize(1 << 20, &mut huge).to_vec();
        assert_eq!(answer.feed(&huge), Heard::Unknown);
        // Nor is an endless run of header messages.
        let mut answer = Answer::default();
        let mut heard = Heard::Pending;
        for _ in 0..1000 {
            heard = answer.feed(&message(HEADER));
            if heard != Heard::Pending {
                break;
            }
        }
        assert_eq!(heard, Heard::Unknown);
    }

    #[test]
    fn a_dialers_early_bytes_count_under_the_protocol_agreed_later() {
        let traffic = Traffic::default();
        let mut stream = Counted::new((), Side::Dialer, traffic.clone());
        let mut proposal = message(HEADER);
        proposal.extend(message(b"/tessera/piece/1\n"));
        stream.passed(&proposal, true);
        stream.passed(b"request", true);
        let mut answer = message(HEADER);
        answer.extend(message(b"/tessera/piece/1\n"));
        stream.passed(&answer, false);
        stream.passed(b"response!", false);
        let sent = (proposal.len() + 7) as u64;
        let received = (answer.len() + 9) as u64;
        assert_eq!(
            traffic.snapshot(),
            vec![ProtocolTraffic {
                protocol: "/tessera/piece/1".into(),
                sent,
                received,
            }]
        );
        // A stream dropped before any answer counts as unnegotiated.
        let mut lost = Counted::new((), Side::Listener, traffic.clone());
        lost.passed(b"xyz", false);
        drop(lost);
        assert!(
            traffic
                .snapshot()
                .iter()
                .any(|t| t.protocol == UNNEGOTIATED && t.received == 3)
        );
    }

    #[test]
    fn protocols_past_the_limit_are_counted_together() {
        let traffic = Traffic::default();
        for i in 0..MAX_PROTOCOLS + 10 {
            traffic.counters(&format!("/p/{i}")).add(1, 0);
        }
        let all = traffic.snapshot();
        assert_eq!(all.len(), MAX_PROTOCOLS + 1);
        assert_eq!(
            all.iter().find(|t| t.protocol == OTHER).map(|t| t.sent),
            Some(10)
        );
    }
}
