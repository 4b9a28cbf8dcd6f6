//! A finished crawl becomes a dataset version: its shards, already stored in the network by
//! the nodes that wrote them, are listed in a manifest that the coordinator stores, signs and
//! registers as the next version of the crawl's dataset name.
//!
//! ```text
//! shard records (name, CID, rows, row groups, layout block) ─▶ checked as they arrive
//! crawl done ─▶ latest version already this crawl's? keep it (a restart after registering)
//!            ─▶ each shard fetched, its rows checked against its node's reports; refused
//!               shards left out and named in the metadata
//!            ─▶ manifest {crawl}/{shard} entries, provenance schema, metadata
//!            ─▶ stored on max(m) + 2 nodes ─▶ record signed, submitted ─▶ Published
//! ```

use std::{collections::BTreeMap, path::Path};
use tessera_dataset::{
    StoredVersion,
    fetch::fetch_manifest,
    parquet_guard::{ParquetLimits, contain, open_checked},
    publish::arrow_schema,
    publish_stored,
};

use tessera_client::{
    Session,
    get::{GetOptions, fetch_shard},
};
use tessera_dataset_registry::remote::{self, RemoteError};
use tessera_formats::{
    Manifest, ShardLayout, VersionSel,
    manifest::{MANIFEST_VERSION, MAX_METADATA_VALUE_BYTES, ShardEntry},
    record::Signer,
};
use tessera_node::blocking::blocking;
use tracing::warn;

use crate::{
    crawl_store::ShardRecord, provenance::schema, row_check::StoredPages, spec::CrawlSpec,
    validation::Score,
};

/// The manifest metadata key that names the crawl a version came from.
pub const CRAWL_KEY: &str = "tessera.crawl";
/// The manifest metadata key of the shards left out because their rows were not the pages
/// their nodes reported (JSON: shard name to reason).
pub const REFUSED_KEY: &str = "tessera.crawl.refused";
/// The manifest metadata key of each scraper node's validation score (JSON: peer id to
/// [`Score`]).
pub const VALIDATION_KEY: &str = "tessera.crawl.validation";
/// The manifest metadata key of the pages the quality pipeline and deduplication dropped
/// (JSON: reason to pages).
pub const DROPPED_KEY: &str = "tessera.crawl.dropped";

/// What a coordinator publishes finished crawls with: a session on the storage network and
/// the publisher key that signs the versions.
#[derive(Debug)]
pub struct Publisher {
    /// The storage network.
    pub session: Session,
    /// The publisher's signer: its key, or one it rotated to.
    pub signer: Signer,
    /// Where shards are fetched to be checked before they are published (under the node's
    /// data directory: shards can be larger than a small `/tmp`).
    pub scratch: std::path::PathBuf,
}

/// A version published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedCrawl {
    /// The manifest CID.
    pub manifest: String,
    /// The version number.
    pub version: u64,
}

/// The manifest entry of a crawl's shard, checked against what its record claims: a shard
/// that is not stored in the network, or whose layout, size or rows disagree, has none.
pub fn shard_entry(crawl: &str, record: &ShardRecord) -> Result<ShardEntry, String> {
    let Some(block) = &record.layout else {
        return Err(format!(
            "shard {} of node {} is not stored in the network (that node has no storage nodes)",
            record.name, record.node
        ));
    };
    let bad = |why: String| format!("shard {} of node {}: {why}", record.name, record.node);
    let layout = ShardLayout::from_block(block).map_err(|e| bad(e.to_string()))?;
    if layout.content.to_string() != record.cid || layout.size != record.bytes {
        return Err(bad(format!(
            "its layout is of {} ({} bytes), not of {} ({} bytes)",
            layout.content, layout.size, record.cid, record.bytes
        )));
    }
    let rows: u64 = record.row_groups.iter().map(|g| g.rows).sum();
    if rows != record.rows {
        return Err(bad(format!(
            "its row groups hold {rows} rows, not {}",
            record.rows
        )));
    }
    let entry = ShardEntry {
        name: format!("{crawl}/{}", record.name),
        rows: record.rows,
        row_groups: record.row_groups.clone(),
        layout,
        degraded: None,
    };
    // The manifest's own checks (name, layout, row groups inside the shard), now rather than
    // when the crawl ends.
    Manifest {
        version: MANIFEST_VERSION,
        schema: None,
        shards: vec![entry.clone()],
        parent: None,
        created_ms: 0,
        metadata: BTreeMap::new(),
    }
    .validate()
    .map_err(|e| bad(e.to_string()))?;
    Ok(entry)
}

/// What a finished crawl hands to [`publish_crawl`].
#[derive(Debug, Clone)]
pub struct FinishedCrawl {
    /// The crawl's id.
    pub id: String,
    /// Its spec.
    pub spec: CrawlSpec,
    /// Its shard records.
    pub shards: Vec<ShardRecord>,
    /// Stored pages in no shard record.
    pub missing_rows: u64,
    /// Each node's validation score.
    pub validation: BTreeMap<String, Score>,
    /// What each node reported for the rows of its stored pages.
    pub pages: StoredPages,
    /// Pages dropped, by reason.
    pub dropped: BTreeMap<String, u64>,
}

/// Publishes a finished crawl from its shard records. Every shard is first fetched and its
/// rows checked against what its node reported ([`StoredPages::take_shard`]); shards that
/// fail are left out, named in the manifest's metadata with the reason. When the dataset's
/// latest version is already this crawl's (registered before a restart), that version is
/// returned instead of a second one.
pub async fn publish_crawl(
    publisher: &Publisher,
    crawl: &FinishedCrawl,
) -> Result<PublishedCrawl, String> {
    let session = &publisher.session;
    let spec = &crawl.spec;
    if let Some(done) = already_published(publisher, &crawl.id, &spec.name).await? {
        return Ok(done);
    }
    let mut validation = crawl.validation.clone();
    let (entries, refused) = checked_entries(publisher, crawl, &mut validation).await?;
    if entries.is_empty() {
        return Err(if refused.is_empty() {
            "the crawl stored no pages: there is nothing to publish".into()
        } else {
            format!("every shard of the crawl was refused: {refused:?}")
        });
    }
    let rows: u64 = entries.iter().map(|e| e.rows).sum();
    let mut metadata = BTreeMap::from([
        (CRAWL_KEY.to_string(), crawl.id.clone()),
        ("tessera.crawl.pages".to_string(), rows.to_string()),
        (
            "tessera.crawl.user_agent".to_string(),
            spec.user_agent.clone(),
        ),
    ]);
    if crawl.missing_rows > 0 {
        metadata.insert(
            "tessera.crawl.missing_pages".to_string(),
            crawl.missing_rows.to_string(),
        );
    }
    if !crawl.dropped.is_empty() {
        // Reasons are few short codes (the frontier bounds them).
        let json = serde_json::to_string(&crawl.dropped).unwrap_or_default();
        metadata.insert(DROPPED_KEY.to_string(), json);
    }
    if !refused.is_empty() {
        let mut json = serde_json::to_string(&refused).unwrap_or_default();
        if json.len() > MAX_METADATA_VALUE_BYTES {
            json = format!("{} shards", refused.len());
        }
        metadata.insert(REFUSED_KEY.to_string(), json);
    }
    // Each node's validation score, for anyone counting what nodes contributed; left out
    // (and said so) when the crawl had too many nodes for one metadata value.
    if !validation.is_empty() {
        match serde_json::to_string(&validation) {
            Ok(json) if json.len() <= MAX_METADATA_VALUE_BYTES => {
                metadata.insert(VALIDATION_KEY.to_string(), json);
            }
            _ => {
                metadata.insert(
                    format!("{VALIDATION_KEY}.omitted"),
                    format!("{} nodes", validation.len()),
                );
            }
        }
    }
    let version = StoredVersion {
        name: spec.name.clone(),
        message: format!("crawl {}: {rows} pages", crawl.id),
        shards: entries,
        schema: arrow_schema(&schema()),
        metadata,
    };
    let registered = publish_stored(session, version, &publisher.signer)
        .await
        .map_err(|e| e.to_string())?;
    Ok(PublishedCrawl {
        manifest: registered.manifest_cid.to_string(),
        version: registered.record.record.version,
    })
}

/// The manifest entries of the crawl's shards whose rows check out, and the reasons the
/// others were refused (per shard name). A refused shard counts against its node's score.
async fn checked_entries(
    publisher: &Publisher,
    crawl: &FinishedCrawl,
    validation: &mut BTreeMap<String, Score>,
) -> Result<(Vec<ShardEntry>, BTreeMap<String, String>), String> {
    let mut shards: Vec<(ShardEntry, &ShardRecord)> = crawl
        .shards
        .iter()
        .map(|s| shard_entry(&crawl.id, s).map(|e| (e, s)))
        .collect::<Result<_, _>>()?;
    shards.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let scratch = std::fs::create_dir_all(&publisher.scratch)
        .and_then(|()| tempfile::tempdir_in(&publisher.scratch))
        .map_err(|e| {
            format!(
                "a scratch directory in {}: {e}",
                publisher.scratch.display()
            )
        })?;
    let mut pages = crawl.pages.clone();
    let (mut kept, mut refused) = (Vec::new(), BTreeMap::new());
    for (i, (entry, record)) in shards.into_iter().enumerate() {
        let path = scratch.path().join(format!("shard-{i}.parquet"));
        // A shard that cannot be fetched now is tried again with the whole publish.
        fetch_shard(
            &publisher.session,
            &entry.layout,
            &path,
            &GetOptions::default(),
        )
        .await
        .map_err(|e| format!("fetching shard {} to check it: {e}", entry.name))?;
        let node = record.node.clone();
        let (back, checked) = blocking(move || {
            let mut pages = pages;
            let checked = read_checked(&path, &node, &mut pages);
            let _ = std::fs::remove_file(&path);
            Ok::<_, String>((pages, checked))
        })
        .await
        .map_err(|e| format!("checking shard {}: {e}", entry.name))?;
        pages = back;
        match checked {
            Ok(rows) if rows == entry.rows => kept.push(entry),
            Ok(rows) => {
                let why = format!("it holds {rows} rows, not the {} it claims", entry.rows);
                refuse(&entry, record, why, &mut refused, validation);
            }
            Err(why) => refuse(&entry, record, why, &mut refused, validation),
        }
    }
    Ok((kept, refused))
}

/// The rows of the Parquet file at `path`, checked as written by `node`.
fn read_checked(path: &Path, node: &str, pages: &mut StoredPages) -> Result<u64, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    // Shards come from the network: read with limits, a panic in the reader contained.
    contain(|| {
        let reader = open_checked(file, &ParquetLimits::default())?
            .build()
            .map_err(|e| e.to_string())?;
        pages.take_shard(node, reader.map(|b| b.map_err(|e| e.to_string())))
    })
}

fn refuse(
    entry: &ShardEntry,
    record: &ShardRecord,
    why: String,
    refused: &mut BTreeMap<String, String>,
    validation: &mut BTreeMap<String, Score>,
) {
    warn!(shard = %entry.name, node = %record.node, %why, "shard refused: its rows are not the pages its node reported");
    validation
        .entry(record.node.clone())
        .or_default()
        .shards_refused += 1;
    refused.insert(entry.name.clone(), format!("node {}: {why}", record.node));
}

/// The latest version of `name` by this publisher, when it came from `crawl`.
async fn already_published(
    publisher: &Publisher,
    crawl: &str,
    name: &str,
) -> Result<Option<PublishedCrawl>, String> {
    let session = &publisher.session;
    let me = publisher.signer.publisher.to_string();
    let entry = match remote::find(session, Some(&me), name, VersionSel::Latest, None).await {
        Ok(entry) => entry,
        Err(RemoteError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let cid = entry.record.record.manifest;
    let manifest = fetch_manifest(session, cid)
        .await
        .map_err(|e| e.to_string())?;
    Ok(
        (manifest.metadata.get(CRAWL_KEY).map(String::as_str) == Some(crawl)).then(|| {
            PublishedCrawl {
                manifest: cid.to_string(),
                version: entry.record.record.version,
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use tessera_formats::{
        address::raw_cid,
        erasure::{DEFAULT_STRIPE_SIZE, ErasureParams},
        layout::LAYOUT_VERSION,
        manifest::RowGroup,
    };

    use super::*;

    fn record() -> ShardRecord {
        let layout = ShardLayout {
            version: LAYOUT_VERSION,
            content: raw_cid(&[7u8; 5000]),
            size: 5000,
            erasure: ErasureParams::new(2, 1, DEFAULT_STRIPE_SIZE).unwrap(),
            pieces: (0u8..3).map(|i| raw_cid(&[i; 8])).collect(),
        };
        ShardRecord {
            name: "node-00000.parquet".into(),
            cid: layout.content.to_string(),
            rows: 10,
            bytes: 5000,
            node: "node".into(),
            row_groups: vec![
                RowGroup {
                    offset: 4,
                    size: 3000,
                    rows: 6,
                },
                RowGroup {
                    offset: 3004,
                    size: 1900,
                    rows: 4,
                },
            ],
            layout: Some(layout.to_block().unwrap().1),
        }
    }

    #[test]
    fn a_shard_record_becomes_an_entry_only_when_it_agrees_with_its_layout() {
        let good = record();
        let entry = shard_entry("c1", &good).unwrap();
        assert_eq!(entry.name, "c1/node-00000.parquet");
        assert_eq!(entry.rows, 10);

        let unstored = ShardRecord {
            layout: None,
            ..good.clone()
        };
        assert!(
            shard_entry("c1", &unstored)
                .unwrap_err()
                .contains("not stored")
        );
        let other_content = ShardRecord {
            cid: "bafkr4iother".into(),
            ..good.clone()
        };
        assert!(
            shard_entry("c1", &other_content)
                .unwrap_err()
                .contains("layout is of")
        );
        let wrong_rows = ShardRecord {
            rows: 11,
            ..good.clone()
        };
        assert!(shard_entry("c1", &wrong_rows).unwrap_err().contains("rows"));
        let outside = ShardRecord {
            row_groups: vec![RowGroup {
                offset: 4,
                size: 9000,
                rows: 10,
            }],
            ..good.clone()
        };
        assert!(shard_entry("c1", &outside).is_err());
        let garbage = ShardRecord {
            layout: Some(b"\xff\x00not a layout".to_vec()),
            ..good
        };
        assert!(shard_entry("c1", &garbage).is_err());
    }
}
