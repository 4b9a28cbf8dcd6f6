//! The small website the demo crawls: the pages of `examples/site/`, built into the binary,
//! served on 127.0.0.1 with a log of the paths asked for.

use parking_lot::Mutex;
use std::{net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::{Request, State},
    http::{StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

/// The site's files: path, content type, body.
const FILES: &[(&str, &str, &str)] = &[
    (
        "/robots.txt",
        "text/plain",
        include_str!("../../examples/site/robots.txt"),
    ),
    ("/", HTML, include_str!("../../examples/site/index.html")),
    (
        "/crawling.html",
        HTML,
        include_str!("../../examples/site/crawling.html"),
    ),
    (
        "/provenance.html",
        HTML,
        include_str!("../../examples/site/provenance.html"),
    ),
    (
        "/storage.html",
        HTML,
        include_str!("../../examples/site/storage.html"),
    ),
    (
        "/audits.html",
        HTML,
        include_str!("../../examples/site/audits.html"),
    ),
    (
        "/training.html",
        HTML,
        include_str!("../../examples/site/training.html"),
    ),
    (
        "/contributors.html",
        HTML,
        include_str!("../../examples/site/contributors.html"),
    ),
    (
        "/faq.html",
        HTML,
        include_str!("../../examples/site/faq.html"),
    ),
    (
        "/private/notes.html",
        HTML,
        include_str!("../../examples/site/private/notes.html"),
    ),
];

const HTML: &str = "text/html; charset=utf-8";

/// Pages a crawl of the site stores: every HTML page but the one robots.txt closes.
pub const CRAWLABLE_PAGES: usize = 8;

/// The paths the site was asked for, in order.
pub type Log = Arc<Mutex<Vec<String>>>;

/// Serves the site on 127.0.0.1 until the runtime stops; returns its address and its log.
pub async fn serve() -> std::io::Result<(SocketAddr, Log)> {
    let log = Log::default();
    let router = Router::new()
        .fallback(file)
        .layer(axum::middleware::from_fn_with_state(log.clone(), record));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok((addr, log))
}

async fn record(State(log): State<Log>, request: Request, next: Next) -> Response {
    log.lock().push(request.uri().path().to_string());
    next.run(request).await
}

async fn file(request: Request) -> Response {
    match FILES
        .iter()
        .find(|(path, _, _)| *path == request.uri().path())
    {
        Some((_, kind, body)) => ([(header::CONTENT_TYPE, *kind)], *body).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
