//! Pages contributed over a period: the rows of scraped datasets whose provenance signature
//! verifies, per scraper node, beside the validation scores their crawls published. What
//! `tessera rewards --dataset` prints.
//!
//! ```text
//! dataset (CID or name) ─▶ fetched, every shard checked against its CID
//!   ─▶ each shard read under the Parquet guard ─▶ rows signed by their node, fetched in the period
//!   ─▶ pages and rejected rows per node, + the manifest's validation scores
//! ```

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
    /// Rows naming the node whose signature does not verify.
    pub rejected: u64,
    /// Its pages that another node fetched again with the same text (the crawls' scores).
    pub checks_agreed: u64,
    /// Its pages that another node fetched again with other text.
    pub checks_disagreed: u64,
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
    let mut counted: BTreeMap<String, Contribution> = BTreeMap::new();
    let mut scores: BTreeMap<String, Score> = BTreeMap::new();
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
        if let Some(json) = report.manifest.metadata.get(VALIDATION_KEY) {
            let crawl: BTreeMap<String, Score> =
                serde_json::from_str(json).map_err(|source| PagesError::Scores {
                    reference: reference.to_string(),
                    source,
                })?;
            for (node, score) in crawl {
                let total = scores.entry(node).or_default();
                total.agreed += score.agreed;
                total.disagreed += score.disagreed;
            }
        }
        counted = blocking(move || {
            let mut counted = counted;
            count_dir(&dir, from_us, to_us, &mut counted).map(|()| counted)
        })
        .await
        .map_err(|e| match e {
            BlockingError::Failed(e) => e,
            BlockingError::Task(e) => PagesError::Task(e.to_string()),
        })?;
    }
    Ok(counted
        .into_iter()
        .map(|(peer_id, c)| {
            let score = scores.get(&peer_id).copied().unwrap_or_default();
            PagesRow {
                peer_id,
                pages: c.pages,
                rejected: c.rejected,
                checks_agreed: score.agreed,
                checks_disagreed: score.disagreed,
            }
        })
        .collect())
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
