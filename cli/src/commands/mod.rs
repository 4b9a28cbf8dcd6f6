//! One module per subcommand, plus what several of them share.

pub(crate) mod audit;
pub(crate) mod charter;
pub(crate) mod cid;
pub(crate) mod config;
pub(crate) mod crawl;
pub(crate) mod daemon;
pub(crate) mod datasets;
pub(crate) mod demo;
pub(crate) mod fetch;
pub(crate) mod get;
pub(crate) mod join;
pub(crate) mod peers;
pub(crate) mod progress;
pub(crate) mod publish;
pub(crate) mod publisher_key;
pub(crate) mod put;
pub(crate) mod reader;
pub(crate) mod rewards;
pub(crate) mod robots;
pub(crate) mod scraper_node;
pub(crate) mod simulate;
pub(crate) mod storage_node;
pub(crate) mod stream;
