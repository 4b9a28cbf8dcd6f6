//! A network's names on the wire. Every request-response protocol, the DHT and every gossip
//! topic of a named network (its charter's id) carries the id, so nodes of two networks never
//! take each other's requests, routing entries or gossip, even when they dial each other.
//!
//! ```text
//! unnamed:  /tessera/piece/1             /tessera/kad/1.0.0             registry
//! "main":   /tessera-net/main/tessera/piece/1   /tessera-net/main/tessera/kad/1.0.0   main/registry
//! ```

use libp2p::{StreamProtocol, gossipsub};
use tessera_formats::charter::check_network_id;

use super::NetError;

/// How a node's protocols and topics are named on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Naming {
    network: Option<String>,
}

impl Naming {
    /// The names of `network` (none: the unnamed network, names as registered).
    pub(crate) fn new(network: Option<&str>) -> Result<Self, NetError> {
        if let Some(id) = network {
            check_network_id(id).map_err(|e| NetError::Build(e.to_string()))?;
        }
        Ok(Self {
            network: network.map(str::to_string),
        })
    }

    /// Protocol `name` as this network speaks it.
    pub(crate) fn protocol(&self, name: &StreamProtocol) -> StreamProtocol {
        match &self.network {
            None => name.clone(),
            // A registered name starts with '/', and an id is of a-z, 0-9 and '-': the result
            // is a valid protocol name.
            Some(id) => StreamProtocol::try_from_owned(format!("/tessera-net/{id}{name}"))
                .unwrap_or_else(|_| name.clone()),
        }
    }

    /// The name a protocol on the wire was registered by: this network's prefix taken off.
    pub(crate) fn registered<'a>(&self, wire: &'a str) -> &'a str {
        self.network
            .as_ref()
            .and_then(|id| {
                wire.strip_prefix("/tessera-net/")?
                    .strip_prefix(id.as_str())
            })
            .filter(|rest| rest.starts_with('/'))
            .unwrap_or(wire)
    }

    /// Gossip topic `name` as this network speaks it.
    pub(crate) fn topic(&self, name: &str) -> gossipsub::IdentTopic {
        match &self.network {
            None => gossipsub::IdentTopic::new(name),
            Some(id) => gossipsub::IdentTopic::new(format!("{id}/{name}")),
        }
    }

    /// What identify says this node speaks.
    pub(crate) fn identify(&self) -> String {
        match &self.network {
            None => "/tessera/1.0.0".into(),
            Some(id) => format!("/tessera-net/{id}/1.0.0"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_network_renames_everything_and_the_unnamed_one_nothing() {
        let piece = StreamProtocol::new("/tessera/piece/1");
        let plain = Naming::new(None).unwrap();
        assert_eq!(plain.protocol(&piece), piece);
        assert_eq!(
            plain.topic("registry").hash(),
            gossipsub::IdentTopic::new("registry").hash()
        );
        let main = Naming::new(Some("main")).unwrap();
        assert_eq!(
            main.protocol(&piece).as_ref(),
            "/tessera-net/main/tessera/piece/1"
        );
        assert_ne!(
            main.topic("registry").hash(),
            plain.topic("registry").hash()
        );
        assert_ne!(
            main.topic("registry").hash(),
            Naming::new(Some("test")).unwrap().topic("registry").hash()
        );
        assert!(Naming::new(Some("Main/../x")).is_err());
        // Names on the wire read back as registered; another network's stay whole.
        assert_eq!(
            main.registered(main.protocol(&piece).as_ref()),
            "/tessera/piece/1"
        );
        assert_eq!(main.registered("/ipfs/id/1.0.0"), "/ipfs/id/1.0.0");
        assert_eq!(
            main.registered("/tessera-net/mainnet/x/1"),
            "/tessera-net/mainnet/x/1"
        );
    }
}
