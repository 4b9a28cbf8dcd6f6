//! The crawl tests' site: linked pages and every case a polite crawler must handle.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::get,
};
use tessera_scraper_node::spec::CrawlSpec;

pub(crate) const HTML: &str = "text/html; charset=utf-8";
pub(crate) const ROBOTS: &str = "User-agent: *\nDisallow: /\n\nUser-agent: TesseraBot\nDisallow: /private/\nDisallow: /bot-excluded\nCrawl-delay: 0.1\n";

fn page(title: &str, links: &[&str]) -> Response {
    let links: String = links
        .iter()
        .map(|l| format!("<li><a href=\"{l}\">{l}</a></li>"))
        .collect();
    let body = format!(
        "<html><head><title>{title}</title></head><body><article><h1>{title}</h1>\
         <p>This page is called {title}. It is part of a small test site that a crawler visits \
         to show that it follows links, keeps to the rules of the site and writes what it finds \
         into a dataset with the provenance of every row.</p><ul>{links}</ul></article></body></html>"
    );
    ([(header::CONTENT_TYPE, HTML)], body).into_response()
}

#[derive(Clone, Default)]
struct Counters {
    flaky: Arc<AtomicU32>,
    limited: Arc<AtomicU32>,
}

pub(crate) fn site() -> Router {
    let home = [
        "/a",
        "/b",
        "/private/x",
        "/bot-excluded",
        "/gone",
        "/flaky",
        "/limited",
        "/r1",
        "/big",
        "/file.pdf",
        "/noai",
        "/meta-noai",
        "/deep1",
        "mailto:someone@example.com",
        "http://elsewhere.invalid/",
    ];
    Router::new()
        .route("/robots.txt", get(|| async { ROBOTS }))
        .route("/", get(move || async move { page("home", &home) }))
        .route("/a", get(|| async { page("a", &["/b", "/a#top", "/"]) }))
        .route("/b", get(|| async { page("b", &["/"]) }))
        .route("/private/x", get(|| async { page("private", &[]) }))
        .route("/bot-excluded", get(|| async { page("excluded", &[]) }))
        .route("/gone", get(|| async { StatusCode::NOT_FOUND }))
        .route(
            "/flaky",
            get(|State(c): State<Counters>| async move {
                if c.flaky.fetch_add(1, Ordering::SeqCst) == 0 {
                    return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                }
                page("flaky", &[])
            }),
        )
        .route(
            "/limited",
            get(|State(c): State<Counters>| async move {
                if c.limited.fetch_add(1, Ordering::SeqCst) == 0 {
                    return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "1")]).into_response();
                }
                page("limited", &[])
            }),
        )
        .route("/r1", get(|| async { Redirect::temporary("/r2") }))
        .route("/r2", get(|| async { Redirect::permanent("/final") }))
        .route("/final", get(|| async { page("final", &[]) }))
        .route("/big", get(|| async { ([(header::CONTENT_TYPE, HTML)], "x".repeat(20_000)) }))
        .route("/file.pdf", get(|| async { ([(header::CONTENT_TYPE, "application/pdf")], "%PDF-1.4") }))
        .route("/noai", get(|| async { ([("x-robots-tag", "noai")], page("noai", &[])) }))
        .route(
            "/meta-noai",
            get(|| async {
                let body = "<html><head><meta name=\"robots\" content=\"noai\"></head><body><p>Please do not use this page for AI training; it says so in its meta tags.</p></body></html>";
                ([(header::CONTENT_TYPE, HTML)], body)
            }),
        )
        .route("/deep1", get(|| async { page("deep1", &["/deep2"]) }))
        .route("/deep2", get(|| async { page("deep2", &["/deep3"]) }))
        .route("/deep3", get(|| async { page("deep3", &["/deep4"]) }))
        .route("/deep4", get(|| async { page("deep4", &[]) }))
        .with_state(Counters::default())
}

pub(crate) fn spec(addr: SocketAddr) -> CrawlSpec {
    CrawlSpec::from_toml(&format!(
        "name = \"test-site\"\nseeds = [\"http://{addr}/\"]\nmax_pages = 100\nmax_depth = 3\nshard_size = \"64KiB\"\n\
         [politeness]\ndelay_seconds = 0.05\nlease_size = 3\nlease_timeout_seconds = 30\nmax_body = \"8KiB\"\nvalidate_fraction = 0.0\n[quality]\nenabled = false\n"
    ))
    .unwrap()
}

/// The pages of the site that a crawl keeps: every allowed HTML page within the depth.
pub(crate) const KEPT: [&str; 9] = [
    "/", "/a", "/b", "/flaky", "/limited", "/final", "/deep1", "/deep2", "/deep3",
];
