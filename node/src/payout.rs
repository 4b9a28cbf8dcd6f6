//! A node's payout address on the network: the declaration its operator configures, signed by
//! the node's key, kept on the DHT under the node's key and put again every hour (records
//! expire); read back by whoever settles rewards, who keeps only a declaration whose
//! signature is the node's own.

use std::time::Duration;

use tessera_formats::{
    payout::{AddressError, PAYOUT_VERSION, PayoutAddress, PayoutDeclaration, SignedPayout},
    receipt::NodeKey,
    record::{PublisherKey, SigningKey},
    time::now_ms,
};
use tessera_net::Client;
use tracing::{debug, warn};

use crate::{builder::Assembly, config::InvalidSetting, identity::signing_key};

/// How often the declaration is put on the DHT again.
pub const REPUBLISH: Duration = Duration::from_secs(60 * 60);

/// The DHT key of `node`'s payout declaration.
pub fn payout_key(node: &NodeKey) -> Vec<u8> {
    let mut key = b"/tessera/payout/1/".to_vec();
    key.extend_from_slice(&node.0);
    key
}

/// The `payout-address` setting, read: mixed case must carry its EIP-55 checksum.
pub fn setting(text: Option<&str>) -> Result<Option<PayoutAddress>, InvalidSetting> {
    text.map(|text| {
        text.parse()
            .map_err(|e: AddressError| InvalidSetting::new("payout-address", e.to_string()))
    })
    .transpose()
}

/// Declares `address` as where `node`'s rewards are paid, signed by its identity, and keeps
/// the declaration on the DHT while the node runs.
pub fn keep_declaring(node: &Assembly, address: PayoutAddress) {
    let Some(key) = signing_key(&node.keypair) else {
        warn!("the node's identity is not an Ed25519 key: no payout address is declared");
        return;
    };
    if let Some(declaration) = declare(&key, address) {
        node.spawn(keep_declared(node.client.clone(), declaration));
    }
}

/// `key`'s node declaring `address`, now.
pub fn declare(key: &SigningKey, address: PayoutAddress) -> Option<SignedPayout> {
    PayoutDeclaration {
        format: PAYOUT_VERSION,
        node: PublisherKey::of(key),
        address,
        time_ms: now_ms(),
    }
    .sign(key)
    .map_err(|e| warn!(%e, "signing the payout declaration failed"))
    .ok()
}

/// Puts `declaration` on the DHT now and every [`REPUBLISH`], until the task is stopped.
pub async fn keep_declared(client: Client, declaration: SignedPayout) {
    let Ok(block) = declaration.to_block() else {
        return;
    };
    let key = payout_key(&declaration.declaration.node);
    loop {
        if let Err(e) = client.put_record(key.clone(), block.clone()).await {
            debug!(%e, "putting the payout declaration on the DHT failed; trying again later");
        }
        tokio::time::sleep(REPUBLISH).await;
    }
}

/// The payout address `node` declared last, from the DHT; none when no declaration there is
/// signed by the node itself.
pub async fn declared(client: &Client, node: &NodeKey) -> Option<PayoutAddress> {
    let found = client.get_record(payout_key(node)).await.ok()?;
    found
        .iter()
        .filter_map(|block| SignedPayout::from_block(block).ok())
        .filter(|p| p.declaration.node == *node)
        .max_by_key(|p| p.declaration.time_ms)
        .map(|p| p.declaration.address)
}
