//! Parquet from the network, read with limits: a file is checked before the parquet crate
//! decodes any of it, and a panic inside that crate is contained.
//!
//! ```text
//! file ─▶ footer length ≤ limit ─▶ footer walked (Thrift, depth-bounded): schema nesting and
//!         column count ≤ limits ─▶ the parquet crate reads the footer
//!      ─▶ every page header of every column chunk: decompressed size, values, within its chunk
//!         (snappy's own length too) ─▶ each row group's decompressed total ≤ limit
//!      ─▶ decoding, under catch_unwind
//! ```
//!
//! A Parquet bomb (a small page that claims, or decompresses to, gigabytes) is refused from
//! its headers; the parquet crate sizes its buffers from them, and builds the schema tree
//! recursively, so both are bounded before it sees the file.

use std::{
    fs::File,
    io::{BufReader, Read, Seek, SeekFrom},
    panic::{AssertUnwindSafe, catch_unwind},
};

use parquet::{
    arrow::arrow_reader::ParquetRecordBatchReaderBuilder,
    basic::Compression,
    file::metadata::{ColumnChunkMetaData, ParquetMetaData},
};

/// How much of a Parquet file from the network may cost to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParquetLimits {
    /// Largest footer (the file's metadata).
    pub max_footer: u64,
    /// Most leaf columns.
    pub max_columns: usize,
    /// Deepest nesting of the schema (groups, lists, maps).
    pub max_nesting: usize,
    /// Largest page, decompressed.
    pub max_page: u64,
    /// Most values (levels) in one page.
    pub max_page_values: u64,
    /// Largest row group, all its pages decompressed.
    pub max_row_group: u64,
}

impl Default for ParquetLimits {
    fn default() -> Self {
        Self {
            max_footer: 64 << 20,
            max_columns: 10_000,
            max_nesting: 32,
            max_page: 256 << 20,
            max_page_values: 16 << 20,
            max_row_group: 4 << 30,
        }
    }
}

/// Deepest Thrift nesting walked; the parquet format nests a few levels.
const MAX_THRIFT_DEPTH: usize = 16;
/// Most bytes of one page header read (its statistics are the large part).
const MAX_PAGE_HEADER: u64 = 1 << 20;

/// Opens an untrusted Parquet file for reading once it passes every check: the footer, then
/// the parquet crate's reading of it (a panic there contained), then every page header.
pub fn open_checked(
    mut file: File,
    limits: &ParquetLimits,
) -> Result<ParquetRecordBatchReaderBuilder<File>, String> {
    let size = file.metadata().map_err(|e| e.to_string())?.len();
    check_footer(&mut file, size, limits)?;
    let pages = file.try_clone().map_err(|e| e.to_string())?;
    contain(|| {
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| e.to_string())?;
        check_pages(&pages, builder.metadata(), limits)?;
        Ok(builder)
    })
}

/// Checks the footer of `file` (of `size` bytes) before the parquet crate parses it.
pub fn check_footer(file: &mut File, size: u64, limits: &ParquetLimits) -> Result<(), String> {
    if size < 12 {
        return Err(format!("{size} bytes is too short for a Parquet file"));
    }
    let mut tail = [0u8; 8];
    read_at(file, size - 8, &mut tail)?;
    if &tail[4..] != b"PAR1" {
        return Err("no Parquet magic at the end (an encrypted or truncated file?)".into());
    }
    let len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    if len > limits.max_footer || len + 12 > size {
        return Err(format!(
            "a footer of {len} bytes in a {size}-byte file; at most {}",
            limits.max_footer
        ));
    }
    let mut footer = vec![0u8; usize::try_from(len).map_err(|e| e.to_string())?];
    read_at(file, size - 8 - len, &mut footer)?;
    let schema = schema_children(&footer)?;
    let (columns, nesting) = shape(&schema)?;
    if columns > limits.max_columns {
        return Err(format!("{columns} columns; at most {}", limits.max_columns));
    }
    if nesting > limits.max_nesting {
        return Err(format!(
            "the schema nests {nesting} deep; at most {}",
            limits.max_nesting
        ));
    }
    Ok(())
}

/// Checks every page header of every column chunk against the limits.
pub fn check_pages(
    file: &File,
    metadata: &ParquetMetaData,
    limits: &ParquetLimits,
) -> Result<(), String> {
    let mut reader =
        BufReader::with_capacity(64 * 1024, file.try_clone().map_err(|e| e.to_string())?);
    for (g, group) in metadata.row_groups().iter().enumerate() {
        let mut group_total = 0u64;
        for column in group.columns() {
            let (start, len) = chunk_range(column)?;
            let end = start.saturating_add(len);
            let snappy = column.compression() == Compression::SNAPPY;
            let mut at = start;
            reader
                .seek(SeekFrom::Start(at))
                .map_err(|e| e.to_string())?;
            while at < end {
                let window = (end - at).min(MAX_PAGE_HEADER);
                let mut head = Vec::new();
                (&mut reader)
                    .take(window.min(4096))
                    .read_to_end(&mut head)
                    .map_err(|e| e.to_string())?;
                let header = match page_header(&head) {
                    Ok(h) => h,
                    // A header with large statistics: read up to the most a header may take.
                    Err(_) if window > head.len() as u64 => {
                        (&mut reader)
                            .take(window - head.len() as u64)
                            .read_to_end(&mut head)
                            .map_err(|e| e.to_string())?;
                        page_header(&head)?
                    }
                    Err(e) => return Err(e),
                };
                let page = format!(
                    "row group {g}, column {}, page at {at}",
                    column.column_path()
                );
                let body_at = at + header.len as u64;
                let body_end = body_at.saturating_add(header.compressed);
                if body_end > end {
                    return Err(format!("{page} runs past its column chunk"));
                }
                if header.uncompressed > limits.max_page {
                    return Err(format!(
                        "{page} decompresses to {} bytes; at most {}",
                        header.uncompressed, limits.max_page
                    ));
                }
                if header.values > limits.max_page_values {
                    return Err(format!(
                        "{page} holds {} values; at most {}",
                        header.values, limits.max_page_values
                    ));
                }
                // Snappy sizes its output from its own length, not the page header's.
                if snappy && header.compressed > 0 && header.snappy_checked {
                    let skip = header.levels_len;
                    let mut varint = Vec::new();
                    reader
                        .seek(SeekFrom::Start(body_at + skip))
                        .map_err(|e| e.to_string())?;
                    (&mut reader)
                        .take(10.min(header.compressed.saturating_sub(skip)))
                        .read_to_end(&mut varint)
                        .map_err(|e| e.to_string())?;
                    let claimed = Cursor::new(&varint).varint()?;
                    if claimed > limits.max_page {
                        return Err(format!(
                            "{page} holds snappy data of {claimed} bytes; at most {}",
                            limits.max_page
                        ));
                    }
                }
                group_total = group_total.saturating_add(header.uncompressed);
                at = body_end;
                reader
                    .seek(SeekFrom::Start(at))
                    .map_err(|e| e.to_string())?;
            }
        }
        if group_total > limits.max_row_group {
            return Err(format!(
                "row group {g} decompresses to {group_total} bytes; at most {}",
                limits.max_row_group
            ));
        }
    }
    Ok(())
}

/// Where a column chunk's bytes are: `ColumnChunkMetaData::byte_range` panics on the
/// negative offsets a hostile footer may hold.
pub fn chunk_range(column: &ColumnChunkMetaData) -> Result<(u64, u64), String> {
    let start = column
        .dictionary_page_offset()
        .unwrap_or_else(|| column.data_page_offset());
    match (
        u64::try_from(start),
        u64::try_from(column.compressed_size()),
    ) {
        (Ok(start), Ok(len)) => Ok((start, len)),
        _ => Err(format!(
            "column {} claims bytes at {start} of length {}",
            column.column_path(),
            column.compressed_size()
        )),
    }
}

/// Runs `read` (the parquet crate at work on an untrusted file), turning a panic inside it
/// into an error.
pub fn contain<T>(read: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(read)) {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            Err(format!("the Parquet reader failed on this file: {message}"))
        }
    }
}

fn read_at(file: &mut File, offset: u64, buf: &mut [u8]) -> Result<(), String> {
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_exact(buf))
        .map_err(|e| e.to_string())
}

/// What a page header says of its page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct PageHeader {
    /// The header's own length.
    len: usize,
    uncompressed: u64,
    compressed: u64,
    values: u64,
    /// Bytes of levels before the compressed data (data page v2 keeps them uncompressed).
    levels_len: u64,
    /// Whether the data after the levels is compressed (v2 may say it is not).
    snappy_checked: bool,
}

/// Parses a page header (Thrift compact protocol) from the start of `bytes`.
fn page_header(bytes: &[u8]) -> Result<PageHeader, String> {
    let mut c = Cursor::new(bytes);
    let mut h = PageHeader {
        snappy_checked: true,
        ..PageHeader::default()
    };
    let mut field = 0i16;
    while let Some((id, kind)) = c.field(&mut field)? {
        match (id, kind) {
            (2, I32) => h.uncompressed = c.size()?,
            (3, I32) => h.compressed = c.size()?,
            // The data page, dictionary page and data page v2 headers.
            (5 | 7 | 8, STRUCT) => {
                let mut inner = 0i16;
                while let Some((id, kind)) = c.field(&mut inner)? {
                    match (id, kind) {
                        (1, I32) => h.values = c.size()?,
                        // v2: repetition and definition levels, uncompressed.
                        (5 | 6, I32) => h.levels_len = h.levels_len.saturating_add(c.size()?),
                        (7, FALSE) => h.snappy_checked = false,
                        _ => c.skip(kind, 1)?,
                    }
                }
            }
            _ => c.skip(kind, 0)?,
        }
    }
    h.len = c.at;
    Ok(h)
}

/// The `num_children` of each element of a footer's schema list (field 2), in order.
fn schema_children(footer: &[u8]) -> Result<Vec<u32>, String> {
    let mut c = Cursor::new(footer);
    let mut field = 0i16;
    let mut children = Vec::new();
    while let Some((id, kind)) = c.field(&mut field)? {
        if (id, kind) != (2, LIST) {
            c.skip(kind, 0)?;
            continue;
        }
        let (n, elem) = c.list_header()?;
        if elem != STRUCT {
            return Err("the footer's schema is not a list of elements".into());
        }
        for _ in 0..n {
            let mut inner = 0i16;
            let mut count = 0u32;
            while let Some((id, kind)) = c.field(&mut inner)? {
                if (id, kind) == (5, I32) {
                    count = u32::try_from(c.zigzag()?).map_err(|_| "negative num_children")?;
                } else {
                    c.skip(kind, 1)?;
                }
            }
            children.push(count);
        }
    }
    if children.is_empty() {
        return Err("the footer has no schema".into());
    }
    Ok(children)
}

/// Leaf columns and the deepest nesting of a schema given in depth-first order as each
/// element's number of children, walked without recursion.
fn shape(children: &[u32]) -> Result<(usize, usize), String> {
    // Children still to come at each open level.
    let mut open: Vec<u32> = Vec::new();
    let (mut leaves, mut deepest) = (0usize, 0usize);
    for (i, &n) in children.iter().enumerate() {
        if i > 0 {
            match open.last_mut() {
                Some(left) => *left -= 1,
                None => return Err("schema elements past the root's children".into()),
            }
        }
        if n > 0 {
            open.push(n);
            deepest = deepest.max(open.len());
        } else if i > 0 {
            leaves += 1;
        }
        while open.last() == Some(&0) {
            open.pop();
        }
    }
    if !open.is_empty() {
        return Err("the schema names more children than it has".into());
    }
    Ok((leaves, deepest.saturating_sub(1)))
}

const FALSE: u8 = 2;
const I32: u8 = 5;
const LIST: u8 = 9;
const STRUCT: u8 = 12;

/// A reader of the Thrift compact protocol over bytes; every read is bounded.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    fn byte(&mut self) -> Result<u8, String> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or("a Thrift structure ends early")?;
        self.at += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a varint longer than 64 bits".into())
    }

    fn zigzag(&mut self) -> Result<i64, String> {
        let v = self.varint()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    /// A size field: a non-negative i32.
    fn size(&mut self) -> Result<u64, String> {
        u64::try_from(self.zigzag()?).map_err(|_| "a negative size in a page header".into())
    }

    /// The next field's id and type, or `None` at the struct's end.
    fn field(&mut self, last: &mut i16) -> Result<Option<(i16, u8)>, String> {
        let b = self.byte()?;
        let kind = b & 0x0f;
        if kind == 0 {
            return Ok(None);
        }
        let delta = i16::from(b >> 4);
        *last = if delta == 0 {
            i16::try_from(self.zigzag()?).map_err(|_| "a field id out of range")?
        } else {
            last.saturating_add(delta)
        };
        Ok(Some((*last, kind)))
    }

    fn list_header(&mut self) -> Result<(u64, u8), String> {
        let b = self.byte()?;
        let n = match u64::from(b >> 4) {
            15 => self.varint()?,
            n => n,
        };
        // Every element takes at least a byte: a count past the bytes left is a lie.
        if n > (self.bytes.len() - self.at) as u64 {
            return Err(format!("a list of {n} elements in fewer bytes"));
        }
        Ok((n, b & 0x0f))
    }

    fn advance(&mut self, n: u64) -> Result<(), String> {
        let n = usize::try_from(n).map_err(|e| e.to_string())?;
        if n > self.bytes.len() - self.at {
            return Err("a Thrift value runs past its bytes".into());
        }
        self.at += n;
        Ok(())
    }

    /// Skips a value of `kind`, nested at most [`MAX_THRIFT_DEPTH`] deep.
    fn skip(&mut self, kind: u8, depth: usize) -> Result<(), String> {
        if depth > MAX_THRIFT_DEPTH {
            return Err(format!("Thrift nested more than {MAX_THRIFT_DEPTH} deep"));
        }
        match kind {
            1 | 2 => Ok(()),
            3 => self.advance(1),
            4..=6 => self.varint().map(|_| ()),
            7 => self.advance(8),
            8 => {
                let n = self.varint()?;
                self.advance(n)
            }
            9 | 10 => {
                let (n, elem) = self.list_header()?;
                for _ in 0..n {
                    // Booleans in a list take a byte each.
                    if elem == 1 || elem == 2 {
                        self.advance(1)?;
                    } else {
                        self.skip(elem, depth + 1)?;
                    }
                }
                Ok(())
            }
            11 => {
                let n = self.varint()?;
                if n == 0 {
                    return Ok(());
                }
                if n > (self.bytes.len() - self.at) as u64 {
                    return Err(format!("a map of {n} entries in fewer bytes"));
                }
                let kinds = self.byte()?;
                for _ in 0..n {
                    self.skip(kinds >> 4, depth + 1)?;
                    self.skip(kinds & 0x0f, depth + 1)?;
                }
                Ok(())
            }
            12 => {
                let mut field = 0i16;
                while let Some((_, kind)) = self.field(&mut field)? {
                    self.skip(kind, depth + 1)?;
                }
                Ok(())
            }
            other => Err(format!("unknown Thrift type {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use arrow::{
        array::{ArrayRef, RecordBatch, StringArray},
        datatypes::{DataType, Field, Schema},
    };
    use parquet::{
        arrow::{ArrowWriter, arrow_reader::ParquetRecordBatchReaderBuilder},
        file::properties::WriterProperties,
    };
    use proptest::prelude::*;

    use super::*;

    /// A Parquet file of one string column whose one row is `value_len` bytes of 'a'.
    fn file_with(value_len: usize, compression: Compression) -> tempfile::NamedTempFile {
        let schema = Arc::new(Schema::new(vec![Field::new("text", DataType::Utf8, false)]));
        let values: ArrayRef = Arc::new(StringArray::from(vec!["a".repeat(value_len)]));
        let batch = RecordBatch::try_new(schema.clone(), vec![values]).unwrap();
        let file = tempfile::NamedTempFile::new().unwrap();
        let props = WriterProperties::builder()
            .set_compression(compression)
            .set_dictionary_enabled(false)
            .build();
        let mut writer = ArrowWriter::try_new(file.reopen().unwrap(), schema, Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        file
    }

    fn check(file: &tempfile::NamedTempFile, limits: &ParquetLimits) -> Result<(), String> {
        let mut f = file.reopen().unwrap();
        let size = f.metadata().unwrap().len();
        check_footer(&mut f, size, limits)?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file.reopen().unwrap()).unwrap();
        check_pages(&f, builder.metadata(), limits)
    }

    #[test]
    fn a_page_that_decompresses_past_the_limit_is_refused_from_its_header() {
        let small = ParquetLimits {
            max_page: 1 << 20,
            ..ParquetLimits::default()
        };
        for compression in [
            Compression::ZSTD(Default::default()),
            Compression::SNAPPY,
            Compression::UNCOMPRESSED,
        ] {
            let fine = file_with(100_000, compression);
            assert_eq!(check(&fine, &small), Ok(()), "{compression:?}");
            // 4 MiB of one letter: a few KiB on disk with zstd.
            let bomb = file_with(4 << 20, compression);
            let err = check(&bomb, &small).unwrap_err();
            assert!(err.contains("decompresses to"), "{compression:?}: {err}");
        }
        let bomb = file_with(4 << 20, Compression::ZSTD(Default::default()));
        assert!(bomb.as_file().metadata().unwrap().len() < 64 * 1024);
        let row_group = ParquetLimits {
            max_row_group: 1 << 20,
            ..ParquetLimits::default()
        };
        assert!(
            check(&bomb, &row_group)
                .unwrap_err()
                .contains("row group 0")
        );
    }

    #[test]
    fn schema_shape_is_counted_without_recursion() {
        // root{a, b{c, d{e}}}: three leaves (a, c, e), two levels of groups under the root.
        assert_eq!(shape(&[2, 0, 2, 0, 1, 0]), Ok((3, 2)));
        assert_eq!(shape(&[1, 0]), Ok((1, 0)));
        assert!(shape(&[3, 0]).is_err());
        assert!(shape(&[1, 0, 0]).is_err());
        // A million nested groups: counted, not a stack overflow.
        let mut deep = vec![1u32; 1_000_000];
        deep.push(0);
        assert_eq!(shape(&deep), Ok((1, 999_999)));
    }

    #[test]
    fn the_footer_of_a_real_file_is_read_and_limited() {
        let file = file_with(10, Compression::SNAPPY);
        assert_eq!(check(&file, &ParquetLimits::default()), Ok(()));
        let narrow = ParquetLimits {
            max_columns: 0,
            ..ParquetLimits::default()
        };
        assert!(check(&file, &narrow).unwrap_err().contains("1 columns"));
        let tiny = ParquetLimits {
            max_footer: 10,
            ..ParquetLimits::default()
        };
        assert!(check(&file, &tiny).unwrap_err().contains("footer"));
    }

    #[test]
    fn a_panic_inside_the_reader_is_an_error() {
        let err = contain::<()>(|| panic!("index out of bounds")).unwrap_err();
        assert!(err.contains("index out of bounds"), "{err}");
        assert_eq!(contain(|| Ok(3)), Ok(3));
    }

    #[test]
    fn every_single_byte_change_of_a_real_file_is_refused_or_read_without_a_panic() {
        let file = file_with(300, Compression::SNAPPY);
        let good = std::fs::read(file.path()).unwrap();
        let mutated = tempfile::NamedTempFile::new().unwrap();
        let mut contained = 0;
        for i in 0..good.len() {
            for x in [0x01u8, 0x80, 0xff] {
                let mut bytes = good.clone();
                bytes[i] ^= x;
                std::fs::write(mutated.path(), &bytes).unwrap();
                let limits = ParquetLimits::default();
                // A panic escaping either step fails the test.
                let Ok(builder) = open_checked(mutated.reopen().unwrap(), &limits) else {
                    continue;
                };
                let read = contain(|| {
                    for batch in builder.build().map_err(|e| e.to_string())? {
                        batch.map_err(|e| e.to_string())?;
                    }
                    Ok(())
                });
                contained += usize::from(read.is_err_and(|e| e.contains("Parquet reader failed")));
            }
        }
        eprintln!(
            "{} changes, {contained} panics contained while decoding",
            good.len() * 3
        );
    }

    proptest! {
        #[test]
        fn thrift_of_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = page_header(&bytes);
            let _ = schema_children(&bytes);
        }

        #[test]
        fn mutated_real_files_are_refused_or_read_never_a_panic(
            at in 0usize..4096,
            xor in 1u8..=255,
        ) {
            let file = file_with(300, Compression::SNAPPY);
            let mut bytes = std::fs::read(file.path()).unwrap();
            let i = at % bytes.len();
            bytes[i] ^= xor;
            let mutated = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(mutated.path(), &bytes).unwrap();
            // Opening checks everything, with no panic escaping; decoding is contained.
            if let Ok(builder) = open_checked(mutated.reopen().unwrap(), &ParquetLimits::default()) {
                let _ = contain(|| {
                    for batch in builder.build().map_err(|e| e.to_string())? {
                        batch.map_err(|e| e.to_string())?;
                    }
                    Ok(())
                });
            }
        }
    }
}
