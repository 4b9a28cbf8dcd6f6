//! The main text of every `NAME.html` in a directory by each of the other Rust extractors, as
//! `{"EXTRACTOR": {"NAME": "text", ...}, ...}`; an extractor that fails or panics on a page
//! keeps nothing for it. Also each extractor's mean time a page, under `"ms_per_page"`.

use std::{
    collections::BTreeMap,
    panic::{AssertUnwindSafe, catch_unwind},
    path::PathBuf,
    time::Instant,
};

type Extractor = fn(&str, &url::Url) -> Option<String>;

fn go_trafilatura(html: &str, _: &url::Url) -> Option<String> {
    let options =
        trafilatura::Options::default().with_focus(trafilatura::ExtractionFocus::FavorPrecision);
    trafilatura::extract(html, &options)
        .ok()
        .map(|r| r.content_text)
}

fn rs_trafilatura(html: &str, _: &url::Url) -> Option<String> {
    rs_trafilatura::extract(html).ok().map(|r| r.content_text)
}

fn readability(html: &str, url: &url::Url) -> Option<String> {
    readability::extractor::extract(&mut html.as_bytes(), url)
        .ok()
        .map(|p| p.text)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir: PathBuf = std::env::args_os()
        .nth(1)
        .ok_or("usage: tessera-bench-extractors DIR")?
        .into();
    let extractors: [(&str, Extractor); 3] = [
        ("trafilatura-rs (go port)", go_trafilatura),
        ("rs-trafilatura", rs_trafilatura),
        ("readability", readability),
    ];
    let mut pages = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "html") {
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .ok_or("name")?
                .to_string();
            pages.push((name, std::fs::read_to_string(&path)?));
        }
    }
    std::panic::set_hook(Box::new(|_| {}));
    let mut out = serde_json::Map::new();
    let mut times = serde_json::Map::new();
    for (label, extract) in extractors {
        let mut texts = BTreeMap::new();
        let started = Instant::now();
        for (name, html) in &pages {
            let url = url::Url::parse(&format!("http://pages.test/{name}.html"))?;
            let text = catch_unwind(AssertUnwindSafe(|| extract(html, &url)))
                .ok()
                .flatten()
                .unwrap_or_default();
            texts.insert(name.clone(), text);
        }
        let ms = started.elapsed().as_secs_f64() * 1000.0 / pages.len().max(1) as f64;
        times.insert(label.to_string(), ms.into());
        out.insert(label.to_string(), serde_json::to_value(texts)?);
    }
    out.insert("ms_per_page".into(), times.into());
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}
