//! One piece-protocol request with a deadline, and a readable account of a refusal.

use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBackoff, ExponentialBuilder};

use tessera_net::{Client, PeerId};
use tessera_storage_protocol::{PieceProtocol, PieceRequest, PieceResponse};
use tracing::debug;

/// The one policy for asking again a peer that answered `Busy` (its queue was full, so it did
/// not act on the request): 50, 100, 200 and 400 ms, 750 ms in all, then no more. No jitter:
/// the askers that meet one busy node are few, and a reader's deadline counts on the sum.
pub fn busy_policy() -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(50))
        .with_factor(2.0)
        .with_max_times(4)
}

/// The pauses of [`busy_policy`], taken one at a time by a loop that also does other things
/// between tries.
#[derive(Debug)]
pub struct Backoff {
    delays: ExponentialBackoff,
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
            delays: busy_policy().build(),
        }
    }

    /// Waits out the next pause; false, at once, when the retries are spent.
    pub async fn wait(&mut self) -> bool {
        match self.delays.next() {
            Some(pause) => {
                tokio::time::sleep(pause).await;
                true
            }
            None => false,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_peer_is_asked_again_after_50_100_200_and_400_ms() {
        let pauses: Vec<Duration> = busy_policy().build().collect();
        let ms: Vec<u128> = pauses.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [50, 100, 200, 400]);
    }
}
