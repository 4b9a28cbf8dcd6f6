//! What the scraper tests share: a real HTTP server on loopback with an access log, the
//! witness of what was (and was not) requested.

#![allow(dead_code, clippy::unwrap_used)]

pub(crate) mod site;

use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Instant,
};

use axum::{
    Router,
    extract::{Request, State},
    middleware::{self, Next},
    response::Response,
};

/// A contributor's limits, less the minimum delay: test sites are crawled quickly.
pub(crate) fn test_limits() -> tessera_scraper_node::limits::OperatorLimits {
    tessera_scraper_node::limits::OperatorLimits {
        min_delay: std::time::Duration::ZERO,
        ..Default::default()
    }
}

/// Every request a test site answered: its path and when it arrived.
#[derive(Clone, Default)]
pub(crate) struct AccessLog(Arc<Mutex<Vec<(String, Instant)>>>);

impl AccessLog {
    /// When `path` was requested.
    pub(crate) fn requested(&self, path: &str) -> Vec<Instant> {
        let log = self.0.lock().unwrap();
        log.iter()
            .filter(|(p, _)| p == path)
            .map(|(_, t)| *t)
            .collect()
    }

    /// Every request's arrival, in order.
    pub(crate) fn times(&self) -> Vec<Instant> {
        let mut times: Vec<Instant> = self.0.lock().unwrap().iter().map(|(_, t)| *t).collect();
        times.sort();
        times
    }

    /// Every request, in order of arrival.
    pub(crate) fn entries(&self) -> Vec<(String, Instant)> {
        let mut entries = self.0.lock().unwrap().clone();
        entries.sort_by_key(|(_, t)| *t);
        entries
    }

    /// Every path requested, in order of arrival.
    pub(crate) fn paths(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Whether nothing was requested.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.lock().unwrap().is_empty()
    }
}

async fn record(State(log): State<AccessLog>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    log.0.lock().unwrap().push((path, Instant::now()));
    next.run(request).await
}

/// Serves `router` on `ip` (an ephemeral port), logging every request to `log`.
pub(crate) async fn serve(ip: IpAddr, router: Router, log: AccessLog) -> SocketAddr {
    let router = router.layer(middleware::from_fn_with_state(log, record));
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// Every file under `dir`, at any depth.
pub(crate) fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A network on 127.0.0.1 that serves the crawl protocol, as a coordinator's node does.
pub(crate) async fn coordinator_net() -> tessera_net::Network {
    tessera_net::start(
        libp2p::identity::Keypair::generate_ed25519(),
        tessera_net::NetworkConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            ..tessera_net::NetworkConfig::default()
        }
        .serving::<tessera_scraper_node::protocol::CrawlProtocol>(),
    )
    .await
    .unwrap()
}
