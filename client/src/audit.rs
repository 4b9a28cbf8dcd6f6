//! Auditing a holder: challenge it to prove it still stores a piece, and check the proof
//! against the piece's CID alone.

use tessera_net::PeerId;
use tessera_proofs::{Challenge, Verified, verify};
use tessera_storage_protocol::{ChallengeProtocol, ChallengeResponse};

use crate::session::Session;

/// Why an audit failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The holder could not be asked or did not answer.
    #[error(transparent)]
    Net(#[from] tessera_net::NetError),
    /// The holder declined to prove.
    #[error("the node refused: {code:?}: {message}")]
    Refused {
        /// Why, for programs.
        code: tessera_storage_protocol::ErrorCode,
        /// Why, for people.
        message: String,
    },
    /// The proof does not check out: the holder does not have the piece as it was stored.
    #[error(transparent)]
    Proof(#[from] tessera_proofs::ProofError),
}

/// Sends `challenge` to `peer` and verifies its proof.
pub async fn audit(
    session: &Session,
    peer: PeerId,
    challenge: &Challenge,
) -> Result<Verified, AuditError> {
    match session
        .net()
        .request::<ChallengeProtocol>(peer, challenge.clone())
        .await?
    {
        ChallengeResponse::Proof(proof) => Ok(verify(challenge, &proof)?),
        ChallengeResponse::Error { code, message, .. } => {
            Err(AuditError::Refused { code, message })
        }
    }
}
