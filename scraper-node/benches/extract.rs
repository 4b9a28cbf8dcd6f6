//! What a scraper node spends on one page after it arrives, step by step: extraction (title,
//! Readability's main text, language, GPT-2 tokens, links), and within it language
//! identification and token counting; the quality pipeline (FineWeb's filters, PII, MinHash)
//! and the MinHash signature alone; and the signed row. The page is one of the crawl
//! benchmark's (`examples/static_site.rs`): about 4 KiB of text and a few links; a page of the
//! labelled extraction set is timed through extraction too.

#![allow(missing_docs, clippy::unwrap_used)]

use std::time::{Duration, SystemTime};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use libp2p::identity::Keypair;
use tessera_scraper_node::{
    extract::{count_tokens, extract},
    provenance::Row,
    quality::{MinHasher, Quality, identify},
};
use url::Url;

const WORDS: [&str; 12] = [
    "storage",
    "network",
    "dataset",
    "shard",
    "erasure",
    "proof",
    "crawler",
    "page",
    "text",
    "provenance",
    "signature",
    "version",
];

fn page() -> String {
    let mut text = String::new();
    for p in 0..6 {
        text.push_str("<p>");
        for w in 0..100 {
            text.push_str(WORDS[(w * 7 + p) % WORDS.len()]);
            text.push(' ');
        }
        text.push_str("</p>");
    }
    let links: String = (1..=8)
        .map(|j| format!("<li><a href=\"/p/{j}\">Page {j}</a></li>"))
        .collect();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Page 0</title>\
         </head><body><nav><a href=\"/p/0\">Home</a></nav><article><h1>Page 0</h1>{text}\
         </article><ul>{links}</ul></body></html>"
    )
}

fn bench(c: &mut Criterion) {
    let html = page();
    let url = Url::parse("http://127.0.0.1:8000/p/0").unwrap();
    let key = Keypair::generate_ed25519();
    let mut group = c.benchmark_group("page");
    group.throughput(Throughput::Bytes(html.len() as u64));
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("extract", |b| b.iter(|| extract(&html, &url, "TesseraBot")));
    let news = include_str!("../tests/extraction/01-news.html");
    group.bench_function("extract_news_page", |b| {
        b.iter(|| extract(news, &url, "TesseraBot"))
    });
    let extracted = extract(&html, &url, "TesseraBot").expect("the page is shallow");
    let text = &extracted.text;
    group.bench_function("language", |b| b.iter(|| identify(text)));
    group.bench_function("tokens", |b| b.iter(|| count_tokens(text)));
    let quality = Quality::default();
    let hasher = MinHasher::new(&quality.dedup);
    group.bench_function("minhash", |b| b.iter(|| hasher.buckets(text)));
    // A page's hand-marked text, which every rule of the pipeline runs over and keeps.
    let article = include_str!("../tests/extraction/08-news.txt");
    assert!(quality.apply(article, "en", 0.9, &hasher).is_ok());
    group.bench_function("quality_filters", |b| {
        b.iter(|| quality.apply(article, "en", 0.9, &hasher))
    });
    group.bench_function("signed_row", |b| {
        b.iter(|| {
            Row::for_page(
                &key,
                url.as_str(),
                SystemTime::now(),
                200,
                "text/html",
                html.as_bytes(),
                &extracted,
                "tessera-crawl:bench",
                String::new(),
            )
            .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
