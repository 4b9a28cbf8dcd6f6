//! Yamux for the swarm's TCP connections, with data frames of [`FRAME_LEN`].
//!
//! `libp2p-yamux` fixes yamux's data frames at 16 KiB. A connection task writes one frame per
//! turn of its loop and flushes it through Noise as one encrypted message and one `send`, so a
//! 1 MiB range costs 64 turns. Frames of 128 KiB took 7-16% off a node's CPU per byte served
//! on 2 cores (see docs/BENCHMARKS.md). The frame size is the sender's choice: any yamux peer reads
//! these frames, and this side reads any.
//!
//! The adapter is the one `libp2p-yamux` has, over the same `yamux` crate: inbound streams
//! that arrive while the swarm is not asking for one wait in a bounded buffer.

use std::{
    collections::VecDeque,
    iter,
    pin::Pin,
    task::{Context, Poll, Waker},
};

use futures::{AsyncRead, AsyncWrite, future, ready};
use libp2p::core::{
    muxing::{StreamMuxer, StreamMuxerEvent},
    upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade, UpgradeInfo},
};
use yamux::{Connection, ConnectionError, Mode, Stream};

use super::traffic::{CountedMuxer, Traffic};

/// The largest data frame this side sends: half of yamux's initial 256 KiB stream window, so
/// a stream still has a frame in flight while the reader's window update is on its way.
pub(super) const FRAME_LEN: usize = 128 * 1024;

/// Inbound streams held while the swarm takes none: yamux's own backlog of unacknowledged
/// streams, which a well-behaved peer does not exceed. Past it, new streams are dropped.
const MAX_BUFFERED_INBOUND: usize = 256;

/// The yamux upgrade: `/yamux/1.0.0`, as every libp2p peer speaks it.
#[derive(Debug, Clone)]
pub(super) struct Config(yamux::Config, Traffic);

impl Default for Config {
    fn default() -> Self {
        Self::counted_into(Traffic::default())
    }
}

impl Config {
    /// Connections whose streams are counted into `traffic`.
    pub(super) fn counted_into(traffic: Traffic) -> Self {
        let mut config = yamux::Config::default();
        config.set_split_send_size(FRAME_LEN);
        Self(config, traffic)
    }

    /// The connection over `io`, which needs no more negotiation than picking yamux did.
    fn muxer<C>(self, io: C, mode: Mode) -> future::Ready<Result<Counted<C>, std::io::Error>>
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        let muxer = Muxer::new(Connection::new(io, self.0, mode));
        future::ready(Ok(CountedMuxer::new(muxer, self.1)))
    }
}

/// A yamux connection whose streams are counted.
pub(super) type Counted<C> = CountedMuxer<Muxer<C>>;

impl UpgradeInfo for Config {
    type Info = &'static str;
    type InfoIter = iter::Once<Self::Info>;

    fn protocol_info(&self) -> Self::InfoIter {
        iter::once("/yamux/1.0.0")
    }
}

impl<C> InboundConnectionUpgrade<C> for Config
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = Counted<C>;
    type Error = std::io::Error;
    type Future = future::Ready<Result<Self::Output, Self::Error>>;

    fn upgrade_inbound(self, io: C, _: Self::Info) -> Self::Future {
        self.muxer(io, Mode::Server)
    }
}

impl<C> OutboundConnectionUpgrade<C> for Config
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = Counted<C>;
    type Error = std::io::Error;
    type Future = future::Ready<Result<Self::Output, Self::Error>>;

    fn upgrade_outbound(self, io: C, _: Self::Info) -> Self::Future {
        self.muxer(io, Mode::Client)
    }
}

/// One yamux connection.
#[derive(Debug)]
pub(super) struct Muxer<C> {
    connection: Connection<C>,
    /// Streams the remote opened while the swarm polled for progress, not for a stream: yamux
    /// makes progress only by accepting them.
    inbound: VecDeque<Stream>,
    inbound_waker: Option<Waker>,
}

impl<C> Muxer<C> {
    fn new(connection: Connection<C>) -> Self {
        Self {
            connection,
            inbound: VecDeque::new(),
            inbound_waker: None,
        }
    }
}

impl<C> StreamMuxer for Muxer<C>
where
    C: AsyncRead + AsyncWrite + Unpin + 'static,
{
    type Substream = Stream;
    type Error = ConnectionError;

    fn poll_inbound(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        if let Some(stream) = self.inbound.pop_front() {
            return Poll::Ready(Ok(stream));
        }
        if let Poll::Ready(next) = self.next_inbound(cx) {
            return Poll::Ready(next);
        }
        self.inbound_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn poll_outbound(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        self.connection.poll_new_outbound(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.connection.poll_close(cx)
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        let this = self.get_mut();
        let stream = ready!(this.next_inbound(cx))?;
        if this.inbound.len() < MAX_BUFFERED_INBOUND {
            this.inbound.push_back(stream);
            if let Some(waker) = this.inbound_waker.take() {
                waker.wake();
            }
        } else {
            tracing::warn!(%stream, "inbound stream dropped: too many waiting");
        }
        // Run again at once: the connection only moves on while it is polled.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<C> Muxer<C>
where
    C: AsyncRead + AsyncWrite + Unpin + 'static,
{
    fn next_inbound(&mut self, cx: &mut Context<'_>) -> Poll<Result<Stream, ConnectionError>> {
        match ready!(self.connection.poll_next_inbound(cx)) {
            Some(next) => Poll::Ready(next),
            None => Poll::Ready(Err(ConnectionError::Closed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io,
        sync::{Arc, Mutex},
    };

    use futures::{AsyncReadExt as _, AsyncWriteExt as _, future::poll_fn};
    use libp2p::core::muxing::StreamMuxerExt as _;
    use tokio_util::compat::{Compat, TokioAsyncReadCompatExt as _};

    use super::*;

    /// One end of an in-memory pipe that keeps a copy of everything written to it.
    struct Recorded {
        io: Compat<tokio::io::DuplexStream>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl AsyncRead for Recorded {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.io).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Recorded {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, buf))?;
            self.written.lock().unwrap().extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_flush(cx)
        }

        fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_close(cx)
        }
    }

    /// Keeps a connection moving until it closes.
    fn drive<M: StreamMuxer + Unpin + Send + 'static>(mut muxer: M) {
        tokio::spawn(async move {
            let _ = poll_fn(|cx| muxer.poll_unpin(cx)).await;
        });
    }

    /// The payload lengths of the data frames in a yamux byte stream.
    fn data_frames(mut wire: &[u8]) -> Vec<usize> {
        let mut frames = Vec::new();
        while let Some((header, rest)) = wire.split_first_chunk::<12>() {
            let len = u32::from_be_bytes([header[8], header[9], header[10], header[11]]) as usize;
            // Only a data frame (type 0) carries its length in bytes after the header.
            if header[1] == 0 {
                frames.push(len);
                wire = &rest[len..];
            } else {
                wire = rest;
            }
        }
        frames
    }

    #[tokio::test]
    async fn a_mebibyte_crosses_in_frames_of_frame_len_to_a_stock_reader() {
        let (a, b) = tokio::io::duplex(4 << 20);
        let written = Arc::new(Mutex::new(Vec::new()));
        let sender = Recorded {
            io: a.compat(),
            written: written.clone(),
        };
        let mut sender = Config::default()
            .upgrade_outbound(sender, "/yamux/1.0.0")
            .await
            .unwrap();
        // The reading side is yamux as libp2p-yamux configures it: 16 KiB frames of its own.
        let receiver = Connection::new(b.compat(), yamux::Config::default(), Mode::Server);
        let mut receiver = Muxer::new(receiver);

        let mut out = poll_fn(|cx| sender.poll_outbound_unpin(cx)).await.unwrap();
        drive(sender);
        let body: Vec<u8> = (0u8..=250).cycle().take(1 << 20).collect();
        let write = {
            let body = body.clone();
            tokio::spawn(async move {
                out.write_all(&body).await.unwrap();
                out.close().await.unwrap();
            })
        };
        let mut inbound = poll_fn(|cx| receiver.poll_inbound_unpin(cx)).await.unwrap();
        drive(receiver);
        let mut got = Vec::new();
        inbound.read_to_end(&mut got).await.unwrap();
        write.await.unwrap();
        assert!(got == body, "the bytes arrive as sent");

        let frames = data_frames(&written.lock().unwrap());
        assert_eq!(frames.iter().sum::<usize>(), 1 << 20);
        assert_eq!(frames.iter().max(), Some(&FRAME_LEN), "{frames:?}");
    }
}
