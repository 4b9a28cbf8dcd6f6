//! A static site of N generated pages on 127.0.0.1, for crawl benchmarks: each page has a
//! title, a few paragraphs of text and links to the next pages of a tree (`/p/0` is the home
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
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

/// Links from each page to the next level of the tree.
const FAN_OUT: usize = 8;

const WORDS: [&str; 24] = [
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
    "registry",
    "training",
    "stream",
    "node",
    "piece",
    "content",
    "address",
    "polite",
    "robots",
    "parquet",
    "column",
    "row",
];

/// Page `i`'s HTML: about 4 KiB of text that differs from page to page.
fn page(i: usize, pages: usize) -> String {
    let mut text = String::new();
    let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for p in 0..6 {
        text.push_str("<p>");
        for _ in 0..100 {
            // xorshift: different words for every page, the same for every run.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            text.push_str(WORDS[usize::try_from(x % WORDS.len() as u64).unwrap_or(0)]);
            text.push(' ');
        }
        text.push_str(&format!("(paragraph {p} of page {i}).</p>"));
    }
    let links: String = (FAN_OUT * i + 1..=FAN_OUT * i + FAN_OUT)
        .filter(|&j| j < pages)
        .map(|j| format!("<li><a href=\"/p/{j}\">Page {j}</a></li>"))
        .collect();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Page {i}</title>\
         </head><body><nav><a href=\"/p/0\">Home</a></nav><article><h1>Page {i}</h1>{text}\
         </article><ul>{links}</ul></body></html>"
    )
}

#[derive(Clone)]
struct Site {
    pages: usize,
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
        page(i, site.pages),
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
        since: Instant::now(),
        log: Arc::default(),
    };
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
