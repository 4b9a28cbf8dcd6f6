//! The coordinator's crawls in RocksDB: each crawl's spec, state, frontier records and
//! finished shards, so a restarted coordinator continues where it was.
//!
//! ```text
//! key                                   value (JSON)
//! c/{crawl}/spec                        CrawlSpec
//! c/{crawl}/state                       CrawlState
//! c/{crawl}/u/{url}                     UrlRecord
//! c/{crawl}/l/{lease id, 20 digits}     Lease           (deleted when it completes or expires)
//! c/{crawl}/h/{host:port}               HostRecord
//! c/{crawl}/next                        next lease id
//! c/{crawl}/s/{shard name}              ShardRecord
//! c/{crawl}/k/{url}                     (host, Check)   (deleted when it is settled)
//! c/{crawl}/n/{node}                    Score
//! ```
//!
//! Each frontier step is one synced write batch: after a crash the store holds the state
//! before or after the step, never half of it.

use std::path::Path;

use rocksdb::{Direction, IteratorMode};
use serde::{Deserialize, Serialize};
use tessera_node::db::{Batch, Column, DEFAULT, Db, DbError, Durability};

use tessera_formats::manifest::RowGroup;

use crate::{frontier::Change, spec::CrawlSpec};

/// Where a crawl stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrawlState {
    /// URLs are being leased.
    Running,
    /// Stopped by its operator; no new leases.
    Stopped,
    /// Every URL is done and the dataset version is published.
    Published {
        /// The manifest CID.
        manifest: String,
        /// The version number in the registry.
        version: u64,
    },
    /// Every URL is done but publishing failed; it is tried again.
    Unpublished {
        /// Why the last attempt failed.
        reason: String,
        /// Attempts so far.
        attempts: u32,
    },
    /// Every URL is done, but this node has no storage network to publish to; its shards
    /// stay on the nodes that wrote them until it is started with one.
    Unpublishable(String),
}

impl std::fmt::Display for CrawlState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Running => f.write_str("running"),
            Self::Stopped => f.write_str("stopped"),
            Self::Published { manifest, version } => {
                write!(f, "published as version {version}: {manifest}")
            }
            Self::Unpublished { reason, attempts } => {
                write!(f, "not published yet ({attempts} attempts): {reason}")
            }
            Self::Unpublishable(reason) => write!(f, "cannot be published: {reason}"),
        }
    }
}

/// A shard a scraper node wrote, and stored in the network when it has storage nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRecord {
    /// Its file name.
    pub name: String,
    /// Its content CID (BLAKE3).
    pub cid: String,
    /// Rows in it.
    pub rows: u64,
    /// Its size in bytes.
    pub bytes: u64,
    /// The node that wrote it.
    pub node: String,
    /// Its row groups, from its footer, for the manifest.
    #[serde(default)]
    pub row_groups: Vec<RowGroup>,
    /// Its layout in the network (a DAG-CBOR `ShardLayout` block); none while the node that
    /// wrote it has no storage network, and then the crawl cannot be published.
    #[serde(default, with = "serde_bytes")]
    pub layout: Option<Vec<u8>>,
}

/// A crawl as stored.
#[derive(Debug, Clone)]
pub struct StoredCrawl {
    /// Its id.
    pub id: String,
    /// Its spec.
    pub spec: CrawlSpec,
    /// Its state.
    pub state: CrawlState,
    /// Its frontier records, for [`crate::frontier::Frontier::restore`].
    pub changes: Vec<Change>,
    /// Its finished shards.
    pub shards: Vec<ShardRecord>,
}

/// The store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CrawlStoreError {
    /// RocksDB.
    #[error("crawl store: {0}")]
    Db(#[from] rocksdb::Error),
    /// The database could not be opened.
    #[error("crawl store: {0}")]
    Open(#[from] DbError),
    /// A record that does not decode: the store is damaged.
    #[error("crawl store record {key}: {why}")]
    Corrupt {
        /// The key.
        key: String,
        /// Why.
        why: String,
    },
}

/// The coordinator's crawls.
#[derive(Debug)]
pub struct CrawlStore {
    db: Column,
}

fn key(crawl: &str, rest: &str) -> Vec<u8> {
    format!("c/{crawl}/{rest}").into_bytes()
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

impl CrawlStore {
    /// Opens (or creates) the store in a database of its own in `dir`.
    pub fn open(dir: &Path) -> Result<Self, CrawlStoreError> {
        Ok(Self::in_column(Db::open(dir, &[])?.column(DEFAULT)?))
    }

    /// The store in `db`, a column of a node's database.
    pub fn in_column(db: Column) -> Self {
        Self { db }
    }

    /// Records a new crawl with its first frontier records.
    pub fn create(
        &self,
        crawl: &str,
        spec: &CrawlSpec,
        changes: &[Change],
    ) -> Result<(), CrawlStoreError> {
        let mut batch = self.db.batch();
        batch.put(key(crawl, "spec"), json(spec));
        batch.put(key(crawl, "state"), json(&CrawlState::Running));
        Self::add(&mut batch, crawl, changes);
        Ok(self.db.write(batch, Durability::Synced)?)
    }

    /// Persists one frontier step.
    pub fn apply(&self, crawl: &str, changes: &[Change]) -> Result<(), CrawlStoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut batch = self.db.batch();
        Self::add(&mut batch, crawl, changes);
        Ok(self.db.write(batch, Durability::Synced)?)
    }

    fn add(batch: &mut Batch, crawl: &str, changes: &[Change]) {
        for change in changes {
            match change {
                Change::Url(url, record) => {
                    batch.put(key(crawl, &format!("u/{url}")), json(record))
                }
                Change::Lease(lease) => {
                    batch.put(key(crawl, &format!("l/{:020}", lease.id)), json(lease));
                }
                Change::LeaseGone(id) => batch.delete(key(crawl, &format!("l/{id:020}"))),
                Change::Host(host, record) => {
                    batch.put(key(crawl, &format!("h/{host}")), json(record));
                }
                Change::NextLease(next) => batch.put(key(crawl, "next"), json(next)),
                Change::Check(host, check) => {
                    batch.put(
                        key(crawl, &format!("k/{}", check.url)),
                        json(&(host, check)),
                    );
                }
                Change::CheckGone(url) => batch.delete(key(crawl, &format!("k/{url}"))),
                Change::Score(node, score) => {
                    batch.put(key(crawl, &format!("n/{node}")), json(score));
                }
            }
        }
    }

    /// Sets a crawl's state.
    pub fn set_state(&self, crawl: &str, state: &CrawlState) -> Result<(), CrawlStoreError> {
        Ok(self
            .db
            .put(key(crawl, "state"), json(state), Durability::Synced)?)
    }

    /// Records a finished shard.
    pub fn add_shard(&self, crawl: &str, shard: &ShardRecord) -> Result<(), CrawlStoreError> {
        let k = key(crawl, &format!("s/{}", shard.name));
        Ok(self.db.put(k, json(shard), Durability::Synced)?)
    }

    /// Every crawl, with its records, for a coordinator starting up.
    pub fn load(&self) -> Result<Vec<StoredCrawl>, CrawlStoreError> {
        // Keys sort by crawl, so each crawl's records are one run.
        let mut crawls: Vec<Loading> = Vec::new();
        for item in self
            .db
            .iterator(IteratorMode::From(b"c/", Direction::Forward))
        {
            let (k, v) = item?;
            let Some(rest) = k.strip_prefix(b"c/") else {
                break;
            };
            let text = String::from_utf8_lossy(rest).into_owned();
            let Some((crawl, field)) = text.split_once('/') else {
                continue;
            };
            if crawls.last().is_none_or(|c| c.id != crawl) {
                crawls.push(Loading::new(crawl));
            }
            if let Some(c) = crawls.last_mut() {
                c.add(field, &v).map_err(|why| CrawlStoreError::Corrupt {
                    key: format!("c/{text}"),
                    why: why.to_string(),
                })?;
            }
        }
        crawls.into_iter().map(Loading::finish).collect()
    }
}

/// One crawl's records as they are read.
struct Loading {
    id: String,
    spec: Option<CrawlSpec>,
    state: Option<CrawlState>,
    changes: Vec<Change>,
    shards: Vec<ShardRecord>,
}

impl Loading {
    fn new(id: &str) -> Self {
        Self {
            id: id.to_string(),
            spec: None,
            state: None,
            changes: Vec::new(),
            shards: Vec::new(),
        }
    }

    fn add(&mut self, field: &str, v: &[u8]) -> Result<(), serde_json::Error> {
        match field.split_once('/') {
            None if field == "spec" => self.spec = Some(serde_json::from_slice(v)?),
            None if field == "state" => self.state = Some(serde_json::from_slice(v)?),
            None if field == "next" => self
                .changes
                .push(Change::NextLease(serde_json::from_slice(v)?)),
            Some(("u", url)) => self
                .changes
                .push(Change::Url(url.to_string(), serde_json::from_slice(v)?)),
            Some(("l", _)) => self.changes.push(Change::Lease(serde_json::from_slice(v)?)),
            Some(("h", host)) => self
                .changes
                .push(Change::Host(host.to_string(), serde_json::from_slice(v)?)),
            Some(("s", _)) => self.shards.push(serde_json::from_slice(v)?),
            Some(("k", _)) => {
                let (host, check) = serde_json::from_slice(v)?;
                self.changes.push(Change::Check(host, check));
            }
            Some(("n", node)) => self
                .changes
                .push(Change::Score(node.to_string(), serde_json::from_slice(v)?)),
            _ => {}
        }
        Ok(())
    }

    fn finish(self) -> Result<StoredCrawl, CrawlStoreError> {
        let spec = self.spec.ok_or_else(|| CrawlStoreError::Corrupt {
            key: format!("c/{}/spec", self.id),
            why: "missing".into(),
        })?;
        Ok(StoredCrawl {
            id: self.id,
            spec,
            state: self.state.unwrap_or(CrawlState::Running),
            changes: self.changes,
            shards: self.shards,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontier::{Frontier, PageResult, UrlReport};

    #[test]
    fn a_crawl_survives_closing_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let spec = CrawlSpec::from_toml(
            "name = \"t\"\nseeds = [\"http://a.test/\"]\nmax_pages = 10\nmax_depth = 1\n",
        )
        .unwrap();
        let mut f = Frontier::new(&spec);
        let lease;
        {
            let store = CrawlStore::open(dir.path()).unwrap();
            store.create("crawl1", &spec, &f.seed(&spec.seeds)).unwrap();
            let (l, changes) = f.lease("n", 0).unwrap();
            store.apply("crawl1", &changes).unwrap();
            let report = UrlReport {
                url: l.urls[0].clone(),
                result: PageResult::Stored,
                links: vec!["/a".into(), "/b".into()],
                text_blake3: None,
                final_url: None,
                buckets: Vec::new(),
            };
            let (_, changes) = f.complete(l.id, "n", &[report], None, 10).unwrap();
            store.apply("crawl1", &changes).unwrap();
            let (l, changes) = f.lease("n", 5000).unwrap();
            store.apply("crawl1", &changes).unwrap();
            lease = l;
            store
                .add_shard(
                    "crawl1",
                    &ShardRecord {
                        name: "s-00000.parquet".into(),
                        cid: "bafy".into(),
                        rows: 1,
                        bytes: 100,
                        node: "n".into(),
                        row_groups: vec![RowGroup {
                            offset: 4,
                            size: 90,
                            rows: 1,
                        }],
                        layout: Some(vec![0xa1, 0x01, 0x02]),
                    },
                )
                .unwrap();
        }
        let store = CrawlStore::open(dir.path()).unwrap();
        let crawls = store.load().unwrap();
        assert_eq!(crawls.len(), 1);
        let c = &crawls[0];
        assert_eq!(
            (c.id.as_str(), &c.spec, &c.state),
            ("crawl1", &spec, &CrawlState::Running)
        );
        assert_eq!(c.shards.len(), 1);
        assert_eq!(c.shards[0].layout.as_deref(), Some(&[0xa1, 0x01, 0x02][..]));
        assert_eq!(c.shards[0].row_groups[0].size, 90);
        let mut g = Frontier::restore(&c.spec, c.changes.clone());
        assert_eq!(g.progress(), f.progress());
        assert!(g.complete(lease.id, "n", &[], None, 6000).is_ok());

        store.set_state("crawl1", &CrawlState::Stopped).unwrap();
        assert_eq!(store.load().unwrap()[0].state, CrawlState::Stopped);
        let published = CrawlState::Published {
            manifest: "bafy".into(),
            version: 2,
        };
        store.set_state("crawl1", &published).unwrap();
        assert_eq!(store.load().unwrap()[0].state, published);
    }
}
