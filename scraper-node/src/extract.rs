//! From an HTML page to what a dataset row needs: title, main text, language with its score,
//! how much of it is links, outgoing links, and the page's own robots and TDM directives.
//! GPT-2 tokens are counted on a row's final text ([`count_tokens`]), once the quality
//! pipeline has kept the page.
//!
//! Main text comes from `dom_smoothie` (a port of Mozilla's Readability, which drops menus,
//! footers and boilerplate); where it finds no article, the visible text of the body is used.
//! Links, meta tags and the title come from `scraper`. Pure and synchronous: the node runs it
//! on one of its CPU threads ([`crate::cpu_pool`]).

use std::{collections::HashSet, sync::LazyLock};

use dom_smoothie::{Config, Readability, TextMode};
use ego_tree::iter::Edge;
use scraper::{ElementRef, Html, Node, Selector};
use url::Url;

use crate::{
    canonical::canonicalize,
    nesting::{MAX_DEPTH, TooDeep, scan_depth, tree_depth},
    optout::{Directives, tdm_reserved},
    quality::identify,
};

/// Most links taken from one page.
pub const MAX_LINKS_PER_PAGE: usize = 1000;
/// Most elements Readability scores; larger pages fall back to the body's text.
const MAX_ELEMENTS: usize = 50_000;

/// What was taken from one page.
#[derive(Debug, Clone, PartialEq)]
pub struct Extracted {
    /// The page's `<title>`, whitespace collapsed.
    pub title: String,
    /// The main text, a line per paragraph.
    pub text: String,
    /// ISO 639-1 code where there is one (ISO 639-3 otherwise); empty when undetected.
    pub language: String,
    /// The detector's confidence, 0 to 1.
    pub language_score: f64,
    /// Outgoing links, canonical, deduplicated, at most [`MAX_LINKS_PER_PAGE`]; none when the
    /// page says `nofollow`. Links marked `rel=nofollow` are left out.
    pub links: Vec<Url>,
    /// The page's robots meta tags for this crawler.
    pub directives: Directives,
    /// A `<meta name="tdm-reservation" content="1">`.
    pub tdm_reserved: bool,
    /// The share, by characters, of the page's link text and its main text's prose together
    /// that is link text: high on an index whose "main text" is a footer or a comment, low on
    /// an article, whatever its menus.
    pub link_density: f64,
    /// The share of the main text that is link text: high where the "article" is a list of
    /// links.
    pub article_link_density: f64,
}

struct Selectors {
    title: Selector,
    meta: Selector,
    base: Selector,
    links: Selector,
    body: Selector,
}

static SELECTORS: LazyLock<Selectors> = LazyLock::new(|| {
    let parse = |s| Selector::parse(s).expect("a constant selector parses");
    Selectors {
        title: parse("title"),
        meta: parse("meta[name][content]"),
        base: parse("base[href]"),
        links: parse("a[href], area[href]"),
        body: parse("body"),
    }
});

/// Extracts what a row needs from `html`, the page at `url`, for the crawler `agent`. A page
/// nested past [`MAX_DEPTH`] is refused before the parser's work grows with its square.
pub fn extract(html: &str, url: &Url, agent: &str) -> Result<Extracted, TooDeep> {
    if scan_depth(html, MAX_DEPTH) > MAX_DEPTH {
        return Err(TooDeep);
    }
    let doc = Html::parse_document(html);
    if tree_depth(&doc) > MAX_DEPTH {
        return Err(TooDeep);
    }
    let s = &*SELECTORS;

    let title = doc
        .select(&s.title)
        .next()
        .map(|t| collapse(&t.text().collect::<String>()))
        .unwrap_or_default();

    let mut directives = Directives::default();
    let mut tdm = false;
    for meta in doc.select(&s.meta) {
        let (Some(name), Some(content)) = (meta.attr("name"), meta.attr("content")) else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("tdm-reservation") {
            tdm |= tdm_reserved(content);
        } else {
            directives.add_meta(name, content, agent);
        }
    }

    let links = if directives.nofollow {
        Vec::new()
    } else {
        links(&doc, url)
    };

    let body = doc.select(&s.body).next();
    let (linked, visible) = body.map(link_text).unwrap_or_default();
    // An index's "article" is its list of links, or, where Readability passed the list over,
    // a footer or a comment beside far more link text.
    let (text, link_density, article_link_density) = match main_text(html, url) {
        Some((text, content)) => {
            let fragment = Html::parse_fragment(&content);
            let (own_links, own) = link_text(fragment.root_element());
            let prose = own - own_links;
            (text, share(linked, linked + prose), share(own_links, own))
        }
        // The body's text holds its links already.
        None => {
            let density = share(linked, visible);
            (body_text(&doc), density, density)
        }
    };
    let (language, language_score) = identify(&text);
    Ok(Extracted {
        title,
        text,
        language,
        language_score,
        links,
        directives,
        tdm_reserved: tdm,
        link_density,
        article_link_density,
    })
}

/// GPT-2 tokens in `text`, as FineWeb counts them (r50k_base, no special tokens).
pub fn count_tokens(text: &str) -> u64 {
    // Built in, so the encoding is always there.
    tiktoken::get_encoding("r50k_base").map_or(0, |bpe| bpe.count(text) as u64)
}

fn links(doc: &Html, url: &Url) -> Vec<Url> {
    let s = &*SELECTORS;
    let base = doc
        .select(&s.base)
        .next()
        .and_then(|b| b.attr("href"))
        .and_then(|href| canonicalize(href, Some(url)).ok())
        .unwrap_or_else(|| url.clone());
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for a in doc.select(&s.links) {
        let nofollow = a.attr("rel").is_some_and(|rel| {
            rel.split_ascii_whitespace()
                .any(|r| r.eq_ignore_ascii_case("nofollow"))
        });
        let Some(href) = a.attr("href") else { continue };
        if nofollow {
            continue;
        }
        if let Ok(link) = canonicalize(href, Some(&base))
            && seen.insert(link.as_str().to_string())
        {
            out.push(link);
            if out.len() == MAX_LINKS_PER_PAGE {
                break;
            }
        }
    }
    out
}

/// Readability's article: its text, and its HTML; `None` where it finds no article.
fn main_text(html: &str, url: &Url) -> Option<(String, String)> {
    let config = Config {
        max_elements_to_parse: MAX_ELEMENTS,
        text_mode: TextMode::Formatted,
        ..Config::default()
    };
    let mut readability = Readability::new(html, Some(url.as_str()), Some(config)).ok()?;
    let article = readability.parse().ok()?;
    let text = tidy(&article.text_content);
    (!text.is_empty()).then(|| (text, article.content.to_string()))
}

/// The visible text of the body: text outside scripts, styles and templates, a line per
/// block element.
fn body_text(doc: &Html) -> String {
    let mut out = String::new();
    if let Some(body) = doc.select(&SELECTORS.body).next() {
        collect_text(body, &mut out);
    }
    tidy(&out)
}

/// What [`walk_visible`] meets, in document order.
enum Visible<'a> {
    /// Text shown on the page, and whether a link holds it.
    Text(&'a str, bool),
    /// A block element opens or closes: a line ends.
    Block,
}

/// Walks the visible part of the tree under `root` (not inside scripts, styles, templates),
/// without recursion: its depth is the page's to choose.
fn walk_visible<'a>(root: ElementRef<'a>, mut meet: impl FnMut(Visible<'a>)) {
    // Elements entered inside a hidden one, and links open around the current node.
    let (mut hidden, mut links) = (0usize, 0usize);
    for edge in root.traverse() {
        match edge {
            Edge::Open(node) => match node.value() {
                Node::Text(text) if hidden == 0 => meet(Visible::Text(text, links > 0)),
                Node::Element(e) if hidden > 0 || is_hidden(e.name()) => hidden += 1,
                Node::Element(e) if e.name() == "a" => links += 1,
                Node::Element(e) if is_block(e.name()) => meet(Visible::Block),
                _ => {}
            },
            Edge::Close(node) => match node.value() {
                Node::Element(_) if hidden > 0 => hidden -= 1,
                Node::Element(e) if e.name() == "a" => links = links.saturating_sub(1),
                Node::Element(e) if is_block(e.name()) => meet(Visible::Block),
                _ => {}
            },
        }
    }
}

/// The visible text under `body`, a line per block element.
fn collect_text(body: ElementRef<'_>, out: &mut String) {
    walk_visible(body, |seen| match seen {
        Visible::Text(text, _) => {
            let t = collapse(text);
            if !t.is_empty() {
                if !out.is_empty() && !out.ends_with('\n') {
                    out.push(' ');
                }
                out.push_str(&t);
            }
        }
        Visible::Block => end_line(out),
    });
}

/// `part / whole`, 0 when `whole` is.
fn share(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Characters (not counting whitespace) of the visible text under `root` inside `<a>`
/// elements, and of all of it.
fn link_text(root: ElementRef<'_>) -> (usize, usize) {
    let (mut linked, mut all) = (0usize, 0usize);
    walk_visible(root, |seen| {
        if let Visible::Text(text, in_link) = seen {
            let n = text.chars().filter(|c| !c.is_whitespace()).count();
            all += n;
            if in_link {
                linked += n;
            }
        }
    });
    (linked, all)
}

fn end_line(out: &mut String) {
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
}

fn is_hidden(name: &str) -> bool {
    matches!(name, "script" | "style" | "noscript" | "template" | "svg")
}

fn is_block(name: &str) -> bool {
    matches!(
        name,
        "p" | "div"
            | "br"
            | "li"
            | "ul"
            | "ol"
            | "tr"
            | "table"
            | "section"
            | "article"
            | "header"
            | "footer"
            | "main"
            | "nav"
            | "aside"
            | "pre"
            | "blockquote"
            | "h1"
            | "h2"
            | "h3"
            | "h4"
            | "h5"
            | "h6"
            | "dt"
            | "dd"
    )
}

/// Whitespace inside lines collapsed, a line per block, blank lines dropped: the text as
/// FineWeb's rows hold it (trafilatura's output), and as its filters read lines.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines().map(collapse).filter(|l| !l.is_empty()) {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&line);
    }
    out
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGENT: &str = "TesseraBot/0.1";

    fn page(body: &str, head: &str) -> String {
        format!(
            "<!doctype html><html><head><title> A  Title </title>{head}</head><body>{body}</body></html>"
        )
    }

    const ARTICLE: &str = "<nav><a href='/menu'>Menu</a></nav><article><h1>On rivers</h1>\
        <p>Rivers carry water from the mountains to the sea, and along the way they shape the \
        land, carve valleys and feed the plains where people have farmed for thousands of years.</p>\
        <p>Most large rivers begin as small streams fed by rain and melting snow. Over time they \
        join together and grow, until they become wide enough to carry boats and trade.</p>\
        <p>See <a href='other.html#part'>another page</a>, <a href='http://Elsewhere.ORG/x'>a site</a>, \
        <a href='mailto:a@b.c'>mail</a> and <a rel='nofollow' href='/secret'>this</a>.</p></article>\
        <footer>Copyright</footer>";

    #[test]
    fn an_article_gives_title_text_language_tokens_and_links() {
        let url = Url::parse("http://example.com/dir/page.html").unwrap();
        let got = extract(&page(ARTICLE, ""), &url, AGENT).unwrap();
        assert_eq!(got.title, "A Title");
        assert!(got.text.contains("Rivers carry water"), "{}", got.text);
        assert!(got.text.contains("\nMost large rivers"), "{}", got.text);
        assert!(!got.text.contains("Copyright"), "{}", got.text);
        assert_eq!(got.language, "en");
        assert!(got.language_score > 0.5, "{}", got.language_score);
        let tokens = count_tokens(&got.text);
        assert!(tokens > 50 && tokens < 150, "{tokens}");
        // GPT-2's own counts (tiktoken's r50k_base); special tokens are ordinary text.
        assert_eq!(count_tokens("Hello world"), 2);
        assert_eq!(count_tokens("<|endoftext|>"), 7);
        let links: Vec<_> = got.links.iter().map(Url::as_str).collect();
        assert_eq!(
            links,
            [
                "http://example.com/menu",
                "http://example.com/dir/other.html",
                "http://elsewhere.org/x"
            ]
        );
        assert!(got.directives.keep() && !got.tdm_reserved);
    }

    #[test]
    fn an_index_of_links_is_told_from_an_article_by_its_link_text() {
        let url = Url::parse("http://example.com/").unwrap();
        let article = extract(&page(ARTICLE, ""), &url, AGENT).unwrap();
        assert!(article.link_density < 0.3, "{}", article.link_density);
        assert!(
            article.article_link_density < 0.2,
            "{}",
            article.article_link_density
        );
        let quality = crate::quality::Quality::default();
        assert!(quality.keeps_links(article.link_density, article.article_link_density));
        let items: String = (0..30)
            .map(|i| format!("<li><a href='/post/{i}'>Post number {i} of the blog</a></li>"))
            .collect();
        let index = page(
            &format!(
                "<h1>Archive</h1><ul>{items}</ul><footer>© 2026 Example Labs. We use cookies. \
                 Accept?</footer><script>var hidden = 'not counted';</script>"
            ),
            "",
        );
        let index = extract(&index, &url, AGENT).unwrap();
        assert!(
            index.link_density > 0.6 || index.article_link_density > 0.3,
            "{} {}",
            index.link_density,
            index.article_link_density
        );
        assert!(!quality.keeps_links(index.link_density, index.article_link_density));
        let empty = extract(&page("", ""), &url, AGENT).unwrap();
        assert_eq!((empty.link_density, empty.article_link_density), (0.0, 0.0));
    }

    #[test]
    fn meta_tags_opt_out_and_stop_links() {
        let url = Url::parse("http://example.com/").unwrap();
        let got = extract(
            &page(ARTICLE, "<meta name='robots' content='noai, nofollow'>"),
            &url,
            AGENT,
        )
        .unwrap();
        assert!(got.directives.noai && !got.directives.keep());
        assert!(got.links.is_empty());
        let got = extract(
            &page("<p>x</p>", "<meta name='tdm-reservation' content='1'>"),
            &url,
            AGENT,
        )
        .unwrap();
        assert!(got.tdm_reserved);
    }

    #[test]
    fn a_page_without_an_article_gives_its_body_text() {
        let url = Url::parse("http://example.com/").unwrap();
        let got = extract(
            &page(
                "<div>Hello <b>there</b></div><script>var x = 1;</script><div>Second line</div>",
                "",
            ),
            &url,
            AGENT,
        )
        .unwrap();
        assert!(got.text.starts_with("Hello there\n"), "{:?}", got.text);
        assert!(got.text.ends_with("\nSecond line"), "{:?}", got.text);
        assert_eq!(
            body_text(&Html::parse_document(&page(
                "<div>a <b>b</b></div><p>c</p>",
                ""
            ))),
            "a b\nc"
        );
        // Junk gives empty fields, never a panic.
        let got = extract("\u{0}<<<>>>&&&", &url, AGENT).unwrap();
        assert!(got.title.is_empty());
    }

    #[test]
    fn the_base_element_moves_relative_links() {
        let url = Url::parse("http://example.com/a/b.html").unwrap();
        let got = extract(
            &page(
                "<a href='c.html'>c</a>",
                "<base href='http://example.com/other/'>",
            ),
            &url,
            AGENT,
        )
        .unwrap();
        assert_eq!(got.links[0].as_str(), "http://example.com/other/c.html");
    }

    /// On a thread with tokio's blocking-thread stack (2 MiB), as the node runs it.
    fn extract_on_small_stack(html: String) -> Result<Extracted, TooDeep> {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let url = Url::parse("http://example.com/").unwrap();
                extract(&html, &url, AGENT)
            })
            .unwrap()
            .join()
            .unwrap()
    }

    #[test]
    fn a_page_nested_a_million_deep_is_refused_not_a_crash() {
        let deep = format!(
            "<html><body>{}deep</body></html>",
            "<div>".repeat(1_000_000)
        );
        assert_eq!(extract_on_small_stack(deep), Err(TooDeep));
        // The size that overflowed the stack before: 52,000 elements, 0.7 MB.
        let page = format!("<body>{}x</body>", "<div><span>".repeat(26_000));
        assert_eq!(extract_on_small_stack(page), Err(TooDeep));
    }

    #[test]
    fn a_page_just_under_the_depth_limit_is_read_in_full() {
        let depth = MAX_DEPTH - 8;
        let page = format!(
            "<html><head><title>Deep</title></head><body>{}<p>{}</p>{}</body></html>",
            "<div>".repeat(depth),
            "Rivers carry water from the mountains to the sea. ".repeat(20),
            "</div>".repeat(depth)
        );
        let got = extract_on_small_stack(page).unwrap();
        assert_eq!(got.title, "Deep");
        assert!(
            got.text.starts_with("Rivers carry water"),
            "{:.80}",
            got.text
        );
        assert_eq!(got.language, "en");
    }
}
