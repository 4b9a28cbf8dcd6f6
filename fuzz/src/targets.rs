//! One target per decoder of untrusted bytes: what it is fed, and the real inputs it starts
//! from. A target's run returns normally whatever the bytes; a panic (or an abort) is a bug.

use std::{path::Path, sync::Arc};

use arrow::{
    array::{ArrayRef, Int64Array, ListArray, RecordBatch, StringArray},
    datatypes::{DataType, Field, Int64Type, Schema},
};
use parquet::{arrow::ArrowWriter, basic::Compression, file::properties::WriterProperties};
use tessera_dataset::parquet_guard::{ParquetLimits, contain, open_checked};
use tessera_dataset_registry::protocol::{RegistryRequest, RegistryResponse};
use tessera_formats::{
    AuditReceipt, AuditResult, DatasetRef, Manifest, PublisherKey, RepairClaim, ShardLayout,
    SignedClaim, SignedReceipt, SignedRecord, VersionRecord,
    address::{dag_cbor_cid, raw_cid},
    charter::{Charter, CharterParams, SignedCharter},
    erasure::{ErasureParams, PieceHeader, encode_to_vecs, verify_piece},
    manifest::{RowGroup, Schema as ManifestSchema, ShardEntry},
    record::SigningKey,
};
use tessera_net::codec::{Message, to_cbor};
use tessera_scraper_node::{
    extract::extract,
    limits::OperatorLimits,
    protocol::{CrawlCall, CrawlReply},
    robots::Robots,
    spec::CrawlSpec,
};
use tessera_storage_protocol::{ChallengeRequest, ChallengeResponse, PieceRequest, PieceResponse};

/// A decoder to fuzz.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Its name, and the folder of its corpus under `fuzz/corpus/`.
    pub name: &'static str,
    /// Feeds it one input.
    pub run: fn(&[u8]),
    /// Inputs made in code (blocks, messages, files); the corpus folder adds to them.
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Words worth inserting.
    pub dictionary: &'static [&'static [u8]],
}

/// Every target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "wire",
        run: wire,
        seeds: wire_seeds,
        dictionary: &[],
    },
    Target {
        name: "blocks",
        run: blocks,
        seeds: block_seeds,
        dictionary: &[b"\xd8\x2a", b"\x58\x25\x00\x01", b"\xa1"],
    },
    Target {
        name: "pieces",
        run: pieces,
        seeds: piece_seeds,
        dictionary: &[],
    },
    Target {
        name: "robots",
        run: robots,
        seeds: || example_site("txt"),
        dictionary: &[
            b"\nUser-agent: TesseraBot\n",
            b"\nUser-agent: *\n",
            b"Disallow: /*$\n",
            b"Allow: /a*b*c*d*e*f*g*h$\n",
            b"Crawl-delay: 1e19\n",
            b"Crawl-delay: NaN\n",
            b"%ff%",
        ],
    },
    Target {
        name: "html",
        run: html,
        seeds: || example_site("html"),
        dictionary: &[
            b"<div>",
            b"</div>",
            b"<table><tr><td>",
            b"<svg><g/>",
            b"<b><i>",
            b"</b>",
            b"<!--",
            b"<script>",
            b"<meta name=robots content=noai>",
            b"<a href='//x'>",
            b"<base href='http://[::1]/'>",
        ],
    },
    Target {
        name: "crawl-spec",
        run: crawl_spec,
        seeds: Vec::new,
        dictionary: &[
            b"\nmax_pages = 18446744073709551615\n",
            b"\ndelay_seconds = 1e308\n",
            b"\ntimeout_seconds = 0\n",
            b"\nuser_agent = \"\\r\\n\"\n",
            b"[politeness]\n",
            b"\"http://[::1]:0/\"",
        ],
    },
    Target {
        name: "config",
        run: config,
        seeds: Vec::new,
        dictionary: &[
            b"\ncapacity = \"16EiB\"\n",
            b"\nscrub-interval-secs = 18446744073709551615\n",
            b"\naudit-interval = \"99999999999999999999y\"\n",
            b"\nmax-body = \"0\"\n",
            b"\nrepair-spare = nan\n",
            b"\nlisten = [\"/ip4/0.0.0.0/tcp/65536\"]\n",
        ],
    },
    Target {
        name: "parquet",
        run: parquet,
        seeds: parquet_seeds,
        dictionary: &[b"PAR1", b"\x15\x00\x15", b"\x19\x1c"],
    },
];

/// The target named `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().copied().find(|t| t.name == name)
}

fn signer() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

/// Every message of the node-to-node protocols, read as the network reads it.
fn wire(bytes: &[u8]) {
    let _ = read::<PieceRequest>(bytes);
    let _ = read::<PieceResponse>(bytes);
    let _ = read::<RegistryRequest>(bytes);
    let _ = read::<RegistryResponse>(bytes);
    if let Some(challenge) = read::<ChallengeRequest>(bytes) {
        let _ = challenge.validate();
    }
    if let Some(ChallengeResponse::Proof(proof)) = read::<ChallengeResponse>(bytes) {
        let challenge = tessera_proofs::Challenge {
            piece: proof.piece,
            nonce: [1; 32],
            samples: 4,
        };
        let _ = tessera_proofs::verify(&challenge, &proof);
    }
    let _ = read::<CrawlCall>(bytes);
    let _ = read::<CrawlReply>(bytes);
}

fn read<M: Message>(bytes: &[u8]) -> Option<M> {
    M::from_cbor(bytes.to_vec()).ok()
}

fn wire_seeds() -> Vec<Vec<u8>> {
    let piece = raw_cid(b"piece");
    let mut seeds = vec![
        to_cbor(&PieceRequest::Has { piece }),
        to_cbor(&PieceRequest::PutBegin {
            piece,
            size: 1 << 20,
        }),
        to_cbor(&PieceRequest::PutChunk {
            piece,
            offset: 0,
            bytes: vec![1, 2, 3],
        }),
        to_cbor(&PieceRequest::PutEnd { piece }),
        to_cbor(&tessera_proofs::Challenge {
            piece,
            nonce: [3; 32],
            samples: 8,
        }),
        to_cbor(&RegistryRequest::Heads {
            after: Some((PublisherKey::of(&signer()), "name".into())),
            limit: 10,
        }),
    ];
    // A real proof of a real piece.
    let data = vec![5u8; 100_000];
    let challenge = tessera_proofs::Challenge {
        piece: raw_cid(&data),
        nonce: [9; 32],
        samples: 4,
    };
    if let Ok((outboard, _)) = tessera_proofs::Outboard::compute(&data)
        && let Ok(proof) = tessera_proofs::prove(&challenge, &data, &outboard)
    {
        seeds.push(to_cbor(&ChallengeResponse::Proof(proof)));
    }
    seeds.push(to_cbor(&CrawlCall::Lease));
    seeds.into_iter().flatten().collect()
}

/// Every DAG-CBOR block a node takes from others, and a manifest's Arrow schema.
fn blocks(bytes: &[u8]) {
    if let Ok(manifest) = Manifest::from_block(bytes) {
        let _ = manifest.validate();
        let _ = tessera_stream::manifest_schema(&manifest);
    }
    if let Ok(layout) = ShardLayout::from_block(bytes) {
        let _ = layout.validate();
        for i in 0..layout.pieces.len() {
            let _ = layout.piece_header(i);
        }
    }
    if let Ok(record) = SignedRecord::from_block(bytes) {
        let _ = record.verify();
    }
    if let Ok(receipt) = SignedReceipt::from_block(bytes) {
        let _ = receipt.verify();
    }
    if let Ok(claim) = SignedClaim::from_block(bytes) {
        let _ = claim.verify();
    }
    if let Ok(charter) = SignedCharter::from_block(bytes) {
        let _ = charter.verify_founding();
        let _ = charter.verify_after(&charter);
    }
    if let Ok(payout) = tessera_formats::payout::SignedPayout::from_block(bytes) {
        let _ = payout.verify();
    }
    if let Ok(settlement) = tessera_formats::payout::SignedSettlement::from_block(bytes) {
        let _ = settlement.verify();
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = text.parse::<DatasetRef>();
        let _ = text.parse::<tessera_formats::payout::PayoutAddress>();
    }
}

fn block_seeds() -> Vec<Vec<u8>> {
    let params = ErasureParams::new(4, 2, 1024).ok();
    let Some(params) = params else {
        return Vec::new();
    };
    let Ok((layout, _)) = encode_to_vecs(params, &[7u8; 3000]) else {
        return Vec::new();
    };
    let schema = Schema::new(vec![Field::new("text", DataType::Utf8, true)]);
    let manifest = Manifest {
        version: tessera_formats::manifest::MANIFEST_VERSION,
        schema: Some(ManifestSchema {
            format: "arrow-ipc".into(),
            bytes: tessera_dataset::inspect::schema_bytes(&schema),
        }),
        shards: vec![ShardEntry {
            name: "part-0.parquet".into(),
            rows: 30,
            row_groups: vec![RowGroup {
                offset: 4,
                size: 10,
                rows: 30,
            }],
            layout: layout.clone(),
            degraded: None,
        }],
        parent: Some(dag_cbor_cid(b"parent")),
        created_ms: 1_790_000_000_000,
        metadata: [("license".to_string(), "CC-BY-4.0".to_string())].into(),
    };
    let key = signer();
    let record = VersionRecord {
        format: tessera_formats::record::RECORD_VERSION,
        publisher: PublisherKey::of(&key),
        name: "dataset".into(),
        version: 1,
        manifest: dag_cbor_cid(b"manifest"),
        parent: None,
        time_ms: 1_790_000_000_000,
        message: "first".into(),
    }
    .sign(&key);
    let receipt = AuditReceipt {
        format: tessera_formats::receipt::RECEIPT_VERSION,
        auditor: PublisherKey::of(&key),
        node: PublisherKey::of(&SigningKey::from_bytes(&[8; 32])),
        piece: raw_cid(b"piece"),
        size: 1000,
        nonce: [2; 32],
        samples: 8,
        result: AuditResult::Passed,
        time_ms: 1_790_000_000_000,
    }
    .sign(&key);
    let claim = RepairClaim {
        format: tessera_formats::claim::CLAIM_VERSION,
        claimer: PublisherKey::of(&key),
        shard: dag_cbor_cid(b"layout"),
        expires_ms: 1_790_000_000_000,
    }
    .sign(&key);
    let charter = Charter::found(
        "fuzznet",
        vec![PublisherKey::of(&key)],
        1,
        CharterParams::default(),
    )
    .signed_by(&[&key]);
    let mut seeds = Vec::new();
    seeds.extend(charter.ok().and_then(|c| c.to_block().ok()).map(|(_, b)| b));
    seeds.extend(manifest.to_block().ok().map(|(_, b)| b));
    seeds.extend(layout.to_block().ok().map(|(_, b)| b));
    seeds.extend(record.ok().and_then(|r| r.to_block().ok()).map(|(_, b)| b));
    seeds.extend(receipt.ok().and_then(|r| r.to_block().ok()).map(|(_, b)| b));
    seeds.extend(claim.ok().and_then(|c| c.to_block().ok()));
    seeds.push(b"did:key:z6Mk/dataset@v2".to_vec());
    seeds
}

/// Erasure-coded pieces as a reader checks them: the header alone, and a piece against the
/// slot of a real layout.
fn pieces(bytes: &[u8]) {
    let _ = PieceHeader::decode(bytes);
    if let Some((layout, _)) = piece_layout() {
        for index in 0..layout.pieces.len().min(2) {
            let _ = verify_piece(&layout, index, bytes);
        }
    }
}

fn piece_layout() -> Option<(ShardLayout, Vec<Vec<u8>>)> {
    let params = ErasureParams::new(3, 2, 1024).ok()?;
    encode_to_vecs(params, &[11u8; 2500]).ok()
}

fn piece_seeds() -> Vec<Vec<u8>> {
    piece_layout().map(|(_, pieces)| pieces).unwrap_or_default()
}

fn robots(bytes: &[u8]) {
    let robots = Robots::parse(bytes);
    for path in ["/", "/private/x", "/a%2fb?q=1", "/%ff"] {
        let _ = robots.check("TesseraBot/0.1", path);
    }
    let _ = robots.crawl_delay("TesseraBot/0.1");
}

fn html(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    if let Ok(url) = url::Url::parse("http://example.com/dir/page.html") {
        let _ = extract(&text, &url, "TesseraBot/0.1");
    }
}

fn crawl_spec(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Ok(spec) = CrawlSpec::from_toml(text) {
        let _ = OperatorLimits::default().check_spec(&spec);
        let _ = spec.scope();
    }
}

fn config(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Ok(config) = toml::from_str::<tessera_storage_node::NodeConfig>(text)
        && config.check().is_ok()
    {
        let _ = (config.store(), config.audit());
        let _ = toml::to_string(&config);
    }
    if let Ok(config) = toml::from_str::<tessera_scraper_node::node::ScraperConfig>(text)
        && config.check().is_ok()
    {
        let _ = (config.limits(), config.http_addr());
        let _ = toml::to_string(&config);
    }
    let _ = CrawlSpec::from_toml(text);
}

/// A shard as a stream, `inspect` and `rewards` read one: checked, then decoded.
fn parquet(bytes: &[u8]) {
    let Ok(mut file) = tempfile::tempfile() else {
        return;
    };
    if std::io::Write::write_all(&mut file, bytes).is_err() {
        return;
    }
    let limits = ParquetLimits::default();
    let Ok(builder) = open_checked(file, &limits) else {
        return;
    };
    let _ = contain(|| {
        for batch in builder.build().map_err(|e| e.to_string())? {
            batch.map_err(|e| e.to_string())?;
        }
        Ok(())
    });
}

fn parquet_seeds() -> Vec<Vec<u8>> {
    let texts: ArrayRef = Arc::new(StringArray::from(vec![
        Some("rivers carry water"),
        None,
        Some("to the sea"),
    ]));
    let ids: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]));
    let tokens: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
        Some(vec![Some(1), Some(2)]),
        Some(vec![]),
        None,
    ]));
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("text", DataType::Utf8, true),
        Field::new(
            "tokens",
            DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
            true,
        ),
    ]));
    let Ok(batch) = RecordBatch::try_new(schema.clone(), vec![ids, texts, tokens]) else {
        return Vec::new();
    };
    let mut seeds = Vec::new();
    for (compression, dictionary) in [
        (Compression::SNAPPY, true),
        (Compression::ZSTD(Default::default()), false),
        (Compression::UNCOMPRESSED, false),
    ] {
        let props = WriterProperties::builder()
            .set_compression(compression)
            .set_dictionary_enabled(dictionary)
            .set_data_page_size_limit(64)
            .build();
        let mut out = Vec::new();
        let written = ArrowWriter::try_new(&mut out, schema.clone(), Some(props))
            .and_then(|mut w| w.write(&batch).and_then(|()| w.close()));
        if written.is_ok() {
            seeds.push(out);
        }
    }
    seeds
}

/// The files of the demo's site (`examples/site/`) ending in `.extension`: real pages and a
/// real robots.txt.
fn example_site(extension: &str) -> Vec<Vec<u8>> {
    let site = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/site");
    let mut files: Vec<_> = std::fs::read_dir(site)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

/// The seeds of `target`: made in code, and the files of its corpus folder under `corpus`.
pub fn seeds_of(target: &Target, corpus: &Path) -> Vec<Vec<u8>> {
    let mut seeds = (target.seeds)();
    let dir = corpus.join(target.name);
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    seeds.extend(files.iter().filter_map(|p| std::fs::read(p).ok()));
    if seeds.is_empty() {
        seeds.push(Vec::new());
    }
    seeds
}
