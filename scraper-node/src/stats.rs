//! What a scraper node's worker has done since it started, for its dashboard.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Counters a worker keeps; shared with the HTTP port behind an `Arc`.
#[derive(Debug, Default)]
pub struct WorkerStats {
    leases: AtomicU64,
    pages: AtomicU64,
    shards: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerCounts {
    /// Leases done.
    pub leases: u64,
    /// Pages scraped: rows written for URLs the coordinator accepted.
    pub pages: u64,
    /// Shards closed, stored and recorded by the coordinator.
    pub shards: u64,
}

impl WorkerStats {
    pub(crate) fn lease(&self, pages: u64) {
        self.leases.fetch_add(1, Ordering::Relaxed);
        self.pages.fetch_add(pages, Ordering::Relaxed);
    }

    pub(crate) fn shard(&self) {
        self.shards.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn counts(&self) -> WorkerCounts {
        WorkerCounts {
            leases: self.leases.load(Ordering::Relaxed),
            pages: self.pages.load(Ordering::Relaxed),
            shards: self.shards.load(Ordering::Relaxed),
        }
    }
}
