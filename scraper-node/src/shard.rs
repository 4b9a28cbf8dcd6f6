//! Rows into Parquet shards that roll at a size: the scraper node's output.
//!
//! ```text
//! push(row) ─▶ builder (at most WRITE_ROWS rows or WRITE_BYTES of text)
//!           ─▶ encoded into the open row group (closed at GROUP_ROWS rows or GROUP_BYTES)
//!           ─▶ file over the target size? close it:
//!              NAME.parquet.partial ─fsync, rename─▶ NAME.parquet ─▶ Finished
//! ```
//!
//! Memory holds a small batch of rows and one row group, encoded and compressed, never a
//! whole shard, and no page bodies at all.

use std::{
    fs::File,
    path::{Path, PathBuf},
};

use parquet::{
    arrow::ArrowWriter,
    basic::{Compression, ZstdLevel},
    errors::ParquetError,
    file::properties::WriterProperties,
    schema::types::ColumnPath,
};

use crate::provenance::{Row, RowBuilder, schema};

/// Rows gathered before they are encoded into the open row group: rows wait as Arrow
/// arrays only briefly, the row group holds them compressed.
const WRITE_ROWS: usize = 128;
/// Bytes of rows gathered before they are encoded.
const WRITE_BYTES: usize = 1024 * 1024;
/// Rows in a row group at most: a reader's unit of seeking and verifying.
const GROUP_ROWS: usize = 1024;
/// Bytes of rows in a row group at most, as [`RowBuilder::bytes`] counts them.
const GROUP_BYTES: usize = 8 * 1024 * 1024;
/// Columns whose values repeat from row to row: dictionary encoded. The others (the text,
/// URLs, hashes, signatures) are nearly all distinct, and building a dictionary of them
/// only spends time and memory before Parquet falls back to plain encoding.
const REPEATING: [&str; 6] = [
    "dump",
    "file_path",
    "language",
    "content_type",
    "scraper",
    "http_status",
];

/// A shard written and closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// Its file.
    pub path: PathBuf,
    /// Its name, as the rows' `file_path` column has it.
    pub name: String,
    /// Rows in it.
    pub rows: u64,
    /// Its size in bytes.
    pub bytes: u64,
}

/// Writing a shard failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    /// The file system.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// Parquet or Arrow.
    #[error("writing Parquet: {0}")]
    Parquet(#[from] ParquetError),
    /// Arrow.
    #[error("building rows: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

struct Open {
    name: String,
    partial: PathBuf,
    writer: ArrowWriter<File>,
    rows: u64,
    /// Rows and bytes in the row group being written.
    group_rows: usize,
    group_bytes: usize,
}

/// Writes rows into shards named `PREFIX-NNNNN.parquet` in a directory, each closed once it
/// passes the target size.
pub struct ShardWriter {
    dir: PathBuf,
    prefix: String,
    target: u64,
    next: u32,
    open: Option<Open>,
    builder: RowBuilder,
}

impl std::fmt::Debug for ShardWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardWriter")
            .field("dir", &self.dir)
            .field("prefix", &self.prefix)
            .field("target", &self.target)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl ShardWriter {
    /// A writer into `dir`, starting at shard number `first`, rolling past `target` bytes.
    pub fn new(dir: &Path, prefix: &str, target: u64, first: u32) -> Self {
        Self {
            dir: dir.to_path_buf(),
            prefix: prefix.to_string(),
            target: target.max(1),
            next: first,
            open: None,
            builder: RowBuilder::default(),
        }
    }

    /// The name of the shard the next row goes into, for its `file_path` column.
    pub fn current_name(&self) -> String {
        match &self.open {
            Some(open) => open.name.clone(),
            None => self.name(self.next),
        }
    }

    /// The number the next shard it opens gets: where a later writer of the same prefix
    /// starts, so that no name is used twice.
    pub fn next_index(&self) -> u32 {
        self.next
    }

    fn name(&self, index: u32) -> String {
        format!("{}-{index:05}.parquet", self.prefix)
    }

    /// Adds a row; returns the shard it closed, if it closed one.
    pub fn push(&mut self, row: &Row) -> Result<Option<Finished>, ShardError> {
        self.builder.push(row)?;
        if self.builder.len() < WRITE_ROWS && self.builder.bytes() < WRITE_BYTES {
            return Ok(None);
        }
        self.write_batch()?;
        let open = self.open.as_ref();
        let size = open.map_or(0, |o| {
            o.writer.bytes_written() + o.writer.in_progress_size()
        });
        if size as u64 >= self.target {
            return self.close();
        }
        Ok(None)
    }

    /// Writes what is gathered and closes the open shard, if any. A row pushed after it
    /// opens the next shard.
    pub fn finish(&mut self) -> Result<Option<Finished>, ShardError> {
        self.write_batch()?;
        self.close()
    }

    fn write_batch(&mut self) -> Result<(), ShardError> {
        if self.builder.is_empty() {
            return Ok(());
        }
        let bytes = self.builder.bytes();
        let batch = self.builder.finish()?;
        if self.open.is_none() {
            self.open = Some(self.create()?);
        }
        if let Some(open) = self.open.as_mut() {
            open.writer.write(&batch)?;
            let rows = batch.num_rows();
            open.rows += rows as u64;
            open.group_rows += rows;
            open.group_bytes += bytes;
            if open.group_rows >= GROUP_ROWS || open.group_bytes >= GROUP_BYTES {
                open.writer.flush()?;
                open.group_rows = 0;
                open.group_bytes = 0;
            }
        }
        Ok(())
    }

    fn create(&mut self) -> Result<Open, ShardError> {
        let name = self.name(self.next);
        self.next += 1;
        let partial = self.dir.join(format!("{name}.partial"));
        let file = File::create(&partial).map_err(|source| ShardError::Io {
            what: format!("creating {}", partial.display()),
            source,
        })?;
        let repeating = REPEATING.iter().fold(
            WriterProperties::builder().set_dictionary_enabled(false),
            |props, column| props.set_column_dictionary_enabled(ColumnPath::from(*column), true),
        );
        let props = repeating
            .set_max_row_group_row_count(Some(GROUP_ROWS))
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_created_by(concat!("tessera-scraper-node ", env!("CARGO_PKG_VERSION")).into())
            .build();
        let writer = ArrowWriter::try_new(file, schema(), Some(props))?;
        Ok(Open {
            name,
            partial,
            writer,
            rows: 0,
            group_rows: 0,
            group_bytes: 0,
        })
    }

    fn close(&mut self) -> Result<Option<Finished>, ShardError> {
        let Some(open) = self.open.take() else {
            return Ok(None);
        };
        let file = open.writer.into_inner()?;
        let io = |what: String| move |source| ShardError::Io { what, source };
        file.sync_all()
            .map_err(io(format!("syncing {}", open.partial.display())))?;
        let path = self.dir.join(&open.name);
        std::fs::rename(&open.partial, &path).map_err(io(format!("naming {}", path.display())))?;
        let bytes = std::fs::metadata(&path)
            .map_err(io(format!("reading {}", path.display())))?
            .len();
        Ok(Some(Finished {
            path,
            name: open.name,
            rows: open.rows,
            bytes,
        }))
    }
}

#[cfg(test)]
mod tests {
    use libp2p::identity::Keypair;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    use super::*;
    use crate::provenance::{sign, verify_batch};

    fn row(key: &Keypair, i: usize, file_path: String) -> Row {
        let url = format!("http://example.com/{i}");
        let text = format!("page {i} ").repeat(200);
        let body = *blake3::hash(url.as_bytes()).as_bytes();
        Row {
            signature: sign(key, &url, 7, &body, &text).unwrap(),
            text,
            id: format!("<urn:uuid:{i}>"),
            dump: "crawl".into(),
            url,
            date: "2025-01-01T00:00:00Z".into(),
            file_path,
            language: "en".into(),
            language_score: 1.0,
            token_count: 400,
            fetch_time_us: 7,
            http_status: 200,
            content_type: "text/html".into(),
            body_blake3: body,
            scraper: key.public().to_peer_id(),
        }
    }

    #[test]
    fn shards_roll_at_the_target_and_read_back_verified() {
        let dir = tempfile::tempdir().unwrap();
        let key = Keypair::generate_ed25519();
        let mut writer = ShardWriter::new(dir.path(), "node", 64 * 1024, 0);
        let mut done = Vec::new();
        for i in 0..3000 {
            let name = writer.current_name();
            if let Some(f) = writer.push(&row(&key, i, name)).unwrap() {
                done.push(f);
            }
        }
        done.extend(writer.finish().unwrap());
        assert!(done.len() >= 2, "{done:?}");
        assert_eq!(done.iter().map(|f| f.rows).sum::<u64>(), 3000);
        assert_eq!(done[0].name, "node-00000.parquet");

        let mut seen = 0;
        for f in &done {
            let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&f.path).unwrap())
                .unwrap()
                .build()
                .unwrap();
            for batch in reader {
                let batch = batch.unwrap();
                assert_eq!(batch.schema(), schema());
                assert!(verify_batch(&batch).unwrap().is_empty());
                let paths = batch
                    .column_by_name("file_path")
                    .unwrap()
                    .as_any()
                    .downcast_ref::<arrow::array::StringArray>()
                    .unwrap();
                assert!(paths.iter().all(|p| p == Some(f.name.as_str())));
                seen += batch.num_rows();
            }
        }
        assert_eq!(seen, 3000);
        // No partial files are left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| n.ends_with(".parquet")), "{names:?}");
    }

    #[test]
    fn row_groups_gather_several_writes_and_only_repeating_columns_get_dictionaries() {
        let dir = tempfile::tempdir().unwrap();
        let key = Keypair::generate_ed25519();
        let mut writer = ShardWriter::new(dir.path(), "node", 1 << 30, 0);
        let rows = GROUP_ROWS + 300;
        for i in 0..rows {
            let name = writer.current_name();
            assert!(writer.push(&row(&key, i, name)).unwrap().is_none());
        }
        let shard = writer.finish().unwrap().unwrap();
        let reader = SerializedFileReader::new(File::open(&shard.path).unwrap()).unwrap();
        let groups: Vec<i64> = reader
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows())
            .collect();
        // Written WRITE_ROWS at a time, grouped GROUP_ROWS at a time.
        const { assert!(WRITE_ROWS < GROUP_ROWS) };
        assert_eq!(groups, [1024, 300]);
        let group = reader.metadata().row_group(0);
        for column in group.columns() {
            let name = column.column_path().string();
            let dictionary = column.dictionary_page_offset().is_some();
            assert_eq!(dictionary, REPEATING.contains(&name.as_str()), "{name}");
        }
    }
}
