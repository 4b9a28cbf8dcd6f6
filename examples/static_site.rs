//! A static site of N generated pages on 127.0.0.1, for crawl benchmarks: each page has a
//! title, a menu, a footer, six paragraphs of prose (sentences of the labelled extraction
//! set, drawn per page, so a crawl's quality pipeline keeps them) and links to the next pages
//! of a tree (`/p/0` is the home
//! page, page `i` links to pages `8i+1 ..= 8i+8`), so every page is reachable from the home
//! page within a few links. robots.txt allows everything.
//!
//! `GET /_stats` (linked from nowhere) says how many requests the site answered and when the
//! first and the last arrived, as the site saw them: a crawl's duration measured the same way
//! for every crawler. `POST /_stats/reset` starts the count again.
//!
//! ```sh
//! cargo run --release --example static_site -- --pages 1000
//! ```
//!
//! It prints `http://127.0.0.1:PORT/p/0` once it listens, then serves until killed.

use parking_lot::Mutex;
use std::{io::Write as _, net::SocketAddr, sync::Arc, time::Instant};

use axum::{
    Json, Router,
    extract::{Path, Request, State},
    http::{StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use clap::Parser;

#[derive(Debug, Parser)]
struct Args {
    /// Pages on the site.
    #[arg(long, default_value_t = 1000)]
    pages: usize,
    /// The labelled extraction set, whose sentences the pages are made of.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../scraper-node/tests/extraction"))]
    corpus: std::path::PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

/// Links from each page to the next level of the tree.
const FAN_OUT: usize = 8;

/// Sentences the pages are made of: the hand-marked text of the labelled extraction set,
/// so pages read as prose and pass FineWeb's filters, as a real site's articles would.
fn corpus(dir: &std::path::Path) -> Vec<String> {
    let mut sentences = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    for path in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
    {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for line in text.lines() {
            for sentence in line.split_inclusive(". ") {
                let sentence = sentence.trim();
                if sentence.split_whitespace().count() >= 6 && sentence.ends_with('.') {
                    sentences.push(sentence.to_string());
                }
            }
        }
    }
    sentences.sort();
    sentences.dedup();
    sentences
}

/// Page `i`'s HTML: a site's header, menu and footer around about 4 KiB of prose, six
/// paragraphs of sentences drawn for the page (different for every page, the same for every
/// run).
fn page(i: usize, pages: usize, corpus: &[String]) -> String {
    let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = || {
        // xorshift
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        usize::try_from(x % corpus.len().max(1) as u64).unwrap_or(0)
    };
    let mut text = String::new();
    let mut used = std::collections::HashSet::new();
    for _ in 0..6 {
        text.push_str("<p>");
        let mut n = 0;
        while n < 6 && !corpus.is_empty() {
            let k = next();
            if used.insert(k) || used.len() >= corpus.len() {
                text.push_str(&corpus[k]);
                text.push(' ');
                n += 1;
            }
        }
        text.push_str("</p>");
    }
    let links: String = (FAN_OUT * i + 1..=FAN_OUT * i + FAN_OUT)
        .filter(|&j| j < pages)
        .map(|j| format!("<li><a href=\"/p/{j}\">Page {j}</a></li>"))
        .collect();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Page {i}</title>\
         </head><body><div class=\"cookies\">We use cookies. <a href=\"/privacy\">Privacy policy\
         </a></div><header><a href=\"/p/0\">Home</a> <a href=\"/p/1\">News</a> \
         <a href=\"/p/2\">About</a></header><article><h1>Page {i}</h1>{text}</article>\
         <aside><h2>More pages</h2><ul>{links}</ul></aside>\
         <footer>© 2026 Example Labs. All rights reserved.</footer></body></html>"
    )
}

#[derive(Clone)]
struct Site {
    pages: usize,
    corpus: Arc<Vec<String>>,
    since: Instant,
    log: Arc<Mutex<Log>>,
}

/// Requests answered, and when the first and the last arrived (ms since the site started).
#[derive(Debug, Default, Clone, serde::Serialize)]
struct Log {
    requests: u64,
    first_ms: Option<f64>,
    last_ms: Option<f64>,
}

async fn serve_page(State(site): State<Site>, Path(i): Path<usize>) -> Response {
    if i >= site.pages {
        return StatusCode::NOT_FOUND.into_response();
    }
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page(i, site.pages, &site.corpus),
    )
        .into_response()
}

async fn count(State(site): State<Site>, request: Request, next: Next) -> Response {
    let at = site.since.elapsed().as_secs_f64() * 1000.0;
    {
        let mut log = site.log.lock();
        log.requests += 1;
        log.first_ms.get_or_insert(at);
        log.last_ms = Some(at);
    }
    next.run(request).await
}

async fn stats(State(site): State<Site>) -> Json<Log> {
    Json(site.log.lock().clone())
}

async fn reset(State(site): State<Site>) -> StatusCode {
    *site.log.lock() = Log::default();
    StatusCode::NO_CONTENT
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let site = Site {
        pages: args.pages,
        corpus: Arc::new(corpus(&args.corpus)),
        since: Instant::now(),
        log: Arc::default(),
    };
    anyhow::ensure!(
        !site.corpus.is_empty(),
        "no sentences in the .txt files under {}",
        args.corpus.display()
    );
    let crawled = Router::new()
        .route("/robots.txt", get(|| async { "User-agent: *\nAllow: /\n" }))
        .route("/p/{i}", get(serve_page))
        .layer(middleware::from_fn_with_state(site.clone(), count));
    let router = Router::new()
        .route("/_stats", get(stats))
        .route("/_stats/reset", post(reset))
        .merge(crawled)
        .with_state(site);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "http://{addr}/p/0")?;
    out.flush()?;
    drop(out);
    axum::serve(listener, router).await?;
    Ok(())
}
