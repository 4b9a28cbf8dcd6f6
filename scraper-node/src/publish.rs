//! A finished crawl becomes a dataset version: its shards, already stored in the network by
//! the nodes that wrote them, are listed in a manifest that the coordinator stores, signs and
//! registers as the next version of the crawl's dataset name.
//!
//! ```text
//! shard records (name, CID, rows, row groups, layout block) ─▶ checked as they arrive
//! crawl done ─▶ latest version already this crawl's? keep it (a restart after registering)
//!            ─▶ manifest {crawl}/{shard} entries, provenance schema, metadata
//!            ─▶ stored on max(m) + 2 nodes ─▶ record signed, submitted ─▶ Published
//! ```

use std::collections::BTreeMap;
use tessera_dataset::{
    StoredVersion, fetch::fetch_manifest, publish::arrow_schema, publish_stored,
};

use tessera_client::Session;
use tessera_dataset_registry::remote::{self, RemoteError};
use tessera_formats::{
    Manifest, PublisherKey, ShardLayout, VersionSel,
    manifest::{MANIFEST_VERSION, MAX_METADATA_VALUE_BYTES, ShardEntry},
    record::SigningKey,
};

use crate::{crawl_store::ShardRecord, provenance::schema, spec::CrawlSpec, validation::Score};

/// The manifest metadata key that names the crawl a version came from.
pub const CRAWL_KEY: &str = "tessera.crawl";
/// The manifest metadata key of each scraper node's validation score (JSON: peer id to
/// [`Score`]).
pub const VALIDATION_KEY: &str = "tessera.crawl.validation";

/// What a coordinator publishes finished crawls with: a session on the storage network and
/// the publisher key that signs the versions.
#[derive(Debug)]
pub struct Publisher {
    /// The storage network.
    pub session: Session,
    /// The publisher key.
    pub key: SigningKey,
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

/// Publishes crawl `crawl` from its shard records. When the dataset's latest version is
/// already this crawl's (registered before a restart), that version is returned instead of
/// a second one.
pub async fn publish_crawl(
    publisher: &Publisher,
    crawl: &str,
    spec: &CrawlSpec,
    shards: &[ShardRecord],
    missing_rows: u64,
    validation: &BTreeMap<String, Score>,
) -> Result<PublishedCrawl, String> {
    let session = &publisher.session;
    if let Some(done) = already_published(publisher, crawl, &spec.name).await? {
        return Ok(done);
    }
    let mut entries = shards
        .iter()
        .map(|s| shard_entry(crawl, s))
        .collect::<Result<Vec<_>, _>>()?;
    if entries.is_empty() {
        return Err("the crawl stored no pages: there is nothing to publish".into());
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let rows: u64 = entries.iter().map(|e| e.rows).sum();
    let mut metadata = BTreeMap::from([
        (CRAWL_KEY.to_string(), crawl.to_string()),
        ("tessera.crawl.pages".to_string(), rows.to_string()),
        (
            "tessera.crawl.user_agent".to_string(),
            spec.user_agent.clone(),
        ),
    ]);
    if missing_rows > 0 {
        metadata.insert(
            "tessera.crawl.missing_pages".to_string(),
            missing_rows.to_string(),
        );
    }
    // Each node's validation score, for anyone counting what nodes contributed; left out
    // (and said so) when the crawl had too many nodes for one metadata value.
    if !validation.is_empty() {
        match serde_json::to_string(validation) {
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
        message: format!("crawl {crawl}: {rows} pages"),
        shards: entries,
        schema: arrow_schema(&schema()),
        metadata,
    };
    let registered = publish_stored(session, version, &publisher.key)
        .await
        .map_err(|e| e.to_string())?;
    Ok(PublishedCrawl {
        manifest: registered.manifest_cid.to_string(),
        version: registered.record.record.version,
    })
}

/// The latest version of `name` by this publisher, when it came from `crawl`.
async fn already_published(
    publisher: &Publisher,
    crawl: &str,
    name: &str,
) -> Result<Option<PublishedCrawl>, String> {
    let session = &publisher.session;
    let me = PublisherKey::of(&publisher.key).to_string();
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
