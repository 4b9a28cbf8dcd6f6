//! One RocksDB per node. Each role keeps its keys in a column family of its own (the piece
//! index in the default one, receipts, the registry's records...), so a node has one write-ahead
//! log, one set of background threads and one place on disk, and roles cannot see each other's
//! keys.
//!
//! ```text
//! Db::open(dir, [columns])   every column the roles name, and any the database already has
//! db.column(name) ─▶ Column  get · put · delete · iterate · batch, each synced or buffered
//! db.import(column, old)     a database a role once kept apart, copied in, then removed
//! ```

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

use rocksdb::{
    ColumnFamily, DB, DBIteratorWithThreadMode, DBPinnableSlice, IteratorMode, Options, WriteBatch,
    WriteOptions,
};
use tracing::info;

/// The column every database has; the piece index lives in it, as it did before columns.
pub const DEFAULT: &str = rocksdb::DEFAULT_COLUMN_FAMILY_NAME;

/// Keys copied per write while importing an older database.
const IMPORT_BATCH: usize = 1024;

/// Opening or importing a database failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// RocksDB failed.
    #[error("database {}: {source}", path.display())]
    Rocks {
        /// The database.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rocksdb::Error,
    },
    /// Another process (a node already running on this data directory) holds the database.
    #[error(
        "database {} is in use by another process, most likely a node already running on this \
         data directory: stop it, or give this node another --data-dir",
        path.display()
    )]
    InUse {
        /// The database.
        path: PathBuf,
    },
    /// A column that the database was not opened with.
    #[error("database {} has no column {name:?}", path.display())]
    NoColumn {
        /// The database.
        path: PathBuf,
        /// The column asked for.
        name: String,
    },
    /// An imported database could not be removed.
    #[error("removing {} after importing it: {source}", path.display())]
    Remove {
        /// The old database.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Whether a write waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The write-ahead log is synced before the write returns: it survives a power cut.
    Synced,
    /// The write survives the process crashing, not the machine.
    Buffered,
}

impl Durability {
    fn options(self) -> WriteOptions {
        let mut w = WriteOptions::default();
        w.set_sync(self == Durability::Synced);
        w
    }
}

/// A node's database.
#[derive(Clone)]
pub struct Db {
    db: Arc<DB>,
    path: PathBuf,
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish()
    }
}

impl Db {
    /// Opens (or creates) the database in `path` with the default column, `columns`, and every
    /// column it already has (RocksDB opens a database only with all of them).
    pub fn open(path: &Path, columns: &[&str]) -> Result<Self, DbError> {
        let rocks = |source| DbError::Rocks {
            path: path.to_path_buf(),
            source,
        };
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let mut names = if path.join("CURRENT").exists() {
            DB::list_cf(&opts, path).map_err(rocks)?
        } else {
            Vec::new()
        };
        for name in std::iter::once(&DEFAULT).chain(columns) {
            if !names.iter().any(|n| n == name) {
                names.push((*name).to_string());
            }
        }
        let db = DB::open_cf(&opts, path, &names).map_err(|source| {
            // RocksDB says so only in its message: "While lock file: …/LOCK: Resource
            // temporarily unavailable" (another process), "lock hold by current process"
            // (this one).
            if source.kind() == rocksdb::ErrorKind::IOError && source.to_string().contains("LOCK") {
                DbError::InUse {
                    path: path.to_path_buf(),
                }
            } else {
                rocks(source)
            }
        })?;
        Ok(Self {
            db: Arc::new(db),
            path: path.to_path_buf(),
        })
    }

    /// Where the database is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The column `name`, which the database was opened with.
    pub fn column(&self, name: &'static str) -> Result<Column, DbError> {
        if self.db.cf_handle(name).is_none() {
            return Err(DbError::NoColumn {
                path: self.path.clone(),
                name: name.to_string(),
            });
        }
        Ok(Column {
            db: self.db.clone(),
            name,
        })
    }

    /// Copies every key of the database in `old` into `column`, then removes `old`; returns how
    /// many keys it copied (0, and nothing done, when there is no database there). A crash
    /// part way leaves `old` in place, and importing it again writes the same keys again.
    pub fn import(&self, column: &Column, old: &Path) -> Result<u64, DbError> {
        if !old.join("CURRENT").exists() {
            return Ok(0);
        }
        let rocks = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DbError::Rocks { path, source }
        };
        let from = DB::open_for_read_only(&Options::default(), old, false).map_err(rocks(old))?;
        let mut batch = column.batch();
        let mut copied = 0u64;
        for item in from.iterator(IteratorMode::Start) {
            let (key, value) = item.map_err(rocks(old))?;
            batch.put(key, value);
            copied += 1;
            if batch.len() >= IMPORT_BATCH {
                let full = std::mem::replace(&mut batch, column.batch());
                column
                    .write(full, Durability::Buffered)
                    .map_err(rocks(&self.path))?;
            }
        }
        // The last write syncs the log, and with it every write before it.
        column
            .write(batch, Durability::Synced)
            .map_err(rocks(&self.path))?;
        drop(from);
        std::fs::remove_dir_all(old).map_err(|source| DbError::Remove {
            path: old.to_path_buf(),
            source,
        })?;
        info!(from = %old.display(), into = column.name, keys = copied, "imported an older database");
        Ok(copied)
    }
}

/// One column of a node's database: the keys of one role.
#[derive(Clone)]
pub struct Column {
    db: Arc<DB>,
    name: &'static str,
}

impl fmt::Debug for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Column").field("name", &self.name).finish()
    }
}

/// An iterator over a column's keys and values.
pub type ColumnIter<'a> = DBIteratorWithThreadMode<'a, DB>;

impl Column {
    fn cf(&self) -> &ColumnFamily {
        #[allow(clippy::expect_used)]
        self.db
            .cf_handle(self.name)
            .expect("a column is made only for a column family the database was opened with, and none is ever dropped")
    }

    /// The value of `key`.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, rocksdb::Error> {
        self.db.get_cf(self.cf(), key)
    }

    /// The value of `key`, without copying it out of RocksDB's cache.
    pub fn get_pinned(
        &self,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<DBPinnableSlice<'_>>, rocksdb::Error> {
        self.db.get_pinned_cf(self.cf(), key)
    }

    /// Sets `key` to `value`.
    pub fn put(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        durability: Durability,
    ) -> Result<(), rocksdb::Error> {
        self.db
            .put_cf_opt(self.cf(), key, value, &durability.options())
    }

    /// Removes `key`.
    pub fn delete(
        &self,
        key: impl AsRef<[u8]>,
        durability: Durability,
    ) -> Result<(), rocksdb::Error> {
        self.db.delete_cf_opt(self.cf(), key, &durability.options())
    }

    /// The column's keys from `mode` on.
    pub fn iterator(&self, mode: IteratorMode<'_>) -> ColumnIter<'_> {
        self.db.iterator_cf(self.cf(), mode)
    }

    /// The column's keys from `prefix` on, in order (the caller stops where the prefix ends:
    /// there is no prefix extractor).
    pub fn prefix_iterator(&self, prefix: impl AsRef<[u8]>) -> ColumnIter<'_> {
        self.db.prefix_iterator_cf(self.cf(), prefix)
    }

    /// An empty batch of writes to this column.
    pub fn batch(&self) -> Batch {
        Batch {
            batch: WriteBatch::default(),
            column: self.clone(),
        }
    }

    /// Applies `batch` at once: all its writes or none.
    pub fn write(&self, batch: Batch, durability: Durability) -> Result<(), rocksdb::Error> {
        self.db.write_opt(batch.batch, &durability.options())
    }
}

/// Writes to one column, applied together by [`Column::write`].
pub struct Batch {
    batch: WriteBatch,
    column: Column,
}

impl fmt::Debug for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("column", &self.column.name)
            .field("len", &self.batch.len())
            .finish()
    }
}

impl Batch {
    /// Sets `key` to `value`.
    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.batch.put_cf(self.column.cf(), key, value);
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: impl AsRef<[u8]>) {
        self.batch.delete_cf(self.column.cf(), key);
    }

    /// Writes in the batch.
    pub fn len(&self) -> usize {
        self.batch.len()
    }

    /// Whether the batch holds no write.
    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_in_use_says_so_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let _held = Db::open(&path, &["a"]).unwrap();
        let second = Db::open(&path, &["a"]).map(|_| ()).unwrap_err();
        assert!(matches!(second, DbError::InUse { .. }), "{second:?}");
        let said = tessera_formats::report::message(&second);
        assert!(said.contains("in use by another process"), "{said}");
        assert_eq!(said.matches("LOCK").count(), 0, "{said}");
    }

    #[test]
    fn columns_keep_their_keys_apart_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let db = Db::open(&path, &["a", "b"]).unwrap();
            let (a, b) = (db.column("a").unwrap(), db.column("b").unwrap());
            a.put(b"k", b"in a", Durability::Synced).unwrap();
            let mut batch = b.batch();
            batch.put(b"k", b"in b");
            batch.put(b"j", b"also b");
            b.write(batch, Durability::Synced).unwrap();
            assert!(db.column("c").is_err());
        }
        // Opened again by a node whose roles name only `a`: `b` is still there.
        let db = Db::open(&path, &["a"]).unwrap();
        let (a, b) = (db.column("a").unwrap(), db.column("b").unwrap());
        assert_eq!(a.get(b"k").unwrap().as_deref(), Some(&b"in a"[..]));
        assert_eq!(b.get(b"k").unwrap().as_deref(), Some(&b"in b"[..]));
        let keys: Vec<_> = b
            .iterator(IteratorMode::Start)
            .map(|item| item.unwrap().0.to_vec())
            .collect();
        assert_eq!(keys, vec![b"j".to_vec(), b"k".to_vec()]);
        assert_eq!(db.column(DEFAULT).unwrap().get(b"k").unwrap(), None);
    }

    #[test]
    fn an_older_database_is_imported_once_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("receipts");
        {
            let mut opts = Options::default();
            opts.create_if_missing(true);
            let old_db = DB::open(&opts, &old).unwrap();
            for i in 0..3000u32 {
                old_db.put(i.to_be_bytes(), i.to_le_bytes()).unwrap();
            }
        }
        let db = Db::open(&dir.path().join("db"), &["receipts"]).unwrap();
        let column = db.column("receipts").unwrap();
        assert_eq!(db.import(&column, &old).unwrap(), 3000);
        assert!(!old.exists());
        assert_eq!(
            column.get(2999u32.to_be_bytes()).unwrap(),
            Some(2999u32.to_le_bytes().to_vec())
        );
        // Nothing left to import.
        assert_eq!(db.import(&column, &old).unwrap(), 0);
    }
}
