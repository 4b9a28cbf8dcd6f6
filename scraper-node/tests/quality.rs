//! FineWeb's pipeline on a real crawl: two workers crawl a site of articles, copies, a
//! near-copy, a French page, a short page and a page of links. Only the articles are kept,
//! each group of duplicates once whichever worker fetched it, with PII replaced; every
//! dropped page is counted by its reason; the rows have FineWeb's columns and types.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use arrow::{
    array::{Array, Float64Array, StringArray},
    datatypes::DataType,
};
use axum::{Router, extract::Path, http::header, response::IntoResponse, routing::get};
use common::{AccessLog, test_limits};
use libp2p::identity::Keypair;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tessera_scraper_node::{
    address::NetworkPolicy,
    coordinator::{Coordinator, CrawlStatus},
    spec::CrawlSpec,
    worker::{Worker, WorkerConfig},
};
use tokio::sync::watch;

const WORDS: [&str; 48] = [
    "river", "valley", "farmer", "bridge", "winter", "harvest", "market", "village", "mountain",
    "teacher", "letter", "garden", "engine", "station", "window", "forest", "kitchen", "doctor",
    "island", "museum", "weather", "painter", "morning", "journey", "library", "sailor", "orchard",
    "festival", "lantern", "meadow", "castle", "merchant", "harbour", "student", "chapel",
    "blanket", "wagon", "ladder", "pepper", "violin", "cottage", "quarry", "tunnel", "shepherd",
    "furnace", "pilgrim", "compass", "parcel",
];
const VERBS: [&str; 12] = [
    "carried",
    "found",
    "watched",
    "repaired",
    "painted",
    "visited",
    "followed",
    "counted",
    "opened",
    "described",
    "remembered",
    "crossed",
];

/// An article of eight paragraphs, each of four sentences drawn from `seed`.
fn article(seed: u64) -> Vec<String> {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut next = |n: usize| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) as usize) % n
    };
    (0..8)
        .map(|_| {
            (0..4)
                .map(|_| {
                    let mut w = || WORDS[next(WORDS.len())];
                    let (a, b, c) = (w(), w(), w());
                    let v = VERBS[next(VERBS.len())];
                    let sentence = match next(8) {
                        0 => format!("{a} {v} the {b} near {c}."),
                        1 => format!("Every {a} {v} a {b} before the {c} came."),
                        2 => format!("Our {a} said that {b} was late in {c} season."),
                        3 => format!("When {a} {v} {b}, {c} waited quietly."),
                        4 => format!("Nobody {v} {a} until {b} arrived from {c}."),
                        5 => format!("Her {a} and his {b} {v} along {c}."),
                        6 => format!("Later, {a} {v} {} {b} by {c}.", next(90) + 10),
                        _ => format!("{a} {v} over {b}; {c} stayed with them."),
                    };
                    let mut chars = sentence.chars();
                    let first = chars.next().unwrap().to_uppercase().to_string();
                    first + chars.as_str()
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn html(title: &str, paragraphs: &[String]) -> axum::response::Response {
    let body: String = paragraphs.iter().map(|p| format!("<p>{p}</p>")).collect();
    let page = format!(
        "<html><head><title>{title}</title></head><body>\
         <nav><a href=\"/\">Home</a> <a href=\"/about\">About</a></nav>\
         <article><h1>{title}</h1>{body}</article>\
         <footer>© 2026 Example Labs. We use cookies. Accept?</footer></body></html>"
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
}

/// Paths every page links to (the index lists them all).
const PATHS: [&str; 11] = [
    "/article/0",
    "/article/1",
    "/article/2",
    "/article/3",
    "/article/4",
    "/article/5",
    "/copy",
    "/near",
    "/french",
    "/short",
    "/contact",
];

fn site() -> Router {
    Router::new()
        .route("/robots.txt", get(|| async { "User-agent: *\nAllow: /\n" }))
        .route(
            "/",
            get(|| async {
                let links: String = PATHS
                    .iter()
                    .map(|p| format!("<li><a href=\"{p}\">{p}</a></li>"))
                    .collect();
                let page = format!(
                    "<html><head><title>Index</title></head><body><h1>All articles</h1>\
                     <ul>{links}</ul><footer>© 2026 Example Labs. We use cookies.</footer>\
                     </body></html>"
                );
                ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
            }),
        )
        .route(
            "/article/{i}",
            get(|Path(i): Path<u64>| async move { html(&format!("Article {i}"), &article(i)) }),
        )
        // The same text as article 0 at another address.
        .route(
            "/copy",
            get(|| async { html("Article 0 again", &article(0)) }),
        )
        // Article 1 with two words changed: a near-duplicate.
        .route(
            "/near",
            get(|| async {
                let mut text = article(1);
                text[2] = text[2].replacen("The ", "A ", 1);
                text[6] = text[6].replacen(" the ", " one ", 1);
                html("Article 1, revised", &text)
            }),
        )
        .route(
            "/french",
            get(|| async {
                let p = "La rivière prend sa source dans les collines au-dessus de la ville et \
                         coule vers le nord pendant de nombreux kilomètres avant d'atteindre la \
                         mer. Au printemps, la neige qui fond la remplit jusqu'en haut de ses \
                         berges, et les paysans qui vivent le long de son cours surveillent \
                         l'eau avec attention. La plupart des années, elle reste à sa place.";
                html("La rivière", &[p.to_string()])
            }),
        )
        .route(
            "/short",
            get(|| async { html("Short", &["Nothing much to read here today.".into()]) }),
        )
        .route(
            "/contact",
            get(|| async {
                let mut text = article(9);
                text.push(
                    "Write to the editor at jane.doe@example-labs.net or reach the server at \
                     8.8.4.4 for the archive."
                        .into(),
                );
                html("Contact", &text)
            }),
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crawl_keeps_each_article_once_and_counts_what_it_dropped() {
    let log = AccessLog::default();
    let addr = common::serve("127.0.0.1".parse().unwrap(), site(), log).await;
    let (db, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let coordinator = Coordinator::start(db.path(), None).unwrap();
    let spec = CrawlSpec::from_toml(&format!(
        "name = \"articles\"\nseeds = [\"http://{addr}/\"]\nmax_pages = 50\nmax_depth = 2\n\
         [politeness]\ndelay_seconds = 0.01\nlease_size = 2\nvalidate_fraction = 1.0\n"
    ))
    .unwrap();
    let crawl = coordinator.start_crawl(spec).await.unwrap();

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut workers = Vec::new();
    for i in 0..2 {
        let config = WorkerConfig {
            out_dir: out.path().join(format!("node{i}")),
            network: NetworkPolicy::allow_private(),
            idle_wait: Duration::from_millis(50),
            storage: None,
            limits: test_limits(),
        };
        let mut stop = stop_rx.clone();
        let worker = Worker::new(coordinator.clone(), Keypair::generate_ed25519(), config);
        workers.push(tokio::spawn(worker.run(async move {
            let _ = stop.wait_for(|s| *s).await;
        })));
    }
    let status = wait_finished(&coordinator).await;
    stop_tx.send(true).unwrap();
    for w in workers {
        w.await.unwrap();
    }

    // Dropped pages, by reason: the copies, the French page, the index (mostly links); the
    // short page fails Gopher's or FineWeb's rules.
    let p = &status.progress;
    assert_eq!(p.dropped, 5, "{p:?}");
    assert_eq!(p.dropped_by.get("exact_duplicate"), Some(&1), "{p:?}");
    assert_eq!(p.dropped_by.get("near_duplicate"), Some(&1), "{p:?}");
    assert_eq!(p.dropped_by.get("language"), Some(&1), "{p:?}");
    assert_eq!(p.dropped_by.get("link_list"), Some(&1), "{p:?}");
    assert_eq!(p.stored, 7, "{p:?}");
    // Every stored page was fetched again by the other node: honest nodes find the same text
    // and the same MinHash buckets.
    let checked: u64 = p.validation.iter().map(|(_, s)| s.agreed).sum();
    assert_eq!(checked, 7, "{p:?}");
    assert!(p.validation.iter().all(|(_, s)| s.disagreed == 0), "{p:?}");

    let rows = rows(out.path(), &crawl);
    let paths: BTreeSet<String> = rows
        .keys()
        .map(|u| u.trim_start_matches(&format!("http://{addr}")).to_string())
        .collect();
    let one_of = |a: &str, b: &str| paths.contains(a) != paths.contains(b);
    assert!(one_of("/article/0", "/copy"), "{paths:?}");
    assert!(one_of("/article/1", "/near"), "{paths:?}");
    for path in [
        "/article/2",
        "/article/3",
        "/article/4",
        "/article/5",
        "/contact",
    ] {
        assert!(paths.contains(path), "{path} missing: {paths:?}");
    }
    assert_eq!(paths.len(), 7, "{paths:?}");
    let (contact, _) = &rows[&format!("http://{addr}/contact")];
    assert!(contact.contains("email@example.com"), "{contact}");
    assert!(contact.contains("22.214.171.124"), "{contact}");
    assert!(!contact.contains("jane.doe") && !contact.contains("8.8.4.4"));
    // Neither the menu nor the footer's cookie banner is in a row.
    for (text, _) in rows.values() {
        assert!(
            !text.contains("cookies") && !text.contains("About"),
            "{text}"
        );
    }
    // Real language scores: at least the threshold, and not one constant.
    let scores: BTreeSet<u64> = rows.values().map(|(_, s)| s.to_bits()).collect();
    assert!(rows.values().all(|(_, s)| (0.65..=1.0).contains(s)));
    assert!(
        scores.len() > 1 || rows.values().all(|(_, s)| *s < 1.0),
        "{scores:?}"
    );
}

async fn wait_finished(coordinator: &Coordinator) -> CrawlStatus {
    for _ in 0..600 {
        if let Ok(status) = coordinator.status().await
            && let Some(status) = status.into_iter().next().filter(|s| {
                s.finished && s.rows == s.progress.stored && s.progress.checks_pending == 0
            })
        {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the crawl did not finish: {:?}", coordinator.status().await);
}

/// Each row's text and language score by URL, checking FineWeb's columns field by field.
fn rows(out: &std::path::Path, crawl: &str) -> BTreeMap<String, (String, f64)> {
    let fineweb = [
        ("text", DataType::Utf8),
        ("id", DataType::Utf8),
        ("dump", DataType::Utf8),
        ("url", DataType::Utf8),
        ("date", DataType::Utf8),
        ("file_path", DataType::Utf8),
        ("language", DataType::Utf8),
        ("language_score", DataType::Float64),
        ("token_count", DataType::Int64),
    ];
    let mut rows = BTreeMap::new();
    for path in common::walk(out) {
        if !path.to_string_lossy().contains(crawl) {
            continue;
        }
        let file = std::fs::File::open(&path).unwrap();
        for batch in ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
        {
            let batch = batch.unwrap();
            let schema = batch.schema();
            for (i, (name, kind)) in fineweb.iter().enumerate() {
                let field = schema.field(i);
                assert_eq!((field.name().as_str(), field.data_type()), (*name, kind));
            }
            let text = batch
                .column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            let url = batch
                .column(3)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            let score = batch
                .column(7)
                .as_any()
                .downcast_ref::<Float64Array>()
                .unwrap();
            for r in 0..batch.num_rows() {
                let old = rows.insert(
                    url.value(r).to_string(),
                    (text.value(r).to_string(), score.value(r)),
                );
                assert!(old.is_none(), "{} twice", url.value(r));
            }
        }
    }
    rows
}
