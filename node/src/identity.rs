//! A node's identity as the keys Tessera signs with: the Ed25519 key inside a libp2p
//! identity or peer id, and back.

use libp2p::identity::{Keypair, PeerId, PublicKey};
use tessera_formats::{
    receipt::NodeKey,
    record::{PublisherKey, SigningKey},
};

/// The Ed25519 signing key of a libp2p identity (receipts, payouts, charters); none for other
/// key types.
pub fn signing_key(keypair: &Keypair) -> Option<SigningKey> {
    let ed = keypair.clone().try_into_ed25519().ok()?;
    let secret: [u8; 32] = ed.secret().as_ref().try_into().ok()?;
    Some(SigningKey::from_bytes(&secret))
}

/// The Ed25519 key inside a peer id; none for peer ids of other key types.
pub fn node_key(peer: &PeerId) -> Option<NodeKey> {
    let multihash = peer.as_ref();
    // Ed25519 peer ids are the identity multihash of the protobuf public key.
    if multihash.code() != 0 {
        return None;
    }
    let public = PublicKey::try_decode_protobuf(multihash.digest()).ok()?;
    Some(PublisherKey(public.try_into_ed25519().ok()?.to_bytes()))
}

/// The peer id of a node key (an Ed25519 identity); none for bytes that are not a key.
pub fn peer_of(key: &NodeKey) -> Option<PeerId> {
    let public = libp2p::identity::ed25519::PublicKey::try_from_bytes(&key.0).ok()?;
    Some(PublicKey::from(public).to_peer_id())
}
