//! One piece-protocol request with a deadline, and a readable account of a refusal.

use std::time::Duration;

use tessera_net::{
    Client, PeerId,
    protocol::{PieceRequest, PieceResponse},
};

/// Sends `request` to `peer`; a failure is a reason for trying another node.
pub(crate) async fn request(
    net: &Client,
    peer: PeerId,
    request: PieceRequest,
    timeout: Duration,
) -> Result<PieceResponse, String> {
    match tokio::time::timeout(timeout, net.piece_request(peer, request)).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer in {timeout:?}")),
    }
}

/// Why an answer is not the one hoped for.
pub(crate) fn unexpected(response: &PieceResponse) -> String {
    match response {
        PieceResponse::Error { code, message, .. } => format!("{code:?}: {message}"),
        _ => "an answer that does not fit the request".into(),
    }
}
