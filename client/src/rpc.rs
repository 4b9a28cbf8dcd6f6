//! One piece-protocol request with a deadline, and a readable account of a refusal.

use std::time::Duration;

use tessera_net::{Client, PeerId};
use tessera_storage_protocol::{PieceProtocol, PieceRequest, PieceResponse};
use tracing::debug;

/// Times a node that answers `Busy` is asked again, and the first pause before asking (doubled
/// each time: 50 to 400 ms, 750 ms in all).
const BUSY_RETRIES: u32 = 4;
const BUSY_PAUSE: Duration = Duration::from_millis(50);

/// The pauses before asking a busy node again: 50, 100, 200 and 400 ms, then no more.
#[derive(Debug)]
pub struct Backoff {
    left: u32,
    pause: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    /// A fresh run of pauses.
    pub fn new() -> Self {
        Self {
            left: BUSY_RETRIES,
            pause: BUSY_PAUSE,
        }
    }

    /// Waits out the next pause; false, at once, when the retries are spent.
    pub async fn wait(&mut self) -> bool {
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        tokio::time::sleep(self.pause).await;
        self.pause *= 2;
        true
    }
}

/// Sends `request` to `peer`; a failure is a reason for trying another node.
pub(crate) async fn request(
    net: &Client,
    peer: PeerId,
    request: PieceRequest,
    timeout: Duration,
) -> Result<PieceResponse, String> {
    match tokio::time::timeout(timeout, net.request::<PieceProtocol>(peer, request)).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer in {timeout:?}")),
    }
}

/// [`request`], asked again after a pause while the node answers `Busy`; its last answer once
/// the retries are spent. A node whose queue of requests is full answers `Busy` without acting
/// on the request, so asking again is safe. For small requests: each try sends a copy.
pub(crate) async fn request_patiently(
    net: &Client,
    peer: PeerId,
    request: PieceRequest,
    timeout: Duration,
) -> Result<PieceResponse, String> {
    let mut backoff = Backoff::new();
    loop {
        let answer = self::request(net, peer, request.clone(), timeout).await?;
        if !answer.is_busy() {
            return Ok(answer);
        }
        debug!(%peer, "node busy; asking again after a pause");
        if !backoff.wait().await {
            return Ok(answer);
        }
    }
}

/// Why an answer is not the one hoped for.
pub(crate) fn unexpected(response: &PieceResponse) -> String {
    match response {
        PieceResponse::Error { code, message, .. } => format!("{code:?}: {message}"),
        _ => "an answer that does not fit the request".into(),
    }
}
