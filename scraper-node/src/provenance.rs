//! A scraped row and its provenance: FineWeb's columns, plus who fetched the page, when, what
//! the server said, the BLAKE3 of the raw body, and the node's signature over
//! (url, fetch time, body hash, text hash).
//!
//! ```text
//! signed message = "tessera/page/1\n" || u64 BE len(url) || url
//!                  || i64 BE fetch time (µs since the Unix epoch)
//!                  || BLAKE3(raw body) || BLAKE3(text)
//! signature      = the node's libp2p identity key (ed25519) over the message
//! check          = public key from the peer id (identity multihash), text hash recomputed
//! ```

use std::{
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use arrow::{
    array::{
        Array, ArrayRef, FixedSizeBinaryArray, FixedSizeBinaryBuilder, Float64Builder,
        Int64Builder, RecordBatch, StringArray, StringBuilder, TimestampMicrosecondArray,
        TimestampMicrosecondBuilder, UInt16Builder,
    },
    datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit},
    error::ArrowError,
};
use chrono::{DateTime, SecondsFormat, Utc};
use libp2p::identity::{Keypair, PeerId, PublicKey};
use uuid::Uuid;

use crate::extract::{Extracted, count_tokens};

/// Domain separation for the signed message.
const DOMAIN: &[u8] = b"tessera/page/1\n";

/// The Arrow schema of scraped rows: FineWeb's nine columns with their names and types, then
/// the provenance columns.
pub fn schema() -> SchemaRef {
    let utf8 = |name| Field::new(name, DataType::Utf8, false);
    Arc::new(Schema::new(vec![
        utf8("text"),
        utf8("id"),
        utf8("dump"),
        utf8("url"),
        utf8("date"),
        utf8("file_path"),
        utf8("language"),
        Field::new("language_score", DataType::Float64, false),
        Field::new("token_count", DataType::Int64, false),
        Field::new(
            "fetch_time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("http_status", DataType::UInt16, false),
        utf8("content_type"),
        Field::new("body_blake3", DataType::FixedSizeBinary(32), false),
        utf8("scraper_peer_id"),
        Field::new("signature", DataType::FixedSizeBinary(64), false),
    ]))
}

/// One page's row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The main text.
    pub text: String,
    /// `<urn:uuid:...>`, derived from the URL, the fetch time and the body hash.
    pub id: String,
    /// The crawl the row came from.
    pub dump: String,
    /// The page's URL (after redirects).
    pub url: String,
    /// The fetch time, RFC 3339 in UTC to the second, as FineWeb writes it.
    pub date: String,
    /// The shard file the row was written to.
    pub file_path: String,
    /// The language code.
    pub language: String,
    /// The language detector's confidence.
    pub language_score: f64,
    /// GPT-2 tokens in `text`.
    pub token_count: i64,
    /// Microseconds since the Unix epoch.
    pub fetch_time_us: i64,
    /// The HTTP status of the final response.
    pub http_status: u16,
    /// Its `Content-Type`.
    pub content_type: String,
    /// BLAKE3 of the raw body.
    pub body_blake3: [u8; 32],
    /// The scraper node.
    pub scraper: PeerId,
    /// The node's signature (ed25519, 64 bytes).
    pub signature: [u8; 64],
}

impl Row {
    /// The row for a page fetched at `fetched_at` and extracted, signed with `key`.
    #[allow(clippy::too_many_arguments)]
    pub fn for_page(
        key: &Keypair,
        url: &str,
        fetched_at: SystemTime,
        http_status: u16,
        content_type: &str,
        body: &[u8],
        page: &Extracted,
        dump: &str,
        file_path: String,
    ) -> Result<Self, ProvenanceError> {
        let since_epoch = fetched_at
            .duration_since(UNIX_EPOCH)
            .map_err(|_| ProvenanceError::Signing("fetch time before 1970".into()))?;
        let fetch_time_us = i64::try_from(since_epoch.as_micros())
            .map_err(|_| ProvenanceError::Signing("fetch time out of range".into()))?;
        let body_blake3 = *blake3::hash(body).as_bytes();
        let signature = sign(key, url, fetch_time_us, &body_blake3, &page.text)?;
        // The id names this fetch of this page: the same inputs give the same id.
        let mut id_input = blake3::Hasher::new();
        id_input.update(url.as_bytes());
        id_input.update(&fetch_time_us.to_be_bytes());
        id_input.update(&body_blake3);
        let id_bytes: [u8; 16] = id_input.finalize().as_bytes()[..16]
            .try_into()
            .map_err(|_| ProvenanceError::Signing("hash too short".into()))?;
        let date = DateTime::<Utc>::from(fetched_at).to_rfc3339_opts(SecondsFormat::Secs, true);
        Ok(Self {
            text: page.text.clone(),
            id: format!("<urn:uuid:{}>", Uuid::new_v8(id_bytes)),
            dump: dump.to_string(),
            url: url.to_string(),
            date,
            file_path,
            language: page.language.clone(),
            language_score: page.language_score,
            // Counted on the row's own text, after the quality pipeline changed it.
            token_count: i64::try_from(count_tokens(&page.text)).unwrap_or(i64::MAX),
            fetch_time_us,
            http_status,
            content_type: content_type.to_string(),
            body_blake3,
            scraper: key.public().to_peer_id(),
            signature,
        })
    }
}

/// Why a row's provenance does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProvenanceError {
    /// The peer id does not carry an ed25519 public key.
    #[error("peer id {0} does not carry an ed25519 key")]
    PeerId(String),
    /// The signature does not match the row.
    #[error("signature does not match row {0}")]
    BadSignature(usize),
    /// The key cannot sign (not ed25519).
    #[error("signing: {0}")]
    Signing(String),
    /// The batch does not have the row schema.
    #[error("not a row batch: {0}")]
    Schema(String),
}

/// What a node signs for a page.
pub fn message(url: &str, fetch_time_us: i64, body_blake3: &[u8; 32], text: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + 8 + url.len() + 8 + 64);
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(&(url.len() as u64).to_be_bytes());
    m.extend_from_slice(url.as_bytes());
    m.extend_from_slice(&fetch_time_us.to_be_bytes());
    m.extend_from_slice(body_blake3);
    m.extend_from_slice(blake3::hash(text.as_bytes()).as_bytes());
    m
}

/// Signs a page with the node's key: returns the 64-byte ed25519 signature.
pub fn sign(
    key: &Keypair,
    url: &str,
    fetch_time_us: i64,
    body_blake3: &[u8; 32],
    text: &str,
) -> Result<[u8; 64], ProvenanceError> {
    if key.clone().try_into_ed25519().is_err() {
        return Err(ProvenanceError::Signing(
            "only ed25519 keys sign rows".into(),
        ));
    }
    let sig = key
        .sign(&message(url, fetch_time_us, body_blake3, text))
        .map_err(|e| ProvenanceError::Signing(e.to_string()))?;
    sig.try_into()
        .map_err(|_| ProvenanceError::Signing("signature is not 64 bytes".into()))
}

/// The public key a peer id carries (ed25519 ids inline their key).
pub fn public_key(peer: &PeerId) -> Result<PublicKey, ProvenanceError> {
    let hash: &multihash::Multihash<64> = peer.as_ref();
    if hash.code() != 0 {
        return Err(ProvenanceError::PeerId(peer.to_string()));
    }
    PublicKey::try_decode_protobuf(hash.digest())
        .ok()
        .filter(|k| k.clone().try_into_ed25519().is_ok())
        .ok_or_else(|| ProvenanceError::PeerId(peer.to_string()))
}

/// Rows being gathered into a record batch.
#[derive(Debug)]
pub struct RowBuilder {
    text: StringBuilder,
    id: StringBuilder,
    dump: StringBuilder,
    url: StringBuilder,
    date: StringBuilder,
    file_path: StringBuilder,
    language: StringBuilder,
    language_score: Float64Builder,
    token_count: Int64Builder,
    fetch_time: TimestampMicrosecondBuilder,
    http_status: UInt16Builder,
    content_type: StringBuilder,
    body_blake3: FixedSizeBinaryBuilder,
    scraper: StringBuilder,
    signature: FixedSizeBinaryBuilder,
    rows: usize,
    bytes: usize,
}

impl Default for RowBuilder {
    fn default() -> Self {
        Self {
            text: StringBuilder::new(),
            id: StringBuilder::new(),
            dump: StringBuilder::new(),
            url: StringBuilder::new(),
            date: StringBuilder::new(),
            file_path: StringBuilder::new(),
            language: StringBuilder::new(),
            language_score: Float64Builder::new(),
            token_count: Int64Builder::new(),
            fetch_time: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            http_status: UInt16Builder::new(),
            content_type: StringBuilder::new(),
            body_blake3: FixedSizeBinaryBuilder::new(32),
            scraper: StringBuilder::new(),
            signature: FixedSizeBinaryBuilder::new(64),
            rows: 0,
            bytes: 0,
        }
    }
}

impl RowBuilder {
    /// Adds a row.
    pub fn push(&mut self, row: &Row) -> Result<(), ArrowError> {
        self.text.append_value(&row.text);
        self.id.append_value(&row.id);
        self.dump.append_value(&row.dump);
        self.url.append_value(&row.url);
        self.date.append_value(&row.date);
        self.file_path.append_value(&row.file_path);
        self.language.append_value(&row.language);
        self.language_score.append_value(row.language_score);
        self.token_count.append_value(row.token_count);
        self.fetch_time.append_value(row.fetch_time_us);
        self.http_status.append_value(row.http_status);
        self.content_type.append_value(&row.content_type);
        self.body_blake3.append_value(row.body_blake3)?;
        self.scraper.append_value(row.scraper.to_string());
        self.signature.append_value(row.signature)?;
        self.rows += 1;
        self.bytes += row.text.len() + row.url.len() + row.content_type.len() + 256;
        Ok(())
    }

    /// Rows gathered.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no rows are gathered.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// About how many bytes the gathered rows take.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The gathered rows as a batch; the builder starts empty again.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.text.finish()),
            Arc::new(self.id.finish()),
            Arc::new(self.dump.finish()),
            Arc::new(self.url.finish()),
            Arc::new(self.date.finish()),
            Arc::new(self.file_path.finish()),
            Arc::new(self.language.finish()),
            Arc::new(self.language_score.finish()),
            Arc::new(self.token_count.finish()),
            Arc::new(self.fetch_time.finish()),
            Arc::new(self.http_status.finish()),
            Arc::new(self.content_type.finish()),
            Arc::new(self.body_blake3.finish()),
            Arc::new(self.scraper.finish()),
            Arc::new(self.signature.finish()),
        ];
        self.rows = 0;
        self.bytes = 0;
        RecordBatch::try_new(schema(), columns)
    }
}

/// Checks every row's signature in a batch of the row schema: the rows that fail, each with
/// why. A batch that is not of the row schema is an error.
pub fn verify_batch(batch: &RecordBatch) -> Result<Vec<(usize, ProvenanceError)>, ProvenanceError> {
    let col = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| ProvenanceError::Schema(format!("no column {name}")))
    };
    let strings = |name: &str| -> Result<&StringArray, ProvenanceError> {
        col(name)?
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| ProvenanceError::Schema(format!("{name} is not a string column")))
    };
    let fixed = |name: &str, len: i32| -> Result<&FixedSizeBinaryArray, ProvenanceError> {
        col(name)?
            .as_any()
            .downcast_ref::<FixedSizeBinaryArray>()
            .filter(|a| a.value_length() == len)
            .ok_or_else(|| ProvenanceError::Schema(format!("{name} is not {len} fixed bytes")))
    };
    let (text, url, scraper) = (
        strings("text")?,
        strings("url")?,
        strings("scraper_peer_id")?,
    );
    let (body, signature) = (fixed("body_blake3", 32)?, fixed("signature", 64)?);
    let time = col("fetch_time")?
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .ok_or_else(|| ProvenanceError::Schema("fetch_time is not a µs timestamp".into()))?;

    let mut failures = Vec::new();
    for i in 0..batch.num_rows() {
        let check = || -> Result<(), ProvenanceError> {
            if [
                text.is_null(i),
                url.is_null(i),
                scraper.is_null(i),
                body.is_null(i),
            ]
            .into_iter()
            .chain([signature.is_null(i), time.is_null(i)])
            .any(|null| null)
            {
                return Err(ProvenanceError::BadSignature(i));
            }
            let peer: PeerId = scraper
                .value(i)
                .parse()
                .map_err(|_| ProvenanceError::PeerId(scraper.value(i).to_string()))?;
            let key = public_key(&peer)?;
            let body_hash: [u8; 32] = body
                .value(i)
                .try_into()
                .map_err(|_| ProvenanceError::BadSignature(i))?;
            let m = message(url.value(i), time.value(i), &body_hash, text.value(i));
            if key.verify(&m, signature.value(i)) {
                Ok(())
            } else {
                Err(ProvenanceError::BadSignature(i))
            }
        };
        if let Err(e) = check() {
            failures.push((i, e));
        }
    }
    Ok(failures)
}

/// What one scraper node contributed to a dataset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Contribution {
    /// Rows whose signature verifies, fetched in the window.
    pub pages: u64,
    /// Rows naming the node whose signature does not verify.
    pub rejected: u64,
}

/// Adds the pages of a batch of the row schema to `into`, per scraper peer id: rows fetched in
/// `[from_us, to_us)` whose signature verifies count as pages, rows that do not verify as
/// rejected. A batch that is not of the row schema is an error.
pub fn contributions(
    batch: &RecordBatch,
    from_us: i64,
    to_us: i64,
    into: &mut std::collections::BTreeMap<String, Contribution>,
) -> Result<(), ProvenanceError> {
    let failed: std::collections::BTreeSet<usize> =
        verify_batch(batch)?.into_iter().map(|(i, _)| i).collect();
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| ProvenanceError::Schema(format!("no column {name}")))
    };
    let scraper = column("scraper_peer_id")?
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| ProvenanceError::Schema("scraper_peer_id is not a string column".into()))?;
    let time = column("fetch_time")?
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .ok_or_else(|| ProvenanceError::Schema("fetch_time is not a µs timestamp".into()))?;
    for i in 0..batch.num_rows() {
        let node = if scraper.is_null(i) {
            String::new()
        } else {
            scraper.value(i).to_string()
        };
        let entry = into.entry(node).or_default();
        if failed.contains(&i) {
            entry.rejected += 1;
        } else if (from_us..to_us).contains(&time.value(i)) {
            entry.pages += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A signed row, for tests.
    pub(crate) fn row(key: &Keypair, url: &str, text: &str) -> Row {
        let body = *blake3::hash(b"<html>raw</html>").as_bytes();
        let time = 1_763_856_000_000_000;
        Row {
            text: text.into(),
            id: "<urn:uuid:00000000-0000-8000-8000-000000000000>".into(),
            dump: "crawl".into(),
            url: url.into(),
            date: "2025-11-23T00:00:00Z".into(),
            file_path: "shard-00000.parquet".into(),
            language: "en".into(),
            language_score: 0.9,
            token_count: 3,
            fetch_time_us: time,
            http_status: 200,
            content_type: "text/html".into(),
            body_blake3: body,
            scraper: key.public().to_peer_id(),
            signature: sign(key, url, time, &body, text).unwrap(),
        }
    }

    fn replace(batch: &RecordBatch, name: &str, array: ArrayRef) -> RecordBatch {
        let index = batch.schema().index_of(name).unwrap();
        let mut columns = batch.columns().to_vec();
        columns[index] = array;
        RecordBatch::try_new(batch.schema(), columns).unwrap()
    }

    #[test]
    fn signed_rows_verify_and_altered_ones_do_not() {
        let key = Keypair::generate_ed25519();
        let mut builder = RowBuilder::default();
        builder
            .push(&row(&key, "http://a.example/", "first page"))
            .unwrap();
        builder
            .push(&row(&key, "http://b.example/", "second page"))
            .unwrap();
        let batch = builder.finish().unwrap();
        assert_eq!(batch.schema(), schema());
        assert!(verify_batch(&batch).unwrap().is_empty());
        assert!(builder.is_empty());

        // Each signed field, altered in row 1, fails row 1 alone.
        let text = StringArray::from(vec!["first page", "second page, edited"]);
        let url = StringArray::from(vec!["http://a.example/", "http://evil.example/"]);
        let time =
            TimestampMicrosecondArray::from(vec![1_763_856_000_000_000, 1]).with_timezone("UTC");
        let body = FixedSizeBinaryArray::try_from_iter(
            [[0u8; 32], [1u8; 32]]
                .into_iter()
                .enumerate()
                .map(|(i, b)| {
                    if i == 0 {
                        *blake3::hash(b"<html>raw</html>").as_bytes()
                    } else {
                        b
                    }
                }),
        )
        .unwrap();
        for (name, array) in [
            ("text", Arc::new(text) as ArrayRef),
            ("url", Arc::new(url)),
            ("fetch_time", Arc::new(time)),
            ("body_blake3", Arc::new(body)),
        ] {
            let failures = verify_batch(&replace(&batch, name, array)).unwrap();
            assert_eq!(failures.len(), 1, "{name}");
            assert_eq!(failures[0].0, 1, "{name}");
        }

        // Another node's peer id on a row: its key does not match the signature.
        let other = Keypair::generate_ed25519()
            .public()
            .to_peer_id()
            .to_string();
        let peers = StringArray::from(vec![key.public().to_peer_id().to_string(), other]);
        let failures = verify_batch(&replace(&batch, "scraper_peer_id", Arc::new(peers))).unwrap();
        assert_eq!(failures.iter().map(|f| f.0).collect::<Vec<_>>(), [1]);

        // Contributions count the rows that verify, in the window, per node.
        let me = key.public().to_peer_id().to_string();
        let mut counted = std::collections::BTreeMap::new();
        contributions(&batch, 0, i64::MAX, &mut counted).unwrap();
        assert_eq!(
            counted[&me],
            Contribution {
                pages: 2,
                rejected: 0
            }
        );
        let edited = replace(
            &batch,
            "text",
            Arc::new(StringArray::from(vec!["first page", "edited"])),
        );
        let mut counted = std::collections::BTreeMap::new();
        contributions(&edited, 0, i64::MAX, &mut counted).unwrap();
        assert_eq!(
            counted[&me],
            Contribution {
                pages: 1,
                rejected: 1
            }
        );
        let mut counted = std::collections::BTreeMap::new();
        contributions(&batch, 0, 1_763_856_000_000_000, &mut counted).unwrap();
        assert_eq!(
            counted[&me],
            Contribution {
                pages: 0,
                rejected: 0
            },
            "outside the window"
        );
    }

    #[test]
    fn a_page_row_is_signed_dated_and_named() {
        let key = Keypair::generate_ed25519();
        let page = crate::extract::extract(
            "<html><head><title>T</title></head><body><p>Hello world, this is a page.</p></body></html>",
            &url::Url::parse("http://example.com/").unwrap(),
            "TesseraBot",
        )
        .unwrap();
        let at = UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_123_456);
        let make = || {
            Row::for_page(
                &key,
                "http://example.com/",
                at,
                200,
                "text/html",
                b"<html>",
                &page,
                "crawl-1",
                "s-00000.parquet".into(),
            )
            .unwrap()
        };
        let row = make();
        assert_eq!(row.date, "2023-11-14T22:13:20Z");
        assert_eq!(row.fetch_time_us, 1_700_000_000_123_456);
        assert!(
            row.id.starts_with("<urn:uuid:") && row.id.len() == 47,
            "{}",
            row.id
        );
        let again = make();
        assert_eq!(row.id, again.id);
        let mut builder = RowBuilder::default();
        builder.push(&row).unwrap();
        assert!(verify_batch(&builder.finish().unwrap()).unwrap().is_empty());
    }

    #[test]
    fn a_batch_without_the_columns_is_an_error() {
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("text", DataType::Utf8, false)])),
            vec![Arc::new(StringArray::from(vec!["x"]))],
        )
        .unwrap();
        assert!(matches!(
            verify_batch(&batch),
            Err(ProvenanceError::Schema(_))
        ));
    }
}
