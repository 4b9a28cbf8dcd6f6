//! The fetcher against a real HTTP server on loopback: robots.txt, opt-outs, redirects,
//! retries, limits, the address guard and per-host spacing, with the server's access log as
//! the witness of what was (not) requested.

#![allow(clippy::unwrap_used)]

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::get,
};
use tessera_scraper_node::{
    address::{NetworkPolicy, Reach},
    canonical::Scope,
    fetch::{FetchConfig, FetchError, Fetcher, MAX_CRAWL_DELAY, Outcome, Skip},
};
use url::Url;

mod common;

use common::AccessLog;

#[derive(Clone, Default)]
struct Site {
    log: AccessLog,
    hits_429: Arc<AtomicU32>,
    hits_500: Arc<AtomicU32>,
    robots_status: Arc<Mutex<Option<StatusCode>>>,
    /// robots.txt breaks off after its first line.
    robots_broken: Arc<std::sync::atomic::AtomicBool>,
    /// robots.txt says this instead.
    robots_text: Arc<Mutex<Option<String>>>,
}

impl Site {
    fn requested(&self, path: &str) -> Vec<Instant> {
        self.log.requested(path)
    }
}

const HTML: &str = "text/html; charset=utf-8";

fn page(text: &str) -> Response {
    (
        [(header::CONTENT_TYPE, HTML)],
        format!("<html><body><p>{text}</p></body></html>"),
    )
        .into_response()
}

async fn robots(State(site): State<Site>) -> Response {
    if let Some(status) = *site.robots_status.lock().unwrap() {
        return status.into_response();
    }
    if let Some(text) = site.robots_text.lock().unwrap().clone() {
        return text.into_response();
    }
    if site.robots_broken.load(Ordering::SeqCst) {
        use futures::StreamExt as _;
        // The first line goes out with the headers; the connection dies a moment later.
        let first = futures::stream::once(async { Ok("User-agent: *\n".to_string()) });
        let then = futures::stream::once(async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Err(std::io::Error::other("connection lost"))
        });
        return axum::body::Body::from_stream(first.chain(then)).into_response();
    }
    "User-agent: *\nDisallow: /private\n\nUser-agent: TesseraBot\nDisallow: /private\nDisallow: /bot-only\n"
        .into_response()
}

async fn limited(State(site): State<Site>) -> Response {
    if site.hits_429.fetch_add(1, Ordering::SeqCst) == 0 {
        return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "1")]).into_response();
    }
    page("after the wait")
}

async fn flaky(State(site): State<Site>) -> Response {
    if site.hits_500.fetch_add(1, Ordering::SeqCst) == 0 {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    page("recovered")
}

fn router(site: Site, other: SocketAddr) -> Router {
    Router::new()
        .route("/robots.txt", get(robots))
        .route(
            "/.well-known/tdmrep.json",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    r#"[{"location": "/reserved/*", "tdm-reservation": 1}]"#,
                )
            }),
        )
        .route("/", get(|| async { page("home") }))
        .route("/private/secret", get(|| async { page("secret") }))
        .route("/bot-only", get(|| async { page("bot only") }))
        .route("/r1", get(|| async { Redirect::temporary("/r2") }))
        .route("/r2", get(|| async { Redirect::permanent("/final") }))
        .route("/final", get(|| async { page("final") }))
        .route("/loop", get(|| async { Redirect::temporary("/loop") }))
        .route(
            "/to-private",
            get(|| async { Redirect::temporary("/private/secret") }),
        )
        .route(
            "/to-loopback",
            get(move || async move {
                Redirect::temporary(&format!("http://127.0.0.1:{}/", other.port()))
            }),
        )
        .route(
            "/to-elsewhere",
            get(|| async { Redirect::temporary("http://elsewhere.example/") }),
        )
        .route("/limited", get(limited))
        .route("/flaky", get(flaky))
        .route("/gone", get(|| async { StatusCode::NOT_FOUND }))
        .route(
            "/big",
            get(|| async { ([(header::CONTENT_TYPE, HTML)], "x".repeat(10_000)) }),
        )
        .route(
            "/big-chunked",
            get(|| async {
                let chunks = (0..20).map(|_| Ok::<_, std::io::Error>("y".repeat(1000)));
                (
                    [(header::CONTENT_TYPE, HTML)],
                    axum::body::Body::from_stream(futures::stream::iter(chunks)),
                )
            }),
        )
        .route(
            "/file.pdf",
            get(|| async { ([(header::CONTENT_TYPE, "application/pdf")], "%PDF") }),
        )
        .route(
            "/noai",
            get(|| async {
                let mut headers = HeaderMap::new();
                headers.insert("x-robots-tag", "noai".parse().unwrap());
                (headers, page("no ai please"))
            }),
        )
        .route(
            "/tdm-header",
            get(|| async { ([("tdm-reservation", "1")], page("reserved by header")) }),
        )
        .route("/reserved/page", get(|| async { page("reserved by file") }))
        .with_state(site)
}

async fn serve(ip: IpAddr, site: Site, other: SocketAddr) -> SocketAddr {
    common::serve(ip, router(site.clone(), other), site.log.clone()).await
}

fn config(network: NetworkPolicy) -> FetchConfig {
    FetchConfig {
        network,
        max_body: 5_000,
        timeout: Duration::from_secs(5),
        backoff: Duration::from_millis(50),
        ..FetchConfig::default()
    }
}

fn scope(addr: SocketAddr) -> Scope {
    Scope {
        domains: vec![addr.ip().to_string()],
        patterns: vec![],
    }
}

fn url(addr: SocketAddr, path: &str) -> Url {
    Url::parse(&format!("http://{addr}{path}")).unwrap()
}

/// The test site on 127.0.0.1, and a fetcher that may reach it.
async fn local_site() -> (Site, SocketAddr, Fetcher) {
    let site = Site::default();
    let loopback = "127.0.0.1".parse().unwrap();
    let addr = serve(loopback, site.clone(), "127.0.0.1:9".parse().unwrap()).await;
    let fetcher = Fetcher::new(config(NetworkPolicy::allow_private())).unwrap();
    (site, addr, fetcher)
}

async fn fetch(fetcher: &Fetcher, addr: SocketAddr, path: &str) -> Outcome {
    fetcher
        .fetch(&url(addr, path), &scope(addr), Duration::ZERO)
        .await
}

#[tokio::test]
async fn pages_are_fetched_within_the_rules_and_the_log_proves_it() {
    let (site, addr, fetcher) = local_site().await;

    let Outcome::Page(home) = fetch(&fetcher, addr, "/").await else {
        panic!()
    };
    assert_eq!(home.status, 200);
    assert!(String::from_utf8_lossy(&home.body).contains("home"));

    // robots.txt: the agent's own group decides, and the page is never requested.
    for path in ["/private/secret", "/bot-only", "/to-private"] {
        match fetch(&fetcher, addr, path).await {
            Outcome::Skipped(Skip::Robots {
                rule: Some(rule), ..
            }) => {
                assert!(rule.text.starts_with("Disallow: /"), "{rule:?}");
            }
            other => panic!("{path}: {other:?}"),
        }
    }
    assert!(site.requested("/private/secret").is_empty());
    assert!(site.requested("/bot-only").is_empty());

    // Redirects are followed and each hop is checked.
    let Outcome::Page(last) = fetch(&fetcher, addr, "/r1").await else {
        panic!()
    };
    assert_eq!(last.url.path(), "/final");
    assert_eq!(last.requested.path(), "/r1");
    assert!(matches!(
        fetch(&fetcher, addr, "/loop").await,
        Outcome::Skipped(Skip::TooManyRedirects(5))
    ));
    assert!(matches!(
        fetch(&fetcher, addr, "/to-elsewhere").await,
        Outcome::Skipped(Skip::OutOfScope(_))
    ));

    // Opt-outs: header, TDMRep header and file.
    assert!(matches!(
        fetch(&fetcher, addr, "/noai").await,
        Outcome::Skipped(Skip::OptedOut(_))
    ));
    assert!(matches!(
        fetch(&fetcher, addr, "/tdm-header").await,
        Outcome::Skipped(Skip::TdmReserved(_))
    ));
    assert!(matches!(
        fetch(&fetcher, addr, "/reserved/page").await,
        Outcome::Skipped(Skip::TdmReserved(_))
    ));
    assert!(site.requested("/reserved/page").is_empty());

    // Limits and kinds.
    assert!(matches!(
        fetch(&fetcher, addr, "/big").await,
        Outcome::Skipped(Skip::TooLarge { limit: 5000 })
    ));
    assert!(matches!(
        fetch(&fetcher, addr, "/big-chunked").await,
        Outcome::Skipped(Skip::TooLarge { .. })
    ));
    assert!(matches!(
        fetch(&fetcher, addr, "/file.pdf").await,
        Outcome::Skipped(Skip::NotHtml(_))
    ));
    assert!(matches!(
        fetch(&fetcher, addr, "/gone").await,
        Outcome::Skipped(Skip::Status(404))
    ));

    // robots.txt was fetched once for all of it.
    assert_eq!(site.requested("/robots.txt").len(), 1);
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_after_their_wait() {
    let (site, addr, fetcher) = local_site().await;

    let Outcome::Page(page) = fetch(&fetcher, addr, "/limited").await else {
        panic!()
    };
    assert!(String::from_utf8_lossy(&page.body).contains("after the wait"));
    let times = site.requested("/limited");
    assert_eq!(times.len(), 2);
    assert!(
        times[1] - times[0] >= Duration::from_secs(1),
        "Retry-After not honoured"
    );

    let Outcome::Page(_) = fetch(&fetcher, addr, "/flaky").await else {
        panic!()
    };
    assert_eq!(site.requested("/flaky").len(), 2);

    // A Retry-After longer than the node waits gives the page back for later.
    let impatient = Fetcher::new(FetchConfig {
        max_retry_after: Duration::from_millis(100),
        ..config(NetworkPolicy::allow_private())
    })
    .unwrap();
    site.hits_429.store(0, Ordering::SeqCst);
    assert!(matches!(
        fetch(&impatient, addr, "/limited").await,
        Outcome::Failed(FetchError::RetryLater(_))
    ));
}

#[tokio::test]
async fn robots_txt_errors_allow_or_refuse_as_rfc_9309_says() {
    let site = Site::default();
    let addr = serve(
        "127.0.0.1".parse().unwrap(),
        site.clone(),
        "127.0.0.1:9".parse().unwrap(),
    )
    .await;
    *site.robots_status.lock().unwrap() = Some(StatusCode::NOT_FOUND);
    let fetcher = Fetcher::new(config(NetworkPolicy::allow_private())).unwrap();
    assert!(matches!(
        fetch(&fetcher, addr, "/private/secret").await,
        Outcome::Page(_)
    ));

    *site.robots_status.lock().unwrap() = Some(StatusCode::SERVICE_UNAVAILABLE);
    let fetcher = Fetcher::new(config(NetworkPolicy::allow_private())).unwrap();
    assert!(matches!(
        fetch(&fetcher, addr, "/").await,
        Outcome::Skipped(Skip::Robots { .. })
    ));
    assert_eq!(site.requested("/").len(), 0);

    // A robots.txt cut off mid-way is no robots.txt read: everything is refused.
    *site.robots_status.lock().unwrap() = None;
    site.robots_broken.store(true, Ordering::SeqCst);
    let before = site.requested("/private/secret").len();
    let fetcher = Fetcher::new(config(NetworkPolicy::allow_private())).unwrap();
    assert!(matches!(
        fetch(&fetcher, addr, "/private/secret").await,
        Outcome::Skipped(Skip::Robots { rule: Some(_), .. })
    ));
    assert_eq!(site.requested("/private/secret").len(), before);
}

#[tokio::test]
async fn a_crawl_delay_past_the_cap_skips_the_host_and_never_overflows() {
    let (site, addr, _) = local_site().await;
    for asked in ["1e19", "1e300", "18446744073709551616", "3601"] {
        *site.robots_text.lock().unwrap() = Some(format!("User-agent: *\nCrawl-delay: {asked}\n"));
        let fetcher = Fetcher::new(config(NetworkPolicy::allow_private())).unwrap();
        let outcome = fetch(&fetcher, addr, "/").await;
        assert!(
            matches!(&outcome, Outcome::Skipped(Skip::CrawlDelay { .. })),
            "{asked}: {outcome:?}"
        );
        // What a node reports to its coordinator is the cap, never more.
        let reported = fetcher.crawl_delay(&url(addr, "/"), Duration::ZERO).await;
        assert_eq!(reported, Some(MAX_CRAWL_DELAY), "{asked}");
    }
    assert_eq!(
        site.requested("/").len(),
        0,
        "no page of the host was asked for"
    );

    // Up to the cap, the delay is honoured: the first page goes, the host then waits.
    *site.robots_text.lock().unwrap() = Some("User-agent: *\nCrawl-delay: 3600\n".into());
    let fetcher = Fetcher::new(config(NetworkPolicy::allow_private())).unwrap();
    assert!(matches!(fetch(&fetcher, addr, "/").await, Outcome::Page(_)));
    let second =
        tokio::time::timeout(Duration::from_millis(300), fetch(&fetcher, addr, "/final")).await;
    assert!(
        second.is_err(),
        "the second page waits for the host's delay"
    );
    assert_eq!(site.requested("/final").len(), 0);
}

#[tokio::test]
async fn requests_to_one_host_keep_their_spacing() {
    let (site, addr, fetcher) = local_site().await;
    let spacing = Duration::from_millis(150);
    let scope = scope(addr);
    let mut tasks = Vec::new();
    for path in ["/", "/final", "/r1", "/gone"] {
        let (fetcher, scope, url) = (fetcher.clone(), scope.clone(), url(addr, path));
        tasks.push(tokio::spawn(async move {
            fetcher.fetch(&url, &scope, spacing).await
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let times = site.log.times();
    assert!(times.len() >= 7, "{}", times.len());
    for pair in times.windows(2) {
        assert!(pair[1] - pair[0] >= spacing, "{:?}", pair[1] - pair[0]);
    }
}

#[tokio::test]
async fn the_contributors_network_is_never_reached() {
    // The test site listens on 127.0.0.2; that one address is allowed, nothing else private.
    let other_site = Site::default();
    let other = serve(
        "127.0.0.1".parse().unwrap(),
        other_site.clone(),
        "127.0.0.1:9".parse().unwrap(),
    )
    .await;
    let site = Site::default();
    let addr = serve("127.0.0.2".parse().unwrap(), site.clone(), other).await;
    let policy = NetworkPolicy {
        allowed: vec!["127.0.0.2".parse().unwrap()],
        ..NetworkPolicy::public_only()
    };
    let fetcher = Fetcher::new(config(policy)).unwrap();
    let everywhere = Scope {
        domains: vec![],
        patterns: vec!["*".into()],
    };
    let get = |u: &str| {
        let (fetcher, everywhere, u) =
            (fetcher.clone(), everywhere.clone(), Url::parse(u).unwrap());
        async move { fetcher.fetch(&u, &everywhere, Duration::ZERO).await }
    };

    assert!(matches!(
        get(&format!("http://{addr}/")).await,
        Outcome::Page(_)
    ));
    // Direct, by IP literal.
    for (target, want) in [
        (format!("http://{other}/"), Reach::Loopback),
        (
            "http://169.254.169.254/latest/meta-data/".into(),
            Reach::LinkLocal,
        ),
        ("http://10.0.0.1/".into(), Reach::Private),
        ("http://[::1]/".into(), Reach::Loopback),
    ] {
        match get(&target).await {
            Outcome::Skipped(Skip::Blocked { reach, .. }) => assert_eq!(reach, want, "{target}"),
            other => panic!("{target}: {other:?}"),
        }
    }
    // Through a name that resolves to loopback.
    match get(&format!("http://localhost:{}/", other.port())).await {
        Outcome::Skipped(Skip::Blocked {
            reach: Reach::Loopback,
            ..
        }) => {}
        other => panic!("localhost: {other:?}"),
    }
    // Through a redirect from the allowed site.
    match get(&format!("http://{addr}/to-loopback")).await {
        Outcome::Skipped(Skip::Blocked {
            reach: Reach::Loopback,
            ..
        }) => {}
        other => panic!("redirect: {other:?}"),
    }
    assert!(other_site.log.is_empty(), "the loopback site was reached");
}
