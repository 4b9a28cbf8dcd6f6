//! Dataset-version manifests.
//!
//! A manifest describes one version of a dataset: its Arrow schema, its shards (one Parquet
//! file each) with their sizes, row counts, row groups and storage layouts, the version it
//! derives from, when it was made and free-form metadata. It is a canonical DAG-CBOR block, so
//! the same manifest always has the same CID; that CID is the dataset version's name.

use std::collections::{BTreeMap, BTreeSet};

use cid::Cid;
use serde::{Deserialize, Serialize};

use crate::{
    address::{DAG_CBOR, HashFn},
    block::{self, BlockError},
    layout::{LayoutError, ShardLayout},
};

/// The manifest format version this code writes and reads.
pub const MANIFEST_VERSION: u64 = 1;
/// Largest manifest block, checked before parsing.
pub const MAX_MANIFEST_BYTES: usize = 32 * 1024 * 1024;
/// Most shards in one dataset version.
pub const MAX_SHARDS: usize = 100_000;
/// Most row groups recorded for one shard.
pub const MAX_ROW_GROUPS: usize = 65_536;
/// Longest shard name (a relative path), in bytes.
pub const MAX_NAME_BYTES: usize = 1024;
/// Largest serialized schema.
pub const MAX_SCHEMA_BYTES: usize = 1024 * 1024;
/// Most metadata entries.
pub const MAX_METADATA_ENTRIES: usize = 256;
/// Longest metadata key.
pub const MAX_METADATA_KEY_BYTES: usize = 256;
/// Longest metadata value.
pub const MAX_METADATA_VALUE_BYTES: usize = 64 * 1024;

/// A manifest that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The block is malformed (size, types, unknown fields, trailing bytes, non-canonical).
    #[error(transparent)]
    Block(#[from] BlockError),
    /// A manifest version this code does not know.
    #[error("manifest version {found}; this build reads version {MANIFEST_VERSION}")]
    Version {
        /// The version found.
        found: u64,
    },
    /// A field breaks a limit or a rule.
    #[error("{field}: {reason}")]
    Invalid {
        /// Which field, with the shard's position where it applies.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A shard's layout is unusable.
    #[error("shard {index} ({name}): {source}")]
    Layout {
        /// The shard's position.
        index: usize,
        /// The shard's name.
        name: String,
        /// What is wrong.
        source: LayoutError,
    },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ManifestError {
    ManifestError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A dataset's schema, serialized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schema {
    /// How `bytes` is encoded; `"arrow-ipc"` is an Arrow IPC schema message.
    pub format: String,
    /// The serialized schema.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// One row group of a Parquet shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowGroup {
    /// Byte offset of the row group's first column chunk in the shard.
    pub offset: u64,
    /// Compressed bytes of the row group.
    pub size: u64,
    /// Rows in the row group.
    pub rows: u64,
}

/// One shard of a dataset version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardEntry {
    /// The shard's relative path in the dataset (for example `part-0001.parquet`).
    pub name: String,
    /// Rows in the shard.
    pub rows: u64,
    /// The shard's row groups, in file order.
    pub row_groups: Vec<RowGroup>,
    /// How the shard is stored: its CID, size, erasure parameters and piece CIDs.
    pub layout: ShardLayout,
    /// The node losses the shard survived when it was stored, where that was fewer than its
    /// parity pieces (too few distinct nodes for every piece to have its own). Absent when
    /// each piece had its own node. Auditors find such clustered pieces themselves and move
    /// them once the network has room; this says so to every reader from the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<u8>,
}

/// One version of a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Manifest format version ([`MANIFEST_VERSION`]).
    pub version: u64,
    /// The schema every shard shares, if the dataset has one.
    pub schema: Option<Schema>,
    /// The shards.
    pub shards: Vec<ShardEntry>,
    /// CID of the manifest of the version this one derives from.
    pub parent: Option<Cid>,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// Free-form metadata (license, source, description...).
    pub metadata: BTreeMap<String, String>,
}

impl Manifest {
    /// Total bytes of all shards.
    pub fn total_bytes(&self) -> u64 {
        self.shards.iter().map(|s| s.layout.size).sum()
    }

    /// Total rows of all shards.
    pub fn total_rows(&self) -> u64 {
        self.shards.iter().map(|s| s.rows).sum()
    }

    /// Checks every rule and limit.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.version != MANIFEST_VERSION {
            return Err(ManifestError::Version {
                found: self.version,
            });
        }
        if let Some(schema) = &self.schema {
            check_len("schema.format", schema.format.len(), 64)?;
            check_len("schema.bytes", schema.bytes.len(), MAX_SCHEMA_BYTES)?;
        }
        if self.shards.len() > MAX_SHARDS {
            return Err(invalid(
                "shards",
                format!("{} shards; at most {MAX_SHARDS}", self.shards.len()),
            ));
        }
        let mut names = BTreeSet::new();
        for (index, shard) in self.shards.iter().enumerate() {
            let field = |f: &str| format!("shards[{index}].{f}");
            check_name(&field("name"), &shard.name)?;
            if !names.insert(shard.name.as_str()) {
                return Err(invalid(
                    field("name"),
                    format!("{:?} appears twice", shard.name),
                ));
            }
            shard
                .layout
                .validate()
                .map_err(|source| ManifestError::Layout {
                    index,
                    name: shard.name.clone(),
                    source,
                })?;
            check_row_groups(&field("row_groups"), shard)?;
        }
        if let Some(parent) = &self.parent {
            HashFn::of(parent).map_err(|e| invalid("parent", e.to_string()))?;
            if parent.codec() != DAG_CBOR {
                return Err(invalid("parent", "a parent manifest is a DAG-CBOR block"));
            }
        }
        if self.metadata.len() > MAX_METADATA_ENTRIES {
            return Err(invalid(
                "metadata",
                format!(
                    "{} entries; at most {MAX_METADATA_ENTRIES}",
                    self.metadata.len()
                ),
            ));
        }
        for (key, value) in &self.metadata {
            check_len("metadata key", key.len(), MAX_METADATA_KEY_BYTES)?;
            check_len(
                &format!("metadata[{key}]"),
                value.len(),
                MAX_METADATA_VALUE_BYTES,
            )?;
        }
        Ok(())
    }

    /// Encodes the manifest as a DAG-CBOR block; returns its CID and bytes.
    pub fn to_block(&self) -> Result<(Cid, Vec<u8>), ManifestError> {
        self.validate()?;
        let (cid, bytes) = block::encode_with_cid(self)?;
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(BlockError::TooLarge {
                len: bytes.len(),
                max: MAX_MANIFEST_BYTES,
            }
            .into());
        }
        Ok((cid, bytes))
    }

    /// Decodes and validates a manifest block.
    pub fn from_block(bytes: &[u8]) -> Result<Self, ManifestError> {
        let manifest: Self = block::decode(bytes, MAX_MANIFEST_BYTES)?;
        manifest.validate()?;
        Ok(manifest)
    }
}

fn check_len(field: &str, len: usize, max: usize) -> Result<(), ManifestError> {
    if len > max {
        Err(invalid(field, format!("{len} bytes; at most {max}")))
    } else {
        Ok(())
    }
}

/// Shard names become file paths when a dataset is fetched: relative, no `..`, no surprises.
fn check_name(field: &str, name: &str) -> Result<(), ManifestError> {
    check_len(field, name.len(), MAX_NAME_BYTES)?;
    if name.is_empty() {
        return Err(invalid(field, "empty"));
    }
    if name.starts_with('/') || name.contains('\\') || name.contains('\0') {
        return Err(invalid(field, format!("{name:?} is not a relative path")));
    }
    if name
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(invalid(
            field,
            format!("{name:?} has an empty, '.' or '..' component"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(field, format!("{name:?} has control characters")));
    }
    Ok(())
}

fn check_row_groups(field: &str, shard: &ShardEntry) -> Result<(), ManifestError> {
    if shard.row_groups.len() > MAX_ROW_GROUPS {
        return Err(invalid(
            field,
            format!(
                "{} row groups; at most {MAX_ROW_GROUPS}",
                shard.row_groups.len()
            ),
        ));
    }
    let mut rows = 0u64;
    let mut end = 0u64;
    for (i, rg) in shard.row_groups.iter().enumerate() {
        let rg_end = rg
            .offset
            .checked_add(rg.size)
            .filter(|&e| e <= shard.layout.size)
            .ok_or_else(|| invalid(format!("{field}[{i}]"), "extends past the end of the shard"))?;
        if rg.offset < end {
            return Err(invalid(
                format!("{field}[{i}]"),
                "overlaps the row group before it",
            ));
        }
        end = rg_end;
        rows = rows
            .checked_add(rg.rows)
            .ok_or_else(|| invalid(field, "row count overflows"))?;
    }
    if !shard.row_groups.is_empty() && rows != shard.rows {
        return Err(invalid(
            field,
            format!("row groups hold {rows} rows; the shard says {}", shard.rows),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::erasure::{ErasureParams, encode_to_vecs};

    pub(crate) fn manifest() -> Manifest {
        let params = ErasureParams::new(4, 2, 1024).unwrap();
        let shard = |name: &str, data: &[u8]| ShardEntry {
            name: name.into(),
            rows: 30,
            row_groups: vec![
                RowGroup {
                    offset: 4,
                    size: 10,
                    rows: 10,
                },
                RowGroup {
                    offset: 14,
                    size: 10,
                    rows: 20,
                },
            ],
            layout: encode_to_vecs(params, data).unwrap().0,
            degraded: None,
        };
        Manifest {
            version: MANIFEST_VERSION,
            schema: Some(Schema {
                format: "arrow-ipc".into(),
                bytes: vec![1, 2, 3],
            }),
            shards: vec![
                shard("part-0.parquet", &[7u8; 3000]),
                shard("dir/part-1.parquet", &[9u8; 5000]),
            ],
            parent: Some(crate::address::dag_cbor_cid(b"parent")),
            created_ms: 1_790_000_000_000,
            metadata: [
                ("license".to_string(), "CC-BY-4.0".to_string()),
                ("source".to_string(), "test".to_string()),
            ]
            .into(),
        }
    }

    #[test]
    fn round_trips_and_has_one_cid() {
        let m = manifest();
        let (cid, bytes) = m.to_block().unwrap();
        assert_eq!(Manifest::from_block(&bytes).unwrap(), m);
        assert_eq!(m.clone().to_block().unwrap(), (cid, bytes.clone()));
        assert_eq!(m.total_rows(), 60);
        assert_eq!(m.total_bytes(), 8000);
        // A shard stored on too few nodes says so; one that was not carries no field at all,
        // so manifests from before the field keep their CIDs.
        assert!(!bytes.windows(8).any(|w| w == b"degraded"));
        let mut degraded = m.clone();
        degraded.shards[1].degraded = Some(0);
        let (other, bytes) = degraded.to_block().unwrap();
        assert_ne!(other, cid);
        assert_eq!(
            Manifest::from_block(&bytes).unwrap().shards[1].degraded,
            Some(0)
        );
    }

    #[test]
    fn rules_are_enforced() {
        type Mutation = fn(&mut Manifest);
        let cases: Vec<(Mutation, &str)> = vec![
            (|m| m.version = 2, "version"),
            (|m| m.shards[0].name = "../etc/passwd".into(), ".."),
            (|m| m.shards[0].name = "/abs".into(), "relative"),
            (|m| m.shards[0].name = String::new(), "empty"),
            (|m| m.shards[1].name = m.shards[0].name.clone(), "twice"),
            (
                |m| m.shards[0].name = "a".repeat(MAX_NAME_BYTES + 1),
                "at most",
            ),
            (|m| m.shards[0].row_groups[1].size = 1 << 40, "past the end"),
            (|m| m.shards[0].row_groups[1].offset = 5, "overlaps"),
            (|m| m.shards[0].rows = 31, "row groups hold"),
            (|m| m.shards[0].layout.pieces.truncate(3), "piece CIDs"),
            (|m| m.parent = Some(crate::address::raw_cid(b"x")), "parent"),
            (
                |m| {
                    m.metadata
                        .insert("k".into(), "v".repeat(MAX_METADATA_VALUE_BYTES + 1));
                },
                "metadata",
            ),
        ];
        for (mutate, needle) in cases {
            let mut m = manifest();
            mutate(&mut m);
            let err = m.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} should mention {needle:?}");
            assert!(m.to_block().is_err());
        }
    }

    #[test]
    fn invalid_manifest_bytes_are_refused_even_when_well_formed() {
        // Encode a manifest that breaks a rule without going through `to_block`.
        let mut m = manifest();
        m.shards[0].name = "../x".into();
        let bytes = block::encode(&m).unwrap();
        assert!(matches!(
            Manifest::from_block(&bytes),
            Err(ManifestError::Invalid { .. })
        ));
    }

    #[test]
    fn garbage_never_panics() {
        let (_, bytes) = manifest().to_block().unwrap();
        for cut in 0..bytes.len() {
            assert!(Manifest::from_block(&bytes[..cut]).is_err());
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            // Either refused, or (for a flip inside a string or digest) a different valid
            // manifest: never a panic.
            let _ = Manifest::from_block(&b);
        }
    }
}
