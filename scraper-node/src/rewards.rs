//! Pages contributed over a period: the rows of scraped datasets whose provenance signature
//! verifies, per scraper node, and the pages credited to it: only validated pages count.
//! What `tessera rewards --dataset` prints.
//!
//! ```text
//! dataset (CID or name) ─▶ fetched, every shard checked against its CID
//!   ─▶ each shard read under the Parquet guard ─▶ rows signed by their node, fetched in the period
//!   ─▶ pages per node, credited in the share of its checked pages that agreed (that crawl's
//!      validation scores, from the manifest); none when none of its pages was checked
//! ```
//!
//! The coordinator published only rows that match the text hashes their node reported, and
//! a sample of those hashes, drawn after the report, was compared with another node's fetch.
//! A node that makes up a fraction `r` of its pages is therefore credited `1 - r` of them in
//! expectation: making pages up earns nothing.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use tessera_client::Session;
use tessera_dataset::{
    FetchOptions, FetchReport, VersionError, fetch_version,
    parquet_guard::{ParquetLimits, contain, open_checked},
};
use tessera_formats::{DatasetRef, PublisherKey};
use tessera_node::blocking::{BlockingError, blocking};

use crate::{
    provenance::{Contribution, contributions},
    publish::VALIDATION_KEY,
    validation::Score,
};

/// One scraper node's row of the pages table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PagesRow {
    /// The node's peer id.
    pub peer_id: String,
    /// Rows whose signature verifies, fetched in the period.
    pub pages: u64,
    /// Of those, the pages credited: per dataset, its pages times the share of its checked
    /// pages that agreed.
    pub credited: u64,
    /// Rows naming the node whose signature does not verify.
    pub rejected: u64,
    /// Its pages that another node fetched again with the same text (the crawls' scores).
    pub checks_agreed: u64,
    /// Its pages that another node fetched again with other text.
    pub checks_disagreed: u64,
    /// Its shards the coordinators left out: rows that were not the pages it reported.
    pub shards_refused: u64,
}

/// Counting a dataset's pages failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PagesError {
    /// The dataset could not be fetched.
    #[error("fetching {reference}: {source}")]
    Fetch {
        /// The dataset.
        reference: String,
        /// Why.
        #[source]
        source: Box<VersionError>,
    },
    /// Its published validation scores do not decode.
    #[error("{reference}: {VALIDATION_KEY} is not a score map: {source}")]
    Scores {
        /// The dataset.
        reference: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A folder or a shard could not be read, or is not of scraped pages.
    #[error("{}: {reason}", path.display())]
    Read {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The counting task did not finish.
    #[error("counting pages: {0}")]
    Task(String),
}

/// Fetches each of `datasets` into a folder of its own under `work` and counts its pages
/// fetched from `from_ms` to before `to_ms`, per scraper node; `fetched` hears of each dataset
/// once it is fetched. Names resolve preferring `own`'s versions.
pub async fn count_pages(
    session: &Session,
    datasets: &[DatasetRef],
    own: Option<&PublisherKey>,
    work: &Path,
    (from_ms, to_ms): (u64, u64),
    mut fetched: impl FnMut(&DatasetRef, &FetchReport),
) -> Result<Vec<PagesRow>, PagesError> {
    let micros = |ms: u64| i64::try_from(ms.saturating_mul(1000)).unwrap_or(i64::MAX);
    let (from_us, to_us) = (micros(from_ms), micros(to_ms));
    let mut rows: BTreeMap<String, PagesRow> = BTreeMap::new();
    for (i, reference) in datasets.iter().enumerate() {
        let dir = work.join(format!("dataset-{i}"));
        let (_, _, report) = fetch_version(session, reference, &dir, own, &FetchOptions::default())
            .await
            .map_err(|source| PagesError::Fetch {
                reference: reference.to_string(),
                source: Box::new(source),
            })?;
        fetched(reference, &report);
        // The crawl's validation scores, as its coordinator published them (the manifest's
        // CID covers them, and its publisher signed the version).
        let scores: BTreeMap<String, Score> = match report.manifest.metadata.get(VALIDATION_KEY) {
            Some(json) => serde_json::from_str(json).map_err(|source| PagesError::Scores {
                reference: reference.to_string(),
                source,
            })?,
            None => BTreeMap::new(),
        };
        let counted = blocking(move || {
            let mut counted = BTreeMap::new();
            count_dir(&dir, from_us, to_us, &mut counted).map(|()| counted)
        })
        .await
        .map_err(|e| match e {
            BlockingError::Failed(e) => e,
            BlockingError::Task(e) => PagesError::Task(e.to_string()),
        })?;
        for (peer_id, c) in counted {
            let score = scores.get(&peer_id).copied().unwrap_or_default();
            let row = rows.entry(peer_id.clone()).or_insert_with(|| PagesRow {
                peer_id,
                pages: 0,
                credited: 0,
                rejected: 0,
                checks_agreed: 0,
                checks_disagreed: 0,
                shards_refused: 0,
            });
            row.pages += c.pages;
            row.credited += credited(c.pages, &score);
            row.rejected += c.rejected;
        }
        for (peer_id, score) in scores {
            if let Some(row) = rows.get_mut(&peer_id) {
                row.checks_agreed += score.agreed;
                row.checks_disagreed += score.disagreed;
                row.shards_refused += score.shards_refused;
            }
        }
    }
    Ok(rows.into_values().collect())
}

/// The pages of one crawl credited to a node with `score` in it: `pages` times the share
/// of its checked pages that agreed, rounded down; none without a check.
pub fn credited(pages: u64, score: &Score) -> u64 {
    let checked = score.agreed + score.disagreed;
    if checked == 0 {
        return 0;
    }
    u64::try_from(u128::from(pages) * u128::from(score.agreed) / u128::from(checked))
        .unwrap_or(u64::MAX)
}

/// Adds the pages of every Parquet shard under `dir` to `counted`.
fn count_dir(
    dir: &Path,
    from_us: i64,
    to_us: i64,
    counted: &mut BTreeMap<String, Contribution>,
) -> Result<(), PagesError> {
    let unreadable = |path: &Path| {
        let path = path.to_path_buf();
        move |e: std::io::Error| PagesError::Read {
            path,
            reason: e.to_string(),
        }
    };
    for entry in std::fs::read_dir(dir).map_err(unreadable(dir))? {
        let path = entry.map_err(unreadable(dir))?.path();
        if path.is_dir() {
            count_dir(&path, from_us, to_us, counted)?;
            continue;
        }
        if path.extension().is_none_or(|e| e != "parquet") {
            continue;
        }
        let file = std::fs::File::open(&path).map_err(unreadable(&path))?;
        // Shards come from the network: read with limits, a panic in the reader contained.
        contain(|| {
            let reader = open_checked(file, &ParquetLimits::default())?
                .build()
                .map_err(|e| e.to_string())?;
            for batch in reader {
                let batch = batch.map_err(|e| e.to_string())?;
                contributions(&batch, from_us, to_us, counted)
                    .map_err(|e| format!("not a dataset of scraped pages: {e:#}"))?;
            }
            Ok(())
        })
        .map_err(|reason| PagesError::Read { path, reason })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_share_of_pages_that_checks_confirmed_is_credited() {
        let score = |agreed, disagreed| Score {
            agreed,
            disagreed,
            inconclusive: 5,
            ..Score::default()
        };
        assert_eq!(
            credited(100, &score(0, 0)),
            0,
            "unchecked pages earn nothing"
        );
        assert_eq!(credited(100, &score(4, 0)), 100);
        assert_eq!(credited(100, &score(3, 1)), 75);
        assert_eq!(credited(100, &score(0, 4)), 0);
        assert_eq!(credited(u64::MAX, &score(u64::MAX, 0)), u64::MAX);
    }
}
