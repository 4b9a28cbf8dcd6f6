//! A storage node's settings, described once: read from its TOML file, overridden by flags,
//! printed whole by `tessera storage-node --print-config`.
//!
//! ```toml
//! data-dir = "/var/lib/tessera"
//! listen = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]
//! bootstrap = ["/ip4/203.0.113.7/tcp/4001/p2p/12D3KooW..."]
//! http = "127.0.0.1:8080"       # /status, /metrics, the dashboard and the registry's API
//! charter = "/etc/tessera/charter.block"   # the network's founding charter
//! payout-address = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"   # where rewards are paid
//! capacity = "50GiB"            # storage role: most bytes of pieces kept
//! max-piece = "1GiB"            #   the largest piece taken
//! upload-rate = "2MiB"          #   bytes per second sent, at most (none by default)
//! download-rate = "5MiB"        #   bytes per second received, at most
//! monthly-cap = "500GiB"        #   sent and received in a calendar month, at most
//! scrub-interval = "24h"        #   every held piece re-hashed once a day; "0s" turns it off
//! registry = true               # registry role: version records, announcements, /v1 API
//! audit-interval = "30m"        # auditor role: a round every 30 minutes; "0s" turns it off
//! audit-period = "24h"          #   every known piece challenged once a day
//! audit-failures = 3            #   failures in a row before a node fails a piece
//! audit-grace = "12h"           #   how long a holder that does not answer is waited for
//! repair = true                 #   rebuild lost pieces of the datasets audited
//! repair-spare = 0.75           #   repair below k + ceil(0.75 * m) intact pieces
//!
//! [relay]                       # relaying for nodes behind NATs, while this one is dialable
//! enabled = true
//! reservations = 128            #   slots held for peers at once
//! reservations-per-peer = 4
//! reservation-duration = "1h"
//! circuits = 16                 #   circuits open at once
//! circuits-per-peer = 4
//! circuit-duration = "2m"       #   each circuit cut after this long
//! circuit-bytes = "1MiB"        #   or after this many bytes each way
//! ```

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};
use tessera_formats::payout::PayoutAddress;
use tessera_net::Multiaddr;
use tessera_node::config::{InvalidSetting, byte_size, check_data_dir, default_data_dir, duration};

use crate::{audit::AuditConfig, store::StoreConfig};

/// Everything a storage node is started with; a field missing from a file takes its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct NodeConfig {
    /// Where the node keeps its identity, database and pieces.
    pub data_dir: PathBuf,
    /// libp2p listen addresses.
    pub listen: Vec<Multiaddr>,
    /// Peers to join through (`/ip4/…/tcp/…/p2p/PEER_ID`).
    pub bootstrap: Vec<Multiaddr>,
    /// Address of the HTTP port; none if absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<SocketAddr>,
    /// Take any free port of `http`'s address when its port is in use: set for the default
    /// address, never read from a file.
    #[serde(skip)]
    pub http_any_port_if_taken: bool,
    /// The network's founding charter (a DAG-CBOR block): the node speaks under its network
    /// id and keeps only receipts its validators were assigned. None: the unnamed network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub charter: Option<PathBuf>,
    /// Where this node's rewards are paid (`0x` and 40 hex digits; mixed case must carry its
    /// EIP-55 checksum). Declared on the network, signed by the node's key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payout_address: Option<String>,
    /// Most bytes of pieces to keep.
    #[serde(with = "byte_size")]
    pub capacity: ByteSize,
    /// Largest single piece accepted.
    #[serde(with = "byte_size")]
    pub max_piece: ByteSize,
    /// Most bytes per second sent (ranges served); none: no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_rate: Option<ByteSize>,
    /// Most bytes per second received (pieces stored here); none: no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download_rate: Option<ByteSize>,
    /// Most bytes sent and received together in a calendar month (UTC); past it the node
    /// refuses ranges and pieces until the month ends. None: no cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monthly_cap: Option<ByteSize>,
    /// Time between two checks of every held piece against its CID; zero turns them off.
    #[serde(with = "duration", alias = "scrub-interval-secs")]
    pub scrub_interval: Duration,
    /// Run the registry role: keep version records, answer `/tessera/registry/1`, follow
    /// announcements and serve the registry's HTTP API.
    pub registry: bool,
    /// Time between two audit rounds; zero turns the auditor role off. It needs the registry
    /// role, whose datasets it audits.
    #[serde(with = "duration")]
    pub audit_interval: Duration,
    /// Time in which every known piece is challenged once.
    #[serde(with = "duration")]
    pub audit_period: Duration,
    /// Failures in a row after which a node fails a piece.
    pub audit_failures: u32,
    /// How long a holder that does not answer at all is waited for, from its first failed
    /// audit, before its pieces count as lost.
    #[serde(with = "duration")]
    pub audit_grace: Duration,
    /// Rebuild lost pieces of the datasets it audits.
    pub repair: bool,
    /// A shard is repaired once fewer than `k + ceil(repair_spare * m)` of its pieces are
    /// intact (0..=1; at least one spare piece).
    pub repair_spare: f64,
    /// What the node relays for peers behind NATs, while peers can dial it.
    pub relay: RelaySettings,
}

/// The `[relay]` table: the budget of the relay service ([`tessera_net::RelayBudget`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RelaySettings {
    /// Serve as a relay at all (only ever while peers can dial this node).
    pub enabled: bool,
    /// Reservations held at once, over all peers.
    pub reservations: usize,
    /// Reservations one peer may hold.
    pub reservations_per_peer: usize,
    /// How long a reservation lasts before the peer renews it.
    #[serde(with = "duration")]
    pub reservation_duration: Duration,
    /// Circuits open at once, over all peers.
    pub circuits: usize,
    /// Circuits open at once to or from one peer.
    pub circuits_per_peer: usize,
    /// How long one circuit may stay open.
    #[serde(with = "duration")]
    pub circuit_duration: Duration,
    /// Bytes one circuit may carry each way.
    #[serde(with = "byte_size")]
    pub circuit_bytes: ByteSize,
}

impl Default for RelaySettings {
    fn default() -> Self {
        let budget = tessera_net::RelayBudget::default();
        Self {
            enabled: budget.enabled,
            reservations: budget.reservations,
            reservations_per_peer: budget.reservations_per_peer,
            reservation_duration: budget.reservation_duration,
            circuits: budget.circuits,
            circuits_per_peer: budget.circuits_per_peer,
            circuit_duration: budget.circuit_duration,
            circuit_bytes: ByteSize::b(budget.circuit_bytes),
        }
    }
}

impl RelaySettings {
    /// The budget the network runs with.
    pub fn budget(&self) -> tessera_net::RelayBudget {
        tessera_net::RelayBudget {
            enabled: self.enabled,
            reservations: self.reservations,
            reservations_per_peer: self.reservations_per_peer,
            reservation_duration: self.reservation_duration,
            circuits: self.circuits,
            circuits_per_peer: self.circuits_per_peer,
            circuit_duration: self.circuit_duration,
            circuit_bytes: self.circuit_bytes.as_u64(),
        }
    }

    fn check(&self) -> Result<(), InvalidSetting> {
        if !self.enabled {
            return Ok(());
        }
        let zero = [
            ("relay.reservations", self.reservations == 0),
            (
                "relay.reservations-per-peer",
                self.reservations_per_peer == 0,
            ),
            (
                "relay.reservation-duration",
                self.reservation_duration.is_zero(),
            ),
            ("relay.circuits", self.circuits == 0),
            ("relay.circuits-per-peer", self.circuits_per_peer == 0),
            ("relay.circuit-duration", self.circuit_duration.is_zero()),
            ("relay.circuit-bytes", self.circuit_bytes.as_u64() == 0),
        ];
        match zero.iter().find(|(_, is_zero)| *is_zero) {
            Some((name, _)) => Err(InvalidSetting::new(
                name,
                "must be more than 0 (set relay.enabled = false to relay nothing)",
            )),
            None => Ok(()),
        }
    }
}

/// Once a day: a full read of the disk, spread thin.
pub const DEFAULT_SCRUB_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

impl Default for NodeConfig {
    fn default() -> Self {
        let audit = AuditConfig::default();
        Self {
            data_dir: default_data_dir("storage-node"),
            listen: ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect(),
            bootstrap: Vec::new(),
            http: None,
            http_any_port_if_taken: false,
            charter: None,
            payout_address: None,
            capacity: ByteSize::gib(10),
            max_piece: ByteSize::gib(1),
            upload_rate: None,
            download_rate: None,
            monthly_cap: None,
            scrub_interval: DEFAULT_SCRUB_INTERVAL,
            registry: true,
            audit_interval: audit.interval,
            audit_period: audit.period,
            audit_failures: audit.failures,
            audit_grace: audit.grace,
            repair: audit.repair,
            repair_spare: audit.spare,
            relay: RelaySettings::default(),
        }
    }
}

impl NodeConfig {
    /// A node in `data_dir` with every other setting at its default.
    pub fn with_defaults(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            ..Self::default()
        }
    }

    /// The payout address, read.
    pub fn payout(&self) -> Result<Option<PayoutAddress>, InvalidSetting> {
        tessera_node::payout::setting(self.payout_address.as_deref())
    }

    /// The operator's bandwidth limits.
    pub fn bandwidth(&self) -> crate::bandwidth::BandwidthLimits {
        crate::bandwidth::BandwidthLimits {
            upload: self.upload_rate.map(|b| b.as_u64()),
            download: self.download_rate.map(|b| b.as_u64()),
            monthly_cap: self.monthly_cap.map(|b| b.as_u64()),
        }
    }

    /// Refuses settings the node cannot run with, naming the first one.
    pub fn check(&self) -> Result<(), InvalidSetting> {
        check_data_dir(&self.data_dir)?;
        if self.capacity.as_u64() == 0 {
            return Err(InvalidSetting::new("capacity", "must be more than 0 bytes"));
        }
        if self.max_piece.as_u64() == 0 {
            return Err(InvalidSetting::new(
                "max-piece",
                "must be more than 0 bytes",
            ));
        }
        if !(0.0..=1.0).contains(&self.repair_spare) {
            return Err(InvalidSetting::new(
                "repair-spare",
                format!("{} is not between 0 and 1", self.repair_spare),
            ));
        }
        if self.audit_failures == 0 {
            return Err(InvalidSetting::new("audit-failures", "must be at least 1"));
        }
        self.payout()?;
        self.relay.check()?;
        if self.auditing() && self.audit_period < self.audit_interval {
            return Err(InvalidSetting::new(
                "audit-period",
                format!(
                    "{} is shorter than audit-interval ({})",
                    humantime::format_duration(self.audit_period),
                    humantime::format_duration(self.audit_interval)
                ),
            ));
        }
        Ok(())
    }

    /// Whether the auditor role runs: it audits the registry's datasets, so it needs that
    /// role too.
    pub fn auditing(&self) -> bool {
        self.registry && !self.audit_interval.is_zero()
    }

    /// The storage role's settings.
    pub fn store(&self) -> StoreConfig {
        StoreConfig {
            dir: self.data_dir.clone(),
            capacity: self.capacity.as_u64(),
            max_piece: self.max_piece.as_u64(),
        }
    }

    /// The auditor's settings; none when the role is off.
    pub fn audit(&self) -> Option<AuditConfig> {
        self.auditing().then(|| AuditConfig {
            interval: self.audit_interval,
            period: self.audit_period.max(self.audit_interval),
            failures: self.audit_failures.max(1),
            grace: self.audit_grace,
            repair: self.repair,
            spare: self.repair_spare,
            ..AuditConfig::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NodeConfig, String> {
        toml::from_str::<NodeConfig>(text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_file_names_only_what_it_changes() {
        let c = parse("data-dir = \"/srv/t\"\ncapacity = \"50GiB\"\naudit-interval = \"1h\"\n")
            .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/srv/t"));
        assert_eq!(c.capacity, ByteSize::gib(50));
        assert_eq!(c.audit_interval, Duration::from_secs(3600));
        assert_eq!(c.audit_period, AuditConfig::default().period);
        assert_eq!(c.listen.len(), 2);
        c.check().unwrap();
        let c = parse("[relay]\ncircuit-bytes = \"4MiB\"\ncircuit-duration = \"5m\"\n").unwrap();
        let budget = c.relay.budget();
        assert_eq!(budget.circuit_bytes, 4 << 20);
        assert_eq!(budget.circuit_duration, Duration::from_secs(300));
        assert_eq!(
            budget.reservations,
            tessera_net::RelayBudget::default().reservations
        );
        c.check().unwrap();
        // Older files wrote the scrub interval in seconds.
        let c = parse("scrub-interval-secs = 600\n").unwrap();
        assert_eq!(c.scrub_interval, Duration::from_secs(600));
    }

    #[test]
    fn bad_settings_are_named() {
        assert!(parse("colour = \"blue\"\n").unwrap_err().contains("colour"));
        assert!(
            parse("audit-grace = \"often\"\n")
                .unwrap_err()
                .contains("often")
        );
        assert!(parse("capacity = \"lots\"\n").is_err());
        let check = |text: &str| parse(text).unwrap().check().unwrap_err().key;
        assert_eq!(
            check("data-dir = \"/t\"\n[relay]\ncircuits = 0\n"),
            "relay.circuits"
        );
        parse("data-dir = \"/t\"\n[relay]\nenabled = false\ncircuits = 0\n")
            .unwrap()
            .check()
            .unwrap();
        assert_eq!(
            check("data-dir = \"/t\"\nrepair-spare = 2.0\n"),
            "repair-spare"
        );
        assert_eq!(
            check("data-dir = \"/t\"\nrepair-spare = nan\n"),
            "repair-spare"
        );
        assert_eq!(check("data-dir = \"/t\"\ncapacity = 0\n"), "capacity");
        assert_eq!(
            check("data-dir = \"/t\"\naudit-failures = 0\n"),
            "audit-failures"
        );
        assert_eq!(
            check("data-dir = \"/t\"\naudit-interval = \"2h\"\naudit-period = \"1h\"\n"),
            "audit-period"
        );
        assert_eq!(check("data-dir = \"\"\n"), "data-dir");
    }

    #[test]
    fn the_printed_config_reads_back_the_same() {
        let c = NodeConfig {
            http: Some("127.0.0.1:8080".parse().unwrap()),
            bootstrap: vec!["/ip4/203.0.113.7/tcp/4001".parse().unwrap()],
            audit_grace: Duration::from_secs(90 * 60),
            ..NodeConfig::with_defaults("/srv/t".into())
        };
        let text = toml::to_string(&c).unwrap();
        assert!(text.contains("audit-grace = \"1h 30m\""), "{text}");
        assert_eq!(parse(&text).unwrap(), c);
        assert_eq!(
            parse(&toml::to_string(&NodeConfig::default()).unwrap()).unwrap(),
            NodeConfig::default()
        );
    }

    #[test]
    fn the_auditor_needs_the_registry_and_an_interval() {
        let c = NodeConfig::with_defaults("/t".into());
        assert!(c.audit().is_some());
        assert!(
            NodeConfig {
                registry: false,
                ..c.clone()
            }
            .audit()
            .is_none()
        );
        assert!(
            NodeConfig {
                audit_interval: Duration::ZERO,
                ..c
            }
            .audit()
            .is_none()
        );
    }
}
