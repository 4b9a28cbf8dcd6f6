//! Extracts the main text of every `NAME.html` in a directory as a crawl would keep it, and
//! prints `{"NAME": "text", ...}` as JSON: a page the quality pipeline drops as a list of
//! links keeps no text. `scripts/bench-extract` scores it against the labelled set.
//!
//! ```sh
//! cargo run --release -p tessera-scraper-node --example extract_pages -- scraper-node/tests/extraction
//! ```

use std::{collections::BTreeMap, io::Write as _, path::PathBuf};

use tessera_scraper_node::{extract::extract, quality::Quality};
use url::Url;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir: PathBuf = std::env::args_os()
        .nth(1)
        .ok_or("usage: extract_pages DIR")?
        .into();
    let quality = Quality::default();
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "html") {
            continue;
        }
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or("a page's name is not UTF-8")?
            .to_string();
        let html = std::fs::read_to_string(&path)?;
        let url = Url::parse(&format!("http://pages.test/{name}.html"))?;
        let page = extract(&html, &url, "TesseraBot")?;
        let text = if quality.keeps_links(page.link_density, page.article_link_density) {
            page.text
        } else {
            String::new()
        };
        out.insert(name, text);
    }
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, &out)?;
    writeln!(stdout)?;
    Ok(())
}
