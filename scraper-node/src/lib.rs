//! Tessera's scraper node: polite, safe crawling of web pages into Parquet rows with
//! provenance.
//!
//! The pure parts, each testable alone:
//! - [`robots`]: robots.txt per RFC 9309, with the line that decided;
//! - [`optout`]: AI opt-outs (TDMRep, `noai`);
//! - [`address`]: which IP addresses the node may connect to;
//! - [`canonical`]: canonical URLs and the crawl's scope;
//! - [`extract`]: title, main text, language, tokens and links of a page, for pages that
//!   [`nesting`] finds shallow enough to parse;
//! - [`spec`]: a crawl's description (TOML), checked against its limits;
//! - [`limits`]: the operator's own limits, which every lease and spec a coordinator sends
//!   is checked against;
//! - [`frontier`]: the crawl frontier, leases and per-host politeness, with the records that
//!   let a coordinator survive a restart;
//! - [`validation`]: stored pages fetched again by other nodes, and each node's score;
//! - [`row_check`]: a shard's rows against the pages and text hashes its node reported;
//! - [`provenance`]: the row schema (FineWeb's columns and provenance) and row signatures.
//!
//! Around them: [`fetch`] fetches one page through all the rules; [`shard`] writes rows into
//! Parquet shards that roll at a size; [`crawl_store`] keeps the coordinator's crawls in
//! RocksDB; [`coordinator`] is the task that owns them; [`worker`] is a scraper node's loop of
//! leases; [`protocol`] and [`remote`] carry the crawl protocol between them over libp2p;
//! [`node`] assembles a whole scraper node from its roles (coordinator, worker) on
//! `tessera-node`'s builder, with its HTTP API for crawls (changes to them pass
//! [`http_guard`]) and its dashboard; [`config`] describes its settings once; [`api_client`] is a typed client of that
//! API; [`rewards`] counts the verified pages of scraped datasets per node; [`stats`] counts what the worker did.
//!
//! See `docs/ARCHITECTURE.md` for how a crawl runs across nodes.

pub mod address;
pub mod api_client;
pub mod canonical;
pub mod config;
pub mod coordinator;
pub mod cpu_pool;
pub mod crawl_store;
pub mod duplicates;
pub mod extract;
pub mod fetch;
pub mod frontier;
pub mod http_guard;
pub mod limits;
pub mod nesting;
pub mod node;
pub mod optout;
pub mod protocol;
pub mod provenance;
pub mod publish;
pub mod quality;
pub mod remote;
pub mod rewards;
pub mod robots;
pub mod row_check;
pub mod shard;
pub mod spec;
pub mod stats;
pub mod validation;
pub mod worker;
